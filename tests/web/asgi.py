"""A synchronous client for an ASGI app served in-process (httpx's ASGI transport), for the web tests.

Starlette's own TestClient is deprecated with httpx (it wants httpx2), so the tests keep this small one."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class Client:
    __test__ = False  # imported as TestClient in some modules; not a test class

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://vigil") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

"""Request latency histograms per handler, as pure ASGI middleware (no per-request allocation of tasks)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class InstrumentMiddleware:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry | None, handlers: dict[str, str]) -> None:
        self.app = app
        self._handlers = handlers  # path -> handler label; anything else is "other" (bounded labels)
        self._hist = Histogram(
            "vigil_http_request_duration_seconds",
            "HTTP request latency by handler and status code.",
            ["handler", "code"],
            buckets=_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        handler = self._handlers.get(path) or (
            "/api/v1/label/:name/values" if path.startswith("/api/v1/label/") else "other"
        )
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._hist.labels(handler, str(status)).observe(time.perf_counter() - started)

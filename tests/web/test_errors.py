"""The application's one error convention (`vigil.web.errors.APIError`), the `requires` guard, and what
happens to an exception no handler expected: a 500, its traceback in the log, and the next request served."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tests.conftest import free_port
from tests.web.asgi import Client
from vigil.web.app import create_app
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.errors import APIError


class Sample:
    """An API with one endpoint per way of answering."""

    def __init__(self, auth: TokenAuth) -> None:
        self.auth = auth
        self.callers: list[Caller] = []

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/json", self.json_error),
            Route("/text", self.text_error),
            Route("/boom", self.boom),
            Route("/read", self.read),
            Route("/admin", self.admin),
        ]

    async def json_error(self, _: Request) -> Response:
        raise APIError(422, "execution", "no such thing")

    async def text_error(self, _: Request) -> Response:
        raise APIError(413, "body_too_large", "request body exceeds 10 bytes", text=True)

    async def boom(self, _: Request) -> Response:
        raise RuntimeError("a bug")

    @requires(Scope.READ)
    async def read(self, _: Request, caller: Caller) -> Response:
        self.callers.append(caller)
        return PlainTextResponse(caller.tenant or "everything")

    @requires(Scope.ADMIN)
    async def admin(self, _: Request, __: Caller) -> Response:
        return Response(status_code=204)


AUTH = TokenAuth(["w"], ["r"], [("acme", ["acme-w"])], admin_tokens=["adm"], trusted_proxy_tokens=["proxy"])


def test_api_errors_keep_their_status_and_format() -> None:
    c = Client(create_app([Sample(AUTH)], registry=None))
    r = c.get("/json")
    assert (r.status_code, r.headers["content-type"]) == (422, "application/json")
    assert json.loads(r.content) == {"status": "error", "errorType": "execution", "error": "no such thing"}
    r = c.get("/text")
    assert (r.status_code, r.text) == (413, "request body exceeds 10 bytes\n")
    assert r.headers["content-type"].startswith("text/plain")


def test_requires_refuses_before_the_endpoint_and_passes_the_caller_on() -> None:
    api = Sample(AUTH)
    c = Client(create_app([api], registry=None))
    r = c.get("/read")
    assert (r.status_code, r.text) == (401, "unauthorized: missing bearer token\n")
    assert r.headers["www-authenticate"] == 'Bearer realm="vigil"'
    r = c.get("/read", headers={"Authorization": "Bearer acme-w"})
    assert (r.status_code, r.text) == (401, "unauthorized: this token may not read\n")
    assert api.callers == []  # the endpoint never ran
    r = c.get("/read", headers={"Authorization": "Bearer proxy", "X-Scope-OrgID": "acme"})
    assert (r.status_code, r.text) == (200, "acme")
    assert c.get("/read", headers={"Authorization": "Bearer r"}).text == "everything"
    assert api.callers == [Caller("acme"), Caller(None)]
    assert c.get("/admin", headers={"Authorization": "Bearer w"}).status_code == 401
    assert c.get("/admin", headers={"Authorization": "Bearer adm"}).status_code == 204


@pytest.fixture
def served(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    """The sample API under uvicorn on a loopback port, as `vigil server` runs its application."""
    port = free_port()
    app = create_app([Sample(AUTH)], registry=None)
    # log_config=None: uvicorn's records reach the root logger (and caplog) instead of its own handlers.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def test_an_unexpected_exception_is_a_logged_500_and_the_server_keeps_serving(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    r = httpx.get(served + "/boom", timeout=30)
    assert r.status_code == 500
    assert "a bug" not in r.text  # the client does not see internals
    # uvicorn closes the connection that hit the bug; the server goes on serving new ones.
    assert httpx.get(served + "/text", timeout=30).status_code == 413
    assert httpx.get(served + "/read", headers={"Authorization": "Bearer r"}, timeout=30).status_code == 200
    logged = [rec for rec in caplog.records if rec.exc_info and rec.exc_info[0] is RuntimeError]
    assert len(logged) == 1 and "a bug" in str(logged[0].exc_info[1])

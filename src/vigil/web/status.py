"""The server's own endpoints: `/-/healthy`, `/-/ready`, `/metrics` and `/api/v1/status/buildinfo`.

They need nothing of the store but two things, passed in as small protocols so any storage engine
(or none) can stand behind them: what its last failed write was (readiness) and a way to bring its
gauges up to date before a scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from vigil import __version__
from vigil.web.auth import Caller, Scope, TokenAuth, requires

__all__ = ["StatusAPI", "WriteHealth"]


class WriteHealth(Protocol):
    """A store that can report why its last write failed (the TSDB, the event store)."""

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, or None once one succeeds."""
        ...


class StatusAPI:
    """Health, readiness, the server's metrics and its build information."""

    def __init__(
        self,
        auth: TokenAuth,
        registry: CollectorRegistry,
        stores: Sequence[WriteHealth] = (),
        refresh_metrics: Callable[[], None] | None = None,
    ) -> None:
        self.auth = auth
        self._registry = registry
        self._stores = tuple(stores)
        self._refresh = refresh_metrics

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/status/buildinfo", self.buildinfo, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/-/healthy", self.healthy, methods=["GET", "HEAD"]),
            Route("/-/ready", self.ready, methods=["GET", "HEAD"]),
        ]

    async def healthy(self, _: Request) -> Response:
        return PlainTextResponse("Vigil is Healthy.\n")

    async def ready(self, _: Request) -> Response:
        # Not ready while writes cannot be stored: the last commit's error, until one succeeds.
        problem = next((error for store in self._stores if (error := store.write_error)), None)
        if problem:
            return PlainTextResponse(f"not ready: writes are failing: {problem}\n", status_code=503)
        return PlainTextResponse("Vigil is Ready.\n")

    async def metrics(self, _: Request) -> Response:
        if self._refresh is not None:
            self._refresh()
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    @requires(Scope.READ)
    async def buildinfo(self, _: Request, __: Caller) -> Response:
        return JSONResponse(
            {
                "status": "success",
                "data": {
                    "version": __version__,
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                },
            }
        )

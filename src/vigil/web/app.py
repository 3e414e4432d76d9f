"""The HTTP application: the routes of the API objects passed in, one error convention, instrumentation.

Each API object (`QueryAPI`, `WriteAPI`, `EventsAPI`, `StatusAPI`, `AdminAPI`, and the APIs of later
stages) publishes its routes; this module only mounts them. Handlers refuse requests by raising
`vigil.web.errors.APIError`, answered by the exception handlers installed here. The application
starts and stops nothing itself: what the stores need at shutdown is the server's lifecycle, and a
`lifespan` passed in runs with the application when the caller wants one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan

from vigil.web.errors import EXCEPTION_HANDLERS
from vigil.web.instrument import InstrumentMiddleware

__all__ = ["API", "create_app"]


class API(Protocol):
    def routes(self) -> list[BaseRoute]:
        """The routes this API serves; each endpoint checks its own scope (`vigil.web.auth.requires`)."""
        ...


def create_app(
    apis: Sequence[API],
    *,
    registry: CollectorRegistry | None,
    lifespan: Lifespan[Starlette] | None = None,
) -> Starlette:
    routes = [route for api in apis for route in api.routes()]
    app = Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
    # Latency by handler: fixed paths by name, the rest under bounded labels (vigil.web.instrument).
    handlers = {r.path: r.path for r in routes if isinstance(r, Route) and "{" not in r.path}
    app.add_middleware(InstrumentMiddleware, registry=registry, handlers=handlers)
    return app

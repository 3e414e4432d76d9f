"""The HTTP application: routes, auth, instrumentation. Everything it serves is passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from vigil import __version__
from vigil.ingest.ingester import Ingester
from vigil.promql.engine import Engine
from vigil.storage.metadata import MetadataStore
from vigil.tsdb.db import DB
from vigil.web.auth import Scope, TokenAuth
from vigil.web.events_api import EventsAPI
from vigil.web.instrument import InstrumentMiddleware
from vigil.web.query_api import QueryAPI
from vigil.web.query_api import routes as query_routes
from vigil.web.write import WriteAPI


def create_app(
    db: DB,
    ingester: Ingester,
    engine: Engine,
    auth: TokenAuth,
    registry: CollectorRegistry,
    limits: dict[str, int],
    metadata: MetadataStore | None = None,
    on_shutdown: Callable[[], None] | None = None,
    hmac_key: str | None = None,
    events: EventsAPI | None = None,
) -> Starlette:
    write = WriteAPI(
        ingester,
        auth,
        max_body=limits["max_request_body_bytes"],
        max_decompressed=limits["max_decompressed_bytes"],
        max_samples=limits["max_samples_per_request"],
        hmac_key=hmac_key or None,
    )

    async def healthy(_: Request) -> Response:
        return PlainTextResponse("Vigil is Healthy.\n")

    async def ready(_: Request) -> Response:
        # Not ready while writes cannot be stored: the last commit's error, until one succeeds.
        problem = db.write_error or (events.write_error if events is not None else None)
        if problem:
            return PlainTextResponse(f"not ready: writes are failing: {problem}\n", status_code=503)
        return PlainTextResponse("Vigil is Ready.\n")

    async def metrics(_: Request) -> Response:
        db.refresh_metrics()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def buildinfo(request: Request) -> Response:
        denied = auth.check(request, Scope.READ)
        if denied:
            return denied
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

    async def compact(request: Request) -> Response:
        # Admin: write the head out and merge every window now (used by benchmarks and operators).
        # It acts on every tenant's data, so never with a tenant's token.
        denied = auth.check(request, Scope.ADMIN)
        if denied:
            return denied

        def run() -> None:
            db.flush_head()
            db.compact(force=True)

        await run_in_threadpool(run)
        return Response(status_code=204)

    routes = [
        *query_routes(QueryAPI(engine, db, auth, metadata)),
        Route("/api/v1/write", write.remote_write, methods=["POST"]),
        Route("/api/v1/import/prometheus", write.import_text, methods=["POST"]),
        Route("/api/v1/admin/tsdb/compact", compact, methods=["POST"]),
        Route("/api/v1/status/buildinfo", buildinfo, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
    ]
    if events is not None:
        routes += [
            Route("/api/v1/events", events.post, methods=["POST"]),
            Route("/api/v1/events", events.get, methods=["GET"]),
        ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown:
            on_shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    handlers = {r.path: r.path for r in routes if isinstance(r, Route) and "{" not in r.path}
    app.add_middleware(InstrumentMiddleware, registry=registry, handlers=handlers)
    return app

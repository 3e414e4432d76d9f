"""The agent's own HTTP endpoint: `/metrics` (Prometheus text, or OpenMetrics when asked) and probes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def create_agent_app(registry: CollectorRegistry) -> Starlette:
    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, registry)  # collectors read files: keep the loop free
        return Response(body, media_type=content_type)

    async def healthy(_: Request) -> Response:
        return PlainTextResponse("Vigil agent is Healthy.\n")

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
            Route("/-/ready", healthy, methods=["GET", "HEAD"]),
        ]
    )

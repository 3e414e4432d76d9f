"""Admin endpoints: `POST /api/v1/admin/tsdb/compact` (write the head out and merge every window now,
for benchmarks and operators).

They act on every tenant's data, so they take the admin scope, which a tenant's token never has. The
store stands behind a small protocol of the two operations used, not a concrete engine.
"""

from __future__ import annotations

from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vigil.web.auth import Caller, Scope, TokenAuth, requires

__all__ = ["AdminAPI", "Compactor"]


class Compactor(Protocol):
    """A store whose in-memory head can be persisted and whose persisted data can be merged."""

    def flush_head(self) -> None: ...

    def compact(self, force: bool = False) -> int:
        """Merge persisted data (every window when `force`); the number of merges done."""
        ...


class AdminAPI:
    def __init__(self, auth: TokenAuth, compactor: Compactor) -> None:
        self.auth = auth
        self._compactor = compactor

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/v1/admin/tsdb/compact", self.compact, methods=["POST"])]

    @requires(Scope.ADMIN)
    async def compact(self, _: Request, __: Caller) -> Response:
        def run() -> None:
            self._compactor.flush_head()
            self._compactor.compact(force=True)

        await run_in_threadpool(run)
        return Response(status_code=204)

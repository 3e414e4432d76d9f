"""Bearer-token checks for write and read endpoints."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from enum import Enum

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


class Scope(Enum):
    WRITE = "write"
    READ = "read"


class TokenAuth:
    """Accepts a request when no tokens are configured for its scope or its bearer token is one of them."""

    def __init__(
        self,
        write_tokens: Sequence[str],
        read_tokens: Sequence[str],
        tenants: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> None:
        """`tenants`: (tenant, tokens) pairs; those tokens may write, and what they write is the tenant's."""
        self._tenant_tokens = [(t.encode(), name) for name, tokens in tenants for t in tokens]
        self._tokens = {
            Scope.WRITE: [t.encode() for t in write_tokens] + [t for t, _ in self._tenant_tokens],
            Scope.READ: [t.encode() for t in read_tokens],
        }

    def tenant_of(self, request: Request) -> str | None:
        """The tenant whose token the request carries, if any (call after `check` allowed it)."""
        kind, _, presented = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not self._tenant_tokens:
            return None
        given = presented.strip().encode()
        found = None
        for token, name in self._tenant_tokens:  # every token compared: no timing hint
            if hmac.compare_digest(given, token):
                found = name
        return found

    def enabled(self, scope: Scope) -> bool:
        return bool(self._tokens[scope])

    def check(self, request: Request, scope: Scope) -> Response | None:
        """None if allowed, else the 401 response to send."""
        tokens = self._tokens[scope]
        if not tokens:
            return None
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        if kind.lower() == "bearer" and presented:
            given = presented.strip().encode()
            # Compare against every token so timing does not reveal which prefix matched.
            if sum(hmac.compare_digest(given, t) for t in tokens):
                return None
            reason = "invalid bearer token"
        else:
            reason = "missing bearer token"
        return PlainTextResponse(
            f"unauthorized: {reason}\n", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="vigil"'}
        )

"""Who is calling: bearer tokens for writes, reads and admin endpoints, and whose data a read may see.

The roles a token can have (`server.auth` in `vigil.yml`):

- global write tokens write untenanted data, and run admin endpoints when no admin tokens are set;
- global read tokens and admin tokens read everything, every tenant's data included;
- a tenant's write tokens write as that tenant; its read tokens read that tenant's data and no other;
- trusted proxy tokens read as the tenant the proxy names in `X-Scope-OrgID` (a gateway that
  authenticates users itself, as in front of Mimir). The header is ignored with any other token, so
  no caller picks its own tenant by sending it.

UI users log in to a session instead (`vigil.web.session`): `TokenAuth` is given the session
resolver when users are configured, and a request without an Authorization header is then the
caller its session cookie names. A request with a bearer token is decided by the token alone.

A scope for which no token is configured is open (loopback development: `check_exposure` refuses to
listen elsewhere like that); an open read sees everything. Admin endpoints are never open to a
tenant's token. A presented token is compared with every configured one in constant time, so timing
reveals neither which token matched nor how much of one did.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from vigil.config import AuthConfig
from vigil.web.errors import APIError

__all__ = [
    "ORG_ID_HEADER",
    "Caller",
    "Guarded",
    "Scope",
    "SessionResolver",
    "Tenant",
    "TokenAuth",
    "requires",
]

ORG_ID_HEADER = "X-Scope-OrgID"


class Scope(Enum):
    WRITE = "write"
    READ = "read"
    EDIT = "edit"
    """Acting on alerting state: silences, log templates. Bearer tokens get it as they get ADMIN."""
    ADMIN = "admin"


@dataclass(frozen=True)
class Tenant:
    """One tenant's tokens and signing key (`server.auth.tenants.<name>`)."""

    name: str
    write_tokens: Sequence[str] = ()
    read_tokens: Sequence[str] = ()
    hmac_key: str = ""


@dataclass(frozen=True)
class Caller:
    """Who an authorized request is. For a read, `tenant` is the one tenant whose data it may see
    (None: everything); for a write, the tenant it writes as (None: untenanted data), with that
    tenant's own signing key `hmac_key` ("" when it has none). `user` names a UI user who came with
    a session (None for bearer tokens and open scopes), for "created by" records."""

    tenant: str | None
    hmac_key: str = ""
    user: str | None = None

    def signing_key(self, shared: str | None) -> str | None:
        """The HMAC key a write's signature must be made with: the tenant's own key if it has one,
        else `shared` (`server.auth.hmac_key`); None when writes need no signature. Per-tenant keys
        bind a signature to its tenant: one made for tenant A's token is refused with B's."""
        return self.hmac_key or shared or None


_ANYONE = Caller(None)


class _Role(Enum):
    WRITE = "write_tokens"
    READ = "read_tokens"
    ADMIN = "admin_tokens"
    PROXY = "trusted_proxy_tokens"
    TENANT_WRITE = "tenant write_tokens"
    TENANT_READ = "tenant read_tokens"


_TENANT_ROLES = (_Role.TENANT_WRITE, _Role.TENANT_READ)
_Grant = tuple[_Role, str | None]  # a role and, for tenant roles, the tenant


def _tenant(t: Tenant | tuple[str, Sequence[str]]) -> Tenant:
    # A (name, tokens) pair is the config's shorthand: write tokens.
    return t if isinstance(t, Tenant) else Tenant(t[0], tuple(t[1]))


class SessionResolver(Protocol):
    """What `TokenAuth` asks about a request without a bearer token (`vigil.web.session.SessionAuth`)."""

    def caller(self, request: Request, scope: Scope) -> Caller | None:
        """The caller of the request's valid session, or None when it has none (or `scope` is one
        sessions never have, such as WRITE). Raises APIError (403) when the session's role lacks
        `scope` or a state-changing request fails the CSRF checks."""
        ...


class TokenAuth:
    """Decides what a request's bearer token may do (see the module docstring)."""

    def __init__(
        self,
        write_tokens: Sequence[str],
        read_tokens: Sequence[str],
        tenants: Sequence[Tenant | tuple[str, Sequence[str]]] = (),
        admin_tokens: Sequence[str] = (),
        trusted_proxy_tokens: Sequence[str] = (),
        sessions: SessionResolver | None = None,
    ) -> None:
        """Raises ValueError if a token is ambiguous: a tenant's token that is also another tenant's
        or a global one, or a proxy token that is also a global reader. With `sessions` (UI users are
        configured) every scope but WRITE needs a token or a session."""
        self._sessions = sessions
        self._tenants = {t.name: t for t in map(_tenant, tenants)}
        table: list[tuple[bytes, _Role, str | None]] = []
        for role, tokens in (
            (_Role.WRITE, write_tokens),
            (_Role.READ, read_tokens),
            (_Role.ADMIN, admin_tokens),
            (_Role.PROXY, trusted_proxy_tokens),
        ):
            table += [(t.encode(), role, None) for t in tokens]
        for t in self._tenants.values():
            table += [(tok.encode(), _Role.TENANT_WRITE, t.name) for tok in t.write_tokens]
            table += [(tok.encode(), _Role.TENANT_READ, t.name) for tok in t.read_tokens]
        _check_unambiguous(table)
        self._table = table
        self._has = {role for _, role, _ in table}

    @classmethod
    def from_config(cls, auth: AuthConfig, sessions: SessionResolver | None = None) -> TokenAuth:
        return cls(
            auth.write_tokens,
            auth.read_tokens,
            [Tenant(name, t.write_tokens, t.read_tokens, t.hmac_key) for name, t in auth.tenants],
            auth.admin_tokens,
            auth.trusted_proxy_tokens,
            sessions if auth.users else None,
        )

    # -- looking tokens up ---------------------------------------------------------------------------

    def _grants(self, request: Request) -> tuple[set[_Grant], str]:
        """The roles of the request's token (empty if none) and, for that case, why."""
        kind, _, presented = request.headers.get("authorization", "").partition(" ")
        given = presented.strip().encode()
        if kind.lower() != "bearer" or not given:
            return set(), "missing bearer token" + (" or login session" if self._sessions else "")
        # A comprehension compares against every token: no early exit for timing to reveal.
        found = {(role, tenant) for token, role, tenant in self._table if hmac.compare_digest(given, token)}
        return found, "invalid bearer token"

    def enabled(self, scope: Scope) -> bool:
        """Whether `scope` needs a token (or a session) at all."""
        if self._sessions is not None and scope is not Scope.WRITE:
            return True
        if scope is Scope.WRITE:
            return bool(self._has & {_Role.WRITE, _Role.TENANT_WRITE})
        if scope is Scope.READ:
            return bool(self._has & {_Role.READ, _Role.ADMIN, _Role.PROXY, _Role.TENANT_READ})
        return _Role.ADMIN in self._has or self.enabled(Scope.WRITE)

    # -- decisions -----------------------------------------------------------------------------------

    def authorize(self, request: Request, scope: Scope) -> Caller:
        """Who the request is for `scope`; raises APIError (401, plain text) if it may not use it.
        One look-up of the token per request: the caller carries its tenant and signing key."""
        if self._sessions is not None and "authorization" not in request.headers:
            session_caller = self._sessions.caller(request, scope)
            if session_caller is not None:
                return session_caller
        if scope is Scope.READ:
            return self._reader(request)
        if not self.enabled(scope):
            return _ANYONE
        grants, reason = self._grants(request)
        roles = {role for role, _ in grants}
        if scope is Scope.WRITE:
            wanted = {_Role.WRITE, _Role.TENANT_WRITE}
        elif _Role.ADMIN in self._has:
            wanted = {_Role.ADMIN}
        else:
            wanted = {_Role.WRITE}  # never a tenant's: admin endpoints act on every tenant's data
        if roles & wanted:
            if scope is Scope.WRITE:
                for role, tenant in grants:
                    if role is _Role.TENANT_WRITE and tenant is not None:
                        return Caller(tenant, self._tenants[tenant].hmac_key)
            return _ANYONE
        if grants:
            reason = (
                "this token may not write"
                if scope is Scope.WRITE
                else ("admin endpoints" if scope is Scope.ADMIN else "silences and templates")
                + " need a token from server.auth.admin_tokens"
                + ("" if _Role.ADMIN in self._has else " (or server.auth.write_tokens while it is empty)")
            )
        raise _unauthorized(reason)

    def _reader(self, request: Request) -> Caller:
        if not self.enabled(Scope.READ):
            return _ANYONE
        grants, reason = self._grants(request)
        roles = {role for role, _ in grants}
        if roles & {_Role.READ, _Role.ADMIN}:
            return _ANYONE
        for role, tenant in grants:
            if role is _Role.TENANT_READ:
                return Caller(tenant)
        if _Role.PROXY in roles:
            return self._proxied(request)
        raise _unauthorized("this token may not read" if grants else reason)

    def _proxied(self, request: Request) -> Caller:
        values = request.headers.getlist(ORG_ID_HEADER)
        if len(values) != 1:
            raise _unauthorized(
                f"a trusted proxy must name exactly one tenant in {ORG_ID_HEADER}, got {len(values)} headers"
            )
        name = values[0].strip()
        if name not in self._tenants:
            raise _unauthorized(f"{ORG_ID_HEADER} names no configured tenant")
        return Caller(name)


class Guarded(Protocol):
    """An API object whose endpoints `requires` guards: it holds the TokenAuth to ask."""

    @property
    def auth(self) -> TokenAuth: ...


G = TypeVar("G", bound=Guarded)
Endpoint = Callable[[G, Request], Awaitable[Response]]
GuardedEndpoint = Callable[[G, Request, Caller], Awaitable[Response]]


def requires(scope: Scope) -> Callable[[GuardedEndpoint[G]], Endpoint[G]]:
    """Guards an endpoint method: the request must be authorized for `scope` (else 401, raised as
    APIError before the endpoint runs), and the endpoint gets the `Caller` it resolved to."""

    def guard(endpoint: GuardedEndpoint[G]) -> Endpoint[G]:
        @functools.wraps(endpoint)
        async def guarded(api: G, request: Request) -> Response:
            return await endpoint(api, request, api.auth.authorize(request, scope))

        return guarded

    return guard


def _check_unambiguous(table: list[tuple[bytes, _Role, str | None]]) -> None:
    """A token's caller must be clear: a tenant's token is that tenant's alone, and a proxy token
    (one tenant, named per request) cannot also read everything."""
    grants: dict[bytes, set[_Grant]] = {}
    for token, role, tenant in table:
        grants.setdefault(token, set()).add((role, tenant))
    for found in grants.values():
        tenants = {tenant for role, tenant in found if role in _TENANT_ROLES}
        if tenants and (len(tenants) > 1 or any(role not in _TENANT_ROLES for role, _ in found)):
            raise ValueError("a tenant's token must not also be another tenant's or a global token")
        roles = {role for role, _ in found}
        if _Role.PROXY in roles and roles & {_Role.READ, _Role.ADMIN}:
            raise ValueError("a trusted proxy token must not also be a read or admin token")


def _unauthorized(reason: str) -> APIError:
    return APIError(
        401,
        "unauthorized",
        f"unauthorized: {reason}",
        text=True,
        headers={"WWW-Authenticate": 'Bearer realm="vigil"'},
    )

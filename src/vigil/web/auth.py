"""Who is calling: bearer tokens for writes, reads and admin endpoints, and whose data a read may see.

The roles a token can have (`server.auth` in `vigil.yml`):

- global write tokens write untenanted data, and run admin endpoints when no admin tokens are set;
- global read tokens and admin tokens read everything, every tenant's data included;
- a tenant's write tokens write as that tenant; its read tokens read that tenant's data and no other;
- trusted proxy tokens read as the tenant the proxy names in `X-Scope-OrgID` (a gateway that
  authenticates users itself, as in front of Mimir). The header is ignored with any other token, so
  no caller picks its own tenant by sending it.

A scope for which no token is configured is open (loopback development: `check_exposure` refuses to
listen elsewhere like that); an open read sees everything. Admin endpoints are never open to a
tenant's token. A presented token is compared with every configured one in constant time, so timing
reveals neither which token matched nor how much of one did.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vigil.config import AuthConfig

__all__ = ["ORG_ID_HEADER", "Reader", "Scope", "Tenant", "TokenAuth"]

ORG_ID_HEADER = "X-Scope-OrgID"


class Scope(Enum):
    WRITE = "write"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Tenant:
    """One tenant's tokens and signing key (`server.auth.tenants.<name>`)."""

    name: str
    write_tokens: Sequence[str] = ()
    read_tokens: Sequence[str] = ()
    hmac_key: str = ""


@dataclass(frozen=True)
class Reader:
    """Whose data a read may see: `tenant`'s alone, or everything when `tenant` is None."""

    tenant: str | None


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


class TokenAuth:
    """Decides what a request's bearer token may do (see the module docstring)."""

    def __init__(
        self,
        write_tokens: Sequence[str],
        read_tokens: Sequence[str],
        tenants: Sequence[Tenant | tuple[str, Sequence[str]]] = (),
        admin_tokens: Sequence[str] = (),
        trusted_proxy_tokens: Sequence[str] = (),
    ) -> None:
        """Raises ValueError if a token is ambiguous: a tenant's token that is also another tenant's
        or a global one, or a proxy token that is also a global reader."""
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
    def from_config(cls, auth: AuthConfig) -> TokenAuth:
        return cls(
            auth.write_tokens,
            auth.read_tokens,
            [Tenant(name, t.write_tokens, t.read_tokens, t.hmac_key) for name, t in auth.tenants],
            auth.admin_tokens,
            auth.trusted_proxy_tokens,
        )

    # -- looking tokens up ---------------------------------------------------------------------------

    def _grants(self, request: Request) -> tuple[set[_Grant], str]:
        """The roles of the request's token (empty if none) and, for that case, why."""
        kind, _, presented = request.headers.get("authorization", "").partition(" ")
        given = presented.strip().encode()
        if kind.lower() != "bearer" or not given:
            return set(), "missing bearer token"
        # A comprehension compares against every token: no early exit for timing to reveal.
        found = {(role, tenant) for token, role, tenant in self._table if hmac.compare_digest(given, token)}
        return found, "invalid bearer token"

    def enabled(self, scope: Scope) -> bool:
        """Whether `scope` needs a token at all."""
        if scope is Scope.WRITE:
            return bool(self._has & {_Role.WRITE, _Role.TENANT_WRITE})
        if scope is Scope.READ:
            return bool(self._has & {_Role.READ, _Role.ADMIN, _Role.PROXY, _Role.TENANT_READ})
        return _Role.ADMIN in self._has or self.enabled(Scope.WRITE)

    def tenant_of(self, request: Request) -> str | None:
        """The tenant a write is made for: the tenant of its token, if any (call after `check`)."""
        grants, _ = self._grants(request)
        return next((tenant for role, tenant in grants if role is _Role.TENANT_WRITE), None)

    def signing_key(self, request: Request, shared: str | None) -> str | None:
        """The HMAC key a write's signature must be made with: its tenant's own key if it has one,
        else `shared` (`server.auth.hmac_key`); None when writes need no signature. Per-tenant keys
        bind a signature to its tenant: one made for tenant A's token is refused with B's."""
        tenant = self.tenant_of(request)
        key = self._tenants[tenant].hmac_key if tenant is not None else ""
        return key or shared or None

    # -- decisions -----------------------------------------------------------------------------------

    def check(self, request: Request, scope: Scope) -> Response | None:
        """None if the request may use `scope`, else the 401 response to send."""
        if scope is Scope.READ:
            reader = self.reader(request)
            return reader if isinstance(reader, Response) else None
        if not self.enabled(scope):
            return None
        grants, reason = self._grants(request)
        roles = {role for role, _ in grants}
        if scope is Scope.WRITE:
            wanted = {_Role.WRITE, _Role.TENANT_WRITE}
        elif _Role.ADMIN in self._has:
            wanted = {_Role.ADMIN}
        else:
            wanted = {_Role.WRITE}  # never a tenant's: admin endpoints act on every tenant's data
        if roles & wanted:
            return None
        if grants:
            reason = (
                "this token may not write"
                if scope is Scope.WRITE
                else "admin endpoints need a token from server.auth.admin_tokens"
                + ("" if _Role.ADMIN in self._has else " (or server.auth.write_tokens while it is empty)")
            )
        return _unauthorized(reason)

    def reader(self, request: Request) -> Reader | Response:
        """Whose data the request may read, or the 401 response to send."""
        if not self.enabled(Scope.READ):
            return Reader(None)
        grants, reason = self._grants(request)
        roles = {role for role, _ in grants}
        if roles & {_Role.READ, _Role.ADMIN}:
            return Reader(None)
        for role, tenant in grants:
            if role is _Role.TENANT_READ:
                return Reader(tenant)
        if _Role.PROXY in roles:
            return self._proxied(request)
        return _unauthorized("this token may not read" if grants else reason)

    def _proxied(self, request: Request) -> Reader | Response:
        values = request.headers.getlist(ORG_ID_HEADER)
        if len(values) != 1:
            return _unauthorized(
                f"a trusted proxy must name exactly one tenant in {ORG_ID_HEADER}, got {len(values)} headers"
            )
        name = values[0].strip()
        if name not in self._tenants:
            return _unauthorized(f"{ORG_ID_HEADER} names no configured tenant")
        return Reader(name)


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


def _unauthorized(reason: str) -> Response:
    return PlainTextResponse(
        f"unauthorized: {reason}\n", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="vigil"'}
    )

"""Who may do what: `TokenAuth`'s decisions, admin endpoints, per-tenant HMAC keys and `X-Scope-OrgID`,
through the application `vigil server` builds (`build_app`) where a path is involved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from tests.web.asgi import Client
from tests.web.test_tenants import Server, data
from vigil.cmd.server import build_app
from vigil.config import config_from_yaml
from vigil.events.store import EventStore
from vigil.ship import signing
from vigil.tsdb.db import DB, Options
from vigil.web.auth import Caller, Scope, Tenant, TokenAuth
from vigil.web.errors import APIError


def request(token: str | None = None, *extra: tuple[str, str]) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
    headers += [(k.lower().encode(), v.encode()) for k, v in extra]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def decide(auth: TokenAuth, req: Request, scope: Scope) -> Caller | APIError:
    """The caller `req` is for `scope`, or the 401 refusing it."""
    try:
        return auth.authorize(req, scope)
    except APIError as exc:
        assert exc.status == 401 and exc.text and exc.headers == {"WWW-Authenticate": 'Bearer realm="vigil"'}
        return exc


def allowed(auth: TokenAuth, req: Request, scope: Scope) -> bool:
    return isinstance(decide(auth, req, scope), Caller)


def reader(auth: TokenAuth, req: Request) -> Caller | None:
    got = decide(auth, req, Scope.READ)
    return got if isinstance(got, Caller) else None


def refusal(auth: TokenAuth, req: Request, scope: Scope = Scope.READ) -> str:
    got = decide(auth, req, scope)
    assert isinstance(got, APIError)
    return got.message


def write_tenant(auth: TokenAuth, req: Request) -> str | None:
    got = decide(auth, req, Scope.WRITE)
    return got.tenant if isinstance(got, Caller) else None


AUTH = TokenAuth(
    ["w"],
    ["r"],
    [Tenant("acme", ["acme-w"], ["acme-r"], "acme-key"), ("beta", ["beta-w"])],  # a pair: write tokens
    admin_tokens=["adm"],
    trusted_proxy_tokens=["proxy"],
)


@pytest.mark.parametrize(
    ("token", "write", "read", "admin", "tenant"),
    [
        ("w", True, None, False, None),
        ("r", False, Caller(None), False, None),
        ("adm", False, Caller(None), True, None),
        ("acme-w", True, None, False, "acme"),
        ("acme-r", False, Caller("acme"), False, None),
        ("beta-w", True, None, False, "beta"),
        ("proxy", False, None, False, None),  # a proxy must name the tenant
        ("nope", False, None, False, None),
        (None, False, None, False, None),
    ],
)
def test_token_roles(
    token: str | None, write: bool, read: Caller | None, admin: bool, tenant: str | None
) -> None:
    req = request(token)
    assert allowed(AUTH, req, Scope.WRITE) is write
    assert reader(AUTH, req) == read
    assert allowed(AUTH, req, Scope.READ) is (read is not None)
    assert allowed(AUTH, req, Scope.ADMIN) is admin
    assert write_tenant(AUTH, req) == tenant


def test_open_scopes_and_the_admin_fallback() -> None:
    # Nothing configured: everything open, an open read sees everything (loopback development).
    none = TokenAuth([], [])
    assert reader(none, request()) == Caller(None)
    assert allowed(none, request(), Scope.WRITE) and allowed(none, request(), Scope.ADMIN)
    # No admin tokens: admin endpoints take the global write tokens, never a tenant's.
    plain = TokenAuth(["w"], [], [("acme", ["acme-w"])])
    assert allowed(plain, request("w"), Scope.ADMIN)
    assert "server.auth.admin_tokens" in refusal(plain, request("acme-w"), Scope.ADMIN)
    # Only tenants write: no token may run admin endpoints until admin tokens are configured.
    tenants_only = TokenAuth([], [], [("acme", ["acme-w"])])
    assert not allowed(tenants_only, request("acme-w"), Scope.ADMIN)
    assert not allowed(tenants_only, request(), Scope.ADMIN)
    # Reads stay open while no read-capable token exists (as before tenants could read).
    assert reader(tenants_only, request()) == Caller(None)
    # A tenant read token turns read authentication on.
    readers = TokenAuth([], [], [Tenant("acme", read_tokens=["acme-r"])])
    assert reader(readers, request()) is None
    assert reader(readers, request("acme-r")) == Caller("acme")


def test_org_id_header_is_honoured_from_a_trusted_proxy_only() -> None:
    org = "X-Scope-OrgID"
    assert reader(AUTH, request("proxy", (org, "acme"))) == Caller("acme")
    assert reader(AUTH, request("proxy", (org, " beta "))) == Caller("beta")
    for refused in [request("proxy"), request("proxy", (org, "gamma")), request("proxy", (org, "acme|beta"))]:
        assert reader(AUTH, refused) is None
    assert "exactly one tenant" in refusal(AUTH, request("proxy", (org, "acme"), (org, "beta")))
    # Any other token: the header is ignored, never a way to choose (or widen) a tenant.
    assert reader(AUTH, request("acme-r", (org, "beta"))) == Caller("acme")
    assert reader(AUTH, request("r", (org, "acme"))) == Caller(None)
    assert reader(AUTH, request(None, (org, "acme"))) is None
    assert reader(AUTH, request("acme-w", (org, "acme"))) is None
    # A proxy token writes nothing.
    assert not allowed(AUTH, request("proxy", (org, "acme")), Scope.WRITE)
    # Without trusted proxies configured, the header means nothing at all.
    no_proxy = TokenAuth(["w"], ["r"], [Tenant("acme", read_tokens=["acme-r"])])
    assert reader(no_proxy, request("proxy", (org, "acme"))) is None
    assert reader(no_proxy, request("r", (org, "acme"))) == Caller(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenants": [("acme", ["t"]), ("beta", ["t"])]},
        {"tenants": [Tenant("acme", ["t"]), Tenant("beta", read_tokens=["t"])]},
        {"tenants": [("acme", ["t"])], "read_tokens": ["t"]},
        {"tenants": [("acme", ["t"])], "write_tokens": ["t"]},
        {"tenants": [("acme", ["t"])], "admin_tokens": ["t"]},
        {"read_tokens": ["p"], "trusted_proxy_tokens": ["p"]},
        {"admin_tokens": ["p"], "trusted_proxy_tokens": ["p"]},
    ],
)
def test_ambiguous_tokens_are_refused(kwargs: dict[str, object]) -> None:
    args = {"write_tokens": [], "read_tokens": [], **kwargs}
    with pytest.raises(ValueError):
        TokenAuth(**args)  # type: ignore[arg-type]


def test_a_global_token_may_have_several_global_roles() -> None:
    auth = TokenAuth(["all"], ["all"], admin_tokens=["all"])
    assert allowed(auth, request("all"), Scope.WRITE)
    assert reader(auth, request("all")) == Caller(None)
    assert allowed(auth, request("all"), Scope.ADMIN)


def test_signing_key_is_the_tenants_own() -> None:
    def key(token: str, shared: str | None) -> str | None:
        return AUTH.authorize(request(token), Scope.WRITE).signing_key(shared)

    assert key("acme-w", "shared") == "acme-key"
    assert key("w", "shared") == "shared"
    assert key("w", None) is None
    assert key("acme-w", None) == "acme-key"  # signed even without a shared key


# -- through the application -------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.close()


def _compact(s: Server, token: str | None) -> int:
    return s.request("POST", "/api/v1/admin/tsdb/compact", token).status_code


def test_admin_compact_needs_an_admin_token(server: Server) -> None:
    for token in ["acme-w", "acme-r", "global-w", "global-r", "proxy", "nope", None]:
        assert _compact(server, token) == 401, token
    assert _compact(server, "admin") == 204


@pytest.mark.parametrize(
    ("auth_yaml", "allowed", "refused"),
    [
        # No admin tokens: the global write tokens, never a tenant's.
        ("write_tokens: [global-w]\n    tenants:\n      acme: [acme-w]\n", ["global-w"], ["acme-w", None]),
        ("tenants:\n      acme: [acme-w]\n", [], ["acme-w", None]),
        ("read_tokens: [global-r]\n", [None], []),  # writes open: so is compaction, as before
    ],
)
def test_admin_compact_without_admin_tokens(
    tmp_path: Path, auth_yaml: str, allowed: list[str | None], refused: list[str | None]
) -> None:
    s = Server(tmp_path, "server:\n  auth:\n    " + auth_yaml)
    try:
        for token in allowed:
            assert _compact(s, token) == 204, token
        for token in refused:
            assert _compact(s, token) == 401, token
    finally:
        s.close()


HMAC_CONFIG = """
server:
  auth:
    write_tokens: [global-w]
    read_tokens: [global-r]
    hmac_key: global-key
    tenants:
      acme: {write_tokens: [acme-w], hmac_key: acme-key}
      beta: {write_tokens: [beta-w], hmac_key: beta-key}
"""


@pytest.mark.parametrize(
    ("path", "body", "ctype"),
    [
        ("/api/v1/import/prometheus", b"m 1\n", "text/plain"),
        (
            "/api/v1/events",
            b'{"id":"x","time_ms":%d,"kind":"auth","message":"m"}\n' % (int(time.time() * 1000) - 1000),
            "application/x-ndjson",
        ),
    ],
    ids=["import", "events"],  # fixed ids: the body holds the time, and xdist's workers must agree
)
def test_hmac_signature_is_bound_to_the_tenant(tmp_path: Path, path: str, body: bytes, ctype: str) -> None:
    s = Server(tmp_path, HMAC_CONFIG)
    try:

        def post(token: str, key: str | None) -> int:
            signed = signing.sign(key, body, time.time()) if key else {}
            headers = {"Content-Type": ctype, **signed}
            return s.request("POST", path, token, content=body, headers=headers).status_code

        ok = 204 if path.endswith("prometheus") else 200
        # A signature made for tenant acme's token is refused with beta's, and with the global token.
        assert post("beta-w", "acme-key") == 401
        assert post("global-w", "acme-key") == 401
        assert post("acme-w", "global-key") == 401  # nor the shared key for a tenant
        assert post("acme-w", None) == 401
        r = s.request(
            "POST",
            path,
            "beta-w",
            content=body,
            headers={"Content-Type": ctype, **signing.sign("acme-key", body, time.time())},
        )
        assert "signature mismatch" in r.text
        assert post("acme-w", "acme-key") == ok
        assert post("beta-w", "beta-key") == ok
        assert post("global-w", "global-key") == ok
    finally:
        s.close()


def test_trusted_proxy_reads_as_the_named_tenant(server: Server) -> None:
    server.write('m{instance="acme-1"} 1\n', "acme-w")
    server.write('m{instance="beta-1"} 1\n', "beta-w")
    server.write('m{instance="core"} 1\n', "global-w")
    org = "X-Scope-OrgID"

    def values(token: str | None, *headers: tuple[str, str]) -> object:
        r = server.client.request(
            "GET",
            "/api/v1/label/instance/values",
            headers=[*([("Authorization", f"Bearer {token}")] if token else []), *headers],
        )
        return data(r) if r.status_code == 200 else r.status_code

    assert values("proxy", (org, "acme")) == ["acme-1"]
    assert values("proxy", (org, "beta")) == ["beta-1"]
    assert values("proxy") == 401
    assert values("proxy", (org, "gamma")) == 401
    assert values("proxy", (org, "acme"), (org, "beta")) == 401
    assert values("acme-r", (org, "beta")) == ["acme-1"]  # ignored with a tenant's token
    assert values("global-r", (org, "acme")) == ["acme-1", "beta-1", "core"]  # and with a global one
    assert values(None, (org, "acme")) == 401
    r = server.client.request(
        "GET", "/api/v1/query", params={"query": "m"}, headers={"Authorization": "Bearer proxy", org: "beta"}
    )
    assert [x["metric"]["instance"] for x in data(r)["result"]] == ["beta-1"]


def test_the_configuration_reaches_the_server(tmp_path: Path) -> None:
    # The shorthand and the new form side by side, as `vigil server` reads them.
    cfg = config_from_yaml(
        "server:\n  auth:\n    tenants:\n      acme: [acme-w]\n"
        "      beta: {write_tokens: [beta-w], read_tokens: [beta-r]}\n"
    )
    db = DB(tmp_path / "data", Options(fsync=False))
    events = EventStore(tmp_path / "events.db", 86_400_000)
    try:
        c = Client(build_app(cfg, db, CollectorRegistry(), events))
        for token, text in [("acme-w", "m 1\n"), ("beta-w", "m 2\n")]:
            r = c.post(
                "/api/v1/import/prometheus", content=text, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 204, r.text
        r = c.get("/api/v1/query", params={"query": "m"}, headers={"Authorization": "Bearer beta-r"})
        assert [(x["metric"]["tenant"], x["value"][1]) for x in data(r)["result"]] == [("beta", "2")]
        # acme's shorthand tokens write only; reads need a read token now that one exists.
        assert (
            c.get(
                "/api/v1/query", params={"query": "m"}, headers={"Authorization": "Bearer acme-w"}
            ).status_code
            == 401
        )
        assert c.get("/api/v1/query", params={"query": "m"}).status_code == 401
    finally:
        events.close()
        db.close()

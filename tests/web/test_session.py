"""UI login sessions: `/login`, `/logout`, session cookies on `@requires` endpoints, CSRF, rate limits.

Most tests run an application of the real parts (SessionAuth, TokenAuth, LoginAPI) with an injected
clock and a cheap argon2 hasher that counts its verifies, plus a small API whose endpoints need
READ, EDIT and ADMIN and answer with the Caller they got. The tenant test goes through `build_app`,
the application `vigil server` runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import argon2
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from vigil.cmd.server import build_app
from vigil.config import Config, config_from_yaml
from vigil.tsdb.db import DB, Options
from vigil.web.app import create_app
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.login import LoginAPI, LoginLimiter, Passwords, source_key
from vigil.web.session import (
    COOKIE,
    SessionAuth,
    SessionStore,
    User,
    login_redirect,
    safe_next,
    users_from_config,
)

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only: fast hashes
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "tina": "tina-pw"}
ROLES = {"alice": "admin", "bob": "viewer", "carol": "editor", "tina": "viewer"}


def users_yaml(hasher: argon2.PasswordHasher = CHEAP) -> str:
    lines = []
    for name, pw in PASSWORDS.items():
        tenant = ", tenant: acme" if name == "tina" else ""
        lines.append(
            f"      - {{name: {name}, password_hash: '{hasher.hash(pw)}', role: {ROLES[name]}{tenant}}}"
        )
    return "\n".join(lines)


USERS = users_yaml()


def config(
    extra_server: str = "", users: bool = True, listen: str = "127.0.0.1:9400", tenant_reader: bool = True
) -> Config:
    text = f"""
server:
  listen: "{listen}"
  insecure: true
{extra_server}
  auth:
    write_tokens: [writer]
    tenants:
      acme: {{write_tokens: [acme-w]{", read_tokens: [acme-r]" if tenant_reader else ""}}}
    users:
{USERS if users else "      []"}
"""
    return config_from_yaml(text, "vigil.yml")


class Clock:
    def __init__(self) -> None:
        self.t = 10_000.0

    def __call__(self) -> float:
        return self.t


class SpyHasher(argon2.PasswordHasher):
    """The cheap hasher, recording every hash it verifies against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified: list[argon2.Parameters] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(argon2.extract_parameters(hash if isinstance(hash, str) else hash.decode()))
        return super().verify(hash, password)


class Probe:
    """Endpoints of each scope, answering with the Caller they were given."""

    def __init__(self, auth: TokenAuth, sessions: SessionAuth) -> None:
        self.auth, self.sessions = auth, sessions

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/probe/read", self.read, methods=["GET", "POST"]),
            Route("/probe/edit", self.edit, methods=["POST"]),
            Route("/probe/admin", self.admin, methods=["POST"]),
            Route("/probe/write", self.write, methods=["POST"]),
            Route("/page", self.sessions.require_session(self.page), methods=["GET", "POST"]),
            Route("/guarded-page", self.guarded_page, methods=["GET"]),
        ]

    @login_redirect
    @requires(Scope.READ)
    async def guarded_page(self, _: Request, caller: Caller) -> Response:
        return PlainTextResponse(f"page for {caller.user} of {caller.tenant}")

    @staticmethod
    def _answer(caller: Caller) -> Response:
        return JSONResponse({"tenant": caller.tenant, "user": caller.user})

    @requires(Scope.READ)
    async def read(self, _: Request, caller: Caller) -> Response:
        return self._answer(caller)

    @requires(Scope.EDIT)
    async def edit(self, _: Request, caller: Caller) -> Response:
        return self._answer(caller)

    @requires(Scope.ADMIN)
    async def admin(self, _: Request, caller: Caller) -> Response:
        return self._answer(caller)

    @requires(Scope.WRITE)
    async def write(self, _: Request, caller: Caller) -> Response:
        return self._answer(caller)

    async def page(self, request: Request, user: User | None) -> Response:
        form = getattr(request.state, "form", None)
        return PlainTextResponse(f"page for {user.name if user else '-'} form={form}")


class Rig:
    """The application of the real parts, with the clock and hasher of the test."""

    def __init__(self, cfg: Config, clock: Clock, hasher: SpyHasher | None = None) -> None:
        self.clock, self.hasher = clock, hasher or SpyHasher()
        self.sessions = SessionAuth.from_config(cfg, clock)
        self.auth = TokenAuth.from_config(cfg.server.auth, self.sessions)
        s = cfg.server.session
        self.limiter = LoginLimiter(
            s.max_login_failures, s.login_failure_window / 1000, max_keys=50, clock=clock
        )
        self.login_api = LoginAPI(
            self.sessions, Passwords(users_from_config(cfg.server.auth.users), self.hasher), self.limiter
        )
        self.app = create_app([self.login_api, Probe(self.auth, self.sessions)], registry=None)


class Browser:
    """A client keeping cookies, from one source address, against an ASGI app."""

    def __init__(self, app: Any, client: tuple[str, int] = ("192.0.2.10", 40000), base: str = "http://vigil"):
        self.app, self.client, self.base = app, client, base
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=self.client)
            async with httpx.AsyncClient(transport=transport, base_url=self.base) as c:
                headers = dict(kwargs.pop("headers", {}))
                if self.cookies:
                    headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
                return await c.request(method, url, headers=headers, **kwargs)

        r = asyncio.run(go())
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if "max-age=0" in header.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def login(self, name: str, password: str, next_: str = "/", **kwargs: Any) -> httpx.Response:
        form = self.request("GET", "/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None, form.text
        data = {"username": name, "password": password, "next": next_, "login_token": token.group(1)}
        return self.request("POST", "/login", data=data, **kwargs)

    def csrf(self, _: Rig) -> str:
        r = self.request("GET", "/api/v1/session")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", r.text
        token: str = r.json()["csrf_token"]
        return token


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rig(clock: Clock) -> Rig:
    return Rig(config(), clock)


# -- login --------------------------------------------------------------------------------------------


def test_login_success_sets_a_strict_cookie_and_the_session_reads(rig: Rig) -> None:
    b = Browser(rig.app)
    r = b.login("bob", "bob-pw", next_="/page?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/page?x=1"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attrs
    assert "secure" not in attrs  # plain http, secure_cookie: auto
    assert len(b.cookies[COOKIE]) == 43  # 256 random bits
    assert b.request("GET", "/probe/read").json() == {"tenant": None, "user": "bob"}
    assert b.request("GET", "/page").text == "page for bob form=None"


def test_login_page_is_escaped_and_has_no_inline_script(rig: Rig) -> None:
    r = Browser(rig.app).request("GET", '/login?next=/x"><script>alert(1)</script>')
    assert r.status_code == 200
    assert "<script" not in r.text and "&lt;script&gt;" in r.text and 'value="/x&quot;&gt;' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert "style=" not in r.text and "<style" not in r.text


def test_wrong_password_and_unknown_user_take_the_same_steps(rig: Rig) -> None:
    b = Browser(rig.app)
    wrong, unknown = b.login("bob", "nope"), b.login("mallory", "nope")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda t: re.sub(r'value="[^"]+"', "", t)  # noqa: E731 - the form's fresh token differs
    assert strip(wrong.text) == strip(unknown.text)
    # One verify each, with the same argon2 parameters: the unknown name is checked against a dummy.
    assert len(rig.hasher.verified) == 2
    assert rig.hasher.verified[0] == rig.hasher.verified[1]
    assert COOKIE not in b.cookies


def test_login_refused_without_the_form_token_or_from_another_origin(rig: Rig) -> None:
    b = Browser(rig.app)
    r = b.request("POST", "/login", data={"username": "bob", "password": "bob-pw", "login_token": "forged"})
    assert r.status_code == 403 and COOKIE not in b.cookies
    r = b.login("bob", "bob-pw", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and COOKIE not in b.cookies
    assert rig.hasher.verified == []  # refused before any hash is checked


def test_login_rate_limited_per_address_then_recovers(rig: Rig, clock: Clock) -> None:
    b = Browser(rig.app)
    for _ in range(5):
        assert b.login("bob", "nope").status_code == 401
    verifies = len(rig.hasher.verified)
    r = b.login("bob", "bob-pw")  # even the right password: the address is locked
    assert r.status_code == 429 and r.headers["retry-after"] == "300"
    assert len(rig.hasher.verified) == verifies  # no hash checked while locked
    other = Browser(rig.app, client=("192.0.2.99", 1))
    assert other.login("carol", "carol-pw").status_code == 303  # another address, another user
    clock.t += 120
    assert b.login("carol", "carol-pw").headers["retry-after"] == "180"
    clock.t += 180
    assert b.login("bob", "bob-pw").status_code == 303


def test_concurrent_guesses_are_limited_as_strictly_as_sequential_ones(rig: Rig) -> None:
    # 30 wrong passwords sent at once: each request used to pass the limit check before the first
    # failure was counted, so all 30 were checked against the 5 a window allows.
    b = Browser(rig.app)
    form = b.request("GET", "/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None
    data = {"username": "bob", "password": "nope", "next": "/", "login_token": token.group(1)}
    cookie = "; ".join(f"{k}={v}" for k, v in b.cookies.items())

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=rig.app, client=b.client)
        async with httpx.AsyncClient(transport=transport, base_url=b.base) as c:
            rs = await asyncio.gather(
                *(c.post("/login", data=data, headers={"Cookie": cookie}) for _ in range(30))
            )
        return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert sorted(codes) == [401] * 5 + [429] * 25
    assert len(rig.hasher.verified) == 5
    assert b.login("bob", "bob-pw").status_code == 429  # the window is full


def test_a_success_does_not_count_as_a_failure(rig: Rig) -> None:
    b = Browser(rig.app)
    for _ in range(4):
        assert b.login("bob", "nope").status_code == 401
    assert b.login("carol", "carol-pw").status_code == 303  # the 5th attempt, a success
    assert b.login("bob", "nope").status_code == 401  # so the address has one failure left


def test_login_rate_limited_per_user_name_across_addresses(rig: Rig, clock: Clock) -> None:
    for i in range(5):
        assert Browser(rig.app, client=(f"198.51.100.{i}", 1)).login("alice", "nope").status_code == 401
    fresh = Browser(rig.app, client=("203.0.113.5", 1))
    assert fresh.login("alice", "alice-pw").status_code == 429
    assert fresh.login("bob", "bob-pw").status_code == 303  # the address itself is fine
    clock.t += 300
    assert fresh.login("alice", "alice-pw").status_code == 303


def test_login_tracking_table_is_bounded(rig: Rig) -> None:
    for i in range(80):  # rig's limiter holds 50 keys
        Browser(rig.app, client=(f"10.0.{i // 250}.{i % 250}", 1)).login(f"u{i}", "x")
    assert len(rig.limiter) == 50


def test_ipv6_sources_are_limited_by_prefix() -> None:
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:1") == "addr:2001:db8::/64"
    assert source_key("::ffff:192.0.2.1") == "addr:192.0.2.1"
    assert source_key("192.0.2.1") == "addr:192.0.2.1"


def test_outdated_hash_parameters_are_reported_once(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    rig = Rig(config(), clock, hasher=None)
    rig.login_api.passwords = Passwords(
        users_from_config(config().server.auth.users), argon2.PasswordHasher(time_cost=2, memory_cost=16)
    )
    for _ in range(2):
        Browser(rig.app).login("bob", "bob-pw")
    warnings = [r for r in caplog.records if "weaker parameters" in r.getMessage()]
    assert len(warnings) == 1 and "bob" in warnings[0].getMessage()


# -- sessions ----------------------------------------------------------------------------------------


def test_session_ends_after_idle_timeout(rig: Rig, clock: Clock) -> None:
    b = Browser(rig.app)
    b.login("bob", "bob-pw")
    clock.t += 3599
    assert b.request("GET", "/probe/read").status_code == 200  # used: the idle clock restarts
    clock.t += 3599
    assert b.request("GET", "/probe/read").status_code == 200
    clock.t += 3600
    r = b.request("GET", "/probe/read")
    assert r.status_code == 401 and "login session" in r.text
    assert len(rig.sessions.store) == 0


def test_session_ends_after_ttl_even_in_use(rig: Rig, clock: Clock) -> None:
    b = Browser(rig.app)
    start = clock.t
    b.login("bob", "bob-pw")
    for _ in range(13):  # used every 3500 s: never idle for an hour
        assert b.request("GET", "/probe/read").status_code == 200
        clock.t += 3500
    clock.t = start + 43_199
    assert b.request("GET", "/probe/read").status_code == 200
    clock.t = start + 43_200
    assert b.request("GET", "/probe/read").status_code == 401  # 12 h after the login


def test_logout_invalidates_the_session(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("bob", "bob-pw")
    stolen = b.cookies[COOKIE]
    assert b.request("POST", "/logout", data={"csrf_token": "wrong"}).status_code == 403
    r = b.request("POST", "/logout", data={"csrf_token": b.csrf(rig)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert COOKIE not in b.cookies
    replay = Browser(rig.app)
    replay.cookies[COOKIE] = stolen
    assert replay.request("GET", "/probe/read").status_code == 401


def test_a_new_login_replaces_the_old_session(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("bob", "bob-pw")
    first = b.cookies[COOKIE]
    b.login("carol", "carol-pw")
    assert b.cookies[COOKIE] != first and rig.sessions.store.get(first) is None


def test_session_table_is_bounded(clock: Clock) -> None:
    rig = Rig(config("  session: {max_sessions: 3}"), clock)
    browsers = [Browser(rig.app, client=(f"192.0.2.{i}", 1)) for i in range(5)]
    for b in browsers:
        clock.t += 1
        assert b.login("bob", "bob-pw").status_code == 303
    assert len(rig.sessions.store) == 3
    assert [b.request("GET", "/probe/read").status_code for b in browsers] == [401, 401, 200, 200, 200]


def test_session_store_forgets_forged_and_odd_ids(clock: Clock) -> None:
    store = SessionStore(60, 60, 10, clock)
    session = store.create(User("bob", "viewer", "h"))
    assert store.get(session.id) is session
    for forged in ("", "x" * 43, session.id + "A", session.id[:-1], "é" * 43, "../" * 20):
        assert store.get(forged) is None


# -- scopes and CSRF ---------------------------------------------------------------------------------


def test_roles_map_onto_scopes(rig: Rig) -> None:
    expected = {"bob": (200, 403, 403), "carol": (200, 200, 403), "alice": (200, 200, 200)}
    for name, codes in expected.items():
        b = Browser(rig.app, client=(f"192.0.2.{len(name)}", 1))
        b.login(name, PASSWORDS[name])
        h = {"X-CSRF-Token": b.csrf(rig)}
        got = (
            b.request("GET", "/probe/read").status_code,
            b.request("POST", "/probe/edit", headers=h).status_code,
            b.request("POST", "/probe/admin", headers=h).status_code,
        )
        assert got == codes, name


def test_state_changing_request_with_a_cookie_needs_the_csrf_token(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("alice", "alice-pw")
    assert b.request("GET", "/probe/read").status_code == 200  # reads need none
    missing = b.request("POST", "/probe/edit")
    assert missing.status_code == 403 and "missing CSRF token" in missing.text
    wrong = b.request("POST", "/probe/edit", headers={"X-CSRF-Token": "A" * 43})
    assert wrong.status_code == 403 and "wrong CSRF token" in wrong.text
    assert b.request("POST", "/probe/read").status_code == 403  # a POST read too
    ok = b.request("POST", "/probe/edit", headers={"X-CSRF-Token": b.csrf(rig)})
    assert ok.status_code == 200 and ok.json()["user"] == "alice"
    cross = b.request(
        "POST", "/probe/edit", headers={"X-CSRF-Token": b.csrf(rig), "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "cross-origin" in cross.text
    same = b.request("POST", "/probe/edit", headers={"X-CSRF-Token": b.csrf(rig), "Origin": "http://vigil"})
    assert same.status_code == 200


def test_ui_page_form_csrf(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("bob", "bob-pw")
    assert b.request("POST", "/page", data={"a": "1"}).status_code == 403
    assert b.request("POST", "/page", data={"a": "1", "csrf_token": "nope"}).status_code == 403
    r = b.request("POST", "/page", data={"a": "1", "csrf_token": b.csrf(rig)})
    assert r.status_code == 200 and r.text == f"page for bob form={{'a': '1', 'csrf_token': '{b.csrf(rig)}'}}"
    twice = f"csrf_token={b.csrf(rig)}&csrf_token=x"
    r = b.request(
        "POST", "/page", content=twice, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400 and "given twice" in r.text
    r = b.request(
        "POST", "/page", content=b"\xff\xfe=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400 and "UTF-8" in r.text
    r = b.request("POST", "/page", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415


def test_bearer_tokens_need_no_csrf_and_ignore_the_cookie(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("bob", "bob-pw")  # a viewer's cookie, sent along with the writer's token
    r = b.request("POST", "/probe/admin", headers={"Authorization": "Bearer writer"})
    assert r.status_code == 200 and r.json() == {"tenant": None, "user": None}
    anonymous = Browser(rig.app)
    # EDIT goes with tokens as ADMIN does: the writer's token (no admin tokens set), never a tenant's.
    assert (
        anonymous.request("POST", "/probe/edit", headers={"Authorization": "Bearer writer"}).status_code
        == 200
    )
    refused = anonymous.request("POST", "/probe/edit", headers={"Authorization": "Bearer acme-r"})
    assert refused.status_code == 401 and "silences and templates need" in refused.text
    assert anonymous.request("GET", "/probe/read", headers={"Authorization": "Bearer acme-r"}).json() == {
        "tenant": "acme",
        "user": None,
    }
    # Sessions never write: the cookie gives no write access, the writer's token still does.
    assert b.request("POST", "/probe/write", headers={"X-CSRF-Token": b.csrf(rig)}).status_code == 401
    assert (
        anonymous.request("POST", "/probe/write", headers={"Authorization": "Bearer writer"}).status_code
        == 200
    )


def test_users_make_reads_and_admin_need_a_token_or_session(clock: Clock) -> None:
    with_users = Rig(config(tenant_reader=False), clock)
    without = Rig(config(users=False, tenant_reader=False), clock)
    assert Browser(with_users.app).request("GET", "/probe/read").status_code == 401
    assert Browser(with_users.app).request("POST", "/probe/edit").status_code == 401
    # Without users, today's behaviour: reads open on loopback (no read token configured).
    assert Browser(without.app).request("GET", "/probe/read").status_code == 200


def test_tenant_user_gets_the_tenant_caller(rig: Rig) -> None:
    b = Browser(rig.app)
    b.login("tina", "tina-pw")
    assert b.request("GET", "/probe/read").json() == {"tenant": "acme", "user": "tina"}


# -- the cookie's Secure flag --------------------------------------------------------------------------


def _session_cookie(r: httpx.Response) -> str:
    return next(h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")).lower()


def test_secure_cookie_over_tls_and_when_configured(clock: Clock) -> None:
    rig = Rig(config(), clock)
    tls = Browser(rig.app, base="https://vigil")
    assert "; secure" in _session_cookie(tls.login("bob", "bob-pw"))
    # A client's own X-Forwarded-Proto changes nothing: only uvicorn (for a proxy it trusts) sets https.
    plain = Browser(rig.app, client=("192.0.2.50", 1))
    assert "; secure" not in _session_cookie(
        plain.login("bob", "bob-pw", headers={"X-Forwarded-Proto": "https"})
    )
    forced = Rig(config("  session: {secure_cookie: true}"), clock)
    assert "; secure" in _session_cookie(Browser(forced.app).login("bob", "bob-pw"))
    external = Rig(config('  external_url: "https://vigil.example.com/"'), clock)
    assert "; secure" in _session_cookie(Browser(external.app).login("bob", "bob-pw"))


# -- pages and redirects ---------------------------------------------------------------------------------


def test_pages_redirect_to_login_with_the_page_as_next(rig: Rig) -> None:
    r = Browser(rig.app).request("GET", "/page?q=up&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fpage%3Fq%3Dup%26x%3D1"
    assert Browser(rig.app).request("POST", "/page", data={"a": "1"}).status_code == 401


def test_guarded_pages_redirect_to_login_and_get_the_caller(rig: Rig) -> None:
    b = Browser(rig.app)
    r = b.request("GET", "/guarded-page?range=1h")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fguarded-page%3Frange%3D1h"
    wrong = b.request("GET", "/guarded-page", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401  # a script with a wrong token gets the refusal, not a page
    b.login("tina", "tina-pw")
    assert b.request("GET", "/guarded-page").text == "page for tina of acme"


def test_pages_open_on_loopback_without_users(clock: Clock) -> None:
    rig = Rig(config(users=False), clock)
    b = Browser(rig.app)
    assert b.request("GET", "/page").text == "page for - form=None"
    # A form post without a session has no token to check: it must come from this server.
    assert b.request("POST", "/page", data={"a": "1"}).status_code == 403
    assert (
        b.request("POST", "/page", data={"a": "1"}, headers={"Origin": "https://evil.example"}).status_code
        == 403
    )
    ok = b.request("POST", "/page", data={"a": "1"}, headers={"Origin": "http://vigil"})
    assert ok.status_code == 200


def test_pages_need_a_session_off_loopback_even_without_users(clock: Clock) -> None:
    rig = Rig(config(users=False, listen="0.0.0.0:9400"), clock)
    assert Browser(rig.app).request("GET", "/page").status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil",
        "http:/evil",
        "/\t/evil",
        "javascript:alert(1)",
        "evil.example",
        "/%0d%0aX:1\r\n",
        "",
        "///evil",
    ],
)
def test_open_redirects_refused(rig: Rig, target: str) -> None:
    assert safe_next(target) == "/"
    r = Browser(rig.app).login("bob", "bob-pw", next_=target)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_same_origin_paths_are_kept() -> None:
    assert safe_next("/explore?q=rate(x[5m])#g") == "/explore?q=rate(x[5m])#g"


# -- hostile bodies -----------------------------------------------------------------------------------


def test_huge_and_odd_login_bodies(rig: Rig) -> None:
    b = Browser(rig.app)
    form = "application/x-www-form-urlencoded"
    assert (
        b.request(
            "POST", "/login", content=b"a=" + b"x" * 100_000, headers={"Content-Type": form}
        ).status_code
        == 413
    )

    async def chunks() -> Any:  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b"x" * 1000

    assert b.request("POST", "/login", content=chunks(), headers={"Content-Type": form}).status_code == 413
    fields = "&".join(f"f{i}=1" for i in range(200))
    assert b.request("POST", "/login", content=fields, headers={"Content-Type": form}).status_code == 400
    assert (
        b.request("POST", "/login", content=b"username=\xc3(", headers={"Content-Type": form}).status_code
        == 400
    )
    assert b.request("POST", "/login", json={"username": "bob"}).status_code == 415
    long_pw = b.login("bob", "x" * 2000)
    assert long_pw.status_code == 400
    assert rig.hasher.verified == []


def test_odd_cookies_are_no_session(rig: Rig) -> None:
    for cookie in (
        f"{COOKIE}=",
        f"{COOKIE}=\x00\x01",
        f"{COOKIE}={'A' * 5000}",
        f'{COOKIE}="a;b"',
        "garbage",
    ):
        b = Browser(rig.app)
        r = b.request("GET", "/probe/read", headers={"Cookie": cookie})
        assert r.status_code == 401


# -- through build_app: a tenant user's queries -------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, DB]]:
    db = DB(tmp_path / "data", Options(fsync=False))
    app = build_app(config(), db, CollectorRegistry())
    yield app, db
    db.close()


def test_tenant_user_sees_only_the_tenant_series(served: tuple[Any, DB]) -> None:
    app, _ = served
    writer = Browser(app)
    for token, text in (
        ("acme-w", 'secret_metric{who="acme"} 1\n'),
        ("writer", 'secret_metric{who="ops"} 2\n'),
    ):
        r = writer.request(
            "POST", "/api/v1/import/prometheus", content=text, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 204, r.text
    tina, alice = Browser(app), Browser(app, client=("192.0.2.77", 1))
    assert tina.login("tina", "tina-pw").status_code == 303
    assert alice.login("alice", "alice-pw").status_code == 303

    def who(b: Browser) -> list[str]:
        r = b.request("GET", "/api/v1/query", params={"query": '{__name__=~".+"}'})
        assert r.status_code == 200, r.text
        return sorted(s["metric"].get("who", "") for s in r.json()["data"]["result"])

    assert who(tina) == ["acme"]
    assert who(alice) == ["acme", "ops"]
    assert json.loads(tina.request("GET", "/api/v1/label/who/values").text)["data"] == ["acme"]
    assert Browser(app).request("GET", "/api/v1/query", params={"query": "1"}).status_code == 401


def test_users_count_as_read_authentication_off_loopback() -> None:
    from vigil.config import ConfigError, check_exposure

    def exposed(cfg: Config) -> Config:
        return cfg.model_copy(update={"server": cfg.server.model_copy(update={"insecure": False})})

    check_exposure(
        exposed(config(listen="0.0.0.0:9400", tenant_reader=False))
    )  # writes: token; reads: session
    with pytest.raises(ConfigError, match=r"without server\.auth tokens"):
        check_exposure(exposed(config(listen="0.0.0.0:9400", tenant_reader=False, users=False)))

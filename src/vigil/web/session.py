"""Login sessions of the web UI: the server-side store, the cookie, CSRF, and what UI pages ask.

A session is a random 256-bit id in an `HttpOnly; SameSite=Strict` cookie, naming an entry of an
in-memory table that holds the user and a per-session CSRF token. Nothing is persisted: a restart
(or a changed `server.auth.users`) logs everyone out, which is also what revoking a user needs. The
table is bounded (`server.session.max_sessions`, least recently used ends first), and a session
ends `ttl` after its login or `idle_timeout` after its last request, by the injected clock.

`SessionAuth` is the `vigil.web.auth.SessionResolver` of `TokenAuth`, so every `@requires(scope)`
endpoint accepts a session as it accepts a bearer token, with the scopes of the user's role and the
tenant of the user. A state-changing request (POST, PUT, PATCH, DELETE) made with a session cookie
must also carry the session's CSRF token (`X-CSRF-Token` header, or a `csrf_token` form field on
UI pages), and its `Origin` (or `Referer`) must be this server when the browser sends one. A bearer
token is never sent by a browser on its own, so such requests need neither.

The interface UI pages use (`vigil.web.ui`):

- `sessions.current_user(request) -> User | None`: who is logged in;
- `sessions.csrf_token(request) -> str`: the token every form must carry as `csrf_token` ("" with
  no session);
- `@login_redirect` above `@requires(scope)` on a page endpoint: the endpoint gets the `Caller`
  (tenant-scoped as for tokens), and a GET refused with 401 (no token, no session) is redirected
  to `/login?next=<the page>` instead;
- `@sessions.require_session` on a page handler `async (request, user) -> Response`: without a
  session a GET is redirected to `/login?next=<the page>` (unless pages are open: loopback and no
  users), other methods get 401; a state-changing request is CSRF- and Origin-checked before the
  handler runs, its urlencoded form (bounded) left in `request.state.form`.
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.config import Config
from vigil.config.users import Role, UserConfig
from vigil.model.listen import is_loopback_listen
from vigil.web.auth import Caller, Scope
from vigil.web.body import BodyTooLarge, read_body
from vigil.web.errors import APIError

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "ROLE_SCOPES",
    "Session",
    "SessionAuth",
    "SessionStore",
    "User",
    "login_redirect",
    "login_url",
    "parse_form",
    "safe_next",
]

COOKIE = "vigil_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 64 * 1024  # UI forms are a few fields; a larger body is refused (413) unread
_MAX_FORM_FIELDS = 64

ROLE_SCOPES: Mapping[Role, frozenset[Scope]] = {
    "viewer": frozenset({Scope.READ}),
    "editor": frozenset({Scope.READ, Scope.EDIT}),
    "admin": frozenset({Scope.READ, Scope.EDIT, Scope.ADMIN}),
}

_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32): 256 bits


@dataclass(frozen=True)
class User:
    """A UI user (`server.auth.users`). `tenant` None: reads every tenant's data."""

    name: str
    role: Role
    password_hash: str = field(repr=False)
    tenant: str | None = None

    @property
    def scopes(self) -> frozenset[Scope]:
        return ROLE_SCOPES[self.role]

    @classmethod
    def from_config(cls, user: UserConfig) -> User:
        return cls(user.name, user.role, user.password_hash, user.tenant or None)


@dataclass
class Session:
    id: str = field(repr=False)
    user: User
    csrf: str = field(repr=False)
    created: float
    last_used: float


class SessionStore:
    """The session table: bounded, expiring by `ttl_s` after creation and `idle_s` after last use."""

    def __init__(
        self,
        ttl_s: float,
        idle_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl, self._idle, self._max, self._clock = ttl_s, idle_s, max_sessions, clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # handlers run on the loop, but argon2 threads log in too

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: User) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            while len(self._sessions) >= self._max:
                self._sessions.popitem(last=False)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, marked used now; None if there is none or it expired."""
        if _ID_RE.fullmatch(session_id) is None:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_used = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.created >= self._ttl or now - session.last_used >= self._idle

    def _expire(self, now: float) -> None:
        # The table is in order of last use: idle ones are at the front. A ttl-expired session that
        # is still in use waits for its next look-up (or eviction), which refuses it.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if not self._expired(oldest, now):
                break
            self._sessions.popitem(last=False)


def safe_next(value: str | None) -> str:
    """Where to go after login: `value` if it is a path on this server, else "/". Refuses anything
    a browser could read as another origin: `//host`, `/\\host`, schemes, control characters."""
    if not value or len(value) > 2048 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def parse_form(body: bytes, max_fields: int = _MAX_FORM_FIELDS) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as a dict; APIError 400 if it is not UTF-8, has
    too many fields or repeats one (a repeated `csrf_token` must not pick the one that is checked)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(400, "bad_data", f"bad form body: {_reason(exc)}", text=True) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise APIError(400, "bad_data", f"bad form body: field {name!r} given twice", text=True)
        form[name] = value
    return form


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "expected UTF-8"
    return f"expected at most {_MAX_FORM_FIELDS} fields" if "fields" in str(exc) else "not urlencoded"


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The request's urlencoded form, read within `limit` bytes (413 beyond, 415 for another type)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise APIError(415, "bad_data", "expected an application/x-www-form-urlencoded form", text=True)
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        raise APIError(413, "bad_data", f"form body larger than {limit} bytes", text=True) from None
    return parse_form(body)


PageHandler = Callable[[Request, "User | None"], Awaitable[Response]]
P = ParamSpec("P")


def login_url(request: Request) -> str:
    """`/login?next=<this page>`, the page's path and query kept when they are safe."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(safe_next(target), safe="")


def login_redirect(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Wraps a page endpoint (a function or method taking the request last, e.g. one guarded by
    `requires`): a GET or HEAD that would get 401 and sent no bearer token is redirected to the
    login page instead. Other refusals (403, or 401 of a wrong token) are answered as they are."""

    @functools.wraps(endpoint)
    async def page(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except APIError as exc:
            request = args[-1]
            if (
                exc.status == 401
                and isinstance(request, Request)
                and request.method in ("GET", "HEAD")
                and "authorization" not in request.headers
            ):
                return RedirectResponse(login_url(request), 303)
            raise

    return page


class SessionAuth:
    """Resolves session cookies (for `TokenAuth` and UI pages) and makes the cookie of a login.

    `pages_open`: UI pages are served without a session (loopback, no users configured).
    `external_url`: an origin besides the request's Host that state-changing requests may come from
    (Vigil behind a proxy that rewrites Host). `secure_cookie`: True, False or "auto" (TLS seen)."""

    def __init__(
        self,
        store: SessionStore,
        *,
        pages_open: bool,
        external_url: str = "",
        secure_cookie: bool | str = "auto",
        max_age_s: int = 12 * 3600,
    ) -> None:
        self.store = store
        self.pages_open = pages_open
        self._origins = {urlsplit(external_url).netloc.lower()} - {""}
        self._secure = secure_cookie
        self._external_https = external_url.startswith("https://")
        self._max_age = max_age_s

    @classmethod
    def from_config(cls, cfg: Config, clock: Callable[[], float] = time.monotonic) -> SessionAuth:
        s = cfg.server.session
        store = SessionStore(s.ttl / 1000, s.idle_timeout / 1000, s.max_sessions, clock)
        return cls(
            store,
            pages_open=is_loopback_listen(cfg.server.listen) and not cfg.server.auth.users,
            external_url=cfg.server.external_url,
            secure_cookie=s.secure_cookie,
            max_age_s=s.ttl // 1000,
        )

    # -- the interface of UI pages -------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        """The request's live session (looked up once per request)."""
        key = "vigil.session"
        if key not in request.scope:
            value = request.cookies.get(COOKIE)
            request.scope[key] = self.store.get(value) if value else None
        found: Session | None = request.scope[key]
        return found

    def current_user(self, request: Request) -> User | None:
        session = self.session(request)
        return session.user if session else None

    def csrf_token(self, request: Request) -> str:
        session = self.session(request)
        return session.csrf if session else ""

    def require_session(self, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
        """Guards a UI page handler (see the module docstring)."""

        @functools.wraps(handler)
        async def page(request: Request) -> Response:
            session = self.session(request)
            if session is None and not self.pages_open:
                if request.method in ("GET", "HEAD"):
                    return RedirectResponse(login_url(request), 303)
                raise APIError(401, "unauthorized", "unauthorized: log in first (/login)", text=True)
            if request.method not in SAFE_METHODS:
                self.check_origin(request, required=session is None)
                token = request.headers.get(CSRF_HEADER)
                if token is None:
                    request.state.form = await read_form(request)
                    token = request.state.form.get("csrf_token")
                if session is not None:
                    self.check_csrf(session, token)
            return await handler(request, session.user if session else None)

        return page

    # -- checks --------------------------------------------------------------------------------------

    def check_csrf(self, session: Session, token: str | None) -> None:
        if not token:
            raise _forbidden(f"missing CSRF token ({CSRF_HEADER} header or csrf_token field)")
        if not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise _forbidden("wrong CSRF token")

    def check_origin(self, request: Request, *, required: bool = False) -> None:
        """Refuses (403) a request whose Origin, or else Referer, is another site; with `required`,
        also one that sends neither (a state-changing request without a session has no token)."""
        origin = request.headers.get("origin")
        source = origin if origin is not None else request.headers.get("referer")
        if source is None:
            if required:
                raise _forbidden("missing Origin header on a state-changing request")
            return
        netloc = urlsplit(source).netloc.lower() if source != "null" else ""
        allowed = self._origins | {request.headers.get("host", "").lower()}
        if not netloc or netloc not in allowed:
            raise _forbidden("cross-origin request refused (Origin/Referer is not this server)")

    # -- SessionResolver -----------------------------------------------------------------------------

    def caller(self, request: Request, scope: Scope) -> Caller | None:
        session = self.session(request)
        if session is None or scope is Scope.WRITE:  # sessions never write (agents use tokens)
            return None
        user = session.user
        if scope not in user.scopes:
            raise _forbidden(f"user {user.name} ({user.role}) may not use {scope.value} endpoints")
        if request.method not in SAFE_METHODS:
            self.check_origin(request)
            self.check_csrf(session, request.headers.get(CSRF_HEADER))
        return Caller(user.tenant, user=user.name)

    # -- the cookie ----------------------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        if isinstance(self._secure, bool):
            return self._secure
        return request.url.scheme == "https" or self._external_https

    def set_cookie(self, response: Response, request: Request, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=self._max_age,
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path="/", secure=self.secure(request), httponly=True, samesite="strict"
        )


def users_from_config(users: Sequence[UserConfig]) -> list[User]:
    return [User.from_config(u) for u in users]


def _forbidden(reason: str) -> APIError:
    return APIError(403, "forbidden", f"forbidden: {reason}", text=True)

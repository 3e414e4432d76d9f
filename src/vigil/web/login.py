"""The login page, password checks and login rate limits: `GET/POST /login`, `POST /logout`.

Passwords are checked against the argon2 hashes of `server.auth.users`. A name that is no user is
checked against a dummy hash made with the same parameters, so an unknown user and a wrong
password take the same steps (one argon2 verify) and timing does not tell which names exist; both
get the same answer. argon2 is deliberately slow and memory-hungry (64 MiB with the defaults), so it
runs in a worker thread, at most `_PARALLEL_VERIFIES` at once: a flood of logins waits rather than
taking the memory of one verify per request.

Failures are counted per source address (IPv6 by /64, since one host holds the whole prefix) and per
user name, each in a sliding window (`server.session.max_login_failures` per
`login_failure_window`); past it the login answers 429 with Retry-After, before any hash is checked.
The counting table is bounded: when it is full the key unused longest is forgotten. The source
address is the one uvicorn reports, which takes X-Forwarded-For only from proxies it trusts.

The login form carries a token that must equal a cookie set with the form (double submit), so
another site cannot log a browser in to an account of its choosing; its Origin is checked as well.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

import argon2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from vigil.config import Config
from vigil.web.errors import APIError
from vigil.web.session import SessionAuth, User, read_form, safe_next, users_from_config

__all__ = ["SECURITY_HEADERS", "LoginAPI", "LoginLimiter", "Passwords"]

log = logging.getLogger("vigil.web.login")

_PARALLEL_VERIFIES = 2
_LOGIN_COOKIE = "vigil_login"  # the login form's double-submit token
_MAX_LOGIN_BODY = 4096
_MAX_PASSWORD = 1024

SECURITY_HEADERS = {
    # No script at all on this page; styles only from this server (the UI may add a stylesheet).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Passwords:
    """Checks a name and password against the users; one argon2 verify whether the name exists or not."""

    def __init__(self, users: Sequence[User], hasher: argon2.PasswordHasher | None = None) -> None:
        self._users = {u.name: u for u in users}
        self._hasher = hasher or argon2.PasswordHasher()  # today's recommended parameters
        self._dummy: str | None = None
        self._slots = threading.BoundedSemaphore(_PARALLEL_VERIFIES)
        self._warned: set[str] = set()
        if self._users:  # made now, so the first unknown name costs no extra hash; none: on first use
            self._dummy_hash()

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            # The parameters of a real user's hash, so its cost matches a real verify.
            sample = next(iter(self._users.values()), None)
            hasher = (
                argon2.PasswordHasher.from_parameters(argon2.extract_parameters(sample.password_hash))
                if sample
                else self._hasher
            )
            self._dummy = hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def check(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (blocking: call it in a worker thread)."""
        user = self._users.get(name)
        encoded = user.password_hash if user is not None else self._dummy_hash()
        with self._slots:
            try:
                self._hasher.verify(encoded, password)
                ok = True
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                ok = False
        if not ok or user is None:
            return None
        if self._hasher.check_needs_rehash(user.password_hash) and user.name not in self._warned:
            self._warned.add(user.name)
            log.warning(
                "server.auth.users: the password hash of %s has weaker parameters than today's "
                "default; run `vigil users add %s` and replace it",
                user.name,
                user.name,
            )
        return user


class LoginLimiter:
    """Failed logins per key in a sliding window, in a table of at most `max_keys` keys."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max, self._window, self._max_keys, self._clock = max_failures, window_s, max_keys, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # least recently failed first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again (0: now)."""
        with self._lock:
            return self._wait_locked(keys, self._clock())

    def failed(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._record_locked(keys, self._clock())

    def attempt(self, keys: Sequence[str]) -> tuple[float, float]:
        """Check and count an attempt at once, so concurrent requests cannot all pass the check
        before the first failure is counted: (seconds to wait, 0) when limited, else (0, the time
        recorded against every key, which `succeeded` takes back)."""
        now = self._clock()
        with self._lock:
            wait = self._wait_locked(keys, now)
            if wait > 0:
                return wait, 0.0
            self._record_locked(keys, now)
        return 0.0, now

    def succeeded(self, keys: Iterable[str], at: float) -> None:
        """Take back the attempt `attempt` recorded at `at`: it was no failure."""
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times is not None and at in times:
                    times.remove(at)
                    if not times:
                        del self._failures[key]

    def _wait_locked(self, keys: Iterable[str], now: float) -> float:
        wait = 0.0
        for key in keys:
            times = self._failures.get(key)
            if times is not None and len(times) >= self._max:
                wait = max(wait, times[0] + self._window - now)
        return max(wait, 0.0)

    def _record_locked(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=self._max)
            times.append(now)
            self._failures[key] = times  # to the end: the most recently failed
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def source_key(host: str | None) -> str:
    """The rate-limit key of a client address: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return f"addr:{host or '?'}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.ip_network((ip, 64), strict=False)}"
    return f"addr:{ip}"


class LoginAPI:
    """`GET /login` (the form), `POST /login`, `POST /logout`, `GET /api/v1/session` (who, CSRF token)."""

    def __init__(self, sessions: SessionAuth, passwords: Passwords, limiter: LoginLimiter) -> None:
        self.sessions, self.passwords, self.limiter = sessions, passwords, limiter

    @classmethod
    def from_config(
        cls, cfg: Config, sessions: SessionAuth, clock: Callable[[], float] = time.monotonic
    ) -> LoginAPI:
        s = cfg.server.session
        return cls(
            sessions,
            Passwords(users_from_config(cfg.server.auth.users)),
            LoginLimiter(s.max_login_failures, s.login_failure_window / 1000, clock=clock),
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/v1/session", self.whoami, methods=["GET"]),
        ]

    async def whoami(self, request: Request) -> Response:
        """The session's user and CSRF token, for the UI's scripts (other origins cannot read it:
        no CORS); 401 without a session."""
        session = self.sessions.session(request)
        if session is None:
            raise APIError(401, "unauthorized", "unauthorized: no login session", text=True)
        user = session.user
        body = {"user": user.name, "role": user.role, "tenant": user.tenant, "csrf_token": session.csrf}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def login_form(self, request: Request) -> Response:
        return self._form(request, safe_next(request.query_params.get("next")), 200)

    async def login(self, request: Request) -> Response:
        self.sessions.check_origin(request)
        form = await read_form(request, _MAX_LOGIN_BODY)
        target = safe_next(form.get("next"))
        token = form.get("login_token", "")
        cookie = request.cookies.get(_LOGIN_COOKIE, "")
        if not token or not hmac.compare_digest(token.encode(), cookie.encode()):
            return self._form(request, target, 403, "The login form expired; please try again.")
        name, password = form.get("username", ""), form.get("password", "")
        if not name or not password or len(name) > 64 or len(password) > _MAX_PASSWORD:
            return self._form(request, target, 400, "Enter a user name and a password.")
        keys = (source_key(request.client.host if request.client else None), f"user:{name}")
        # Counted as a failure before the hash is checked (and taken back on success): a burst of
        # concurrent guesses is limited as strictly as the same guesses one after another.
        wait, attempted_at = self.limiter.attempt(keys)
        if wait > 0:
            limited = self._form(request, target, 429, "Too many failed logins; try again later.")
            limited.headers["Retry-After"] = str(math.ceil(wait))
            return limited
        user = await run_in_threadpool(self.passwords.check, name, password)
        if user is None:
            log.info("failed UI login for %r from %s", name, keys[0][5:])
            return self._form(request, target, 401, "Wrong user name or password.")
        self.limiter.succeeded(keys, attempted_at)
        self.limiter.forget(keys[1])
        old = self.sessions.session(request)
        if old is not None:  # a new id on every login: no session fixation
            self.sessions.store.end(old.id)
        session = self.sessions.store.create(user)
        response = RedirectResponse(target, 303, headers=SECURITY_HEADERS)
        self.sessions.set_cookie(response, request, session)
        response.delete_cookie(_LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.session(request)
        if session is not None:
            self.sessions.check_origin(request)
            token = request.headers.get("X-CSRF-Token")
            if token is None:
                token = (await read_form(request, _MAX_LOGIN_BODY)).get("csrf_token")
            self.sessions.check_csrf(session, token)
            self.sessions.store.end(session.id)
        response = RedirectResponse("/login", 303, headers=SECURITY_HEADERS)
        self.sessions.clear_cookie(response, request)
        return response

    def _form(self, request: Request, target: str, status: int, message: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = HTMLResponse(login_page(target, token, message), status, headers=SECURITY_HEADERS)
        response.set_cookie(
            _LOGIN_COOKIE,
            token,
            max_age=3600,
            path="/login",
            secure=self.sessions.secure(request),
            httponly=True,
            samesite="strict",
        )
        return response


def login_page(target: str, token: str, message: str = "") -> str:
    """The login form: every value escaped, no script or inline style (the CSP allows none)."""
    e = html.escape
    alert = f'<p class="error" role="alert">{e(message)}</p>\n' if message else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Vigil: log in</title></head>\n"
        "<body><main><h1>Vigil</h1>\n"
        f"{alert}"
        '<form method="post" action="/login">\n'
        f'<input type="hidden" name="next" value="{e(target)}">\n'
        f'<input type="hidden" name="login_token" value="{e(token)}">\n'
        '<p><label for="username">User name</label> '
        '<input id="username" name="username" autocomplete="username" required autofocus></p>\n'
        '<p><label for="password">Password</label> '
        '<input id="password" name="password" type="password" autocomplete="current-password" required></p>\n'
        '<p><button type="submit">Log in</button></p>\n'
        "</form></main></body></html>\n"
    )

"""The web UI's local users (`server.auth.users`) and its sessions (`server.session`).

A user signs in to the UI with a password whose argon2 hash (`vigil users add` prints one) sits in
`vigil.yml`; the password itself is never stored. The user's `role` maps onto the scopes bearer
tokens already have, so a session is one more way to be a `Caller` and the API needs no second
access model: viewer reads, editor also acts on silences and log templates, admin also runs admin
endpoints. A user with a `tenant` reads exactly what that tenant's read token reads.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import argon2
from pydantic import BeforeValidator

from vigil.config.types import PositiveDuration, Section, integer
from vigil.model.duration import parse_duration
from vigil.model.show import show

__all__ = ["Role", "SessionConfig", "UserConfig"]

Role = Literal["viewer", "editor", "admin"]

# Printable, no spaces or separators a log line or a cookie would need to quote.
_NAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


def _user_name(value: object) -> str:
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise ValueError(f"expected a user name of 1-64 letters, digits or _.@+-, got {show(value)}")
    return value


def _password_hash(value: object) -> str:
    # Checked here so a pasted-wrong hash stops start-up rather than every login of that user.
    # The hash is not secret like a token is, but it is still not echoed (it invites cracking).
    if not isinstance(value, str):
        raise ValueError("expected an argon2 hash string from `vigil users add`, got a non-string")
    try:
        argon2.extract_parameters(value)
    except argon2.exceptions.InvalidHashError:
        raise ValueError(
            "expected an argon2 hash like $argon2id$v=19$m=...,t=...,p=...$salt$hash "
            "(from `vigil users add`), got something else (value not shown)"
        ) from None
    return value


class UserConfig(Section):
    """One UI user: an item of `server.auth.users`."""

    name: Annotated[str, BeforeValidator(_user_name)]
    """The name typed at the login page."""
    password_hash: Annotated[str, BeforeValidator(_password_hash)]
    """The argon2 hash of the password (`vigil users add NAME` prints it)."""
    role: Role = "viewer"
    """viewer: read (pages, queries, events); editor: also silences and log template actions; admin:
    also admin endpoints (`/api/v1/admin/...`)."""
    tenant: str = ""
    """When set (a tenant of `server.auth.tenants`), the user reads that tenant's data and no other,
    as its read tokens do; only a viewer may have one (silences, templates and admin act on every
    tenant's data)."""


def _auto_bool(value: object) -> object:
    if value == "auto":
        return value
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected auto, true or false, got {show(value)}")


class SessionConfig(Section):
    """`server.session`: how long a UI login lasts and how login attempts are limited."""

    ttl: PositiveDuration = parse_duration("12h")
    """A session ends this long after the login, in use or not."""
    idle_timeout: PositiveDuration = parse_duration("1h")
    """A session ends when no request used it for this long."""
    secure_cookie: Annotated[bool | Literal["auto"], BeforeValidator(_auto_bool)] = "auto"
    """Mark the session cookie `Secure` (sent over HTTPS only): auto = when the login came over TLS
    (`https` as uvicorn sees it, i.e. also `X-Forwarded-Proto` from a proxy it trusts) or
    `server.external_url` is https; true = always (Vigil behind a TLS proxy it does not trust)."""
    max_sessions: Annotated[int, integer(minimum=1)] = 10_000
    """Sessions held at most (in memory); a login beyond it ends the least recently used one."""
    max_login_failures: Annotated[int, integer(minimum=1)] = 5
    """Failed logins one source address, or one user name, may have within `login_failure_window`;
    more attempts get 429 with Retry-After until the oldest failure leaves the window."""
    login_failure_window: PositiveDuration = parse_duration("5m")
    """The window failed logins are counted in."""

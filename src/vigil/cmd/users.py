"""`vigil users add NAME`: the `server.auth.users` entry of a UI user, with the argon2 hash of a password.

The password is read twice from the terminal (not echoed), or once from standard input with
`--password-stdin` (for scripts: `printf %s "$PW" | vigil users add bob --password-stdin`). The YAML
entry goes to standard output, to paste under `server.auth.users`; the password itself is never
printed or stored. The hash uses argon2id with argon2-cffi's current default parameters.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import IO, Any

import argon2
import yaml
from pydantic import ValidationError

from vigil.config.users import UserConfig
from vigil.config.validate import error_message

__all__ = ["add_parser", "run"]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # the login form refuses longer ones


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "users",
        help="web UI users: print a server.auth.users entry with a password hash",
        description="Tools for the web UI's local users (server.auth.users in vigil.yml).",
    )
    sub = p.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="read a password and print the user's entry for vigil.yml")
    add.add_argument("name", help="the user name typed at the login page")
    add.add_argument("--role", default="viewer", help="viewer (default), editor or admin")
    add.add_argument(
        "--tenant", default="", help="only this tenant's data (server.auth.tenants; viewers only)"
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input (one line)"
    )
    return p


class UsageError(Exception):
    """A bad argument or password: the one line to print."""


def run(
    args: argparse.Namespace,
    *,
    ask: Callable[[str], str] = getpass.getpass,
    stdin: IO[str] | None = None,
    out: IO[str] | None = None,
    hasher: argon2.PasswordHasher | None = None,
) -> int:
    out = out or sys.stdout
    try:
        password = _password(args, ask, stdin or sys.stdin)
        entry = user_entry(args.name, password, args.role, args.tenant, hasher or argon2.PasswordHasher())
    except UsageError as exc:
        print(f"vigil users add: {exc}", file=sys.stderr)
        return 2
    print("# paste under server.auth.users in vigil.yml (the server reads it at start-up):", file=sys.stderr)
    out.write(yaml.safe_dump([entry], sort_keys=False, default_flow_style=False))
    return 0


def user_entry(
    name: str, password: str, role: str, tenant: str, hasher: argon2.PasswordHasher
) -> dict[str, str]:
    """The entry for `server.auth.users`, checked by the same model the server loads it with."""
    entry = {"name": name, "password_hash": hasher.hash(password), "role": role}
    if tenant:
        entry["tenant"] = tenant
        if role != "viewer":
            raise UsageError(f"--tenant: expected --role viewer with a tenant, got {role}")
    try:
        UserConfig.model_validate(entry)
    except ValidationError as e:
        err = e.errors()[0]
        key = {"name": "NAME", "role": "--role"}.get(str(err["loc"][0]), str(err["loc"][0]))
        raise UsageError(f"{key}: {error_message(err, UserConfig)}") from None
    return entry


def _password(args: argparse.Namespace, ask: Callable[[str], str], stdin: IO[str]) -> str:
    if args.password_stdin:
        line = stdin.readline(MAX_PASSWORD + 2)
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = ask(f"Password for {args.name}: ")
        if ask("Repeat it: ") != password:
            raise UsageError("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"expected a password of at least {MIN_PASSWORD} characters, got {len(password)}")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"expected a password of at most {MAX_PASSWORD} characters, got more")
    return password

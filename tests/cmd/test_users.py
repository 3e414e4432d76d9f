"""`vigil users add`: the printed entry loads as `server.auth.users` and its hash verifies the password."""

from __future__ import annotations

import io
import subprocess
import sys

import argon2
import pytest
import yaml

from vigil.cmd import users as users_cmd
from vigil.cmd.main import parser
from vigil.config import config_from_yaml

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _run(argv: list[str], answers: list[str] | None = None, stdin: str = "") -> tuple[int, str, list[str]]:
    asked: list[str] = []
    replies = iter(answers or [])

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(replies)

    out = io.StringIO()
    code = users_cmd.run(parser().parse_args(argv), ask=ask, stdin=io.StringIO(stdin), out=out, hasher=CHEAP)
    return code, out.getvalue(), asked


def _config_with(entry_yaml: str) -> str:
    indented = "".join(f"    {line}\n" for line in entry_yaml.splitlines())
    return f"server:\n  auth:\n    tenants: {{acme: [acme-w]}}\n    users:\n{indented}"


def test_add_asks_twice_and_prints_an_entry_the_server_loads() -> None:
    code, out, asked = _run(["users", "add", "bob", "--role", "editor"], ["s3cret-pass", "s3cret-pass"])
    assert code == 0 and asked == ["Password for bob: ", "Repeat it: "]
    assert "s3cret-pass" not in out
    user = config_from_yaml(_config_with(out), "vigil.yml").server.auth.users[0]
    assert (user.name, user.role, user.tenant) == ("bob", "editor", "")
    assert CHEAP.verify(user.password_hash, "s3cret-pass")


def test_add_with_a_tenant_from_stdin() -> None:
    code, out, asked = _run(
        ["users", "add", "tina", "--tenant", "acme", "--password-stdin"], stdin="pw with spaces\n"
    )
    assert code == 0 and asked == []
    [entry] = yaml.safe_load(out)
    assert entry["tenant"] == "acme" and entry["role"] == "viewer"
    assert CHEAP.verify(entry["password_hash"], "pw with spaces")  # only the newline is stripped


@pytest.mark.parametrize(
    ("argv", "answers", "stdin", "message"),
    [
        (["bob"], ["password-1", "password-2"], "", "the passwords differ"),
        (["bob", "--password-stdin"], None, "short\n", "at least 8 characters, got 5"),
        (["bob", "--password-stdin"], None, "x" * 5000, "at most 1024 characters"),
        (["b b", "--password-stdin"], None, "longenough\n", "NAME: expected a user name"),
        (["bob", "--role", "root", "--password-stdin"], None, "longenough\n", "--role: input should be"),
        (
            ["bob", "--role", "admin", "--tenant", "acme", "--password-stdin"],
            None,
            "longenough\n",
            "--tenant",
        ),
    ],
)
def test_add_refuses(
    argv: list[str], answers: list[str] | None, stdin: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["users", "add", *argv], answers, stdin)
    assert code == 2 and out == ""
    assert message in capsys.readouterr().err


def test_the_command_line_entry_point() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vigil", "users", "add", "ops", "--role", "admin", "--password-stdin"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    [entry] = yaml.safe_load(r.stdout)
    assert argon2.PasswordHasher().verify(entry["password_hash"], "correct horse battery")
    assert not argon2.PasswordHasher().check_needs_rehash(entry["password_hash"])  # today's parameters

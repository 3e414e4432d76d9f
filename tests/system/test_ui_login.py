"""A real `vigil server` with UI users on 127.0.0.1: log in with httpx, query with the cookie, log out.

The user's entry comes from `vigil users add` (a real argon2id hash with today's parameters), so the
command's output, the config loader and the login path are tested together.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess

pytestmark = pytest.mark.slow


def _entry(name: str, password: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "vigil", "users", "add", name, "--password-stdin", *args],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return "".join(f"    {line}\n" for line in r.stdout.splitlines())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VigilProcess]:
    (tmp_path / "vigil.yml").write_text(
        "server:\n  auth:\n    write_tokens: [ops-w]\n    tenants: {acme: [acme-w]}\n    users:\n"
        + _entry("ops", "ops-password", "--role", "admin")
        + _entry("tina", "tina-password", "--tenant", "acme")
    )
    s = VigilProcess(tmp_path / "data", extra_args=["--config", str(tmp_path / "vigil.yml")]).start()
    yield s
    s.stop()


def _login(c: httpx.Client, name: str, password: str, **headers: str) -> httpx.Response:
    form = c.get("/login?next=/api/v1/labels")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token is not None
    data = {"username": name, "password": password, "next": "/api/v1/labels", "login_token": token.group(1)}
    return c.post("/login", data=data, headers=headers)


def test_login_query_logout(server: VigilProcess) -> None:
    for token, text in (("acme-w", 'm{who="acme"} 1\n'), ("ops-w", 'm{who="ops"} 2\n')):
        r = httpx.post(
            server.url + "/api/v1/import/prometheus",
            content=text,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 204, r.text
    assert httpx.get(server.url + "/api/v1/query", params={"query": "m"}).status_code == 401

    with (
        httpx.Client(base_url=server.url, timeout=30) as tina,
        httpx.Client(base_url=server.url, timeout=30) as ops,
    ):
        assert _login(tina, "tina", "wrong-password").status_code == 401
        r = _login(tina, "tina", "tina-password")
        assert r.status_code == 303 and r.headers["location"] == "/api/v1/labels"
        assert _login(ops, "ops", "ops-password").status_code == 303

        def who(c: httpx.Client) -> list[str]:
            r = c.get("/api/v1/query", params={"query": "m"})
            assert r.status_code == 200, r.text
            return sorted(s["metric"]["who"] for s in r.json()["data"]["result"])

        assert who(tina) == ["acme"]
        assert who(ops) == ["acme", "ops"]
        assert ops.post("/api/v1/admin/tsdb/compact").status_code == 403  # a cookie without CSRF
        assert tina.post("/logout").status_code == 403
        assert who(tina) == ["acme"]  # still logged in: the refused logout changed nothing
        me = tina.get("/api/v1/session").json()
        assert (me["user"], me["role"], me["tenant"]) == ("tina", "viewer", "acme")
        r = tina.post("/logout", data={"csrf_token": me["csrf_token"]})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert tina.get("/api/v1/query", params={"query": "m"}).status_code == 401
        assert tina.get("/api/v1/session").status_code == 401
        token = ops.get("/api/v1/session").json()["csrf_token"]
        assert ops.post("/api/v1/admin/tsdb/compact", headers={"X-CSRF-Token": token}).status_code == 204

    # The real server, behind a proxy on 127.0.0.1 (uvicorn trusts its X-Forwarded-Proto): Secure.
    with httpx.Client(base_url=server.url, timeout=30) as proxied:
        r = _login(proxied, "tina", "tina-password", **{"X-Forwarded-Proto": "https"})
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("vigil_session="))
        assert "secure" in cookie.lower()

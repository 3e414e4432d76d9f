"""Debian's `amtool` 0.25 against a real `vigil server`, and the same requests against Debian's
`prometheus-alertmanager` 0.25 (`--cluster.listen-address=` empty), compared.

1. The amtool workflow (silence add, query, query -q, expire, query --expired, alert query, config
   show) runs against both servers; its output must be the same once ids and times are replaced by
   placeholders (the table layout depends only on the lengths, which are the same).
2. A table of raw v2 requests, good and bad, is sent to both: status codes must be equal and the JSON
   answers have the same shape (keys and types, recursively; error messages equal where Vigil words
   them as Alertmanager does). Deliberate differences are listed in DIFFERENCES with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, wait_http
from tests.waiting import GENEROUS_S

AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        AMTOOL is None or ALERTMANAGER is None,
        reason="Debian's amtool and prometheus-alertmanager (package prometheus-alertmanager) are needed",
    ),
]

AM_CONFIG = """\
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['severity="page"']
      receiver: pager
receivers:
  - name: default
  - name: pager
"""
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TABLE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@dataclass
class Server:
    name: str
    url: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("amtool")
    indented = "".join(f"  {line}\n" for line in AM_CONFIG.splitlines())
    (tmp / "vigil.yml").write_text(f"alerting:\n{indented}")
    vigil = VigilProcess(tmp / "vigil-data", extra_args=["--config", str(tmp / "vigil.yml")]).start()
    (tmp / "am.yml").write_text(AM_CONFIG)
    port = free_port()
    log = open(tmp / "am.log", "wb")  # noqa: SIM115 - owned by the child
    am = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={tmp / 'am.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=GENEROUS_S, proc=am)
        yield Server("vigil", vigil.url), Server("alertmanager", f"http://127.0.0.1:{port}")
    finally:
        am.terminate()
        try:
            am.wait(timeout=20)
        except subprocess.TimeoutExpired:
            am.kill()
            am.wait()
        vigil.stop()


def amtool(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    env = {**os.environ, "HOME": "/nonexistent"}  # no ~/.config/amtool/config.yml of the user
    return subprocess.run(
        [AMTOOL, f"--alertmanager.url={server.url}", *args],
        capture_output=True,
        text=True,
        timeout=GENEROUS_S,
        env=env,
        check=False,
    )


# amtool compares the server's versionInfo.version with its own and warns on stderr; Vigil reports
# its own version (it is not Alertmanager 0.25), so each call against it carries this line.
VERSION_WARNING = re.compile(
    r"Warning: amtool version \(\S+\) and alertmanager version \(\S+\) are different\.\n"
)


def normalized(text: str) -> str:
    return TABLE_TIME.sub("<time>", UUID.sub("<id>", VERSION_WARNING.sub("", text)))


def workflow(server: Server) -> list[tuple[str, int, str]]:
    """The amtool session; each step's (name, exit code, normalized output)."""
    out: list[tuple[str, int, str]] = []

    def step(name: str, *args: str) -> str:
        p = amtool(server, *args)
        if server.name == "vigil" and p.returncode == 0:
            assert VERSION_WARNING.search(p.stderr), p.stderr
        out.append((name, p.returncode, normalized(p.stdout + p.stderr)))
        return p.stdout.strip()

    sid = step("add", "silence", "add", "alertname=WorkflowX", "--comment=c", "--author=tester")
    assert UUID.fullmatch(sid), f"{server.name}: amtool silence add printed {sid!r}"
    updated = step("update", "silence", "update", sid, "--comment=changed", "--duration=2h")
    # It prints the silence as a table; an in-place update keeps the id.
    assert updated.splitlines()[1].split()[0] == sid, f"{server.name}: {updated!r}"
    step(
        "add-regex", "silence", "add", 'job=~"api|web"', "severity!=info", "--comment=two", "--author=tester"
    )
    step("query", "silence", "query")
    step("query-filter", "silence", "query", "alertname=WorkflowX")
    step("query-q", "silence", "query", "-q")
    step("add-no-comment", "silence", "add", "alertname=Y")
    step("expire", "silence", "expire", sid)
    step("query-after-expire", "silence", "query", "alertname=WorkflowX", "-q")
    step("query-expired", "silence", "query", "--expired", "alertname=WorkflowX")
    step("expire-again", "silence", "expire", sid)
    step("alert-query", "alert", "query")
    step("alert-query-all", "alert", "query", "-a", "-o", "extended")
    return out


def test_amtool_workflow_is_the_same_on_both(servers: tuple[Server, Server]) -> None:
    vigil, am = servers
    got, want = workflow(vigil), workflow(am)
    for (name, code, text), (_, want_code, want_text) in zip(got, want, strict=True):
        assert (code, text) == (want_code, want_text), f"step {name}"
    assert [c for _, c, _ in got] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]  # a comment is required


def test_amtool_config_show(servers: tuple[Server, Server]) -> None:
    for server in servers:
        p = amtool(server, "config", "show")
        assert p.returncode == 0, p.stderr
        for line in ("route:", "  receiver: default", "  - receiver: pager", "receivers:", "- name: pager"):
            assert line in p.stdout.splitlines(), f"{server.name}: {line!r} not in:\n{p.stdout}"


def _silence(**over: Any) -> dict[str, Any]:
    now = time.time()
    body: dict[str, Any] = {
        "matchers": [{"name": "alertname", "value": "Diff", "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        "createdBy": "diff",
        "comment": "c",
    }
    body.update(over)
    return body


ZERO_ID = "00000000-0000-0000-0000-000000000000"
# (name, method, path, JSON body or raw bytes, compare the JSON value exactly)
REQUESTS: list[tuple[str, str, str, Any, bool]] = [
    ("status", "GET", "/api/v2/status", None, False),
    ("receivers", "GET", "/api/v2/receivers", None, True),
    ("silences-empty-filter", "GET", "/api/v2/silences?filter=nomatch%3Dzzz", None, True),
    ("silences-bad-filter", "GET", "/api/v2/silences?filter=bad%7B", None, True),
    ("silence-unknown", "GET", f"/api/v2/silence/{ZERO_ID}", None, True),
    ("silence-not-uuid", "GET", "/api/v2/silence/xyz", None, True),
    ("delete-not-uuid", "DELETE", "/api/v2/silence/xyz", None, True),
    ("post-silence", "POST", "/api/v2/silences", _silence(), False),
    ("post-no-matchers", "POST", "/api/v2/silences", _silence(matchers=[]), True),
    ("post-no-comment", "POST", "/api/v2/silences", _silence(comment=None), True),
    ("post-bad-json", "POST", "/api/v2/silences", b"{bad", False),
    ("post-bad-time", "POST", "/api/v2/silences", _silence(startsAt="notatime"), False),
    (
        "post-matches-empty",
        "POST",
        "/api/v2/silences",
        _silence(matchers=[{"name": "a", "value": "", "isRegex": False}]),
        True,
    ),
    (
        "post-bad-name",
        "POST",
        "/api/v2/silences",
        _silence(matchers=[{"name": "a b", "value": "x", "isRegex": False}]),
        True,
    ),
    (
        "post-bad-regex",
        "POST",
        "/api/v2/silences",
        _silence(matchers=[{"name": "a", "value": "(", "isRegex": True}]),
        False,
    ),
    ("post-start-after-end", "POST", "/api/v2/silences", _silence(startsAt="2030-01-01T00:00:00Z"), True),
    (
        "post-ended",
        "POST",
        "/api/v2/silences",
        _silence(startsAt="2020-01-01T00:00:00Z", endsAt="2020-02-01T00:00:00Z"),
        True,
    ),
    ("post-unknown-id", "POST", "/api/v2/silences", _silence(id="nope"), True),
    ("post-silence-empty-body", "POST", "/api/v2/silences", b"", True),
    ("post-silence-null", "POST", "/api/v2/silences", b"null", True),
    ("post-silence-only-matchers", "POST", "/api/v2/silences", {"matchers": []}, True),
    ("post-silence-no-start", "POST", "/api/v2/silences", _silence(startsAt=None), True),
    (
        "post-silence-matcher-no-name",
        "POST",
        "/api/v2/silences",
        _silence(matchers=[{"value": "x"}]),
        True,
    ),
    ("silences-empty-filter-value", "GET", "/api/v2/silences?filter=", None, True),
    ("silences", "GET", "/api/v2/silences?filter=alertname%3DDiff", None, False),
    ("alerts", "GET", "/api/v2/alerts", None, True),
    ("alerts-bad-filter", "GET", "/api/v2/alerts?filter=x", None, True),
    ("alerts-bad-receiver", "GET", "/api/v2/alerts?receiver=%28", None, False),
    ("groups", "GET", "/api/v2/alerts/groups", None, True),
    ("groups-bad-filter", "GET", "/api/v2/alerts/groups?filter=x", None, True),
]
# Where Vigil answers otherwise on purpose: name -> (Vigil's status, why).
DIFFERENCES = {
    "delete-unknown": (404, "Alertmanager 0.27+ answers 404; 0.25 answered 500"),
}


def shape(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__


def send(server: Server, method: str, path: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.request(
            method,
            server.url + path,
            content=body,
            headers={"content-type": "application/json"},
            timeout=GENEROUS_S,
        )
    return httpx.request(method, server.url + path, json=body, timeout=GENEROUS_S)


@pytest.mark.parametrize(("name", "method", "path", "body", "exact"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_same_answers_as_alertmanager(
    servers: tuple[Server, Server], name: str, method: str, path: str, body: Any, exact: bool
) -> None:
    vigil, am = servers
    got, want = send(vigil, method, path, body), send(am, method, path, body)
    assert got.status_code == want.status_code, f"{name}: {got.text} vs {want.text}"
    if not want.content:
        assert not got.content, name
        return
    assert got.headers["content-type"] == want.headers["content-type"]
    g, w = got.json(), want.json()
    assert shape(g) == shape(w), name
    if exact:
        assert g == w, name


def test_silence_round_trip_is_the_same(servers: tuple[Server, Server]) -> None:
    """A created silence reads back, expires, and reads back expired with the same shape and values
    (but id and times) on both."""
    answers = []
    for server in servers:
        sid = send(server, "POST", "/api/v2/silences", _silence(comment="round")).json()["silenceID"]
        first = send(server, "GET", f"/api/v2/silence/{sid}", None).json()
        deleted = send(server, "DELETE", f"/api/v2/silence/{sid}", None)
        again = send(server, "DELETE", f"/api/v2/silence/{sid}", None)
        after = send(server, "GET", f"/api/v2/silence/{sid}", None).json()
        unknown = send(server, "DELETE", f"/api/v2/silence/{ZERO_ID}", None)
        strip = {"id", "startsAt", "endsAt", "updatedAt"}
        answers.append(
            (
                {k: v for k, v in first.items() if k not in strip},
                (deleted.status_code, deleted.content, again.status_code),
                {k: v for k, v in after.items() if k not in strip},
                list(first),
                unknown.status_code,
            )
        )
    (v_first, v_del, v_after, v_keys, v_unknown), (a_first, a_del, a_after, a_keys, a_unknown) = answers
    assert (v_first, v_del, v_after, v_keys) == (a_first, a_del, a_after, a_keys)
    assert v_after["status"] == {"state": "expired"}
    status, _why = DIFFERENCES["delete-unknown"]
    assert (v_unknown, a_unknown) == (status, 500)


def test_silence_list_order_is_the_same(servers: tuple[Server, Server]) -> None:
    """Active (next to end first), pending (next to start first), expired (latest end first)."""
    now = time.time()

    def at(offset_s: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + offset_s))

    orders = []
    for server in servers:
        matchers = [{"name": "alertname", "value": "Order", "isRegex": False}]
        for comment, start, end in (
            ("late-end", -60, 3 * 3600),
            ("early-end", -60, 3600),
            ("late-pending", 2 * 3600, 4 * 3600),
            ("early-pending", 3600, 5 * 3600),
            ("expired-first", -60, 3600),
            ("expired-second", -60, 3600),
        ):
            r = send(
                server,
                "POST",
                "/api/v2/silences",
                _silence(matchers=matchers, comment=comment, startsAt=at(start), endsAt=at(end)),
            )
            assert r.status_code == 200, r.text
            if comment.startswith("expired"):
                time.sleep(0.01)  # distinct end times, in this order
                assert (
                    send(server, "DELETE", f"/api/v2/silence/{r.json()['silenceID']}", None).status_code
                    == 200
                )
        listed = send(server, "GET", "/api/v2/silences?filter=alertname%3DOrder", None).json()
        orders.append([s["comment"] for s in listed])
    assert orders[0] == orders[1]
    assert orders[0] == [
        "early-end",
        "late-end",
        "early-pending",
        "late-pending",
        "expired-second",
        "expired-first",
    ]


def test_vigil_silence_cli_matches_amtool(
    servers: tuple[Server, Server], capsys: pytest.CaptureFixture[str]
) -> None:
    """`vigil silence` against both servers: what it adds amtool sees, and its tables are amtool's."""
    from vigil.cmd.main import main

    for server in servers:
        assert (
            main(
                [
                    "silence",
                    "add",
                    "alertname=Cli",
                    'job=~"a|b"',
                    "--comment",
                    "cli",
                    "--author",
                    "me",
                    "--url",
                    server.url,
                ]
            )
            == 0
        )
        sid = capsys.readouterr().out.strip()
        assert UUID.fullmatch(sid)
        assert sid in amtool(server, "silence", "query", "-q").stdout.split()
        for ours, theirs in ((["list"], []), (["query", "alertname=Cli"], ["alertname=Cli"])):
            assert main(["silence", *ours, "--url", server.url]) == 0
            assert capsys.readouterr().out == amtool(server, "silence", "query", *theirs).stdout
        assert main(["silence", "query", "-q", "alertname=Cli", "--url", server.url]) == 0
        assert capsys.readouterr().out.split() == [sid]
        assert main(["silence", "expire", sid, "--url", server.url]) == 0
        assert main(["silence", "query", "-q", "--expired", "alertname=Cli", "--url", server.url]) == 0
        assert capsys.readouterr().out.split() == [sid]
        # Errors: one line, exit 1.
        assert main(["silence", "add", "alertname=", "--comment", "x", "--url", server.url]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "at least one matcher must not match the empty string" in err
        assert main(["silence", "expire", "xyz", "--url", server.url]) == 1
        assert "HTTP 422" in capsys.readouterr().err


def test_silences_survive_a_restart_of_vigil_server(tmp_path: Path) -> None:
    v = VigilProcess(tmp_path / "data").start()
    try:
        server = Server("vigil", v.url)
        sid = amtool(server, "silence", "add", "alertname=Kept", "--comment=restart").stdout.strip()
        assert UUID.fullmatch(sid)
    finally:
        assert v.stop() == 0
    assert (tmp_path / "data" / "silences.json").exists()
    v.start()
    try:
        assert amtool(server, "silence", "query", "-q").stdout.split() == [sid]
        assert "cannot load silences" not in v.log()
    finally:
        v.stop()


@pytest.fixture(scope="module")
def alerting_vigil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The v2 API over the real notifier core (store, dispatcher groups, marker), served by uvicorn
    on 127.0.0.1 in this process: `vigil server` does not run the notifier yet, and the alert
    endpoints need one to compare with Alertmanager's."""
    import threading

    import uvicorn

    from vigil.notifier.config import alertmanager_config_from_yaml
    from vigil.notifier.notifier import Notifier, wall_ms
    from vigil.notifier.silence import Silences
    from vigil.web.alertmanager_api import AlertmanagerAPI, ConfigView, MarkerInhibition
    from vigil.web.app import create_app
    from vigil.web.auth import TokenAuth

    cfg = alertmanager_config_from_yaml(AM_CONFIG)
    silences = Silences(tmp_path_factory.mktemp("alerting-vigil"), clock=wall_ms)
    notifier = Notifier(cfg, {}, muter=silences)
    api = AlertmanagerAPI(
        TokenAuth([], []),
        silences,
        ConfigView(cfg),
        clock=wall_ms,
        alerts=notifier.store,
        sink=notifier.store,
        groups=notifier,
        inhibition=MarkerInhibition(notifier.marker),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app([api], registry=None), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="vigil-test-http", daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/status", timeout=GENEROUS_S)
        yield Server("vigil", f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(GENEROUS_S)


ALERTS = [
    # (labels no silence of the other tests here matches: the Alertmanager is shared by the module)
    {"labels": {"alertname": "DiffA", "job": "db", "empty": ""}, "annotations": {"summary": "a is down"}},
    {
        "labels": {"alertname": "DiffB", "severity": "page", "instance": "h1"},
        "generatorURL": "http://prom/graph",
    },
    {"labels": {"alertname": "DiffB", "severity": "page", "instance": "h2"}},
    {"labels": {"alertname": "DiffC"}, "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2020-01-02T00:00:00Z"},
    {"labels": {}},
    {"labels": {"bad-name": "x"}},
]
TIMES = ("startsAt", "endsAt", "updatedAt")


def _alert_view(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in a.items() if k not in TIMES}
    out["status"] = {**a["status"], "silencedBy": ["<id>" for _ in a["status"]["silencedBy"]]}
    return out


def test_alerts_and_groups_are_the_same_as_alertmanager(
    servers: tuple[Server, Server], alerting_vigil: Server
) -> None:
    am = servers[1]
    answers = []
    for server in (alerting_vigil, am):
        posted = send(server, "POST", "/api/v2/alerts", ALERTS)
        sid = amtool(server, "silence", "add", "instance=h2", "--comment=diff", "--author=t").stdout.strip()
        assert UUID.fullmatch(sid)
        q = "?filter=alertname%3D~%22Diff.%2A%22"
        alerts = send(server, "GET", "/api/v2/alerts" + q, None).json()
        groups = send(server, "GET", "/api/v2/alerts/groups" + q, None).json()
        unsilenced = send(server, "GET", "/api/v2/alerts" + q + "&silenced=false", None).json()
        paged = send(server, "GET", "/api/v2/alerts" + q + "&receiver=pager", None).json()
        tool = normalized(amtool(server, "alert", "query", 'alertname=~"Diff.*"').stdout)
        tool_all = normalized(
            amtool(server, "alert", "query", "-a", "-o", "extended", 'alertname=~"Diff.*"').stdout
        )
        answers.append(
            (
                (posted.status_code, posted.json() if posted.content else None),
                [_alert_view(a) for a in alerts],
                [{**g, "alerts": [_alert_view(a) for a in g["alerts"]]} for g in groups],
                [a["labels"]["instance"] for a in unsilenced if "instance" in a["labels"]],
                [a["fingerprint"] for a in paged],
                tool,
                tool_all,
            )
        )
    ours, theirs = answers
    names = [
        "POST answer",
        "alerts",
        "groups",
        "silenced=false",
        "receiver=pager",
        "amtool alert query",
        "-a extended",
    ]
    for name, got, want in zip(names, ours, theirs, strict=True):
        assert got == want, name
    assert ours[3] == ["h1"]  # h2 silenced, and the silence shows at once

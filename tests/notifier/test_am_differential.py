"""Differential test of grouping against Debian's Alertmanager 0.25.

The same alert sequence is posted to a real `prometheus-alertmanager` (webhook receivers pointing at
a capture server on 127.0.0.1) and to Vigil's notifier driven by a fake clock. Compared per phase:
which notifications are sent (receiver, group key), which alerts each carries in which order and
their status. Times are not compared; each phase on the real Alertmanager ends when Vigil's number
of notifications has arrived, plus two group intervals to catch any extra one.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, require_binary, wait_http
from tests.notifier.corekit import FakeClock, alert, config, make, run_until
from tests.waiting import wait_until
from vigil.notifier.alert import Alert
from vigil.notifier.integration import NotifyContext

pytestmark = [pytest.mark.slow, pytest.mark.peer]

GW, GI = 2, 4  # seconds: group_wait, group_interval
RECEIVERS = ("hook", "db", "pager", "quiet")
QUIET = "quiet"  # the receiver with send_resolved: false


def am_config(capture: str) -> str:
    hooks = "".join(
        f"- name: {r}\n  webhook_configs:\n  - url: {capture}/{r}\n"
        f"    send_resolved: {str(r != QUIET).lower()}\n"
        for r in RECEIVERS
    )
    return f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: {GW}s
  group_interval: {GI}s
  repeat_interval: 1h
  routes:
  - matchers: ['team="db"']
    receiver: db
    group_by: ['...']
    continue: true
  - matchers: ['severity="page"']
    receiver: pager
  - matchers: ['team="quiet"']
    receiver: quiet
receivers:
{hooks}"""


Note = tuple[str, str, tuple[tuple[tuple[tuple[str, str], ...], str], ...]]


def _labels(d: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(d.items()))


# The phases: what is posted (labels, resolved?) at the start of each.
PHASES: list[list[tuple[dict[str, str], bool]]] = [
    [({"alertname": "A", "instance": str(i)}, False) for i in range(1, 6)]
    + [({"alertname": "B", "instance": str(i), "team": "db"}, False) for i in range(1, 4)]
    + [({"alertname": "P", "team": "db", "severity": "page"}, False)],
    [({"alertname": "A", "instance": "6"}, False)],
    [({"alertname": "A", "instance": "1"}, True)],
    [({"alertname": "C", "instance": "1"}, False), ({"alertname": "C", "instance": "1"}, True)],
    [({"alertname": "A", "instance": str(i)}, True) for i in range(2, 7)],
    # send_resolved: false: no resolved message, but the log is cleared, so firing again notifies.
    [({"alertname": "Q", "team": "quiet"}, False), ({"alertname": "F"}, False)],
    # F flaps between two flushes: it was notified firing and is firing again at the next one.
    [({"alertname": "Q", "team": "quiet"}, True), ({"alertname": "F"}, True), ({"alertname": "F"}, False)],
    [({"alertname": "Q", "team": "quiet"}, False)],
]


class _Rec:
    def __init__(self, receiver: str, out: list[Note]) -> None:
        self.name, self.index, self.send_resolved = "webhook", 0, receiver != QUIET
        self._receiver, self._out = receiver, out

    def notify(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> None:
        self._out.append(
            (
                self._receiver,
                ctx.group_key,
                tuple(
                    (_labels(a.labels), "resolved" if a.resolved_at(ctx.now_ms) else "firing") for a in alerts
                ),
            )
        )


def vigil_phases(capture: str) -> list[list[Note]]:
    clock = FakeClock()
    out: list[Note] = []
    n, _ = make(config(am_config(capture)), {r: [_Rec(r, out)] for r in RECEIVERS}, clock)
    phases = []
    for phase in PHASES:
        before = len(out)
        for labels, resolved in phase:
            n.put([alert(ends=clock.t if resolved else 0, **labels)])
            clock.advance(10)
        run_until(n, clock, clock.t + (GW + 3 * GI) * 1000, step_ms=100)
        phases.append(sorted(out[before:]))
    return phases


class _Capture:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notes: list[Note] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                note: Note = (
                    self.path.strip("/"),
                    body["groupKey"],
                    tuple((_labels(a["labels"]), a["status"]) for a in body["alerts"]),
                )
                with outer.lock:
                    outer.notes.append(note)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self) -> int:
        with self.lock:
            return len(self.notes)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, _Capture]]:
    binary = require_binary("prometheus-alertmanager")
    cap = _Capture()
    cap.thread.start()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(am_config(cap.url))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc=proc)
        yield f"http://127.0.0.1:{port}", cap
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cap.server.shutdown()
        cap.server.server_close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def test_grouping_matches_alertmanager(alertmanager: tuple[str, _Capture]) -> None:
    url, cap = alertmanager
    expected = vigil_phases(cap.url)
    assert [len(p) for p in expected] == [6, 1, 1, 0, 1, 2, 0, 1]  # the sequence exercises what it should
    for i, (phase, want) in enumerate(zip(PHASES, expected, strict=True)):
        before = cap.count()
        for labels, resolved in phase:
            body = [{"labels": labels, **({"endsAt": _iso(time.time())} if resolved else {})}]
            resp = httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10)
            assert resp.status_code == 200, resp.text
        until = before + len(want)
        wait_until(lambda: cap.count() >= until, what=f"phase {i}: {len(want)} notifications")  # noqa: B023
        time.sleep(GW + 2 * GI)  # an extra notification would arrive within this window
        with cap.lock:
            got = sorted(cap.notes[before:])
        assert got == want, f"phase {i}"

"""End to end through the agent: from something happening on the host to a webhook notification.

A real `vigil up` (server and this host's agent in one process) on 127.0.0.1 with only its defaults
and an `alerting:` section naming a webhook receiver: a real local HTTP server that keeps every
payload. Three paths, each waited on with generous deadlines (never timed):

- failed sshd logins appended to the auth log → the built-in event rule `SSHBruteForceSource` → one
  notification in Alertmanager's webhook format, with the links to the evidence;
- a probe target that stops listening → a metric rule from `rule_files` → a notification;
- a new listening port → the built-in event rule `NewListeningPort` → a notification.

Then a restart of the same process on the same data directory does not notify again what was sent
(the notification log is kept in the data directory).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import free_port, wait_http

pytestmark = pytest.mark.slow

ATTACKER = "203.0.113.7"
LINE = "{now} bastion-1 sshd[{pid}]: Failed password for root from {ip} port {port} ssh2\n"


class Hook:
    """A webhook receiver on 127.0.0.1 keeping every payload it was sent."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.cond:
                    hook.payloads.append(json.loads(body))
                    hook.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, alertname: str, status: str = "firing") -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(payload, alert) for every alert of that name and status received so far."""
        with self.cond:
            return [
                (p, a)
                for p in self.payloads
                for a in p["alerts"]
                if a["status"] == status and a["labels"].get("alertname") == alertname
            ]

    def wait_for(
        self,
        alertname: str,
        status: str = "firing",
        where: Callable[[dict[str, Any]], bool] = lambda a: True,
        timeout_s: float = 120,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                found = [(p, a) for p, a in self.alerts(alertname, status) if where(a)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {status} notification for {alertname}; got {self.payloads}")
                self.cond.wait(min(left, 1.0))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Listener:
    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def start_up(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil", "up", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_http(f"http://127.0.0.1:{port}/-/ready", proc=proc, timeout=60)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def wait(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.2)


def probe_up(base: str) -> bool:
    r = httpx.get(base + "/api/v1/query", params={"query": 'probe_success{probe="e2e"}'}, timeout=10)
    return any(s["value"][1] == "1" for s in r.json()["data"]["result"])


def test_host_events_reach_the_webhook_once_with_their_evidence(tmp_path: Path, hook: Hook) -> None:
    port, agent_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("")
    target = Listener()
    (tmp_path / "rules.yml").write_text(
        "groups:\n- name: e2e\n  rules:\n  - alert: E2EProbeDown\n"
        '    expr: probe_success{probe="e2e"} == 0\n'
        "    annotations: {summary: 'probe {{ $labels.probe }} is down'}\n"
    )
    config = tmp_path / "vigil.yml"
    config.write_text(
        f"""
server: {{listen: "127.0.0.1:{port}", external_url: "{base}"}}
storage: {{path: "{tmp_path / "data"}"}}
rule_files: [rules.yml]
agent:
  listen: 127.0.0.1:{agent_port}
  statsd: {{udp_listen: ""}}
  disable: [updates, file_integrity]
  logs: {{auth: {{paths: ["{auth_log}"], journal: never}}}}
  probes: [{{name: e2e, module: tcp, target: "127.0.0.1:{target.port}"}}]
alerting:
  route: {{receiver: hook, group_by: [alertname], group_interval: 5s}}
  receivers: [{{name: hook, webhook_configs: [{{url: "{hook.url}"}}]}}]
"""
    )
    log = tmp_path / "vigil.log"
    proc = start_up(config, port, log)
    extra: Listener | None = None
    try:
        wait("the probe succeeded once", lambda: probe_up(base))
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with auth_log.open("a") as f:
            f.writelines(LINE.format(now=now, pid=100 + i, ip=ATTACKER, port=40000 + i) for i in range(12))

        payload, alert = hook.wait_for("SSHBruteForceSource")
        assert payload["version"] == "4" and payload["receiver"] == "hook"
        assert payload["externalURL"] == base and payload["status"] == "firing"
        assert alert["labels"]["source_address"] == ATTACKER and alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"].endswith(
            f"failed SSH logins from {ATTACKER} on {alert['labels']['instance']} in 5 minutes"
        )
        # the link to the evidence: Vigil's events of that address
        link = urlsplit(alert["generatorURL"])
        assert f"{link.scheme}://{link.netloc}" == base, alert["generatorURL"]
        r = httpx.get(base + link.path, params=parse_qs(link.query), timeout=10)
        assert r.status_code == 200, r.text
        assert any(e["fields"].get("source_address") == ATTACKER for e in r.json()["data"]["events"])

        target.close()
        payload, alert = hook.wait_for("E2EProbeDown")
        assert alert["annotations"]["summary"] == "probe e2e is down"
        link = urlsplit(alert["generatorURL"])  # the graph of the rule's expression
        assert (
            f"{link.scheme}://{link.netloc}" == base and "probe_success" in parse_qs(link.query)["g0.expr"][0]
        )

        extra = Listener()
        port_ = str(extra.port)
        payload, alert = hook.wait_for("NewListeningPort", where=lambda a: a["labels"].get("port") == port_)
        assert alert["labels"]["instance"] and "listening on" in alert["annotations"]["summary"]
    finally:
        if extra is not None:
            extra.close()
        code = stop(proc)
    assert code == 0, log.read_text(errors="replace")[-3000:]

    # A restart on the same data directory: the probe is still down, the rule fires again and the
    # notifier gets it again, but the notification log says the receiver was told: no second firing
    # message. The proof that the group was flushed meanwhile is its next message, the resolution
    # (group_interval 5s), which comes after the target is back.
    assert len(hook.alerts("E2EProbeDown")) == 1
    proc = start_up(config, port, log)
    try:
        wait("the alert is back in the notifier", lambda: _in_notifier(base, "E2EProbeDown"), 90)
        back = Listener(target.port)
        try:
            hook.wait_for("E2EProbeDown", status="resolved")
        finally:
            back.close()
        assert len(hook.alerts("E2EProbeDown")) == 1, hook.payloads
    finally:
        assert stop(proc) == 0, log.read_text(errors="replace")[-3000:]


def _in_notifier(base: str, alertname: str) -> bool:
    r = httpx.get(base + "/api/v2/alerts", params={"filter": f"alertname={alertname}"}, timeout=10)
    return bool(r.json())


def test_sighup_reloads_the_alerting_configuration(tmp_path: Path) -> None:
    """SIGHUP re-reads vigil.yml's `alerting:` as Alertmanager re-reads its file: the new receivers
    are in force (and shown), alerts are kept; a broken file keeps what runs and says so in the log."""
    from tests.conftest import VigilProcess

    config = tmp_path / "vigil.yml"

    def write(receiver: str) -> None:
        config.write_text(
            f"alerting:\n  route: {{receiver: {receiver}}}\n"
            f"  receivers: [{{name: {receiver}, webhook_configs: [{{url: 'http://127.0.0.1:9/x'}}]}}]\n"
        )

    def receivers(base: str) -> list[str]:
        return [r["name"] for r in httpx.get(base + "/api/v2/receivers", timeout=10).json()]

    write("first")
    vigil = VigilProcess(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        assert receivers(vigil.url) == ["first"]
        r = httpx.post(vigil.url + "/api/v2/alerts", json=[{"labels": {"alertname": "Kept"}}], timeout=10)
        assert r.status_code == 200, r.text
        write("second")
        assert vigil.proc is not None
        vigil.proc.send_signal(signal.SIGHUP)
        wait("the new receivers", lambda: receivers(vigil.url) == ["second"])
        held = httpx.get(vigil.url + "/api/v2/alerts", timeout=10).json()
        assert [a["labels"]["alertname"] for a in held] == ["Kept"]
        assert [r["name"] for r in held[0]["receivers"]] == ["second"]
        config.write_text("alerting:\n  route: {receiver: nobody}\n  receivers: []\n")  # unknown receiver
        vigil.proc.send_signal(signal.SIGHUP)
        wait("the reload error logged", lambda: "nobody" in vigil.log())
        assert receivers(vigil.url) == ["second"]
    finally:
        assert vigil.stop() == 0, vigil.log()

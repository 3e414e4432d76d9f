"""End to end: an agent tails an auth.log and ships counters and events to a real Vigil server.

The issue's acceptance test: 30 failed logins from one address appended to the log show up on the
server as `vigil_auth_attempts_total{result="failure"}` increased by 30 and as 30 `auth` events with
that address. Both processes are real (`vigil server`, `vigil agent`), on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http

pytestmark = pytest.mark.slow

ATTACKER = "203.0.113.50"
# Stamped now (RFC 3339, as rsyslog writes): events older than the retention would be expired at once.
LINE = "{now} web1 sshd[{pid}]: Failed password for root from {ip} port {port} ssh2\n"


def line(pid: int, ip: str, port: int) -> str:
    return LINE.format(now=datetime.now(UTC).isoformat(timespec="microseconds"), pid=pid, ip=ip, port=port)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VigilProcess]:
    s = VigilProcess(tmp_path / "server").start()
    yield s
    s.stop()


def failures_on_server(url: str) -> float:
    r = httpx.get(
        url + "/api/v1/query",
        params={"query": 'sum(vigil_auth_attempts_total{result="failure"})'},
        timeout=10,
    )
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def events_on_server(url: str, address: str) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        params = {"kind": "auth", "match[]": f'{{source_address="{address}"}}', "limit": "1000", "start": "0"}
        if cursor:
            params["cursor"] = cursor
        r = httpx.get(url + "/api/v1/events", params=params, timeout=10)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        out += data["events"]
        cursor = data["next_cursor"]
        if not cursor:
            return out


def agent_config(tmp_path: Path, auth_log: Path, server_url: str = "") -> tuple[Path, int]:
    """A vigil.yml for an agent that tails `auth_log` (host collectors on, the slow security ones off)
    and ships to `server_url` if given; returns the file and the agent's /metrics port."""
    port = free_port()
    ship = f"  ship:\n    url: {server_url}/api/v1/write\n" if server_url else ""
    config = tmp_path / "vigil.yml"
    config.write_text(
        f"""
agent:
  listen: 127.0.0.1:{port}
  interval: 1s
  data_dir: {tmp_path / "agent"}
  statsd: {{udp_listen: ""}}
  disable: [file_integrity, updates, listening_ports]
  logs:
    auth: {{paths: ["{auth_log}"]}}
{ship}"""
    )
    return config, port


def test_thirty_failed_logins_become_a_counter_and_thirty_events(
    tmp_path: Path, server: VigilProcess
) -> None:
    auth_log = tmp_path / "auth.log"
    # History from before the agent started is not replayed (the agent starts at the end of the file).
    auth_log.write_text(line(1, "198.51.100.1", 1))
    config, agent_port = agent_config(tmp_path, auth_log, server.url)
    agent = subprocess.Popen(
        [sys.executable, "-m", "vigil", "agent", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{agent_port}/metrics", proc=agent)
        before = failures_on_server(server.url)
        with auth_log.open("a") as f:
            for i in range(30):
                f.write(line(1000 + i, ATTACKER, 40000 + i))
        deadline = time.monotonic() + 30
        after, events = before, []
        while time.monotonic() < deadline:
            after = failures_on_server(server.url)
            events = events_on_server(server.url, ATTACKER)
            if after - before >= 30 and len(events) >= 30:
                break
            time.sleep(0.5)
        assert after - before == 30
        assert len(events) == 30
        assert {e["fields"]["source_address"] for e in events} == {ATTACKER}
        assert {e["fields"]["user"] for e in events} == {"root"}
        assert {e["labels"]["source"] for e in events} == {"auth"}
        assert all(e["labels"]["job"] == "vigil-agent" and e["labels"]["instance"] for e in events)
        assert len({e["id"] for e in events}) == 30
    finally:
        agent.terminate()
        out, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, out.decode(errors="replace")


def test_server_syslog_receiver_counts_and_keeps_auth_lines(tmp_path: Path) -> None:
    """`server.syslog`: a firewall or host sending straight to the server. Debian's logger(1) sends
    sshd failures over TCP with octet counting (RFC 5424) and over UDP (RFC 3164)."""
    logger = require_binary("logger")
    udp, tcp = free_port(), free_port()
    config = tmp_path / "vigil.yml"
    config.write_text(f"server:\n  syslog: {{udp_listen: 127.0.0.1:{udp}, tcp_listen: 127.0.0.1:{tcp}}}\n")
    server = VigilProcess(tmp_path / "server", extra_args=["--config", str(config)]).start()
    try:
        wait_port(tcp)  # the receiver starts right after the HTTP server
        message = f"Failed password for invalid user admin from {ATTACKER} port 4242 ssh2"
        sends = [
            [logger, "-n", "127.0.0.1", "-P", str(tcp), "-T", "--rfc5424", "--octet-count", "-t", "sshd"],
            [logger, "-n", "127.0.0.1", "-P", str(udp), "-d", "--rfc3164", "-t", "sshd"],
        ]
        for argv in sends:
            for _ in range(3):
                subprocess.run([*argv, message], check=True, timeout=10)
        deadline = time.monotonic() + 30
        events: list[dict] = []
        while time.monotonic() < deadline:
            events = events_on_server(server.url, ATTACKER)
            if len(events) >= 6 and failures_on_server(server.url) >= 6:
                break
            time.sleep(0.5)
        assert failures_on_server(server.url) == 6
        assert len(events) == 6
        assert {e["labels"]["source"] for e in events} == {"syslog"}
        assert {e["labels"]["job"] for e in events} == {"vigil-syslog"}
        assert {e["fields"]["user"] for e in events} == {"admin"}
    finally:
        server.stop()


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_agent_killed_while_tailing_counts_every_line_once(tmp_path: Path, server: VigilProcess) -> None:
    """kill -9 of the agent while lines keep arriving: after its restart the server's counter ends at
    exactly the number of lines written and it holds exactly one event per line."""
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("")
    config, agent_port = agent_config(tmp_path, auth_log, server.url)
    argv = [sys.executable, "-m", "vigil", "agent", "--config", str(config)]

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{agent_port}/metrics", proc=p)
        return p

    def write(start: int, n: int) -> None:
        for i in range(start, start + n):
            with auth_log.open("a") as f:
                f.write(line(i, ATTACKER, 10_000 + i))
            if i % 20 == 0:
                time.sleep(0.02)

    agent = start()
    written = 0
    try:
        for _ in range(3):
            write(written, 150)
            written += 150
            time.sleep(0.3)  # some lines processed, maybe not all: the kill lands mid-stream
            agent.kill()
            agent.wait()
            write(written, 50)  # lines arriving while the agent is down
            written += 50
            agent = start()
        deadline = time.monotonic() + 60
        count, events = 0.0, []
        while time.monotonic() < deadline:
            count, events = failures_on_server(server.url), events_on_server(server.url, ATTACKER)
            if count >= written and len(events) >= written:
                break
            time.sleep(0.5)
        assert (count, len(events)) == (written, written)
        assert len(events) == written and len({e["id"] for e in events}) == written
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def test_unreadable_auth_log_is_one_log_line_and_an_error_series(tmp_path: Path) -> None:
    """A real permission error (the agent runs without CAP_DAC_OVERRIDE, so root's own mode-000 file is
    unreadable): the agent keeps collecting, says so once, and counts it per collection."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop the capability to read any file")
    auth_log = tmp_path / "auth.log"
    auth_log.write_text(line(1, ATTACKER, 1))
    auth_log.chmod(0)
    config, agent_port = agent_config(tmp_path, auth_log)
    caps = "-dac_override,-dac_read_search"
    agent = subprocess.Popen(
        [setpriv, f"--bounding-set={caps}", sys.executable, "-m", "vigil", "agent", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{agent_port}/metrics"

    def auth_errors(text: str) -> float:
        prefix = 'vigil_agent_collector_errors_total{collector="log_auth"}'
        return next((float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(prefix)), 0.0)

    try:
        wait_http(url, proc=agent)
        text = ""
        deadline = time.monotonic() + 60
        while auth_errors(text) < 3 and time.monotonic() < deadline:  # a few collections, counted
            time.sleep(0.2)
            text = httpx.get(url, timeout=10).text
    finally:
        agent.terminate()
        out, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0
    assert auth_errors(text) >= 3, text
    assert 'vigil_log_files_unreadable{source="auth"} 1.0' in text
    assert "node_load1 " in text  # everything else carries on
    said = [ln for ln in out.decode(errors="replace").splitlines() if "auth.log" in ln]
    assert len(said) == 1 and "EACCES" in said[0], said

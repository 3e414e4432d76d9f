"""`vigil up`, `vigil server` and `vigil agent` as real processes, stopped by SIGINT or SIGTERM.

Each must exit 0 having stopped its services in the reverse of the order it started them (the
"started"/"stopped" lines of vigil.cmd.run, at DEBUG/INFO), with no thread of Vigil's left (the run
group warns "threads left after stopping" otherwise), no traceback, and the TSDB closed exactly once
(its close logs "closed TSDB in" once; a second close would log "already closed" at DEBUG).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.waiting import GENEROUS_S, ROOT, wait_until

pytestmark = pytest.mark.slow

READY = {
    "up": "listening on http://",
    "server": "listening on http://",
    "agent": "Vigil agent collecting every",
}


def config(tmp_path: Path, command: str) -> str:
    """A config on free loopback ports, data under tmp_path, nothing slow or host-wide switched on
    (the apt check) and nothing listening on the fixed default ports (StatsD)."""
    server_port, agent_port, syslog_port, dead_port = free_port(), free_port(), free_port(), free_port()
    # `vigil agent` ships to a port where nothing listens: it must still stop at once, mid-backoff.
    ship = f"\n    url: http://127.0.0.1:{dead_port}/api/v1/write" if command == "agent" else ""
    return f"""
server:
  listen: 127.0.0.1:{server_port}
  syslog:
    udp_listen: 127.0.0.1:{syslog_port}
storage:
  path: {tmp_path / "data"}
agent:
  listen: 127.0.0.1:{agent_port}
  data_dir: {tmp_path / "agent"}
  interval: 1s
  disable: [updates]
  statsd:
    udp_listen: ""
  ship:
    events: true{ship}
"""


def lines(log: str, verb: str) -> list[str]:
    return re.findall(rf" vigil: {verb} (\S+)$", log, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("up", signal.SIGINT),
        ("up", signal.SIGTERM),
        ("server", signal.SIGINT),
        ("server", signal.SIGTERM),
        ("agent", signal.SIGINT),
        ("agent", signal.SIGTERM),
    ],
)
def test_starts_and_stops_cleanly(tmp_path: Path, command: str, sig: signal.Signals) -> None:
    (tmp_path / "vigil.yml").write_text(config(tmp_path, command))
    log_path = tmp_path / "vigil.log"
    # This checkout's sources, also when the venv has another one installed (cwd is the tmp dir).
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    with log_path.open("wb") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "vigil", command, "--log-level", "debug"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: READY[command] in log_path.read_text() or p.poll() is not None,
            what=f"vigil {command} to start",
        )
        assert p.poll() is None, log_path.read_text()
        p.send_signal(sig)
        code = p.wait(timeout=GENEROUS_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log = log_path.read_text()
    assert code == 0, log
    started, stopped = lines(log, "started"), lines(log, "stopped")
    expected = {
        "up": [
            "tsdb",
            "events",
            "notifier",
            "rules",
            "http",
            "agent-shipper",
            "agent-event-shipper",
            "agent-security",
        ],
        "server": [
            "tsdb",
            "events",
            "notifier",
            "rules",
            "http",
            "syslog-shipper",
            "syslog-event-shipper",
            "syslog-security",
        ],
        "agent": ["agent-shipper", "agent-event-shipper", "agent-security"],
    }[command]
    assert started[: len(expected)] == expected, log
    assert "agent-collector" in started or command == "server"
    assert stopped == started[::-1], log
    assert f"received {sig.name}, stopping" in log
    assert "threads left" not in log and "Traceback" not in log, log
    if command != "agent":
        assert log.count("closed TSDB in") == 1 and "already closed" not in log, log
    else:
        assert "closed TSDB" not in log

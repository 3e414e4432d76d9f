"""`vigil up`: a new listening port and failed logins reach the server's event store without waiting for
a collection. The agent collects once a year here, so its only collection is the one at start-up:
whatever arrives after it came through the listening-ports watcher and the log pipeline's own thread
and the event shipper, which is what this proves (collections are counted, not timed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_http
from tests.system.test_security_e2e import line
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ATTACKER = "203.0.113.77"


def events(url: str, kind: str) -> list[dict]:
    r = httpx.get(url + "/api/v1/events", params={"kind": kind, "limit": "1000", "start": "0"}, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["events"])


def collections(agent_url: str) -> float:
    text = httpx.get(agent_url + "/metrics", timeout=10).text
    [value] = [ln.split()[-1] for ln in text.splitlines() if ln.startswith("vigil_agent_collections_total ")]
    return float(value)


def test_listener_and_failed_logins_are_stored_without_a_collection(tmp_path: Path) -> None:
    port, agent_port = free_port(), free_port()
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("")
    (tmp_path / "vigil.yml").write_text(
        f"""
server: {{listen: "127.0.0.1:{port}"}}
storage: {{path: "{tmp_path / "data"}"}}
agent:
  listen: 127.0.0.1:{agent_port}
  interval: 1y
  data_dir: {tmp_path / "agent"}
  statsd: {{udp_listen: ""}}
  disable: [file_integrity, updates]
  logs: {{auth: {{paths: ["{auth_log}"], journal: never}}}}
"""
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "vigil", "up", "--config", str(tmp_path / "vigil.yml")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url, agent_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{agent_port}"
    try:
        wait_http(url + "/-/ready", proc=p)
        wait_http(agent_url + "/metrics", proc=p)  # the last service: the watcher has its baseline
        assert collections(agent_url) == 1  # the start-up collection, the only one within a year
        with socket.create_server(("127.0.0.1", 0)) as listener:
            new_port = listener.getsockname()[1]

            def mine(kind: str) -> list[dict]:
                return [e for e in events(url, kind) if e["fields"]["port"] == new_port]

            wait_until(lambda: mine("listener_new"), what="the listener_new event stored on the server")
            with auth_log.open("a") as f:
                f.writelines(line(4242 + i, ATTACKER, 50000 + i) for i in range(10))
            wait_until(
                lambda: (
                    len([e for e in events(url, "auth") if e["fields"]["source_address"] == ATTACKER]) == 10
                ),
                what="ten auth events stored on the server",
            )
        wait_until(lambda: mine("listener_gone"), what="the listener_gone event stored on the server")
        [new] = mine("listener_new")
        comm = Path("/proc/self/comm").read_text().strip()
        assert new["fields"]["address"] == "127.0.0.1" and new["fields"]["process"] == comm
        assert new["fields"]["expected"] is False
        assert len(mine("listener_gone")) == 1
        assert collections(agent_url) == 1  # none of it waited for a collection
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=60)
        print(out.decode(errors="replace"))  # pytest shows it when the test failed
    assert p.returncode == 0, out.decode(errors="replace")

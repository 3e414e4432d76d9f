"""`vigil up`: the server plus an agent shipping this host's metrics to it, queryable end to end."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from tests.conftest import free_port, wait_http

pytestmark = pytest.mark.slow


def query(url: str, q: str) -> list[dict]:
    r = httpx.get(url + "/api/v1/query", params={"query": q}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def test_up_ships_host_metrics_to_its_own_server(tmp_path: Path) -> None:
    port, agent_port, statsd_port, app_port = free_port(), free_port(), free_port(), free_port()
    # An application exposing prometheus_client metrics, scraped by the agent.
    app_registry = CollectorRegistry()
    Counter("checkout_errors", "Failed checkouts.", registry=app_registry).inc(3)
    app_server, _thread = start_http_server(app_port, addr="127.0.0.1", registry=app_registry)
    (tmp_path / "vigil.yml").write_text(
        f"""
server:
  listen: 127.0.0.1:{port}
  auth:
    hmac_key: s3cret-key
agent:
  listen: 127.0.0.1:{agent_port}
  interval: 1s
  cluster: lab
  statsd:
    udp_listen: 127.0.0.1:{statsd_port}
  ship:
    hmac_key: s3cret-key
scrape_configs:
  - job_name: shop
    static_configs: [{{targets: ["127.0.0.1:{app_port}"]}}]
"""
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "vigil", "up"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", proc=p)
        deadline = time.monotonic() + 60
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            result = query(url, 'node_load1{job="vigil-agent"}')
            time.sleep(0.5)
        assert result, "the agent's samples never arrived"
        metric = result[0]["metric"]
        assert metric["instance"] == socket.gethostname() and metric["cluster"] == "lab"
        assert metric["platform"] in {
            "aws",
            "gcp",
            "azure",
            "vmware",
            "kvm",
            "xen",
            "virtualbox",
            "container",
            "bare-metal",
        }
        assert query(url, 'count(node_cpu_seconds_total{mode="idle"})')[0]["value"][1] != "0"
        # The agent records `up` for itself, as a Prometheus scraping it would: "is my agent alive".
        [up] = query(url, 'up{job="vigil-agent"}')
        assert up["value"][1] == "1" and up["metric"]["instance"] == socket.gethostname()
        assert query(url, 'scrape_samples_scraped{job="vigil-agent"} > 100')
        # It ships its families' TYPE and HELP, so the metadata API knows them.
        meta = httpx.get(url + "/api/v1/metadata", params={"metric": "node_load1"}, timeout=10).json()
        assert meta["data"]["node_load1"][0]["type"] == "gauge", meta
        assert meta["data"]["node_load1"][0]["help"], meta
        # Its own /metrics is served on agent.listen under `vigil up` too (OpenMetrics when asked).
        own = httpx.get(f"http://127.0.0.1:{agent_port}/metrics", timeout=10)
        assert own.status_code == 200 and "vigil_agent_collections_total" in own.text
        om = httpx.get(
            f"http://127.0.0.1:{agent_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
        assert om.headers["content-type"].startswith("application/openmetrics-text") and "# EOF" in om.text
        # A standalone agent beside it cannot have the same address: one line that says so, exit 2.
        beside = subprocess.run(
            [sys.executable, "-m", "vigil", "agent"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert beside.returncode == 2 and beside.stderr.count("\n") == 1, beside.stderr
        assert f"127.0.0.1:{agent_port} (agent.listen): address already in use" in beside.stderr
        # StatsD: an application timing a function and counting logins, over UDP.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(
                b"shop.logins:1|c|#app:shop\ncheckout:250|ms|#function:pay", ("127.0.0.1", statsd_port)
            )
        deadline = time.monotonic() + 60
        scraped = statsd = []
        while time.monotonic() < deadline and not (scraped and statsd):
            scraped = query(url, 'checkout_errors_total{job="shop"}')
            statsd = query(url, 'shop_logins_total{app="shop"}')
            time.sleep(0.5)
        assert scraped and scraped[0]["value"][1] == "3", scraped
        assert scraped[0]["metric"]["instance"] == f"127.0.0.1:{app_port}"
        assert query(url, 'up{job="shop"}')[0]["value"][1] == "1"
        assert statsd and statsd[0]["value"][1] == "1", statsd
        assert query(url, 'checkout_seconds_count{function="pay"}')[0]["value"][1] == "1"
        # An unsigned write is refused: the server checks the shared key.
        r = httpx.post(url + "/api/v1/import/prometheus", content=b"x 1\n")
        assert r.status_code == 401
    finally:
        app_server.shutdown()
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=30)[0].decode(errors="replace")
    assert p.returncode == 0, out
    assert (tmp_path / "data" / "agent" / "queue").is_dir()

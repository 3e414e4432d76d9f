"""Debian's Prometheus as a real sender: it scrapes a local target and remote-writes to Vigil."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http
from tests.waiting import wait_until
from vigil.model.matcher import Matcher
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def prometheus_samples(url: str, query: str) -> dict[frozenset, list[tuple[int, float]]]:
    r = httpx.get(url + "/api/v1/query", params={"query": query}, timeout=10).json()
    return {
        frozenset(s["metric"].items()): [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
        for s in r["data"]["result"]
    }


def test_prometheus_remote_writes_to_vigil(tmp_path: Path) -> None:
    prom_bin = require_binary("prometheus")
    vigil = VigilProcess(tmp_path / "vigil").start()
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    # Prometheus scrapes Vigil's own /metrics (a real local target) and forwards everything to Vigil.
    cfg.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vigil
    static_configs: [{{targets: ["127.0.0.1:{vigil.port}"]}}]
remote_write:
  - url: {vigil.url}/api/v1/write
    queue_config: {{batch_send_deadline: 500ms, max_samples_per_send: 500}}
""")
    prom = subprocess.Popen(
        [
            prom_bin,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prom.log").open("wb"),
    )
    prom_url = f"http://127.0.0.1:{port}"
    up, rss = 'up{job="vigil"}[10m]', 'process_resident_memory_bytes{job="vigil"}[10m]'
    try:
        wait_http(prom_url + "/-/ready", proc=prom)
        # A few scrapes in Prometheus (counted, not timed), then every one of them in Vigil, asked
        # through Vigil's own query API: nothing is compared before it can have arrived.
        try:
            wait_until(lambda: sum(map(len, prometheus_samples(prom_url, up).values())) >= 3, what="scrapes")
            expected = prometheus_samples(prom_url, up)
            expected_rss = prometheus_samples(prom_url, rss)

            def delivered() -> bool:
                for query, exp in ((up, expected), (rss, expected_rss)):
                    have = prometheus_samples(vigil.url, query)
                    if any(not set(pts) <= set(have.get(key, [])) for key, pts in exp.items()):
                        return False
                return True

            wait_until(delivered, what="Prometheus' samples in Vigil")
        except AssertionError as e:
            raise AssertionError(f"{e}\n" + (tmp_path / "prom.log").read_text()) from None
    finally:
        prom.terminate()
        prom.wait(timeout=30)
    vigil.stop()
    vigil.start()  # restart: what arrived is still there
    vigil.stop()
    with DB(vigil.data_dir) as db:
        for exp, name in ((expected, "up"), (expected_rss, "process_resident_memory_bytes")):
            got = {
                frozenset(lb.to_dict().items()): list(zip(ts.tolist(), v.tolist(), strict=True))
                for lb, ts, v in db.select(
                    [Matcher.eq("__name__", name), Matcher.eq("job", "vigil")], MIN_TIME, MAX_TIME
                )
            }
            assert set(got) == set(exp)
            for key, pts in exp.items():
                # Every sample Prometheus had when asked survived the restart (it kept scraping and
                # sending after that, so Vigil may have more).
                assert set(pts) <= set(got[key]), (key, sorted(set(pts) - set(got[key]))[:5])
                assert len(pts) >= 3
        names = db.label_values("__name__", [], MIN_TIME, MAX_TIME)
        assert "vigil_ingest_samples_total" in names and "scrape_duration_seconds" in names


def _prom_metric(url: str, name: str) -> dict[str, float]:
    """`name`'s samples on Prometheus' own /metrics, by remote_name (summed over other labels)."""
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            queue = labels.partition('remote_name="')[2].partition('"')[0]
            out[queue] = out.get(queue, 0.0) + float(value)
    return out


@pytest.mark.slow
def test_prometheus_reuses_connections_across_batch_deadlines(tmp_path: Path) -> None:
    """Regression: Vigil closed idle connections after uvicorn's 5 s, the same as Prometheus' default
    batch_send_deadline; a batch sent on a connection the server was closing at that moment failed
    ("broken pipe", "connection reset by peer") and was retried, every ~30 s with one sender.

    Fifteen remote-write queues with the default 5 s deadline, each sending only on its deadline (batches
    never fill), reuse a connection after ~5 s idle on every send; the old server failed about one such
    send in ten. Vigil runs with its default configuration."""
    prom_bin = require_binary("prometheus")
    vigil = VigilProcess(tmp_path / "vigil").start()
    port = free_port()
    queues = [f"q{i}" for i in range(15)]
    remote_write = "".join(
        f"""
  - url: {vigil.url}/api/v1/write
    name: {name}
    queue_config: {{batch_send_deadline: 5s, max_samples_per_send: 100000, capacity: 200000,
                    min_shards: 1, max_shards: 1}}
    metadata_config: {{send: false}}"""
        for name in queues
    )
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: vigil
    static_configs: [{{targets: ["127.0.0.1:{vigil.port}"]}}]
remote_write:{remote_write}
""")
    log_path = tmp_path / "prom.log"
    prom = subprocess.Popen(
        [
            prom_bin,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
    )
    prom_url = f"http://127.0.0.1:{port}"
    batches = "prometheus_remote_storage_sent_batch_duration_seconds_count"
    try:
        wait_http(prom_url + "/-/ready", proc=prom)
        # Five batches per queue: four sends on a connection idle for one deadline, 60 in all.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            sent = _prom_metric(prom_url, batches)
            if all(sent.get(q, 0) >= 5 for q in queues):
                break
            time.sleep(1)
        else:
            pytest.fail(f"Prometheus did not send five batches per queue: {sent}\n{log_path.read_text()}")
        retried = _prom_metric(prom_url, "prometheus_remote_storage_samples_retried_total")
        failed = _prom_metric(prom_url, "prometheus_remote_storage_samples_failed_total")
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        vigil.stop()
    log = log_path.read_text()
    problems = [
        line
        for line in log.splitlines()
        if any(s in line for s in ("Failed to send batch", "connection reset", "broken pipe"))
    ]
    assert problems == [], "\n".join(problems)
    assert sum(retried.values()) == 0 and sum(failed.values()) == 0, (retried, failed)

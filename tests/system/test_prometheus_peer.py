"""Debian's Prometheus as a real sender: it scrapes a local target and remote-writes to Vigil."""

from __future__ import annotations

import subprocess
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

"""Debian's Prometheus as a real sender: it scrapes a local target and remote-writes to Vigil."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http
from vigil.model.matcher import Matcher
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME

pytestmark = pytest.mark.peer


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
    try:
        wait_http(prom_url + "/-/ready", proc=prom)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = httpx.get(vigil.url + "/metrics").text
            line = next(
                (x for x in m.splitlines() if x.startswith('vigil_ingest_samples_total{protocol="remote')), ""
            )
            if line and float(line.split()[-1]) > 2000:
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                "Prometheus did not deliver samples to Vigil:\n" + (tmp_path / "prom.log").read_text()
            )
        expected = prometheus_samples(prom_url, 'up{job="vigil"}[10m]')
        expected_rss = prometheus_samples(prom_url, 'process_resident_memory_bytes{job="vigil"}[10m]')
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
                want, have = dict(pts), dict(got[key])
                # Prometheus kept scraping after the query, and its last batch may not have been sent
                # before it stopped: compare where both have a sample, and require nearly all of them.
                common = want.keys() & have.keys()
                assert len(common) >= 0.9 * len(want) and len(common) >= 3, (len(common), len(want))
                assert {t: have[t] for t in common} == {t: want[t] for t in common}
        names = db.label_values("__name__", [], MIN_TIME, MAX_TIME)
        assert "vigil_ingest_samples_total" in names and "scrape_duration_seconds" in names

"""Query limits: a sample budget and a timeout, reported with Prometheus' error types."""

from __future__ import annotations

import time
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest

from tests.conftest import VigilProcess
from vigil.model.labels import Labels
from vigil.prompb.encode import encode_write_request
from vigil.promql.engine import Engine, EngineOptions
from vigil.promql.errors import QueryTimeout, TooManySamples
from vigil.tsdb.db import DB, Options


@pytest.fixture
def db(tmp_path: Path):
    d = DB(tmp_path, Options(fsync=False), now_ms=lambda: 600_000)  # the samples' "now"
    ref = d.series_ref(Labels.from_dict({"__name__": "m"}))
    ts = np.arange(0, 600_000, 15_000)
    d.append(np.full(ts.size, ref), ts, np.ones(ts.size))
    yield d
    d.close()


def test_sample_budget(db: DB) -> None:
    assert len(Engine(db, EngineOptions(max_samples=100)).instant_query("m[10m]", 599_000).series) == 1
    with pytest.raises(TooManySamples, match="too many samples"):
        Engine(db, EngineOptions(max_samples=10)).instant_query("m[10m]", 599_000)


def test_timeout(db: DB) -> None:
    with pytest.raises(QueryTimeout, match="query timed out"):
        Engine(db, EngineOptions(timeout_s=0.0)).range_query("sum(rate(m[1m]))", 0, 600_000, 15_000)


def test_limits_through_the_api(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("query:\n  max_samples: 5\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    try:
        t0 = int(time.time()) * 1000 - 60_000  # a minute of samples up to now: the server takes them
        body = encode_write_request(
            [[("__name__", "m")]], [[(t0 + t, 1.0) for t in range(1000, 60_000, 1000)]]
        )
        r = httpx.post(
            v.url + "/api/v1/write",
            content=bytes(cramjam.snappy.compress_raw(body)),
            headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 204
        r = httpx.get(
            v.url + "/api/v1/query", params={"query": "count_over_time(m[1m])", "time": t0 // 1000 + 60}
        )
        assert r.status_code == 422
        assert r.json()["errorType"] == "execution" and "too many samples" in r.json()["error"]
        # A 1 ns timeout has always expired by the time evaluation starts.
        r = httpx.get(
            v.url + "/api/v1/query", params={"query": "m", "time": t0 // 1000 + 60, "timeout": "0.000000001"}
        )
        assert r.status_code == 503 and r.json()["errorType"] == "timeout", r.text
    finally:
        v.stop()

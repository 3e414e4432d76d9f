"""Bad input against a real server: each malformed request gets its documented status, nothing of it
is stored, and the server keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import VigilProcess
from tests.web.asgi import Client as TestClient
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.validate import Limits
from vigil.model.matcher import Matcher
from vigil.prompb import WriteRequest
from vigil.prompb.encode import encode_write_request
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options
from vigil.web.app import create_app
from vigil.web.auth import TokenAuth
from vigil.web.write import WriteAPI, WriteOptions

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
# Samples are written an hour behind the server's clock and later: within retention, not ahead.
T0 = int(time.time() * 1000) - 3_600_000
CONFIG = """
limits:
  max_request_body_bytes: 64KiB
  max_decompressed_bytes: 256KiB
  max_label_names_per_series: 8
  max_label_name_length: 32
  max_label_value_length: 64
  max_samples_per_request: 2000
"""


def snappy(b: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(b))


def rw(*series: list[tuple[str, str]], ts: int = T0 + 1000) -> bytes:
    return snappy(encode_write_request(list(series), [[(ts, 1.0)] for _ in series]))


def raw_series(pairs: list[tuple[str, bytes]]) -> bytes:
    """A WriteRequest built by hand, so invalid UTF-8 can be sent."""
    lab = b""
    for n, v in pairs:
        inner = b"\x0a" + bytes([len(n)]) + n.encode() + b"\x12" + bytes([len(v)]) + v
        lab += b"\x0a" + bytes([len(inner)]) + inner
    sample = b"\x09" + np.float64(1).tobytes() + b"\x10\x01"
    ts = lab + b"\x12" + bytes([len(sample)]) + sample
    return snappy(b"\x0a" + bytes([len(ts)]) + ts)


GOOD = [("__name__", "good"), ("job", "x")]
BAD_REQUESTS = [
    # (id, body, headers override, status, message fragment)
    ("not snappy", b"\x00\xff\xfe garbage", {}, 400, "snappy"),
    ("not protobuf", snappy(b"\xff\xff\xff\xff"), {}, 400, "protobuf"),
    ("missing name", rw([("job", "x")]), {}, 400, "missing metric name"),
    ("invalid label name", rw([("1bad", "x"), ("__name__", "m")]), {}, 400, "invalid label name"),
    ("invalid metric name", rw([("__name__", "no-dash")]), {}, 400, "invalid metric name"),
    ("duplicate label", rw([("__name__", "m"), ("a", "1"), ("a", "2")]), {}, 400, "duplicate label name"),
    ("unsorted labels", rw([("__name__", "m"), ("b", "1"), ("a", "2")]), {}, 400, "not sorted"),
    ("too many labels", rw([("__name__", "m")] + [(f"l{i}", "v") for i in range(8)]), {}, 400, "exceed"),
    ("long name", rw([("__name__", "m"), ("x" * 33, "v")]), {}, 400, "longer than 32"),
    ("long value", rw([("__name__", "m"), ("a", "v" * 65)]), {}, 400, "longer than 64"),
    ("invalid utf8", raw_series([("__name__", b"m"), ("a", b"\xff\xfe")]), {}, 400, "protobuf"),
    ("bad series among good", rw(GOOD, [("job", "nameless")]), {}, 400, "missing metric name"),
    ("body too large", b"\0" * (65 * 1024), {}, 413, "exceeds"),
    ("inflates too far", snappy(b"\0" * (300 * 1024)), {}, 413, "decompressed"),
    ("gzip", rw(GOOD), {"Content-Encoding": "gzip"}, 415, "encoding"),
    ("json", rw(GOOD), {"Content-Type": "application/json"}, 415, "content type"),
    (
        "remote write 2",
        rw(GOOD),
        {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
        415,
        "1.0",
    ),
]


@pytest.fixture
def server(tmp_path: Path):
    cfg = tmp_path / "vigil.yml"
    cfg.write_text(CONFIG)
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    yield v
    v.stop()


def test_bad_requests_are_refused_and_server_keeps_serving(server: VigilProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for ts, (name, body, hdrs, status, fragment) in enumerate(BAD_REQUESTS, start=1):
            r = c.post("/api/v1/write", content=body, headers=HEADERS | hdrs)
            assert r.status_code == status, (name, r.status_code, r.text)
            assert fragment in r.text, (name, r.text)
            # Still serving, and still storing valid data.
            assert c.get("/-/healthy").status_code == 200
            good = rw(GOOD, ts=T0 + ts * 1000)
            assert c.post("/api/v1/write", content=good, headers=HEADERS).status_code == 204
        assert c.get("/api/v1/write").status_code == 405
        r = c.post("/api/v1/import/prometheus", content=b'good{job="x"} not-a-number\n')
        assert r.status_code == 400 and "line 1" in r.text
        metrics = c.get("/metrics").text
        assert 'vigil_ingest_requests_rejected_total{reason="missing_metric_name"} 2.0' in metrics
        assert 'vigil_ingest_samples_total{protocol="remote_write"} 17.0' in metrics
    server.stop()
    with DB(server.data_dir) as db:
        names = db.label_values("__name__", [], MIN_TIME, MAX_TIME)
        assert names == ["good"]  # nothing of any refused request was stored
        ((_, ts, _),) = db.select([Matcher.eq("__name__", "good")], MIN_TIME, MAX_TIME)
        assert ts.tolist() == [T0 + k * 1000 for k in range(1, len(BAD_REQUESTS) + 1)]


def test_partial_write_of_too_old_and_histogram_samples(server: VigilProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        newest = rw(GOOD, ts=T0 + 3_600_000)
        assert c.post("/api/v1/write", content=newest, headers=HEADERS).status_code == 204
        r = c.post("/api/v1/write", content=rw(GOOD), headers=HEADERS)  # 1 h behind, window 10 m
        assert r.status_code == 400 and "too old" in r.text
        req = WriteRequest()
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value="h")
        ts.histograms.append(b"\x08\x01")
        r = c.post("/api/v1/write", content=snappy(req.SerializeToString()), headers=HEADERS)
        assert r.status_code == 400 and "native histograms" in r.text


def test_samples_outside_the_time_bounds_get_400_counted_and_the_rest_stored(server: VigilProcess) -> None:
    now, day = int(time.time() * 1000), 86_400_000
    points = [(now - 16 * day, 2.0), (now, 3.0), (now + 11 * 60_000, 4.0), (now + 30 * day, 5.0)]
    body = snappy(encode_write_request([GOOD], [points]))
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/api/v1/write", content=body, headers=HEADERS)
        assert r.status_code == 400, r.text
        assert "stored 1 samples; rejected: 2 too far in future, 1 too old" in r.text
        assert "future_grace" in r.text and "retention" in r.text
        metrics = c.get("/metrics").text
        assert 'vigil_ingest_samples_rejected_total{reason="too_far_in_future"} 2.0' in metrics
        assert 'vigil_ingest_samples_rejected_total{reason="too_old"} 1.0' in metrics
        # The server still takes current data.
        assert c.post("/api/v1/write", content=rw(GOOD, ts=now + 1), headers=HEADERS).status_code == 204
    server.stop()
    with DB(server.data_dir) as db:
        ((_, ts, _),) = db.select([Matcher.eq("__name__", "good")], MIN_TIME, MAX_TIME)
        assert ts.tolist() == [now, now + 1]


def test_int64_extreme_timestamps_get_400(tmp_path: Path) -> None:
    # In process, with a fake clock and no flush by span: if the extremes got in, a flush would hand
    # them to the compaction planner (tested on its own, under a memory cap).
    now = 1_700_000_000_000
    registry = CollectorRegistry()
    db = DB(tmp_path / "data", Options(fsync=False, head_flush_span_ms=2**62), now_ms=lambda: now)
    api = WriteAPI(
        Ingester(db, Limits(), IngestMetrics(registry)),
        TokenAuth([], []),
        WriteOptions(max_body=1 << 20, max_decompressed=1 << 24, max_samples=10**6),
    )
    client = TestClient(create_app([api], registry=None))
    try:
        points = [(-(2**63), 1.0), (now, 2.0), (2**63 - 1, 3.0)]
        r = client.post(
            "/api/v1/write", content=snappy(encode_write_request([GOOD], [points])), headers=HEADERS
        )
        assert r.status_code == 400
        assert r.text.startswith("stored 1 samples; rejected: 1 too far in future, 1 too old"), r.text
        rejected = "vigil_ingest_samples_rejected_total"
        assert registry.get_sample_value(rejected, {"reason": "too_far_in_future"}) == 1
        assert registry.get_sample_value(rejected, {"reason": "too_old"}) == 1
        ((_, ts, _),) = db.select([Matcher.eq("__name__", "good")], MIN_TIME, MAX_TIME)
        assert ts.tolist() == [now]
    finally:
        db.close()


def test_text_import(server: VigilProcess) -> None:
    t = int(time.time() * 1000) - 60_000
    body = f'# TYPE backup_ok gauge\nbackup_ok{{host="db1"}} 1 {t}\nbackup_ok{{host="db2"}} 0\n'.encode()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post("/api/v1/import/prometheus", content=body).status_code == 204
    server.stop()
    with DB(server.data_dir) as db:
        got = {
            lb.get("host"): (ts.tolist(), v.tolist())
            for lb, ts, v in db.select([Matcher.eq("__name__", "backup_ok")], MIN_TIME, MAX_TIME)
        }
    assert got["db1"] == ([t], [1.0])
    assert got["db2"][1] == [0.0]


def test_bearer_tokens(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("server:\n  auth:\n    write_tokens: [s3cret]\n    read_tokens: [r3ad]\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    try:
        with httpx.Client(base_url=v.url, timeout=10) as c:
            assert c.post("/api/v1/write", content=rw(GOOD), headers=HEADERS).status_code == 401
            bad = HEADERS | {"Authorization": "Bearer wrong"}
            assert c.post("/api/v1/write", content=rw(GOOD), headers=bad).status_code == 401
            read_tok = HEADERS | {"Authorization": "Bearer r3ad"}
            assert c.post("/api/v1/write", content=rw(GOOD), headers=read_tok).status_code == 401
            ok = HEADERS | {"Authorization": "Bearer s3cret"}
            assert c.post("/api/v1/write", content=rw(GOOD), headers=ok).status_code == 204
            assert c.get("/api/v1/status/buildinfo").status_code == 401
            assert (
                c.get("/api/v1/status/buildinfo", headers={"Authorization": "Bearer r3ad"}).status_code == 200
            )
            assert c.get("/metrics").status_code == 200
            assert 'vigil_ingest_requests_rejected_total{reason="unauthorized"} 3.0' in c.get("/metrics").text
    finally:
        v.stop()


def test_tenant_tokens(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("server:\n  auth:\n    write_tokens: [plain]\n    tenants:\n      acme: [acme-token]\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    try:
        with httpx.Client(base_url=v.url, timeout=10) as c:
            forged = rw([("__name__", "m"), ("tenant", "victim")], ts=int(time.time() * 1000))
            for token in ("acme-token", "plain"):
                r = c.post(
                    "/api/v1/write", content=forged, headers=HEADERS | {"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 204
            r = c.post(
                "/api/v1/import/prometheus",
                content=b'n{tenant="victim"} 1\n',
                headers={"Authorization": "Bearer acme-token"},
            )
            assert r.status_code == 204
    finally:
        v.stop()
    with DB(v.data_dir) as db:
        got = sorted(
            (lb.metric_name, lb.get("tenant"))
            for lb, _, _ in db.select([Matcher.re("__name__", "m|n")], MIN_TIME, MAX_TIME)
        )
    assert got == [("m", ""), ("m", "acme"), ("n", "acme")]


def test_series_limits_are_429_naming_the_limit(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text(
        "server:\n  auth:\n    write_tokens: [plain]\n    tenants:\n      acme: [acme-token]\n"
        "limits:\n  max_series: 6\n  max_series_per_tenant: 2\n  max_series_per_metric: 3\n"
    )
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    plain = HEADERS | {"Authorization": "Bearer plain"}
    acme = HEADERS | {"Authorization": "Bearer acme-token"}
    ids = [[("__name__", "m"), ("id", str(i))] for i in range(4)]
    try:
        with httpx.Client(base_url=v.url, timeout=10) as c:
            assert c.post("/api/v1/write", content=rw(*ids[:3]), headers=plain).status_code == 204
            r = c.post("/api/v1/write", content=rw(ids[3]), headers=plain)
            assert r.status_code == 429 and "limits.max_series_per_metric is 3" in r.text, r.text
            assert "nothing of the request was stored" in r.text
            assert c.post("/api/v1/write", content=rw(*ids[:2]), headers=acme).status_code == 204
            r = c.post("/api/v1/write", content=rw(ids[2]), headers=acme)
            assert r.status_code == 429 and "limits.max_series_per_tenant is 2" in r.text, r.text
            r = c.post("/api/v1/import/prometheus", content=b"other 1\nmore 1\n", headers=plain)
            assert r.status_code == 429 and "limits.max_series is 6" in r.text, r.text
            # Writes to series that exist go on.
            assert (
                c.post("/api/v1/write", content=rw(*ids[:3], ts=T0 + 2000), headers=plain).status_code == 204
            )
            metrics = c.get("/metrics").text
        for limit, n in (("max_series", 2), ("max_series_per_tenant", 1), ("max_series_per_metric", 1)):
            assert f'vigil_ingest_series_rejected_total{{limit="{limit}"}} {n}.0' in metrics
            assert f'vigil_ingest_requests_rejected_total{{reason="{limit}"}} 1.0' in metrics
        assert 'vigil_ingest_series_limit{limit="max_series"} 6.0' in metrics
    finally:
        v.stop()
    with DB(v.data_dir) as db:
        assert db.stats()["series"] == 5


def test_one_long_series_over_the_sample_limit_is_413(server: VigilProcess) -> None:
    # max_samples_per_request is 2,000 here: one series of 2,001 samples is refused while walking
    # (counted, not decoded), one of 2,000 is stored.
    def one_series(n: int) -> bytes:
        return snappy(encode_write_request([GOOD], [[(T0 + i, 1.0) for i in range(n)]]))

    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/api/v1/write", content=one_series(2001), headers=HEADERS)
        assert r.status_code == 413 and "more than 2000 samples" in r.text, r.text
        assert c.post("/api/v1/write", content=one_series(2000), headers=HEADERS).status_code == 204
        r = c.post("/api/v1/import/prometheus", content=b"x 1\n" * 2001)
        assert r.status_code == 413 and "more than 2000 samples" in r.text, r.text
        ok = b"# HELP x X.\n# TYPE x gauge\n\n" + b"".join(b'x{i="%d"} 1 %d\n' % (i, T0) for i in range(2000))
        assert c.post("/api/v1/import/prometheus", content=ok).status_code == 204

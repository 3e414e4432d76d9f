"""The ingester end to end on a real DB: whatever the decoder's fast paths do, storage gets exactly
the samples and series of the request."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.validate import Limits
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.prompb.codec import decode_write_request
from vigil.prompb.encode import encode_write_request
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options

# The samples below are from 1970 (up to 10**6 ms); the DB's clock says they are current.
NOW = lambda: 10**6  # noqa: E731
_names = st.sampled_from(["a", "b", "job", "zz"])
_series = st.dictionaries(_names, st.text("xyz\xff\x12\n", min_size=1, max_size=4), max_size=3)
_points = st.lists(
    st.tuples(st.integers(0, 10**6), st.sampled_from([0.0, 1.5, -2.0, math.inf, 7e-300])),
    min_size=1,
    max_size=3,
    unique_by=lambda p: p[0],
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.lists(st.tuples(_series, _points), min_size=1, max_size=6), min_size=1, max_size=4)
)
def test_stored_exactly_what_was_sent(tmp_path_factory: pytest.TempPathFactory, requests) -> None:
    db = DB(tmp_path_factory.mktemp("db"), Options(fsync=False, out_of_order_window_ms=10**13), now_ms=NOW)
    ing = Ingester(db, Limits(), IngestMetrics(CollectorRegistry()))
    want: dict[Labels, dict[int, float]] = {}
    try:
        for req in requests:
            series = [sorted([("__name__", "m"), *d.items()]) for d, _ in req]
            ing.write_remote(decode_write_request(encode_write_request(series, [p for _, p in req])))
            for s, (_, pts) in zip(series, req, strict=True):
                want.setdefault(Labels.from_pairs(s), {}).update(dict(pts))
        got = {
            lb: dict(zip(ts.tolist(), v.tolist(), strict=True))
            for lb, ts, v in db.select([Matcher.eq("__name__", "m")], MIN_TIME, MAX_TIME)
        }
        assert got == want
    finally:
        db.close()


def test_zero_values_and_several_samples_per_series(tmp_path) -> None:
    db = DB(tmp_path, Options(fsync=False), now_ms=NOW)
    ing = Ingester(db, Limits(), IngestMetrics(CollectorRegistry()))
    body = encode_write_request(
        [[("__name__", "z")], [("__name__", "w")]], [[(5, 0.0)], [(1, 1.0), (2, 0.0)]]
    )
    ing.write_remote(decode_write_request(body))
    got = {
        lb.metric_name: (ts.tolist(), v.tolist())
        for lb, ts, v in db.select([Matcher.re("__name__", ".+")], MIN_TIME, MAX_TIME)
    }
    assert got == {"z": ([5], [0.0]), "w": ([1, 2], [1.0, 0.0])}
    assert np.isfinite(db.stats()["max_time"])
    db.close()


def test_sample_limit_holds_when_the_fast_path_undercounts(tmp_path) -> None:
    # One series with many samples: the unwalked decode sees one sample, the real count is 50.
    from vigil.ingest.validate import InvalidSeries

    db = DB(tmp_path, Options(fsync=False), now_ms=NOW)
    ing = Ingester(db, Limits(max_samples_per_request=10), IngestMetrics(CollectorRegistry()))
    body = encode_write_request([[("__name__", "m")]], [[(t, 1.0) for t in range(50)]])
    with pytest.raises(InvalidSeries, match="50 samples exceed"):
        ing.write_remote(decode_write_request(body))
    assert db.stats()["head_samples"] == 0
    db.close()


def test_tenant_comes_from_the_server_never_from_the_payload(tmp_path) -> None:
    db = DB(tmp_path, Options(fsync=False), now_ms=NOW)
    ing = Ingester(db, Limits(), IngestMetrics(CollectorRegistry()))
    forged = [("__name__", "m"), ("tenant", "victim")]
    body = encode_write_request([forged], [[(1, 1.0)]])
    ing.write_remote(decode_write_request(body), tenant="acme")
    ing.write_remote(decode_write_request(body), tenant="beta")  # same bytes, other tenant: other series
    ing.write_remote(decode_write_request(body))  # no tenant token: the forged label is dropped
    got = sorted(
        lb.get("tenant") for lb, _, _ in db.select([Matcher.eq("__name__", "m")], MIN_TIME, MAX_TIME)
    )
    assert got == ["", "acme", "beta"]
    db.close()


def test_bad_protobuf_only_the_walked_decode_sees_is_invalid_series(tmp_path) -> None:
    # The tail fast path reads the last sample and takes the rest as labels; here the rest holds a
    # field of wire type 7, so the key does not parse and the walked decode (upb) refuses the body.
    # That refusal is the request's fault (400), not an error escaping the ingester (a 500).
    from vigil.ingest.validate import InvalidSeries

    sample = b"\x12\x0b\x09" + np.float64(1).tobytes() + b"\x10\x01"
    ts = b"\x0a\x0c\x0a\x08__name__\x12\x00" + b"\x0f" + sample
    body = b"\x0a" + bytes([len(ts)]) + ts
    db = DB(tmp_path, Options(fsync=False))
    ing = Ingester(db, Limits(), IngestMetrics(CollectorRegistry()))
    decoded = decode_write_request(body)
    assert decoded.unverified_body is not None  # the shape this test is about
    with pytest.raises(InvalidSeries, match="bad protobuf body") as exc:
        ing.write_remote(decoded)
    assert exc.value.reason == "protobuf"
    assert db.stats()["series"] == 0
    db.close()


def test_key_too_long_to_be_labels_is_walked_not_parsed(tmp_path, monkeypatch) -> None:
    # One series x 5,000 samples: unwalked, all but the last sample look like its "labels". Such a
    # key is longer than any label set the limits allow, so it goes to the walk (and its limit)
    # without being parsed whole first.
    import vigil.ingest.ingester as ingester_module
    from vigil.ingest.validate import InvalidSeries

    limits = Limits(2, 8, 8, max_samples_per_request=4_000)
    db = DB(tmp_path, Options(fsync=False))
    ing = Ingester(db, limits, IngestMetrics(CollectorRegistry()))
    body = encode_write_request([[("__name__", "m")]], [[(t, 1.0) for t in range(5_000)]])
    decoded = decode_write_request(body, limits=ing.wire_limits)
    assert len(decoded.label_keys[0]) > limits.max_label_section_bytes
    parsed: list[bytes] = []
    real = ingester_module.parse_label_key
    monkeypatch.setattr(ingester_module, "parse_label_key", lambda key: parsed.append(key) or real(key))
    with pytest.raises(InvalidSeries, match="more than 4000 samples"):
        ing.write_remote(decoded)
    assert parsed == []
    db.close()

"""Series limits on a real DB: global, per tenant, per metric; all-or-nothing; counts hold across
restarts (from the index) and follow retention's deletions."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.tsdb.clock import FakeClock
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.series_limit import SeriesLimiter, SeriesLimitExceeded, SeriesLimitMetrics, SeriesLimits
from vigil.ingest.validate import Limits
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.model.textparse import parse_text
from vigil.prompb.codec import decode_write_request
from vigil.prompb.encode import encode_write_request
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options


def AT_10S() -> int:
    return 10_000


def _ingester(db: DB, limits: SeriesLimits, registry: CollectorRegistry | None = None) -> Ingester:
    registry = registry or CollectorRegistry()
    limiter = SeriesLimiter(db, limits, SeriesLimitMetrics(registry, limits))
    return Ingester(db, Limits(), IngestMetrics(registry), series_limiter=limiter)


def _write(ing: Ingester, *names: str, t: int = 1000, tenant: str | None = None, metric: str = "m") -> None:
    body = encode_write_request([[("__name__", metric), ("id", n)] for n in names], [[(t, 1.0)]] * len(names))
    ing.write_remote(decode_write_request(body), tenant)


def _stored(db: DB) -> dict[tuple[str, str, str], list[int]]:
    return {
        (lb.get("tenant"), lb.metric_name, lb.get("id")): ts.tolist()
        for lb, ts, _ in db.select([Matcher.re("__name__", ".+")], MIN_TIME, MAX_TIME)
    }


def test_global_limit_refuses_the_whole_request(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, SeriesLimits(max_series=3), registry)
        _write(ing, "a", "b", "c")
        with pytest.raises(SeriesLimitExceeded, match=r"limits\.max_series is 3") as exc:
            _write(ing, "a", "d", t=2000)  # one existing series, one new one
        assert exc.value.reason == "max_series"
        assert "1 new series in the store, where 3 exist" in str(exc.value)
        _write(ing, "a", "b", t=3000)  # existing series go on being written
        assert _stored(db) == {
            ("", "m", "a"): [1000, 3000],
            ("", "m", "b"): [1000, 3000],
            ("", "m", "c"): [1000],
        }
        assert registry.get_sample_value("vigil_ingest_series_rejected_total", {"limit": "max_series"}) == 1
        assert registry.get_sample_value("vigil_ingest_series_limit", {"limit": "max_series"}) == 3


def test_per_tenant_limit(tmp_path: Path) -> None:
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, SeriesLimits(max_series_per_tenant=2))
        _write(ing, "a", "b", tenant="acme")
        with pytest.raises(SeriesLimitExceeded, match="tenant 'acme'") as exc:
            _write(ing, "c", tenant="acme")
        assert exc.value.reason == "max_series_per_tenant"
        _write(ing, "a", "b", tenant="beta")  # the same labels for another tenant: its own count
        _write(ing, "a", "b", "c", "d")  # untenanted writes count against max_series only
        assert len(_stored(db)) == 8


def test_per_metric_limit_per_tenant(tmp_path: Path) -> None:
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, SeriesLimits(max_series_per_metric=2))
        _write(ing, "a", "b", metric="http_requests_total")
        with pytest.raises(SeriesLimitExceeded, match="metric 'http_requests_total'") as exc:
            _write(ing, "c", metric="http_requests_total")
        assert exc.value.reason == "max_series_per_metric"
        _write(ing, "c", "d", metric="other")
        _write(ing, "c", "d", metric="http_requests_total", tenant="acme")
        with pytest.raises(SeriesLimitExceeded, match="'http_requests_total' of tenant 'acme'"):
            _write(ing, "e", metric="http_requests_total", tenant="acme")


def test_text_import_is_limited_too(tmp_path: Path) -> None:
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, SeriesLimits(max_series=2))
        ing.write_text(parse_text(b'm{id="a"} 1 1000\nm{id="b"} 1 1000\n', 0))
        with pytest.raises(SeriesLimitExceeded):
            ing.write_text(parse_text(b'm{id="a"} 2 2000\nm{id="c"} 1 2000\n', 0))
        assert _stored(db) == {("", "m", "a"): [1000], ("", "m", "b"): [1000]}


@pytest.mark.parametrize("flush", [False, True], ids=["series-from-wal", "series-from-index"])
def test_counts_survive_a_restart(tmp_path: Path, flush: bool) -> None:
    limits = SeriesLimits(max_series=5, max_series_per_tenant=2, max_series_per_metric=2)
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, limits)
        _write(ing, "a", "b", tenant="acme")
        _write(ing, "x", metric="n")
        if flush:
            db.flush_head()
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        ing = _ingester(db, limits)
        with pytest.raises(SeriesLimitExceeded, match="max_series_per_tenant"):
            _write(ing, "c", tenant="acme")
        _write(ing, "y", metric="n")
        with pytest.raises(SeriesLimitExceeded, match="max_series_per_metric"):
            _write(ing, "z", metric="n")
        _write(ing, "z", metric="o")
        with pytest.raises(SeriesLimitExceeded, match=r"limits\.max_series is 5"):
            _write(ing, "w", metric="p")
        _write(ing, "a", "b", tenant="acme", t=2000)


def test_series_deleted_by_retention_free_their_place(tmp_path: Path) -> None:
    clock = FakeClock(500)
    with DB(tmp_path, Options(fsync=False, retention_ms=1000, out_of_order_window_ms=0), now_ms=clock) as db:
        ing = _ingester(db, SeriesLimits(max_series=2))
        _write(ing, "old", t=0)
        db.flush_head()
        clock.now = 10_500
        _write(ing, "new", t=10_000)
        with pytest.raises(SeriesLimitExceeded):
            _write(ing, "third", t=10_001)
        assert db.apply_retention() == 1  # the block holding "old" expires, and the series with it
        assert db.stats()["series"] == 1
        _write(ing, "third", t=10_002)
        assert sorted(k[2] for k in _stored(db)) == ["new", "third"]


def test_count_series_from_the_index(tmp_path: Path) -> None:
    with DB(tmp_path, Options(fsync=False), now_ms=AT_10S) as db:
        for pairs in (
            [("__name__", "a")],
            [("__name__", "a"), ("tenant", "t1")],
            [("__name__", "a"), ("tenant", "t1"), ("x", "1")],
            [("__name__", "b"), ("tenant", "t2")],
        ):
            db.series_ref(Labels.from_pairs(pairs))
        assert db.count_series(("tenant", "__name__")) == {("", "a"): 1, ("t1", "a"): 2, ("t2", "b"): 1}
        assert db.count_series(()) == {(): 4}

"""The embedded DB through the storage interface: exact round trips, durability rules, maintenance."""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tsdb.clock import FakeClock
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, DataDirError, Options

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
HOUR = 3_600_000
# The samples here are from the first minutes of 1970; the clock says the sender is live then.
LIVE = FakeClock(600_000)


def bits(a: np.ndarray) -> list[int]:
    return np.asarray(a, np.float64).view(np.int64).tolist()


def put(db: DB, labels: Labels, points: list[tuple[int, float]]) -> None:
    ref = db.series_ref(labels)
    db.append(
        np.full(len(points), ref, np.int64),
        np.array([t for t, _ in points], np.int64),
        np.array([v for _, v in points], np.float64),
    )


def read_all(db: DB) -> dict[Labels, list[tuple[int, int]]]:
    out = {}
    for labels, ts, vals in db.select([Matcher.re("__name__", ".+")], MIN_TIME, MAX_TIME):
        out[labels] = list(zip(ts.tolist(), bits(vals), strict=True))
    return out


def test_round_trip_exact_including_stale_markers(tmp_path: Path) -> None:
    a = Labels.from_dict({"__name__": "up", "job": "node", "instance": "h1:9100"})
    b = Labels.from_dict({"__name__": "up", "job": "node", "instance": "h2:9100"})
    pts_a = [(1000, 1.0), (2000, STALE), (3000, -0.0), (4000, math.inf), (5000, 1e-300)]
    with DB(tmp_path, now_ms=LIVE) as db:
        put(db, a, pts_a)
        put(db, b, [(1500, 0.1)])
        got = read_all(db)
        assert got[a] == [(t, bits([v])[0]) for t, v in pts_a]
        assert got[b] == [(1500, bits([0.1])[0])]
        # Matchers and time bounds (inclusive on both ends).
        ss = db.select([Matcher.eq("instance", "h1:9100")], 2000, 4000)
        assert [lb for lb, _, _ in ss] == [a]
        assert ss.series(0)[1].tolist() == [2000, 3000, 4000]
        assert db.label_values("instance", [], MIN_TIME, MAX_TIME) == ["h1:9100", "h2:9100"]
        assert db.label_names([Matcher.eq("instance", "h2:9100")], MIN_TIME, MAX_TIME) == [
            "__name__",
            "instance",
            "job",
        ]
        assert db.series([Matcher.eq("job", "node")], 1400, 1600) == [b]
    with DB(tmp_path, now_ms=LIVE) as db:  # WAL replay
        assert read_all(db)[a] == [(t, bits([v])[0]) for t, v in pts_a]


def test_duplicates_last_write_wins_everywhere(tmp_path: Path) -> None:
    s = Labels.from_dict({"__name__": "m"})
    with DB(tmp_path, now_ms=LIVE) as db:
        put(db, s, [(1000, 1.0), (2000, 2.0)])
        put(db, s, [(2000, 20.0)])
        assert read_all(db)[s] == [(1000, bits([1.0])[0]), (2000, bits([20.0])[0])]
        db.flush_head()
        put(db, s, [(1000, 10.0)])  # duplicates data already in a block
        assert read_all(db)[s] == [(1000, bits([10.0])[0]), (2000, bits([20.0])[0])]
        db.flush_head()
        db.compact(force=True)
        assert read_all(db)[s] == [(1000, bits([10.0])[0]), (2000, bits([20.0])[0])]
    with DB(tmp_path, now_ms=LIVE) as db:
        assert read_all(db)[s] == [(1000, bits([10.0])[0]), (2000, bits([20.0])[0])]


def test_out_of_order_window(tmp_path: Path) -> None:
    s = Labels.from_dict({"__name__": "m"})
    with DB(tmp_path, Options(out_of_order_window_ms=60_000), now_ms=LIVE) as db:
        ref = db.series_ref(s)
        db.append(np.array([ref]), np.array([10 * 60_000]), np.array([1.0]))
        r = db.append(np.array([ref, ref]), np.array([9 * 60_000 + 1, 8 * 60_000]), np.array([2.0, 3.0]))
        assert r.accepted == 1 and r.rejected == {"too_old": 1}
        assert [t for t, _ in read_all(db)[s]] == [9 * 60_000 + 1, 10 * 60_000]


def test_flush_compaction_retention_and_reopen(tmp_path: Path) -> None:
    opts = Options(retention_ms=6 * HOUR, out_of_order_window_ms=0, head_flush_span_ms=HOUR)
    series = [Labels.from_dict({"__name__": "node_load1", "instance": f"h{i}"}) for i in range(50)]
    clock = FakeClock()
    with DB(tmp_path, opts, now_ms=clock) as db:
        refs = np.array([db.series_ref(lb) for lb in series])
        for k in range(12 * 60):  # 12 h at one sample per minute, sent live
            t = clock.now = k * 60_000
            db.append(refs, np.full(refs.size, t), np.round(np.sin(refs + k) * 100, 2))
            if db._flush_thread:
                db._flush_thread.join()
        db.flush_head()
        db.compact()
        db.apply_retention()
        st_ = db.stats()
        assert st_["blocks"] >= 1
        # Retention is relative to the clock: nothing older than 6 h survives whole blocks.
        oldest = min(
            int(ts.min())
            for _, ts, _ in db.select([Matcher.eq("__name__", "node_load1")], MIN_TIME, MAX_TIME)
        )
        assert oldest >= (12 * 60 - 1) * 60_000 - 6 * HOUR - 2 * HOUR
        before = read_all(db)
    with DB(tmp_path, opts, now_ms=clock) as db:
        assert read_all(db) == before
        assert not list((tmp_path / "blocks").glob("*.tmp"))


def test_corrupt_block_is_named(tmp_path: Path) -> None:
    s = Labels.from_dict({"__name__": "m"})
    with DB(tmp_path, now_ms=LIVE) as db:
        put(db, s, [(1000, 1.0)])
        db.flush_head()
    (block,) = (tmp_path / "blocks").glob("*.block")
    block.write_bytes(block.read_bytes()[:-5])
    with pytest.raises(DataDirError, match=str(block)):
        DB(tmp_path, now_ms=LIVE)


def test_second_process_is_refused(tmp_path: Path) -> None:
    with DB(tmp_path, now_ms=LIVE), pytest.raises(DataDirError, match="in use"):
        DB(tmp_path, now_ms=LIVE)


# -- model-based: the DB behaves like a dict {(labels, ts): last value written} -------------------

_op = st.one_of(
    st.tuples(
        st.just("append"),
        st.lists(
            st.tuples(
                st.integers(0, 5),
                st.integers(0, 40),
                st.sampled_from([0.0, 1.5, -2.25, STALE, math.nan, 1e9]),
            ),
            min_size=1,
            max_size=30,
        ),
    ),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=12))
def test_matches_dict_model(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    path = tmp_path_factory.mktemp("db")
    opts = Options(out_of_order_window_ms=10**12, block_ranges=(10, 40))
    model: dict[tuple[Labels, int], int] = {}
    names = [Labels.from_dict({"__name__": "m", "i": str(i)}) for i in range(6)]
    db = DB(path, opts, now_ms=LIVE)
    try:
        for kind, arg in ops:
            if kind == "append":
                refs = np.array([db.series_ref(names[i]) for i, _, _ in arg])
                db.append(refs, np.array([t for _, t, _ in arg]), np.array([v for _, _, v in arg]))
                for i, t, v in arg:
                    model[(names[i], t)] = bits([v])[0]
            elif kind == "flush":
                db.flush_head()
            elif kind == "compact":
                db.compact(force=True)
            else:
                db.close()
                db = DB(path, opts, now_ms=LIVE)
        got = {(lb, t): v for lb, pts in read_all(db).items() for t, v in pts}
        assert got == model
    finally:
        db.close()


def test_idle_head_is_flushed_by_the_maintenance_timer(tmp_path: Path) -> None:
    s = Labels.from_dict({"__name__": "m"})
    opts = Options(head_flush_span_ms=200, maintenance_interval_s=0.05)
    clock = FakeClock(1000)
    with DB(tmp_path, opts, now_ms=clock) as db:
        db.start()
        put(db, s, [(1000, 1.0)])  # a head spanning no time: only its wall-clock age can flush it
        assert db.stats()["blocks"] == 0
        clock.now += 200
        deadline = time.monotonic() + 60
        while db.stats()["blocks"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stats()["blocks"] == 1 and db.stats()["head_samples"] == 0
        assert read_all(db)[s] == [(1000, bits([1.0])[0])]
        assert not list((tmp_path / "wal").iterdir()) or db.stats()["wal_bytes"] == 0


def test_opening_starts_no_thread_start_does_and_close_is_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A DB is a service: the constructor starts nothing, start() the maintenance timer, close() joins
    it, and a second close is a no-op that says so (at DEBUG) instead of closing files again."""
    before = set(threading.enumerate())
    db = DB(tmp_path, Options(maintenance_interval_s=3600))
    assert set(threading.enumerate()) == before
    db.start()
    db.start()  # idempotent: one timer
    started = [t for t in threading.enumerate() if t not in before]
    assert [t.name for t in started] == ["vigil-tsdb-maintenance"]
    with caplog.at_level(logging.DEBUG, logger="vigil.tsdb.db"):
        db.stop()
        db.close()
    assert not started[0].is_alive()
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [f"closed TSDB in {tmp_path}", f"TSDB in {tmp_path} already closed"]
    db.start()  # a closed DB does not start again
    assert set(threading.enumerate()) == before


def retention_during_reads(db: DB, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run retention (which must delete one block) right after a query has read its blocks, where
    the DB lock is not held: the interleaving a concurrent retention pass can produce."""
    gather = db._gather

    def gather_then_retention(*args: object) -> object:
        out = gather(*args)  # type: ignore[arg-type]
        assert db.apply_retention() == 1
        return out

    monkeypatch.setattr(db, "_gather", gather_then_retention)


@pytest.mark.parametrize("read", ["select", "series"])
def test_series_deleted_by_retention_while_a_query_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    # Series only an expired block held are gone (all their data is past retention): the answer
    # leaves them out. It listed them with None for labels, and series() raised TypeError sorting.
    clock = FakeClock(10 * 60_000)
    old, new = (
        Labels.from_dict({"__name__": "m", "s": "old"}),
        Labels.from_dict({"__name__": "m", "s": "new"}),
    )
    with DB(tmp_path, Options(retention_ms=HOUR, fsync=False), now_ms=clock) as db:
        put(db, old, [(60_000, 1.0)])
        db.flush_head()
        clock.now = 5 * HOUR
        put(db, new, [(clock.now, 2.0)])
        retention_during_reads(db, monkeypatch)
        if read == "select":
            got = [lb for lb, _, _ in db.select([Matcher.eq("__name__", "m")], MIN_TIME, MAX_TIME)]
        else:
            got = db.series([Matcher.eq("__name__", "m")], 0, MAX_TIME)
        assert got == [new]
        monkeypatch.undo()
        assert read_all(db) == {new: [(5 * HOUR, bits([2.0])[0])]}


def test_every_series_of_a_query_deleted_by_retention_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(10 * 60_000)
    with DB(tmp_path, Options(retention_ms=HOUR, fsync=False), now_ms=clock) as db:
        put(db, Labels.from_dict({"__name__": "m"}), [(60_000, 1.0)])
        db.flush_head()
        clock.now = 5 * HOUR
        retention_during_reads(db, monkeypatch)
        assert len(db.select([Matcher.eq("__name__", "m")], MIN_TIME, MAX_TIME)) == 0

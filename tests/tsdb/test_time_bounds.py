"""Hostile timestamps: per-tenant out-of-order windows, retention by the clock, future and absurd
times refused, a compaction planner bounded by the data, and a WAL that stays small across restarts.

Every test runs a real DB on a temporary directory with a fake clock (`now_ms` is injected)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from tests.tsdb.clock import FakeClock
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options

T = 1_700_000_000_000  # the fake "now" the tests start at (ms)
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def series(tenant: str, name: str = "m") -> Labels:
    return Labels.from_dict({"__name__": name, "tenant": tenant})


def write(db: DB, labels: Labels, *ts: int) -> dict[str, int]:
    """Append one sample per timestamp; returns {"accepted": n, **rejected by reason}."""
    ref = db.series_ref(labels)
    r = db.append(np.full(len(ts), ref, np.int64), np.array(ts, np.int64), np.ones(len(ts)))
    return {"accepted": r.accepted, **r.rejected}


def stored(db: DB, labels: Labels) -> list[int]:
    matchers = [Matcher.eq(n, v) for n, v in labels]
    return [t for _, ts, _ in db.select(matchers, MIN_TIME, MAX_TIME) for t in ts.tolist()]


def fill(db: DB, clock: FakeClock, labels: Labels, start: int, end: int) -> list[int]:
    """One sample a minute in [start, end), the clock following the samples (a live sender)."""
    ts = list(range(start, end, MIN))
    for t in ts:
        clock.now = t
        assert write(db, labels, t) == {"accepted": 1}
        if db._flush_thread:
            db._flush_thread.join()
    return ts


def test_future_sample_of_one_tenant_neither_blocks_nor_expires_another(tmp_path: Path) -> None:
    clock = FakeClock(T - 6 * HOUR)
    b, a = series("b"), series("a")
    with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
        b_ts = fill(db, clock, b, T - 6 * HOUR, T)
        db.flush_head()
        assert db.compact() > 0  # B's data is in compacted (aligned) blocks
        # Tenant A sends one sample a month ahead: refused, and it moves nothing.
        assert write(db, a, clock.now + 30 * DAY) == {"accepted": 0, "too_far_in_future": 1}
        clock.now += MIN
        assert write(db, b, clock.now) == {"accepted": 1}  # was 400 "too old"
        db.compact()
        assert db.apply_retention() == 0  # was: every block deleted
        assert db.stats()["blocks"] > 0
        assert stored(db, b) == [*b_ts, clock.now]
        assert stored(db, a) == []


def test_out_of_order_window_trails_each_tenant_and_never_the_clock(tmp_path: Path) -> None:
    clock = FakeClock(T)
    a, b, c = series("a"), series("b"), series("c")
    with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
        assert write(db, b, T) == {"accepted": 1}
        assert write(db, a, T + 9 * MIN) == {"accepted": 1}  # inside the 10 m grace
        # A's newest sample is 9 m ahead; B's window still trails B's own newest sample (T).
        assert write(db, b, T - 5 * MIN) == {"accepted": 1}
        assert write(db, b, T - 11 * MIN) == {"accepted": 0, "too_old": 1}
        # A's window trails the clock, not its own future-dated sample.
        assert write(db, a, T - 5 * MIN) == {"accepted": 1}
        # A tenant behind the clock (an agent catching up after an outage) keeps its backlog ...
        assert write(db, c, T - 5 * DAY) == {"accepted": 1}
        assert write(db, c, T - 5 * DAY + MIN, T - 5 * DAY - 5 * MIN) == {"accepted": 2}
        # ... within its own window, and nobody writes before the retention period.
        assert write(db, c, T - 5 * DAY - 11 * MIN) == {"accepted": 0, "too_old": 1}
        assert write(db, series("d"), T - 16 * DAY) == {"accepted": 0, "too_old": 1}
    # The windows survive a restart (head flushed, so the WAL no longer has the samples).
    with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
        db.flush_head()
    with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
        assert write(db, c, T - 5 * DAY - 11 * MIN) == {"accepted": 0, "too_old": 1}
        assert write(db, c, T - 5 * DAY - 4 * MIN) == {"accepted": 1}


def test_retention_follows_the_clock(tmp_path: Path) -> None:
    clock = FakeClock(T)
    m = series("a")
    opts = Options(retention_ms=6 * HOUR, fsync=False)
    with DB(tmp_path, opts, now_ms=clock) as db:
        fill(db, clock, m, T, T + 12 * HOUR)
        db.flush_head()
        db.compact()
        db.apply_retention()
        # Whole blocks older than 6 h are gone; a block may reach back one 2 h window further.
        assert min(stored(db, m)) >= clock.now - 6 * HOUR - 2 * HOUR
        assert db.stats()["blocks"] > 0
        # A day later with nothing written: everything is past retention.
        clock.now += DAY
        assert db.apply_retention() > 0
        assert db.stats()["blocks"] == 0 and stored(db, m) == []


def test_int64_extremes_are_refused_and_the_rest_stored(tmp_path: Path) -> None:
    m = series("a")
    # No flush by span: if the extremes got in, a flush would hand them to the planner, whose
    # (separately tested) blow-up must not take this process's memory.
    with DB(tmp_path, Options(fsync=False, head_flush_span_ms=2**62), now_ms=FakeClock(T)) as db:
        got = write(db, m, MIN_TIME, T, MAX_TIME, MIN_TIME + 1, MAX_TIME - 1)
        assert got == {"accepted": 1, "too_old": 2, "too_far_in_future": 2}
        assert stored(db, m) == [T]
        assert db.stats()["min_time"] == T and db.stats()["max_time"] == T


_PLANNER_SCRIPT = """
import resource, sys
from pathlib import Path
import numpy as np
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.tsdb import compact
from vigil.tsdb.block import BlockMeta, BlockWriter
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options
from vigil.tsdb.samples import Samples

T = {T}
H2 = 2 * 3_600_000
path = Path(sys.argv[1])
with DB(path, Options(fsync=False), now_ms=lambda: T) as db:
    ref = db.series_ref(Labels.from_dict({{"__name__": "m"}}))
    db.append(np.array([ref]), np.array([T]), np.ones(1))
    db.flush_head()  # the series is in the index for good
# A block written before timestamps were bounded: one sample at int64 min, two recent ones.
w = BlockWriter(path / "blocks" / "00000001-legacy.block", seq=1, level=0)
w.add(Samples(np.array([ref] * 3), np.array([MIN_TIME, T - 5 * H2, T - 5 * H2 + 1]), np.ones(3)))
w.finish()
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
limit = vm + (256 << 20)  # everything from here on must fit in 256 MiB more address space
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

wide = BlockMeta(MIN_TIME, MAX_TIME, 1, 2, 1, 0)
p = compact.plan([wide, BlockMeta(T, T + 1, 1, 1, 2, 0)], compact.DEFAULT_RANGES, until=T)
assert p is not None and p.inputs == [0] and p.range_ms == H2, p

with DB(path, Options(fsync=False), now_ms=lambda: T) as db:
    merges = db.compact()
    spans = sorted((b.meta.mint, b.meta.maxt, b.meta.level) for b in db._blocks)
    ts = [t for _, s, _ in db.select([Matcher.eq("__name__", "m")], MIN_TIME, MAX_TIME) for t in s.tolist()]
    assert ts == [MIN_TIME, T - 5 * H2, T - 5 * H2 + 1, T], ts
    # Split by the windows that hold data; the block at T is in a window not complete yet.
    assert all(b[1] - b[0] < 48 * 3_600_000 for b in spans), spans
    assert len(spans) == 3, spans
print("ok", merges)
"""


def test_planner_is_bounded_by_the_data_not_by_the_span(tmp_path: Path) -> None:
    # Run where address space is capped: an unbounded planner fails with MemoryError instead of
    # taking the machine's memory.
    script = _PLANNER_SCRIPT.format(T=T)
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]


def test_wal_replay_stays_bounded_across_restarts(tmp_path: Path) -> None:
    """A batch job re-imports its results at fixed timestamps, and the server restarts every 20
    minutes: the head never spans an hour of sample time, yet it must be flushed and the WAL cut."""
    clock = FakeClock(T)
    m = series("a", "backup_ok")
    ref_ts = np.arange(T - 100, T, dtype=np.int64)
    replayed = []
    for run in range(10):
        with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
            replayed.append(db.stats()["head_samples"])
            ref = db.series_ref(m)
            r = db.append(np.full(ref_ts.size, ref), ref_ts, np.full(ref_ts.size, float(run)))
            assert r.accepted == ref_ts.size
        clock.now += 20 * MIN
    # Without the fix: 0, 100, 200, ... 900 samples replayed. With it the head is flushed once it
    # is an hour old, whatever the restarts: at most three runs' worth is ever replayed.
    assert max(replayed) <= 3 * ref_ts.size, replayed
    assert replayed.count(0) >= 3, replayed
    with DB(tmp_path, Options(fsync=False), now_ms=clock) as db:
        ((_, ts, vals),) = db.select([Matcher.eq("__name__", "backup_ok")], MIN_TIME, MAX_TIME)
        assert ts.tolist() == ref_ts.tolist() and set(vals.tolist()) == {9.0}

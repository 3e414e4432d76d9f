"""The embedded time-series database: WAL + in-memory head + immutable blocks + series index.

Write path: `append` checks each sample's time bounds (`bounds`: per tenant and against the
injected clock `now_ms`, so no writer can make another's samples "too old" or expire them), joins a
group commit (one WAL write and fdatasync for all concurrent appenders), then applies the samples to
the head; it returns only once they are durable. The whole head is frozen, written to a block and
the WAL before it deleted (so no partial WAL checkpoint is needed) when its newest sample has moved a
flush span past the last flush, or a flush span of wall-clock time has passed since the last flush.
That time is persisted, so a server restarted more often than the span still flushes and its WAL
replay stays bounded. Blocks are merged into aligned windows by `compact` once the clock has passed
them by the out-of-order window, and deleted when they fall behind `now - retention`.

Read path: matchers -> refs via the index; samples from blocks (oldest first), frozen heads and
the head are concatenated and merged with "last write wins" on duplicate timestamps.

Directory layout:
    lock            held while open (a second server on the same directory is refused)
    series.sqlite   series index and a little metadata
    wal/            write-ahead log segments
    blocks/*.block  immutable compressed blocks
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vigil.model.labels import TENANT, Labels
from vigil.model.matcher import Matcher
from vigil.storage.interface import AppendResult, SeriesRef, SeriesSet, StaleRefError, StorageError
from vigil.tsdb import bounds, records
from vigil.tsdb import compact as compaction
from vigil.tsdb.block import SUFFIX, Block, BlockCorruptError, BlockWriter
from vigil.tsdb.head import Head
from vigil.tsdb.index import SeriesIndex
from vigil.tsdb.samples import Samples, merge_sorted
from vigil.tsdb.wal import WAL, WALCorruptionError

log = logging.getLogger(__name__)

MIN_TIME = int(np.iinfo(np.int64).min)
MAX_TIME = int(np.iinfo(np.int64).max)
_MERGE_REFS = 4096  # series per step when rewriting blocks, to bound memory
_HEAD_STARTED = "head_started_ms"  # index meta: wall-clock time of the last head flush
_NEWEST = "newest_ms:"  # index meta prefix: newest sample time of a tenant, as of the last flush


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class DataDirError(StorageError):
    """The data directory cannot be opened (in use, damaged file, no permission)."""


@dataclass(frozen=True)
class Options:
    retention_ms: int = 15 * 24 * compaction.HOUR_MS  # behind the clock
    out_of_order_window_ms: int = 10 * 60_000  # behind min(tenant's newest sample, clock)
    future_grace_ms: int = 10 * 60_000  # samples further ahead of the clock are refused
    tenant_label: str = TENANT  # the label the ingester sets; time bounds are kept per value
    head_flush_span_ms: int = compaction.HOUR_MS  # of sample time or of wall-clock time
    wal_segment_size: int = 64 * 1024 * 1024
    fsync: bool = True
    block_ranges: tuple[int, ...] | None = None  # default: derived from retention
    maintenance_interval_s: float = 0.0  # > 0: flush/compact/expire on a timer as well as on ingest


@dataclass
class _Pending:
    records: list[bytes]
    samples: Samples
    logged: list[int]
    done: bool = False
    error: BaseException | None = None


@dataclass
class _Metrics:
    registry: CollectorRegistry | None
    head_series: Gauge = field(init=False)
    head_samples: Gauge = field(init=False)
    blocks: Gauge = field(init=False)
    storage_bytes: Gauge = field(init=False)
    series: Gauge = field(init=False)
    wal_fsync: Histogram = field(init=False)
    commit_group: Histogram = field(init=False)
    flush_duration: Histogram = field(init=False)
    compaction_duration: Histogram = field(init=False)
    compactions: Counter = field(init=False)
    retention_deleted: Counter = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.head_series = Gauge(
            "vigil_tsdb_head_series", "Series with samples in the in-memory head.", registry=r
        )
        self.head_samples = Gauge(
            "vigil_tsdb_head_samples", "Samples held in the in-memory head.", registry=r
        )
        self.blocks = Gauge("vigil_tsdb_blocks_loaded", "Block files currently open.", registry=r)
        self.storage_bytes = Gauge(
            "vigil_tsdb_storage_bytes", "Bytes on disk by kind of file.", ["kind"], registry=r
        )
        self.series = Gauge("vigil_tsdb_series", "Series in the index.", registry=r)
        buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
        self.wal_fsync = Histogram(
            "vigil_tsdb_wal_fsync_duration_seconds",
            "Time to write and fdatasync one group commit.",
            buckets=buckets,
            registry=r,
        )
        self.commit_group = Histogram(
            "vigil_tsdb_wal_group_commit_appends",
            "Appends made durable by one WAL sync.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.flush_duration = Histogram(
            "vigil_tsdb_head_flush_duration_seconds",
            "Time to write the head to a block.",
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.compaction_duration = Histogram(
            "vigil_tsdb_compaction_duration_seconds",
            "Time to merge blocks into one aligned window.",
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.compactions = Counter("vigil_tsdb_compactions_total", "Block merges done.", registry=r)
        self.retention_deleted = Counter(
            "vigil_tsdb_retention_blocks_deleted_total",
            "Blocks deleted because they fell out of retention.",
            registry=r,
        )


class DB:
    def __init__(
        self,
        path: Path,
        options: Options | None = None,
        registry: CollectorRegistry | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
    ):
        self.path = Path(path)
        self.options = options or Options()
        self._now = now_ms
        o = self.options
        self._limits = bounds.Limits(o.retention_ms, o.out_of_order_window_ms, o.future_grace_ms)
        self._tenants = bounds.TenantTimes(o.tenant_label)
        self._ranges = self.options.block_ranges or compaction.block_ranges(self.options.retention_ms)
        self._metrics = _Metrics(registry)
        self._lock = threading.RLock()  # head, frozen heads, block list, index
        self._commit_cond = threading.Condition()
        self._committing = False  # one WAL writer, also taken by the head flush
        self._queue: list[_Pending] = []
        self._write_error: str | None = None  # why the last group commit failed; None once one succeeds
        self._maintenance = threading.Lock()  # one flush/compaction at a time
        self._flush_thread: threading.Thread | None = None
        self._closed = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "blocks").mkdir(exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"{self.path}: cannot create data directory: {exc.strerror}") from None
        self._lockfile = self._take_lock()
        self._index = SeriesIndex(self.path / "series.sqlite")
        known = self._index.all_refs()
        self._tenants.add_many(known.tolist(), self._index.labels_of(known))
        self._blocks = self._open_blocks()
        self._seq = max((b.meta.seq for b in self._blocks), default=0)
        self._head = Head()
        self._frozen: list[Head] = []
        try:
            self._wal = WAL(
                self.path / "wal", segment_size=self.options.wal_segment_size, fsync=self.options.fsync
            )
        except WALCorruptionError as exc:
            raise DataDirError(str(exc)) from None
        self._replay()
        self._tenants.restore({t: self._index.get_meta(_NEWEST + t, MIN_TIME) for t in self._tenants.names()})
        self._maxt = max([self._head.maxt] + [b.meta.maxt for b in self._blocks])
        now = self._now()
        # How far sample time had got at the last flush: only progress past it counts towards the
        # head's span, so a backlog (or one old sample) mixed into current data cannot make every
        # append flush. Never ahead of the clock, whatever old blocks say.
        self._flushed_upto = min(max((b.meta.maxt for b in self._blocks), default=MIN_TIME), now)
        started = self._index.get_meta(_HEAD_STARTED, MIN_TIME)
        if started == MIN_TIME:  # a new directory (or one from before this was kept)
            self._index.persist([], {_HEAD_STARTED: now})
        # An empty head has no age: its samples will be the first since this start. A replayed one
        # keeps the age it had, so restarts do not postpone its flush.
        self._head_started = now if self._head.empty or started == MIN_TIME else started
        self._update_gauges()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None  # started by start(): opening starts no thread

    # -- lifecycle (a service of vigil.cmd.run: name, start, stop) ---------------------------------

    name = "tsdb"

    def start(self) -> None:
        """Start the maintenance timer (when `maintenance_interval_s` > 0); idempotent. Without it,
        flushes still follow ingest, so tests and tools that only read and write need not start."""
        if self._timer is not None or self._closed or self.options.maintenance_interval_s <= 0:
            return
        self._timer = threading.Thread(
            target=self._maintenance_loop, name="vigil-tsdb-maintenance", daemon=True
        )
        self._timer.start()

    def stop(self) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataDirError(f"{self.path}: data directory is in use by another Vigil process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _open_blocks(self) -> list[Block]:
        blocks = []
        for p in sorted((self.path / "blocks").iterdir()):
            if p.name.endswith(".tmp"):
                p.unlink()  # an interrupted write; its inputs are still in place
                continue
            if p.suffix != SUFFIX:
                continue
            try:
                blocks.append(Block.open(p))
            except BlockCorruptError as exc:
                raise DataDirError(f"{exc}; move the file aside to start without it") from None
        return sorted(blocks, key=lambda b: b.meta.seq)

    def _replay(self) -> None:
        flushed = self._index.get_meta("flushed_wal_segment", 0)
        if flushed:
            self._wal.truncate_before(flushed)
        n = 0
        try:
            for rec in self._wal.replay():
                kind = rec[:1]
                if kind == records.SERIES:
                    for ref, labels in records.decode_series(rec):
                        self._index.restore(ref, labels)
                        self._tenants.add_series(ref, labels)
                elif kind == records.SAMPLES:
                    s = records.decode_samples(rec)
                    self._head.append(s)
                    self._tenants.observe(s.refs, s.timestamps)
                    n += len(s)
                else:
                    raise records.RecordError(f"unknown record type {kind!r}")
        except WALCorruptionError as exc:
            raise DataDirError(str(exc)) from None
        except records.RecordError as exc:
            raise DataDirError(
                f"{self.path / 'wal'}: {exc}; move the directory aside to start without it"
            ) from None
        if n:
            log.info("replayed %d samples from the WAL", n)

    # -- writing ---------------------------------------------------------------------------------

    @property
    def series_generation(self) -> int:
        return self._index.generation

    def series_ref(self, labels: Labels) -> SeriesRef:
        with self._lock:
            ref, created = self._index.get_or_create(labels)
            if created:
                self._tenants.add_series(ref, labels)
            return ref

    def series_refs(
        self, labels: Sequence[Labels], admit: Callable[[list[Labels]], None] | None = None
    ) -> list[SeriesRef]:
        """Refs of these label sets, creating the missing ones. `admit` first sees the distinct
        label sets that would be created, under the same lock as their creation, and may raise
        to create none of them."""
        with self._lock:
            if admit is not None:
                lookup = self._index.lookup
                new = list(dict.fromkeys(lb for lb in labels if lookup(lb) is None))
                if new:
                    admit(new)
            refs = []
            for lb in labels:
                ref, created = self._index.get_or_create(lb)
                if created:
                    self._tenants.add_series(ref, lb)  # the time bounds need every series' tenant
                refs.append(ref)
            return refs

    def count_series(self, by: Sequence[str]) -> dict[tuple[str, ...], int]:
        """Series in the index counted by their values of the labels `by` ("" where absent)."""
        with self._lock:
            return self._index.count_by(by)

    def append(
        self, refs: npt.NDArray[np.int64], timestamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> AppendResult:
        """Store what is within the time bounds (see `bounds`); count the rest as rejected by reason."""
        rejected: dict[str, int] = {}
        now = self._now()
        with self._lock:
            if not self._index.is_live(refs):
                raise StaleRefError("append to a deleted series")
            verdict = self._tenants.check(refs, timestamps, now, self._limits)
            refuse = verdict.too_old | verdict.too_new
            if refuse.any():
                for reason, mask in (("too_old", verdict.too_old), ("too_far_in_future", verdict.too_new)):
                    if n := int(np.count_nonzero(mask)):
                        rejected[reason] = n
                keep = ~refuse
                refs, timestamps, values = refs[keep], timestamps[keep], values[keep]
            if refs.size == 0:
                return AppendResult(0, rejected)
            unlogged = self._index.unlogged(refs)
        samples = Samples(
            refs.astype(np.int64, copy=False),
            timestamps.astype(np.int64, copy=False),
            values.astype(np.float64, copy=False),
        )
        recs = [records.encode_series(unlogged)] if unlogged else []
        recs.append(records.encode_samples(samples))
        self._commit(_Pending(recs, samples, [r for r, _ in unlogged]))
        self._maybe_flush()
        return AppendResult(len(samples), rejected)

    @property
    def write_error(self) -> str | None:
        """Why the last write failed (e.g. the disk is full), or None when it succeeded: readiness.
        Cleared by the next successful commit, so it follows the disk without a probe of its own."""
        return self._write_error

    def _commit(self, item: _Pending) -> None:
        """Group commit: the first waiter writes everything queued with one WAL sync."""
        with self._commit_cond:
            self._queue.append(item)
            while not item.done and self._committing:
                self._commit_cond.wait()
            if item.done:
                if item.error:
                    raise item.error
                return
            self._committing = True
            batch, self._queue = self._queue, []
        error: BaseException | None = None
        try:
            started = time.perf_counter()
            self._wal.write([r for p in batch for r in p.records])
            self._metrics.wal_fsync.observe(time.perf_counter() - started)
            self._metrics.commit_group.observe(len(batch))
            with self._lock:
                for p in batch:
                    self._head.append(p.samples)
                    self._index.mark_logged(p.logged)
                    self._tenants.observe(p.samples.refs, p.samples.timestamps)
                    self._maxt = max(self._maxt, int(p.samples.timestamps.max()))
        except OSError as exc:
            error = StorageError(f"{self.path / 'wal'}: write failed: {exc.strerror or exc}")
        except BaseException as exc:  # keep waiters from hanging on an unexpected failure
            error = exc
        with self._commit_cond:
            for p in batch:
                p.done, p.error = True, error
            self._write_error = None if error is None else str(error) or type(error).__name__
            self._committing = False
            self._commit_cond.notify_all()
        if item.error:
            raise item.error

    @contextlib.contextmanager
    def _exclusive_commit(self) -> Iterator[None]:
        """Hold off group commits, so the head and the WAL can be cut at the same point."""
        with self._commit_cond:
            while self._committing:
                self._commit_cond.wait()
            self._committing = True
        try:
            yield
        finally:
            with self._commit_cond:
                self._committing = False
                self._commit_cond.notify_all()

    def _flush_due(self, now: int) -> bool:
        """Whether the head should become a block: its newest sample is a flush span past the last
        flush, or a flush span of wall-clock time has passed since that flush (or since start)."""
        head = self._head
        if head.empty:
            return False
        span = self.options.head_flush_span_ms
        return head.maxt - max(head.mint, self._flushed_upto) >= span or now - self._head_started >= span

    def _maybe_flush(self) -> None:
        if not self._flush_due(self._now()):
            return
        with self._lock:
            if self._flush_thread and self._flush_thread.is_alive():
                return
            self._flush_thread = threading.Thread(
                target=self._background_maintenance, name="vigil-tsdb-flush", daemon=True
            )
            self._flush_thread.start()

    def _background_maintenance(self) -> None:
        try:
            self.flush_head()
            self.compact()
            self.apply_retention()
        except Exception:
            log.exception("tsdb maintenance failed; will retry on the next flush")

    def _maintenance_loop(self) -> None:
        # Ingest triggers flushes by sample time; this also covers a server that receives little or
        # nothing, whose head would otherwise never be written out or its old blocks expired.
        while not self._stop.wait(self.options.maintenance_interval_s):
            try:
                if self._flush_due(self._now()):
                    self.flush_head()
                self.compact()
                self.apply_retention()
            except Exception:
                log.exception("tsdb maintenance failed; will retry")

    # -- maintenance -----------------------------------------------------------------------------

    def flush_head(self) -> None:
        """Write the whole head to a new block and drop the WAL segments it came from."""
        with self._maintenance:
            with self._exclusive_commit(), self._lock:
                if self._head.empty:
                    return
                old = self._head
                self._head = Head()
                now = self._now()
                self._head_started = now
                self._flushed_upto = max(self._flushed_upto, min(old.maxt, now))
                self._frozen.append(old)
                segment = self._wal.rotate()
                newest = {_NEWEST + t: v for t, v in self._tenants.newest().items()}
            started = time.perf_counter()
            block, written = self._write_head(old)
            with self._lock:
                rows = self._index.unpersisted()
            # The WAL segments cut below held the newest times of tenants: keep them with the cut.
            self._index.persist(rows, {"flushed_wal_segment": segment, _HEAD_STARTED: now, **newest})
            with self._lock:
                if block:
                    self._blocks.append(block)
                self._frozen.remove(old)
            self._wal.truncate_before(segment)
            self._metrics.flush_duration.observe(time.perf_counter() - started)
            self._update_gauges()
            log.info("flushed head: %d samples to %s", written, block.path.name if block else "nothing")

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _write_head(self, head: Head) -> tuple[Block | None, int]:
        """Stream a frozen head into a new block, a batch of series at a time to bound memory."""
        refs = head.series_refs()
        if refs.size == 0:
            return None, 0
        seq = self._next_seq()
        writer = BlockWriter(
            self.path / "blocks" / f"{seq:08d}-{head.mint}-{head.maxt}{SUFFIX}", seq=seq, level=0
        )
        written = 0
        try:
            for i in range(0, refs.size, _MERGE_REFS):
                part = merge_sorted(head.select(refs[i : i + _MERGE_REFS], MIN_TIME, MAX_TIME))
                writer.add(part)
                written += len(part)
            return writer.finish(), written
        except BaseException:
            writer.abort()
            raise

    def compact(self, force: bool = False) -> int:
        """Merge blocks into aligned windows; `force` treats every window as complete. Returns merges done."""
        done = 0
        with self._maintenance:
            while True:
                with self._lock:
                    blocks = list(self._blocks)
                    # Windows the clock has passed by the out-of-order window are complete for
                    # writers that keep up; a late writer's block is merged at the next level.
                    until = MAX_TIME if force else self._now() - self.options.out_of_order_window_ms
                p = compaction.plan([b.meta for b in blocks], self._ranges, until)
                if p is None:
                    return done
                self._merge([blocks[i] for i in p.inputs], p.range_ms)
                done += 1

    def _merge(self, inputs: list[Block], range_ms: int) -> None:
        started = time.perf_counter()
        inputs = sorted(inputs, key=lambda b: b.meta.seq)
        seq = inputs[-1].meta.seq  # outputs stand where the newest input stood in "last write wins"
        all_refs = np.unique(np.concatenate([b.refs for b in inputs]))
        writers: dict[int, BlockWriter] = {}
        try:
            for i in range(0, all_refs.size, _MERGE_REFS):
                chunk = all_refs[i : i + _MERGE_REFS]
                data = merge_sorted(Samples.concat([b.select(chunk, MIN_TIME, MAX_TIME) for b in inputs]))
                window = data.timestamps // range_ms
                for w in np.unique(window).tolist():
                    if w not in writers:
                        lo, hi = w * range_ms, (w + 1) * range_ms - 1
                        name = f"{seq:08d}-{lo}-{hi}-L{range_ms // 60_000}m{SUFFIX}"
                        writers[w] = BlockWriter(self.path / "blocks" / name, seq=seq, level=range_ms)
                    writers[w].add(data.take(window == w))
            outputs = [b for b in (w.finish() for w in writers.values()) if b is not None]
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        with self._lock:
            self._blocks = sorted(
                [b for b in self._blocks if b not in inputs] + outputs, key=lambda b: b.meta.seq
            )
        for b in inputs:
            if b.path not in {o.path for o in outputs}:
                b.path.unlink(missing_ok=True)
        self._metrics.compactions.inc()
        self._metrics.compaction_duration.observe(time.perf_counter() - started)
        self._update_gauges()

    def apply_retention(self) -> int:
        """Delete blocks wholly older than retention (behind the clock), then orphaned series."""
        with self._lock:
            cutoff = self._now() - self.options.retention_ms
            expired = [b for b in self._blocks if b.meta.maxt < cutoff]
            if not expired:
                return 0
            self._blocks = [b for b in self._blocks if b not in expired]
        for b in expired:
            b.path.unlink(missing_ok=True)
        self._metrics.retention_deleted.inc(len(expired))
        with self._lock:
            alive = [b.refs for b in self._blocks] + [h.series_refs() for h in [*self._frozen, self._head]]
            keep = np.unique(np.concatenate(alive)) if alive else np.empty(0, np.int64)
            dead = np.setdiff1d(self._index.all_refs(), keep, assume_unique=True)
            self._index.delete(dead)
        self._update_gauges()
        return len(expired)

    # -- reading ---------------------------------------------------------------------------------

    def _gather(self, refs: npt.NDArray[np.int64], mint: int, maxt: int) -> Samples:
        with self._lock:
            blocks = [b for b in self._blocks if b.meta.overlaps(mint, maxt)]
            heads = [h.select(refs, mint, maxt) for h in [*self._frozen, self._head]]
        parts = [b.select(refs, mint, maxt) for b in blocks]
        return merge_sorted(Samples.concat(parts + heads))

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> SeriesSet:
        with self._lock:
            refs = self._index.select(matchers)
        if refs.size == 0:
            return SeriesSet.empty()
        try:
            data = self._gather(refs, mint, maxt)
        except BlockCorruptError as exc:
            raise StorageError(str(exc)) from None
        if not len(data):
            return SeriesSet.empty()
        starts = np.flatnonzero(np.r_[True, data.refs[1:] != data.refs[:-1]])
        with self._lock:
            if not self._index.is_live(data.refs[starts]):
                # Retention deleted some of these series (all their data past it) while they were read.
                data = data.take(self._index.live(data.refs))
                if not len(data):
                    return SeriesSet.empty()
                starts = np.flatnonzero(np.r_[True, data.refs[1:] != data.refs[:-1]])
            labels = self._index.labels_of(data.refs[starts])
        offsets = np.append(starts, len(data)).astype(np.int64)
        return SeriesSet(labels, offsets, data.timestamps, data.values)

    def _refs_with_data(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> npt.NDArray[np.int64]:
        with self._lock:
            refs = self._index.select(matchers) if matchers else self._index.all_refs()
            if mint <= MIN_TIME and maxt >= MAX_TIME:
                return refs
        data = self._gather(refs, mint, maxt)
        return np.unique(data.refs)

    def series(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[Labels]:
        refs = self._refs_with_data(matchers, mint, maxt)
        with self._lock:
            refs = refs[self._index.live(refs)]  # retention may have deleted some meanwhile
            return sorted(self._index.labels_of(refs))

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        refs = self._refs_with_data(matchers, mint, maxt)
        with self._lock:
            return self._index.label_names(refs)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        refs = self._refs_with_data(matchers, mint, maxt)
        with self._lock:
            return self._index.label_values(name, refs)

    # -- status ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "head_series": self._head.num_series(),
                "head_samples": self._head.num_samples,
                "series": len(self._index),
                "blocks": len(self._blocks),
                "block_bytes": sum(b.size_bytes for b in self._blocks),
                "wal_bytes": self._wal.size_bytes(),
                "index_bytes": self._index.size_bytes(),
                "min_time": min([b.meta.mint for b in self._blocks] + [self._head.mint]),
                "max_time": self._maxt,
            }

    def _update_gauges(self) -> None:
        st = self.stats()
        m = self._metrics
        m.head_series.set(st["head_series"])
        m.head_samples.set(st["head_samples"])
        m.series.set(st["series"])
        m.blocks.set(st["blocks"])
        m.storage_bytes.labels("blocks").set(st["block_bytes"])
        m.storage_bytes.labels("wal").set(st["wal_bytes"])
        m.storage_bytes.labels("index").set(st["index_bytes"])

    def refresh_metrics(self) -> None:
        self._update_gauges()

    def close(self) -> None:
        """Stop the background work and close every file; a second call does nothing (and says so
        at DEBUG, so a process that closes twice shows it)."""
        if self._closed:
            log.debug("TSDB in %s already closed", self.path)
            return
        self._closed = True
        self._stop.set()
        if self._timer:
            self._timer.join()
        t = self._flush_thread
        if t and t.is_alive():
            t.join()
        self._wal.close()
        self._index.close()
        for b in self._blocks:
            b.close()
        os.close(self._lockfile)
        log.info("closed TSDB in %s", self.path)

    def __enter__(self) -> DB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

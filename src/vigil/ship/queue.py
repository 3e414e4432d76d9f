"""The agent's durable send queue: remote-write payloads on disk until the server has them.

Storage is a `vigil.tsdb.wal.WAL` (fsync per append, torn-tail recovery after a crash) plus a small
cursor file holding the sequence number of the first entry not yet acknowledged. Each WAL record is::

    u64 seq | u64 segment | i64 oldest_sample_ms | u32 samples | payload

little-endian. `seq` numbers entries 0, 1, 2, ... for the queue's whole life; `segment` is the WAL
segment the record was written to (the queue rotates segments itself, so it knows), which lets a
reopen locate every entry without reading segments one by one.

Delivery guarantees, given one sender that calls `peek()`, sends, then `ack()`:

* `append()` returns only after the entry is fsynced: a crash (kill -9, power loss) cannot lose it.
* `ack()` persists the cursor (write to a temporary file, fsync, rename, fsync the directory) before
  any WAL segment is deleted, so after a restart acknowledged entries are never sent again and
  unacknowledged ones always are.
* If the agent dies after the server answered 204 but before `ack()` wrote the cursor, that entry is
  sent again after the restart. This is harmless: the server (Vigil, Prometheus, VictoriaMetrics)
  resolves a duplicate sample as "last write wins", and the value written is the same. So delivery is
  at-least-once on the wire and exactly-once in what the server stores.

Limits: when the unacknowledged payload bytes exceed `max_bytes`, or the head entry's oldest sample
is older than `max_age_s`, the OLDEST entries are dropped, counted by reason ("full", "too_old") and
logged. Dropping only ever removes a prefix of the queue, so the cursor stays a single number. Disk use
can exceed `max_bytes` by up to one segment, because space is reclaimed a whole segment at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vigil.tsdb.wal import WAL

__all__ = ["DurableQueue", "QueueCorruptionError", "QueueEntry"]

log = logging.getLogger(__name__)

_RECORD = struct.Struct("<QQqI")
_FRAME_OVERHEAD = 12  # the WAL's per-record header, for the segment size accounting
# The WAL rotates by itself when a segment would exceed its segment_size; the queue must know which
# segment a record lands in before writing it, so it rotates itself and disables the WAL's rotation.
_NO_AUTO_ROTATE = 1 << 62
_CURSOR = "cursor"
_DROP_LOG_INTERVAL_S = 60.0


class QueueCorruptionError(Exception):
    """The queue's files contradict each other (not a torn tail, which the WAL repairs itself)."""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One queued payload, as returned by `DurableQueue.peek()`; acknowledge it with `ack(seq)`."""

    seq: int
    payload: bytes
    oldest_sample_ms: int
    samples: int


class _Meta(NamedTuple):
    seq: int
    segment: int
    position: int  # index of the record within its segment
    size: int  # payload bytes
    oldest_ms: int
    samples: int


class DurableQueue:
    """A crash-safe FIFO of payloads with bounded size and age; see the module docstring.

    Thread-safe: the agent's collection loop appends while the shipper's thread peeks and acks.
    """

    def __init__(
        self,
        directory: Path | str,
        max_bytes: int = 512 * 1024 * 1024,
        max_age_s: float | None = 24 * 3600.0,
        *,
        segment_bytes: int | None = None,
        cache_bytes: int | None = None,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._dir = Path(directory)
        self._max_bytes = max_bytes
        self._max_age_ms = None if not max_age_s else int(max_age_s * 1000)
        # Disk is reclaimed a segment at a time: small enough segments that `max_bytes` is roughly the
        # disk bound, big enough that rotation (two fsyncs) is rare.
        self._segment_limit = segment_bytes or min(max(max_bytes // 16, 1 << 20), 32 << 20)
        # Recent payloads stay in memory, so a shipper that keeps up never reads the disk.
        self._cache_limit = cache_bytes if cache_bytes is not None else min(max_bytes // 4, 16 << 20)
        self._fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

        self._entries: deque[_Meta] = deque()
        self._bytes = 0
        self._next_seq = 0
        self._segment = 0
        self._segment_bytes = 0
        self._segment_records = 0
        self._cache: dict[int, bytes] = {}  # seq -> payload; always a suffix of the entries
        self._cache_bytes = 0
        self._reader: Iterator[bytes] | None = None
        self._reader_seq = -1  # seq of the record the reader yields next
        self._last_read: tuple[int, bytes] | None = None  # retries of one entry read the disk once
        self._dropped_entries: dict[str, int] = {}
        self._dropped_samples: dict[str, int] = {}
        self._drop_logged: dict[str, float] = {}

        self._dir.mkdir(parents=True, exist_ok=True)
        self._wal = WAL(self._dir / "wal", segment_size=_NO_AUTO_ROTATE, fsync=fsync)
        try:
            self._load()
        except BaseException:
            self._wal.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _read_cursor(self) -> int:
        path = self._dir / _CURSOR
        try:
            text = path.read_text()
        except FileNotFoundError:
            return 0
        try:
            value = int(text.strip())
            if value < 0:
                raise ValueError(value)
        except ValueError:
            # Resending everything is safe (duplicates are harmless), refusing to start is not.
            log.warning("queue cursor %s is unreadable (%r); resending every queued entry", path, text[:40])
            return 0
        return value

    def _load(self) -> None:
        cursor = self._read_cursor()
        segments = self._wal.segments()
        self._segment = segments[-1]
        last_seq: int | None = None
        segment, index = -1, -1
        for record in self._wal.replay():
            if len(record) < _RECORD.size:
                raise QueueCorruptionError(f"queue record of {len(record)} bytes is shorter than its header")
            seq, rec_segment, oldest_ms, samples = _RECORD.unpack_from(record)
            if last_seq is not None and seq <= last_seq:
                raise QueueCorruptionError(f"queue sequence numbers go backwards ({last_seq} then {seq})")
            if rec_segment < segment:
                raise QueueCorruptionError(f"queue segments go backwards ({segment} then {rec_segment})")
            if last_seq is not None and seq != last_seq + 1:
                log.warning("queue entries %d..%d are missing; continuing after them", last_seq + 1, seq - 1)
            index = index + 1 if rec_segment == segment else 0
            segment = rec_segment
            last_seq = seq
            if rec_segment == self._segment:
                self._segment_bytes += _FRAME_OVERHEAD + len(record)
                self._segment_records += 1
            if seq >= cursor:
                size = len(record) - _RECORD.size
                self._entries.append(_Meta(seq, rec_segment, index, size, oldest_ms, samples))
                self._bytes += size
        # Numbering continues after both the log and the cursor, so no number is ever reused.
        self._next_seq = max(cursor, last_seq + 1 if last_seq is not None else 0)
        if self._entries:
            log.info("send queue %s: %d entries (%d bytes) left from the last run", self._dir, *self.depth())
        with self._lock:
            self._enforce_limits_locked()
            self._truncate_locked()

    # -- limits and acknowledgement ----------------------------------------------------------------

    def _persist_cursor(self, next_seq: int) -> None:
        path = self._dir / _CURSOR
        tmp = path.with_name(_CURSOR + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{next_seq}\n".encode())
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self._fsync:
            # Makes the rename itself durable, so that acknowledged entries are not sent again after a
            # power loss, before the caller deletes any segment.
            dfd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _pop_head_locked(self) -> _Meta:
        meta = self._entries.popleft()
        self._bytes -= meta.size
        payload = self._cache.pop(meta.seq, None)
        if payload is not None:
            self._cache_bytes -= len(payload)
        if self._last_read is not None and self._last_read[0] == meta.seq:
            self._last_read = None
        return meta

    def _truncate_locked(self) -> None:
        """Delete the segments holding only acknowledged or dropped entries."""
        keep = self._entries[0].segment if self._entries else self._segment
        segments = self._wal.segments()
        if segments[0] < keep:
            # The reader may be inside a segment about to go; it reopens from the head when needed.
            self._close_reader()
            self._wal.truncate_before(keep)

    def _drop(self, reason: str, metas: list[_Meta]) -> None:
        samples = sum(m.samples for m in metas)
        self._dropped_entries[reason] = self._dropped_entries.get(reason, 0) + len(metas)
        self._dropped_samples[reason] = self._dropped_samples.get(reason, 0) + samples
        now = time.monotonic()
        if now - self._drop_logged.get(reason, -_DROP_LOG_INTERVAL_S) >= _DROP_LOG_INTERVAL_S:
            self._drop_logged[reason] = now
            why = "the queue is full" if reason == "full" else "their samples are older than max_age"
            log.warning(
                "send queue %s: dropped the %d oldest entries (%d samples) because %s; "
                "%d entries (%d samples) dropped for this reason since start (logged at most once a minute)",
                self._dir,
                len(metas),
                samples,
                why,
                self._dropped_entries[reason],
                self._dropped_samples[reason],
            )

    def _enforce_limits_locked(self) -> None:
        dropped = False
        if self._max_age_ms is not None:
            cutoff = int(self._clock() * 1000) - self._max_age_ms
            old = []
            while self._entries and self._entries[0].oldest_ms < cutoff:
                old.append(self._pop_head_locked())
            if old:
                self._drop("too_old", old)
                dropped = True
        full = []
        while self._bytes > self._max_bytes:
            full.append(self._pop_head_locked())
        if full:
            self._drop("full", full)
            dropped = True
        if dropped:
            try:
                self._persist_cursor(self._entries[0].seq if self._entries else self._next_seq)
            except OSError as exc:
                # Not worth failing the append or peek that triggered the drop: the drop stands in
                # memory, and after a restart the entries come back and are judged again.
                log.warning("send queue %s: could not record dropped entries: %s", self._dir, exc)
                return
            self._truncate_locked()

    # -- public API ----------------------------------------------------------------------------

    def append(self, payload: bytes, oldest_sample_ms: int, samples: int = 0) -> None:
        """Queue one payload durably (fsynced when this returns). `samples` is for the drop counters."""
        self.append_many([(payload, oldest_sample_ms, samples)])

    def append_many(self, items: Sequence[tuple[bytes, int, int]]) -> None:
        """Queue (payload, oldest_sample_ms, samples) items in order, with one fsync for all of them."""
        with self._lock:
            self._check_open()
            accepted = []
            for item in items:
                if len(item[0]) > self._max_bytes:
                    # It would push out everything else and then itself: refuse it, counted.
                    self._drop("full", [_Meta(-1, -1, -1, len(item[0]), item[1], item[2])])
                else:
                    accepted.append(item)
            if not accepted:
                return
            if self._segment_bytes >= self._segment_limit:
                self._segment = self._wal.rotate()
                self._segment_bytes = self._segment_records = 0
            records: list[bytes] = []
            metas: list[_Meta] = []
            for i, (payload, oldest_ms, samples) in enumerate(accepted):
                seq, index = self._next_seq + i, self._segment_records + i
                records.append(_RECORD.pack(seq, self._segment, oldest_ms, samples) + payload)
                metas.append(_Meta(seq, self._segment, index, len(payload), oldest_ms, samples))
            self._wal.write(records)  # durable from here on
            self._next_seq += len(records)
            self._segment_records += len(records)
            self._segment_bytes += sum(_FRAME_OVERHEAD + len(r) for r in records)
            for meta, (payload, _, _) in zip(metas, accepted, strict=True):
                self._entries.append(meta)
                self._bytes += meta.size
                self._cache_put_locked(meta.seq, payload)
            self._enforce_limits_locked()

    def _cache_put_locked(self, seq: int, payload: bytes) -> None:
        if len(payload) > self._cache_limit:
            return
        self._cache[seq] = payload
        self._cache_bytes += len(payload)
        while self._cache_bytes > self._cache_limit:
            oldest = next(iter(self._cache))
            self._cache_bytes -= len(self._cache.pop(oldest))

    def peek(self) -> QueueEntry | None:
        """The oldest unacknowledged entry (the same one until it is acked or dropped), or None."""
        with self._lock:
            self._check_open()
            self._enforce_limits_locked()  # expires entries even when nothing is being appended
            if not self._entries:
                return None
            head = self._entries[0]
            payload = self._cache.get(head.seq)
            if payload is None:
                if self._last_read is not None and self._last_read[0] == head.seq:
                    payload = self._last_read[1]
                else:
                    payload = self._read_locked(head)
                    self._last_read = (head.seq, payload)
            return QueueEntry(head.seq, payload, head.oldest_ms, head.samples)

    def peek_many(self, max_entries: int, max_samples: int, max_bytes: int) -> list[QueueEntry]:
        """The oldest unacknowledged entries, in order, for one request: always the head (whatever its
        size), then the next ones while the totals stay within `max_entries` entries, `max_samples`
        samples and `max_bytes` payload bytes. Empty when the queue is. `ack()` of the last one's
        `seq` acknowledges them all; until then the same entries come back."""
        head = self.peek()
        if head is None:
            return []
        out = [head]
        samples, nbytes = head.samples, len(head.payload)
        with self._lock:
            self._check_open()
            metas = list(itertools.islice(self._entries, 1, max_entries))
            for meta in metas:
                if meta.seq != out[-1].seq + 1:  # the head was acked or dropped meanwhile
                    break
                if samples + meta.samples > max_samples or nbytes + meta.size > max_bytes:
                    break
                payload = self._cache.get(meta.seq)
                if payload is None:
                    payload = self._read_locked(meta)
                out.append(QueueEntry(meta.seq, payload, meta.oldest_ms, meta.samples))
                samples, nbytes = samples + meta.samples, nbytes + meta.size
        return out

    def _close_reader(self) -> None:
        if self._reader is not None:
            close = getattr(self._reader, "close", None)
            if close is not None:
                close()
        self._reader = None
        self._reader_seq = -1

    def _open_reader(self, head: _Meta) -> None:
        self._close_reader()
        reader = self._wal.replay(from_segment=head.segment)
        for _ in range(head.position):
            if next(reader, None) is None:
                raise QueueCorruptionError(
                    f"queue entry {head.seq} should be record {head.position} of segment {head.segment}, "
                    "but the segment is shorter"
                )
        self._reader = reader
        self._reader_seq = head.seq

    def _read_locked(self, head: _Meta) -> bytes:
        if self._reader is None or self._reader_seq != head.seq:
            self._open_reader(head)
        assert self._reader is not None
        record = next(self._reader, None)
        if record is None:
            # The reader's snapshot of the log ended before this entry was appended: reopen.
            self._open_reader(head)
            record = next(self._reader, None)
        if record is None or _RECORD.unpack_from(record)[0] != head.seq:
            raise QueueCorruptionError(f"queue entry {head.seq} is not where the index says it is")
        self._reader_seq = head.seq + 1
        return record[_RECORD.size :]

    def ack(self, seq: int) -> bool:
        """Acknowledge every entry up to and including `seq`, durably.

        Returns False if `seq` was already acknowledged or dropped (e.g. dropped as too old while it
        was being sent), True otherwise.
        """
        with self._lock:
            self._check_open()
            if seq >= self._next_seq:
                raise ValueError(f"cannot acknowledge entry {seq}: it was never queued")
            if not self._entries or seq < self._entries[0].seq:
                return False
            # Cursor first: once it is durable the entries are gone for good, whatever happens next.
            self._persist_cursor(seq + 1)
            while self._entries and self._entries[0].seq <= seq:
                self._pop_head_locked()
            self._truncate_locked()
            return True

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended entry will get (a boundary for re-sharding)."""
        return self._next_seq

    def depth(self) -> tuple[int, int]:
        """Unacknowledged (entries, payload bytes)."""
        with self._lock:
            return len(self._entries), self._bytes

    def oldest_sample_age_s(self) -> float:
        """Age of the oldest unsent sample (0 when empty), judged by the head entry.

        The agent enqueues in time order, so the head holds the oldest sample.
        """
        with self._lock:
            if not self._entries:
                return 0.0
            return max(0.0, self._clock() - self._entries[0].oldest_ms / 1000)

    @property
    def dropped_entries(self) -> dict[str, int]:
        """Entries dropped since this queue was opened, by reason ("full", "too_old")."""
        with self._lock:
            return dict(self._dropped_entries)

    @property
    def dropped_samples(self) -> dict[str, int]:
        """Samples in the dropped entries, by reason."""
        with self._lock:
            return dict(self._dropped_samples)

    @property
    def directory(self) -> Path:
        return self._dir

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("queue is closed")

    def close(self) -> None:
        """Release the directory. Idempotent. Unacknowledged entries stay on disk for the next open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._close_reader()
            self._wal.close()

    def __enter__(self) -> DurableQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

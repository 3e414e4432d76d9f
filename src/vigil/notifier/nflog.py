"""The notification log: what each integration was last told about each aggregation group.

Alertmanager's nflog: one entry per (group key, receiver, integration, index) holding the
fingerprints of the firing and of the resolved alerts of the last successful notification and its
time. The dedup stage reads it to decide whether a flush must notify (new firing alert, newly
resolved, all resolved, repeat interval elapsed) and the last stage writes it after a delivery.
An entry expires `2 × repeat_interval` after it was written (or after `retention`, 120h by default,
whichever is sooner), as Alertmanager's SetNotifiesStage asks; expired entries are dropped by `gc`.

It must survive restarts, or every restart would re-send every open group (and forget which groups
were told about alerts that then resolve). Alertmanager snapshots every 15 minutes; Vigil writes
each change as it happens so that even a kill -9 right after a delivery does not repeat it:

- `<dir>/nflog.journal` gets one JSON line per `log()`, flushed and fsynced before `log()` returns;
- when the journal has grown past the number of entries (and `compact_after`, 1024 lines), the
  whole state is written to `<dir>/nflog.json` atomically (temporary file, fsync, rename, fsync of
  the directory) and the journal is emptied, so both files stay proportional to the number of entries.

Loading replays the snapshot and then the journal (a journal line repeating a snapshot entry is
harmless: the newer timestamp wins). A snapshot that cannot be parsed is reported by one warning and
ignored (the log starts empty: at worst one repeated notification per group, never a crash); a
journal whose tail is cut (a crash mid-line) or garbled is replayed up to the bad line, with one
warning. A write that fails (a full disk) is logged and the entry kept in memory.
Bounded: at most `max_entries` entries; a new entry beyond that first drops expired ones,
then evicts the oldest (that group may be notified once more).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["DEFAULT_RETENTION_MS", "Entry", "NotificationLog"]

DEFAULT_RETENTION_MS = 120 * 3600_000
_SNAPSHOT = "nflog.json"
_JOURNAL = "nflog.journal"
_FORMAT = 1

log = logging.getLogger(__name__)

Key = tuple[str, str, str, int]  # group key, receiver, integration, index


@dataclass(frozen=True, slots=True)
class Entry:
    group_key: str
    receiver: str
    integration: str
    index: int
    timestamp_ms: int
    firing: frozenset[int]
    resolved: frozenset[int]
    expires_at_ms: int

    @property
    def key(self) -> Key:
        return (self.group_key, self.receiver, self.integration, self.index)

    def is_firing_subset(self, firing: Iterable[int]) -> bool:
        """Whether every alert in `firing` was firing in this notification."""
        return all(fp in self.firing for fp in firing)

    def is_resolved_subset(self, resolved: Iterable[int]) -> bool:
        return all(fp in self.resolved for fp in resolved)

    def to_json(self) -> dict[str, Any]:
        return {
            "g": self.group_key,
            "r": self.receiver,
            "i": self.integration,
            "x": self.index,
            "t": self.timestamp_ms,
            "f": sorted(f"{fp:016x}" for fp in self.firing),
            "s": sorted(f"{fp:016x}" for fp in self.resolved),
            "e": self.expires_at_ms,
        }

    @staticmethod
    def from_json(d: object) -> Entry:
        """Parse one serialised entry; ValueError on anything malformed (the file may be damaged)."""
        if not isinstance(d, dict):
            raise ValueError("entry is not an object")
        g, r, i, x, t, f, s, e = (d.get(k) for k in ("g", "r", "i", "x", "t", "f", "s", "e"))
        if not (isinstance(g, str) and isinstance(r, str) and isinstance(i, str)):
            raise ValueError("entry key is not strings")
        for n in (x, t, e):
            if not isinstance(n, int) or isinstance(n, bool):
                raise ValueError("entry number is not an integer")
        if not (isinstance(f, list) and isinstance(s, list)):
            raise ValueError("entry alerts are not lists")
        assert isinstance(x, int) and isinstance(t, int) and isinstance(e, int)
        return Entry(g, r, i, x, t, _fps(f), _fps(s), e)


def _fps(items: list[Any]) -> frozenset[int]:
    out = set()
    for v in items:
        if not isinstance(v, str) or len(v) != 16:
            raise ValueError("fingerprint is not 16 hex digits")
        out.add(int(v, 16))
    return frozenset(out)


class NotificationLog:
    """Thread-safe. `directory` None keeps the log in memory only (tests, `vigil` without a data dir)."""

    def __init__(
        self,
        directory: Path | None,
        clock: Callable[[], int],
        *,
        retention_ms: int = DEFAULT_RETENTION_MS,
        max_entries: int = 100_000,
        compact_after: int = 1024,
    ) -> None:
        self._dir = directory
        self._compact_after = compact_after
        self._clock = clock
        self.retention_ms = retention_ms
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Key, Entry] = {}
        self._journal: IO[str] | None = None
        self._journal_lines = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load(directory)

    # -- reading and writing ------------------------------------------------------------------

    def query(self, group_key: str, receiver: str, integration: str, index: int) -> Entry | None:
        with self._lock:
            e = self._entries.get((group_key, receiver, integration, index))
        if e is None or e.expires_at_ms <= self._clock():
            return None
        return e

    def log(
        self,
        group_key: str,
        receiver: str,
        integration: str,
        index: int,
        firing: Iterable[int],
        resolved: Iterable[int],
        now_ms: int,
        expiry_ms: int = 0,
    ) -> None:
        """Record a delivery made at `now_ms`; it expires after `expiry_ms` (if shorter than the
        retention). An older timestamp than the stored one is ignored (as Alertmanager does)."""
        expires = now_ms + (expiry_ms if 0 < expiry_ms < self.retention_ms else self.retention_ms)
        e = Entry(
            group_key, receiver, integration, index, now_ms, frozenset(firing), frozenset(resolved), expires
        )
        with self._lock:
            prev = self._entries.get(e.key)
            if prev is not None and prev.timestamp_ms > now_ms:
                return
            if prev is None and len(self._entries) >= self.max_entries:
                self._make_room(now_ms)
            self._entries[e.key] = e
            try:
                self._append(e)
            except OSError as err:
                # The delivery happened and memory knows it; failing it here would only re-send it.
                log.error("notification log %s not written (kept in memory): %s", self._dir, err)
                if self._journal is not None:
                    with contextlib.suppress(OSError):
                        self._journal.close()
                    self._journal = None  # reopened (and so retried) with the next entry

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def gc(self, now_ms: int) -> int:
        """Drop expired entries; returns how many."""
        with self._lock:
            gone = [k for k, e in self._entries.items() if e.expires_at_ms <= now_ms]
            for k in gone:
                del self._entries[k]
            if gone and self._dir is not None:
                try:
                    self._snapshot()
                except OSError as err:
                    log.error("notification log %s snapshot failed: %s", self._dir, err)
            return len(gone)

    def close(self) -> None:
        """Write a snapshot and close the journal (the state is already durable without it)."""
        with self._lock:
            if self._dir is not None:
                self._snapshot()
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _make_room(self, now_ms: int) -> None:
        for k in [k for k, e in self._entries.items() if e.expires_at_ms <= now_ms]:
            del self._entries[k]
        if len(self._entries) >= self.max_entries:
            oldest = min(self._entries.values(), key=lambda e: e.timestamp_ms)
            del self._entries[oldest.key]
            log.warning(
                "notification log full (%d entries): forgot the oldest, group %s may be notified again",
                self.max_entries,
                oldest.group_key,
            )

    # -- persistence --------------------------------------------------------------------------

    def _append(self, e: Entry) -> None:
        if self._dir is None:
            return
        if self._journal_lines >= max(self._compact_after, len(self._entries)):
            self._snapshot()
            return  # the snapshot holds `e`
        if self._journal is None:
            self._journal = open(self._dir / _JOURNAL, "a", encoding="utf-8")  # noqa: SIM115
        self._journal.write(json.dumps(e.to_json(), separators=(",", ":")) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._journal_lines += 1

    def _snapshot(self) -> None:
        assert self._dir is not None
        body = {"format": _FORMAT, "entries": [e.to_json() for e in self._entries.values()]}
        path = self._dir / _SNAPSHOT
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(self._dir)
        # Only now is the journal redundant; a crash before this line replays it harmlessly.
        if self._journal is not None:
            self._journal.close()
        self._journal = open(self._dir / _JOURNAL, "w", encoding="utf-8")  # noqa: SIM115
        os.fsync(self._journal.fileno())
        self._journal_lines = 0

    def _load(self, directory: Path) -> None:
        now = self._clock()
        path = directory / _SNAPSHOT
        if path.exists():
            try:
                body = json.loads(path.read_bytes().decode("utf-8"))
                if not isinstance(body, dict) or body.get("format") != _FORMAT:
                    raise ValueError(f"expected an object with format {_FORMAT}")
                raw = body.get("entries")
                if not isinstance(raw, list):
                    raise ValueError("expected a list of entries")
                loaded = [Entry.from_json(d) for d in raw]
            except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                log.warning("notification log %s unreadable, starting empty: %s", path, err)
                loaded = []
            for e in loaded:
                self._merge(e, now)
        jpath = directory / _JOURNAL
        if jpath.exists():
            lines = 0
            try:
                with open(jpath, "rb") as fh:
                    for n, raw_line in enumerate(fh, 1):
                        try:
                            self._merge(Entry.from_json(json.loads(raw_line.decode("utf-8"))), now)
                        except ValueError as err:
                            log.warning(
                                "notification log %s: line %d unreadable (%s), ignoring it and the rest",
                                jpath,
                                n,
                                err,
                            )
                            break
                        lines += 1
            except OSError as err:
                log.warning("notification log %s unreadable, ignoring it: %s", jpath, err)
            self._journal_lines = lines
        if path.exists() or jpath.exists():
            # Compact now: a damaged file or journal tail must not stay in front of what is written next.
            try:
                self._snapshot()
            except OSError as err:
                log.error("notification log %s not compacted: %s", directory, err)

    def _merge(self, e: Entry, now_ms: int) -> None:
        if e.expires_at_ms <= now_ms:
            return
        prev = self._entries.get(e.key)
        if prev is None or prev.timestamp_ms <= e.timestamp_ms:
            if prev is None and len(self._entries) >= self.max_entries:
                self._make_room(now_ms)
            self._entries[e.key] = e


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

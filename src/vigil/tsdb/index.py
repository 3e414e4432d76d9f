"""The series index: label sets <-> series refs, postings for matchers, persisted in SQLite.

New series are made durable first through the WAL (as series records next to their samples) and
are written to `series.sqlite` when the head is flushed, before the WAL segments that defined them
are deleted. Not thread-safe: the DB serialises access.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.storage.interface import StorageError
from vigil.tsdb.postings import MemPostings


class IndexCorruptError(StorageError):
    pass


class SeriesIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_labels: dict[Labels, int] = {}
        self._labels: list[Labels | None] = []
        self._postings = MemPostings()
        self._logged = np.zeros(1024, bool)  # series record is durable (WAL or SQLite)
        self._persisted = np.zeros(1024, bool)  # row is in series.sqlite
        self._live = np.zeros(1024, bool)
        self.generation = 0
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS series (ref INTEGER PRIMARY KEY, labels BLOB NOT NULL)"
            )

            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            rows = self._db.execute("SELECT ref, labels FROM series ORDER BY ref").fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{path}: cannot open series index: {exc}") from None
        for ref, blob in rows:
            try:
                labels = Labels.decode(blob)
            except (UnicodeDecodeError, ValueError):
                raise IndexCorruptError(f"{path}: damaged series row {ref}") from None
            self._restore(int(ref), labels)
            self._persisted[ref] = True
            self._logged[ref] = True

    def __len__(self) -> int:
        return len(self._by_labels)

    @property
    def next_ref(self) -> int:
        return len(self._labels)

    def get_meta(self, key: str, default: int = 0) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def get_or_create(self, labels: Labels) -> tuple[int, bool]:
        ref = self._by_labels.get(labels)
        if ref is not None:
            return ref, False
        ref = len(self._labels)
        self._restore(ref, labels)
        return ref, True

    def lookup(self, labels: Labels) -> int | None:
        """The ref of an existing series, or None."""
        return self._by_labels.get(labels)

    def count_by(self, names: Sequence[str]) -> dict[tuple[str, ...], int]:
        """Series counted by their values of the labels `names` ("" where a series lacks one)."""
        return self._postings.count_by(names)

    def restore(self, ref: int, labels: Labels) -> None:
        """Re-create a series read back from the WAL (no-op if the index already has it)."""
        if ref < len(self._labels) and self._labels[ref] is not None:
            return
        self._restore(ref, labels)
        self._logged[ref] = True

    def _restore(self, ref: int, labels: Labels) -> None:
        while len(self._labels) <= ref:
            self._labels.append(None)
        self._labels[ref] = labels
        self._by_labels[labels] = ref
        self._postings.add(ref, labels)
        if ref >= self._logged.size:
            grow = np.zeros(max(ref + 1, self._logged.size * 2) - self._logged.size, bool)
            self._logged = np.concatenate([self._logged, grow])
            self._persisted = np.concatenate([self._persisted, grow])
            self._live = np.concatenate([self._live, grow])
        self._live[ref] = True

    def labels(self, ref: int) -> Labels:
        lb = self._labels[ref]
        if lb is None:
            raise KeyError(ref)
        return lb

    def labels_of(self, refs: npt.NDArray[np.int64]) -> list[Labels]:
        """The labels of live series; KeyError if one was deleted (check `live` first)."""
        table = self._labels
        out = [table[r] for r in refs.tolist()]
        if None in out:
            raise KeyError(next(r for r, lb in zip(refs.tolist(), out, strict=True) if lb is None))
        return out

    def is_live(self, refs: npt.NDArray[np.int64]) -> bool:
        if refs.size == 0:
            return True
        if int(refs.max()) >= len(self._labels) or int(refs.min()) < 0:
            return False
        return bool(self._live[refs].all())

    def live(self, refs: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Per ref (each one this index handed out): whether it is still live."""
        return self._live[refs]

    def unlogged(self, refs: npt.NDArray[np.int64]) -> list[tuple[int, Labels]]:
        """Series among `refs` whose definition is not durable yet (it must go into the WAL)."""
        u = np.unique(refs)
        u = u[~self._logged[u]]
        return [(r, self.labels(r)) for r in u.tolist()]

    def mark_logged(self, refs: Iterable[int]) -> None:
        for r in refs:
            self._logged[r] = True

    def unpersisted(self) -> list[tuple[int, bytes]]:
        n = len(self._labels)
        todo = np.flatnonzero(self._logged[:n] & ~self._persisted[:n])
        return [(r, self.labels(r).encode()) for r in todo.tolist() if self._labels[r] is not None]

    def persist(self, rows: Sequence[tuple[int, bytes]], meta: dict[str, int]) -> None:
        """Write series rows and meta values in one transaction (called off the hot path)."""
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO series (ref, labels) VALUES (?, ?)", rows)
                self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
            # Fold SQLite's own log back into the main file: it otherwise keeps its high-water size.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write series index: {exc}") from None
        for r, _ in rows:
            self._persisted[r] = True

    def delete(self, refs: npt.NDArray[np.int64]) -> None:
        if refs.size == 0:
            return
        rl = refs.tolist()
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM series WHERE ref = ?", [(r,) for r in rl])
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write series index: {exc}") from None
        self._postings.delete(rl)
        for r in rl:
            lb = self._labels[r]
            if lb is not None:
                del self._by_labels[lb]
                self._labels[r] = None
                self._live[r] = False
        self.generation += 1

    def select(self, matchers: Sequence[Matcher]) -> npt.NDArray[np.int64]:
        return self._postings.select(matchers)

    def all_refs(self) -> npt.NDArray[np.int64]:
        return self._postings.all_refs()

    def label_names(self, refs: npt.NDArray[np.int64] | None) -> list[str]:
        return self._postings.label_names(refs)

    def label_values(self, name: str, refs: npt.NDArray[np.int64] | None) -> list[str]:
        return self._postings.label_values(name, refs)

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        self._db.close()

"""Columnar sample batches (ref, timestamp, value) and the merge rule shared by every read path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Samples:
    refs: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.refs.size)

    @property
    def nbytes(self) -> int:
        return int(self.refs.nbytes + self.timestamps.nbytes + self.values.nbytes)

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def concat(cls, parts: Sequence[Samples]) -> Samples:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.refs for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.values for p in parts]),
        )

    def take(self, index: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> Samples:
        return Samples(self.refs[index], self.timestamps[index], self.values[index])


def merge_sorted(s: Samples) -> Samples:
    """Sort by (ref, timestamp) and keep the LAST of samples sharing both.

    Inputs are concatenated oldest source first, so this is the store's "last write wins" rule
    for duplicate timestamps, applied identically on reads, flushes and compactions.
    """
    r, t = s.refs, s.timestamps
    if r.size < 2:
        return s
    dr = np.diff(r)
    if (dr > 0).all() or ((dr >= 0).all() and ((dr > 0) | (np.diff(t) > 0)).all()):
        return s  # already strictly ordered: the common single-source case
    # Sources (blocks, then heads) are each sorted and usually cover successive time ranges, so a
    # stable sort by ref alone (fast: timsort merges the runs) is often already (ref, ts) order.
    order = np.argsort(r, kind="stable")
    r2, t2 = r[order], t[order]
    dr2 = np.diff(r2)
    if ((dr2 > 0) | ((dr2 == 0) & (np.diff(t2) > 0))).all():
        return Samples(r2, t2, s.values[order])
    order = np.lexsort((t, r))  # stable: equal keys keep arrival order
    r, t = r[order], t[order]
    last = np.empty(r.size, bool)
    last[-1] = True
    np.not_equal(r[1:], r[:-1], out=last[:-1])
    last[:-1] |= t[1:] != t[:-1]
    idx = order[last]
    return Samples(s.refs[idx], s.timestamps[idx], s.values[idx])

"""Values during evaluation, vectorised over all evaluation steps of a query at once.

An instant vector over n steps is a (series × steps) array of values with a presence mask, so a
range query is evaluated in one pass rather than step by step. A range vector keeps each series'
samples flat, plus per-step window bounds into them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.model.labels import Labels

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclass
class Scalar:
    values: F64  # one per step


@dataclass
class String:
    value: str


@dataclass
class Vector:
    labels: list[Labels]
    values: F64  # (series, steps)
    present: Bool  # (series, steps)
    # Timestamps of the samples themselves, when the vector comes straight from a selector
    # (timestamp() reports them rather than the evaluation time).
    sample_ts: I64 | None = None

    @classmethod
    def empty(cls, n: int) -> Vector:
        return cls([], np.empty((0, n)), np.zeros((0, n), bool))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: list[int] | I64) -> Vector:
        rows = np.asarray(rows, np.int64)
        return Vector(
            [self.labels[i] for i in rows.tolist()],
            self.values[rows],
            self.present[rows],
            None if self.sample_ts is None else self.sample_ts[rows],
        )

    def compact(self) -> Vector:
        """Drop series that are absent at every step."""
        keep = self.present.any(axis=1)
        if keep.all():
            return self
        return self.take(np.flatnonzero(keep))


@dataclass
class Matrix:
    """Range vector: series i owns ts/vals[offsets[i]:offsets[i+1]]; its window at step j is
    [lo[i, j], hi[i, j]) (global indices), covering (end[j] - range, end[j]]."""

    labels: list[Labels]
    offsets: I64
    ts: I64
    vals: F64
    lo: I64
    hi: I64
    end: I64  # effective window end per step (after offset and @)
    range_ms: int
    # Matchers of the selector, for absent_over_time's labels (None for subqueries).
    selector_labels: Labels | None = None

    @property
    def count(self) -> I64:
        return self.hi - self.lo


Value = Scalar | String | Vector | Matrix


def merge_duplicates(v: Vector) -> Vector:
    """Merge series that ended up with the same labels (e.g. after dropping `__name__`).

    Like Prometheus, it is only an error when two of them have a value at the same step."""
    if len(set(v.labels)) == len(v.labels):
        return v
    groups: dict[Labels, list[int]] = {}
    for i, lb in enumerate(v.labels):
        groups.setdefault(lb, []).append(i)
    labels, rows_v, rows_p = [], [], []
    for lb, rows in groups.items():
        if len(rows) == 1:
            labels.append(lb)
            rows_v.append(v.values[rows[0]])
            rows_p.append(v.present[rows[0]])
            continue
        p = v.present[rows]
        if (p.sum(axis=0) > 1).any():
            from vigil.promql.errors import ExecutionError

            raise ExecutionError("vector cannot contain metrics with the same labelset")
        first = p.argmax(axis=0)
        labels.append(lb)
        rows_v.append(v.values[rows][first, np.arange(p.shape[1])])
        rows_p.append(p.any(axis=0))
    n = v.values.shape[1]
    return Vector(labels, np.array(rows_v).reshape(-1, n), np.array(rows_p).reshape(-1, n))

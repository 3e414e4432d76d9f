"""What the rest of Vigil may ask of a store: append columnar samples, select series, list labels.

Samples cross this boundary as columnar numpy arrays (series refs, int64 millisecond timestamps,
float64 values), never as a Python object per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.storage.errors import StaleRefError, StorageError

SeriesRef = int

__all__ = [
    "AppendResult",
    "Queryable",
    "SeriesRef",
    "SeriesSet",
    "StaleRefError",
    "Storage",
    "StorageError",
]


@dataclass(frozen=True)
class AppendResult:
    """What an append kept: `accepted` samples are durable; `rejected` counts samples by reason."""

    accepted: int
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesSet:
    """Series selected from a store, columnar: series i owns `timestamps[offsets[i]:offsets[i+1]]`.

    Timestamps are int64 ms, ascending and unique within a series; values are float64 and keep
    Prometheus stale markers bit for bit.
    """

    labels: list[Labels]
    offsets: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.labels)

    def series(self, i: int) -> tuple[Labels, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.labels[i], self.timestamps[a:b], self.values[a:b]

    def __iter__(self) -> Iterator[tuple[Labels, npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        for i in range(len(self.labels)):
            yield self.series(i)

    @classmethod
    def empty(cls) -> SeriesSet:
        return cls([], np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))


class Queryable(Protocol):
    """The read half of a store: what PromQL evaluation and the series/label API need.

    Kept apart from `Storage` so a read-only view (one tenant's series, `vigil.storage.tenant`) can
    stand in for the store wherever reads happen without pretending to accept writes."""

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> SeriesSet:
        """Series matching all matchers, with their samples in [mint, maxt] (ms, inclusive)."""
        ...

    def series(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[Labels]:
        """Label sets of series matching all matchers that have samples in [mint, maxt]."""
        ...

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]: ...

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]: ...


class Storage(Queryable, Protocol):
    """A time-series store. Implementations are thread-safe; `append` returns once data is durable."""

    def series_ref(self, labels: Labels) -> SeriesRef:
        """The ref of the series with these (already validated) labels, creating it if new."""
        ...

    def series_refs(
        self, labels: Sequence[Labels], admit: Callable[[list[Labels]], None] | None = None
    ) -> list[SeriesRef]:
        """Refs of these label sets, creating missing ones. `admit` sees the distinct new ones
        first, atomically with their creation, and may raise to create none."""
        ...

    def count_series(self, by: Sequence[str]) -> dict[tuple[str, ...], int]:
        """Series in the store counted by their values of the labels `by` ("" where absent)."""
        ...

    @property
    def series_generation(self) -> int:
        """Changes whenever refs may have been invalidated (series deleted), so callers drop caches."""
        ...

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> AppendResult:
        """Store samples (one per array element); blocks until durable. Raises StorageError."""
        ...

    def close(self) -> None: ...

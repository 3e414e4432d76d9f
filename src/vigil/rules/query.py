"""Adapters from Vigil's PromQL engine and storage to the rule evaluation protocols."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vigil.model.labels import Labels
from vigil.promql.engine import Engine
from vigil.rules.types import QueryFunc, Sample
from vigil.storage.interface import Storage


class RuleQueryError(Exception):
    pass


def engine_query(engine: Engine) -> QueryFunc:
    """A QueryFunc running instant queries on `engine` (Prometheus' EngineQueryFunc): a vector as
    is, a scalar as one sample without labels, anything else an error."""

    def query(expr: str, ts_ms: int) -> list[Sample]:
        res = engine.instant_query(expr, ts_ms)
        if res.type == "vector":
            return [Sample(s.labels, float(s.values[0])) for s in res.series]
        if res.type == "scalar" and res.scalar is not None:
            return [Sample(Labels(), res.scalar[1])]
        raise RuleQueryError("rule result is not a vector or scalar")

    return query


@dataclass
class StorageAppender:
    """Buffers a rule's samples and writes them to `storage` in one append on `commit`."""

    storage: Storage
    _labels: list[Labels] = field(default_factory=list)
    _ts: list[int] = field(default_factory=list)
    _values: list[float] = field(default_factory=list)

    def append(self, labels: Labels, ts_ms: int, value: float) -> None:
        self._labels.append(labels)
        self._ts.append(ts_ms)
        self._values.append(value)

    def commit(self) -> dict[str, int]:
        """Write the buffered samples; returns what the store refused, by reason."""
        if not self._labels:
            return {}
        labels, ts, values = self._labels, self._ts, self._values
        self._labels, self._ts, self._values = [], [], []
        refs = self.storage.series_refs(labels)
        result = self.storage.append(
            np.asarray(refs, np.int64), np.asarray(ts, np.int64), np.asarray(values, np.float64)
        )
        return dict(result.rejected)

"""Adapters from Vigil's PromQL engine and storage to the rule evaluation protocols, and the
default tenant's share of the store that the server's rules run on.

Rules are the default tenant's: they read untenanted series only (`DefaultTenantView`, which adds
`tenant=""` to every look-up, as `vigil.storage.tenant.TenantView` adds a tenant's name), and
what they write must stay untenanted: a sample whose labels carry `tenant` (a rule label, or
`label_replace`) would land in that tenant's data, so the appender refuses it (counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vigil.model.labels import TENANT, Labels
from vigil.model.matcher import Matcher
from vigil.promql.engine import Engine
from vigil.rules.types import QueryFunc, Sample
from vigil.storage.interface import Queryable, SeriesSet, Storage

TENANT_REFUSED = "tenant_label"  # the refusal reason of a rule sample carrying a tenant label


class DefaultTenantView:
    """`storage` limited to untenanted series (no `tenant` label); implements `Queryable`."""

    def __init__(self, storage: Queryable) -> None:
        self._storage = storage
        self._matcher = Matcher.eq(TENANT, "")  # "" matches series without the label

    def _scoped(self, matchers: Sequence[Matcher]) -> list[Matcher]:
        return [*matchers, self._matcher]

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> SeriesSet:
        return self._storage.select(self._scoped(matchers), mint, maxt)

    def series(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[Labels]:
        return self._storage.series(self._scoped(matchers), mint, maxt)

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        return self._storage.label_names(self._scoped(matchers), mint, maxt)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        return self._storage.label_values(name, self._scoped(matchers), mint, maxt)


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
    """Buffers a rule's samples and writes them to `storage` in one append on `commit`. With
    `untenanted`, samples whose labels carry `tenant` are refused (reason `tenant_label`)."""

    storage: Storage
    untenanted: bool = False
    _labels: list[Labels] = field(default_factory=list)
    _ts: list[int] = field(default_factory=list)
    _values: list[float] = field(default_factory=list)

    def append(self, labels: Labels, ts_ms: int, value: float) -> None:
        self._labels.append(labels)
        self._ts.append(ts_ms)
        self._values.append(value)

    def commit(self) -> dict[str, int]:
        """Write the buffered samples; returns what the store refused, by reason."""
        labels, ts, values = self._labels, self._ts, self._values
        self._labels, self._ts, self._values = [], [], []
        refused: dict[str, int] = {}
        if self.untenanted and any(lb.get(TENANT) for lb in labels):
            keep = [i for i, lb in enumerate(labels) if not lb.get(TENANT)]
            refused[TENANT_REFUSED] = len(labels) - len(keep)
            labels, ts, values = [labels[i] for i in keep], [ts[i] for i in keep], [values[i] for i in keep]
        if not labels:
            return refused
        refs = self.storage.series_refs(labels)
        result = self.storage.append(
            np.asarray(refs, np.int64), np.asarray(ts, np.int64), np.asarray(values, np.float64)
        )
        return {**refused, **result.rejected}

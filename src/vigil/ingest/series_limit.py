"""Caps on how many series the store holds: globally, per tenant, and per metric name of a tenant.

A flood of new series (a label carrying a request id, a misbehaving exporter, a hostile writer)
costs memory for as long as retention keeps them, and outlives restarts; a cap refuses the writes
that would create series beyond it, with 429 and a message naming the limit, while writes to
series that exist go on. The whole request is refused, as for any other invalid series: nothing
of it is stored, so the sender knows exactly what the store holds and can retry (senders retry
429) once series expire by retention or the limit is raised.

Counts are kept incrementally as series are created, under the store's own lock (`Storage.
series_refs` calls `admit` atomically with creation), and taken from the store's index when the
ingester starts or series were deleted (retention), so they hold across restarts.

Only series the server put a `tenant` label on count against `max_series_per_tenant`; untenanted
writes are bounded by `max_series` alone. `max_series_per_metric` counts (tenant, metric name).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigil.ingest.validate import InvalidSeries
from vigil.model.labels import METRIC_NAME, TENANT, Labels
from vigil.storage.interface import Storage


@dataclass(frozen=True)
class SeriesLimits:
    """0 means no limit."""

    max_series: int = 0
    max_series_per_tenant: int = 0
    max_series_per_metric: int = 0


class SeriesLimitExceeded(InvalidSeries):
    """Creating the request's new series would pass a limit (`reason` is the limit's key): 429."""


class SeriesLimitMetrics:
    def __init__(self, registry: CollectorRegistry | None, limits: SeriesLimits) -> None:
        self.rejected = Counter(
            "vigil_ingest_series_rejected_total",
            "New series refused because they would pass a series limit, by limit.",
            ["limit"],
            registry=registry,
        )
        self.limit = Gauge(
            "vigil_ingest_series_limit",
            "The configured series limits (0: none), for alerts on vigil_tsdb_series approaching them.",
            ["limit"],
            registry=registry,
        )
        for name in ("max_series", "max_series_per_tenant", "max_series_per_metric"):
            self.limit.labels(name).set(getattr(limits, name))
            self.rejected.labels(name)


class SeriesLimiter:
    """Counts series per tenant and per (tenant, metric) and refuses creations beyond the limits.

    `admit` is meant to be passed to `Storage.series_refs`, which calls it under its lock, so
    counting needs no lock of its own."""

    def __init__(self, storage: Storage, limits: SeriesLimits, metrics: SeriesLimitMetrics) -> None:
        self._storage = storage
        self._limits = limits
        self._metrics = metrics
        self._generation = -1
        self._total = 0
        self._per_tenant: Tally[str] = Tally()
        self._per_metric: Tally[tuple[str, str]] = Tally()

    def _recount(self) -> None:
        # At start and after deletions: from the index, so counts hold across restarts.
        generation = self._storage.series_generation
        counts = self._storage.count_series((TENANT, METRIC_NAME))
        self._per_metric = Tally()
        self._per_tenant = Tally()
        for (tenant, name), n in counts.items():
            self._per_metric[(tenant, name)] = n
            self._per_tenant[tenant] += n
        self._total = sum(counts.values())
        self._generation = generation

    def admit(self, new: Sequence[Labels]) -> None:
        """Count `new` (distinct label sets not in the store yet) as created, or raise
        SeriesLimitExceeded and count none of them."""
        lim = self._limits
        if not (lim.max_series or lim.max_series_per_tenant or lim.max_series_per_metric):
            return
        if self._storage.series_generation != self._generation:
            self._recount()
        per_metric = Tally((lb.get(TENANT), lb.metric_name) for lb in new)
        per_tenant: Tally[str] = Tally()
        for (tenant, _), n in per_metric.items():
            per_tenant[tenant] += n
        if lim.max_series and self._total + len(new) > lim.max_series:
            self._refuse("max_series", len(new), lim.max_series, self._total, "in the store")
        if lim.max_series_per_tenant:
            for tenant, n in per_tenant.items():
                if tenant and self._per_tenant[tenant] + n > lim.max_series_per_tenant:
                    have = self._per_tenant[tenant]
                    self._refuse(
                        "max_series_per_tenant", n, lim.max_series_per_tenant, have, f"of tenant {tenant!r}"
                    )
        if lim.max_series_per_metric:
            for (tenant, name), n in per_metric.items():
                if self._per_metric[(tenant, name)] + n > lim.max_series_per_metric:
                    have = self._per_metric[(tenant, name)]
                    whose = f"of metric {name!r}" + (f" of tenant {tenant!r}" if tenant else "")
                    self._refuse("max_series_per_metric", n, lim.max_series_per_metric, have, whose)
        self._total += len(new)
        self._per_tenant.update(per_tenant)
        self._per_metric.update(per_metric)

    def _refuse(self, limit: str, new: int, cap: int, have: int, whose: str) -> None:
        self._metrics.rejected.labels(limit).inc(new)
        raise SeriesLimitExceeded(
            limit,
            f"series limit reached: the request would create {new} new series {whose}, where "
            f"{have} exist and limits.{limit} is {cap}; nothing of the request was stored",
        )

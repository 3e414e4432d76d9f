"""Metric metadata (type, help, unit per metric family), kept in memory for `/api/v1/metadata`.

Fed from remote-write `MetricMetadata` and the `# TYPE` / `# HELP` / `# UNIT` lines of text
imports. Prometheus keeps metadata per scrape target and may report several entries per family;
Vigil has no targets, so one entry per family and writer's tenant is kept and the last write wins.
The store is bounded: past `max_families` (per tenant) the family updated longest ago is forgotten,
so a sender inventing names cannot grow it without limit. Nothing is persisted; senders repeat
metadata periodically.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

# Prometheus' metric types (`model.MetricType`), as /api/v1/metadata writes them.
METRIC_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
)
# Remote write's MetricMetadata.MetricType enum, by number.
PROTO_METRIC_TYPES = (
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
)

DEFAULT_MAX_FAMILIES = 100_000


class Metadata(NamedTuple):
    type: str
    help: str
    unit: str


def normalize_type(t: str | int | None) -> str:
    """A metric type from text (`counter`, `COUNTER`, `untyped`) or the remote-write enum number."""
    if isinstance(t, int) and not isinstance(t, bool):
        return PROTO_METRIC_TYPES[t] if 0 <= t < len(PROTO_METRIC_TYPES) else "unknown"
    if not t:
        return "unknown"
    name = str(t).lower()
    if name == "untyped":  # text format 0.0.4's word for unknown
        return "unknown"
    return name if name in METRIC_TYPES else "unknown"


class MetadataStore:
    """Thread-safe map (tenant, family) -> Metadata; last write wins, each tenant bounded by `max_families`.

    Metadata is tenant data like the series it describes (a family name or help text can say what a
    customer runs), so it is kept per writer's tenant and a tenant's reader sees only its own. The
    bound is per tenant, so one tenant inventing names cannot evict another's entries; tenants come
    from the server's configuration, not from requests, so their number is bounded too.
    """

    def __init__(self, max_families: int = DEFAULT_MAX_FAMILIES) -> None:
        if max_families < 1:
            raise ValueError("max_families must be at least 1")
        self._max = max_families
        self._lock = threading.Lock()
        # Writer's tenant ("" for untenanted writes) -> family -> entry, least recently updated first.
        self._tenants: dict[str, OrderedDict[str, Metadata]] = {}

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._tenants.values())

    def update(
        self, family: str, type: str | int | None, help: str = "", unit: str = "", tenant: str | None = None
    ) -> None:
        self.update_many([(family, type, help, unit)], tenant)

    def update_many(
        self, items: Iterable[tuple[str, str | int | None, str, str]], tenant: str | None = None
    ) -> None:
        """Record several families under one lock (a write request carries many), as written by
        `tenant`'s tokens (None: untenanted tokens)."""
        prepared = [(f, Metadata(normalize_type(t), h or "", u or "")) for f, t, h, u in items if f]
        if not prepared:
            return
        with self._lock:
            entries = self._tenants.setdefault(tenant or "", OrderedDict())
            for family, meta in prepared:
                entries[family] = meta
                entries.move_to_end(family)
            while len(entries) > self._max:
                entries.popitem(last=False)

    def get(self, family: str, tenant: str | None = None) -> Metadata | None:
        """The entry written for `family` by `tenant`'s tokens (None: by untenanted tokens)."""
        with self._lock:
            entries = self._tenants.get(tenant or "")
            return entries.get(family) if entries is not None else None

    def query(
        self,
        metric: str | None = None,
        limit: int | None = None,
        limit_per_metric: int | None = None,
        tenant: str | None = None,
    ) -> dict[str, list[dict[str, str]]]:
        """The `data` of /api/v1/metadata: `{family: [{"type", "help", "unit"}]}`, families sorted.

        `tenant` scopes the answer to what that tenant's tokens wrote; None answers for the whole
        store (a global reader), where a family written by several tenants with different metadata
        has one entry per distinct version, as Prometheus reports one per target. `metric` selects
        one family; `limit` caps the number of families (negative or None: no cap, 0: none, as
        Prometheus); `limit_per_metric` caps entries per family when > 0.
        """
        with self._lock:
            if tenant is not None:
                scopes = [self._tenants[tenant]] if tenant in self._tenants else []
            else:
                scopes = [self._tenants[t] for t in sorted(self._tenants)]
            found: dict[str, list[Metadata]] = {}
            for entries in scopes:
                pairs = [(metric, entries.get(metric))] if metric else entries.items()
                for name, meta in pairs:
                    if meta is not None and meta not in found.setdefault(name, []):
                        found[name].append(meta)
        selected = sorted((name, metas) for name, metas in found.items() if metas)
        if limit is not None and limit >= 0:
            selected = selected[:limit]
        per = limit_per_metric if limit_per_metric is not None and limit_per_metric > 0 else None
        return {name: [m._asdict() for m in metas][:per] for name, metas in selected}

"""Metric metadata (type, help, unit per metric family), kept in memory for `/api/v1/metadata`.

Fed from remote-write `MetricMetadata` and the `# TYPE` / `# HELP` / `# UNIT` lines of text
imports. Prometheus keeps metadata per scrape target and may report several entries per family;
Vigil has no targets, so one entry per family is kept and the last write wins. The store is
bounded: past `max_families` the family updated longest ago is forgotten, so a sender inventing
names cannot grow it without limit. Nothing is persisted; senders repeat metadata periodically.
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
    """Thread-safe map family -> Metadata; last write wins, bounded by `max_families`."""

    def __init__(self, max_families: int = DEFAULT_MAX_FAMILIES) -> None:
        if max_families < 1:
            raise ValueError("max_families must be at least 1")
        self._max = max_families
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Metadata] = OrderedDict()  # least recently updated first

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def update(self, family: str, type: str | int | None, help: str = "", unit: str = "") -> None:
        self.update_many([(family, type, help, unit)])

    def update_many(self, items: Iterable[tuple[str, str | int | None, str, str]]) -> None:
        """Record several families under one lock (a write request carries many)."""
        prepared = [(f, Metadata(normalize_type(t), h or "", u or "")) for f, t, h, u in items if f]
        with self._lock:
            entries = self._entries
            for family, meta in prepared:
                entries[family] = meta
                entries.move_to_end(family)
            while len(entries) > self._max:
                entries.popitem(last=False)

    def get(self, family: str) -> Metadata | None:
        with self._lock:
            return self._entries.get(family)

    def query(
        self, metric: str | None = None, limit: int | None = None, limit_per_metric: int | None = None
    ) -> dict[str, list[dict[str, str]]]:
        """The `data` of /api/v1/metadata: `{family: [{"type", "help", "unit"}]}`, families sorted.

        `metric` selects one family; `limit` caps the number of families (negative or None: no cap,
        0: none, as Prometheus); `limit_per_metric` caps entries per family when > 0 (there is
        only ever one here).
        """
        with self._lock:
            if metric:
                found = self._entries.get(metric)
                selected = [(metric, found)] if found is not None else []
            else:
                selected = list(self._entries.items())
        selected.sort(key=lambda kv: kv[0])
        if limit is not None and limit >= 0:
            selected = selected[:limit]
        per = limit_per_metric if limit_per_metric is not None and limit_per_metric > 0 else None
        return {name: [m._asdict()][:per] for name, m in selected}

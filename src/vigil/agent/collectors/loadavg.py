"""Load averages from /proc/loadavg, as node_exporter's `loadavg` collector names them.

Families: `node_load1`, `node_load5`, `node_load15` (gauges): runnable plus uninterruptible tasks,
exponentially averaged over 1, 5 and 15 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_source

_FAMILIES = (
    ("node_load1", "Load average over 1 minute."),
    ("node_load5", "Load average over 5 minutes."),
    ("node_load15", "Load average over 15 minutes."),
)


class LoadavgCollector:
    name = "loadavg"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._loadavg = proc / "loadavg"

    def collect(self) -> Iterable[Metric]:
        fields = read_source(self._loadavg).split()
        if len(fields) < 3:
            raise ValueError(f"unexpected content in {self._loadavg}: {' '.join(fields)!r}")
        return [
            GaugeMetricFamily(name, help_text, value=float(value))
            for (name, help_text), value in zip(_FAMILIES, fields, strict=False)
        ]

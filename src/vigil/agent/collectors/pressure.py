"""Pressure stall information (PSI, Linux 4.20+) from /proc/pressure, as node_exporter names it.

Families (counters, seconds): `node_pressure_cpu_waiting_seconds_total`,
`node_pressure_io_waiting_seconds_total`, `node_pressure_io_stalled_seconds_total`,
`node_pressure_memory_waiting_seconds_total`, `node_pressure_memory_stalled_seconds_total`.
"waiting" is the kernel's `some` line (at least one task stalled), "stalled" its `full` line (all
non-idle tasks stalled). Like node_exporter 1.5, the cpu `full` line (5.13+) is not exposed.
Without PSI (old kernel, or booted with psi=0) the collector is unavailable.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily

from vigil.agent.collectors._fs import read_text
from vigil.model.collector import CollectorUnavailable

# resource -> ((psi line kind, family, help), ...)
_RESOURCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "cpu": (("some", "node_pressure_cpu_waiting_seconds_total", "Seconds some tasks waited for a CPU."),),
    "io": (
        ("some", "node_pressure_io_waiting_seconds_total", "Seconds some tasks waited for I/O."),
        ("full", "node_pressure_io_stalled_seconds_total", "Seconds all non-idle tasks were stalled on I/O."),
    ),
    "memory": (
        ("some", "node_pressure_memory_waiting_seconds_total", "Seconds some tasks waited for memory."),
        (
            "full",
            "node_pressure_memory_stalled_seconds_total",
            "Seconds all non-idle tasks were stalled on memory.",
        ),
    ),
}


def parse_psi(text: str) -> dict[str, float]:
    """`{"some": total seconds, "full": total seconds}` from a /proc/pressure file (totals are in µs)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            if field.startswith("total="):
                totals[kind] = int(field[6:]) / 1e6
    return totals


class PressureCollector:
    name = "pressure"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._dir = proc / "pressure"

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = []
        for resource, wanted in _RESOURCES.items():
            try:
                totals = parse_psi(read_text(self._dir / resource))
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.EOPNOTSUPP:  # the files exist but PSI is off (psi=0)
                    raise CollectorUnavailable("pressure stall information is disabled (psi=0)") from exc
                raise
            for kind, name, help_text in wanted:
                if kind in totals:
                    families.append(CounterMetricFamily(name, help_text, value=totals[kind]))
        if not families:
            raise CollectorUnavailable(f"no pressure stall information in {self._dir} (needs Linux 4.20+)")
        return families

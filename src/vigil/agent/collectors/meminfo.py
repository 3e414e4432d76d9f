"""Memory figures from /proc/meminfo, one gauge per field, as node_exporter's `meminfo` collector names them.

`Field:  123 kB` becomes `node_memory_Field_bytes 125952` (kB are KiB); a field without a unit
(`HugePages_Total`) keeps its name and value. Parentheses become an underscore suffix, so
`Active(anon)` is `node_memory_Active_anon_bytes`. Every field the kernel prints is exposed, so new
kernel fields appear without a code change.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.collectors._fs import read_source


def metric_name(field: str, has_unit: bool) -> str:
    """The family name node_exporter gives a /proc/meminfo field."""
    field = field.replace("(", "_").replace(")", "")
    return f"node_memory_{field}_bytes" if has_unit else f"node_memory_{field}"


class MeminfoCollector:
    name = "meminfo"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._meminfo = proc / "meminfo"
        self._names: dict[tuple[str, bool], str] = {}  # the field set is fixed per kernel: build names once

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = []
        names = self._names
        for line in read_source(self._meminfo).splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            field = parts[0].rstrip(":")
            has_unit = len(parts) > 2  # the only unit the kernel prints here is kB
            value = float(parts[1]) * 1024 if has_unit else float(parts[1])
            name = names.get((field, has_unit))
            if name is None:
                name = names[(field, has_unit)] = metric_name(field, has_unit)
            help_text = f"{field} from /proc/meminfo" + (", in bytes." if has_unit else ".")
            # node_exporter types a field as a counter only if its name ends in "_total" (none do today).
            cls = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
            families.append(cls(name, help_text, value=value))
        return families

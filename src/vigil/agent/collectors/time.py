"""The host's clock, as node_exporter's `time` collector names it.

Families (gauges): `node_time_seconds` (wall clock, seconds since the epoch: compared with the
server's clock it shows skew), `node_time_zone_offset_seconds{time_zone}` (the local zone's offset
from UTC), and from /sys `node_time_clocksource_available_info{device,clocksource}` and
`node_time_clocksource_current_info{device,clocksource}` (a clock source falling back from `tsc` is a
classic cause of slow VMs).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_optional


class TimeCollector:
    name = "time"

    def __init__(self, sys: Path = Path("/sys"), clock: Callable[[], float] = _time.time) -> None:
        self._clocksource_dir = sys / "devices/system/clocksource"
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        local = _time.localtime(now)
        families: list[Metric] = [
            GaugeMetricFamily(
                "node_time_seconds", "Wall clock time in seconds since the Unix epoch.", value=now
            ),
        ]
        zone = GaugeMetricFamily(
            "node_time_zone_offset_seconds",
            "Offset of the local time zone from UTC, in seconds.",
            labels=["time_zone"],
        )
        zone.add_metric([local.tm_zone], float(local.tm_gmtoff))
        families.append(zone)
        families.extend(self._clocksources())
        return families

    def _clocksources(self) -> list[Metric]:
        available = GaugeMetricFamily(
            "node_time_clocksource_available_info",
            "Clock sources the kernel can use; always 1.",
            labels=["device", "clocksource"],
        )
        current = GaugeMetricFamily(
            "node_time_clocksource_current_info",
            "Clock source the kernel uses; always 1.",
            labels=["device", "clocksource"],
        )
        try:
            devices = sorted(
                (int(p.name[len("clocksource") :]), p)
                for p in self._clocksource_dir.glob("clocksource[0-9]*")
            )
        except (OSError, ValueError):
            devices = []
        for number, path in devices:
            device = str(number)
            for source in (read_optional(path / "available_clocksource") or "").split():
                available.add_metric([device, source], 1.0)
            in_use = read_optional(path / "current_clocksource")
            if in_use:
                current.add_metric([device, in_use], 1.0)
        return [f for f in (available, current) if f.samples]

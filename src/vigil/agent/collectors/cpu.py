"""CPU time per CPU and mode, as node_exporter's `cpu` collector names it.

Families: `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total{cpu,mode}` from the
`cpuN` lines of /proc/stat (clock ticks divided by USER_HZ), plus, where the kernel has them,
`node_cpu_core_throttles_total{package,core}`, `node_cpu_package_throttles_total{package}` (Intel
thermal throttle counts in sysfs) and `node_cpu_isolated{cpu}` (boot-time `isolcpus`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.collectors._fs import read_optional, read_source

# Columns of a `cpuN` line in /proc/stat, in order. guest and guest_nice are also counted in user and
# nice, so they are exposed in their own family rather than as modes.
_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_GUEST_MODES = ("user", "nice")
_COLUMNS = len(_MODES) + len(_GUEST_MODES)
_IDLE = _MODES.index("idle")

# A per-CPU idle counter going back by this much means the CPU was unplugged and came back: start over.
_HOTPLUG_JUMP_BACK_S = 3.0


def parse_cpulist(text: str) -> list[int]:
    """A kernel CPU list such as "0-3,8,10-11" as CPU numbers."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


class CPUCollector:
    name = "cpu"

    def __init__(
        self, proc: Path = Path("/proc"), sys: Path = Path("/sys"), user_hz: int | None = None
    ) -> None:
        self._stat = proc / "stat"
        self._cpu_dir = sys / "devices/system/cpu"
        self._hz = float(user_hz or os.sysconf("SC_CLK_TCK"))
        # Last values exposed per CPU: some kernels let a counter step back a little (idle/iowait
        # accounting races), and a counter must never decrease, so the previous value is held instead.
        self._last: dict[str, list[float]] = {}
        self._isolated: list[int] | None = None
        # (package, core, cpu directory) of each CPU that has thermal_throttle counters; found once per
        # CPU count, since the topology only changes with hotplug.
        self._throttle_cpus: list[tuple[str, str, Path]] | None = None
        self._throttle_cpu_count = -1

    def collect(self) -> Iterable[Metric]:
        text = read_source(self._stat)
        seconds = CounterMetricFamily(
            "node_cpu_seconds_total", "CPU time spent in each mode, per CPU.", labels=["cpu", "mode"]
        )
        guest = CounterMetricFamily(
            "node_cpu_guest_seconds_total",
            "CPU time spent running guests (virtual machines), per CPU; also counted in user and nice.",
            labels=["cpu", "mode"],
        )
        hz = self._hz
        ncpus = 0
        for line in text.splitlines():
            if not line.startswith("cpu"):
                break  # the cpu lines come first
            fields = line.split()
            cpu = fields[0][3:]
            if not cpu:
                continue  # the aggregate "cpu" line: node_exporter exposes per-CPU figures only
            ncpus += 1
            values = [int(v) / hz for v in fields[1 : _COLUMNS + 1]]
            values.extend([0.0] * (_COLUMNS - len(values)))  # older kernels have fewer columns
            values = self._monotonic(cpu, values)
            for mode, value in zip(_MODES, values, strict=False):
                seconds.add_metric([cpu, mode], value)
            for mode, value in zip(_GUEST_MODES, values[len(_MODES) :], strict=True):
                guest.add_metric([cpu, mode], value)
        yield seconds
        yield guest
        yield from self._isolated_family()
        yield from self._throttles(ncpus)

    def _monotonic(self, cpu: str, values: list[float]) -> list[float]:
        last = self._last.get(cpu)
        if last is not None and last[_IDLE] - values[_IDLE] < _HOTPLUG_JUMP_BACK_S:
            values = [max(old, new) for old, new in zip(last, values, strict=True)]
        self._last[cpu] = values
        return values

    def _isolated_family(self) -> Iterable[Metric]:
        if self._isolated is None:  # fixed at boot: read once
            self._isolated = parse_cpulist(read_optional(self._cpu_dir / "isolated") or "")
        if self._isolated:
            fam = GaugeMetricFamily(
                "node_cpu_isolated", "1 for each CPU isolated at boot (isolcpus).", labels=["cpu"]
            )
            for cpu in self._isolated:
                fam.add_metric([str(cpu)], 1.0)
            yield fam

    def _find_throttle_cpus(self) -> list[tuple[str, str, Path]]:
        found: list[tuple[str, str, Path]] = []
        try:
            entries = sorted(self._cpu_dir.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:]))
        except (OSError, ValueError):
            return found
        for cpu_dir in entries:
            if not (cpu_dir / "thermal_throttle").is_dir():
                continue
            package = read_optional(cpu_dir / "topology/physical_package_id")
            core = read_optional(cpu_dir / "topology/core_id")
            if package is not None and core is not None:
                found.append((package, core, cpu_dir))
        return found

    def _throttles(self, ncpus: int) -> Iterable[Metric]:
        if self._throttle_cpus is None or ncpus != self._throttle_cpu_count:
            self._throttle_cpus = self._find_throttle_cpus()
            self._throttle_cpu_count = ncpus
        if not self._throttle_cpus:
            return
        # Hyper-threads share a core and cores share a package: each counter is read once.
        cores: dict[tuple[str, str], float] = {}
        packages: dict[str, float] = {}
        for package, core, cpu_dir in self._throttle_cpus:
            if (package, core) not in cores:
                value = read_optional(cpu_dir / "thermal_throttle/core_throttle_count")
                if value is not None:
                    cores[(package, core)] = float(value)
            if package not in packages:
                value = read_optional(cpu_dir / "thermal_throttle/package_throttle_count")
                if value is not None:
                    packages[package] = float(value)
        if packages:
            fam = CounterMetricFamily(
                "node_cpu_package_throttles_total",
                "Times the CPU package was throttled for temperature.",
                labels=["package"],
            )
            for package, count in packages.items():
                fam.add_metric([package], count)
            yield fam
        if cores:
            fam = CounterMetricFamily(
                "node_cpu_core_throttles_total",
                "Times the CPU core was throttled for temperature.",
                labels=["package", "core"],
            )
            for (package, core), count in cores.items():
                fam.add_metric([package, core], count)
            yield fam

"""Kernel-wide activity counters from /proc/stat, as node_exporter's `stat` collector names them.

Families: `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`,
`node_intr_total`, `node_procs_running`, `node_procs_blocked`, and (off by default, like
node_exporter's `--collector.stat.softirq`) `node_softirqs_total{vector}`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.collectors._fs import read_source

# The per-vector columns of the `softirq` line, after its total, in kernel order.
_SOFTIRQ_VECTORS = (
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
)

# /proc/stat key -> (family, help, is_counter)
_FIELDS: dict[str, tuple[str, str, bool]] = {
    "intr": ("node_intr_total", "Interrupts serviced since boot, all sources together.", True),
    "ctxt": ("node_context_switches_total", "Context switches since boot.", True),
    "processes": ("node_forks_total", "Processes and threads created (forks) since boot.", True),
    "btime": ("node_boot_time_seconds", "When the system booted, in seconds since the Unix epoch.", False),
    "procs_running": ("node_procs_running", "Threads currently runnable (running or ready to run).", False),
    "procs_blocked": ("node_procs_blocked", "Threads currently blocked waiting for I/O.", False),
}


class StatCollector:
    name = "stat"

    def __init__(self, proc: Path = Path("/proc"), softirq: bool = False) -> None:
        self._stat = proc / "stat"
        self._softirq = softirq

    def collect(self) -> Iterable[Metric]:
        text = read_source(self._stat)
        families: list[Metric] = []
        softirq: list[str] | None = None
        for line in text.splitlines():
            key, _, rest = line.partition(" ")
            spec = _FIELDS.get(key)
            if spec is not None:
                family, help_text, counter = spec
                # intr is followed by per-IRQ counts (hundreds on big hosts): only the total is wanted.
                first = rest.lstrip().partition(" ")[0]
                value = float(first)
                families.append(
                    CounterMetricFamily(family, help_text, value=value)
                    if counter
                    else GaugeMetricFamily(family, help_text, value=value)
                )
            elif key == "softirq":
                softirq = rest.split()[1:]
        if self._softirq and softirq is not None:
            fam = CounterMetricFamily(
                "node_softirqs_total", "Softirqs run since boot, per vector.", labels=["vector"]
            )
            for vector, count in zip(_SOFTIRQ_VECTORS, softirq, strict=False):
                fam.add_metric([vector], float(count))
            families.append(fam)
        return families

"""Host collectors under node_exporter's metric names, labels and units, so its dashboards and alerts apply.

One module per node_exporter collector of the same name, each reading /proc and /sys directly. The
paths are parameters so that tests can point them at fixture trees and a containerised agent at the
host's (`proc=/host/proc`, `sys=/host/sys`, `root=/host`). `default_collectors()` mirrors the set of
those collectors node_exporter 1.5 enables by default, with its default device and mount exclusions.
"""

from __future__ import annotations

from pathlib import Path

from vigil.agent.collectors.cpu import CPUCollector
from vigil.agent.collectors.diskstats import DiskstatsCollector
from vigil.agent.collectors.filefd import FilefdCollector
from vigil.agent.collectors.filesystem import FilesystemCollector
from vigil.agent.collectors.loadavg import LoadavgCollector
from vigil.agent.collectors.meminfo import MeminfoCollector
from vigil.agent.collectors.netdev import NetdevCollector
from vigil.agent.collectors.pressure import PressureCollector
from vigil.agent.collectors.processes import ProcessesCollector
from vigil.agent.collectors.stat import StatCollector
from vigil.agent.collectors.time import TimeCollector
from vigil.agent.collectors.uname import UnameCollector
from vigil.model.collector import Collector

__all__ = [
    "CPUCollector",
    "DiskstatsCollector",
    "FilefdCollector",
    "FilesystemCollector",
    "LoadavgCollector",
    "MeminfoCollector",
    "NetdevCollector",
    "PressureCollector",
    "ProcessesCollector",
    "StatCollector",
    "TimeCollector",
    "UnameCollector",
    "default_collectors",
    "optional_collectors",
]


def default_collectors(
    proc: Path = Path("/proc"), sys: Path = Path("/sys"), root: Path = Path("/")
) -> list[Collector]:
    """The host collectors node_exporter 1.5 runs by default, configured with its defaults."""
    return [
        CPUCollector(proc, sys),
        DiskstatsCollector(proc, udev_data=root / "run/udev/data"),
        FilefdCollector(proc),
        FilesystemCollector(proc, root),
        LoadavgCollector(proc),
        MeminfoCollector(proc),
        NetdevCollector(proc),
        PressureCollector(proc),
        StatCollector(proc),
        TimeCollector(sys),
        UnameCollector(proc),
    ]


def optional_collectors(
    proc: Path = Path("/proc"), sys: Path = Path("/sys"), root: Path = Path("/")
) -> list[Collector]:
    """Collectors that are off by default (as in node_exporter) because their cost grows with the host."""
    return [ProcessesCollector(proc)]

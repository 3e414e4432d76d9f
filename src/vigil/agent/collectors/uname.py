"""Kernel identity, as node_exporter's `uname` collector names it.

Family: `node_uname_info{sysname,release,version,machine,nodename,domainname}` (gauge, always 1).
The fields are read from /proc/sys/kernel, which shows the same UTS namespace `uname(2)` does, so a
test can point `proc` at a fixture tree; only `machine` has no file there and comes from uname(2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_source
from vigil.model.labels import label_safe

# label -> file in /proc/sys/kernel
_FILES = {
    "sysname": "ostype",
    "release": "osrelease",
    "version": "version",
    "nodename": "hostname",
    "domainname": "domainname",
}
_LABELS = ["sysname", "release", "version", "machine", "nodename", "domainname"]


class UnameCollector:
    name = "uname"

    def __init__(self, proc: Path = Path("/proc"), machine: str | None = None) -> None:
        self._kernel = proc / "sys/kernel"
        self._machine = machine or os.uname().machine  # the CPU architecture cannot change while running

    def collect(self) -> Iterable[Metric]:
        # Read on every collection: the host name (and, rarely, the domain name) can change.
        values = {label: read_source(self._kernel / name).rstrip("\n") for label, name in _FILES.items()}
        values["machine"] = self._machine
        fam = GaugeMetricFamily(
            "node_uname_info", "Kernel identity as uname(2) reports it; always 1.", labels=_LABELS
        )
        fam.add_metric([label_safe(values[label]) for label in _LABELS], 1.0)
        return [fam]

"""Kernel file handle usage from /proc/sys/fs/file-nr, as node_exporter's `filefd` collector names it.

Families: `node_filefd_allocated` (file handles in use) and `node_filefd_maximum` (the `fs.file-max`
limit), both gauges.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_source


class FilefdCollector:
    name = "filefd"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._file_nr = proc / "sys/fs/file-nr"

    def collect(self) -> Iterable[Metric]:
        # "allocated  free(always 0 since 2.6)  maximum"
        fields = read_source(self._file_nr).split()
        if len(fields) < 3:
            raise ValueError(f"unexpected content in {self._file_nr}: {' '.join(fields)!r}")
        return [
            GaugeMetricFamily(
                "node_filefd_allocated", "File handles allocated by the kernel.", value=float(fields[0])
            ),
            GaugeMetricFamily(
                "node_filefd_maximum", "Most file handles the kernel will allocate.", value=float(fields[2])
            ),
        ]

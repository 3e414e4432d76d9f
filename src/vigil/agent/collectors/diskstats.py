"""Block device I/O from /proc/diskstats, as node_exporter's `diskstats` collector names it.

Families (label `device`): `node_disk_reads_completed_total`, `node_disk_reads_merged_total`,
`node_disk_read_bytes_total`, `node_disk_read_time_seconds_total`, the same four for writes
(`writes_completed`, `writes_merged`, `written_bytes`, `write_time_seconds`), `node_disk_io_now`
(gauge), `node_disk_io_time_seconds_total`, `node_disk_io_time_weighted_seconds_total`, and where the
kernel reports them the discard (4.18+) and flush (5.5+) counters. Also `node_disk_info`, and from
udev's database (`/run/udev/data`) `node_disk_filesystem_info`, `node_disk_device_mapper_info` and
the `node_disk_ata_*` gauges. Partitions, loop and RAM disks are excluded by default, as in
node_exporter 1.5.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.collectors._fs import device_filter, read_source
from vigil.model.labels import label_safe

DEFAULT_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"

_SECTOR_BYTES = 512.0  # /proc/diskstats counts 512-byte sectors whatever the device's sector size
_MS = 1000.0  # times are in milliseconds

# The statistics columns after "major minor name", in kernel order: (family, help, unit, is_counter).
# unit "sectors" becomes bytes, "ms" seconds, "" stays raw (node_exporter leaves discarded sectors raw).
_COLUMNS: list[tuple[str, str, str, bool]] = [
    ("node_disk_reads_completed_total", "Reads completed.", "", True),
    ("node_disk_reads_merged_total", "Adjacent reads merged into one.", "", True),
    ("node_disk_read_bytes_total", "Bytes read.", "sectors", True),
    ("node_disk_read_time_seconds_total", "Seconds spent by all reads.", "ms", True),
    ("node_disk_writes_completed_total", "Writes completed.", "", True),
    ("node_disk_writes_merged_total", "Adjacent writes merged into one.", "", True),
    ("node_disk_written_bytes_total", "Bytes written.", "sectors", True),
    ("node_disk_write_time_seconds_total", "Seconds spent by all writes.", "ms", True),
    ("node_disk_io_now", "I/Os in progress.", "", False),
    ("node_disk_io_time_seconds_total", "Seconds the device had I/O in progress.", "ms", True),
    (
        "node_disk_io_time_weighted_seconds_total",
        "Seconds spent doing I/O weighted by the number in progress (queue-time integral).",
        "ms",
        True,
    ),
    ("node_disk_discards_completed_total", "Discards completed.", "", True),
    ("node_disk_discards_merged_total", "Adjacent discards merged into one.", "", True),
    ("node_disk_discarded_sectors_total", "Sectors discarded.", "", True),
    ("node_disk_discard_time_seconds_total", "Seconds spent by all discards.", "ms", True),
    ("node_disk_flush_requests_total", "Flush requests completed.", "", True),
    ("node_disk_flush_requests_time_seconds_total", "Seconds spent by all flush requests.", "ms", True),
]

_INFO_LABELS = ["device", "major", "minor", "path", "wwn", "model", "serial", "revision"]
# node_disk_info's labels after major/minor, and the udev properties they come from.
_INFO_PROPS = ("ID_PATH", "ID_WWN", "ID_MODEL", "ID_SERIAL_SHORT", "ID_REVISION")
_FS_PROPS = ("ID_FS_TYPE", "ID_FS_USAGE", "ID_FS_UUID", "ID_FS_VERSION")
_DM_PROPS = ("DM_NAME", "DM_UUID", "DM_VG_NAME", "DM_LV_NAME", "DM_LV_LAYER")
_ATA_GAUGES = {
    "ID_ATA_WRITE_CACHE": ("node_disk_ata_write_cache", "1 if the ATA disk has a write cache."),
    "ID_ATA_WRITE_CACHE_ENABLED": (
        "node_disk_ata_write_cache_enabled",
        "1 if the ATA disk's write cache is on.",
    ),
    "ID_ATA_ROTATION_RATE_RPM": (
        "node_disk_ata_rotation_rate_rpm",
        "ATA disk rotation rate in RPM (0 for SSDs).",
    ),
}


def parse_udev(text: str) -> dict[str, str]:
    """The `E:KEY=value` device properties of a udev database file."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, sep, value = line[2:].partition("=")
            if sep:
                props[key] = value
    return props


class DiskstatsCollector:
    name = "diskstats"

    def __init__(
        self,
        proc: Path = Path("/proc"),
        udev_data: Path = Path("/run/udev/data"),
        device_exclude: str | None = DEFAULT_DEVICE_EXCLUDE,
        device_include: str | None = None,
    ) -> None:
        self._diskstats = proc / "diskstats"
        self._udev_data = udev_data
        self._dropped = device_filter(device_exclude, device_include)

    def _udev(self, major: str, minor: str) -> dict[str, str]:
        try:
            with open(self._udev_data / f"b{major}:{minor}", "rb") as f:
                return parse_udev(f.read().decode("utf-8", "replace"))
        except OSError:
            return {}

    def collect(self) -> Iterable[Metric]:
        text = read_source(self._diskstats)
        stats = [
            CounterMetricFamily(name, help_text, labels=["device"])
            if counter
            else GaugeMetricFamily(name, help_text, labels=["device"])
            for name, help_text, _, counter in _COLUMNS
        ]
        info = GaugeMetricFamily(
            "node_disk_info", "Identity of a block device; always 1.", labels=_INFO_LABELS
        )
        fs_info = GaugeMetricFamily(
            "node_disk_filesystem_info",
            "Filesystem udev found on the device; always 1.",
            labels=["device", "type", "usage", "uuid", "version"],
        )
        dm_info = GaugeMetricFamily(
            "node_disk_device_mapper_info",
            "Device mapper identity of the device; always 1.",
            labels=["device", "name", "uuid", "vg_name", "lv_name", "lv_layer"],
        )
        ata = {
            prop: GaugeMetricFamily(name, help_text, labels=["device"])
            for prop, (name, help_text) in _ATA_GAUGES.items()
        }
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            major, minor, device = fields[0], fields[1], fields[2]
            if self._dropped(device):
                continue
            device = label_safe(device)
            props = self._udev(major, minor)
            info.add_metric([device, major, minor, *(props.get(p, "") for p in _INFO_PROPS)], 1.0)
            # Kernels before 4.18 have 11 columns, before 5.5 15: families for missing columns stay empty.
            for fam, (_, _, unit, _), raw in zip(stats, _COLUMNS, fields[3:], strict=False):
                value = float(raw)
                if unit == "sectors":
                    value *= _SECTOR_BYTES
                elif unit == "ms":
                    value /= _MS
                fam.add_metric([device], value)
            if props.get("ID_FS_TYPE"):
                fs_info.add_metric([device, *(props.get(p, "") for p in _FS_PROPS)], 1.0)
            if props.get("DM_NAME"):
                dm_info.add_metric([device, *(props.get(p, "") for p in _DM_PROPS)], 1.0)
            if props.get("ID_ATA"):
                for prop, fam in ata.items():
                    try:
                        reported = float(props[prop])
                    except (KeyError, ValueError):
                        continue  # the disk does not report it
                    fam.add_metric([device], reported)
        return [f for f in (info, *stats, fs_info, dm_info, *ata.values()) if f.samples]

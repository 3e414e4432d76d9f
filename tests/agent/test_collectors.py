"""Host collectors on fixture /proc and /sys trees: exact names, types, labels and values.

The fixtures under `fixtures/` are real-format kernel files (mostly copied from a Linux 6.x host,
with a few devices and processes added to reach the edge cases: partitions, old kernels' shorter
/proc/diskstats lines, a counter running into the colon in /proc/net/dev, a process name with
blanks and parentheses).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Metric, generate_latest

from tests.waiting import returns, wait_until
from vigil.agent.collectors import (
    CPUCollector,
    DiskstatsCollector,
    FilefdCollector,
    FilesystemCollector,
    LoadavgCollector,
    MeminfoCollector,
    NetdevCollector,
    PressureCollector,
    ProcessesCollector,
    StatCollector,
    TimeCollector,
    UnameCollector,
    default_collectors,
    optional_collectors,
)
from vigil.agent.collectors import filesystem as filesystem_module
from vigil.agent.collectors.cpu import parse_cpulist
from vigil.agent.collectors.filesystem import unescape_mount_path
from vigil.agent.collectors.meminfo import metric_name
from vigil.model.collector import Collector, CollectorUnavailable
from vigil.model.textparse import parse_text

FIXTURES = Path(__file__).parent / "fixtures"
PROC = FIXTURES / "proc"
SYS = FIXTURES / "sys"

Key = frozenset[tuple[str, str]]


class Collected:
    """A collection flattened for assertions: sample name -> label set -> value, and types."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.values: dict[str, dict[Key, float]] = {}
        self.types: dict[str, str] = {}
        for fam in families:
            assert fam.samples, f"{fam.name}: empty families must not be emitted"
            for s in fam.samples:
                self.types[s.name] = fam.type
                series = self.values.setdefault(s.name, {})
                key = frozenset(s.labels.items())
                assert key not in series, f"duplicate series {s.name}{s.labels}"
                series[key] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.values[name][frozenset(labels.items())]

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return sorted((dict(k) for k in self.values[name]), key=lambda d: sorted(d.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(k)[label] for k in self.values[name]}


def collect(c: Collector) -> Collected:
    return Collected(c.collect())


def copy_proc(tmp_path: Path) -> Path:
    dst = tmp_path / "proc"
    shutil.copytree(PROC, dst)
    return dst


# --- cpu ------------------------------------------------------------------------------------------


def test_cpu_seconds_per_cpu_and_mode() -> None:
    got = collect(CPUCollector(PROC, SYS, user_hz=100))
    assert got.types["node_cpu_seconds_total"] == "counter"
    # The aggregate "cpu" line is not exposed; CPUs keep their kernel numbers.
    assert got.label_values("node_cpu_seconds_total", "cpu") == {"0", "1"}
    assert got.label_values("node_cpu_seconds_total", "mode") == {
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    }  # fmt: skip
    assert got.value("node_cpu_seconds_total", cpu="0", mode="user") == 1685.44
    assert got.value("node_cpu_seconds_total", cpu="0", mode="idle") == 2432.19
    assert got.value("node_cpu_seconds_total", cpu="1", mode="nice") == 0.05
    assert got.value("node_cpu_seconds_total", cpu="1", mode="steal") == 11.17
    assert got.value("node_cpu_guest_seconds_total", cpu="1", mode="user") == 0.25
    assert got.value("node_cpu_guest_seconds_total", cpu="1", mode="nice") == 0.03
    assert got.types["node_cpu_guest_seconds_total"] == "counter"
    assert len(got.values["node_cpu_seconds_total"]) == 16


def test_cpu_isolated_and_thermal_throttles() -> None:
    got = collect(CPUCollector(PROC, SYS, user_hz=100))
    assert got.values["node_cpu_isolated"] == {frozenset({("cpu", "1")}): 1.0}
    assert got.types["node_cpu_isolated"] == "gauge"
    assert got.value("node_cpu_core_throttles_total", package="0", core="0") == 3
    assert got.value("node_cpu_core_throttles_total", package="0", core="1") == 0
    # Both CPUs share package 0: one series.
    assert got.values["node_cpu_package_throttles_total"] == {frozenset({("package", "0")}): 7.0}
    assert got.types["node_cpu_package_throttles_total"] == "counter"


def test_cpu_without_sysfs_extras(tmp_path: Path) -> None:
    got = collect(CPUCollector(PROC, tmp_path, user_hz=100))
    assert set(got.values) == {"node_cpu_seconds_total", "node_cpu_guest_seconds_total"}


def test_cpu_counters_never_decrease_but_reset_after_hotplug(tmp_path: Path) -> None:
    proc = copy_proc(tmp_path)
    stat = proc / "stat"
    original = stat.read_text()
    c = CPUCollector(proc, tmp_path, user_hz=100)
    assert collect(c).value("node_cpu_seconds_total", cpu="0", mode="user") == 1685.44
    # user steps back by 0.44 s, idle by 1 s (accounting jitter): the previous values are held.
    stat.write_text(original.replace("cpu0 168544 0 17695 243219", "cpu0 168500 0 17695 243119"))
    got = collect(c)
    assert got.value("node_cpu_seconds_total", cpu="0", mode="user") == 1685.44
    assert got.value("node_cpu_seconds_total", cpu="0", mode="idle") == 2432.19
    # idle back by 10 s: the CPU went offline and came back; its counters start over.
    stat.write_text(original.replace("cpu0 168544 0 17695 243219", "cpu0 100 0 17695 242219"))
    got = collect(c)
    assert got.value("node_cpu_seconds_total", cpu="0", mode="user") == 1.0
    assert got.value("node_cpu_seconds_total", cpu="0", mode="idle") == 2422.19


def test_parse_cpulist() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("\n") == []


# --- stat -----------------------------------------------------------------------------------------


def test_stat() -> None:
    got = collect(StatCollector(PROC))
    assert got.values == {
        "node_intr_total": {frozenset(): 6179677.0},
        "node_context_switches_total": {frozenset(): 13397753.0},
        "node_boot_time_seconds": {frozenset(): 1795365770.0},
        "node_forks_total": {frozenset(): 35491.0},
        "node_procs_running": {frozenset(): 4.0},
        "node_procs_blocked": {frozenset(): 1.0},
    }
    assert got.types == {
        "node_intr_total": "counter",
        "node_context_switches_total": "counter",
        "node_boot_time_seconds": "gauge",
        "node_forks_total": "counter",
        "node_procs_running": "gauge",
        "node_procs_blocked": "gauge",
    }


def test_stat_softirqs_when_asked() -> None:
    got = collect(StatCollector(PROC, softirq=True))
    assert got.types["node_softirqs_total"] == "counter"
    assert got.value("node_softirqs_total", vector="timer") == 280112
    assert got.value("node_softirqs_total", vector="net_rx") == 751855
    assert got.value("node_softirqs_total", vector="rcu") == 386269
    assert len(got.values["node_softirqs_total"]) == 10


# --- meminfo --------------------------------------------------------------------------------------


def test_meminfo_every_field() -> None:
    got = collect(MeminfoCollector(PROC))
    lines = (PROC / "meminfo").read_text().splitlines()
    assert len(got.values) == len(lines)
    assert got.value("node_memory_MemTotal_bytes") == 24683656 * 1024
    assert got.value("node_memory_MemAvailable_bytes") == 24266460 * 1024
    assert got.value("node_memory_Active_anon_bytes") == 1536 * 1024
    assert got.value("node_memory_Inactive_file_bytes") == 164368 * 1024
    assert got.value("node_memory_HugePages_Total") == 0
    assert got.value("node_memory_Hugepagesize_bytes") == 2048 * 1024
    assert got.value("node_memory_VmallocTotal_bytes") == 34359738367 * 1024
    assert set(got.types.values()) == {"gauge"}
    assert "node_memory_HugePages_Total_bytes" not in got.values


def test_meminfo_names() -> None:
    assert metric_name("Active(anon)", True) == "node_memory_Active_anon_bytes"
    assert metric_name("Inactive(file)", True) == "node_memory_Inactive_file_bytes"
    assert metric_name("HugePages_Free", False) == "node_memory_HugePages_Free"


# --- diskstats ------------------------------------------------------------------------------------


def test_diskstats_devices_and_units() -> None:
    got = collect(DiskstatsCollector(PROC, udev_data=FIXTURES / "run/udev/data"))
    # Partitions, loop devices are excluded by default; whole disks and device mapper are kept.
    assert got.label_values("node_disk_reads_completed_total", "device") == {"sda", "sdb", "nvme0n1", "dm-0"}
    assert got.value("node_disk_reads_completed_total", device="sda") == 101614
    assert got.value("node_disk_reads_merged_total", device="sda") == 11557
    assert got.value("node_disk_read_bytes_total", device="sda") == 5557522 * 512
    assert got.value("node_disk_read_time_seconds_total", device="sda") == 51.976
    assert got.value("node_disk_writes_completed_total", device="sda") == 639528
    assert got.value("node_disk_writes_merged_total", device="sda") == 125536
    assert got.value("node_disk_written_bytes_total", device="sda") == 18789096 * 512
    assert got.value("node_disk_write_time_seconds_total", device="sda") == 141.241
    assert got.value("node_disk_io_now", device="sda") == 0
    assert got.value("node_disk_io_time_seconds_total", device="sda") == 82.584
    assert got.value("node_disk_io_time_weighted_seconds_total", device="sda") == 258.153
    assert got.value("node_disk_discards_completed_total", device="sda") == 126541
    assert got.value("node_disk_discards_merged_total", device="sda") == 77
    assert got.value("node_disk_discarded_sectors_total", device="sda") == 38498384  # raw sectors
    assert got.value("node_disk_discard_time_seconds_total", device="sda") == 23.833
    assert got.value("node_disk_flush_requests_total", device="sda") == 210266
    assert got.value("node_disk_flush_requests_time_seconds_total", device="sda") == 41.102
    assert got.value("node_disk_io_now", device="sdb") == 2
    assert got.types["node_disk_io_now"] == "gauge"
    assert {t for n, t in got.types.items() if n.endswith("_total")} == {"counter"}


def test_diskstats_shorter_lines_of_older_kernels() -> None:
    got = collect(DiskstatsCollector(PROC, udev_data=FIXTURES / "run/udev/data"))
    # sdb has 11 statistics (before 4.18): no discard or flush series; nvme0n1 has 15 (before 5.5).
    assert "sdb" not in got.label_values("node_disk_discards_completed_total", "device")
    assert "nvme0n1" in got.label_values("node_disk_discards_completed_total", "device")
    assert got.label_values("node_disk_flush_requests_total", "device") == {"sda", "dm-0"}


def test_diskstats_udev_properties() -> None:
    got = collect(DiskstatsCollector(PROC, udev_data=FIXTURES / "run/udev/data"))
    assert got.labelsets("node_disk_info")[2] == {
        "device": "sda", "major": "8", "minor": "0", "path": "pci-0000:00:17.0-ata-1",
        "wwn": "0x5002538e4010e8f7", "model": "Samsung_SSD_860_EVO_500GB", "serial": "S3Z2NB0K123456A",
        "revision": "RVT04B6Q",
    }  # fmt: skip
    # No udev entry for sdb: its identity labels are empty, as node_exporter leaves them.
    empty = dict.fromkeys(("path", "wwn", "model", "serial", "revision"), "")
    assert {"device": "sdb", "major": "8", "minor": "16", **empty} in got.labelsets("node_disk_info")
    uuid = "2f0b4a27-8d1c-4b4e-9a5e-6a1f4d1b0c3e"
    assert got.labelsets("node_disk_filesystem_info") == [
        {"device": "dm-0", "type": "ext4", "usage": "filesystem", "uuid": uuid, "version": "1.0"},
    ]
    dm = {"name": "vg0-root", "uuid": "LVM-q0Zb3Fj2wXk7", "vg_name": "vg0", "lv_name": "root", "lv_layer": ""}
    assert got.labelsets("node_disk_device_mapper_info") == [{"device": "dm-0", **dm}]
    assert got.values["node_disk_ata_write_cache"] == {frozenset({("device", "sda")}): 1.0}
    assert got.values["node_disk_ata_write_cache_enabled"] == {frozenset({("device", "sda")}): 1.0}
    assert got.values["node_disk_ata_rotation_rate_rpm"] == {frozenset({("device", "sda")}): 0.0}


def test_diskstats_without_udev_and_with_include(tmp_path: Path) -> None:
    got = collect(DiskstatsCollector(PROC, udev_data=tmp_path, device_exclude=None, device_include="^sd"))
    assert got.label_values("node_disk_info", "device") == {"sda", "sda1", "sdb"}
    assert "node_disk_filesystem_info" not in got.values
    assert {d["model"] for d in got.labelsets("node_disk_info")} == {""}
    with pytest.raises(ValueError):
        DiskstatsCollector(PROC, device_exclude="a", device_include="b")


# --- netdev ---------------------------------------------------------------------------------------


def test_netdev_all_columns() -> None:
    got = collect(NetdevCollector(PROC))
    assert got.label_values("node_network_receive_bytes_total", "device") == {"lo", "eth0", "docker0"}
    expected = {
        "receive_bytes": 320332837, "receive_packets": 10027, "receive_errs": 2, "receive_drop": 5,
        "receive_fifo": 1, "receive_frame": 3, "receive_compressed": 0, "receive_multicast": 17,
        "transmit_bytes": 577839, "transmit_packets": 5670, "transmit_errs": 4, "transmit_drop": 6,
        "transmit_fifo": 7, "transmit_colls": 8, "transmit_carrier": 9, "transmit_compressed": 10,
    }  # fmt: skip
    for stat, value in expected.items():
        assert got.value(f"node_network_{stat}_total", device="eth0") == value, stat
    assert len(got.values) == 16
    assert set(got.types.values()) == {"counter"}
    # The counter that runs into the colon.
    assert got.value("node_network_receive_bytes_total", device="docker0") == 12345678901
    assert got.value("node_network_transmit_packets_total", device="docker0") == 1


def test_netdev_exclude() -> None:
    got = collect(NetdevCollector(PROC, device_exclude="^lo$"))
    assert got.label_values("node_network_receive_bytes_total", "device") == {"eth0", "docker0"}
    got = collect(NetdevCollector(PROC, device_include="^eth"))
    assert got.label_values("node_network_receive_bytes_total", "device") == {"eth0"}


# --- loadavg, filefd, pressure, uname, time --------------------------------------------------------


def test_loadavg() -> None:
    got = collect(LoadavgCollector(PROC))
    assert got.values == {
        "node_load1": {frozenset(): 0.22},
        "node_load5": {frozenset(): 0.58},
        "node_load15": {frozenset(): 1.02},
    }
    assert set(got.types.values()) == {"gauge"}


def test_filefd() -> None:
    got = collect(FilefdCollector(PROC))
    assert got.values == {
        "node_filefd_allocated": {frozenset(): 169.0},
        "node_filefd_maximum": {frozenset(): 2466181.0},
    }
    assert set(got.types.values()) == {"gauge"}


def test_pressure() -> None:
    got = collect(PressureCollector(PROC))
    assert got.values == {
        "node_pressure_cpu_waiting_seconds_total": {frozenset(): 872.14377},
        "node_pressure_io_waiting_seconds_total": {frozenset(): 58.013141},
        "node_pressure_io_stalled_seconds_total": {frozenset(): 30.671497},
        "node_pressure_memory_waiting_seconds_total": {frozenset(): 0.0015},
        "node_pressure_memory_stalled_seconds_total": {frozenset(): 0.00025},
    }
    assert set(got.types.values()) == {"counter"}


def test_pressure_unavailable_without_psi(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable):
        list(PressureCollector(tmp_path).collect())


def test_uname() -> None:
    got = collect(UnameCollector(PROC, machine="x86_64"))
    assert got.types["node_uname_info"] == "gauge"
    assert got.values["node_uname_info"] == {
        frozenset({
            ("sysname", "Linux"), ("release", "6.1.0-18-amd64"),
            ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"), ("machine", "x86_64"),
            ("nodename", "web-01"), ("domainname", "(none)"),
        }): 1.0
    }  # fmt: skip


def test_uname_matches_this_host() -> None:
    u = os.uname()
    labels = collect(UnameCollector()).labelsets("node_uname_info")[0]
    fields = ("sysname", "release", "version", "machine", "nodename")
    assert [labels[f] for f in fields] == [getattr(u, f) for f in fields]


def test_time() -> None:
    now = 1795369844.0612867
    got = collect(TimeCollector(SYS, clock=lambda: now))
    assert got.value("node_time_seconds") == now
    local = time.localtime(now)
    assert got.value("node_time_zone_offset_seconds", time_zone=local.tm_zone) == local.tm_gmtoff
    assert got.labelsets("node_time_clocksource_available_info") == [
        {"clocksource": "acpi_pm", "device": "0"},
        {"clocksource": "hpet", "device": "0"},
        {"clocksource": "tsc", "device": "0"},
    ]
    assert got.labelsets("node_time_clocksource_current_info") == [{"clocksource": "tsc", "device": "0"}]
    assert set(got.types.values()) == {"gauge"}


# --- filesystem -----------------------------------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A root for the fixture mount table: mount points are directories on the test's file system."""
    root = tmp_path / "root"
    for d in ("boot/efi", "media/USB Stick", "run/lock", "var/lib/docker/volumes", "dev/shm"):
        (root / d).mkdir(parents=True)
    return root


def test_filesystem_mounts_exclusions_and_values(rootfs: Path) -> None:
    got = collect(FilesystemCollector(PROC, rootfs))
    assert {frozenset(d.items()) for d in got.labelsets("node_filesystem_device_error")} == {
        frozenset(d.items())
        for d in (
            {"device": "/dev/mapper/vg0-root", "fstype": "ext4", "mountpoint": "/"},
            {"device": "/dev/nonexistent", "fstype": "ext4", "mountpoint": "/gone"},
            # listed twice, exposed once
            {"device": "/dev/sda1", "fstype": "vfat", "mountpoint": "/boot/efi"},
            {"device": "/dev/sdb", "fstype": "vfat", "mountpoint": "/media/USB Stick"},  # \040 decoded
            {"device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run"},
            {"device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/run/lock"},
        )
    }
    root_labels = {"device": "/dev/mapper/vg0-root", "fstype": "ext4", "mountpoint": "/"}
    st = os.statvfs(rootfs)
    assert got.value("node_filesystem_size_bytes", **root_labels) == st.f_blocks * st.f_bsize
    assert got.value("node_filesystem_files", **root_labels) == st.f_files
    assert got.value("node_filesystem_device_error", **root_labels) == 0
    assert got.value("node_filesystem_readonly", **root_labels) == 0
    efi = {"device": "/dev/sda1", "fstype": "vfat", "mountpoint": "/boot/efi"}
    assert got.value("node_filesystem_readonly", **efi) == 1
    # A mount point that cannot be stat'ed: only device_error, set to 1.
    gone = {"device": "/dev/nonexistent", "fstype": "ext4", "mountpoint": "/gone"}
    assert got.value("node_filesystem_device_error", **gone) == 1
    assert frozenset(gone.items()) not in got.values["node_filesystem_size_bytes"]
    assert len(got.values["node_filesystem_size_bytes"]) == 5
    assert set(got.types.values()) == {"gauge"}
    assert set(got.values) == {
        "node_filesystem_size_bytes", "node_filesystem_free_bytes", "node_filesystem_avail_bytes",
        "node_filesystem_files", "node_filesystem_files_free", "node_filesystem_readonly",
        "node_filesystem_device_error",
    }  # fmt: skip


def test_filesystem_falls_back_to_proc_mounts(tmp_path: Path, rootfs: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mounts").write_text("/dev/vda / ext4 ro,relatime 0 0\n")
    got = collect(FilesystemCollector(proc, rootfs))
    assert got.values["node_filesystem_readonly"] == {
        frozenset({("device", "/dev/vda"), ("fstype", "ext4"), ("mountpoint", "/")}): 1.0
    }


def test_filesystem_strips_the_root_prefix(tmp_path: Path, rootfs: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (rootfs.parent / "rootless").mkdir()
    mounts = [f"/dev/vda {rootfs} ext4", f"/dev/vdb {rootfs}/run/lock xfs", f"/dev/vdc {rootfs}less xfs"]
    (proc / "mounts").write_text("".join(f"{m} rw 0 0\n" for m in mounts))
    got = collect(FilesystemCollector(proc, rootfs))
    assert got.label_values("node_filesystem_device_error", "mountpoint") == {
        "/",
        "/run/lock",
        f"{rootfs}less",
    }


def test_unescape_mount_path() -> None:
    assert unescape_mount_path(r"/media/a\040b\011c\134d\012e") == "/media/a b\tc\\d\ne"
    assert unescape_mount_path("/plain") == "/plain"


def test_filesystem_hung_network_mount_does_not_hang_collection(
    tmp_path: Path, rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mounts").write_text("/dev/vda / ext4 rw 0 0\nnas:/export /media nfs4 rw,vers=4.2 0 0\n")
    release = threading.Event()
    real_statvfs = os.statvfs

    media_calls = [0]

    def statvfs(path: str) -> os.statvfs_result:
        if path.endswith("media"):
            media_calls[0] += 1
            release.wait(120)  # a dead NFS server: longer than the hang guards below
        return real_statvfs(path)

    monkeypatch.setattr(filesystem_module.os, "statvfs", statvfs)
    c = FilesystemCollector(proc, rootfs, remote_timeout_s=0.05)
    nfs = {"device": "nas:/export", "fstype": "nfs4", "mountpoint": "/media"}
    try:
        got = returns(lambda: collect(c), what="a collection with a hung mount")
        assert got.value("node_filesystem_device_error", **nfs) == 1
        vda = {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}
        assert got.value("node_filesystem_device_error", **vda) == 0
        # Still stuck: skipped, without starting another call.
        got = returns(lambda: collect(c), what="a collection with a still hung mount")
        assert got.value("node_filesystem_device_error", **nfs) == 1
        assert media_calls[0] == 1
    finally:
        release.set()
    wait_until(lambda: collect(c).value("node_filesystem_device_error", **nfs) == 0, what="recovery")
    got = collect(c)
    assert got.value("node_filesystem_size_bytes", **nfs) > 0


# --- processes ------------------------------------------------------------------------------------


def test_processes() -> None:
    got = collect(ProcessesCollector(PROC))
    assert got.value("node_processes_pids") == 3
    assert got.value("node_processes_threads") == 5  # 1 + 3 + 1
    assert got.value("node_processes_max_processes") == 4194304
    assert got.value("node_processes_max_threads") == 191724
    assert got.values["node_processes_state"] == {
        frozenset({("state", "S")}): 1.0,
        frozenset({("state", "R")}): 1.0,
        frozenset({("state", "Z")}): 1.0,
    }
    assert got.values["node_processes_threads_state"] == {
        frozenset({("thread_state", "S")}): 2.0,
        frozenset({("thread_state", "R")}): 1.0,
        frozenset({("thread_state", "D")}): 1.0,
        frozenset({("thread_state", "Z")}): 1.0,
    }
    assert set(got.types.values()) == {"gauge"}


# --- the set --------------------------------------------------------------------------------------


def test_missing_sources_are_unavailable(tmp_path: Path) -> None:
    for c in default_collectors(proc=tmp_path, sys=tmp_path, root=tmp_path):
        if c.name in ("time", "filesystem"):
            continue  # time needs no file; filesystem without a mount table is an error (below)
        with pytest.raises(CollectorUnavailable):
            list(c.collect())
    with pytest.raises(FileNotFoundError):
        list(FilesystemCollector(tmp_path, tmp_path).collect())


def test_default_collectors_on_fixtures_render_and_parse(rootfs: Path) -> None:
    collectors = default_collectors(PROC, SYS, rootfs) + optional_collectors(PROC, SYS, rootfs)
    names = [c.name for c in collectors]
    assert len(names) == len(set(names))
    assert set(names) == {
        "cpu", "diskstats", "filefd", "filesystem", "loadavg", "meminfo", "netdev", "pressure", "stat",
        "time", "uname", "processes",
    }  # fmt: skip
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    parsed = parse_text(generate_latest(registry), 0)
    assert all(s.metric_name.startswith("node_") for s in parsed.series)
    assert parsed.metadata["node_cpu_seconds_total"][0] == "counter"
    assert parsed.metadata["node_memory_MemTotal_bytes"][0] == "gauge"


def test_default_collectors_on_this_host() -> None:
    for c in default_collectors():
        try:
            got = collect(c)
        except CollectorUnavailable:
            assert c.name == "pressure"  # the only source a Linux host may lack
            continue
        assert got.values, c.name
        assert all(name.startswith("node_") for name in got.values)

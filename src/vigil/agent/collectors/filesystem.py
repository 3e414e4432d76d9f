"""Space and inodes per mounted filesystem, as node_exporter's `filesystem` collector names them.

Families (all gauges, labels `device`, `fstype`, `mountpoint`): `node_filesystem_size_bytes`,
`node_filesystem_free_bytes`, `node_filesystem_avail_bytes`, `node_filesystem_files`,
`node_filesystem_files_free`, `node_filesystem_readonly`, `node_filesystem_device_error`.

Mounts come from /proc/1/mounts (the host's view, also when the agent runs in a container with the
host's PID namespace), falling back to /proc/mounts when PID 1 is hidden. Pseudo filesystems and the
mount points node_exporter 1.5 excludes by default are skipped. A network mount that does not answer
`statvfs` in time is reported with `device_error` 1 and skipped until the pending call returns, so a
dead NFS server cannot hang every collection.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_text
from vigil.model.labels import label_safe

# node_exporter 1.5's defaults (upstream; Debian's package patches the mount point one to also drop
# /run, /mnt and /media).
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    r"|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)

# File systems whose statvfs can block for as long as a remote server is gone: asked in a thread.
_REMOTE_FS_TYPES = re.compile(
    r"^(nfs4?|cifs|smb3?|smbfs|ceph|glusterfs|9p|afs|lustre|gpfs|beegfs|davfs|fuse(\..+)?)$"
)

# The octal escapes the kernel writes in /proc/*/mounts paths (space, tab, newline, backslash).
_MOUNT_ESCAPE = re.compile(r"\\(040|011|012|134)")

_LABELS = ["device", "fstype", "mountpoint"]


def unescape_mount_path(path: str) -> str:
    if "\\" not in path:
        return path
    return _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), path)


class FilesystemCollector:
    name = "filesystem"

    def __init__(
        self,
        proc: Path = Path("/proc"),
        root: Path = Path("/"),
        mount_points_exclude: str = DEFAULT_MOUNT_POINTS_EXCLUDE,
        fs_types_exclude: str = DEFAULT_FS_TYPES_EXCLUDE,
        remote_timeout_s: float = 1.0,
    ) -> None:
        self._mounts = (proc / "1/mounts", proc / "mounts")
        self._root = str(root)
        self._mount_points_exclude = re.compile(mount_points_exclude, re.ASCII)
        self._fs_types_exclude = re.compile(fs_types_exclude, re.ASCII)
        self._remote_timeout_s = remote_timeout_s
        self._stuck: set[str] = set()  # mount paths whose statvfs has not returned yet
        self._stuck_lock = threading.Lock()

    def _read_mounts(self) -> str:
        try:
            return read_text(self._mounts[0])
        except (FileNotFoundError, PermissionError):
            return read_text(self._mounts[1])

    def _label_mountpoint(self, mountpoint: str) -> str:
        # With the host's / mounted elsewhere (root="/host"), labels show the paths the host sees.
        # (Only whole path components are stripped: root "/host" leaves "/hostile" alone.)
        root = self._root.rstrip("/")
        if not root or (mountpoint != root and not mountpoint.startswith(root + "/")):
            return mountpoint
        return mountpoint[len(root) :] or "/"

    def collect(self) -> Iterable[Metric]:
        fams = {
            "size": GaugeMetricFamily(
                "node_filesystem_size_bytes", "Size of the filesystem in bytes.", labels=_LABELS
            ),
            "free": GaugeMetricFamily(
                "node_filesystem_free_bytes", "Free space in bytes, root's reserve included.", labels=_LABELS
            ),
            "avail": GaugeMetricFamily(
                "node_filesystem_avail_bytes",
                "Space in bytes available to unprivileged users.",
                labels=_LABELS,
            ),
            "files": GaugeMetricFamily("node_filesystem_files", "Inodes in the filesystem.", labels=_LABELS),
            "files_free": GaugeMetricFamily("node_filesystem_files_free", "Free inodes.", labels=_LABELS),
            "readonly": GaugeMetricFamily(
                "node_filesystem_readonly", "1 if mounted read-only.", labels=_LABELS
            ),
            "device_error": GaugeMetricFamily(
                "node_filesystem_device_error",
                "1 if the filesystem's statistics could not be read.",
                labels=_LABELS,
            ),
        }
        seen: set[tuple[str, str, str]] = set()
        for line in self._read_mounts().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            device, raw_mountpoint, fstype, options = parts[:4]
            mountpoint = self._label_mountpoint(unescape_mount_path(raw_mountpoint))
            if self._mount_points_exclude.search(mountpoint) or self._fs_types_exclude.search(fstype):
                continue
            key = (device, mountpoint, fstype)
            if key in seen:  # mounted twice at the same place (bind mounts, namespaces): expose once
                continue
            seen.add(key)
            labels = [label_safe(device), label_safe(fstype), label_safe(mountpoint)]
            st = self._statvfs(os.path.join(self._root, mountpoint.lstrip("/")), fstype)
            fams["device_error"].add_metric(labels, 0.0 if st is not None else 1.0)
            if st is None:
                continue
            # node_exporter multiplies by f_bsize (what Linux statfs counts blocks in), not f_frsize.
            fams["size"].add_metric(labels, float(st.f_blocks * st.f_bsize))
            fams["free"].add_metric(labels, float(st.f_bfree * st.f_bsize))
            fams["avail"].add_metric(labels, float(st.f_bavail * st.f_bsize))
            fams["files"].add_metric(labels, float(st.f_files))
            fams["files_free"].add_metric(labels, float(st.f_ffree))
            fams["readonly"].add_metric(labels, 1.0 if "ro" in options.split(",") else 0.0)
        return [f for f in fams.values() if f.samples]

    def _statvfs(self, path: str, fstype: str) -> os.statvfs_result | None:
        if not _REMOTE_FS_TYPES.match(fstype):
            try:
                return os.statvfs(path)
            except OSError:
                return None
        with self._stuck_lock:
            if path in self._stuck:
                return None
        result: list[os.statvfs_result | None] = [None]

        def call() -> None:
            try:
                result[0] = os.statvfs(path)
            except OSError:
                pass
            finally:
                with self._stuck_lock:
                    self._stuck.discard(path)

        worker = threading.Thread(target=call, name=f"statvfs {path}", daemon=True)
        with self._stuck_lock:
            self._stuck.add(path)
        worker.start()
        worker.join(self._remote_timeout_s)
        return None if worker.is_alive() else result[0]

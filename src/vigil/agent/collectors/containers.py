"""Per-container CPU, memory, block I/O and network usage under cAdvisor's metric names.

Containers are found by their cgroups, so no runtime API is needed to measure them: under the unified
(v2) hierarchy at /sys/fs/cgroup (`system.slice/docker-<id>.scope`, `docker/<id>`,
`kubepods.slice/.../cri-containerd-<id>.scope`, `libpod-<id>.scope`, ...) or, on v1 and hybrid hosts,
under the `cpuacct`, `memory`, `cpu` and `blkio` controller trees (`cpuacct/docker/<id>`, ...).

Families (cAdvisor's names and types), each with `container` (the runtime's name for it when known,
else the short id) and `id` (the 12-character short id):

- counters: `container_cpu_usage_seconds_total{cpu="total"}`, `container_cpu_user_seconds_total`,
  `container_cpu_system_seconds_total`, `container_cpu_cfs_throttled_seconds_total`,
  `container_fs_reads_bytes_total{device}`, `container_fs_writes_bytes_total{device}`,
  `container_network_receive_bytes_total{interface}`, `container_network_transmit_bytes_total{interface}`
- gauges: `container_memory_usage_bytes`, `container_memory_working_set_bytes` (usage less inactive
  file pages), `container_memory_rss`, `container_memory_cache`, `container_spec_memory_limit_bytes`,
  `container_start_time_seconds`

Names come from the Docker Engine API on its unix socket (`GET /containers/json`), cached for
`name_ttl` (60 s) and asked again sooner, at most every 5 s, only when a container appears that the
last lookup did not see; without a usable socket the containers are labelled by short id, with one debug log.
containerd names come from the OCI bundle each running container has under containerd's state directory
(`<state>/<namespace>/<id>/config.json`): Kubernetes' CRI annotations give the container name ("POD" for a
pod's sandbox) and nerdctl's give its name. Reading a file needs no gRPC client and the same access as the
socket. Containers no runtime names carry their short id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.collectors._fs import read_optional
from vigil.model.collector import CollectorUnavailable
from vigil.model.labels import label_safe

log = logging.getLogger(__name__)

# A cgroup directory that is one container: the runtimes' systemd scope names, or a bare 64-hex id
# (Docker and kubelet with the cgroupfs driver). `libpod-conmon-<id>.scope` (podman's monitor) and
# `crio-conmon-<id>.scope` do not match, as they should not.
_CONTAINER_DIR = re.compile(r"^(?:(?:docker|cri-containerd|crio|libpod)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$")
# How deep under the hierarchy root containers are looked for: kubepods with the systemd driver puts
# them 4 levels down (kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<scope>).
_MAX_DEPTH = 6
_SHORT_ID = 12
# memory.max "max" (v2 unlimited): cAdvisor reports the largest uint64 for it.
_UNLIMITED = float(2**64 - 1)
# Interfaces cAdvisor leaves out of a container's network figures.
_IGNORED_IFACES = ("lo",)
_DOCKER_TIMEOUT_S = 2.0
# After a name lookup misses (a container started since the last one), ask again no sooner than this.
_MISS_RETRY_S = 5.0


@dataclass(frozen=True)
class _Container:
    id: str  # full 64-hex id
    path: str  # cgroup path relative to the hierarchy (or v1 controller) root


@dataclass(frozen=True)
class _Runtime:
    name: str
    created: float | None  # unix seconds, when the runtime says


class ContainersCollector:
    name = "containers"

    def __init__(
        self,
        sys: Path = Path("/sys"),
        proc: Path = Path("/proc"),
        docker_socket: Path = Path("/var/run/docker.sock"),
        containerd_state: Path = Path("/run/containerd/io.containerd.runtime.v2.task"),
        name_ttl: float = 60.0,
        user_hz: int | None = None,
    ) -> None:
        self._cgroup = sys / "fs/cgroup"
        self._sys = sys
        self._proc = proc
        self._docker_socket = docker_socket
        self._containerd_state = containerd_state
        self._bundle_names: dict[str, _Runtime | None] = {}  # id -> name from its bundle (None: none)
        self._name_ttl = name_ttl
        self._hz = float(user_hz or os.sysconf("SC_CLK_TCK"))
        self._names: dict[str, _Runtime] = {}
        self._names_at = float("-inf")  # monotonic time of the last Docker lookup
        self._docker_state: str | None = None  # last logged outcome, so each change is logged once
        self._devices: dict[str, str] = {}  # "major:minor" -> device label, stable while the host runs
        self._host_netns: str | None = None
        self._client: httpx.Client | None = None
        self._unnamed: set[str] = set()

    # -- discovery ---------------------------------------------------------------------------------

    def _unified(self) -> bool:
        return (self._cgroup / "cgroup.controllers").exists()

    def _v1_controller(self, *names: str) -> Path | None:
        for name in names:
            path = self._cgroup / name
            if path.is_dir():
                return path
        return None

    @staticmethod
    def _find(root: Path) -> list[_Container]:
        """Container cgroups under root, not descending into a container's own sub-cgroups."""
        found: list[_Container] = []
        stack: list[tuple[str, str, int]] = [(str(root), "", 0)]
        while stack:
            path, rel, depth = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue  # removed while walking, or not readable
            for entry in entries:
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                sub = f"{rel}/{entry.name}" if rel else entry.name
                m = _CONTAINER_DIR.match(entry.name)
                if m:
                    found.append(_Container(m["id"], sub))
                elif depth + 1 < _MAX_DEPTH:
                    stack.append((entry.path, sub, depth + 1))
        found.sort(key=lambda c: c.path)
        return found

    # -- names -------------------------------------------------------------------------------------

    def _log_docker(self, state: str, message: str, *args: object) -> None:
        if state != self._docker_state:
            self._docker_state = state
            log.debug(message, *args)

    def _refresh_names(self) -> None:
        self._names_at = time.monotonic()
        if not os.access(self._docker_socket, os.R_OK | os.W_OK):
            self._log_docker(
                "absent", "no usable Docker socket at %s: containers labelled by id", self._docker_socket
            )
            self._names = {}
            return
        if self._client is None:
            # Made once and kept: building a transport sets up TLS state (~0.1 s of CPU) even over a unix
            # socket, and the connection is reused between lookups.
            transport = httpx.HTTPTransport(uds=str(self._docker_socket))
            self._client = httpx.Client(transport=transport, timeout=_DOCKER_TIMEOUT_S)
        try:
            resp = self._client.get("http://docker/containers/json")
            resp.raise_for_status()
            listing = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            self._log_docker(
                "error", "Docker API at %s failed (%s): containers labelled by id", self._docker_socket, exc
            )
            return  # keep the last names: a container's name does not change while it runs
        names: dict[str, _Runtime] = {}
        for item in listing if isinstance(listing, list) else ():
            cid, item_names = item.get("Id"), item.get("Names") or []
            if not isinstance(cid, str) or not item_names:
                continue
            created = item.get("Created")
            names[cid] = _Runtime(
                str(item_names[0]).lstrip("/"), float(created) if isinstance(created, int | float) else None
            )
        self._names = names
        self._log_docker("ok", "Docker API at %s: %d containers", self._docker_socket, len(names))

    def _resolve(self, containers: list[_Container]) -> dict[str, _Runtime]:
        age = time.monotonic() - self._names_at
        # Ids Docker did not know at the last lookup (podman, containerd) are not asked about again
        # before the TTL; a new id is, so a container started since gets its name within seconds.
        new = any(c.id not in self._names and c.id not in self._unnamed for c in containers)
        if age >= self._name_ttl or (new and age >= _MISS_RETRY_S):
            self._refresh_names()
            self._unnamed = {c.id for c in containers if c.id not in self._names}
        named = dict(self._names)
        for c in containers:
            if c.id not in named:
                runtime = self._bundle_name(c.id)
                if runtime is not None:
                    named[c.id] = runtime
        return named

    def _bundle_name(self, cid: str) -> _Runtime | None:
        """A containerd container's name from its OCI bundle annotations (read once per container)."""
        if cid in self._bundle_names:
            return self._bundle_names[cid]
        runtime = None
        for config in self._containerd_state.glob(f"*/{cid}/config.json"):
            try:
                annotations = json.loads(config.read_text()).get("annotations") or {}
            except (OSError, ValueError):
                continue  # unreadable or half-written: try again next time
            if annotations.get("io.kubernetes.cri.container-type") == "sandbox":
                name = "POD"  # the pod's pause container, named as kubelet and cAdvisor do
            else:
                name = (
                    annotations.get("io.kubernetes.cri.container-name")
                    or annotations.get("nerdctl/name")
                    or ""
                )
            runtime = _Runtime(name, None) if name else None
            self._bundle_names[cid] = runtime
            break
        return runtime

    # -- readers -----------------------------------------------------------------------------------

    @staticmethod
    def _keyed(path: Path) -> dict[str, int]:
        """A flat-keyed file (`key value` lines: cpu.stat, memory.stat, cpuacct.stat) as ints."""
        out: dict[str, int] = {}
        for line in (read_optional(path) or "").splitlines():
            key, _, value = line.partition(" ")
            try:
                out[key] = int(value)
            except ValueError:
                continue
        return out

    @staticmethod
    def _int(path: Path) -> int | None:
        text = read_optional(path)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def _device(self, majmin: str) -> str:
        """cAdvisor labels block I/O by device path: /dev/<name> from sysfs, else major:minor."""
        name = self._devices.get(majmin)
        if name is None:
            name = majmin
            for line in (read_optional(self._sys / "dev/block" / majmin / "uevent") or "").splitlines():
                if line.startswith("DEVNAME="):
                    name = "/dev/" + line[len("DEVNAME=") :]
                    break
            self._devices[majmin] = name
        return name

    def _network(self, procs_file: Path) -> dict[str, tuple[int, int]]:
        """(rx, tx) bytes per interface, from /proc/<pid>/net/dev of one process in the cgroup.

        Empty when the cgroup has no process, the files are unreadable, or the process shares the
        host's network namespace (its figures would be the host's, not the container's)."""
        pid = next(iter((read_optional(procs_file) or "").split()), None)
        if pid is None:
            return {}
        if self._host_netns is None:
            self._host_netns = _readlink(self._proc / "1/ns/net") or ""
        netns = _readlink(self._proc / pid / "ns/net")
        if netns and netns == self._host_netns:
            return {}
        out: dict[str, tuple[int, int]] = {}
        for line in (read_optional(self._proc / pid / "net/dev") or "").splitlines()[2:]:
            iface, _, counters = line.partition(":")
            iface = iface.strip()
            fields = counters.split()
            if iface in _IGNORED_IFACES or len(fields) < 9:
                continue
            out[iface] = (int(fields[0]), int(fields[8]))
        return out

    def _start_time(self, cgroup_dir: Path, runtime: _Runtime | None) -> float | None:
        if runtime is not None and runtime.created is not None:
            return runtime.created
        try:
            # A cgroup directory's ctime is its creation time: cgroupfs does not let it change after.
            return cgroup_dir.stat().st_ctime
        except OSError:
            return None

    # -- collection --------------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        if self._unified():
            containers = self._find(self._cgroup)
            stats = self._stats_v2
        else:
            root = self._v1_controller("cpuacct", "cpu,cpuacct", "memory")
            containers = self._find(root) if root is not None else []
            stats = self._stats_v1
        if not containers:
            raise CollectorUnavailable(f"no container cgroups under {self._cgroup}")
        names = self._resolve(containers)
        fams = _Families()
        for c in containers:
            runtime = names.get(c.id)
            short = c.id[:_SHORT_ID]
            labels = [label_safe(runtime.name) if runtime else short, short]
            stats(c, runtime, labels, fams)
        yield from fams.nonempty()

    def _stats_v2(self, c: _Container, runtime: _Runtime | None, labels: list[str], f: _Families) -> None:
        d = self._cgroup / c.path
        cpu = self._keyed(d / "cpu.stat")
        usage = self._int(d / "memory.current")
        if not cpu and usage is None:
            return  # the container went away between discovery and reading
        if "usage_usec" in cpu:
            f.cpu_usage.add_metric([*labels, "total"], cpu["usage_usec"] / 1e6)
        if "user_usec" in cpu:
            f.cpu_user.add_metric(labels, cpu["user_usec"] / 1e6)
        if "system_usec" in cpu:
            f.cpu_system.add_metric(labels, cpu["system_usec"] / 1e6)
        if "throttled_usec" in cpu:
            f.throttled.add_metric(labels, cpu["throttled_usec"] / 1e6)
        mem = self._keyed(d / "memory.stat")
        self._memory(f, labels, usage, mem.get("inactive_file"), mem.get("anon"), mem.get("file"))
        limit = read_optional(d / "memory.max")
        if limit == "max":
            f.mem_limit.add_metric(labels, _UNLIMITED)
        elif limit is not None and limit.isdigit():
            f.mem_limit.add_metric(labels, float(limit))
        for line in (read_optional(d / "io.stat") or "").splitlines():
            majmin, *pairs = line.split()
            kv = dict(p.partition("=")[::2] for p in pairs)
            device = self._device(majmin)
            if "rbytes" in kv:
                f.fs_reads.add_metric([*labels, device], float(kv["rbytes"]))
            if "wbytes" in kv:
                f.fs_writes.add_metric([*labels, device], float(kv["wbytes"]))
        self._common(d, runtime, labels, f)

    def _stats_v1(self, c: _Container, runtime: _Runtime | None, labels: list[str], f: _Families) -> None:
        cpuacct = self._v1_controller("cpuacct", "cpu,cpuacct")
        cpu_ctl = self._v1_controller("cpu", "cpu,cpuacct")
        memory = self._v1_controller("memory")
        blkio = self._v1_controller("blkio")
        total = self._int(cpuacct / c.path / "cpuacct.usage") if cpuacct else None
        usage = self._int(memory / c.path / "memory.usage_in_bytes") if memory else None
        if total is None and usage is None:
            return
        if total is not None:
            f.cpu_usage.add_metric([*labels, "total"], total / 1e9)
        if cpuacct:
            ticks = self._keyed(cpuacct / c.path / "cpuacct.stat")  # USER_HZ ticks
            if "user" in ticks:
                f.cpu_user.add_metric(labels, ticks["user"] / self._hz)
            if "system" in ticks:
                f.cpu_system.add_metric(labels, ticks["system"] / self._hz)
        if cpu_ctl:
            throttled = self._keyed(cpu_ctl / c.path / "cpu.stat").get("throttled_time")  # ns
            if throttled is not None:
                f.throttled.add_metric(labels, throttled / 1e9)
        if memory:
            mem = self._keyed(memory / c.path / "memory.stat")
            self._memory(
                f, labels, usage, mem.get("total_inactive_file"), mem.get("total_rss"), mem.get("total_cache")
            )
            limit = self._int(memory / c.path / "memory.limit_in_bytes")
            if limit is not None:
                f.mem_limit.add_metric(labels, float(limit))
        if blkio:
            for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
                text = read_optional(blkio / c.path / name)
                if text:
                    break
            for line in (text or "").splitlines():
                fields = line.split()
                if len(fields) != 3:
                    continue  # the trailing "Total <n>" line
                majmin, op, value = fields
                if op == "Read":
                    f.fs_reads.add_metric([*labels, self._device(majmin)], float(value))
                elif op == "Write":
                    f.fs_writes.add_metric([*labels, self._device(majmin)], float(value))
        self._common((cpuacct or memory or self._cgroup) / c.path, runtime, labels, f)

    @staticmethod
    def _memory(
        f: _Families,
        labels: list[str],
        usage: int | None,
        inactive_file: int | None,
        rss: int | None,
        cache: int | None,
    ) -> None:
        if usage is not None:
            f.mem_usage.add_metric(labels, float(usage))
            # cAdvisor's working set: what the kernel could not reclaim without swapping.
            f.working_set.add_metric(labels, float(max(usage - (inactive_file or 0), 0)))
        if rss is not None:
            f.mem_rss.add_metric(labels, float(rss))
        if cache is not None:
            f.mem_cache.add_metric(labels, float(cache))

    def _common(self, d: Path, runtime: _Runtime | None, labels: list[str], f: _Families) -> None:
        for iface, (rx, tx) in sorted(self._network(d / "cgroup.procs").items()):
            f.net_rx.add_metric([*labels, label_safe(iface)], float(rx))
            f.net_tx.add_metric([*labels, label_safe(iface)], float(tx))
        start = self._start_time(d, runtime)
        if start is not None:
            f.start_time.add_metric(labels, start)


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class _Families:
    """The families of one collection, filled container by container."""

    def __init__(self) -> None:
        base = ["container", "id"]

        def counter(name: str, doc: str, *extra: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=[*base, *extra])

        def gauge(name: str, doc: str, *extra: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*base, *extra])

        self.cpu_usage = counter("container_cpu_usage_seconds_total", "Cumulative CPU time consumed.", "cpu")
        self.cpu_user = counter("container_cpu_user_seconds_total", "Cumulative user CPU time consumed.")
        self.cpu_system = counter(
            "container_cpu_system_seconds_total", "Cumulative system CPU time consumed."
        )
        self.throttled = counter(
            "container_cpu_cfs_throttled_seconds_total", "Total time the container was CFS-throttled."
        )
        self.mem_usage = gauge(
            "container_memory_usage_bytes", "Current memory usage, including all memory regardless of use."
        )
        self.working_set = gauge(
            "container_memory_working_set_bytes", "Current working set: usage less inactive file pages."
        )
        self.mem_rss = gauge("container_memory_rss", "Size of anonymous memory (RSS) in bytes.")
        self.mem_cache = gauge("container_memory_cache", "Page cache memory in bytes.")
        self.mem_limit = gauge("container_spec_memory_limit_bytes", "Memory limit of the container.")
        self.fs_reads = counter(
            "container_fs_reads_bytes_total", "Cumulative bytes read from block devices.", "device"
        )
        self.fs_writes = counter(
            "container_fs_writes_bytes_total", "Cumulative bytes written to block devices.", "device"
        )
        self.net_rx = counter(
            "container_network_receive_bytes_total", "Cumulative bytes received.", "interface"
        )
        self.net_tx = counter(
            "container_network_transmit_bytes_total", "Cumulative bytes transmitted.", "interface"
        )
        self.start_time = gauge("container_start_time_seconds", "Start time of the container since epoch.")

    def nonempty(self) -> Iterator[Metric]:
        for fam in vars(self).values():
            if fam.samples:
                yield fam

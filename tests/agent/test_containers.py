"""The containers collector on fixture cgroup trees: exact names, types, labels and values.

`fixtures/cgroup/v2` is a unified hierarchy with a Docker container (systemd driver), a podman container
next to its conmon scope (which is not a container), a containerd container under kubepods and a plain
service; `fixtures/cgroup/v1` has a Docker container under the cpuacct, cpu, memory and blkio
controllers. The files are in the kernel's formats. dockerd cannot run here, so a small HTTP server on a
unix socket in a temporary directory stands in for it, answering `GET /containers/json`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Metric, generate_latest

from vigil.agent.collectors.containers import ContainersCollector
from vigil.model.collector import CollectorUnavailable

FIXTURES = Path(__file__).parent / "fixtures/cgroup"
V2 = FIXTURES / "v2"
V1 = FIXTURES / "v1"

A = "3f4e8a1b2c9d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"  # docker, v2
B = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"  # podman, v2
C = "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc"  # containerd, v2
D = "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2"  # docker, v1

Key = frozenset[tuple[str, str]]


def key(**labels: str) -> Key:
    return frozenset(labels.items())


class Collected:
    """A collection flattened for assertions: sample name -> label set -> value, and family types."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.values: dict[str, dict[Key, float]] = {}
        self.types: dict[str, str] = {}
        for fam in families:
            assert fam.samples, f"{fam.name}: empty families must not be emitted"
            self.types[fam.name] = fam.type
            for s in fam.samples:
                series = self.values.setdefault(s.name, {})
                k = frozenset(s.labels.items())
                assert k not in series, f"duplicate series {s.name}{s.labels}"
                series[k] = s.value

    def of(self, name: str, **labels: str) -> float:
        return self.values[name][key(**labels)]


class FakeDocker:
    """Stands in for dockerd's Engine API on a unix socket: answers GET /containers/json."""

    def __init__(self, socket_path: Path, listing: list[dict[str, object]], status: int = 200) -> None:
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                body = json.dumps(listing if self.path.startswith("/containers/json") else {}).encode()
                self.send_response(status if self.path.startswith("/containers/json") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the base class formats client_address, which a unix socket does not have

        self.server = socketserver.UnixStreamServer(str(socket_path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # A short directory: unix socket paths are limited to ~107 bytes and pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="vigil-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


DOCKER_LISTING: list[dict[str, object]] = [
    {"Id": A, "Names": ["/web"], "Image": "nginx:1.25", "Created": 1700000000, "State": "running"},
    {"Id": "f" * 64, "Names": ["/elsewhere"], "Created": 1700000001, "State": "running"},
]


@pytest.fixture
def docker(sockdir: Path) -> Iterator[FakeDocker]:
    fake = FakeDocker(sockdir / "docker.sock", DOCKER_LISTING)
    yield fake
    fake.close()


def v2_collector(sockdir: Path, **kw: object) -> ContainersCollector:
    return ContainersCollector(sys=V2 / "sys", proc=V2 / "proc", docker_socket=sockdir / "docker.sock", **kw)


def ctime(path: Path) -> float:
    return path.stat().st_ctime


V2_A = V2 / f"sys/fs/cgroup/system.slice/docker-{A}.scope"
V2_B = V2 / f"sys/fs/cgroup/machine.slice/libpod-{B}.scope"
V2_C = next((V2 / "sys/fs/cgroup/kubepods.slice").rglob(f"cri-containerd-{C}.scope"))


def test_v2_values_and_labels_with_docker_names(docker: FakeDocker, sockdir: Path) -> None:
    got = Collected(v2_collector(sockdir).collect())
    web = {"container": "web", "id": A[:12]}
    pod = {"container": B[:12], "id": B[:12]}
    cri = {"container": C[:12], "id": C[:12]}
    approx = pytest.approx

    assert got.values["container_cpu_usage_seconds_total"] == {
        key(**web, cpu="total"): approx(12.345678),
        key(**pod, cpu="total"): approx(2.0),
        key(**cri, cpu="total"): approx(0.9),
    }
    assert got.values["container_cpu_user_seconds_total"] == {
        key(**web): approx(10.0),
        key(**pod): approx(1.5),
        key(**cri): approx(0.6),
    }
    assert got.values["container_cpu_system_seconds_total"] == {
        key(**web): approx(2.345678),
        key(**pod): approx(0.5),
        key(**cri): approx(0.3),
    }
    assert got.values["container_cpu_cfs_throttled_seconds_total"] == {
        key(**web): approx(0.345678),
        key(**pod): 0.0,
        key(**cri): 0.0,
    }
    assert got.values["container_memory_usage_bytes"] == {
        key(**web): 52428800.0,
        key(**pod): 1048576.0,
        key(**cri): 8388608.0,
    }
    # usage - inactive_file; the containerd fixture's inactive_file exceeds usage, which clamps to 0.
    assert got.values["container_memory_working_set_bytes"] == {
        key(**web): 48234496.0,
        key(**pod): 786432.0,
        key(**cri): 0.0,
    }
    assert got.values["container_memory_rss"] == {
        key(**web): 31457280.0,
        key(**pod): 524288.0,
        key(**cri): 6291456.0,
    }
    assert got.values["container_memory_cache"] == {
        key(**web): 16777216.0,
        key(**pod): 262144.0,
        key(**cri): 2097152.0,
    }
    assert got.values["container_spec_memory_limit_bytes"] == {
        key(**web): 268435456.0,
        key(**pod): float(2**64 - 1),
        key(**cri): 134217728.0,
    }
    # 8:0 has a sysfs entry naming it sda; 259:0 does not, so it keeps its numbers.
    assert got.values["container_fs_reads_bytes_total"] == {
        key(**web, device="/dev/sda"): 1048576.0,
        key(**web, device="259:0"): 4096.0,
    }
    assert got.values["container_fs_writes_bytes_total"] == {
        key(**web, device="/dev/sda"): 2097152.0,
        key(**web, device="259:0"): 0.0,
    }
    # Only the docker container has a process with a readable /proc/<pid>/net/dev; lo is left out.
    assert got.values["container_network_receive_bytes_total"] == {key(**web, interface="eth0"): 7340032.0}
    assert got.values["container_network_transmit_bytes_total"] == {key(**web, interface="eth0"): 1468006.0}
    # Docker's Created when Docker knows the container, else the cgroup directory's creation time.
    assert got.values["container_start_time_seconds"] == {
        key(**web): 1700000000.0,
        key(**pod): ctime(V2_B),
        key(**cri): ctime(V2_C),
    }
    assert docker.requests == ["/containers/json"]


def test_types_match_cadvisor(docker: FakeDocker, sockdir: Path) -> None:
    got = Collected(v2_collector(sockdir).collect())
    counters = {
        "container_cpu_usage_seconds_total",
        "container_cpu_user_seconds_total",
        "container_cpu_system_seconds_total",
        "container_cpu_cfs_throttled_seconds_total",
        "container_fs_reads_bytes_total",
        "container_fs_writes_bytes_total",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    }
    gauges = {
        "container_memory_usage_bytes",
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_memory_cache",
        "container_spec_memory_limit_bytes",
        "container_start_time_seconds",
    }
    # prometheus_client names counter families without the _total suffix.
    expected = {n.removesuffix("_total"): "counter" for n in counters} | dict.fromkeys(gauges, "gauge")
    assert got.types == expected
    registry = CollectorRegistry()
    registry.register(v2_collector(sockdir))
    text = generate_latest(registry).decode()
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    assert "# TYPE container_memory_rss gauge" in text
    assert f'container_memory_rss{{container="web",id="{A[:12]}"}} 3.145728e+07' in text


def test_v2_without_docker_socket_labels_by_short_id(sockdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vigil.agent.collectors.containers")
    collector = v2_collector(sockdir, name_ttl=0.0)  # no socket in sockdir
    for _ in range(3):
        got = Collected(collector.collect())
    assert set(got.values["container_memory_usage_bytes"]) == {
        key(container=c[:12], id=c[:12]) for c in (A, B, C)
    }
    assert got.of("container_start_time_seconds", container=A[:12], id=A[:12]) == ctime(V2_A)
    assert len(caplog.records) == 1  # one debug line, not one per scrape
    assert caplog.records[0].levelno == logging.DEBUG


def test_docker_api_error_keeps_ids_and_logs_once(sockdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="vigil.agent.collectors.containers")
    fake = FakeDocker(sockdir / "docker.sock", [], status=500)
    try:
        collector = v2_collector(sockdir, name_ttl=0.0)
        for _ in range(3):
            got = Collected(collector.collect())
    finally:
        fake.close()
    assert key(container=A[:12], id=A[:12]) in got.values["container_memory_usage_bytes"]
    assert len(fake.requests) == 3
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_stale_socket_file_is_not_an_error(sockdir: Path) -> None:
    # A socket file left by a dockerd that is gone: connecting is refused.
    fake = FakeDocker(sockdir / "docker.sock", DOCKER_LISTING)
    fake.close()
    assert (sockdir / "docker.sock").exists()
    got = Collected(v2_collector(sockdir).collect())
    assert key(container=A[:12], id=A[:12]) in got.values["container_memory_usage_bytes"]


def test_names_are_cached(sockdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vigil.agent.collectors import containers

    now = [1000.0]
    monkeypatch.setattr(containers.time, "monotonic", lambda: now[0])
    sys = tmp_path / "sys"
    shutil.copytree(V2 / "sys", sys)
    listing: list[dict[str, object]] = list(DOCKER_LISTING)
    fake = FakeDocker(sockdir / "docker.sock", listing)
    try:
        collector = ContainersCollector(sys=sys, proc=V2 / "proc", docker_socket=sockdir / "docker.sock")
        list(collector.collect())
        now[0] += 30  # B and C, which Docker does not know, do not make it ask again before the TTL
        list(collector.collect())
        assert len(fake.requests) == 1
        # A container started since the last lookup: Docker is asked again, but not more than every 5 s.
        new_id = "e" * 64
        (sys / f"fs/cgroup/system.slice/docker-{new_id}.scope").mkdir()
        (sys / f"fs/cgroup/system.slice/docker-{new_id}.scope/memory.current").write_text("4096\n")
        listing.append({"Id": new_id, "Names": ["/late"], "Created": 1700000100})
        got = Collected(collector.collect())
        assert len(fake.requests) == 2
        assert got.of("container_memory_usage_bytes", container="late", id=new_id[:12]) == 4096.0
        now[0] += 1
        list(collector.collect())
        assert len(fake.requests) == 2
        now[0] += 59  # the TTL ran out
        list(collector.collect())
        assert len(fake.requests) == 3
    finally:
        fake.close()


def test_v1_values_and_labels(sockdir: Path) -> None:
    collector = ContainersCollector(
        sys=V1 / "sys", proc=V1 / "proc", docker_socket=sockdir / "docker.sock", user_hz=100
    )
    got = Collected(collector.collect())
    lab = {"container": D[:12], "id": D[:12]}
    approx = pytest.approx
    assert got.values["container_cpu_usage_seconds_total"] == {key(**lab, cpu="total"): approx(45.678901234)}
    assert got.values["container_cpu_user_seconds_total"] == {key(**lab): 30.0}
    assert got.values["container_cpu_system_seconds_total"] == {key(**lab): 12.0}
    assert got.values["container_cpu_cfs_throttled_seconds_total"] == {key(**lab): 2.5}
    assert got.values["container_memory_usage_bytes"] == {key(**lab): 104857600.0}
    assert got.values["container_memory_working_set_bytes"] == {key(**lab): 96468992.0}
    assert got.values["container_memory_rss"] == {key(**lab): 62914560.0}
    assert got.values["container_memory_cache"] == {key(**lab): 20971520.0}
    # v1's "unlimited" is the kernel's page-rounded LONG_MAX, reported as read.
    assert got.values["container_spec_memory_limit_bytes"] == {key(**lab): 9223372036854771712.0}
    assert got.values["container_fs_reads_bytes_total"] == {key(**lab, device="/dev/sdb"): 3145728.0}
    assert got.values["container_fs_writes_bytes_total"] == {key(**lab, device="/dev/sdb"): 1048576.0}
    assert got.values["container_network_receive_bytes_total"] == {key(**lab, interface="eth1"): 7340032.0}
    assert got.values["container_network_transmit_bytes_total"] == {key(**lab, interface="eth1"): 1468006.0}
    assert got.values["container_start_time_seconds"] == {
        key(**lab): ctime(V1 / f"sys/fs/cgroup/cpuacct/docker/{D}")
    }


def test_v1_with_docker_names(sockdir: Path) -> None:
    fake = FakeDocker(sockdir / "docker.sock", [{"Id": D, "Names": ["/db"], "Created": 1690000000}])
    try:
        collector = ContainersCollector(
            sys=V1 / "sys", proc=V1 / "proc", docker_socket=sockdir / "docker.sock"
        )
        got = Collected(collector.collect())
    finally:
        fake.close()
    assert got.values["container_start_time_seconds"] == {key(container="db", id=D[:12]): 1690000000.0}


def test_host_network_namespace_is_skipped(tmp_path: Path, sockdir: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(V2 / "proc", proc)
    for pid in ("1", "4242"):
        (proc / pid / "ns").mkdir(parents=True)
        os.symlink("net:[4026531840]", proc / pid / "ns/net")
    got = Collected(ContainersCollector(sys=V2 / "sys", proc=proc, docker_socket=sockdir / "x").collect())
    assert "container_network_receive_bytes_total" not in got.values
    assert "container_memory_usage_bytes" in got.values


def test_no_runtime_is_unavailable(tmp_path: Path, sockdir: Path) -> None:
    # No cgroup filesystem at all.
    with pytest.raises(CollectorUnavailable):
        list(ContainersCollector(sys=tmp_path / "sys", proc=tmp_path, docker_socket=sockdir / "x").collect())
    # A v2 hierarchy with services only.
    root = tmp_path / "v2/fs/cgroup"
    (root / "system.slice/sshd.service").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    with pytest.raises(CollectorUnavailable):
        list(ContainersCollector(sys=tmp_path / "v2", proc=tmp_path, docker_socket=sockdir / "x").collect())
    # A v1 hierarchy with the controllers but no containers.
    for ctl in ("cpuacct", "memory", "blkio"):
        (tmp_path / "v1/fs/cgroup" / ctl / "user.slice").mkdir(parents=True)
    with pytest.raises(CollectorUnavailable):
        list(ContainersCollector(sys=tmp_path / "v1", proc=tmp_path, docker_socket=sockdir / "x").collect())


def test_container_vanishing_mid_scrape(tmp_path: Path, sockdir: Path) -> None:
    sys = tmp_path / "sys"
    shutil.copytree(V2 / "sys", sys)
    collector = ContainersCollector(sys=sys, proc=V2 / "proc", docker_socket=sockdir / "x")
    # Empty the directory (as the kernel does on removal) between discovery and reading.
    for f in (sys / f"fs/cgroup/system.slice/docker-{A}.scope").iterdir():
        f.unlink()
    got = Collected(collector.collect())
    assert key(container=A[:12], id=A[:12]) not in got.values["container_memory_usage_bytes"]
    assert len(got.values["container_memory_usage_bytes"]) == 2


def test_this_host() -> None:
    """On the real /sys: containers if there are any, else CollectorUnavailable; never another error."""
    try:
        got = Collected(ContainersCollector().collect())
    except CollectorUnavailable:
        return
    assert got.values["container_cpu_usage_seconds_total"]


def test_containerd_names_from_bundle_annotations(tmp_path: Path, sockdir: Path) -> None:
    # containerd's state directory as it is on a Kubernetes node: one bundle per running container.
    bundle = tmp_path / "k8s.io" / C
    bundle.mkdir(parents=True)
    bundle.joinpath("config.json").write_text(
        json.dumps(
            {
                "annotations": {
                    "io.kubernetes.cri.container-type": "container",
                    "io.kubernetes.cri.container-name": "checkout",
                    "io.kubernetes.cri.sandbox-name": "shop-7d9c",
                    "io.kubernetes.cri.sandbox-namespace": "prod",
                }
            }
        )
    )
    got = Collected(v2_collector(sockdir, containerd_state=tmp_path).collect())
    names = {dict(k).get("container") for k in got.values["container_cpu_usage_seconds_total"]}
    assert "checkout" in names and C[:12] not in names
    assert B[:12] in names  # podman's container, unknown to containerd, keeps its id

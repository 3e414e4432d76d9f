"""Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}, attributed to processes, checked against a baseline.

A listener is a TCP socket in state LISTEN (0A) or a UDP socket bound to a local port with no remote
peer (remote address all zeros, port 0). Socket inodes are mapped to processes by reading the
/proc/<pid>/fd symlinks ("socket:[<inode>]"); that is best effort: processes that exit mid-scan or
whose fd directory cannot be read are skipped, and their listeners get an empty process name.

Baseline syntax, one entry per expected listener (tcp6/udp6 sockets count as "tcp"/"udp")::

    tcp/22                 TCP port 22 on any address
    tcp/127.0.0.1:9400     TCP port 9400 on 127.0.0.1 only
    tcp/[::1]:9400         IPv6 addresses go in brackets
    udp/*                  any UDP listener
    */53                   port 53 over either protocol
    tcp/*:*  tcp/0.0.0.0:*  "*" also works for the address or the port alone

With `learn=True` the listeners seen on the first collection are added to the baseline as exact
`proto/addr:port` entries; with a `state_file` they are persisted there (JSON), so a restart reuses
them instead of learning again — otherwise whatever appeared while the agent was down would be
learned as expected.

Families: `vigil_listening_ports{protocol,port,process}` (gauge, 1 per distinct label set, capped at
`MAX_SERIES` series) and `vigil_listening_ports_unexpected` (gauge, listeners not in the baseline).
`new_listeners()` returns listeners that appeared since the previous collection, for events; the
first collection has no previous one, so it reports none.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collector import CollectorUnavailable
from vigil.agent.collectors._fs import label_safe
from vigil.model.event import Event

MAX_SERIES = 1000  # ports are bounded in practice; this keeps a pathological host from blowing up cardinality

_TCP_LISTEN = "0A"
_SOURCES = (
    ("tcp", "tcp", socket.AF_INET),
    ("tcp6", "tcp", socket.AF_INET6),
    ("udp", "udp", socket.AF_INET),
    ("udp6", "udp", socket.AF_INET6),
)


@dataclass(frozen=True, order=True)
class Listener:
    protocol: str  # "tcp" or "udp" (IPv6 sockets included)
    address: str  # "0.0.0.0", "127.0.0.1", "::", "::1", ...
    port: int
    process: str = ""  # comm of the owning process(es), comma-joined if several share it; "" if unknown

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity for "is this new": the process is left out, since its resolution is best effort."""
        return (self.protocol, self.address, self.port)

    @property
    def spec(self) -> str:
        """The exact baseline entry for this listener."""
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol}/{addr}:{self.port}"


@dataclass(frozen=True)
class _Pattern:
    protocol: str  # "*" for any
    address: str  # "*" for any
    port: str  # "*" for any, else decimal

    def matches(self, listener: Listener) -> bool:
        return (
            self.protocol in ("*", listener.protocol)
            and self.address in ("*", listener.address)
            and self.port in ("*", str(listener.port))
        )


def parse_baseline_entry(entry: str) -> _Pattern:
    """Parse one baseline entry (syntax in the module docstring); ValueError when malformed."""
    proto, sep, rest = entry.strip().partition("/")
    proto = proto.lower()
    if not sep or proto not in ("tcp", "udp", "*") or not rest:
        raise ValueError(f"bad listening-port baseline entry {entry!r}: want proto/port or proto/addr:port")
    if rest == "*":
        return _Pattern(proto, "*", "*")
    if rest.startswith("["):  # [v6addr]:port
        addr, close, port = rest[1:].partition("]")
        if not close or not port.startswith(":"):
            raise ValueError(f"bad listening-port baseline entry {entry!r}")
        port = port[1:]
    elif ":" in rest:
        addr, _, port = rest.rpartition(":")
    else:
        addr, port = "*", rest
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port in listening-port baseline entry {entry!r}")
    if addr != "*":
        try:  # normalise so "::0001" matches the kernel's "::1"
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            addr = socket.inet_ntop(family, socket.inet_pton(family, addr))
        except OSError as exc:
            raise ValueError(f"bad address in listening-port baseline entry {entry!r}") from exc
    return _Pattern(proto, addr, port if port == "*" else str(int(port)))


def _decode_address(hex_addr: str, family: int) -> str:
    # The kernel prints each 32-bit word of the address in host byte order.
    raw = bytes.fromhex(hex_addr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


def parse_net_file(text: str, protocol: str, family: int) -> list[tuple[str, int, int]]:
    """Listening (address, port, inode) triples from the text of one /proc/net/{tcp,udp}[6] file."""
    out: list[tuple[str, int, int]] = []
    for line in text.splitlines()[1:]:  # first line is the header
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        laddr, _, lport = local.partition(":")
        raddr, _, rport = remote.partition(":")
        if protocol == "tcp":
            if state != _TCP_LISTEN:
                continue
        elif int(rport, 16) != 0 or int(raddr, 16) != 0:  # connected UDP socket: not a listener
            continue
        port = int(lport, 16)
        if port == 0:
            continue
        out.append((_decode_address(laddr, family), port, int(inode)))
    return out


def _socket_owners(proc: Path, inodes: set[int]) -> dict[int, set[str]]:
    """inode -> process names, from /proc/<pid>/fd symlinks; unreadable or vanished pids are skipped."""
    owners: dict[int, set[str]] = {}
    if not inodes:
        return owners
    try:
        pids = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return owners
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # exited, or not ours to read without CAP_SYS_PTRACE
            continue
        found: list[int] = []
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                inode = int(target[8:-1])
                if inode in inodes:
                    found.append(inode)
        if not found:
            continue
        try:
            with open(f"{proc}/{pid}/comm", "rb") as f:
                name = label_safe(f.read().decode("utf-8", "surrogateescape").strip())
        except OSError:
            name = ""
        for inode in found:
            owners.setdefault(inode, set()).add(name)
    return owners


class ListeningPortsCollector:
    name = "listening_ports"

    def __init__(
        self,
        proc: Path = Path("/proc"),
        baseline: Iterable[str] = (),
        learn: bool = True,
        state_file: Path | None = None,
        interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._interval_s = interval_s
        self._clock = clock
        self._read_at: float | None = None
        self._patterns = [parse_baseline_entry(e) for e in baseline]
        self._learn = learn
        self._state_file = state_file
        self._learned: set[str] | None = None  # exact specs; None until learned or loaded
        if learn and state_file is not None:
            self._learned = self._load_state(state_file)
        self._learned_patterns = [parse_baseline_entry(s) for s in sorted(self._learned or ())]
        self._previous: set[tuple[str, str, int]] | None = None
        self._owner_cache: dict[int, set[str]] = {}
        self._new: list[Listener] = []
        self._current: list[Listener] = []
        self._unexpected: list[Listener] = []

    @staticmethod
    def _load_state(path: Path) -> set[str] | None:
        try:
            data = json.loads(path.read_text())
            learned = {str(s) for s in data["learned"]}
            for s in learned:
                parse_baseline_entry(s)
            return learned
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable listening-ports state file {path}: {exc}") from exc

    def _save_state(self, path: Path, learned: set[str]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "learned": sorted(learned)}, indent=1) + "\n")
        os.replace(tmp, path)  # atomic, so a crash never leaves half a baseline

    def listeners(self) -> list[Listener]:
        """Read the listeners now, without touching the collector's state."""
        found: dict[tuple[str, str, int], int] = {}
        inode_of: list[tuple[tuple[str, str, int], int]] = []
        present = 0
        for fname, protocol, family in _SOURCES:
            try:
                with open(self._proc / "net" / fname, "rb") as f:
                    text = f.read().decode("ascii", "replace")
            except FileNotFoundError:  # e.g. IPv6 disabled
                continue
            present += 1
            for address, port, inode in parse_net_file(text, protocol, family):
                key = (protocol, address, port)
                found.setdefault(key, inode)
                inode_of.append((key, inode))
        if present == 0:
            raise CollectorUnavailable(f"no {self._proc}/net/tcp or udp files")
        owners = self._owners({inode for _, inode in inode_of if inode})
        names: dict[tuple[str, str, int], set[str]] = {key: set() for key in found}
        for key, inode in inode_of:  # SO_REUSEPORT: several sockets, maybe several processes, one key
            names[key] |= owners.get(inode, set())
        return sorted(
            Listener(p, a, port, ",".join(sorted(n for n in names[(p, a, port)] if n)))
            for (p, a, port) in found
        )

    def _owners(self, inodes: set[int]) -> dict[int, set[str]]:
        # Walking every process's fds costs ~10 ms on a quiet host, and a socket's owner does not change
        # while the socket lives (its inode is never reused meanwhile): look up only new inodes.
        # Owners not found last time (a process we could not read, fd passing) are looked for again.
        missing = {i for i in inodes if not self._owner_cache.get(i)}
        if missing:
            found = _socket_owners(self._proc, missing)
            for inode in missing:
                self._owner_cache[inode] = found.get(inode, set())
        self._owner_cache = {i: self._owner_cache[i] for i in inodes}
        return self._owner_cache

    def is_expected(self, listener: Listener) -> bool:
        return any(p.matches(listener) for p in self._patterns) or any(
            p.matches(listener) for p in self._learned_patterns
        )

    def collect(self) -> Iterable[Metric]:
        # Reading /proc/net/{tcp,udp}* walks the kernel's whole socket hash (~2 ms a file on a large
        # host whatever the number of sockets, which is why node_exporter's tcpstat is off by
        # default): the listeners are re-read at most every `interval_s`, in between the last
        # reading is reported again (and no listener is "new" twice).
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._interval_s:
            self._new = []
            return self._families()
        self._read_at = now
        current = self.listeners()
        if self._learn and self._learned is None:
            self._learned = {lst.spec for lst in current}
            self._learned_patterns = [parse_baseline_entry(s) for s in sorted(self._learned)]
            if self._state_file is not None:
                self._save_state(self._state_file, self._learned)
        keys = {lst.key for lst in current}
        prev = self._previous
        self._new = [] if prev is None else [lst for lst in current if lst.key not in prev]
        self._previous = keys
        self._current = current
        self._unexpected = [lst for lst in current if not self.is_expected(lst)]
        return self._families()

    def _families(self) -> list[Metric]:
        current = self._current
        ports = GaugeMetricFamily(
            "vigil_listening_ports",
            "Listening sockets by protocol, port and owning process (1 per series).",
            labels=["protocol", "port", "process"],
        )
        series = sorted({(lst.protocol, str(lst.port), lst.process) for lst in current})
        for labels in series[:MAX_SERIES]:
            ports.add_metric(list(labels), 1.0)
        unexpected = GaugeMetricFamily(
            "vigil_listening_ports_unexpected",
            "Listening sockets that match no baseline entry.",
            value=float(len(self._unexpected)),
        )
        return [ports, unexpected]

    def new_listeners(self) -> list[Listener]:
        """Listeners that appeared between the previous collection and the latest one."""
        return list(self._new)

    def events(self) -> list[Event]:
        """`listener_new` events for the listeners that appeared at the latest collection."""
        now_ms = int(time.time() * 1000)
        return [
            Event(
                now_ms,
                "listener_new",
                f"new {lst.protocol} listener on {lst.address}:{lst.port}"
                + (f" ({lst.process})" if lst.process else "")
                + ("" if self.is_expected(lst) else ", not in the baseline"),
                {
                    "protocol": lst.protocol,
                    "address": lst.address,
                    "port": lst.port,
                    "process": lst.process,
                    "expected": self.is_expected(lst),
                },
            )
            for lst in self._new
        ]

    def unexpected_listeners(self) -> list[Listener]:
        """Listeners of the latest collection that match no baseline entry."""
        return list(self._unexpected)

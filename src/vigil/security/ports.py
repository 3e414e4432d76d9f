"""Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}, attributed to processes, checked against a baseline.

A listener is a TCP socket in state LISTEN (0A) or a UDP socket bound to a local port with no remote
peer (remote address all zeros, port 0). Socket inodes are mapped to processes by reading the
/proc/<pid>/fd symlinks ("socket:[<inode>]"); that is best effort: processes that exit mid-scan or
whose fd directory cannot be read are skipped, and their listeners get an empty process name.

Baseline syntax (parsed by `vigil.config.security.parse_baseline_entry`, which validates the config
with it), one entry per expected listener (tcp6/udp6 sockets count as "tcp"/"udp")::

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

The sockets are read over NETLINK_SOCK_DIAG (inet_diag, what `ss` uses) when `proc` is the real /proc:
reading /proc/net/{tcp,udp}* makes the kernel walk its whole socket hash (~2 ms a file on a large host
whatever the number of sockets), while a TCP dump restricted to state LISTEN walks only the listening
hash. UDP sockets are asked for in state CLOSE (an unbound or disconnected UDP socket is in CLOSE, a
connected one in ESTABLISHED; `ss -lu` asks for the same) and filtered exactly as the /proc lines are.
Where netlink is refused (no CAP, a sandbox such as gVisor, inet_diag not built) the /proc files are
read instead.

Vigil's own listeners are always expected: with `own_pid` (the agent passes its own pid), a listener
all of whose sockets that process holds (its /metrics, StatsD, syslog; in `vigil up` also the server's
HTTP and syslog ports, whenever they open) is in the baseline without being listed or learned. Held by
the process, not named in the config, so a foreign listener on a port Vigil is configured for but
does not hold is still unexpected.

Families: `vigil_listening_ports{protocol,port,process}` (gauge, 1 per distinct label set, capped at
`MAX_SERIES` series) and `vigil_listening_ports_unexpected` (gauge, listeners not in the baseline).
`new_listeners()` returns listeners that appeared since the previous reading, for events (`listener_new`;
those that went away give `listener_gone`); the first reading has no previous one, so it reports none.

Who reads: in the agent a watcher (`vigil.agent.portwatch`) calls `read_changes()` every
`read_period_s` (1 s by default: a netlink reading costs ~0.1 ms of CPU) and ships the changes at
once; collections then only report the watcher's latest reading (`watched`). Where only /proc/net is
readable a reading costs milliseconds (the whole socket hash is walked), so the period is at least
`PROC_FLOOR_S`. Without a watcher (`vigil agent --once`, tests) `collect()` reads itself, at most every
`interval_s`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.config.security import parse_baseline_entry
from vigil.model.collector import CollectorUnavailable
from vigil.model.event import Event
from vigil.model.labels import label_safe

log = logging.getLogger(__name__)

_RETRY_UNOWNED = 10  # readings between lookups of unowned sockets' processes, at least...
_RETRY_UNOWNED_S = 60.0  # ...and about this long: the /proc/*/fd walk costs ~5 ms of CPU
PROC_FLOOR_S = 5.0  # the shortest read period when the tables come from /proc/net (~5 ms a reading)
MAX_SERIES = 1000  # ports are bounded in practice; this keeps a pathological host from blowing up cardinality

_TCP_LISTEN = "0A"
_SOURCES = (
    ("tcp", "tcp", socket.AF_INET),
    ("tcp6", "tcp", socket.AF_INET6),
    ("udp", "udp", socket.AF_INET),
    ("udp6", "udp", socket.AF_INET6),
)


# NETLINK_SOCK_DIAG / inet_diag (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (sport, dport, src[16],
# dst[16], if, cookie[2]) all zero: no filter besides the states.
_DIAG_REQ = struct.Struct("=BBBBI48x")
# inet_diag_msg: family, state, timer, retrans, sockid (ports and addresses big-endian), expires,
# rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=BBxx2s2s16s16s28xI")
_TCP_STATE_LISTEN = 10
_TCP_STATE_CLOSE = 7
# (protocol, family, IPPROTO, states); TCP asks for LISTEN alone so that the kernel skips the
# established hash (`ss -l` also asks for CLOSE, which makes it walk that hash too).
_DIAG_QUERIES = (
    ("tcp", socket.AF_INET, socket.IPPROTO_TCP, 1 << _TCP_STATE_LISTEN),
    ("tcp", socket.AF_INET6, socket.IPPROTO_TCP, 1 << _TCP_STATE_LISTEN),
    ("udp", socket.AF_INET, socket.IPPROTO_UDP, 1 << _TCP_STATE_CLOSE),
    ("udp", socket.AF_INET6, socket.IPPROTO_UDP, 1 << _TCP_STATE_CLOSE),
)
_DIAG_TIMEOUT_S = 5.0
_TRANSIENT = (errno.EINTR, errno.EAGAIN, errno.ENOBUFS, errno.ETIMEDOUT)
_RECV_BUFSIZE = 65536  # the kernel fills dump replies up to 32 KiB

SocketRow = tuple[str, str, int, int]  # (protocol, address, port, inode)


@dataclass(frozen=True, order=True)
class Listener:
    protocol: str  # "tcp" or "udp" (IPv6 sockets included)
    address: str  # "0.0.0.0", "127.0.0.1", "::", "::1", ...
    port: int
    process: str = ""  # comm of the owning process(es), comma-joined if several share it; "" if unknown
    own: bool = field(default=False, compare=False)  # every socket of it is held by `own_pid`

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity for "is this new": the process is left out, since its resolution is best effort."""
        return (self.protocol, self.address, self.port)

    @property
    def spec(self) -> str:
        """The exact baseline entry for this listener."""
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol}/{addr}:{self.port}"


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


def _is_listener(protocol: str, state: int, lport: int, raddr: bytes, rport: int) -> bool:
    """The /proc rule, for a socket read over netlink (addresses as raw bytes)."""
    if lport == 0:
        return False
    if protocol == "tcp":
        return state == _TCP_STATE_LISTEN
    return rport == 0 and not any(raddr)


def _diag_parse(data: bytes, seq: int, protocol: str, out: list[SocketRow]) -> bool:
    """Append the listeners in one netlink datagram of a dump reply to `out`; True once NLMSG_DONE.

    OSError when the kernel answered with an error, ValueError when the reply is malformed."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise ValueError(f"malformed netlink message (length {length})")
        body = offset + _NLMSGHDR.size
        offset += (length + 3) & ~3  # NLMSG_ALIGN
        if msg_seq != seq:  # not the answer to our request (e.g. a late one to an earlier one)
            continue
        if msg_type == _NLMSG_DONE:
            # A dump that failed midway carries the (negative) errno here.
            if length >= _NLMSGHDR.size + 4:
                (err,) = struct.unpack_from("=i", data, body)
                if err < 0:
                    raise OSError(-err, f"inet_diag dump: {os.strerror(-err)}")
            return True
        if msg_type == _NLMSG_ERROR:
            if length < _NLMSGHDR.size + 4:
                raise ValueError("truncated NLMSG_ERROR")
            (err,) = struct.unpack_from("=i", data, body)
            if err < 0:
                raise OSError(-err, f"inet_diag request: {os.strerror(-err)}")
            continue  # an ack (error 0): nothing to read
        if msg_type != _SOCK_DIAG_BY_FAMILY or length < _NLMSGHDR.size + _DIAG_MSG.size:
            continue
        family, state, sport, dport, src, dst, inode = _DIAG_MSG.unpack_from(data, body)
        lport, rport = int.from_bytes(sport, "big"), int.from_bytes(dport, "big")
        if family == socket.AF_INET:
            local, remote = src[:4], dst[:4]
        elif family == socket.AF_INET6:
            local, remote = src, dst
        else:
            continue
        if _is_listener(protocol, state, lport, remote, rport):
            out.append((protocol, socket.inet_ntop(family, local), lport, inode))
    if offset < len(data):
        raise ValueError("truncated netlink message")
    return False


def _diag_dump(
    sock: socket.socket, seq: int, protocol: str, family: int, ipproto: int, states: int
) -> list[SocketRow]:
    """One SOCK_DIAG_BY_FAMILY dump request and its reply, read to NLMSG_DONE."""
    request = _DIAG_REQ.pack(family, ipproto, 0, 0, states)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0
    )
    sock.sendto(header + request, (0, 0))  # (pid, groups): to the kernel
    out: list[SocketRow] = []
    while True:
        data, _anc, flags, _addr = sock.recvmsg(_RECV_BUFSIZE)
        if flags & socket.MSG_TRUNC:
            raise ValueError("netlink reply truncated")
        if not data:
            raise ValueError("netlink socket closed")
        if _diag_parse(data, seq, protocol, out):
            return out


def _diag_listeners() -> list[SocketRow]:
    """(protocol, address, port, inode) of this network namespace's listeners, over NETLINK_SOCK_DIAG.

    OSError when netlink is unavailable or refused, ValueError on a reply we cannot read."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(_DIAG_TIMEOUT_S)
        out: list[SocketRow] = []
        for seq, (protocol, family, ipproto, states) in enumerate(_DIAG_QUERIES, start=1):
            out += _diag_dump(sock, seq, protocol, family, ipproto, states)
        return out


def _proc_listeners(proc: Path) -> list[SocketRow]:
    """(protocol, address, port, inode) of the listeners in `proc`/net/{tcp,tcp6,udp,udp6}."""
    out: list[SocketRow] = []
    present = 0
    for fname, protocol, family in _SOURCES:
        try:
            with open(proc / "net" / fname, "rb") as f:
                text = f.read().decode("ascii", "replace")
        except FileNotFoundError:  # e.g. IPv6 disabled
            continue
        present += 1
        out += [
            (protocol, address, port, inode)
            for address, port, inode in parse_net_file(text, protocol, family)
        ]
    if present == 0:
        raise CollectorUnavailable(f"no {proc}/net/tcp or udp files")
    return out


def _held_sockets(proc: Path, pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds (its fd links); empty when they cannot be read."""
    fd_dir = f"{proc}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    held: set[int] = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            held.add(int(target[8:-1]))
    return held


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
        # Unreadable (exited, or not ours without CAP_SYS_PTRACE) pids hold nothing we can see.
        found = sorted(_held_sockets(proc, int(pid)) & inodes)
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
        use_netlink: bool | None = None,
        own_pid: int | None = None,
    ) -> None:
        """`own_pid`: the listeners this process holds are Vigil's own, always expected."""
        self._proc = proc
        self._own_pid = own_pid
        # None: netlink when `proc` is the real /proc (a fixture tree must be read as files).
        self._use_netlink = Path(proc) == Path("/proc") if use_netlink is None else use_netlink
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
        self._previous: dict[tuple[str, str, int], Listener] | None = None
        self._owner_cache: dict[int, set[str]] = {}
        self._own_cache: dict[int, bool] = {}  # inode -> held by own_pid (fixed while the socket lives)
        self._readings = 0
        # Retry unowned sockets every ~_RETRY_UNOWNED_S, but never more often than every 10th reading.
        self._retry_every = max(_RETRY_UNOWNED, round(_RETRY_UNOWNED_S / interval_s) if interval_s else 0)
        self._new: list[Listener] = []
        self._gone: list[Listener] = []
        self._current: list[Listener] = []
        self._unexpected: list[Listener] = []
        # The watcher's thread reads while the agent's collects: one reading or report at a time.
        self._lock = threading.RLock()
        self.watched = False  # a watcher reads; collections only report its latest reading
        self._read_error: Exception | None = None  # the watcher's latest reading failed with this

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

    @property
    def netlink(self) -> bool:
        """Whether the tables are read over netlink (False once it was refused: /proc/net then)."""
        return self._use_netlink

    @property
    def read_period_s(self) -> float:
        """How often a watcher reads: `interval_s`, at least `PROC_FLOOR_S` when reading /proc/net."""
        return self._interval_s if self._use_netlink else max(self._interval_s, PROC_FLOOR_S)

    def _sockets(self) -> list[SocketRow]:
        if self._use_netlink:
            try:
                return _diag_listeners()
            except (OSError, ValueError) as exc:
                # Refused for good (no netlink in a sandbox, inet_diag not built, not permitted): stop
                # trying. A timeout, an interrupted read or a malformed reply is tried again next time.
                if (
                    isinstance(exc, OSError)
                    and not isinstance(exc, TimeoutError)
                    and exc.errno not in _TRANSIENT
                ):
                    self._use_netlink = False
                log.debug("listening ports: netlink sock_diag failed (%s), reading %s/net", exc, self._proc)
        return _proc_listeners(self._proc)

    def listeners(self) -> list[Listener]:
        """Read the listeners now, without touching the collector's state."""
        found: dict[tuple[str, str, int], int] = {}
        inode_of: list[tuple[tuple[str, str, int], int]] = []
        for protocol, address, port, inode in self._sockets():
            key = (protocol, address, port)
            found.setdefault(key, inode)
            inode_of.append((key, inode))
        inodes = {inode for _, inode in inode_of if inode}
        owners = self._owners(inodes)
        mine = self._own(inodes)
        names: dict[tuple[str, str, int], set[str]] = {key: set() for key in found}
        own = dict.fromkeys(found, self._own_pid is not None)
        for key, inode in inode_of:  # SO_REUSEPORT: several sockets, maybe several processes, one key
            names[key] |= owners.get(inode, set())
            own[key] = own[key] and mine.get(inode, False)  # every socket ours, not just one of them
        return sorted(
            Listener(p, a, port, ",".join(sorted(n for n in names[(p, a, port)] if n)), own[(p, a, port)])
            for (p, a, port) in found
        )

    def _owners(self, inodes: set[int]) -> dict[int, set[str]]:
        # Walking every process's fds costs ~10 ms on a quiet host, and a socket's owner does not change
        # while the socket lives (its inode is never reused meanwhile): look up only new inodes.
        # Owners not found (a process we cannot read, another namespace's) are looked for again, but
        # only every `_RETRY_UNOWNED`th reading (or about every `_RETRY_UNOWNED_S` when reading more
        # often): on some hosts they are never found.
        self._readings += 1
        retry = self._readings % self._retry_every == 0
        missing = {i for i in inodes if i not in self._owner_cache or (retry and not self._owner_cache[i])}
        if missing:
            found = _socket_owners(self._proc, missing)
            for inode in missing:
                self._owner_cache[inode] = found.get(inode, set())
        self._owner_cache = {i: self._owner_cache[i] for i in inodes}
        return self._owner_cache

    def _own(self, inodes: set[int]) -> dict[int, bool]:
        # Which sockets `own_pid` holds; like owners, read only when sockets not seen before appear.
        if self._own_pid is None:
            return {}
        if any(i not in self._own_cache for i in inodes):
            held = _held_sockets(self._proc, self._own_pid)
            self._own_cache = {i: i in held for i in inodes}
        else:
            self._own_cache = {i: self._own_cache[i] for i in inodes}
        return self._own_cache

    def is_expected(self, listener: Listener) -> bool:
        if listener.own:
            return True
        return any(p.matches(listener) for p in self._patterns) or any(
            p.matches(listener) for p in self._learned_patterns
        )

    def collect(self) -> Iterable[Metric]:
        # Reading /proc/net/{tcp,udp}* walks the kernel's whole socket hash (~2 ms a file on a large
        # host whatever the number of sockets, which is why node_exporter's tcpstat is off by
        # default; netlink is cheaper but a UDP dump still walks the UDP hash): the listeners are
        # re-read at most every `interval_s`, in between the last reading is reported again (and no
        # listener is "new" twice). With a watcher, it reads and reports the changes itself.
        with self._lock:
            if self.watched:
                self._new, self._gone = [], []  # the watcher shipped them already
                if self._read_error is not None:
                    raise self._read_error
                return self._families()
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._interval_s:
                self._new, self._gone = [], []
                return self._families()
            self._read_at = now
            self._new, self._gone = self._read()
            return self._families()

    def read_changes(self) -> list[Event]:
        """Read the tables now (a watcher's step): `listener_new` and `listener_gone` events for the
        changes since the previous reading. Raises what a reading raises (CollectorUnavailable...), and
        `collect()` raises it too until a reading succeeds."""
        with self._lock:
            try:
                new, gone = self._read()
            except Exception as exc:
                self._read_error = exc
                raise
            self._read_error = None
            return self._change_events(new, gone)

    def _read(self) -> tuple[list[Listener], list[Listener]]:
        """One reading: the baseline learned on the first, state updated; (new, gone) listeners."""
        current = self.listeners()
        if self._learn and self._learned is None:
            self._learned = {lst.spec for lst in current}
            self._learned_patterns = [parse_baseline_entry(s) for s in sorted(self._learned)]
            if self._state_file is not None:
                self._save_state(self._state_file, self._learned)
        prev = self._previous
        keys = {lst.key for lst in current}
        new = [] if prev is None else [lst for lst in current if lst.key not in prev]
        gone = [] if prev is None else [lst for key, lst in sorted(prev.items()) if key not in keys]
        self._previous = {lst.key: lst for lst in current}
        self._current = current
        self._unexpected = [lst for lst in current if not self.is_expected(lst)]
        return new, gone

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

    def gone_listeners(self) -> list[Listener]:
        """Listeners of the previous collection that the latest one no longer saw."""
        return list(self._gone)

    def events(self) -> list[Event]:
        """`listener_new` / `listener_gone` events for the changes seen at the latest collection."""
        with self._lock:
            return self._change_events(self._new, self._gone)

    def _change_events(self, new: list[Listener], gone: list[Listener]) -> list[Event]:
        now_ms = int(time.time() * 1000)
        out = []
        for kind, listeners in (("listener_new", new), ("listener_gone", gone)):
            for lst in listeners:
                expected = self.is_expected(lst)
                where = f"{lst.protocol} listener on {lst.address}:{lst.port}" + (
                    f" ({lst.process})" if lst.process else ""
                )
                out.append(
                    Event(
                        now_ms,
                        kind,
                        (f"new {where}" if kind == "listener_new" else f"{where} closed")
                        + ("" if expected else ", not in the baseline"),
                        {
                            "protocol": lst.protocol,
                            "address": lst.address,
                            "port": lst.port,
                            "process": lst.process,
                            "expected": expected,
                        },
                    )
                )
        return out

    def unexpected_listeners(self) -> list[Listener]:
        """Listeners of the latest collection that match no baseline entry."""
        return list(self._unexpected)

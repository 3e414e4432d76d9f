"""ListeningPortsCollector: parsing of real /proc/net lines in a fixture tree, baseline syntax, and a
real listening socket found through this machine's /proc."""

# ruff: noqa: E501, W291  (the /proc/net fixtures are verbatim kernel lines: long, with trailing blanks)

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from prometheus_client import Metric

from vigil.model.collector import CollectorUnavailable
from vigil.security.ports import (
    MAX_SERIES,
    Listener,
    ListeningPortsCollector,
    parse_baseline_entry,
)

# Lines copied from this machine's /proc/net files (kernel format, trailing blanks included).
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1598 1 000000000cd05cbc 100 0 0 10 0                      
   1: 0100007F:CA1C 0100007F:BCCF 06 00000000:00000000 03:0000034C 00000000     0        0 0 3 0000000026cd50c6                                      
   7: 0100007F:9472 0100007F:D0D7 06 00000000:00000000 03:000000EF 00000000     0        0 0 3 000000009ee84433                                      
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:AB27 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 103602 1 0000000077396a46 100 0 0 10 0
"""
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
10866: 0100007F:9989 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 103603 2 00000000e6596b89 0        
15241: 0100007F:AAA0 0100007F:0009 01 00000000:00000000 00:00000000 00000000     0        0 103605 2 00000000b2abaf9d 0        
"""
UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13927: 00000000000000000000000001000000:E57E 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 103604 2 000000009fab6acb 0
"""

EXPECTED = [
    Listener("tcp", "0.0.0.0", 2024, "sshd"),
    Listener("tcp", "::1", 0xAB27, "vigil"),
    Listener("udp", "127.0.0.1", 0x9989, "dnsmasq"),
    Listener("udp", "::1", 0xE57E, ""),  # inode 103604 has no owner we can see
]


def _proc(tmp_path: Path, tcp: str = TCP) -> Path:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    for name, text in (("tcp", tcp), ("tcp6", TCP6), ("udp", UDP), ("udp6", UDP6)):
        (proc / "net" / name).write_text(text)
    for pid, comm, fds in (
        ("100", "sshd", {"0": "/dev/null", "3": "socket:[1598]"}),
        ("200", "vigil", {"1": "pipe:[42]", "7": "socket:[103602]", "8": "socket:[103605]"}),
        ("300", "dnsmasq", {"4": "socket:[103603]", "5": "anon_inode:[eventfd]"}),
    ):
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "comm").write_text(comm + "\n")
        for fd, target in fds.items():
            os.symlink(target, proc / pid / "fd" / fd)
    (proc / "400").mkdir()  # a pid whose fd directory we cannot read: skipped
    (proc / "self").mkdir()  # non-numeric entries are ignored
    return proc


def _by_name(families: list[Metric]) -> dict[str, Metric]:
    return {m.name: m for m in families}


def _ports_series(families: list[Metric]) -> set[tuple[str, str, str]]:
    fam = _by_name(families)["vigil_listening_ports"]
    assert all(s.value == 1.0 for s in fam.samples)
    return {(s.labels["protocol"], s.labels["port"], s.labels["process"]) for s in fam.samples}


def _unexpected(families: list[Metric]) -> float:
    return float(_by_name(families)["vigil_listening_ports_unexpected"].samples[0].value)


def test_fixture_listeners(tmp_path: Path) -> None:
    c = ListeningPortsCollector(proc=_proc(tmp_path))
    assert c.name == "listening_ports"
    assert c.listeners() == sorted(EXPECTED)
    fams = list(c.collect())
    assert _ports_series(fams) == {
        ("tcp", "2024", "sshd"),
        ("tcp", str(0xAB27), "vigil"),
        ("udp", str(0x9989), "dnsmasq"),
        ("udp", str(0xE57E), ""),
    }
    assert _unexpected(fams) == 0  # learned on the first collection
    assert c.new_listeners() == []  # nothing to compare the first collection with


def test_fixture_explicit_baseline_without_learning(tmp_path: Path) -> None:
    c = ListeningPortsCollector(proc=_proc(tmp_path), baseline=["tcp/2024", "udp/*"], learn=False)
    fams = list(c.collect())
    assert _unexpected(fams) == 1
    assert c.unexpected_listeners() == [Listener("tcp", "::1", 0xAB27, "vigil")]


def test_fixture_new_listener_and_learned_state(tmp_path: Path) -> None:
    state = tmp_path / "ports.json"
    proc = _proc(tmp_path)
    c = ListeningPortsCollector(proc=proc, state_file=state)
    assert _unexpected(list(c.collect())) == 0
    learned = json.loads(state.read_text())["learned"]
    assert "tcp/0.0.0.0:2024" in learned and "tcp/[::1]:43815" in learned

    # A new LISTEN line (tcp 127.0.0.1:9400, inode 5555) owned by sshd.
    new_line = (
        "   9: 0100007F:24B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 5555 1 000000000cd05cbc 100 0 0 10 0\n"
    )
    (proc / "net" / "tcp").write_text(TCP + new_line)
    os.symlink("socket:[5555]", proc / "100" / "fd" / "9")
    fams = list(c.collect())
    assert _unexpected(fams) == 1
    assert c.new_listeners() == [Listener("tcp", "127.0.0.1", 9400, "sshd")]
    assert ("tcp", "9400", "sshd") in _ports_series(fams)
    list(c.collect())
    assert c.new_listeners() == []  # only since the previous collection

    # A restart reuses the persisted baseline instead of learning the new listener as expected.
    c2 = ListeningPortsCollector(proc=proc, state_file=state)
    assert _unexpected(list(c2.collect())) == 1
    assert json.loads(state.read_text())["learned"] == learned


def test_missing_proc_net_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable):
        list(ListeningPortsCollector(proc=tmp_path).collect())


def test_series_cap(tmp_path: Path) -> None:
    lines = [TCP.splitlines()[0]]
    for i in range(MAX_SERIES + 50):
        port = 10000 + i
        lines.append(
            f"{i:4d}: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
            f"     0        0 {70000 + i} 1 000000000cd05cbc 100 0 0 10 0"
        )
    proc = _proc(tmp_path, "\n".join(lines) + "\n")
    fams = list(ListeningPortsCollector(proc=proc).collect())
    assert len(_by_name(fams)["vigil_listening_ports"].samples) == MAX_SERIES


@pytest.mark.parametrize(
    ("entry", "listener", "matches"),
    [
        ("tcp/22", Listener("tcp", "0.0.0.0", 22), True),
        ("tcp/22", Listener("tcp", "::", 22), True),
        ("tcp/22", Listener("udp", "0.0.0.0", 22), False),
        ("tcp/127.0.0.1:9400", Listener("tcp", "127.0.0.1", 9400), True),
        ("tcp/127.0.0.1:9400", Listener("tcp", "0.0.0.0", 9400), False),
        ("tcp/[::0001]:9400", Listener("tcp", "::1", 9400), True),
        ("udp/*", Listener("udp", "::", 5353), True),
        ("udp/*", Listener("tcp", "::", 5353), False),
        ("*/53", Listener("udp", "127.0.0.53", 53), True),
        ("tcp/*:*", Listener("tcp", "10.0.0.1", 1), True),
        ("TCP/0.0.0.0:*", Listener("tcp", "0.0.0.0", 8080), True),
    ],
)
def test_baseline_syntax(entry: str, listener: Listener, matches: bool) -> None:
    assert parse_baseline_entry(entry).matches(listener) is matches


@pytest.mark.parametrize("entry", ["22", "sctp/22", "tcp/", "tcp/70000", "tcp/x", "tcp/1.2.3:22", "tcp/[::1"])
def test_baseline_syntax_errors(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_baseline_entry(entry)


def test_own_listeners_are_expected(tmp_path: Path) -> None:
    # The report: Vigil's own syslog port showed up as "new udp listener ... (vigil), not in the
    # baseline". What the agent's process holds is its own, listed or learned or not.
    proc = _proc(tmp_path)
    c = ListeningPortsCollector(proc=proc, baseline=["tcp/2024", "udp/127.0.0.1:*"], learn=False, own_pid=200)
    fams = list(c.collect())
    assert c.unexpected_listeners() == [Listener("udp", "::1", 0xE57E, "")]  # vigil's tcp ::1 is expected
    assert _unexpected(fams) == 1
    # Vigil opens a syslog port after the first collection (vigil up: the server's receiver), and
    # another process a port of its own.
    (proc / "net" / "udp").write_text(
        UDP
        + "  900: 00000000:15BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7001 2 0 0\n"
        + "  901: 00000000:15BB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7002 2 0 0\n"
    )
    os.symlink("socket:[7001]", proc / "200" / "fd" / "20")
    os.symlink("socket:[7002]", proc / "300" / "fd" / "20")
    fams = list(c.collect())
    by_port = {e.fields["port"]: e for e in c.events()}
    assert by_port[5562].fields["expected"] is True and "not in the baseline" not in by_port[5562].message
    assert by_port[5563].fields["expected"] is False and "not in the baseline" in by_port[5563].message
    assert _unexpected(fams) == 2
    # A socket sharing vigil's key (SO_REUSEPORT) but held by another process: not all ours.
    (proc / "net" / "udp").write_text(
        UDP
        + "  900: 00000000:15BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7001 2 0 0\n"
        + "  902: 00000000:15BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7003 2 0 0\n"
    )
    os.symlink("socket:[7003]", proc / "300" / "fd" / "21")
    list(c.collect())
    assert Listener("udp", "0.0.0.0", 5562, "dnsmasq,vigil") in c.unexpected_listeners()


def test_own_real_socket_is_expected() -> None:
    if not Path("/proc/net/udp").exists():
        pytest.skip("no /proc/net/udp")
    c = ListeningPortsCollector(learn=False, own_pid=os.getpid())
    list(c.collect())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        list(c.collect())
        [event] = [e for e in c.events() if e.fields["port"] == port and e.fields["protocol"] == "udp"]
        assert event.fields["expected"] is True
        assert all(lst.port != port for lst in c.unexpected_listeners())


def test_real_listening_socket() -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    comm = Path("/proc/self/comm").read_text().strip()
    c = ListeningPortsCollector()
    list(c.collect())  # learns whatever this host listens on now
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        fams = list(c.collect())
        mine = Listener("tcp", "127.0.0.1", port, comm)
        assert mine in c.listeners()
        assert ("tcp", str(port), comm) in _ports_series(fams)
        assert mine in c.unexpected_listeners()
        assert _unexpected(fams) >= 1
        assert mine in c.new_listeners()
    list(c.collect())
    assert all(lst.port != port or lst.protocol != "tcp" for lst in c.listeners())


def test_process_lookup_only_for_new_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The /proc/*/fd walk runs for sockets not seen before, not on every collection."""
    from vigil.security import ports

    calls: list[set[int]] = []
    real = ports._socket_owners

    def counting(proc: Path, inodes: set[int]) -> dict[int, set[str]]:
        calls.append(set(inodes))
        return real(proc, inodes)

    monkeypatch.setattr(ports, "_socket_owners", counting)
    c = ListeningPortsCollector(proc=_proc(tmp_path))
    first = c.listeners()
    assert c.listeners() == first
    assert len(calls) == 1
    unowned = {i for i, names in c._owner_cache.items() if not names}
    for _ in range(7):
        c.listeners()
    assert len(calls) == 1  # readings 2 to 9: from the cache
    assert unowned  # the fixture has a socket no process owns
    c.listeners()  # the tenth
    # Sockets whose process was not found are looked for again, every tenth reading only.
    assert len(calls) == 1 + bool(unowned) and (len(calls) == 1 or calls[1] == unowned)


def test_tables_read_at_most_every_interval(tmp_path: Path) -> None:
    now = [0.0]
    c = ListeningPortsCollector(proc=_proc(tmp_path), interval_s=60, clock=lambda: now[0])
    reads: list[int] = []
    real = c.listeners

    def counting() -> list[Listener]:
        reads.append(1)
        return real()

    c.listeners = counting  # type: ignore[method-assign]
    first = [f.samples for f in c.collect()]
    now[0] = 30.0
    assert [f.samples for f in c.collect()] == first and len(reads) == 1  # the last reading again
    assert c.new_listeners() == []
    now[0] = 61.0
    c.collect()
    assert len(reads) == 2


def _netlink_or_skip() -> None:
    from vigil.security import ports

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    try:
        ports._diag_listeners()
    except (OSError, ValueError) as exc:
        pytest.skip(f"no NETLINK_SOCK_DIAG here: {exc}")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_netlink_matches_proc_for_real_sockets() -> None:
    """Real sockets of each kind read over netlink and from /proc/net: same listeners, same inodes."""
    from vigil.security import ports

    _netlink_or_skip()
    socks: list[socket.socket] = []

    def sock(family: int, kind: int) -> socket.socket:
        s = socket.socket(family, kind)
        socks.append(s)
        return s

    try:
        expected: set[tuple[str, str, int, int]] = set()  # (protocol, address, port, inode)
        not_listeners: set[tuple[str, int]] = set()  # (protocol, port) that must not show up

        def listening(proto: str, s: socket.socket) -> None:
            addr, port = s.getsockname()[:2]
            expected.add((proto, addr, port, os.fstat(s.fileno()).st_ino))

        tcp4 = sock(socket.AF_INET, socket.SOCK_STREAM)
        tcp4.bind(("127.0.0.1", 0))
        tcp4.listen()
        listening("tcp", tcp4)
        udp4 = sock(socket.AF_INET, socket.SOCK_DGRAM)
        udp4.bind(("127.0.0.1", 0))
        listening("udp", udp4)
        # A connected UDP socket (bound, with a peer) is no listener.
        udp_conn = sock(socket.AF_INET, socket.SOCK_DGRAM)
        udp_conn.bind(("127.0.0.1", 0))
        udp_conn.connect(udp4.getsockname())
        not_listeners.add(("udp", udp_conn.getsockname()[1]))
        # A TCP connection to our listener: neither the client nor the accepted socket is a listener
        # (the accepted one shares the listener's port: the inode check below tells them apart).
        client = sock(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(tcp4.getsockname())
        socks.append(tcp4.accept()[0])
        not_listeners.add(("tcp", client.getsockname()[1]))
        if _ipv6_loopback():
            tcp6 = sock(socket.AF_INET6, socket.SOCK_STREAM)
            tcp6.bind(("::1", 0))
            tcp6.listen()
            listening("tcp", tcp6)
            udp6 = sock(socket.AF_INET6, socket.SOCK_DGRAM)
            udp6.bind(("::1", 0))
            listening("udp", udp6)
            # An IPv6 socket bound to an IPv4-mapped address: "::ffff:127.0.0.1" both ways.
            mapped = sock(socket.AF_INET6, socket.SOCK_STREAM)
            mapped.bind(("::ffff:127.0.0.1", 0))
            mapped.listen()
            listening("tcp", mapped)
            assert ("tcp", "::ffff:127.0.0.1", mapped.getsockname()[1]) in {e[:3] for e in expected}

        ours = {(p, port) for p, _, port, _ in expected} | not_listeners
        via_netlink = {r for r in ports._diag_listeners() if (r[0], r[2]) in ours}
        via_proc = {r for r in ports._proc_listeners(Path("/proc")) if (r[0], r[2]) in ours}
        assert via_netlink == via_proc == expected

        # The same through the collector, both ways (the process is this one either way).
        comm = Path("/proc/self/comm").read_text().strip()
        want = sorted(Listener(p, a, port, comm) for p, a, port, _ in expected)
        for use_netlink in (True, False):
            c = ListeningPortsCollector(use_netlink=use_netlink)
            assert [lst for lst in c.listeners() if (lst.protocol, lst.port) in ours] == want
    finally:
        for s in socks:
            s.close()


def test_netlink_is_the_default_only_for_the_real_proc(tmp_path: Path) -> None:
    assert ListeningPortsCollector()._use_netlink is True
    assert ListeningPortsCollector(proc=Path("/proc"), use_netlink=False)._use_netlink is False
    assert ListeningPortsCollector(proc=_proc(tmp_path))._use_netlink is False


def test_netlink_refused_falls_back_to_proc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where netlink sockets are refused (EPERM, a sandbox) /proc/net is read, and netlink not tried again."""
    from vigil.security import ports

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        real_socket = socket.socket
        attempts: list[int] = []

        def refusing(family: int = -1, *args: object, **kwargs: object) -> socket.socket:
            if family == socket.AF_NETLINK:
                attempts.append(family)
                raise PermissionError(1, "Operation not permitted")
            return real_socket(family, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(ports.socket, "socket", refusing)
        c = ListeningPortsCollector()
        with caplog.at_level("DEBUG", logger="vigil.security.ports"):
            assert any(lst.port == port and lst.protocol == "tcp" for lst in c.listeners())
        assert attempts == [socket.AF_NETLINK]
        assert [r.levelname for r in caplog.records] == ["DEBUG"]
        c.listeners()
        assert attempts == [socket.AF_NETLINK]  # refused for good: not tried on every collection


def test_netlink_error_reply() -> None:
    """An NLMSG_ERROR answer (here: a protocol inet_diag has no handler for) is an OSError."""
    from vigil.security import ports

    _netlink_or_skip()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ports._NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(5)
        with pytest.raises(OSError):
            ports._diag_dump(sock, 7, "tcp", socket.AF_INET, 200, 1 << 10)


def test_netlink_transient_failure_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from vigil.security import ports

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    errors: list[Exception] = [TimeoutError("timed out"), ValueError("netlink reply truncated")]

    def failing() -> list[tuple[str, str, int, int]]:
        raise errors.pop(0)

    monkeypatch.setattr(ports, "_diag_listeners", failing)
    c = ListeningPortsCollector()
    c.listeners()
    assert c._use_netlink
    c.listeners()
    assert c._use_netlink and not errors


def test_netlink_parse_messages() -> None:
    """Reply parsing on crafted messages: a listener, a connected UDP socket, another seq, DONE, errors."""
    import struct

    from vigil.security import ports

    def msg(msg_type: int, seq: int, body: bytes) -> bytes:
        data = struct.pack("=IHHII", 16 + len(body), msg_type, 2, seq, 0) + body
        return data + b"\0" * (-len(data) % 4)

    def diag(family: int, state: int, sport: int, dport: int, src: bytes, dst: bytes, inode: int) -> bytes:
        return (
            struct.pack("=BBBB", family, state, 0, 0)
            + struct.pack(">HH", sport, dport)
            + src.ljust(16, b"\0")
            + dst.ljust(16, b"\0")
            + bytes(28)
            + struct.pack("=I", inode)
        )

    lo = socket.inet_pton(socket.AF_INET, "127.0.0.1")
    v6 = socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")
    data = (
        msg(20, 3, diag(socket.AF_INET, 7, 5353, 0, lo, b"", 11))
        + msg(20, 3, diag(socket.AF_INET, 1, 5354, 9, lo, lo, 12))  # connected: skipped
        + msg(20, 2, diag(socket.AF_INET, 7, 5355, 0, lo, b"", 13))  # another request's: skipped
        + msg(20, 3, diag(socket.AF_INET6, 7, 5356, 0, v6, b"", 14))
    )
    out: list[tuple[str, str, int, int]] = []
    assert ports._diag_parse(data, 3, "udp", out) is False
    assert out == [("udp", "127.0.0.1", 5353, 11), ("udp", "::ffff:127.0.0.1", 5356, 14)]
    assert ports._diag_parse(msg(3, 3, struct.pack("=i", 0)), 3, "udp", out) is True
    with pytest.raises(OSError) as err:
        ports._diag_parse(msg(2, 3, struct.pack("=i", -1) + bytes(16)), 3, "udp", out)
    assert err.value.errno == 1
    with pytest.raises(OSError):
        ports._diag_parse(msg(3, 3, struct.pack("=i", -16)), 3, "udp", out)
    with pytest.raises(ValueError):
        ports._diag_parse(msg(20, 3, diag(socket.AF_INET, 7, 1, 0, lo, b"", 1))[:40], 3, "udp", out)

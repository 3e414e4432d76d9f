"""The syslog receiver: UDP and TCP listeners for firewalls, switches and other devices that only push.

Runs in the agent and in the server. Each received message is parsed (`vigil.logs.syslogparse`: RFC
5424, RFC 3164 and the variants real devices send) and handed to `on_message(message, peer)`, where the
caller turns it into a `LogLine` (`to_log_line`) for log rules, the auth-log parser, unknown-line
detection and events. `peer` is the sender's IP address (no port: it is the device's identity).

* UDP: one message per datagram (RFC 5426); an octet count in front of it is tolerated.
* TCP: RFC 6587 octet counting and LF/NUL-terminated framing, detected per message.

Nothing a sender does can stop the listener or starve other senders: one thread serves all sockets
through a selector without blocking on any of them, each TCP connection buffers at most one message
(`max_message_bytes`) plus one read, at most `max_connections` are open (more are closed at once), and
oversized, empty or badly framed messages are counted and skipped. An exception from `on_message` is
counted, logged once, and the next message is delivered as usual. `on_message` runs in the receiving
thread, so it should be quick (hand the message to a queue); while it runs, nothing is read.

The object is a prometheus_client collector (`name = "syslog"`); label values are closed sets:

    vigil_syslog_messages_total{transport="udp|tcp", format="rfc5424|rfc3164|unknown"}
    vigil_syslog_malformed_total{transport, reason="oversized|framing|empty|decode"}
    vigil_syslog_connections                         open TCP connections
    vigil_syslog_connections_rejected_total          over max_connections
    vigil_syslog_callback_errors_total               on_message raised
    vigil_syslog_last_message_timestamp_seconds{transport}

`reason="decode"` counts messages that were not UTF-8; they are still delivered (with U+FFFD), because
a firewall's line with one Latin-1 byte is worth more than the byte. The other reasons are not
delivered.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, tzinfo

from prometheus_client import Metric

from vigil.config import parse_listen
from vigil.logs.syslogparse import (
    FORMATS,
    FrameDecoder,
    FrameError,
    SyslogMessage,
    SyslogParseError,
    parse_message,
    parse_structured_data,
    to_log_line,
    unframe_datagram,
)

__all__ = [
    "FrameDecoder",
    "SyslogMessage",
    "SyslogParseError",
    "SyslogServer",
    "parse_message",
    "parse_structured_data",
    "to_log_line",
]

log = logging.getLogger(__name__)

TRANSPORTS = ("udp", "tcp")
MALFORMED_REASONS = ("oversized", "framing", "empty", "decode")

_RECV_BATCH = 64  # datagrams drained per wake-up before TCP connections get a turn
_TCP_READ = 65536
_UDP_RCVBUF = 4 << 20  # firewalls burst; the kernel caps this at net.core.rmem_max


def _bind_address(listen: str, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """`host:port` / `[v6]:port` as a socket family and address. Port 0 (a free port) is allowed."""
    head, sep, port = listen.rpartition(":")
    if sep and port == "0":
        host, _ = parse_listen(head + ":1")
        port_n = 0
    else:
        host, port_n = parse_listen(listen)
    fam, _, _, _, addr = socket.getaddrinfo(host, port_n, type=kind, flags=socket.AI_PASSIVE)[0]
    return fam, (str(addr[0]), int(addr[1]))


class _Conn:
    __slots__ = ("decoder", "peer")

    def __init__(self, peer: str, max_message_bytes: int) -> None:
        self.peer = peer
        self.decoder = FrameDecoder(max_message_bytes)


class SyslogServer:
    """Receives syslog over UDP and/or TCP in one background thread; a collector named `syslog`."""

    name = "syslog"

    def __init__(
        self,
        udp_listen: str | None,
        tcp_listen: str | None,
        on_message: Callable[[SyslogMessage, str], None],
        max_message_bytes: int = 65536,
        max_connections: int = 256,
        source: str = "syslog",
        *,
        tz: tzinfo = UTC,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`source` is the LogLine source name the caller uses; `tz` is the zone of sender stamps
        without an offset (BSD stamps); `clock` is for tests."""
        if max_message_bytes <= 0 or max_connections <= 0:
            raise ValueError("max_message_bytes and max_connections must be positive")
        if not udp_listen and not tcp_listen:
            raise ValueError("syslog needs a UDP or a TCP listen address")
        self.udp_listen = udp_listen
        self.tcp_listen = tcp_listen
        self.on_message = on_message
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self.source = source
        self.tz = tz
        self._clock = clock

        # Counters are guarded by _lock: the receiving thread writes, collect() reads.
        self._lock = threading.Lock()
        self._messages = {(t, f): 0 for t in TRANSPORTS for f in FORMATS}
        self._malformed = {(t, r): 0 for t in TRANSPORTS for r in MALFORMED_REASONS}
        self._last: dict[str, float] = {}
        self._rejected = 0
        self._callback_errors = 0
        self._logged: set[str] = set()

        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._conns: dict[socket.socket, _Conn] = {}
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets (raising OSError/ValueError if it cannot) and start the thread."""
        if self._thread is not None:
            return
        try:
            if self.udp_listen:
                fam, addr = _bind_address(self.udp_listen, socket.SOCK_DGRAM)
                self._udp = socket.socket(fam, socket.SOCK_DGRAM)
                with contextlib.suppress(OSError):
                    self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
                self._udp.bind(addr)
                self._udp.setblocking(False)
                self.udp_address = self._udp.getsockname()[:2]
            if self.tcp_listen:
                fam, addr = _bind_address(self.tcp_listen, socket.SOCK_STREAM)
                self._tcp = socket.socket(fam, socket.SOCK_STREAM)
                self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._tcp.bind(addr)
                self._tcp.listen(128)
                self._tcp.setblocking(False)
                self.tcp_address = self._tcp.getsockname()[:2]
            # stop() writes to this pair to wake the selector at once instead of polling.
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
        except BaseException:
            self._close_all()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="syslog-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every socket; partial TCP messages are dropped."""
        if self._thread is None:
            return
        self._stop.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        self._thread.join()
        self._thread = None
        self._close_all()

    def __enter__(self) -> SyslogServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_all(self) -> None:
        for s in (self._udp, self._tcp, self._wake_r, self._wake_w, *self._conns):
            if s is not None:
                s.close()
        self._conns.clear()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    # -- receiving ---------------------------------------------------------------------------

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            assert self._wake_r is not None
            sel.register(self._wake_r, selectors.EVENT_READ)
            for s in (self._udp, self._tcp):
                if s is not None:
                    sel.register(s, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=1.0):
                    try:
                        self._on_ready(sel, key.fileobj)  # type: ignore[arg-type]
                    except Exception:  # a bug here must not end the receiver
                        self._log_once("internal", "syslog: internal error (logged once)", exc_info=True)
        finally:
            sel.close()

    def _on_ready(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                sock.recv(64)
            return
        if sock is self._udp:
            self._read_udp(sock)
        elif sock is self._tcp:
            self._accept(sel, sock)
        else:
            self._read_tcp(sel, sock)

    def _read_udp(self, sock: socket.socket) -> None:
        for _ in range(_RECV_BATCH):
            try:
                # One byte more than allowed, to tell an oversized datagram from a full one.
                data, addr = sock.recvfrom(self.max_message_bytes + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ECONNREFUSED from an earlier ICMP error: not fatal
                name = errno.errorcode.get(exc.errno or 0, str(exc))
                self._log_once(f"udp:{name}", "syslog: UDP receive error %s (logged once)", name)
                return
            if len(data) > self.max_message_bytes:
                self._count_malformed("udp", "oversized")
                continue
            self._deliver("udp", unframe_datagram(data), str(addr[0]))

    def _accept(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: try again on the next wake-up
            self._log_once("accept", "syslog: accept failed: %s (logged once)", exc)
            return
        if len(self._conns) >= self.max_connections:
            with self._lock:
                self._rejected += 1
            self._log_once("max_connections", "syslog: max_connections reached, closing new ones")
            conn.close()
            return
        conn.setblocking(False)
        self._conns[conn] = _Conn(str(addr[0]), self.max_message_bytes)
        sel.register(conn, selectors.EVENT_READ)

    def _read_tcp(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        state = self._conns.get(sock)
        if state is None:
            return
        try:
            data = sock.recv(_TCP_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ECONNRESET: the peer is gone, like EOF
            data = b""
        if data:
            frames = state.decoder.feed(data)
        else:
            frames = state.decoder.finish()
            sel.unregister(sock)
            sock.close()
            del self._conns[sock]
        for frame in frames:
            if isinstance(frame, FrameError):
                self._count_malformed("tcp", frame.reason)
            else:
                self._deliver("tcp", frame, state.peer)

    def _deliver(self, transport: str, data: bytes, peer: str) -> None:
        now = self._clock()
        try:
            msg = parse_message(data, int(now * 1000), self.tz)
        except SyslogParseError as exc:
            self._count_malformed(transport, exc.reason)
            return
        with self._lock:
            self._messages[(transport, msg.format)] += 1
            self._last[transport] = now
            if not msg.valid_utf8:
                self._malformed[(transport, "decode")] += 1
        try:
            self.on_message(msg, peer)
        except Exception:
            with self._lock:
                self._callback_errors += 1
            self._log_once("callback", "syslog: on_message failed (logged once)", exc_info=True)

    def _count_malformed(self, transport: str, reason: str) -> None:
        with self._lock:
            self._malformed[(transport, reason)] += 1

    def _log_once(self, key: str, fmt: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning(fmt, *args, exc_info=exc_info)

    # -- collector ---------------------------------------------------------------------------

    def connections(self) -> int:
        """Open TCP connections (read from the receiving thread's dict; a snapshot)."""
        return len(self._conns)

    def counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """{"messages": {(transport, format): n}, "malformed": {(transport, reason): n}}."""
        with self._lock:
            return {"messages": dict(self._messages), "malformed": dict(self._malformed)}

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            messages = dict(self._messages)
            malformed = dict(self._malformed)
            last = dict(self._last)
            rejected, callback_errors = self._rejected, self._callback_errors
        conns = len(self._conns)

        m = Metric("vigil_syslog_messages", "Syslog messages received and delivered.", "counter")
        for (transport, fmt), n in messages.items():
            m.add_sample("vigil_syslog_messages_total", {"transport": transport, "format": fmt}, float(n))
        bad = Metric(
            "vigil_syslog_malformed",
            "Syslog messages skipped as oversized, badly framed or empty; reason=decode counts "
            "non-UTF-8 messages, which are delivered anyway.",
            "counter",
        )
        for (transport, reason), n in malformed.items():
            bad.add_sample(
                "vigil_syslog_malformed_total", {"transport": transport, "reason": reason}, float(n)
            )
        c = Metric("vigil_syslog_connections", "Open syslog TCP connections.", "gauge")
        c.add_sample("vigil_syslog_connections", {}, float(conns))
        rej = Metric(
            "vigil_syslog_connections_rejected",
            "Syslog TCP connections closed at once because max_connections were open.",
            "counter",
        )
        rej.add_sample("vigil_syslog_connections_rejected_total", {}, float(rejected))
        cb = Metric("vigil_syslog_callback_errors", "Syslog messages whose handler raised.", "counter")
        cb.add_sample("vigil_syslog_callback_errors_total", {}, float(callback_errors))
        ts = Metric(
            "vigil_syslog_last_message_timestamp_seconds",
            "When the last syslog message was received, by transport.",
            "gauge",
        )
        for transport, when in last.items():
            ts.add_sample("vigil_syslog_last_message_timestamp_seconds", {"transport": transport}, when)
        return [m, bad, c, rej, cb, ts]

"""The UDP/TCP receive loop shared by the agent's StatsD and syslog receivers.

One thread, one selector: a UDP socket, a TCP listening socket and its connections, and a wake-up
socketpair so that `stop()` returns at once instead of waiting out a poll. Nothing a sender does ends
the thread.

TCP connections are bounded, and silent ones cannot hold the slots: a connection that has sent
nothing for `idle_timeout_s` is closed (checked about once a second), and when `max_connections` are
open a new connection takes the slot of the one idle the longest, provided it has been idle at least
`min(5 s, idle_timeout_s)`; only if every open connection sent something more recently than that is
the new one accepted and closed at once. A connection that keeps sending is never closed for idleness.
`idle_timeout_s=None` turns both off (connections stay open however long they are silent).

The protocol-specific parts are callbacks a subclass implements: a datagram, stream bytes for a
connection (with a per-connection state object the protocol creates, e.g. a line buffer or a frame
decoder), the end of a connection (flush a partial frame), an oversized datagram, a rejected
connection and receive errors. They all run in the receiving thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Generic, Literal, Self, TypeVar

from vigil.model.listen import parse_listen

ConnT = TypeVar("ConnT")

ErrorKind = Literal["udp", "accept", "internal"]

_RECV_BATCH = 64  # datagrams drained per wake-up before TCP connections get a turn
_TCP_READ = 65536
_LISTEN_BACKLOG = 128
_POLL_S = 1.0  # the selector wakes at least this often: stop() fallback and the idle sweep
_EVICT_MIN_IDLE_S = 5.0  # at max_connections, only a connection idle this long gives up its slot
DEFAULT_IDLE_TIMEOUT_S = 300.0


def bind_address(listen: str, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """`host:port` / `[v6]:port` as a socket family and address. Port 0 (a free port) is allowed."""
    head, sep, port = listen.rpartition(":")
    if sep and port == "0":
        host, _ = parse_listen(head + ":1")  # parse_listen wants 1..65535; tests want a free port
        port_n = 0
    else:
        host, port_n = parse_listen(listen)
    fam, _, _, _, addr = socket.getaddrinfo(host, port_n, type=kind, flags=socket.AI_PASSIVE)[0]
    return fam, (str(addr[0]), int(addr[1]))


class SocketReceiver(Generic[ConnT]):
    """Base of a receiver on UDP and/or TCP; subclasses implement the `_on_*` / `_new_connection` hooks.

    `name` (a class attribute of the subclass) names the thread `vigil-<name>-receiver`.
    """

    name: str

    def __init__(
        self,
        udp_listen: str | None,
        tcp_listen: str | None,
        *,
        max_datagram_bytes: int,
        max_connections: int,
        udp_rcvbuf: int | None = None,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`udp_rcvbuf` asks the kernel for a larger UDP buffer (bursty senders); None keeps the default.
        `idle_timeout_s` closes TCP connections silent that long (None: never); `monotonic` is for tests."""
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ValueError("idle_timeout_s must be positive (or None)")
        self.udp_listen = udp_listen
        self.tcp_listen = tcp_listen
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self._monotonic = monotonic
        self._max_datagram = max_datagram_bytes
        self._udp_rcvbuf = udp_rcvbuf

        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._conns: dict[socket.socket, ConnT] = {}
        # Last activity (monotonic) per connection, least recently active first: a read moves the
        # connection to the end, so the sweep and the eviction only ever look at the front.
        self._activity: dict[socket.socket, float] = {}
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- protocol hooks (run in the receiving thread) ------------------------------------------

    def _new_connection(self, peer: str) -> ConnT:
        """The state of a new TCP connection from `peer` (an IP address)."""
        raise NotImplementedError

    def _on_datagram(self, data: bytes, peer: str) -> None:
        """One UDP datagram of at most `max_datagram_bytes`."""
        raise NotImplementedError

    def _on_oversize_datagram(self) -> None:
        """A UDP datagram longer than `max_datagram_bytes` was skipped."""
        raise NotImplementedError

    def _on_stream(self, state: ConnT, data: bytes) -> None:
        """Bytes read from a TCP connection."""
        raise NotImplementedError

    def _on_stream_end(self, state: ConnT) -> None:
        """The connection is closed (EOF, reset or idleness; already unregistered): flush a partial frame."""
        raise NotImplementedError

    def _on_rejected(self) -> None:
        """A TCP connection was closed at once: `max_connections` are open and none idle long enough."""
        raise NotImplementedError

    def _on_error(self, kind: ErrorKind, exc: Exception) -> None:
        """A receive error (`udp`), a failed accept (`accept`) or a bug in a hook (`internal`)."""
        raise NotImplementedError

    def _on_idle_closed(self, evicted: bool) -> None:
        """A connection was closed for idleness (after `_on_stream_end`): silent for `idle_timeout_s`
        (`evicted` False), or the longest idle one, closed to make room for a new connection (True).
        Does nothing unless overridden."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the sockets (raising OSError/ValueError if it cannot) and start the thread."""
        if self._thread is not None:
            return
        try:
            if self.udp_listen:
                fam, addr = bind_address(self.udp_listen, socket.SOCK_DGRAM)
                self._udp = socket.socket(fam, socket.SOCK_DGRAM)
                if self._udp_rcvbuf:
                    with contextlib.suppress(OSError):  # a smaller buffer still works
                        self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._udp_rcvbuf)
                self._udp.bind(addr)
                self._udp.setblocking(False)
                self.udp_address = self._udp.getsockname()[:2]
            if self.tcp_listen:
                fam, addr = bind_address(self.tcp_listen, socket.SOCK_STREAM)
                self._tcp = socket.socket(fam, socket.SOCK_STREAM)
                self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._tcp.bind(addr)
                self._tcp.listen(_LISTEN_BACKLOG)
                self._tcp.setblocking(False)
                self.tcp_address = self._tcp.getsockname()[:2]
            # stop() writes to this pair to wake the selector at once instead of polling.
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
        except BaseException:
            self._close_all()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"vigil-{self.name}-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every socket; partial TCP data is dropped."""
        if self._thread is None:
            return
        self._stop.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # the thread is woken, or its select timeout does it
                self._wake_w.send(b"x")
        self._thread.join()
        self._thread = None
        self._close_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_all(self) -> None:
        for s in (self._udp, self._tcp, self._wake_r, self._wake_w, *self._conns):
            if s is not None:
                s.close()
        self._conns.clear()
        self._activity.clear()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def connections(self) -> int:
        """Open TCP connections (read from the receiving thread's dict; a snapshot)."""
        return len(self._conns)

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
                for key, _ in sel.select(timeout=_POLL_S):
                    try:
                        self._on_ready(sel, key.fileobj)  # type: ignore[arg-type]
                    except Exception as exc:  # a bug here must not end the receiver
                        self._on_error("internal", exc)
                try:
                    self._close_idle(sel)
                except Exception as exc:
                    self._on_error("internal", exc)
        finally:
            sel.close()

    def _on_ready(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                sock.recv(64)
        elif sock is self._udp:
            self._read_udp(sock)
        elif sock is self._tcp:
            self._accept(sel, sock)
        else:
            self._read_tcp(sel, sock)

    def _read_udp(self, sock: socket.socket) -> None:
        for _ in range(_RECV_BATCH):
            try:
                # One byte more than allowed, to tell an oversized datagram from a full one.
                data, addr = sock.recvfrom(self._max_datagram + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ECONNREFUSED from an earlier ICMP error: not fatal
                self._on_error("udp", exc)
                return
            if len(data) > self._max_datagram:
                self._on_oversize_datagram()
            else:
                self._on_datagram(data, str(addr[0]))

    def _accept(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: try again on the next wake-up
            self._on_error("accept", exc)
            return
        if len(self._conns) >= self.max_connections and not self._evict_one(sel):
            conn.close()
            self._on_rejected()
            return
        conn.setblocking(False)
        self._conns[conn] = self._new_connection(str(addr[0]))
        self._activity[conn] = self._monotonic()
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
            del self._activity[sock]  # re-insert at the end: the most recently active
            self._activity[sock] = self._monotonic()
            self._on_stream(state, data)
            return
        self._close_conn(sel, sock)

    def _close_conn(self, sel: selectors.BaseSelector, sock: socket.socket) -> None:
        """Unregister and close a connection, then let the protocol flush its partial frame."""
        sel.unregister(sock)
        sock.close()
        state = self._conns.pop(sock)
        del self._activity[sock]
        self._on_stream_end(state)

    def _close_idle(self, sel: selectors.BaseSelector) -> None:
        """Close the connections silent for `idle_timeout_s` (the front of `_activity`)."""
        if self.idle_timeout_s is None or not self._activity:
            return
        now = self._monotonic()
        while self._activity:
            sock, last = next(iter(self._activity.items()))
            if now - last < self.idle_timeout_s:
                return
            self._close_conn(sel, sock)
            self._on_idle_closed(evicted=False)

    def _evict_one(self, sel: selectors.BaseSelector) -> bool:
        """At `max_connections`: close the longest idle connection if it has been idle long enough."""
        if self.idle_timeout_s is None or not self._activity:
            return False
        sock, last = next(iter(self._activity.items()))
        if self._monotonic() - last < min(_EVICT_MIN_IDLE_S, self.idle_timeout_s):
            return False
        self._close_conn(sel, sock)
        self._on_idle_closed(evicted=True)
        return True

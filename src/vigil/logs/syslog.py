"""The syslog receiver: UDP and TCP listeners for firewalls, switches and other devices that only push.

Runs in the agent and in the server. Each received message is parsed (`vigil.logs.syslogparse`: RFC
5424, RFC 3164 and the variants real devices send) and handed to `on_message(message, peer)`, where the
caller turns it into a `LogLine` (`to_log_line`) for log rules, the auth-log parser, unknown-line
detection and events. `peer` is the sender's IP address (no port: it is the device's identity).

* UDP: one message per datagram (RFC 5426); an octet count in front of it is tolerated.
* TCP: RFC 6587 octet counting and LF/NUL-terminated framing, detected per message.

Nothing a sender does can stop the listener or starve other senders: one thread serves all sockets
through a selector without blocking on any of them, each TCP connection buffers at most one message
(`max_message_bytes`) plus one read, and oversized, empty or badly framed messages are counted and
skipped. At most `max_connections` TCP connections are open, and silent ones cannot hold them: a
connection that sent nothing for `idle_timeout_s` (default 5 minutes) is closed, and when all slots
are taken a new connection replaces the one idle the longest (if idle at least 5 s; otherwise the new
one is closed at once). A connection that keeps sending is never closed for idleness; a sender whose
idle connection was closed reconnects, as syslog senders do. An exception from `on_message` is
counted, logged once, and the next message is delivered as usual. `on_message` runs in the receiving
thread, so it should be quick (hand the message to a queue); while it runs, nothing is read.

The object is a prometheus_client collector (`name = "syslog"`); label values are closed sets:

    vigil_syslog_messages_total{transport="udp|tcp", format="rfc5424|rfc3164|unknown"}
    vigil_syslog_malformed_total{transport, reason="oversized|framing|empty|decode"}
    vigil_syslog_connections                         open TCP connections
    vigil_syslog_connections_rejected_total          over max_connections
    vigil_syslog_connections_idle_closed_total{reason="timeout|evicted"}
                                                     closed after idle_timeout_s / for a new connection
    vigil_syslog_callback_errors_total               on_message raised
    vigil_syslog_last_message_timestamp_seconds{transport}
    vigil_syslog_sender_messages_total{sender}       per sending address, at most `max_senders`
    vigil_syslog_sender_last_message_timestamp_seconds{sender}   (then sender="other")

The per-sender series are what a "no syslog from the firewall for an hour" alert needs; the sender is
the peer address, not the hostname in the message (which a device may set to anything), and their
number is capped so a spoofed flood of UDP sources cannot create series without bound. Slots are not
kept forever: when the table is full and a new address sends, the sender not heard from for the
longest time gives up its slot if that is at least `sender_expiry_s` (default 24 hours), so a burst of
spoofed sources fills the table for a day at most, and a device added later gets its own series then.
Only when every sender was heard from more recently does the newcomer count as sender="other". An
evicted sender that comes back gets a slot again, with its counter starting over (a counter reset).

`reason="decode"` counts messages that were not UTF-8; they are still delivered (with U+FFFD), because
a firewall's line with one Latin-1 byte is worth more than the byte. The other reasons are not
delivered.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, tzinfo

from prometheus_client import Metric

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
from vigil.receiver import ErrorKind, SocketReceiver

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

_UDP_RCVBUF = 4 << 20  # firewalls burst; the kernel caps this at net.core.rmem_max


class _Conn:
    __slots__ = ("decoder", "peer")

    def __init__(self, peer: str, max_message_bytes: int) -> None:
        self.peer = peer
        self.decoder = FrameDecoder(max_message_bytes)


class SyslogServer(SocketReceiver[_Conn]):
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
        max_senders: int = 1000,
        sender_expiry_s: float = 86400.0,
        idle_timeout_s: float | None = 300.0,
        tz: tzinfo = UTC,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`source` is the LogLine source name the caller uses; `tz` is the zone of sender stamps
        without an offset (BSD stamps); `idle_timeout_s` closes silent TCP connections (None: never);
        `clock` (wall clock: stamps, sender expiry) and `monotonic` (connection idleness) are for tests."""
        if max_message_bytes <= 0 or max_connections <= 0:
            raise ValueError("max_message_bytes and max_connections must be positive")
        if not sender_expiry_s > 0:
            raise ValueError("sender_expiry_s must be positive")
        if not udp_listen and not tcp_listen:
            raise ValueError("syslog needs a UDP or a TCP listen address")
        super().__init__(
            udp_listen,
            tcp_listen,
            max_datagram_bytes=max_message_bytes,
            max_connections=max_connections,
            udp_rcvbuf=_UDP_RCVBUF,
            idle_timeout_s=idle_timeout_s,
            monotonic=monotonic,
        )
        self.on_message = on_message
        self.max_message_bytes = max_message_bytes
        self.source = source
        self.tz = tz
        self._clock = clock

        # Counters are guarded by _lock: the receiving thread writes, collect() reads.
        self._lock = threading.Lock()
        self._messages = {(t, f): 0 for t in TRANSPORTS for f in FORMATS}
        self._malformed = {(t, r): 0 for t in TRANSPORTS for r in MALFORMED_REASONS}
        self._last: dict[str, float] = {}
        self._max_senders = max_senders
        self._sender_expiry = sender_expiry_s
        # peer -> [messages, last seen], least recently seen first (a message moves it to the end)
        self._senders: dict[str, list[float]] = {}
        self._other: list[float] | None = None  # sender="other", once a sender did not fit
        self._rejected = 0
        self._idle_closed = {"timeout": 0, "evicted": 0}
        self._callback_errors = 0
        self._logged: set[str] = set()

    # -- receiving (SocketReceiver hooks) ----------------------------------------------------

    def _new_connection(self, peer: str) -> _Conn:
        return _Conn(peer, self.max_message_bytes)

    def _on_datagram(self, data: bytes, peer: str) -> None:
        self._deliver("udp", unframe_datagram(data), peer)

    def _on_oversize_datagram(self) -> None:
        self._count_malformed("udp", "oversized")

    def _on_stream(self, state: _Conn, data: bytes) -> None:
        self._deliver_frames(state.decoder.feed(data), state.peer)

    def _on_stream_end(self, state: _Conn) -> None:
        self._deliver_frames(state.decoder.finish(), state.peer)

    def _on_rejected(self) -> None:
        with self._lock:
            self._rejected += 1
        self._log_once("max_connections", "syslog: max_connections reached, closing new ones")

    def _on_idle_closed(self, evicted: bool) -> None:
        with self._lock:
            self._idle_closed["evicted" if evicted else "timeout"] += 1

    def _on_error(self, kind: ErrorKind, exc: Exception) -> None:
        if kind == "udp" and isinstance(exc, OSError):
            name = errno.errorcode.get(exc.errno or 0, str(exc))
            self._log_once(f"udp:{name}", "syslog: UDP receive error %s (logged once)", name)
        elif kind == "accept":
            self._log_once("accept", "syslog: accept failed: %s (logged once)", exc)
        else:
            self._log_once("internal", "syslog: internal error (logged once)", exc_info=exc)

    def _deliver_frames(self, frames: Iterable[bytes | FrameError], peer: str) -> None:
        for frame in frames:
            if isinstance(frame, FrameError):
                self._count_malformed("tcp", frame.reason)
            else:
                self._deliver("tcp", frame, peer)

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
            sender = self._sender(peer, now)
            sender[0] += 1
            sender[1] = now
            if not msg.valid_utf8:
                self._malformed[(transport, "decode")] += 1
        try:
            self.on_message(msg, peer)
        except Exception:
            with self._lock:
                self._callback_errors += 1
            self._log_once("callback", "syslog: on_message failed (logged once)", exc_info=True)

    def _sender(self, peer: str, now: float) -> list[float]:
        """The [messages, last seen] of `peer`, or of "other" if the table is full. Holds _lock."""
        sender = self._senders.pop(peer, None)
        if sender is None:
            if len(self._senders) >= self._max_senders and self._senders:
                oldest, (_, seen) = next(iter(self._senders.items()))
                if now - seen >= self._sender_expiry:
                    del self._senders[oldest]
            if len(self._senders) >= self._max_senders:
                if self._other is None:
                    self._other = [0.0, 0.0]
                return self._other
            sender = [0.0, 0.0]
        self._senders[peer] = sender  # (re)inserted at the end: the most recently seen
        return sender

    def _count_malformed(self, transport: str, reason: str) -> None:
        with self._lock:
            self._malformed[(transport, reason)] += 1

    def _log_once(self, key: str, fmt: str, *args: object, exc_info: bool | BaseException = False) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning(fmt, *args, exc_info=exc_info)

    # -- collector ---------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """{"messages": {(transport, format): n}, "malformed": {(transport, reason): n}}."""
        with self._lock:
            return {"messages": dict(self._messages), "malformed": dict(self._malformed)}

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            messages = dict(self._messages)
            malformed = dict(self._malformed)
            last = dict(self._last)
            senders = {peer: tuple(v) for peer, v in self._senders.items()}
            if self._other is not None:
                senders["other"] = tuple(self._other)
            rejected, callback_errors = self._rejected, self._callback_errors
            idle_closed = dict(self._idle_closed)
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
            "Syslog TCP connections closed at once because max_connections were open and none idle.",
            "counter",
        )
        rej.add_sample("vigil_syslog_connections_rejected_total", {}, float(rejected))
        idle = Metric(
            "vigil_syslog_connections_idle_closed",
            "Syslog TCP connections closed for idleness: silent for idle_timeout_s (reason=timeout), "
            "or the longest idle one, closed to admit a new connection at max_connections "
            "(reason=evicted).",
            "counter",
        )
        for reason, n in idle_closed.items():
            idle.add_sample("vigil_syslog_connections_idle_closed_total", {"reason": reason}, float(n))
        cb = Metric("vigil_syslog_callback_errors", "Syslog messages whose handler raised.", "counter")
        cb.add_sample("vigil_syslog_callback_errors_total", {}, float(callback_errors))
        ts = Metric(
            "vigil_syslog_last_message_timestamp_seconds",
            "When the last syslog message was received, by transport.",
            "gauge",
        )
        for transport, when in last.items():
            ts.add_sample("vigil_syslog_last_message_timestamp_seconds", {"transport": transport}, when)
        sm = Metric(
            "vigil_syslog_sender_messages", "Syslog messages received, by sending address.", "counter"
        )
        sl = Metric(
            "vigil_syslog_sender_last_message_timestamp_seconds",
            "When the last syslog message came from each sending address.",
            "gauge",
        )
        for peer, (count, when) in sorted(senders.items()):
            sm.add_sample("vigil_syslog_sender_messages_total", {"sender": peer}, count)
            sl.add_sample("vigil_syslog_sender_last_message_timestamp_seconds", {"sender": peer}, when)
        return [m, bad, c, rej, idle, cb, ts, sm, sl]

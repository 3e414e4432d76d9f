"""Connection guards for the HTTP server: deadlines for a request's headers and body, a connection cap,
and the keep-alive period.

uvicorn closes only idle keep-alive connections: a client that connects and says nothing, or trickles
its request line and headers a byte at a time (slowloris), or its body, keeps a connection (a file
descriptor, buffers, a handler task) for as long as it likes, and enough of them starve everyone.
uvicorn's own `limit_concurrency` counts every connection against every request, so once the cap is
reached the connections already open get 503 as well. This is uvicorn's httptools protocol with one
timer per connection and a cap checked once, when a connection is accepted:

- headers: from the connection's first byte wait (or a keep-alive connection's first byte of its next
  request) to the end of the headers, at most `read_header_s`;
- body: from the end of the headers to the end of the body, at most `read_body_s`;
- either deadline missed: 408 (when no other response is due on the connection) and the connection is
  closed; a handler waiting for the body sees the client disconnect;
- time a request waits behind a pipelined one does not count: uvicorn does not read it meanwhile;
- a connection accepted while `max_connections` others are open gets 503 to its request and is closed;
  the others are served as before.

It relies on the parser callbacks and per-connection attributes of `HttpToolsProtocol`
(tests/web/test_connections.py exercises each against the installed uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["ConnectionLimits", "ConnectionMetrics", "guarded_protocol"]

log = logging.getLogger(__name__)

Phase = Literal["header", "body"]


class ConnectionMetrics:
    """The server's account of connections it cut short (on `/metrics`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.cut = Counter(
            "vigil_http_connections_closed_total",
            "Connections the server closed early, by reason: header_timeout, body_timeout, "
            "too_many_connections.",
            ["reason"],
            registry=registry,
        )
        for reason in ("header_timeout", "body_timeout", "too_many_connections"):
            self.cut.labels(reason)
        self.open = Gauge("vigil_http_connections_open", "HTTP connections open now.", registry=registry)


@dataclass(frozen=True)
class ConnectionLimits:
    keep_alive_s: float
    """An idle keep-alive connection is closed after this long."""
    read_header_s: float
    read_body_s: float
    max_connections: int
    metrics: ConnectionMetrics | None = None


def _plain(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


def _too_many(limit: int) -> Callable[[Scope, Receive, Send], Any]:
    body = f"too many open connections (server.max_connections is {limit}); retry later\n".encode()

    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # uvicorn closes the connection after this response
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and cap of `limits` (see the module docstring)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn arms its idle timer with this after each response; a float keeps sub-second values.
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = False  # some bytes of the request awaiting its headers have arrived

    # -- the deadline timer --------------------------------------------------------------------------

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        seconds = self.limits.read_header_s if phase == "header" else self.limits.read_body_s
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        in_flight = cycle is not None and not cycle.response_complete
        if self.pipeline or (phase == "header" and in_flight):
            # An earlier request on this connection is still being answered, and uvicorn does not read
            # this one meanwhile: the wait is the server's, not the client's.
            self._arm(phase)
            return
        lim = self.limits
        if phase == "header":
            message = (
                f"request headers not received within {lim.read_header_s:g}s (server.read_header_timeout)"
            )
            answer = self._partial  # a connection that never sent a byte is just closed
        else:
            message = f"request body not received within {lim.read_body_s:g}s (server.read_timeout)"
            answer = cycle is not None and not cycle.response_started
        if cycle is not None and in_flight:
            # As on a client disconnect: the handler's receive() returns http.disconnect, its send()
            # becomes a no-op, so nothing else is written after the 408.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(_plain(b"408 Request Timeout", message + "\n"))
        self.transport.close()
        if lim.metrics is not None:
            lim.metrics.cut.labels(f"{phase}_timeout").inc()
        log.debug("closed connection from %s: %s", _peer(self.client), message)  # counted in metrics

    # -- uvicorn's protocol and parser callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        lim = self.limits
        if lim.metrics is not None:
            lim.metrics.open.inc()
        if len(self.connections) > lim.max_connections:  # the set includes this connection
            self.app = _too_many(lim.max_connections)
            if lim.metrics is not None:
                lim.metrics.cut.labels("too_many_connections").inc()
        self._arm("header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.limits.metrics is not None:
            self.limits.metrics.open.dec()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            # The first bytes after an idle keep-alive wait (uvicorn stops its idle timer on any byte,
            # even the blank lines a parser skips before a request line): headers are due now.
            self._arm("header")
        if self._deadline is not None and (self.cycle is None or self.cycle.response_complete):
            self._partial = True
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._partial = True
        if self._deadline is None:  # a pipelined request, begun while the previous one is answered
            self._arm("header")

    def on_headers_complete(self) -> None:
        self._partial = False
        self._arm("body")  # disarmed again by on_message_complete, at once when there is no body
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        cycle = self.cycle
        if cycle.response_complete and self.timeout_keep_alive_task is None and not self.pipeline:
            # Answered before its body ended (a 401, a 413): uvicorn's idle timer, armed with that
            # response, was stopped by the body's bytes; without this the connection idles forever.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class to give `uvicorn.Config(http=...)`: uvicorn instantiates it per connection
    with its own arguments, so the limits travel on the class."""
    return type("VigilHttpProtocol", (GuardedProtocol,), {"limits": limits})

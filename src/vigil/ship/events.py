"""Ships security events to the server's `POST /api/v1/events`, as durably as samples.

Events travel through their own `DurableQueue` and `Shipper` (the same retry, backoff, TLS, token and
HMAC signing as remote write), so an event the agent accepted survives a crash or an outage of the
server. A payload is a batch of events as JSON lines, snappy-compressed like remote write. Events
carry stable ids, so a batch re-sent after a crash between send and acknowledgement is stored once.

Events are sent as they are queued, not on the agent's collection cadence: the sender lingers
`LINGER_S` (100 ms) after the first event of a burst so that the burst's queued entries go as one
request, merged up to `max_events_per_send` events (a burst of 10,000 is 20 requests of 500), then
acknowledges them with one `ack` of the last: every entry stays on disk until the server answered.
A merged request the server refuses as a whole is sent again entry by entry, so a bad event costs
only its own entry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Unpack
from urllib.parse import urlsplit, urlunsplit

import cramjam
from prometheus_client import CollectorRegistry

from vigil.model.event import Event
from vigil.ship.client import RemoteWriteClient
from vigil.ship.queue import DurableQueue
from vigil.ship.shipper import Shipper, ShipperOptions

__all__ = ["EventShipper", "events_url"]

_HEADERS = {"Content-Type": "application/x-ndjson", "Content-Encoding": "snappy"}
# The sender waits this long after an event is queued for others to join it in one request: a burst
# (ten failed logins, a service opening its ports) is one request, a lone event leaves at once after.
LINGER_S = 0.1


def events_url(write_url: str) -> str:
    """The events endpoint next to a remote-write URL (`…/api/v1/write` → `…/api/v1/events`)."""
    parts = urlsplit(write_url)
    path = parts.path
    path = (
        path[: -len("/write")] + "/events" if path.endswith("/write") else path.rstrip("/") + "/api/v1/events"
    )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def merge_payloads(payloads: Sequence[bytes]) -> bytes:
    """One payload with the events of `payloads` (each snappy-compressed JSON lines), in order."""
    lines = b"\n".join(bytes(cramjam.snappy.decompress_raw(p)) for p in payloads)
    return bytes(cramjam.snappy.compress_raw(lines))


class EventShipper:
    """A durable queue of events and the sender that empties it; `send` is the agent's event sink."""

    def __init__(
        self,
        directory: Path | str,
        url: str,
        *,
        token: str = "",
        hmac_key: str = "",
        ca_file: Path | str | None = None,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 24 * 3600.0,
        max_events_per_send: int = 500,
        linger_s: float = LINGER_S,
        registry: CollectorRegistry | None = None,
        **shipper_options: Unpack[ShipperOptions],
    ) -> None:
        self._max = max_events_per_send
        queue = DurableQueue(Path(directory), max_bytes=max_bytes, max_age_s=max_age_s)
        try:
            client = RemoteWriteClient(
                url,
                bearer_token=token or None,
                hmac_key=hmac_key or None,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
                headers=_HEADERS,
            )
        except BaseException:
            queue.close()
            raise
        self.shipper = Shipper(
            queue,
            client,
            registry,
            stream="events",
            merge=merge_payloads,
            linger_s=linger_s,
            max_samples_per_send=max_events_per_send,
            **shipper_options,
        )

    def send(self, events: Sequence[Event]) -> None:
        """Queue events durably (returns once they are on disk); sent in the background, in order."""
        items = []
        now_ms = int(time.time() * 1000)
        for start in range(0, len(events), self._max):
            chunk = events[start : start + self._max]
            body = "\n".join(e.to_json() for e in chunk).encode()
            # The queue's age limit is about waiting to be sent: measured from now, not from when the
            # event happened (a log line read late is still worth delivering).
            items.append((bytes(cramjam.snappy.compress_raw(body)), now_ms, len(chunk)))
        self.shipper.enqueue_payloads(items)

    def flush(self, timeout_s: float) -> bool:
        return self.shipper.flush(timeout_s)

    name = "event-shipper"

    def start(self) -> None:
        """Start the sender (constructing starts no thread); idempotent."""
        self.shipper.start()

    def stop(self) -> None:
        self.close()

    def close(self, timeout_s: float = 60.0) -> None:
        self.shipper.close(timeout_s)

"""Shipping the agent's samples to a remote-write receiver (Vigil, Prometheus, VictoriaMetrics).

`DurableQueue` keeps payloads on disk until acknowledged, `RemoteWriteClient` sends one payload and
classifies the answer, `Shipper` ties them together with a background sender; `signing` is the
optional HMAC request signature that Vigil's write endpoint can require.
"""

from vigil.ship.client import Outcome, RemoteWriteClient, SendResult
from vigil.ship.queue import DurableQueue, QueueCorruptionError, QueueEntry
from vigil.ship.shipper import Shipper

__all__ = [
    "DurableQueue",
    "Outcome",
    "QueueCorruptionError",
    "QueueEntry",
    "RemoteWriteClient",
    "SendResult",
    "Shipper",
]

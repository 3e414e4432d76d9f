"""The agent's shipper: batches samples into the durable queue and sends the queue in order.

One background thread sends one payload at a time, oldest first, and acknowledges it only after the
server answered. That single sender is what keeps samples of each series in order on the server (a
remote-write receiver refuses or reorders out-of-order samples otherwise); the agent's volume (a few
thousand samples every few seconds) is far below what one connection carries, so parallel senders
sharded by series would add complexity without a need.

Retryable failures (network, 5xx, 429) are retried forever with exponential backoff and jitter, so an
outage of any length is bridged as long as the queue's size and age limits allow; permanent failures
(other 4xx) drop the payload, counted by reason, and sending carries on with the next one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import cramjam
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.prompb.encode import encode_write_request
from vigil.ship.client import Outcome, RemoteWriteClient, SendResult
from vigil.ship.queue import DurableQueue

__all__ = ["Shipper", "build_shipper"]

log = logging.getLogger(__name__)

Labels = Sequence[tuple[str, str]]
Points = Sequence[tuple[int, float]]


class Shipper:
    """Ships samples through `queue` with `client`; takes ownership of both (`close()` closes them).

    `registry` receives the shipper's metrics; the collector is unregistered on `close()`, so a new
    Shipper can register into the same registry afterwards.
    """

    def __init__(
        self,
        queue: DurableQueue,
        client: RemoteWriteClient,
        registry: CollectorRegistry | None = None,
        *,
        max_samples_per_send: int = 2000,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 300.0,
        idle_poll_s: float = 30.0,  # enqueue and close wake the sender; this is only a safety net
        start: bool = True,
    ) -> None:
        if max_samples_per_send <= 0:
            raise ValueError(f"max_samples_per_send must be positive, got {max_samples_per_send}")
        self._queue = queue
        self._client = client
        self._registry = registry
        self._max_samples = max_samples_per_send
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._max_retry_after = max_retry_after_s
        self._idle_poll = idle_poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stats_lock = threading.Lock()
        self.samples_sent = 0
        self.bytes_sent = 0
        self.retries = 0
        self._dropped: dict[str, int] = {}  # permanent failures, by reason ("http_400", ...)
        self._collector = _ShipperCollector(self)
        if registry is not None:
            registry.register(self._collector)
        self._thread = threading.Thread(target=self._run, name="vigil-shipper", daemon=True)
        self._closed = False
        if start:
            self._thread.start()

    # -- producing -----------------------------------------------------------------------------

    def enqueue(
        self,
        series_labels: Sequence[Labels] | tuple[Sequence[Labels], Sequence[Points]],
        samples: Sequence[Points] | None = None,
    ) -> int:
        """Queue samples durably, in payloads of at most `max_samples_per_send` samples.

        `samples[i]` are (timestamp ms, value) pairs of the series `series_labels[i]`, in time order.
        A series with more samples than fit is split across consecutive payloads, which are sent in
        order. Labels are sorted by name here, as remote write requires. Returns the payload count.
        Also callable as `enqueue((series_labels, samples))`, the agent runner's sink signature.
        """
        if samples is None:
            batch = cast(tuple[Sequence[Labels], Sequence[Points]], series_labels)
            all_labels, all_points = batch
        else:
            all_labels, all_points = cast(Sequence[Labels], series_labels), samples
        items: list[tuple[bytes, int, int]] = []
        batch_series: list[Labels] = []
        batch_points: list[Points] = []
        count = 0

        def cut() -> None:
            nonlocal batch_series, batch_points, count
            if count:
                body = bytes(cramjam.snappy.compress_raw(encode_write_request(batch_series, batch_points)))
                oldest = min(pts[0][0] for pts in batch_points)
                items.append((body, oldest, count))
            batch_series, batch_points, count = [], [], 0

        for labels, points in zip(all_labels, all_points, strict=True):
            if not points:
                continue
            ordered = sorted(labels)
            start = 0
            while start < len(points):
                take = min(len(points) - start, self._max_samples - count)
                batch_series.append(ordered)
                batch_points.append(points[start : start + take])
                count += take
                start += take
                if count >= self._max_samples:
                    cut()
        cut()
        if items:
            self._queue.append_many(items)
            self._wake.set()
        return len(items)

    # -- sending -------------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential with "equal jitter": at least half the step, so retries still back off, and
        # random in the other half, so many agents recovering from one outage do not send in lockstep.
        step = min(self._max_backoff, self._min_backoff * 2 ** min(attempt, 30))
        delay = step / 2 + random.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_retry_after))
        return delay

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                entry = self._queue.peek()
                if entry is None:
                    self._wake.wait(self._idle_poll)
                    continue
                result = self._client.send(entry.payload)
                if result.outcome is Outcome.RETRY:
                    with self._stats_lock:
                        self.retries += 1
                    self._stop.wait(self._backoff(attempt, result.retry_after_s))
                    attempt += 1
                    continue
                self._account(result, entry.samples, len(entry.payload))
                # After the server's answer and not before: see the queue's module docstring for what
                # a crash between the two means (a harmless resend).
                self._queue.ack(entry.seq)
                attempt = 0
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("shipper: unexpected error; retrying")
                self._stop.wait(self._backoff(attempt, None))
                attempt += 1

    def _account(self, result: SendResult, samples: int, nbytes: int) -> None:
        with self._stats_lock:
            if result.outcome is Outcome.OK:
                self.samples_sent += samples
                self.bytes_sent += nbytes
            else:
                self._dropped[result.reason] = self._dropped.get(result.reason, 0) + samples

    # -- state and lifecycle -------------------------------------------------------------------

    def dropped_samples(self) -> dict[str, int]:
        """Samples dropped, by reason: the queue's ("full", "too_old") and permanent send failures."""
        merged = {"full": 0, "too_old": 0}
        for reason, n in self._queue.dropped_samples.items():
            merged[reason] = merged.get(reason, 0) + n
        with self._stats_lock:
            for reason, n in self._dropped.items():
                merged[reason] = merged.get(reason, 0) + n
        return merged

    def flush(self, timeout_s: float) -> bool:
        """Wait until the queue is empty (everything sent or dropped); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.depth()[0]:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop sending, then close the client and the queue. Idempotent.

        Waits for a send in progress to finish (bounded by the client's timeout); what is still queued
        stays on disk and is sent by the next Shipper on the same queue directory.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("shipper: the sender did not stop within %.0fs; closing anyway", timeout_s)
        if self._registry is not None:
            self._registry.unregister(self._collector)
        self._client.close()
        self._queue.close()

    def __enter__(self) -> Shipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_shipper(
    *,
    directory: Path | str,
    url: str,
    token: str = "",
    hmac_key: str = "",
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    max_bytes: int = 512 * 1024 * 1024,
    max_age_s: float = 24 * 3600.0,
    max_samples: int = 2000,
    registry: CollectorRegistry | None = None,
) -> Shipper:
    """A running Shipper from configuration values (`agent.ship` in vigil.yml); "" means "not set"."""
    queue = DurableQueue(directory, max_bytes=max_bytes, max_age_s=max_age_s)
    try:
        client = RemoteWriteClient(
            url,
            bearer_token=token or None,
            hmac_key=hmac_key or None,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
    except BaseException:
        queue.close()
        raise
    return Shipper(queue, client, registry, max_samples_per_send=max_samples)


class _ShipperCollector:
    """Reads the shipper's and the queue's state at scrape time, so gauges are never stale."""

    def __init__(self, shipper: Shipper) -> None:
        self._shipper = shipper

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        s = self._shipper
        with s._stats_lock:
            sent, nbytes, retries = s.samples_sent, s.bytes_sent, s.retries
        yield CounterMetricFamily(
            "vigil_agent_ship_samples", "Samples delivered (the server answered 2xx).", value=sent
        )
        yield CounterMetricFamily(
            "vigil_agent_ship_bytes", "Compressed payload bytes delivered.", value=nbytes
        )
        yield CounterMetricFamily(
            "vigil_agent_ship_retries", "Sends that failed with a retryable error.", value=retries
        )
        dropped = CounterMetricFamily(
            "vigil_agent_ship_dropped_samples",
            "Samples given up on, by reason: full or too_old (queue limits), http_<status> (refused).",
            labels=["reason"],
        )
        for reason, n in sorted(s.dropped_samples().items()):
            dropped.add_metric([reason], n)
        yield dropped
        entries, qbytes = s._queue.depth()
        yield GaugeMetricFamily("vigil_agent_queue_entries", "Payloads waiting to be sent.", value=entries)
        yield GaugeMetricFamily(
            "vigil_agent_queue_bytes", "Compressed bytes waiting to be sent.", value=qbytes
        )
        yield GaugeMetricFamily(
            "vigil_agent_queue_oldest_sample_age_seconds",
            "Age of the oldest sample not yet sent (0 when the queue is empty).",
            value=s._queue.oldest_sample_age_s(),
        )

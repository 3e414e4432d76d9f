"""The agent's shipper: batches samples into durable queues and sends each queue in order.

A `Shipper` is one shard: one durable queue, one connection, one background thread that sends one
payload at a time, oldest first, and acknowledges it only after the server answered. `ShardedShipper`
(what `build_shipper` returns) runs several shards in parallel and routes every series to a fixed shard
by a stable hash of its label set, so each series' samples are still sent in order (a remote-write
receiver refuses out-of-order samples) while different series travel over several connections.

On disk, shard i lives in `<directory>/shard-<i>/` and `<directory>/shards.json` records the layout.
Queues left by an earlier layout are drained, not lost: the pre-sharding queue (`<directory>/wal`) and
`shard-<i>` directories beyond the current count are opened as extra, send-only shards. When the count
changed with data queued, a series may have old samples in one queue and new ones in another, so every
shard holds back what was queued after the change until all queues sent what was queued before it. The
state file records that boundary (each queue's first new sequence number) until the old backlog is sent;
a restart in between resumes the same transition, and a different count requested meanwhile takes
effect only on a later start, so there are never more than two generations of data to order.

Retryable failures (network, 5xx, 429) are retried forever with exponential backoff and jitter, so an
outage of any length is bridged as long as the queue's size and age limits allow; permanent failures
(other 4xx) drop the payload, counted by reason, and sending carries on with the next one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypedDict, Unpack, cast

import cramjam
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil.model.batch import MetricMetadata
from vigil.prompb.encode import encode_write_request
from vigil.ship.client import Outcome, RemoteWriteClient, SendResult
from vigil.ship.queue import DurableQueue, QueueEntry

__all__ = ["ShardedShipper", "Shipper", "build_shipper"]

log = logging.getLogger(__name__)

Labels = Sequence[tuple[str, str]]
Points = Sequence[tuple[int, float]]
# Read-only view of vigil.model.batch.Batch: what enqueue accepts (a model Batch is one).
Batch = tuple[Sequence[Labels], Sequence[Points]]

_LAYOUT = "shards.json"  # {"shards": N} or, during a transition, {"shards": N, "hold": {queue: seq}}
_SHARD_DIR = re.compile(r"shard-(\d+)")


def _unpack(series_labels: Sequence[Labels] | Batch, samples: Sequence[Points] | None) -> Batch:
    """(series, samples) from either calling convention of `enqueue`."""
    if samples is None:
        return cast(Batch, series_labels)
    return cast(Sequence[Labels], series_labels), samples


class _Barrier:
    """Holds back the samples queued by this run until every queue sent those left by earlier runs."""

    def __init__(self, parties: int, on_release: Callable[[], None]) -> None:
        self._pending = parties
        self._lock = threading.Lock()
        self._on_release = on_release
        self.released = threading.Event()

    def arrive(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending:
                return
        try:
            self._on_release()
        except Exception:
            log.exception("shipper: could not record the queue layout")
        self.released.set()


class ShipperOptions(TypedDict, total=False):
    """`Shipper`'s retry timing, which the builders pass through to every shipper they make."""

    min_backoff_s: float
    max_backoff_s: float
    max_retry_after_s: float
    idle_poll_s: float


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
        barrier: _Barrier | None = None,
        hold_from: int | None = None,
        stream: str = "samples",
        merge: Callable[[Sequence[bytes]], bytes] | None = None,
        linger_s: float = 0.0,
        max_bytes_per_send: int = 4 << 20,
        max_entries_per_send: int = 1000,
    ) -> None:
        """`merge` (payloads -> one payload with all their items) lets one request carry several
        queued entries, up to `max_samples_per_send` items, `max_bytes_per_send` payload bytes and
        `max_entries_per_send` entries (the head always goes, whatever its size); `linger_s` is how
        long the sender waits, when something is queued after the queue was empty, for more to join
        it (unless a full request is queued already). Not with a `barrier`."""
        if max_samples_per_send <= 0:
            raise ValueError(f"max_samples_per_send must be positive, got {max_samples_per_send}")
        if merge is not None and barrier is not None:
            raise ValueError("merging entries and a re-sharding barrier do not go together")
        self._merge = merge
        self._linger = linger_s
        self._max_bytes_per_send = max_bytes_per_send
        self._max_entries_per_send = max_entries_per_send
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
        self._barrier = barrier
        # With a barrier, entries from this seq on wait for it; by default those queued from now on.
        self._hold_from = queue.next_seq if hold_from is None else hold_from
        self._collector = _ShipperCollector(lambda: [self], stream)
        if registry is not None:
            registry.register(self._collector)
        self._thread = threading.Thread(target=self._run, name="vigil-shipper", daemon=True)
        self._closed = False  # the sender starts in start(): constructing starts no thread

    # -- lifecycle (a service of vigil.cmd.run: name, start, stop) ------------------------------

    name = "shipper"

    def start(self) -> None:
        """Start the sender; idempotent, and nothing once closed. Enqueueing works before it."""
        if not self._closed and self._thread.ident is None:
            self._thread.start()

    def stop(self) -> None:
        self.close()

    # -- producing -----------------------------------------------------------------------------

    def enqueue(
        self,
        series_labels: Sequence[Labels] | tuple[Sequence[Labels], Sequence[Points]],
        samples: Sequence[Points] | None = None,
        metadata: Sequence[MetricMetadata] = (),
    ) -> int:
        """Queue samples durably, in payloads of at most `max_samples_per_send` samples.

        `samples[i]` are (timestamp ms, value) pairs of the series `series_labels[i]`, in time order.
        A series with more samples than fit is split across consecutive payloads, which are sent in
        order. Labels are sorted by name here, as remote write requires. Returns the payload count.
        Also callable as `enqueue((series_labels, samples))`, the agent runner's sink signature.
        `metadata` (family, type, help, unit) travels in the first payload, as remote write allows.
        """
        all_labels, all_points = _unpack(series_labels, samples)
        items: list[tuple[bytes, int, int]] = []
        batch_series: list[Labels] = []
        batch_points: list[Points] = []
        count = 0
        pending_metadata = metadata

        def cut() -> None:
            nonlocal batch_series, batch_points, count, pending_metadata
            if count:
                request = encode_write_request(batch_series, batch_points, pending_metadata)
                pending_metadata = ()
                body = bytes(cramjam.snappy.compress_raw(request))
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
        return self.enqueue_payloads(items)

    def enqueue_payloads(self, items: Sequence[tuple[bytes, int, int]]) -> int:
        """Queue ready-made payloads `(body, oldest timestamp ms, item count)` durably, in order."""
        if items:
            self._queue.append_many(items)
            self._wake.set()
        return len(items)

    # -- sending -------------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # Exponential with "equal jitter": at least half the step, so retries still back off, and
        # random in the other half, so many agents recovering from one outage do not send in lockstep.
        step: float = min(self._max_backoff, self._min_backoff * 2 ** min(attempt, 30))  # int ** int is Any
        delay = step / 2 + random.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_retry_after))
        return delay

    def _run(self) -> None:
        attempt = 0
        arrived = False
        idle = True  # the queue was found empty: what arrives next may linger for company
        solo_until = -1  # entries up to this seq go one per request (a merged request was refused)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                entry = self._queue.peek()
                barrier = self._barrier
                if barrier is not None and not barrier.released.is_set():
                    if not arrived and (entry is None or entry.seq >= self._hold_from):
                        arrived = True  # this queue's backlog from earlier runs is sent
                        barrier.arrive()
                    if arrived and entry is not None and not barrier.released.is_set():
                        self._stop.wait(0.05)
                        continue
                if entry is None:
                    idle = True
                    self._wake.wait(self._idle_poll)
                    continue
                batch = [entry]
                if self._merge is not None and entry.seq > solo_until:
                    if idle and self._linger > 0:
                        idle = False
                        self._linger_for_more()
                        continue  # peek again: the head may have been dropped meanwhile
                    batch = self._batch() or batch
                idle = False
                payload = batch[0].payload if len(batch) == 1 else self._merge_payloads(batch)
                result = self._client.send(payload)
                if result.outcome is Outcome.RETRY:
                    with self._stats_lock:
                        self.retries += 1
                    self._stop.wait(self._backoff(attempt, result.retry_after_s))
                    attempt += 1
                    continue
                if result.outcome is not Outcome.OK and len(batch) > 1:
                    # Refused as a whole (a bad item, too large): send these one by one, so only
                    # what the server refuses on its own is dropped.
                    solo_until = batch[-1].seq
                    continue
                self._account(result, sum(e.samples for e in batch), len(payload))
                # After the server's answer and not before: see the queue's module docstring for what
                # a crash between the two means (a harmless resend). One ack for the whole batch.
                self._queue.ack(batch[-1].seq)
                attempt = 0
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("shipper: unexpected error; retrying")
                self._stop.wait(self._backoff(attempt, None))
                attempt += 1

    def _batch(self) -> list[QueueEntry]:
        return self._queue.peek_many(self._max_entries_per_send, self._max_samples, self._max_bytes_per_send)

    def _merge_payloads(self, batch: Sequence[QueueEntry]) -> bytes:
        assert self._merge is not None
        return self._merge([e.payload for e in batch])

    def _linger_for_more(self) -> None:
        """Wait up to `linger_s` for more entries to join the head, or until a full request is queued
        (enqueue wakes the sender), or until stopped."""
        deadline = time.monotonic() + self._linger
        while not self._stop.is_set():
            self._wake.clear()
            entries, _ = self._queue.depth()  # before the batch: entries only join meanwhile
            batch = self._batch()
            if not batch:
                return
            if len(batch) < entries or sum(e.samples for e in batch) >= self._max_samples:
                return  # more is queued than one request takes: send now
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)

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

    def depth(self) -> tuple[int, int]:
        """Unsent (payloads, bytes) in the queue."""
        return self._queue.depth()

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


class ShardedShipper:
    """Shippers in parallel, each series always on the same one; the API of `Shipper`.

    `shards` receive samples (series routed by `shard_of`); `draining` are queues from an earlier layout
    that are only sent. Takes ownership of all of them; one collector in `registry` sums their metrics.
    """

    def __init__(
        self,
        shards: Sequence[Shipper],
        draining: Sequence[Shipper] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not shards:
            raise ValueError("a ShardedShipper needs at least one shard")
        self.shards = list(shards)
        self.draining = list(draining)
        self._registry = registry
        self._collector = _ShipperCollector(lambda: self.shards + self.draining)
        if registry is not None:
            registry.register(self._collector)
        self._closed = False

    def shard_of(self, labels: Labels) -> int:
        """The shard of a series: a hash of its sorted label set, stable across runs and processes."""
        # 0xff never occurs in UTF-8, so it separates names and values unambiguously (as in Prometheus).
        key = b"\xff".join(part.encode() for pair in sorted(labels) for part in pair)
        return zlib.crc32(key) % len(self.shards)

    def enqueue(
        self,
        series_labels: Sequence[Labels] | Batch,
        samples: Sequence[Points] | None = None,
        metadata: Sequence[MetricMetadata] = (),
    ) -> int:
        """Split the batch by shard and queue each part (see `Shipper.enqueue`); returns the payload count.
        `metadata` goes with the first part only: it is per family, not per series."""
        all_labels, all_points = _unpack(series_labels, samples)
        parts: dict[int, tuple[list[Labels], list[Points]]] = {}
        for labels, points in zip(all_labels, all_points, strict=True):
            if points:
                part = parts.setdefault(self.shard_of(labels), ([], []))
                part[0].append(labels)
                part[1].append(points)
        return sum(
            self.shards[i].enqueue(lbs, pts, metadata if n == 0 else ())
            for n, (i, (lbs, pts)) in enumerate(sorted(parts.items()))
        )

    @property
    def samples_sent(self) -> int:
        return sum(s.samples_sent for s in self.shards + self.draining)

    @property
    def bytes_sent(self) -> int:
        return sum(s.bytes_sent for s in self.shards + self.draining)

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.shards + self.draining)

    def dropped_samples(self) -> dict[str, int]:
        """Samples dropped, by reason, summed over the shards (see `Shipper.dropped_samples`)."""
        merged: dict[str, int] = {}
        for shard in self.shards + self.draining:
            for reason, n in shard.dropped_samples().items():
                merged[reason] = merged.get(reason, 0) + n
        return merged

    def depth(self) -> tuple[int, int]:
        """Unsent (payloads, bytes) over all queues."""
        depths = [s.depth() for s in self.shards + self.draining]
        return sum(d[0] for d in depths), sum(d[1] for d in depths)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queue is empty; False on timeout."""
        deadline = time.monotonic() + timeout_s
        return all(s.flush(max(0.0, deadline - time.monotonic())) for s in self.shards + self.draining)

    name = "shipper"

    def start(self) -> None:
        """Start every shard's sender (the draining ones too); idempotent."""
        for shard in self.shards + self.draining:
            shard.start()

    def stop(self) -> None:
        self.close()

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop every shard (in parallel, so the wait is bounded by one send) and close them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        everything = self.shards + self.draining
        for shard in everything:  # signal all first: their in-flight sends then finish concurrently
            shard._stop.set()
            shard._wake.set()
        if self._registry is not None:
            self._registry.unregister(self._collector)
        for shard in everything:
            shard.close(timeout_s)

    def __enter__(self) -> ShardedShipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_layout(root: Path) -> tuple[int | None, dict[str, int] | None]:
    """(shard count, pending transition's boundaries) from the state file; (None, None) if absent."""
    try:
        state = json.loads((root / _LAYOUT).read_text())
        hold = state.get("hold")
        return int(state["shards"]), {str(k): int(v) for k, v in hold.items()} if hold is not None else None
    except FileNotFoundError:
        return None, None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Treated as "layout unknown": any queued data is then sent before new data (safe, just slower).
        log.warning("send queue state %s is unreadable (%s); treating the layout as changed", root, exc)
        return None, None


def _write_layout(root: Path, count: int, hold: dict[str, int] | None = None) -> None:
    state: dict[str, object] = {"shards": count} | ({"hold": hold} if hold is not None else {})
    tmp = root / (_LAYOUT + ".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(state) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / _LAYOUT)


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
    connections: int = 2,
    **shipper_options: Unpack[ShipperOptions],
) -> ShardedShipper:
    """A running ShardedShipper from configuration values (`agent.ship` in vigil.yml); "" is "not set".

    `connections` shards share `max_bytes` evenly. `shipper_options` go to each `Shipper` (backoff
    settings; for tests).
    """
    if connections <= 0:
        raise ValueError(f"connections must be positive, got {connections}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    recorded, hold = _read_layout(root)
    if hold is not None and recorded is not None and recorded != connections:
        log.warning(
            "send queue %s is still changing to %d shards; %d connections take effect on a later start, "
            "once the old backlog is sent",
            root,
            recorded,
            connections,
        )
        connections = recorded
    per_shard = max(1, max_bytes // connections)
    opened: list[DurableQueue] = []
    clients: list[RemoteWriteClient] = []

    def open_queue(path: Path, limit: int) -> DurableQueue:
        opened.append(DurableQueue(path, max_bytes=limit, max_age_s=max_age_s))
        return opened[-1]

    try:
        active = [open_queue(root / f"shard-{i}", per_shard) for i in range(connections)]
        # Earlier layouts: the pre-sharding queue, and shards beyond the current count.
        old_paths = [root] if (root / "wal").is_dir() else []
        for path in sorted(root.iterdir()):
            m = _SHARD_DIR.fullmatch(path.name)
            if m and path.is_dir() and int(m.group(1)) >= connections:
                old_paths.append(path)
        extra = []
        for path in old_paths:
            queue = open_queue(path, max_bytes)  # never drop what is already queued for lack of room
            if queue.depth()[0]:
                log.info("send queue %s is from an earlier layout; draining it", path)
                extra.append(queue)
        names = {id(q): q.directory.relative_to(root).as_posix() for q in active + extra}
        if hold is None and (extra or (recorded != connections and any(q.depth()[0] for q in active))):
            # A new transition: what is queued now goes first. Recorded before anything new is queued.
            hold = {names[id(q)]: q.next_seq for q in active + extra}
            _write_layout(root, connections, hold)
            log.info("send queue layout changed to %d shards: sending the old backlog first", connections)
        elif hold is None and recorded != connections:
            _write_layout(root, connections)  # nothing queued anywhere: the new layout holds trivially
        barrier = None
        if hold is not None:
            barrier = _Barrier(len(active) + len(extra), lambda: _write_layout(root, connections))

        def make(queue: DurableQueue) -> Shipper:
            # A queue missing from `hold` has only old data (nothing new is queued in a draining one).
            hold_from = hold.get(names[id(queue)], queue.next_seq) if hold is not None else None
            client = RemoteWriteClient(
                url,
                bearer_token=token or None,
                hmac_key=hmac_key or None,
                ca_file=ca_file,
                cert_file=cert_file,
                key_file=key_file,
            )
            clients.append(client)
            return Shipper(
                queue,
                client,
                None,
                max_samples_per_send=max_samples,
                barrier=barrier,
                hold_from=hold_from,
                **shipper_options,
            )

        shards, draining = [make(q) for q in active], [make(q) for q in extra]
    except BaseException:
        for client in clients:
            client.close()
        for queue in opened:
            queue.close()
        raise
    for queue in opened:
        if not any(queue is q for q in active + extra):
            queue.close()  # an empty queue from an earlier layout
    return ShardedShipper(shards, draining, registry)


class _ShipperCollector:
    """Reads the shippers' and queues' state at scrape time, so gauges are never stale; sums over shards.

    `stream` names what is shipped: "samples" (remote write: `vigil_agent_ship_samples_total`,
    `vigil_agent_queue_*`) or "events" (`vigil_agent_events_shipped_total`, `vigil_agent_events_queue_*`).
    """

    def __init__(self, shippers: Callable[[], Sequence[Shipper]], stream: str = "samples") -> None:
        self._shippers = shippers
        self._stream = stream

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        shippers = self._shippers()
        sent = nbytes = retries = entries = qbytes = 0
        oldest = 0.0
        dropped_by: dict[str, int] = {}
        for s in shippers:
            with s._stats_lock:
                sent, nbytes, retries = sent + s.samples_sent, nbytes + s.bytes_sent, retries + s.retries
            for reason, n in s.dropped_samples().items():
                dropped_by[reason] = dropped_by.get(reason, 0) + n
            e, b = s._queue.depth()
            entries, qbytes = entries + e, qbytes + b
            oldest = max(oldest, s._queue.oldest_sample_age_s())
        # Samples keep their established names; the events stream mirrors them under its own prefix.
        unit, ship, queue = (
            ("samples", "vigil_agent_ship", "vigil_agent_queue")
            if self._stream == "samples"
            else ("events", "vigil_agent_events_ship", "vigil_agent_events_queue")
        )
        yield CounterMetricFamily(
            f"{ship}_{unit}", f"{unit.capitalize()} delivered (the server answered 2xx).", value=sent
        )
        yield CounterMetricFamily(f"{ship}_bytes", "Compressed payload bytes delivered.", value=nbytes)
        yield CounterMetricFamily(
            f"{ship}_retries", "Sends that failed with a retryable error.", value=retries
        )
        dropped = CounterMetricFamily(
            f"{ship}_dropped_{unit}",
            f"{unit.capitalize()} given up on, by reason: full or too_old (queue limits), "
            "http_<status> (refused).",
            labels=["reason"],
        )
        for reason, n in sorted(dropped_by.items()):
            dropped.add_metric([reason], n)
        yield dropped
        yield GaugeMetricFamily(f"{queue}_entries", "Payloads waiting to be sent.", value=entries)
        yield GaugeMetricFamily(f"{queue}_bytes", "Compressed bytes waiting to be sent.", value=qbytes)
        yield GaugeMetricFamily(
            f"{queue}_oldest_sample_age_seconds",
            f"Age of the oldest {unit[:-1]} not yet sent (0 when the queue is empty).",
            value=oldest,
        )

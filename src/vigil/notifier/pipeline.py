"""The notification pipeline: what happens to one flush of one aggregation group for its receiver.

Alertmanager's order (notify/notify.go), run at the flush's time `now_ms`:

1. inhibition: an alert some inhibit rule's source alert (any unresolved alert in the store)
   inhibits is dropped; the marker records the inhibitor's fingerprint;
2. `active_time_intervals`: outside all of the route's active intervals nothing is sent;
3. `mute_time_intervals`: inside any of them nothing is sent;
4. silences: an alert an active silence matches (`Muter.mutes`) is dropped; the marker records the
   silence ids;
5. then for each integration of the receiver, independently:
   dedup against the notification log (Alertmanager's DedupStage): with no entry, notify only if
   something fires; a firing alert the last notification did not report as firing → notify; nothing
   firing → notify only if the last notification reported something firing (so an alert that fires
   and resolves within one group_interval produces no message at all), and that is done even with
   `send_resolved: false`, to clear the log; with `send_resolved`, a newly resolved alert →
   notify; otherwise only once `repeat_interval` has passed since the last notification;
   an integration without `send_resolved` gets only the firing alerts (and nothing at all, only the
   log entry, when none fires);
   retry with exponential backoff (0.5s growing ×1.5 up to 60s, ±50% jitter) while the error is
   retryable and until the flush's deadline (`max(group_interval, 10s)` after it started);
   on success the log entry (firing and resolved fingerprints, expiring after 2 × repeat_interval).

`prepare` does steps 1-4 and returns one callable per integration, so the caller decides where
they run (the notifier's worker pool; tests call them in line). Waiting between retries goes
through the injected `wait` (the service's stop event; a fake clock in tests): no sleeping here.

Metrics, Alertmanager's names: `alertmanager_notifications_total{integration}`,
`alertmanager_notifications_failed_total{integration,reason}`,
`alertmanager_notification_requests_total` / `_requests_failed_total{integration}` (each attempt),
`alertmanager_notification_latency_seconds{integration}`; and Vigil's
`vigil_notifications_failed_total{receiver,integration}`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from vigil.notifier.alert import Alert
from vigil.notifier.dispatch import Flush
from vigil.notifier.inhibit import InhibitRule
from vigil.notifier.integration import Integration, NotifyContext, NotifyError
from vigil.notifier.marker import Marker
from vigil.notifier.nflog import Entry, NotificationLog
from vigil.notifier.store import AlertStore
from vigil.notifier.timeintervals import TimeInterval, active_intervals

__all__ = ["Muter", "Pipeline", "PipelineMetrics", "needs_update"]

log = logging.getLogger(__name__)

Clock = Callable[[], int]
Wait = Callable[[float], bool]  # wait that many seconds; True means "stop now" (shutdown, reload)

MIN_TIMEOUT_MS = 10_000  # Alertmanager's notify.MinTimeout
_KNOWN = ("email", "slack", "webhook", "msteams", "msteamsv2", "sms")


class Muter(Protocol):
    """Silences as the pipeline sees them (implemented by `vigil.notifier.silence`)."""

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        """The ids of the silences active at `now_ms` that match `labels` ([] when none)."""
        ...


def needs_update(
    entry: Entry | None,
    firing: set[int],
    resolved: set[int],
    send_resolved: bool,
    repeat_interval_ms: int,
    now_ms: int,
) -> bool:
    """Alertmanager's DedupStage decision (see the module docstring)."""
    if entry is None:
        return bool(firing)
    if not entry.is_firing_subset(firing):
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and not entry.is_resolved_subset(resolved):
        return True
    return entry.timestamp_ms < now_ms - repeat_interval_ms


class PipelineMetrics:
    """Created once per registry and shared by the pipelines of successive reloads."""

    def __init__(self, registry: CollectorRegistry | None, integrations: Sequence[str] = _KNOWN) -> None:
        self.notifications = Counter(
            "alertmanager_notifications_total",
            "The total number of attempted notifications.",
            ["integration"],
            registry=registry,
        )
        self.failed = Counter(
            "alertmanager_notifications_failed_total",
            "The total number of failed notifications.",
            ["integration", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "alertmanager_notification_requests_total",
            "The total number of attempted notification requests.",
            ["integration"],
            registry=registry,
        )
        self.requests_failed = Counter(
            "alertmanager_notification_requests_failed_total",
            "The total number of failed notification requests.",
            ["integration"],
            registry=registry,
        )
        self.latency = Histogram(
            "alertmanager_notification_latency_seconds",
            "The latency of notifications in seconds.",
            ["integration"],
            buckets=(1, 5, 10, 15, 20),
            registry=registry,
        )
        self.vigil_failed = Counter(
            "vigil_notifications_failed_total",
            "Notifications given up (after retries), by receiver and integration.",
            ["receiver", "integration"],
            registry=registry,
        )
        for name in integrations:  # visible at 0 before the first notification, as Alertmanager does
            self.notifications.labels(name)
            self.requests.labels(name)
            self.requests_failed.labels(name)
            self.latency.labels(name)


class _Backoff:
    """cenkalti/backoff's ExponentialBackOff defaults, which Alertmanager's retry stage uses."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._interval = 0.5

    def next(self) -> float:
        cur = self._interval
        self._interval = min(cur * 1.5, 60.0)
        return cur * (1 + 0.5 * (2 * self._rng.random() - 1))


@dataclass(frozen=True, slots=True)
class _Source:
    """An inhibit-rule source candidate in the shape `inhibit.AlertLike` asks for (seconds)."""

    labels: Mapping[str, str]
    ends_at: float | None
    fp_hex: str


class Pipeline:
    """One pipeline for all receivers of one configuration (rebuilt on reload)."""

    def __init__(
        self,
        integrations: Mapping[str, Sequence[Integration]],
        nflog: NotificationLog,
        marker: Marker,
        metrics: PipelineMetrics,
        *,
        clock: Clock,
        wait: Wait,
        store: AlertStore | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
        intervals: Mapping[str, Sequence[TimeInterval]] | None = None,
        muter: Muter | None = None,
        external_url: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.integrations = integrations
        self.nflog = nflog
        self.marker = marker
        self.metrics = metrics
        self.clock = clock
        self.wait = wait
        self.store = store
        self.inhibit_rules = tuple(inhibit_rules)
        self.intervals = dict(intervals or {})
        self.muter = muter
        self.external_url = external_url
        self._rng = rng if rng is not None else random.Random()
        self._sources_lock = threading.Lock()  # flushes prepare on several workers at once
        self._sources_version = -1
        self._sources: list[list[_Source]] = []
        self._unknown: set[str] = set()

    # -- steps 1-4 ------------------------------------------------------------------------------

    def _inhibit_sources(self) -> list[list[_Source]]:
        # Per rule, the stored alerts matching its source side; rebuilt only when the store changed
        # (resolution is judged at each flush's time by the rule itself).
        assert self.store is not None
        with self._sources_lock:
            return self._inhibit_sources_locked(self.store)

    def _inhibit_sources_locked(self, store: AlertStore) -> list[list[_Source]]:
        version = store.version
        if version != self._sources_version:
            alerts = store.items()
            self._sources = [
                [
                    _Source(a.labels, a.ends_at_ms / 1000 if a.ends_at_ms else None, f"{fp:016x}")
                    for fp, a in alerts
                    if rule.source.matches(a.labels)
                ]
                for rule in self.inhibit_rules
            ]
            self._sources_version = version
        return self._sources

    def mute(self, flush: Flush) -> list[tuple[int, Alert]]:
        """Steps 1-4: the (fingerprint, alert)s of `flush` left to notify ([] when time intervals mute
        the route)."""
        now = flush.now_ms
        pools = self._inhibit_sources() if self.inhibit_rules and self.store is not None else []
        kept: list[tuple[int, Alert]] = []
        for fp, a in zip(flush.fingerprints, flush.alerts, strict=True):
            by: _Source | None = None
            for rule, pool in zip(self.inhibit_rules, pools, strict=False):
                found = rule.inhibitor(a.labels, pool, now / 1000)
                if found is not None:
                    assert isinstance(found, _Source)
                    by = found
                    break
            self.marker.set_inhibited(fp, [by.fp_hex] if by is not None else [])
            if by is None:
                kept.append((fp, a))
        if not kept:
            return []
        when = datetime.fromtimestamp(now / 1000, UTC)
        if flush.active_time_intervals and not active_intervals(
            flush.active_time_intervals, self.intervals, when
        ):
            return []
        if flush.mute_time_intervals and active_intervals(flush.mute_time_intervals, self.intervals, when):
            return []
        out: list[tuple[int, Alert]] = []
        for fp, a in kept:
            ids = self.muter.mutes(a.labels, now) if self.muter is not None else []
            self.marker.set_silenced(fp, ids)
            if not ids:
                out.append((fp, a))
        return out

    def prepare(
        self, flush: Flush, cancelled: Callable[[], bool] = lambda: False
    ) -> list[Callable[[], bool]]:
        """Steps 1-4 now; one callable per integration for step 5 (each returns success)."""
        integrations = self.integrations.get(flush.receiver)
        if integrations is None and flush.receiver not in self._unknown:
            self._unknown.add(flush.receiver)
            log.error("receiver %r has no integrations configured: its alerts are not sent", flush.receiver)
        # Muting runs for a receiver without integrations too (a "null" receiver): the marker is
        # what the API shows for its alerts.
        alerts = self.mute(flush)
        if not alerts or not integrations:
            return []
        return [self._task(flush, i, alerts, cancelled) for i in integrations]

    def run(self, flush: Flush, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """The whole pipeline in line: True when every integration succeeded."""
        ok = True
        for task in self.prepare(flush, cancelled):
            ok = task() and ok
        return ok

    # -- step 5 ---------------------------------------------------------------------------------

    def _task(
        self, flush: Flush, integ: Integration, alerts: list[tuple[int, Alert]], cancelled: Callable[[], bool]
    ) -> Callable[[], bool]:
        def task() -> bool:
            try:
                return self._deliver(flush, integ, alerts, cancelled)
            except Exception:  # a bug in one integration must not take the worker (or the others) down
                log.exception("notification to %s/%s failed unexpectedly", flush.receiver, integ.name)
                self._failed(flush, integ, "other")
                return False

        return task

    def _deliver(
        self, flush: Flush, integ: Integration, items: list[tuple[int, Alert]], cancelled: Callable[[], bool]
    ) -> bool:
        now = flush.now_ms
        firing = {fp for fp, a in items if not a.resolved_at(now)}
        resolved = {fp for fp, a in items if a.resolved_at(now)}
        alerts = [a for _, a in items]
        key = (flush.group_key, flush.receiver, integ.name, integ.index)
        entry = self.nflog.query(*key)
        if not needs_update(entry, firing, resolved, integ.send_resolved, flush.repeat_interval_ms, now):
            return True
        self.metrics.notifications.labels(integ.name).inc()
        sent = alerts if integ.send_resolved else [a for a in alerts if not a.resolved_at(now)]
        if sent and not self._send(flush, integ, sent, cancelled):
            return False
        self.nflog.log(*key, firing, resolved, self.clock(), 2 * flush.repeat_interval_ms)
        return True

    def _send(
        self, flush: Flush, integ: Integration, alerts: list[Alert], cancelled: Callable[[], bool]
    ) -> bool:
        ctx = NotifyContext(
            receiver=flush.receiver,
            group_key=flush.group_key,
            group_labels=flush.group_labels,
            now_ms=flush.now_ms,
            external_url=self.external_url,
            repeat_interval_ms=flush.repeat_interval_ms,
        )
        deadline = flush.now_ms + max(flush.group_interval_ms, MIN_TIMEOUT_MS)
        backoff = _Backoff(self._rng)
        last: NotifyError | None = None
        attempts = 0
        while True:
            if cancelled():
                return self._failed(flush, integ, last.reason if last else "contextCanceled", last, attempts)
            start = self.clock()
            err: NotifyError | None = None
            try:
                integ.notify(ctx, alerts)
            except NotifyError as e:
                err = e
            attempts += 1
            self.metrics.latency.labels(integ.name).observe(max(0, self.clock() - start) / 1000)
            self.metrics.requests.labels(integ.name).inc()
            if err is None:
                if attempts > 1:
                    log.info("notified %s/%s after %d attempts", flush.receiver, integ.name, attempts)
                return True
            self.metrics.requests_failed.labels(integ.name).inc()
            if not err.retryable:
                return self._failed(flush, integ, err.reason, err, attempts)
            if last is None or str(last) != str(err):
                log.warning(
                    "notify %s/%s attempt %d failed, will retry: %s",
                    flush.receiver,
                    integ.name,
                    attempts,
                    err,
                )
            last = err
            delay = backoff.next()
            if self.clock() + delay * 1000 > deadline:
                return self._failed(flush, integ, err.reason, err, attempts)
            if self.wait(delay):
                return self._failed(flush, integ, err.reason, err, attempts)

    def _failed(
        self,
        flush: Flush,
        integ: Integration,
        reason: str,
        err: NotifyError | None = None,
        attempts: int = 0,
    ) -> bool:
        self.metrics.failed.labels(integ.name, reason).inc()
        self.metrics.vigil_failed.labels(flush.receiver, integ.name).inc()
        if err is not None:
            log.error(
                "notify %s/%s gave up after %d attempts (group %s): %s",
                flush.receiver,
                integ.name,
                attempts,
                flush.group_key,
                err,
            )
        return False

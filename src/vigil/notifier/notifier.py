"""The notifier: Alertmanager's alert handling assembled from an AlertmanagerConfig.

`Notifier` owns the alert store, the marker and the notification log for the life of the process,
and a dispatcher plus pipeline built from the configuration; `reload` rebuilds those two as
Alertmanager does on a reload: the alerts stay, the routing tree is new, every group starts again
with `group_wait` (alerts older than that flush at once) and the notification log keeps the new
groups from repeating what the old ones sent.

Two ways to drive it, both with the time passed in:
- `step(now_ms)`: runs the flushes due at `now_ms` in line (tests with a fake clock, tools);
- `start()` / `stop()`: the `vigil-notifier` thread sleeps until the dispatcher's next deadline
  (or a put), then hands due flushes to a pool of `workers` threads (`vigil-notifier-N`); each
  integration of a flush is one task, so a slow receiver holds one worker, not the notifier.
  Store and notification-log garbage collection run from the same thread.

Integrations are built by the caller (`receivers.build_integrations`) and passed as a mapping
receiver name → integrations; silences come in through the `Muter` protocol.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.notifier.alert import Alert
from vigil.notifier.config import AlertmanagerConfig
from vigil.notifier.dispatch import Dispatcher, Flush, GroupView
from vigil.notifier.inhibit import build_inhibit_rules
from vigil.notifier.integration import Integration
from vigil.notifier.marker import Marker
from vigil.notifier.nflog import DEFAULT_RETENTION_MS, NotificationLog
from vigil.notifier.pipeline import Muter, Pipeline, PipelineMetrics
from vigil.notifier.routing import build_routes
from vigil.notifier.store import AlertStore
from vigil.notifier.timeintervals import TimeInterval, compile_spec

__all__ = ["Notifier", "NotifierLimits", "wall_ms"]

log = logging.getLogger(__name__)

Clock = Callable[[], int]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class NotifierLimits:
    """Bounds and periods; defaults follow Alertmanager's flags where it has one."""

    max_alerts: int = 100_000
    """Alerts the store holds; a put beyond it fails with StoreFull (HTTP 429)."""
    max_alert_bytes: int = 256 << 20
    """Label, annotation and URL text the store holds in all; beyond it, StoreFull (HTTP 429)."""
    max_groups: int = 50_000
    """Aggregation groups (`--dispatcher.max-aggregation-groups`; Alertmanager: unlimited)."""
    workers: int = 4
    """Threads delivering notifications at once."""
    gc_interval_ms: int = 30 * 60_000
    """How often resolved alerts leave the store (`--alerts.gc-interval`)."""
    nflog_retention_ms: int = DEFAULT_RETENTION_MS
    """Longest a notification log entry lives (`--data.retention`)."""
    nflog_max_entries: int = 100_000
    maintenance_interval_ms: int = 15 * 60_000
    """How often expired notification log entries are dropped."""


class _AlertsCollector(Collector):
    """`alertmanager_alerts{state}`: unresolved alerts in the store by marker state."""

    def __init__(self, notifier: Notifier) -> None:
        self._n = notifier

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("alertmanager_alerts", "How many alerts by state.", labels=["state"])
        for state, n in self._n.store.counts(self._n.clock()).items():
            g.add_metric([state], n)
        yield g


class _Join:
    """Counts the integration tasks of one flush; the last to finish reports the flush's result."""

    def __init__(self, n: int, finish: Callable[[bool], None]) -> None:
        self._lock = threading.Lock()
        self._left = n
        self._ok = True
        self._finish = finish

    def one(self, ok: bool) -> None:
        with self._lock:
            self._ok = self._ok and ok
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish(self._ok)


def _intervals(cfg: AlertmanagerConfig) -> dict[str, list[TimeInterval]]:
    return {name: [compile_spec(s) for s in specs] for name, specs in cfg.intervals().items()}


class Notifier:
    """The notifier service (`vigil/cmd/run.py`'s Service protocol: name, start, stop)."""

    name = "notifier"

    def __init__(
        self,
        config: AlertmanagerConfig,
        integrations: Mapping[str, Sequence[Integration]],
        *,
        state_dir: Path | None = None,
        registry: CollectorRegistry | None = None,
        muter: Muter | None = None,
        clock: Clock = wall_ms,
        wait: Callable[[float], bool] | None = None,
        external_url: str = "",
        limits: NotifierLimits = NotifierLimits(),
        rng: random.Random | None = None,
    ) -> None:
        """`state_dir` holds the notification log (None: memory only). `wait(seconds)` is how retries
        wait (True: give up); by default the stop event, so `stop()` ends them at once."""
        self.clock = clock
        self.limits = limits
        self.muter = muter
        self.external_url = external_url
        self._rng = rng
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._wait = wait if wait is not None else self._stopping.wait
        self.marker = Marker()
        self.store = AlertStore(
            resolve_timeout_ms=config.global_.resolve_timeout,
            max_alerts=limits.max_alerts,
            max_bytes=limits.max_alert_bytes,
            marker=self.marker,
        )
        self.nflog = NotificationLog(
            state_dir, clock, retention_ms=limits.nflog_retention_ms, max_entries=limits.nflog_max_entries
        )
        self._metrics = PipelineMetrics(registry)
        self._dispatch_metrics = Dispatcher.metrics_for(registry)
        if registry is not None:
            registry.register(_AlertsCollector(self))
        self._lock = threading.Lock()  # guards the (dispatcher, pipeline) pair across reloads
        self._unsubscribe: Callable[[], None] = lambda: None
        self._dispatcher: Dispatcher
        self._pipeline: Pipeline
        self._install(config, integrations)
        now = clock()
        self._next_gc = now + limits.gc_interval_ms
        self._next_maintenance = now + limits.maintenance_interval_ms
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- configuration --------------------------------------------------------------------------

    def _install(self, config: AlertmanagerConfig, integrations: Mapping[str, Sequence[Integration]]) -> None:
        if config.route is None:
            raise ValueError("the Alertmanager configuration has no route")
        dispatcher = Dispatcher(
            build_routes(config.route), max_groups=self.limits.max_groups, metrics=self._dispatch_metrics
        )
        pipeline = Pipeline(
            integrations,
            self.nflog,
            self.marker,
            self._metrics,
            clock=self.clock,
            wait=self._wait,
            store=self.store,
            inhibit_rules=build_inhibit_rules(config.inhibit_rules),
            intervals=_intervals(config),
            muter=self.muter,
            external_url=self.external_url,
            rng=self._rng,
        )
        with self._lock:
            old = getattr(self, "_dispatcher", None)
            if old is not None:
                old.stop()
            self._unsubscribe()
            self.store.resolve_timeout_ms = config.global_.resolve_timeout
            self._dispatcher, self._pipeline = dispatcher, pipeline
            self._unsubscribe = self.store.subscribe(self._on_put(dispatcher), self.clock())
        self._wake.set()

    def _on_put(self, dispatcher: Dispatcher) -> Callable[[Sequence[tuple[int, Alert]], int], None]:
        def added(items: Sequence[tuple[int, Alert]], now_ms: int) -> None:
            dispatcher.add_keyed(items, now_ms)
            self._wake.set()

        return added

    def reload(self, config: AlertmanagerConfig, integrations: Mapping[str, Sequence[Integration]]) -> None:
        """Apply a new configuration: alerts and notification log kept, routes and groups rebuilt."""
        self._install(config, integrations)

    @property
    def dispatcher(self) -> Dispatcher:
        return self._dispatcher

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    # -- the API's view -------------------------------------------------------------------------

    def put(self, alerts: Iterable[Alert], now_ms: int | None = None) -> list[Alert]:
        """Store alerts (received now); raises store.InvalidAlert or store.StoreFull."""
        return self.store.put(alerts, self.clock() if now_ms is None else now_ms)

    def alerts(self) -> list[Alert]:
        return self.store.list()

    def groups(self) -> list[GroupView]:
        return self._dispatcher.groups()

    # -- driving it -----------------------------------------------------------------------------

    def step(self, now_ms: int) -> int:
        """Run in line everything due at `now_ms` (flushes, garbage collection); returns the number of
        flushes run."""
        self._maintain(now_ms)
        dispatcher, pipeline = self._dispatcher, self._pipeline
        flushes = dispatcher.step(now_ms)
        for f in flushes:
            try:
                ok = pipeline.run(f, lambda: dispatcher.stopped)
            except Exception:
                log.exception("flush of group %s failed", f.group_key)
                ok = False
            dispatcher.done(f, ok, self.clock())
        return len(flushes)

    def _maintain(self, now_ms: int) -> None:
        if now_ms >= self._next_gc:
            self._next_gc = now_ms + self.limits.gc_interval_ms
            self.store.gc(now_ms)
            self.marker.retain({fp for fp, _ in self.store.items()})
        if now_ms >= self._next_maintenance:
            self._next_maintenance = now_ms + self.limits.maintenance_interval_ms
            try:
                self.nflog.gc(now_ms)
            except OSError as e:  # a full disk must not stop notifications
                log.error("notification log maintenance failed: %s", e)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.limits.workers), thread_name_prefix="vigil-notifier"
        )
        self._thread = threading.Thread(target=self._run, name="vigil-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        try:
            self.nflog.close()
        except OSError as e:
            log.error("notification log snapshot at stop failed: %s", e)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            now = self.clock()
            dispatcher, pipeline = self._dispatcher, self._pipeline
            try:
                self._maintain(now)
                for f in dispatcher.step(now):
                    self._submit(self._flush, dispatcher, pipeline, f)
            except Exception:  # keep notifying whatever one bad step did
                log.exception("notifier step failed")
            deadline = min(
                d
                for d in (dispatcher.next_deadline(), self._next_gc, self._next_maintenance)
                if d is not None
            )
            # Capped so that a wall clock jumping forward is noticed within seconds.
            self._wake.wait(min(max(0, deadline - self.clock()) / 1000, 5.0))

    def _submit(self, fn: Callable[..., None], *args: object) -> bool:
        pool = self._pool
        if pool is None:
            return False
        try:
            pool.submit(fn, *args)
            return True
        except RuntimeError:  # shut down meanwhile
            return False

    def _flush(self, dispatcher: Dispatcher, pipeline: Pipeline, flush: Flush) -> None:
        def cancelled() -> bool:
            return self._stopping.is_set() or dispatcher.stopped

        def finish(ok: bool) -> None:
            dispatcher.done(flush, ok, self.clock())
            self._wake.set()

        try:
            tasks = pipeline.prepare(flush, cancelled)
        except Exception:
            log.exception("flush of group %s failed", flush.group_key)
            finish(False)
            return
        if not tasks:
            finish(True)
            return
        join = _Join(len(tasks), finish)

        def run(task: Callable[[], bool]) -> None:
            join.one(task())

        for task in tasks[1:]:
            if not self._submit(run, task):
                join.one(False)
        run(tasks[0])

"""The dispatcher: routes alerts into aggregation groups and says when each group is due to notify.

Alertmanager's dispatch package, as a clock-free state machine: `add(alerts, now_ms)` routes what the
store received, `step(now_ms)` returns the flushes due at `now_ms`, `done(flush, ok, now_ms)` takes the
result back. `next_deadline()` tells a driver when to call `step` next; the notifier's service thread
does that in real time, tests with a fake clock.

Semantics kept from Alertmanager (dispatch/dispatch.go):

- an alert goes to every route `Route.match` returns; within a route, to the group of its
  `group_by` labels (all labels with `...`); the group key is the route's key, a colon and the group
  labels as Go prints a label set (`{}/{team="db"}:{alertname="Down", env="prod"}`);
- a new group flushes `group_wait` after its creation, then every `group_interval` (the next flush
  is scheduled when a flush starts); before its first flush, an alert whose start is already more
  than `group_wait` in the past makes the group flush at once;
- a flush carries every alert of the group, firing ones with their end cleared (so they do not
  resolve as time moves on during delivery), sorted as Alertmanager sorts them; whether to notify at
  all is the pipeline's decision (dedup against the notification log does repeat_interval);
- after a successful flush the resolved alerts that were not updated meanwhile leave the group, and
  a group left empty is removed; a failed flush keeps them for the next one;
- a group flushes one at a time: while its flush is running it is not due again (Alertmanager's
  per-group goroutine does the same);
- at most `max_groups` groups (0: no limit): an alert that would need another is dropped from that
  route with an error log and `alertmanager_dispatcher_aggregation_group_limit_reached_total`
  (Alertmanager's `--dispatcher.max-aggregation-groups`).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigil.notifier.alert import Alert, fingerprint
from vigil.notifier.matchers import go_quote
from vigil.notifier.routing import Route, group_labels

__all__ = ["Dispatcher", "Flush", "GroupView", "label_set_before", "label_set_string", "sort_alerts"]

log = logging.getLogger(__name__)


def label_set_string(labels: Mapping[str, str]) -> str:
    """Go's `model.LabelSet.String()`: `{a="1", b="2"}` (the pairs sorted as formatted strings)."""
    return "{" + ", ".join(sorted(f"{k}={go_quote(v)}" for k, v in labels.items())) + "}"


def label_set_before(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Go's `LabelSet.Before`: fewer labels first; then by the merged sorted names, a set missing a
    name first, else by value."""
    if len(a) != len(b):
        return len(a) < len(b)
    for name in sorted([*a, *b]):
        if name not in a:
            return True
        if name not in b:
            return False
        if a[name] != b[name]:
            return a[name] < b[name]
    return False


def _alert_less(x: Alert, y: Alert) -> bool:
    # Alertmanager's AlertSlice order: by job, then instance (an alert with the label first), then
    # the label sets.
    for key in ("job", "instance"):
        xv, yv = x.labels.get(key), y.labels.get(key)
        if xv is None and yv is None:
            continue
        if xv is None:
            return False
        if yv is None:
            return True
        if xv != yv:
            return xv < yv
    return label_set_before(x.labels, y.labels)


def _cmp(x: Alert, y: Alert) -> int:
    return -1 if _alert_less(x, y) else 1 if _alert_less(y, x) else 0


def sort_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """Alerts in Alertmanager's notification order (a stable sort)."""
    return sorted(alerts, key=functools.cmp_to_key(_cmp))


def sort_items(items: Sequence[tuple[int, Alert]]) -> list[tuple[int, Alert]]:
    """(fingerprint, alert) pairs in the order of `sort_alerts`."""
    key = functools.cmp_to_key(_cmp)
    return sorted(items, key=lambda item: key(item[1]))


@dataclass(frozen=True, slots=True)
class Flush:
    """One due notification of one aggregation group: what the pipeline needs to run it."""

    group_key: str
    receiver: str
    route_id: str
    group_labels: Mapping[str, str]
    alerts: tuple[Alert, ...]
    fingerprints: tuple[int, ...]  # of `alerts`, in the same order
    now_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    seq: int  # the group's flush number, from 1
    route_idx: int = -1  # with group_labels, which group this is (two routes may share a key)


@dataclass(frozen=True, slots=True)
class GroupView:
    """An aggregation group as the v2 API lists it (`/api/v2/alerts/groups`)."""

    labels: Mapping[str, str]
    receiver: str
    group_key: str
    route_id: str
    alerts: tuple[Alert, ...]


_Gid = tuple[int, frozenset[tuple[str, str]]]  # route index, group labels


@dataclass(eq=False)
class _Group:
    route: Route
    labels: dict[str, str]
    key: str
    next_flush_ms: int
    alerts: dict[int, Alert] = field(default_factory=dict)
    has_flushed: bool = False
    busy: bool = False
    flushes: int = 0


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.groups = Gauge(
            "alertmanager_dispatcher_aggregation_groups",
            "Number of active aggregation groups",
            registry=registry,
        )
        self.limit_reached = Counter(
            "alertmanager_dispatcher_aggregation_group_limit_reached_total",
            "Number of times when dispatcher failed to create new aggregation group due to limit.",
            registry=registry,
        )


class Dispatcher:
    """Thread-safe. Never calls back into the store (the store calls `add` under its own lock)."""

    def __init__(
        self,
        root: Route,
        *,
        max_groups: int = 0,
        registry: CollectorRegistry | None = None,
        metrics: _Metrics | None = None,
    ) -> None:
        self.root = root
        self.max_groups = max_groups
        self._lock = threading.Lock()
        self._groups: dict[_Gid, _Group] = {}
        # Deadlines of idle groups, earliest first; an entry whose group is gone, busy or due at
        # another time is stale and skipped (cheaper than removing it), so step() costs what is due.
        self._heap: list[tuple[int, int, _Gid]] = []
        self._tie = itertools.count()
        self._metrics = metrics if metrics is not None else _Metrics(registry)
        self._metrics.groups.set(0)
        self.stopped = False

    @staticmethod
    def metrics_for(registry: CollectorRegistry | None) -> _Metrics:
        """Metrics to share between the dispatchers a notifier builds on each reload (a registry
        accepts each name once)."""
        return _Metrics(registry)

    def add(self, alerts: Sequence[Alert], now_ms: int) -> None:
        """Route alerts the store just stored (received at `now_ms`)."""
        self.add_keyed([(fingerprint(a.labels), a) for a in alerts], now_ms)

    def add_keyed(self, items: Sequence[tuple[int, Alert]], now_ms: int) -> None:
        """`add` with the fingerprints already computed (the store's subscription)."""
        with self._lock:
            for fp, a in items:
                for route in self.root.match(a.labels):
                    self._insert(route, a, fp, now_ms)

    def _insert(self, route: Route, a: Alert, fp: int, now_ms: int) -> None:
        labels = group_labels(route, a.labels)
        gid = (route.idx, frozenset(labels.items()))
        g = self._groups.get(gid)
        if g is None:
            if self.max_groups > 0 and len(self._groups) >= self.max_groups:
                self._metrics.limit_reached.inc()
                log.error(
                    "too many aggregation groups (limit %d): alert %s not grouped on route %s",
                    self.max_groups,
                    a.name or f"{fp:016x}",
                    route.key(),
                )
                return
            g = _Group(route, labels, f"{route.key()}:{label_set_string(labels)}", now_ms + route.group_wait)
            self._groups[gid] = g
            self._metrics.groups.set(len(self._groups))
            self._schedule(gid, g)
        g.alerts[fp] = a
        if not g.has_flushed and a.starts_at_ms + route.group_wait < now_ms and g.next_flush_ms > now_ms:
            g.next_flush_ms = now_ms
            self._schedule(gid, g)

    def _schedule(self, gid: _Gid, g: _Group) -> None:
        if not g.busy:
            heapq.heappush(self._heap, (g.next_flush_ms, next(self._tie), gid))

    def _live(self, entry: tuple[int, int, _Gid]) -> _Group | None:
        g = self._groups.get(entry[2])
        if g is None or g.busy or g.next_flush_ms != entry[0]:
            return None
        return g

    def next_deadline(self) -> int | None:
        """When the earliest idle group is due (ms), None without one."""
        with self._lock:
            while self._heap and self._live(self._heap[0]) is None:
                heapq.heappop(self._heap)
            return self._heap[0][0] if self._heap else None

    def step(self, now_ms: int) -> list[Flush]:
        """The flushes due at `now_ms`; their groups are busy until `done`."""
        out: list[Flush] = []
        with self._lock:
            if self.stopped:
                return out
            while self._heap and self._heap[0][0] <= now_ms:
                g = self._live(heapq.heappop(self._heap))
                if g is None:
                    continue
                g.next_flush_ms = now_ms + g.route.group_interval
                g.has_flushed = True
                g.busy = True
                g.flushes += 1
                snapshot = sort_items(
                    [
                        (fp, a if a.resolved_at(now_ms) else replace(a, ends_at_ms=0))
                        for fp, a in g.alerts.items()
                    ]
                )
                r = g.route
                out.append(
                    Flush(
                        group_key=g.key,
                        receiver=r.receiver,
                        route_id=r.id(),
                        group_labels=dict(g.labels),
                        alerts=tuple(a for _, a in snapshot),
                        fingerprints=tuple(fp for fp, _ in snapshot),
                        now_ms=now_ms,
                        group_interval_ms=r.group_interval,
                        repeat_interval_ms=r.repeat_interval,
                        mute_time_intervals=r.mute_time_intervals,
                        active_time_intervals=r.active_time_intervals,
                        seq=g.flushes,
                        route_idx=r.idx,
                    )
                )
        return out

    def done(self, flush: Flush, ok: bool, now_ms: int) -> None:
        """The result of `flush`: on success its resolved alerts leave the group (unless updated
        since), and an empty group is removed."""
        with self._lock:
            gid = (flush.route_idx, frozenset(flush.group_labels.items()))
            g = self._groups.get(gid)
            if g is None or not g.busy:
                return
            g.busy = False
            if not ok:
                self._schedule(gid, g)
                return
            for fp, a in zip(flush.fingerprints, flush.alerts, strict=True):
                if not a.resolved_at(flush.now_ms):
                    continue
                cur = g.alerts.get(fp)
                if cur is not None and cur.updated_at_ms == a.updated_at_ms:
                    del g.alerts[fp]
            if not g.alerts:
                del self._groups[gid]
                self._metrics.groups.set(len(self._groups))
            else:
                self._schedule(gid, g)

    def groups(self) -> list[GroupView]:
        """Every group with its alerts, in Alertmanager's order (by group labels, then receiver)."""
        with self._lock:
            views = [
                GroupView(
                    dict(g.labels),
                    g.route.receiver,
                    g.key,
                    g.route.id(),
                    tuple(sort_alerts(list(g.alerts.values()))),
                )
                for g in self._groups.values()
                if g.alerts
            ]
        views.sort(key=lambda v: (label_set_string(v.labels), v.receiver))
        return views

    def receivers_of(self) -> dict[int, list[str]]:
        """fingerprint → the receivers of the groups holding it, sorted (the v2 API's `receivers`)."""
        out: dict[int, list[str]] = {}
        with self._lock:
            for g in self._groups.values():
                for fp in g.alerts:
                    out.setdefault(fp, []).append(g.route.receiver)
        for v in out.values():
            v.sort()
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._groups)

    def stop(self) -> None:
        """No more flushes (a reload replaces this dispatcher); in-flight ones see `stopped`."""
        with self._lock:
            self.stopped = True

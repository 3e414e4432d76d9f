"""The alert store: every alert the notifier currently knows, one per fingerprint.

What Alertmanager's API handler and in-memory provider (api/v2, provider/mem) do on a put, with
the receive time passed in:

- normalisation: `updated_at` becomes the receive time; a missing start becomes the end (if one
  was given) or the receive time; a missing end becomes `now + resolve_timeout` with `timeout` set,
  so an alert its sender stops refreshing resolves by itself; empty label values are dropped
  (Alertmanager treats `a=""` as absent);
- merging: when an alert with the same fingerprint is stored and the two activity ranges overlap
  (the new end inside the old range, or the new start inside it), the result is `Alert.Merge`: the
  younger alert (by `updated_at`) wins, with the earliest start; of two resolved alerts the later
  explicit end; an unresolved younger alert keeps the older's end when that is later and was not a
  timeout. A non-overlapping alert (a new firing period after a resolution) replaces the old one;
- subscribers (the dispatcher) see every stored alert in store order: they are called under the
  store's lock, so two concurrent puts can never reach the dispatcher in the opposite order;
- `gc` drops resolved alerts and their marker status (the aggregation groups keep their own copy
  until the resolution is notified).

Bounded: at most `max_alerts` fingerprints and `max_bytes` of label, annotation and URL text (a
count alone bounds nothing when one alert may carry megabytes of annotations). A put that would
pass either first collects resolved alerts, and if that is not enough refuses the whole batch with
`StoreFull` (the API answers 429, the sender retries: nothing acknowledged is lost, nothing
partially stored).

Vigil's own alerts come first: puts marked `external` (what other Prometheus servers and anyone with
a write token post to `/api/v2/alerts`, through `ExternalSink`) may fill only `1 - reserved` of
either bound, so a flood of posted alerts cannot crowd out the alerts of Vigil's rules and event
rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from vigil.notifier.alert import Alert, fingerprint
from vigil.notifier.marker import Marker

__all__ = [
    "AlertStore",
    "ExternalSink",
    "InvalidAlert",
    "StoreFull",
    "alert_size",
    "merge",
    "normalize",
    "validate_alert",
]

_Alerts = list[Alert]
_Items = list[tuple[int, Alert]]
Subscriber = Callable[[Sequence[tuple[int, Alert]], int], None]  # (fingerprint, stored alert)s, receive time


class StoreFull(Exception):
    """The store holds `limit` alerts; the batch would add `adding` new ones. An API turns this into
    429 Too Many Requests."""

    def __init__(self, limit: int, adding: int, *, unit: str = "alerts", new: str = "new ones") -> None:
        super().__init__(
            f"alert store full: it holds the maximum of {limit} {unit} and the batch adds {adding} {new}"
        )
        self.limit = limit
        self.adding = adding


def alert_size(alert: Alert) -> int:
    """What an alert costs the store's byte budget: the characters of its names, values and URL."""
    return (
        sum(len(k) + len(v) for k, v in alert.labels.items())
        + sum(len(k) + len(v) for k, v in alert.annotations.items())
        + len(alert.generator_url)
    )


class InvalidAlert(ValueError):
    """An alert that cannot be stored (an API turns this into 400)."""


def validate_alert(alert: Alert) -> str | None:
    """Why a *normalised* alert is invalid (Alertmanager's `Alert.Validate`), or None."""
    if not alert.labels:
        return "at least one label pair required"
    if any(name == "" for name in alert.labels):
        return "invalid label set: empty label name"
    if alert.starts_at_ms == 0:
        return "start time missing"
    if alert.ends_at_ms != 0 and alert.ends_at_ms < alert.starts_at_ms:
        return "start time must be before end time"
    return None


def normalize(alert: Alert, now_ms: int, resolve_timeout_ms: int) -> Alert:
    """The alert as the store keeps it, received at `now_ms` (see the module docstring)."""
    labels = {k: v for k, v in alert.labels.items() if v != ""}
    starts, ends, timeout = alert.starts_at_ms, alert.ends_at_ms, False
    if starts == 0:
        starts = ends if ends != 0 else now_ms
    if ends == 0:
        ends, timeout = now_ms + resolve_timeout_ms, True
    return replace(
        alert, labels=labels, starts_at_ms=starts, ends_at_ms=ends, updated_at_ms=now_ms, timeout=timeout
    )


def merge(a: Alert, o: Alert, now_ms: int) -> Alert:
    """Alertmanager's `a.Merge(o)`; "resolved" is judged at `now_ms`."""
    if o.updated_at_ms < a.updated_at_ms:
        a, o = o, a
    starts = min(a.starts_at_ms, o.starts_at_ms)
    ends = o.ends_at_ms
    if o.resolved_at(now_ms):
        if a.resolved_at(now_ms) and a.ends_at_ms > o.ends_at_ms:
            ends = a.ends_at_ms
    elif a.ends_at_ms > o.ends_at_ms and not a.timeout:
        ends = a.ends_at_ms
    return replace(o, starts_at_ms=starts, ends_at_ms=ends)


def _overlaps(new: Alert, old: Alert) -> bool:
    return (old.starts_at_ms < new.ends_at_ms < old.ends_at_ms) or (
        old.starts_at_ms < new.starts_at_ms < old.ends_at_ms
    )


class AlertStore:
    """Thread-safe; every method takes the time it acts at (`now_ms`) rather than reading a clock."""

    def __init__(
        self,
        *,
        resolve_timeout_ms: int = 5 * 60_000,
        max_alerts: int = 100_000,
        max_bytes: int = 256 << 20,
        reserved: float = 0.1,
        marker: Marker | None = None,
    ) -> None:
        if max_alerts < 1 or max_bytes < 1:
            raise ValueError("max_alerts and max_bytes must be at least 1")
        if not 0 <= reserved < 1:
            raise ValueError("reserved must be in [0, 1)")
        self.reserved = reserved
        self._lock = threading.Lock()
        self._alerts: dict[int, Alert] = {}
        self._bytes = 0  # alert_size summed over _alerts
        self.max_bytes = max_bytes
        self._subs: dict[int, Subscriber] = {}
        self._next_sub = 0
        self._version = 0
        self.resolve_timeout_ms = resolve_timeout_ms
        self.max_alerts = max_alerts
        self.marker = marker if marker is not None else Marker()

    @property
    def version(self) -> int:
        """Increases on every change (a cache key for whoever derives data from the alerts)."""
        return self._version

    def put(self, alerts: Iterable[Alert], now_ms: int, *, external: bool = False) -> _Alerts:
        """Normalise, merge and store `alerts` received at `now_ms`; returns what was stored.
        Raises InvalidAlert or StoreFull before storing anything. `external` puts may fill only
        `1 - reserved` of the bounds (see the module docstring)."""
        batch = [normalize(a, now_ms, self.resolve_timeout_ms) for a in alerts]
        for i, a in enumerate(batch):
            why = validate_alert(a)
            if why is not None:
                raise InvalidAlert(f"alert {i}: {why}")
        keyed = [(fingerprint(a.labels), a) for a in batch]
        with self._lock:
            share = 1 - self.reserved if external else 1.0
            max_alerts, max_bytes = int(self.max_alerts * share), int(self.max_bytes * share)
            stored, final, new, grow = self._plan_locked(keyed, now_ms)
            # Only what adds is refused: an update that adds nothing passes even above the share.
            if (new and len(self._alerts) + new > max_alerts) or (
                grow > 0 and self._bytes + grow > max_bytes
            ):
                if self._gc_locked(now_ms):  # merges may differ once resolved alerts are gone
                    stored, final, new, grow = self._plan_locked(keyed, now_ms)
                if new and len(self._alerts) + new > max_alerts:
                    raise StoreFull(max_alerts, new)
                if grow > 0 and self._bytes + grow > max_bytes:
                    raise StoreFull(max_bytes, grow, unit="bytes of alert text", new="more")
            self._alerts.update(final)
            self._bytes += grow
            self._version += 1
            for fn in list(self._subs.values()):
                fn(stored, now_ms)
            return [a for _, a in stored]

    def _plan_locked(self, keyed: _Items, now_ms: int) -> tuple[_Items, dict[int, Alert], int, int]:
        """What storing `keyed` would do, without doing it: the stored alerts in batch order, the
        final alert per fingerprint, how many fingerprints are new and how many bytes are added."""
        stored: _Items = []
        final: dict[int, Alert] = {}
        for fp, a in keyed:
            old = final.get(fp) or self._alerts.get(fp)
            if old is not None and _overlaps(a, old):
                a = merge(old, a, now_ms)
            final[fp] = a
            stored.append((fp, a))
        new = sum(1 for fp in final if fp not in self._alerts)
        grow = 0
        for fp, a in final.items():
            old = self._alerts.get(fp)
            grow += alert_size(a) - (alert_size(old) if old is not None else 0)
        return stored, final, new, grow

    @property
    def bytes(self) -> int:
        """The store's byte budget in use (see `alert_size`)."""
        return self._bytes

    def external_sink(self) -> ExternalSink:
        return ExternalSink(self)

    def get(self, fp: int) -> Alert | None:
        with self._lock:
            return self._alerts.get(fp)

    def list(self) -> _Alerts:
        with self._lock:
            return list(self._alerts.values())

    def items(self) -> _Items:
        with self._lock:
            return list(self._alerts.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._alerts)

    def subscribe(self, fn: Subscriber, now_ms: int) -> Callable[[], None]:
        """Call `fn` with the alerts stored now (as received at `now_ms`) and then with every future
        put; returns the unsubscribe function. Both happen under the store's lock, so nothing falls
        between the two and nothing arrives out of order (Alertmanager's SlurpAndSubscribe)."""
        with self._lock:
            sid = self._next_sub
            self._next_sub += 1
            fn(list(self._alerts.items()), now_ms)
            self._subs[sid] = fn

        def unsubscribe() -> None:
            with self._lock:
                self._subs.pop(sid, None)

        return unsubscribe

    def gc(self, now_ms: int) -> _Alerts:
        """Drop the alerts resolved at `now_ms`; returns them."""
        with self._lock:
            return self._gc_locked(now_ms)

    def _gc_locked(self, now_ms: int) -> _Alerts:
        gone = [(fp, a) for fp, a in self._alerts.items() if a.resolved_at(now_ms)]
        for fp, a in gone:
            del self._alerts[fp]
            self._bytes -= alert_size(a)
            self.marker.delete(fp)
        if gone:
            self._version += 1
        return [a for _, a in gone]

    def counts(self, now_ms: int) -> Mapping[str, int]:
        """Unresolved alerts by marker state (what `alertmanager_alerts{state}` reports)."""
        out = {"active": 0, "suppressed": 0, "unprocessed": 0}
        for fp, a in self.items():
            if not a.resolved_at(now_ms):
                out[self.marker.status(fp).state.value] += 1
        return out


class ExternalSink:
    """The store as the sink of alerts posted from outside (`/api/v2/alerts`): every put is
    `external`, so it cannot take the room reserved for Vigil's own alerts."""

    def __init__(self, store: AlertStore) -> None:
        self._store = store

    def put(self, alerts: Iterable[Alert], now_ms: int) -> _Alerts:
        return self._store.put(alerts, now_ms, external=True)

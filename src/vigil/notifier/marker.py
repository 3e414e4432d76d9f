"""Per-alert status as the notification pipeline last decided it: Alertmanager's `types.Marker`.

The v2 API shows for each alert `status: {state, silencedBy, inhibitedBy}`. The pipeline's mute
stages write it every time they look at an alert (so it is the decision of the last flush, not a
fresh evaluation); the store deletes an alert's status when it drops the alert. Semantics kept from
Alertmanager:

- an alert nobody has looked at yet is `unprocessed` (also what `status` answers for an unknown
  fingerprint);
- setting the silences or the inhibitors recomputes the state: `suppressed` when either list is
  non-empty, `active` otherwise; each setter leaves the other list as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["AlertState", "AlertStatus", "Marker"]


class AlertState(StrEnum):
    UNPROCESSED = "unprocessed"
    ACTIVE = "active"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class AlertStatus:
    state: AlertState = AlertState.UNPROCESSED
    silenced_by: tuple[str, ...] = ()  # ids of the active silences muting the alert
    inhibited_by: tuple[str, ...] = ()  # fingerprints (16 hex digits) of the inhibiting alerts


def _state(status: AlertStatus) -> AlertStatus:
    muted = bool(status.silenced_by or status.inhibited_by)
    return replace(status, state=AlertState.SUPPRESSED if muted else AlertState.ACTIVE)


class Marker:
    """Thread-safe map fingerprint → AlertStatus."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._m: dict[int, AlertStatus] = {}

    def set_silenced(self, fp: int, silence_ids: Iterable[str]) -> None:
        with self._lock:
            old = self._m.get(fp, AlertStatus())
            self._m[fp] = _state(replace(old, silenced_by=tuple(silence_ids)))

    def set_inhibited(self, fp: int, inhibitor_fps: Iterable[str]) -> None:
        with self._lock:
            old = self._m.get(fp, AlertStatus())
            self._m[fp] = _state(replace(old, inhibited_by=tuple(inhibitor_fps)))

    def status(self, fp: int) -> AlertStatus:
        with self._lock:
            return self._m.get(fp, AlertStatus())

    def delete(self, fp: int) -> None:
        with self._lock:
            self._m.pop(fp, None)

    def retain(self, fps: set[int]) -> int:
        """Forget every alert not in `fps` (a flush can mark an alert the store has already dropped);
        returns how many."""
        with self._lock:
            gone = [fp for fp in self._m if fp not in fps]
            for fp in gone:
                del self._m[fp]
            return len(gone)

    def count(self, state: AlertState | None = None) -> int:
        with self._lock:
            if state is None:
                return len(self._m)
            return sum(1 for s in self._m.values() if s.state is state)

"""Collectors that notice changes (new listeners, changed files) and report them as events too.

`EventingCollector` wraps such a collector: after each collection it takes the events the collector
found (`events()`), gives them the host's identity labels and a stable id, and hands them to the
event sink (the durable event queue). The metrics are returned unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import Metric

from vigil.model.event import Event, event_id

log = logging.getLogger(__name__)


def identify(found: Iterable[Event], collector: str, labels: dict[str, str]) -> list[Event]:
    """`found` with the host's identity labels and ids derived from what changed and when."""
    instance = labels.get("instance", "")
    return [
        e.with_identity(
            labels,
            event_id(instance, collector, e.kind, e.time_ms, json.dumps(e.fields, sort_keys=True)),
        )
        for e in found
    ]


class ChangeCollector(Protocol):
    name: str

    def collect(self) -> Iterable[Metric]: ...

    def events(self) -> list[Event]: ...


class EventingCollector:
    def __init__(
        self,
        inner: ChangeCollector,
        emit: Callable[[list[Event]], None],
        labels: dict[str, str],
    ) -> None:
        self.name = inner.name
        self._inner = inner
        self._emit = emit
        self._labels = labels
        self._logged = False

    def collect(self) -> Iterable[Metric]:
        # Not concurrently with itself: the agent's InstrumentedCollector serialises collections.
        families = list(self._inner.collect())
        found = self._inner.events()
        if found:
            events = identify(found, self.name, self._labels)
            try:
                self._emit(events)
            except Exception as exc:  # the metrics still count the change; the detail is what is lost
                if not self._logged:
                    self._logged = True
                    log.warning(
                        "%s: could not queue %d events: %s (logged once)", self.name, len(events), exc
                    )
        return families

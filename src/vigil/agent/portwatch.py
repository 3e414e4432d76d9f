"""The listening-ports watcher: a new (or closed) listening socket is an event within a second.

The agent collects every 10 s and the socket tables used to be read at most every
`agent.listening_ports.interval` on a collection, so a new listener reached the server half a minute
late. Reading the tables over netlink costs ~0.1 ms of CPU, so this service (thread `vigil-ports`)
reads them every `ListeningPortsCollector.read_period_s` (`agent.listening_ports.interval`, 1 s by
default; at least `PROC_FLOOR_S` where only /proc/net is readable) and hands `listener_new` and
`listener_gone` events to the event queue as soon as a reading shows the change, as Glouton or
osquery's event tables do. The owner process is looked up for new sockets only. The metrics stay on
the collection cadence: while the watcher runs, collections report its latest reading.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vigil.agent.eventing import identify
from vigil.model.event import Event
from vigil.security.ports import ListeningPortsCollector

log = logging.getLogger(__name__)

_MIN_PERIOD_S = 0.1  # a collector built without an interval must not make the thread spin


class ListenerWatcher:
    """Reads `collector`'s tables on its own thread and emits the changes; a service of vigil.cmd.run."""

    name = "ports"

    def __init__(
        self,
        collector: ListeningPortsCollector,
        emit: Callable[[list[Event]], None],
        labels: dict[str, str],
    ) -> None:
        self._collector = collector
        self._emit = emit
        self._labels = labels
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self.steps = 0  # readings done (for tests: count, never time)

    def step(self) -> list[Event]:
        """One reading; its change events (identified) are emitted and returned. Never raises: a
        failed reading is logged once (and reported by the collector's next collection)."""
        self.steps += 1
        try:
            found = self._collector.read_changes()
        except Exception as exc:
            self._log_once(f"listening ports: reading the socket tables failed: {exc}")
            return []
        events = identify(found, self._collector.name, self._labels)
        if events:
            try:
                self._emit(events)
            except Exception as exc:  # the metrics still count the change; the detail is what is lost
                self._log_once(f"listening ports: could not queue events: {type(exc).__name__}: {exc}")
        return events

    def _log_once(self, message: str) -> None:
        if message not in self._logged and len(self._logged) < 64:
            self._logged.add(message)
            log.warning("%s (logged once)", message)

    def start(self) -> None:
        """The first reading (which learns the baseline) runs here, then the thread; idempotent."""
        if self._thread is not None:
            return
        self._collector.watched = True
        self._stop.clear()
        self.step()
        self._thread = threading.Thread(target=self._loop, name="vigil-ports", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # The period is asked each time: it grows to the /proc floor once netlink is refused.
        while not self._stop.wait(max(self._collector.read_period_s, _MIN_PERIOD_S)):
            self.step()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(10)
        self._collector.watched = False  # collections read themselves again

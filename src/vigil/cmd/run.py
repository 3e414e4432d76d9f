"""The lifecycle of a Vigil process: services started in order, stopped in reverse, once.

`vigil server`, `vigil agent` and `vigil up` are each a list of services (the TSDB, the event store,
the HTTP server, the agent's parts...). A service is anything with a `name`, a `start()` that returns
once it runs (its threads started, its socket listening) and a `stop()` that returns once it has
stopped (its threads joined, with a bound) and is harmless to call again. Components satisfy the
protocol structurally, without importing it; constructors start nothing, so building the list has no
side effect to undo.

`Group` is the run group of Prometheus' `cmd/prometheus` in miniature: a service that fails to start
stops the ones already started, in reverse, before the error goes on; a stop that raises is logged
and the rest are still stopped. `run_until_signal` is the one stop path: SIGINT/SIGTERM set an event
that the main thread waits on, and the main thread stops the group.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Protocol

log = logging.getLogger("vigil")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Service(Protocol):
    """Something a process runs: started once in order, stopped once in reverse."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Task:
    """A service from two callables, for parts whose own methods have other names (`close`)."""

    def __init__(self, name: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        self.name = name
        self._start = start
        self._stop = stop

    def start(self) -> None:
        self._start()

    def stop(self) -> None:
        self._stop()


def _nothing() -> None:
    pass


def renamed(prefix: str, service: Service) -> Task:
    """`service` under the name `<prefix>-<name>` (the agent's parts beside the syslog relay's)."""
    return Task(f"{prefix}-{service.name}", service.start, service.stop)


def stop_all(services: Sequence[Service]) -> None:
    """Stop services that were built but never started (start-up failed before the group ran), in
    reverse, so the files they opened are closed; errors are logged and the rest go on."""
    for service in reversed(services):
        try:
            service.stop()
        except Exception:
            log.exception("stopping %s failed", service.name)


class Group:
    """Services started in the order given and stopped in reverse; each stopped at most once."""

    def __init__(self, services: Iterable[Service] = ()) -> None:
        self._services: list[Service] = list(services)
        self._started: list[Service] = []
        self._lock = threading.Lock()  # start and stop may come from different threads

    def add(self, service: Service) -> None:
        """Append a service; it starts with the others, or at once if the group has started."""
        self._services.append(service)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._services]

    def start(self) -> None:
        """Start every service not yet started, in order. If one raises, the ones started so far are
        stopped in reverse and its exception is re-raised."""
        for service in self._services[len(self._started) :]:
            try:
                service.start()
            except BaseException:
                log.error("could not start %s; stopping what was started", service.name)
                self.stop()
                raise
            with self._lock:
                self._started.append(service)
            log.debug("started %s", service.name)

    def stop(self) -> list[str]:
        """Stop the started services in reverse; a stop that raises is logged and the rest go on.
        Returns the names of those whose stop raised."""
        failed: list[str] = []
        while True:
            with self._lock:
                if not self._started:
                    return failed
                service = self._started.pop()
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
                failed.append(service.name)
            else:
                log.info("stopped %s", service.name)


def leftover_threads(
    before: Sequence[threading.Thread] = (), prefix: str = "vigil"
) -> list[threading.Thread]:
    """Threads still alive that should not be: non-daemon ones besides the main thread, and any whose
    name says it is Vigil's (`prefix`), except those in `before` (alive before the group started)."""
    seen = {id(t) for t in before}
    main = threading.main_thread()
    return [
        t
        for t in threading.enumerate()
        if t is not main
        and t is not threading.current_thread()
        and id(t) not in seen
        and (not t.daemon or t.name.startswith(prefix))
    ]


def warn_leftovers(before: Sequence[threading.Thread] = ()) -> list[threading.Thread]:
    """Log one warning naming the threads `leftover_threads` finds (an operator's diagnostic)."""
    left = leftover_threads(before)
    if left:
        log.warning("threads left after stopping: %s", ", ".join(sorted(t.name for t in left)))
    return left


def run_until_signal(
    group: Group, on_started: Callable[[], None] = _nothing, stop: threading.Event | None = None
) -> int:
    """Start `group`, wait in the main thread for SIGINT or SIGTERM (or for `stop`, which a service
    that ends by itself sets), stop the group; exit status 0, 1 if a stop failed. The handlers are
    installed before anything starts, so a signal during start-up stops cleanly too (start-up
    finishes, then everything is stopped)."""
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second signal: the operator insists; say what is holding up the exit
            log.warning("still stopping (received %s again)", signal.Signals(signum).name)
        else:
            log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    before = threading.enumerate()
    try:
        group.start()
        on_started()
        stop.wait()
    finally:
        failed = group.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    warn_leftovers(before)
    return 1 if failed else 0

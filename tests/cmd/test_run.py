"""The run group (vigil.cmd.run): order of start and stop, a failed start, a failing stop, and the
leftover-thread diagnostic, with real small services (threads that run until stopped)."""

from __future__ import annotations

import logging
import threading

import pytest

from vigil.cmd.run import Group, Task, leftover_threads, renamed, warn_leftovers


class Worker:
    """A service with a thread of its own that runs until stop(); records what happened in `journal`."""

    def __init__(self, name: str, journal: list[str], fail_start: bool = False, fail_stop: bool = False):
        self.name = name
        self._journal, self._fail_start, self._fail_stop = journal, fail_start, fail_stop
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self._fail_start:
            raise OSError(f"{self.name}: address in use")
        self.thread = threading.Thread(target=self._stop.wait, name=f"vigil-test-{self.name}", daemon=True)
        self.thread.start()
        self._journal.append(f"start {self.name}")

    def stop(self) -> None:
        self._journal.append(f"stop {self.name}")
        self._stop.set()
        if self.thread is not None:
            self.thread.join(60)
        if self._fail_stop:
            raise RuntimeError(f"{self.name} would not stop")


def test_starts_in_order_and_stops_in_reverse_once(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    workers = [Worker(n, journal) for n in ("db", "events", "http")]
    group = Group(workers)
    group.start()
    assert journal == ["start db", "start events", "start http"]
    with caplog.at_level(logging.INFO, logger="vigil"):
        assert group.stop() == []
        assert group.stop() == []  # a second stop stops nothing again
    assert journal[3:] == ["stop http", "stop events", "stop db"]
    assert [r.getMessage() for r in caplog.records] == ["stopped http", "stopped events", "stopped db"]
    assert not any(w.thread is not None and w.thread.is_alive() for w in workers)


def test_a_failed_start_stops_what_started_in_reverse_and_raises() -> None:
    journal: list[str] = []
    workers = [Worker("db", journal), Worker("events", journal), Worker("http", journal, fail_start=True)]
    late = Worker("agent", journal)
    group = Group([*workers, late])
    with pytest.raises(OSError, match="http: address in use"):
        group.start()
    # The one that failed is not stopped (it never started), the one after it never starts.
    assert journal == ["start db", "start events", "stop events", "stop db"]
    assert late.thread is None
    assert group.stop() == []
    assert journal[4:] == []


def test_a_failing_stop_is_logged_and_the_rest_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    group = Group([Worker("db", journal), Worker("http", journal, fail_stop=True), Worker("agent", journal)])
    group.start()
    with caplog.at_level(logging.INFO, logger="vigil"):
        assert group.stop() == ["http"]
    assert journal[3:] == ["stop agent", "stop http", "stop db"]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["stopping http failed"]
    assert failed[0].exc_info is not None and "would not stop" in str(failed[0].exc_info[1])


def test_services_added_later_start_with_a_second_start() -> None:
    journal: list[str] = []
    group = Group([Worker("db", journal)])
    group.start()
    group.add(Worker("rules", journal))
    group.start()
    group.stop()
    assert journal == ["start db", "start rules", "stop rules", "stop db"]


def test_task_and_renamed_adapt_callables() -> None:
    journal: list[str] = []
    inner = Worker("shipper", journal)
    task = renamed("agent", inner)
    assert task.name == "agent-shipper"
    group = Group([Task("store", lambda: journal.append("open"), lambda: journal.append("close")), task])
    group.start()
    group.stop()
    assert journal == ["open", "start shipper", "stop shipper", "close"]


def test_leftover_threads_names_vigil_and_non_daemon_threads(caplog: pytest.LogCaptureFixture) -> None:
    before = threading.enumerate()
    release = threading.Event()
    named = threading.Thread(target=release.wait, name="vigil-stuck", daemon=True)
    plain = threading.Thread(target=release.wait, name="helper", daemon=False)
    library = threading.Thread(target=release.wait, name="AnyIO worker thread", daemon=True)
    for t in (named, plain, library):
        t.start()
    try:
        assert {t.name for t in leftover_threads(before)} == {"vigil-stuck", "helper"}
        with caplog.at_level(logging.WARNING, logger="vigil"):
            warn_leftovers(before)
        [warning] = [r.getMessage() for r in caplog.records]
        assert warning == "threads left after stopping: helper, vigil-stuck"
    finally:
        release.set()
        for t in (named, plain, library):
            t.join(60)
    assert leftover_threads(before) == []

"""The listening-ports watcher: a new listener is one `listener_new` event at the watcher's next
reading, with its port and process, without any collection; a closed one is `listener_gone`; while the
watcher runs, collections report its reading and ship nothing twice."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from tests.agent.test_eventing import LABELS, NEW_LISTENER
from tests.security.test_ports import TCP, _proc
from tests.waiting import wait_until
from vigil.agent.eventing import EventingCollector
from vigil.agent.portwatch import ListenerWatcher
from vigil.model.collector import CollectorUnavailable
from vigil.model.event import Event
from vigil.security.ports import PROC_FLOOR_S, ListeningPortsCollector


def test_a_new_listener_is_one_event_at_the_next_reading_without_a_collection(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    collector = ListeningPortsCollector(proc=proc)
    collections = [0]
    real_collect = collector.collect

    def counting_collect() -> object:
        collections[0] += 1
        return real_collect()

    collector.collect = counting_collect  # type: ignore[assignment,method-assign]
    events: list[Event] = []
    watcher = ListenerWatcher(collector, events.extend, LABELS)
    assert watcher.step() == [] and events == []  # the first reading learns the baseline
    (proc / "net" / "tcp").write_text(TCP + NEW_LISTENER)
    os.symlink("socket:[5555]", proc / "100" / "fd" / "9")
    [event] = watcher.step()
    assert events == [event] and collections[0] == 0
    assert event.kind == "listener_new" and event.labels == LABELS and event.id
    assert event.fields == {
        "protocol": "tcp",
        "address": "127.0.0.1",
        "port": 9400,
        "process": "sshd",
        "expected": False,
    }
    assert watcher.step() == [] and len(events) == 1  # reported once
    # Closed: one listener_gone, with the process it had.
    (proc / "net" / "tcp").write_text(TCP)
    [gone] = watcher.step()
    assert gone.kind == "listener_gone" and gone.fields["port"] == 9400 and gone.fields["process"] == "sshd"
    assert "closed" in gone.message and gone.id != event.id
    assert watcher.step() == [] and len(events) == 2


def test_while_watched_collections_report_the_reading_and_ship_nothing(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    # A long period: the thread sleeps, the test drives the readings.
    collector = ListeningPortsCollector(proc=proc, interval_s=3600)
    shipped_by_collections: list[Event] = []
    eventing = EventingCollector(collector, shipped_by_collections.extend, LABELS)
    watched: list[Event] = []
    watcher = ListenerWatcher(collector, watched.extend, LABELS)
    watcher.start()  # the first reading runs in start()
    try:
        assert watcher.steps == 1 and collector.watched
        reads = [0]
        real = collector.listeners

        def counting() -> list:  # type: ignore[type-arg]
            reads[0] += 1
            return real()

        collector.listeners = counting  # type: ignore[method-assign]
        (proc / "net" / "tcp").write_text(TCP + NEW_LISTENER)
        list(eventing.collect())
        assert reads[0] == 0 and shipped_by_collections == []  # collections do not read
        watcher.step()
        families = {f.name: f for f in eventing.collect()}
        assert [e.kind for e in watched] == ["listener_new"] and shipped_by_collections == []
        assert families["vigil_listening_ports_unexpected"].samples[0].value == 1
        assert any(s.labels["port"] == "9400" for s in families["vigil_listening_ports"].samples)
    finally:
        watcher.stop()
    assert not collector.watched
    assert not [t for t in threading.enumerate() if t.name == "vigil-ports"]


def test_a_failed_reading_is_reported_by_the_collection(tmp_path: Path) -> None:
    collector = ListeningPortsCollector(proc=tmp_path, interval_s=3600)  # no net/ files at all
    watcher = ListenerWatcher(collector, lambda _: None, LABELS)
    watcher.start()
    try:
        assert watcher.steps == 1
        with pytest.raises(CollectorUnavailable):
            list(collector.collect())
    finally:
        watcher.stop()


def test_the_proc_fallback_reads_at_most_every_floor(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    assert ListeningPortsCollector(proc=proc, interval_s=1).read_period_s == PROC_FLOOR_S
    assert ListeningPortsCollector(proc=proc, interval_s=60).read_period_s == 60
    assert ListeningPortsCollector(interval_s=1, use_netlink=True).read_period_s == 1


def test_process_lookup_retries_scale_with_the_read_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unowned sockets' processes are looked for again about once a minute, not every 10th reading of
    a 1 s watcher (the /proc/*/fd walk costs milliseconds)."""
    from vigil.security import ports

    walks = [0]
    real = ports._socket_owners

    def counting(proc: Path, inodes: set[int]) -> dict[int, set[str]]:
        walks[0] += 1
        return real(proc, inodes)

    monkeypatch.setattr(ports, "_socket_owners", counting)
    c = ListeningPortsCollector(proc=_proc(tmp_path), interval_s=1)
    for _ in range(59):
        c.listeners()
    assert walks[0] == 1  # the first reading only (the fixture has one unowned socket)
    c.listeners()
    assert walks[0] == 2


def test_a_real_listener_on_loopback_is_one_event_with_port_and_process() -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    comm = Path("/proc/self/comm").read_text().strip()
    events: list[Event] = []
    watcher = ListenerWatcher(ListeningPortsCollector(learn=False), events.extend, LABELS)
    watcher.step()
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
        watcher.step()
        mine = [e for e in events if e.fields["port"] == port and e.fields["protocol"] == "tcp"]
        assert [(e.kind, e.fields["address"], e.fields["process"]) for e in mine] == [
            ("listener_new", "127.0.0.1", comm)
        ]
    watcher.step()
    mine = [e for e in events if e.fields["port"] == port and e.fields["protocol"] == "tcp"]
    assert [e.kind for e in mine] == ["listener_new", "listener_gone"]


def test_the_thread_reads_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started, the watcher reads again and again on its own (counted, not timed)."""
    from vigil.security import ports

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    monkeypatch.setattr(ports, "PROC_FLOOR_S", 0.01)
    watcher = ListenerWatcher(ListeningPortsCollector(learn=False, interval_s=0.01), lambda _: None, LABELS)
    watcher.start()
    try:
        wait_until(lambda: watcher.steps >= 3, what="three readings by the watcher's thread")
    finally:
        watcher.stop()

"""Change collectors as events: a new listener and a changed file become events with the host's
identity and an id, once each, also when the agent's loop and a /metrics scrape collect at once."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from tests.security.test_ports import TCP, _proc
from vigil.agent.eventing import EventingCollector
from vigil.agent.runner import AgentMetrics, InstrumentedCollector
from vigil.model.event import Event
from vigil.security.integrity import FileIntegrityCollector
from vigil.security.ports import ListeningPortsCollector

LABELS = {"instance": "web1", "job": "vigil-agent"}
NEW_LISTENER = (
    "   9: 0100007F:24B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
    "     0        0 5555 1 000000000cd05cbc 100 0 0 10 0\n"
)


def test_new_listener_event(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    events: list[Event] = []
    c = EventingCollector(ListeningPortsCollector(proc=proc), events.extend, LABELS)
    list(c.collect())
    assert events == []  # the first collection has nothing to compare with
    (proc / "net" / "tcp").write_text(TCP + NEW_LISTENER)
    os.symlink("socket:[5555]", proc / "100" / "fd" / "9")
    list(c.collect())
    list(c.collect())
    assert len(events) == 1
    e = events[0]
    assert e.kind == "listener_new" and e.labels == LABELS and e.id
    assert e.fields == {
        "protocol": "tcp",
        "address": "127.0.0.1",
        "port": 9400,
        "process": "sshd",
        "expected": False,
    }
    assert "not in the baseline" in e.message


def test_file_changed_event(tmp_path: Path) -> None:
    passwd = tmp_path / "etc" / "passwd"
    passwd.parent.mkdir()
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    old = hashlib.sha256(passwd.read_bytes()).hexdigest()
    events: list[Event] = []
    c = EventingCollector(FileIntegrityCollector(["/etc/passwd"], root=tmp_path), events.extend, LABELS)
    list(c.collect())
    assert events == []  # learning
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nmallory:x:0:0::/:/bin/sh\n")
    os.chmod(passwd, 0o600)
    list(c.collect())
    assert len(events) == 1
    e = events[0]
    assert e.kind == "file_changed" and e.labels == LABELS
    assert e.fields["path"] == "/etc/passwd" and e.fields["change"] == "modified"
    assert e.fields["old_sha256"] == old
    assert e.fields["new_sha256"] == hashlib.sha256(passwd.read_bytes()).hexdigest()
    assert e.fields["mode"] == "0600" and e.fields["owner"] == os.getuid()


def test_concurrent_collections_report_a_change_once(tmp_path: Path) -> None:
    """The agent's round and a scrape of /metrics at the same moment: one event, counted once."""
    passwd = tmp_path / "etc" / "passwd"
    passwd.parent.mkdir()
    passwd.write_text("a\n")
    for attempt in range(20):
        events: list[Event] = []
        inner = FileIntegrityCollector(["/etc/passwd"], root=tmp_path)
        # As the agent registers it: InstrumentedCollector is what serialises collections.
        c = InstrumentedCollector(EventingCollector(inner, events.extend, LABELS), AgentMetrics())
        list(c.collect())
        passwd.write_text(f"changed {attempt}\n")
        start = threading.Barrier(2)

        def collect(c: InstrumentedCollector = c, start: threading.Barrier = start) -> None:
            start.wait()
            list(c.collect())

        threads = [threading.Thread(target=collect) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(events) == 1
        changes = [s.value for f in inner.collect() for s in f.samples if s.name.endswith("changes_total")]
        assert sum(changes) == 1


def test_an_event_sink_failure_keeps_the_metrics(tmp_path: Path) -> None:
    def broken(_: list[Event]) -> None:
        raise OSError("disk full")

    proc = _proc(tmp_path)
    c = EventingCollector(ListeningPortsCollector(proc=proc), broken, LABELS)
    list(c.collect())
    (proc / "net" / "tcp").write_text(TCP + NEW_LISTENER)
    families = list(c.collect())
    assert {f.name for f in families} == {"vigil_listening_ports", "vigil_listening_ports_unexpected"}

"""The log pipeline: exactly-once counting across restarts and crashes, event identity, read errors."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from vigil.agent.identity import Identity
from vigil.agent.runner import Agent
from vigil.logs import tail
from vigil.logs.pipeline import FileSource, JournalSource, LogPipeline
from vigil.logs.processor import LogLine
from vigil.model.event import Event
from vigil.security.authlog import AuthLogProcessor

FAIL = "Nov 22 10:00:{s:02d} web1 sshd[4242]: Failed password for root from 203.0.113.{n} port 5{s:04d} ssh2"
OK = "Nov 22 10:01:00 web1 sshd[4243]: Accepted publickey for deploy from 198.51.100.9 port 40000 ssh2"
LABELS = {"instance": "web1", "job": "vigil-agent"}


def failures(n: int, start: int = 0) -> str:
    return "".join(FAIL.format(s=(start + i) % 60, n=start + i) + "\n" for i in range(n))


def count(pipeline: LogPipeline, result: str) -> float:
    total = 0.0
    for p in pipeline.processors():
        for fam in p.collect():
            for s in fam.samples:
                if s.name == "vigil_auth_attempts_total" and s.labels["result"] == result:
                    total += s.value
    return total


def make(tmp_path: Path, sink: list[Event], *, start_at_end: bool = False) -> LogPipeline:
    source = FileSource("auth", [str(tmp_path / "auth.log")], [AuthLogProcessor()], start_at_end=start_at_end)
    return LogPipeline([source], tmp_path / "state" / "logs.json", emit=sink.extend, labels=LABELS)


def test_lines_become_counters_and_events_with_identity(tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text(failures(3) + OK + "\n" + "Nov 22 10:02:00 web1 cron[1]: noise\n")
    events: list[Event] = []
    p = make(tmp_path, events)
    assert p.poll_once() == 5
    assert count(p, "failure") == 3 and count(p, "success") == 1
    assert [e.kind for e in events] == ["auth"] * 4
    first = events[0]
    assert first.labels == {**LABELS, "source": "auth"}
    assert first.fields["source_address"] == "203.0.113.0" and first.fields["user"] == "root"
    assert first.fields["result"] == "failure" and "Failed password" in str(first.fields["line"])
    assert len({e.id for e in events}) == 4  # identical-looking lines still get distinct ids


def test_restart_resumes_counters_and_offsets(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_text(failures(5))
    events: list[Event] = []
    p = make(tmp_path, events)
    p.poll_once()
    p.stop()
    with log_file.open("a") as f:
        f.write(failures(2, start=5))
    again = make(tmp_path, events)
    again.poll_once()
    assert count(again, "failure") == 7  # continues from the checkpoint: a counter, not a reset
    assert len(events) == 7 and len({e.id for e in events}) == 7


def crash_before_second_checkpoint(
    tmp_path: Path, before: int, after: int
) -> tuple[LogPipeline, list[Event]]:
    """`before` lines read and checkpointed, `after` more read, then the process dies before that
    second checkpoint reaches the disk. Returns the pipeline (as it was in memory) and its events."""
    log_file = tmp_path / "auth.log"
    state = tmp_path / "state" / "logs.json"
    log_file.write_text(failures(before))
    events: list[Event] = []
    p = make(tmp_path, events)
    p.poll_once()
    saved = tmp_path / "checkpoint-1.json"
    shutil.copy(state, saved)
    with log_file.open("a") as f:
        f.write(failures(after, start=before))
    p.poll_once()
    shutil.copy(saved, state)  # the second checkpoint never reached the disk
    return p, events


def test_crash_before_checkpoint_counts_every_line_once(tmp_path: Path) -> None:
    """A crash after processing but before the checkpoint is written: the restart re-reads the lines
    against the counters of the previous checkpoint, and re-emits the same event ids."""
    p, first = crash_before_second_checkpoint(tmp_path, 4, 3)
    assert count(p, "failure") == 7
    replay: list[Event] = []
    again = make(tmp_path, replay)
    again.poll_once()
    assert count(again, "failure") == 7
    assert [e.id for e in replay] == [e.id for e in first[4:]]  # the server stores them once


def test_rotation_between_polls(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_text(failures(2))
    events: list[Event] = []
    p = make(tmp_path, events)
    p.poll_once()
    with log_file.open("a") as f:
        f.write(failures(1, start=2))
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_text(failures(2, start=3))
    p.poll_once()
    assert count(p, "failure") == 5


def test_start_at_end_skips_history(tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text(failures(10))
    events: list[Event] = []
    p = make(tmp_path, events, start_at_end=True)
    assert p.poll_once() == 0
    with (tmp_path / "auth.log").open("a") as f:
        f.write(failures(1, start=10))
    p.poll_once()
    assert count(p, "failure") == 1 and len(events) == 1


def test_syslog_lines_go_to_syslog_processors(tmp_path: Path) -> None:
    events: list[Event] = []
    auth = AuthLogProcessor()
    p = LogPipeline([], tmp_path / "logs.json", emit=events.extend, labels=LABELS, syslog_processors=[auth])
    line = FAIL.format(s=1, n=7)
    for i in range(3):
        p.push(LogLine("syslog", line, 1_700_000_000_000, f"syslog:127.0.0.1#{i}"))
    assert p.poll_once() == 3
    assert count(p, "failure") == 3
    assert {e.labels["source"] for e in events} == {"syslog"}


def test_syslog_queue_is_bounded(tmp_path: Path) -> None:
    p = LogPipeline([], tmp_path / "logs.json", syslog_processors=[AuthLogProcessor()], max_pending_syslog=2)
    for i in range(5):
        p.push(LogLine("syslog", "x", 0, f"syslog:peer#{i}"))
    assert p.syslog_dropped == 3
    assert p.poll_once() == 2


def test_failed_round_is_rolled_back_and_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events that cannot be queued (disk full) or a checkpoint that cannot be written: the round is
    forgotten (counters and positions back to the last checkpoint, syslog lines requeued) and read
    again later, so nothing is lost and nothing counted twice."""
    (tmp_path / "auth.log").write_text(failures(2))
    full = [True]
    events: list[Event] = []

    def emit(batch: list[Event]) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        events.extend(batch)

    auth = AuthLogProcessor()
    source = FileSource("auth", [str(tmp_path / "auth.log")], [auth], start_at_end=False)
    p = LogPipeline([source], tmp_path / "logs.json", emit=emit, labels=LABELS, syslog_processors=[auth])
    p.push(LogLine("syslog", FAIL.format(s=5, n=99), 1_700_000_000_000, "syslog:fw#1"))
    assert p.poll_once() == 0
    assert p.poll_once() == 0
    assert count(p, "failure") == 0 and p.rounds_retried == 2
    assert "vigil_log_rounds_retried_total 2.0" in generate_latest(_registry(p)).decode()
    full[0] = False
    assert p.poll_once() == 3
    assert count(p, "failure") == 3 and len(events) == 3
    # The checkpoint cannot be written: the same, then it can again.
    with (tmp_path / "auth.log").open("a") as f:
        f.write(failures(1, start=2))
    monkeypatch.setattr(os, "replace", _raise_enospc)
    assert p.poll_once() == 0 and count(p, "failure") == 3
    monkeypatch.undo()
    assert p.poll_once() == 1 and count(p, "failure") == 4
    assert len({e.id for e in events}) == 4  # the event of the retried round, sent twice, one id


def _raise_enospc(*_: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _registry(p: LogPipeline) -> CollectorRegistry:
    registry = CollectorRegistry()
    for c in p.collectors():
        registry.register(c)
    return registry


def test_unreadable_log_is_one_log_line_and_an_error_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent keeps working when auth.log cannot be read: one clear log line, and
    vigil_agent_collector_errors_total{collector="log_auth"} counts the failing collections."""
    (tmp_path / "auth.log").write_text(failures(1))

    def denied(path: str) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(tail, "_open", denied)  # the tests run as root, which ignores file modes
    source = FileSource("auth", [str(tmp_path / "auth.log")], [AuthLogProcessor()], start_at_end=False)
    p = LogPipeline([source], tmp_path / "logs.json", labels=LABELS)
    registry = CollectorRegistry()
    agent = Agent(p.collectors(), Identity(instance="web1", platform="kvm"), "vigil-agent", registry)
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        p.poll_once()
        agent.collect_round()
    assert errors(agent) == 5
    text = generate_latest(registry).decode()
    assert 'vigil_log_files_unreadable{source="auth"} 1.0' in text
    lines = [r.getMessage() for r in caplog.records if "log_auth" in r.getMessage()]
    assert len(lines) == 1 and "EACCES" in lines[0] and "auth.log" in lines[0]
    monkeypatch.undo()  # permission restored: the line is read, the error series stops growing
    p.poll_once()
    before = errors(agent)
    agent.collect_round()
    assert count(p, "failure") == 1 and errors(agent) == before


def errors(agent: Agent) -> float:
    # Read the counter itself: reading it through the registry would run the collectors once more.
    for fam in agent.metrics.errors.collect():
        for s in fam.samples:
            if s.name.endswith("_total") and s.labels == {"collector": "log_auth"}:
                return s.value
    raise AssertionError("no error series for log_auth")


def test_lines_written_before_the_first_checkpoint_survive_a_crash(tmp_path: Path) -> None:
    """Started at the end of an empty file, killed before any line was read: the restart resumes at
    the saved position instead of skipping to the end again, so those lines are still counted."""
    (tmp_path / "auth.log").write_text("")
    events: list[Event] = []
    make(tmp_path, events, start_at_end=True).poll_once()  # then "killed": no stop, no further poll
    with (tmp_path / "auth.log").open("a") as f:
        f.write(failures(3))
    again = make(tmp_path, events, start_at_end=True)
    again.poll_once()
    assert count(again, "failure") == 3


def test_lines_read_again_after_a_rotation_keep_their_event_ids(tmp_path: Path) -> None:
    """Crash before the checkpoint, logrotate while down: the restart reads the same lines from
    auth.log.1, and their events have the ids they had (the server stores them once)."""
    _, first = crash_before_second_checkpoint(tmp_path, 2, 3)
    log_file = tmp_path / "auth.log"
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_text("")
    replay: list[Event] = []
    again = make(tmp_path, replay)
    again.poll_once()
    assert count(again, "failure") == 5
    assert [e.id for e in replay] == [e.id for e in first[2:]]


def test_sources_say_what_they_read_and_a_missing_log_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The report: on a host without auth.log, zero-config auth monitoring gave no series, no error
    # and no log line. Now the source, what it reads and that it reads nothing are all visible.
    source = FileSource("auth", [str(tmp_path / "auth.log"), str(tmp_path / "secure")], [AuthLogProcessor()])
    p = LogPipeline([source], tmp_path / "logs.json", labels=LABELS)
    registry = CollectorRegistry()
    for c in p.collectors():
        registry.register(c)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        p.poll_once()
    assert registry.get_sample_value("vigil_log_source_info", {"source": "auth", "kind": "file"}) == 1
    assert registry.get_sample_value("vigil_log_files_followed", {"source": "auth"}) == 0
    assert registry.get_sample_value("vigil_log_lines_read_total", {"source": "auth"}) == 0
    said = [r.getMessage() for r in caplog.records if "log source auth" in r.getMessage()]
    assert len(said) == 1 and "no file matches" in said[0] and "auth.log" in said[0] and "secure" in said[0]

    (tmp_path / "secure").write_text(failures(2))
    p.poll_once()
    p.poll_once()
    assert registry.get_sample_value("vigil_log_files_followed", {"source": "auth"}) == 1
    assert registry.get_sample_value("vigil_log_lines_read_total", {"source": "auth"}) == 2
    said = [r.getMessage() for r in caplog.records if "log source auth" in r.getMessage()]
    assert said[1:] == [f"log source auth: reading {tmp_path / 'secure'}"]


def test_journal_source_kind(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-journalctl")  # a journalctl that cannot start: follows nothing
    p = LogPipeline([JournalSource("auth", journalctl=missing)], tmp_path / "logs.json", labels=LABELS)
    registry = CollectorRegistry()
    for c in p.collectors():
        registry.register(c)
    p.poll_once()
    assert registry.get_sample_value("vigil_log_source_info", {"source": "auth", "kind": "journal"}) == 1
    assert registry.get_sample_value("vigil_log_files_followed", {"source": "auth"}) == 0
    p.stop()

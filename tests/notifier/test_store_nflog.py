"""The alert store (merge, resolve_timeout, bounds, gc) and the persisted notification log
(restart without re-sending, damaged files)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.notifier.corekit import T0, FakeClock, Recorder, alert, config, make, run_until
from vigil.notifier.alert import Alert
from vigil.notifier.marker import Marker
from vigil.notifier.nflog import NotificationLog
from vigil.notifier.store import AlertStore, InvalidAlert, StoreFull

FAR = T0 + 100 * 3600_000
CFG = """
global:
  resolve_timeout: 2m
route:
  receiver: r
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
- name: r
"""


def test_alert_without_end_times_out_after_resolve_timeout() -> None:
    s = AlertStore(resolve_timeout_ms=120_000)
    (a,) = s.put([alert("Down")], T0)
    assert (a.starts_at_ms, a.ends_at_ms, a.timeout, a.updated_at_ms) == (T0, T0 + 120_000, True, T0)
    # Refreshed before the timeout: the end moves on, the start stays.
    (b,) = s.put([alert("Down")], T0 + 60_000)
    assert (b.starts_at_ms, b.ends_at_ms) == (T0, T0 + 180_000)
    assert not b.resolved_at(T0 + 179_999) and b.resolved_at(T0 + 180_000)


def test_merge_keeps_earliest_start_and_explicit_later_end() -> None:
    s = AlertStore()
    s.put([alert("Down", starts=T0, ends=T0 + 600_000)], T0)
    (m,) = s.put([alert("Down", starts=T0 + 60_000)], T0 + 60_000)  # no end: a timeout end, earlier
    assert (m.starts_at_ms, m.ends_at_ms) == (T0, T0 + 600_000)
    # An explicit resolution inside the range ends it.
    (r,) = s.put([alert("Down", ends=T0 + 120_000)], T0 + 120_000)
    assert (r.starts_at_ms, r.ends_at_ms) == (T0, T0 + 120_000)
    # A new firing period after the resolution is not merged with the old one.
    (n,) = s.put([alert("Down", starts=T0 + 200_000, ends=FAR)], T0 + 200_000)
    assert (n.starts_at_ms, n.ends_at_ms) == (T0 + 200_000, FAR)


def test_empty_label_values_are_dropped_and_invalid_alerts_refused() -> None:
    s = AlertStore()
    (a,) = s.put([Alert(labels={"alertname": "X", "team": ""})], T0)
    assert dict(a.labels) == {"alertname": "X"}
    with pytest.raises(InvalidAlert, match="alert 1: at least one label pair"):
        s.put([alert("Y"), Alert(labels={"a": ""})], T0)
    with pytest.raises(InvalidAlert, match="start time must be before end time"):
        s.put([alert("Y", starts=T0, ends=T0 - 1)], T0)
    assert len(s) == 1  # nothing of a refused batch is stored


def test_store_is_bounded_and_collects_resolved_before_refusing() -> None:
    marker = Marker()
    s = AlertStore(max_alerts=3, marker=marker)
    s.put([alert(f"A{i}", ends=FAR) for i in range(2)], T0)
    s.put([alert("Old", ends=T0 + 10)], T0)
    marker.set_silenced(s.list()[-1].fingerprint, ["x"])
    # Full; "Old" is resolved by now and makes room.
    s.put([alert("New", ends=FAR)], T0 + 20)
    assert sorted(a.name for a in s.list()) == ["A0", "A1", "New"]
    assert marker.count() == 0  # its status went with it
    with pytest.raises(StoreFull, match="maximum of 3 alerts and the batch adds 2 new ones") as e:
        s.put([alert("A0", ends=FAR), alert("B", ends=FAR), alert("C", ends=FAR)], T0 + 30)
    assert (e.value.limit, e.value.adding) == (3, 2)
    s.put([alert("A0", ends=FAR + 1)], T0 + 40)  # updates of known alerts still pass


def test_store_bounds_the_bytes_of_alert_text_not_only_the_count() -> None:
    # A hostile sender posts few alerts with huge annotations: the count bound alone would let
    # max_alerts x body-size bytes in. Each alert here costs 1,018 characters.
    s = AlertStore(max_alerts=1000, max_bytes=5_200)
    big = {"summary": "x" * 1000}

    def put(names: list[str], now: int, annotations: dict[str, str] = big, ends: int = FAR) -> None:
        s.put([Alert({"alertname": n}, annotations, ends_at_ms=ends) for n in names], now)

    put(["A0", "A1", "A2", "A3"], T0)
    assert s.bytes == 4 * 1018
    with pytest.raises(StoreFull, match="maximum of 5200 bytes of alert text and the batch adds 2036 more"):
        put(["B0", "B1"], T0)
    assert (len(s), s.bytes) == (4, 4 * 1018)  # nothing of the refused batch is stored
    put(["A0"], T0 + 10, {}, ends=T0 + 10)  # a smaller copy frees the difference
    assert s.bytes == 3 * 1018 + 11
    put(["A0"], T0 + 10, ends=T0 + 10)  # resolved, but big again
    put(["B0"], T0 + 20)
    put(["B1"], T0 + 20)  # only fits once the resolved A0 is collected
    assert sorted(a.name for a in s.list()) == ["A1", "A2", "A3", "B0", "B1"]
    assert s.bytes == 5 * 1018


def test_posted_alerts_cannot_take_the_room_reserved_for_vigils_own() -> None:
    # Anyone with a write token may post alerts; had they filled the store, the brute-force alert
    # of Vigil's own rules would be refused with it.
    s = AlertStore(max_alerts=10, max_bytes=10_000, reserved=0.2)
    posted = s.external_sink()
    posted.put([alert(f"P{i}", ends=FAR) for i in range(8)], T0)
    with pytest.raises(StoreFull, match="maximum of 8 alerts"):
        posted.put([alert("P8", ends=FAR)], T0)
    s.put([alert("Own0", ends=FAR), alert("Own1", ends=FAR)], T0)  # the rule manager's put
    assert len(s) == 10
    with pytest.raises(StoreFull, match="maximum of 8000 bytes"):
        posted.put([Alert({"alertname": "P0"}, {"x": "y" * 7950}, ends_at_ms=FAR)], T0)
    posted.put([alert("P0", ends=FAR + 1)], T0 + 1)  # an update adding nothing passes above the share


def test_gc_drops_resolved_alerts() -> None:
    s = AlertStore()
    s.put([alert("A", ends=T0 + 100), alert("B", ends=FAR)], T0)
    assert [a.name for a in s.gc(T0 + 99)] == []
    assert [a.name for a in s.gc(T0 + 100)] == ["A"]
    assert [a.name for a in s.list()] == ["B"]


@pytest.mark.parametrize("clean", [True, False], ids=["stop", "kill-9"])
def test_restart_does_not_resend(tmp_path: Path, clean: bool) -> None:
    clock = FakeClock()
    rec1 = Recorder()
    n1, _ = make(config(CFG), {"r": [rec1]}, clock, state_dir=tmp_path)
    n1.put([alert("Down", ends=FAR, instance="a")])
    run_until(n1, clock, T0 + 30_000)
    assert len(rec1.sent) == 1
    if clean:
        n1.stop()
    # kill -9: nothing more happens to n1; the journal was fsynced at delivery.
    clock.advance(60_000)
    rec2 = Recorder()
    n2, _ = make(config(CFG), {"r": [rec2]}, clock, state_dir=tmp_path)
    n2.put([alert("Down", ends=FAR, starts=T0, instance="a")])  # the sender re-sends what fires
    run_until(n2, clock, clock.t + 3600_000, step_ms=60_000)
    assert rec2.sent == []  # old enough: flushed at once, and deduplicated against the log
    n2.put([alert("Down", ends=FAR, instance="b")])
    run_until(n2, clock, clock.t + 300_000, step_ms=60_000)
    assert [s.names for s in rec2.sent] == [["a", "b"]]


def test_restart_remembers_alerts_it_notified_that_then_resolve(tmp_path: Path) -> None:
    clock = FakeClock()
    rec1 = Recorder()
    n1, _ = make(config(CFG), {"r": [rec1]}, clock, state_dir=tmp_path)
    n1.put([alert("Down", ends=FAR, instance="a")])
    run_until(n1, clock, T0 + 30_000)
    rec2 = Recorder()
    n2, _ = make(config(CFG), {"r": [rec2]}, clock, state_dir=tmp_path)
    n2.put([alert("Down", starts=T0, ends=clock.t + 1, instance="a")])
    run_until(n2, clock, clock.t + 60_000)
    assert [s.statuses() for s in rec2.sent] == [["resolved"]]


def test_truncated_log_warns_once_and_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = NotificationLog(tmp_path, clock)
    for i in range(5):
        log.log(f"g{i}", "r", "webhook", 0, {1, 2}, set(), T0)
    log.close()
    snap = tmp_path / "nflog.json"
    data = snap.read_bytes()
    snap.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="vigil.notifier.nflog"):
        again = NotificationLog(tmp_path, clock)
    assert len(again) == 0
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    # The damaged file was replaced: the next start is quiet.
    again.log("g", "r", "webhook", 0, {1}, set(), T0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vigil.notifier.nflog"):
        third = NotificationLog(tmp_path, clock)
    assert len(third) == 1 and caplog.records == []


def test_journal_cut_mid_line_keeps_the_lines_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    log = NotificationLog(tmp_path, clock)
    log.log("g1", "r", "webhook", 0, {1}, set(), T0)
    log.log("g2", "r", "webhook", 0, {2}, set(), T0)
    with open(tmp_path / "nflog.journal", "a") as fh:  # a crash in the middle of the next line
        fh.write('{"g":"g3","r":"r","i":"web')
    with caplog.at_level(logging.WARNING, logger="vigil.notifier.nflog"):
        again = NotificationLog(tmp_path, clock)
    assert sorted(e.group_key for e in again.entries()) == ["g1", "g2"]
    assert len(caplog.records) == 1


def test_log_entries_expire_and_files_stay_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    log = NotificationLog(tmp_path, clock, retention_ms=3600_000, max_entries=10, compact_after=50)
    log.log("short", "r", "webhook", 0, {1}, set(), T0, expiry_ms=60_000)  # 2 × repeat_interval
    log.log("long", "r", "webhook", 0, {1}, set(), T0, expiry_ms=10 * 3600_000)  # capped by retention
    assert {e.group_key: e.expires_at_ms - T0 for e in log.entries()} == {"short": 60_000, "long": 3600_000}
    clock.advance(60_000)
    assert log.query("short", "r", "webhook", 0) is None
    assert log.gc(clock.t) == 1
    for i in range(300):  # many updates of few keys, then more keys than allowed
        log.log(f"g{i % 20}", "r", "webhook", 0, {i}, set(), clock.t + i)
    assert len(log) == 10
    journal_lines = (tmp_path / "nflog.journal").read_text().count("\n")
    assert journal_lines <= 50
    snap = json.loads((tmp_path / "nflog.json").read_text())
    assert len(snap["entries"]) <= 10
    again = NotificationLog(tmp_path, clock, retention_ms=3600_000, max_entries=10)
    assert {e.group_key for e in again.entries()} == {e.group_key for e in log.entries()}


def test_newer_entry_wins_and_older_is_ignored() -> None:
    clock = FakeClock()
    log = NotificationLog(None, clock)
    log.log("g", "r", "webhook", 0, {1}, set(), T0 + 10)
    log.log("g", "r", "webhook", 0, {2}, set(), T0 + 5)
    e = log.query("g", "r", "webhook", 0)
    assert e is not None and e.firing == frozenset({1})


def test_failing_disk_keeps_the_entry_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    log = NotificationLog(tmp_path, clock)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("vigil.notifier.nflog.os.fsync", full)
    with caplog.at_level(logging.ERROR, logger="vigil.notifier.nflog"):
        log.log("g", "r", "webhook", 0, {1}, set(), T0)
    assert log.query("g", "r", "webhook", 0) is not None
    assert "No space left" in caplog.text
    monkeypatch.undo()
    log.log("g2", "r", "webhook", 0, {1}, set(), T0)  # the disk is back: written again
    assert {e.group_key for e in NotificationLog(tmp_path, clock).entries()} >= {"g2"}

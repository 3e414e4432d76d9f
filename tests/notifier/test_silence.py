"""Silences (vigil.notifier.silence) with a fake clock: states, Alertmanager's update rules, expiry,
`mutes`, garbage collection, limits, and the snapshot on disk across restarts."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest

from vigil.model.matcher import MatchType
from vigil.notifier.matchers import Matcher, parse_matchers
from vigil.notifier.silence import (
    SNAPSHOT_NAME,
    SilenceError,
    SilenceLimitError,
    SilenceNotFound,
    Silences,
    SilenceState,
    SilenceStoreError,
)

H = 3600_000
T0 = 1_700_000_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def m(text: str) -> list[Matcher]:
    return list(parse_matchers(text))


def store(tmp_path: Path, clock: Clock, **kw: int) -> Silences:
    ids = (f"id-{i}" for i in itertools.count())
    return Silences(tmp_path, clock=clock, new_id=lambda: next(ids), **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_states_follow_the_clock(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m('alertname="X"'), T0 + H, T0 + 2 * H, "me", "c")
    assert s.get(sid).state(T0) is SilenceState.PENDING
    assert s.get(sid).state(T0 + H) is SilenceState.ACTIVE
    assert s.get(sid).state(T0 + 2 * H - 1) is SilenceState.ACTIVE
    assert s.get(sid).state(T0 + 2 * H) is SilenceState.EXPIRED
    assert [x.id for x in s.query(states=[SilenceState.PENDING])] == [sid]
    clock.now = T0 + H
    assert [x.id for x in s.query(states=[SilenceState.ACTIVE])] == [sid]
    assert s.query(states=[SilenceState.PENDING]) == []


def test_a_start_in_the_past_becomes_now(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0 - 5 * H, T0 + H)
    assert s.get(sid).starts_at_ms == T0
    assert s.get(sid).updated_at_ms == T0


@pytest.mark.parametrize(
    ("matchers", "message"),
    [
        ([], "at least one matcher required"),
        ('a=""', "at least one matcher must not match the empty string"),
        ('a=~".*"', "at least one matcher must not match the empty string"),
        ('a="", b=~"x*"', "at least one matcher must not match the empty string"),
    ],
)
def test_refuses_silences_matching_everything(
    tmp_path: Path, clock: Clock, matchers: str | list[Matcher], message: str
) -> None:
    s = store(tmp_path, clock)
    with pytest.raises(SilenceError, match=message):
        s.create(m(matchers) if isinstance(matchers, str) else matchers, T0, T0 + H)
    assert len(s) == 0


def test_negative_matchers_alone_are_accepted_as_in_alertmanager(tmp_path: Path, clock: Clock) -> None:
    # Alertmanager does not count `!=`/`!~` as matching the empty string: `a!="x"` alone is a silence.
    s = store(tmp_path, clock)
    sid = s.create(m('a!="x"'), T0, T0 + H)
    assert s.mutes({"b": "1"}, T0) == [sid]
    assert s.mutes({"a": "x"}, T0) == []


def test_refuses_bad_matchers_and_times(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    with pytest.raises(SilenceError, match=r'invalid label matcher 0: invalid label name "a-b"'):
        s.create([Matcher(MatchType.EQ, "a-b", "x")], T0, T0 + H)
    with pytest.raises(SilenceError, match="invalid label value"):
        s.create([Matcher(MatchType.EQ, "a", "\ud800")], T0, T0 + H)
    with pytest.raises(SilenceError, match="end time must not be before start time"):
        s.create(m("a=b"), T0 + 2 * H, T0 + H)
    with pytest.raises(SilenceError, match="invalid zero end timestamp"):
        s.create(m("a=b"), T0, 0)
    assert len(s) == 0


def test_mutes_returns_active_matching_ids_sorted(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    a = s.create(m('job=~"api|web", severity!="page"'), T0, T0 + H)
    b = s.create(m("job=api"), T0, T0 + 2 * H)
    pending = s.create(m("job=api"), T0 + H, T0 + 3 * H)
    assert s.mutes({"job": "api", "severity": "warn"}, T0) == sorted([a, b])
    assert s.mutes({"job": "api", "severity": "page"}, T0) == [b]
    assert s.mutes({"job": "db"}, T0) == []
    assert s.mutes({"job": "api"}, T0 + H + 1) == sorted([b, pending])
    assert s.mutes({"job": "api"}, T0 + 3 * H) == []


def test_update_in_place_keeps_the_id(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0, T0 + H, "me", "first")
    clock.now = T0 + 10_000
    # Active: same matchers and start, a later end, a new comment: the same silence.
    assert s.set(sid, m("a=b"), T0, T0 + 2 * H, "you", "second") == sid
    got = s.get(sid)
    assert (got.ends_at_ms, got.comment, got.created_by, got.updated_at_ms) == (
        T0 + 2 * H,
        "second",
        "you",
        T0 + 10_000,
    )
    assert len(s) == 1


def test_update_of_active_changing_matchers_expires_it_and_creates_another(
    tmp_path: Path, clock: Clock
) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0, T0 + H)
    clock.now = T0 + 1000
    new = s.set(sid, m("a=c"), T0, T0 + H)
    assert new != sid
    assert s.get(sid).state(clock.now) is SilenceState.EXPIRED
    assert s.get(sid).ends_at_ms == clock.now
    assert s.get(new).matchers == tuple(m("a=c"))
    assert s.get(new).starts_at_ms == clock.now  # its start in the past moved to now


def test_update_of_active_moving_start_or_ending_in_the_past_is_a_new_silence(
    tmp_path: Path, clock: Clock
) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0, T0 + H)
    clock.now = T0 + 5000
    moved = s.set(sid, m("a=b"), T0 + 2000, T0 + H)
    assert moved != sid
    assert s.get(sid).state(clock.now) is SilenceState.EXPIRED


def test_update_of_pending(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0 + H, T0 + 2 * H)
    assert s.set(sid, m("a=b"), T0 + 30 * 60_000, T0 + 3 * H) == sid  # start still ahead: in place
    new = s.set(sid, m("a=b"), T0 - 1, T0 + 3 * H)  # a start in the past: a new silence
    assert new != sid
    old = s.get(sid)
    assert (old.starts_at_ms, old.ends_at_ms) == (T0, T0)  # a pending silence never started
    assert s.get(new).state(T0) is SilenceState.ACTIVE


def test_an_expired_silence_cannot_be_updated(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0, T0 + H)
    clock.now = T0 + 2 * H
    new = s.set(sid, m("a=b"), T0 + 2 * H, T0 + 4 * H, "", "again")
    assert new != sid
    assert s.get(sid).ends_at_ms == T0 + H  # untouched
    assert s.get(new).comment == "again"


def test_update_of_unknown_id(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    with pytest.raises(SilenceNotFound):
        s.set("nope", m("a=b"), T0, T0 + H)


def test_expire(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    sid = s.create(m("a=b"), T0, T0 + H)
    clock.now = T0 + 1000
    assert s.expire(sid) is True
    assert s.get(sid).ends_at_ms == T0 + 1000
    assert s.mutes({"a": "b"}, clock.now) == []  # expired at now: no longer muting at now
    assert s.expire(sid) is False  # already expired: unchanged, not an error (Alertmanager #2817)
    assert s.get(sid).ends_at_ms == T0 + 1000
    with pytest.raises(SilenceNotFound):
        s.expire("nope")


def test_gc_after_retention(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock, retention_ms=10 * H)
    old = s.create(m("a=b"), T0, T0 + H)
    keep = s.create(m("a=c"), T0, T0 + 5 * H)
    clock.now = T0 + 11 * H - 1
    assert s.gc() == 0
    clock.now = T0 + 11 * H
    assert [x.id for x in s.query()] == [keep]  # past retention: not shown even before a GC
    assert s.gc() == 1
    with pytest.raises(SilenceNotFound):
        s.get(old)
    assert len(s) == 1
    assert len(store(tmp_path, clock, retention_ms=10 * H)) == 1  # and gone from the snapshot


def test_query_by_ids_and_matchers(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    a = s.create(m('alertname="X", job=~"a.*"'), T0, T0 + H)
    b = s.create(m("alertname=X"), T0, T0 + H)
    assert {x.id for x in s.query(matchers=m("alertname=X"))} == {a, b}
    assert [x.id for x in s.query(matchers=m('job=~"a.*"'))] == [a]
    assert s.query(matchers=m('job="a.*"')) == []  # same name and value but another type
    assert [x.id for x in s.query(ids=[b, "missing"])] == [b]


def test_limit_on_number_counts_expired_ones(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock, max_silences=2)
    a = s.create(m("a=1"), T0, T0 + H)
    s.create(m("a=2"), T0, T0 + H)
    s.expire(a)
    with pytest.raises(SilenceLimitError, match=r"exceeded maximum number of silences: 2 \(limit: 2\)"):
        s.create(m("a=3"), T0, T0 + H)
    assert len(s) == 2
    assert not (tmp_path / f".{SNAPSHOT_NAME}.tmp").exists()


def test_limit_on_size(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock, max_silence_size_bytes=1024)
    s.create(m("a=1"), T0, T0 + H, "me", "x" * 100)
    with pytest.raises(
        SilenceLimitError, match=r"silence exceeded maximum size: \d+ bytes \(limit: 1024 bytes\)"
    ):
        s.create(m("a=1"), T0, T0 + H, "me", "x" * 2000)
    assert len(s) == 1


def test_restart_keeps_silences(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    a = s.create(m('a=~"x|y", b!="z"'), T0, T0 + H, "me", "why ✓")
    b = s.create(m("c=d"), T0 + H, T0 + 2 * H)
    s.expire(b)
    again = Silences(tmp_path, clock=clock)
    assert {x.id: x for x in again.query()} == {x.id: x for x in s.query()}
    assert again.mutes({"a": "y"}, T0) == [a]


def test_truncated_snapshot_warns_once_and_starts_empty(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path, clock)
    s.create(m("a=b"), T0, T0 + H)
    path = tmp_path / SNAPSHOT_NAME
    path.write_bytes(path.read_bytes()[:-7])
    with caplog.at_level(logging.WARNING, logger="vigil.silences"):
        again = Silences(tmp_path, clock=clock)
    assert len(again) == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot load silences" in warnings[0].getMessage()
    assert (tmp_path / f"{SNAPSHOT_NAME}.corrupt").exists()  # kept for whoever looks into it
    again.create(m("a=b"), T0, T0 + H)  # and the store works
    assert len(Silences(tmp_path, clock=clock)) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"[]",
        b'{"format": 99, "silences": []}',
        b'{"format": 1, "silences": [{"id": 1}]}',
        b'{"format": 1, "silences": [{"id": "x", "matchers": [{"type": "=~", "name": "a", "value": "("}],'
        b' "starts_at_ms": 1, "ends_at_ms": 2, "updated_at_ms": 1, "created_by": "", "comment": ""}]}',
    ],
)
def test_bad_snapshots_start_empty(tmp_path: Path, clock: Clock, content: bytes) -> None:
    (tmp_path / SNAPSHOT_NAME).write_bytes(content)
    assert len(Silences(tmp_path, clock=clock)) == 0


def test_a_change_that_cannot_be_written_is_not_made(tmp_path: Path, clock: Clock) -> None:
    s = store(tmp_path, clock)
    a = s.create(m("a=b"), T0, T0 + H)
    (tmp_path / f".{SNAPSHOT_NAME}.tmp").mkdir()  # the temporary file cannot be created
    with pytest.raises(SilenceStoreError, match="cannot write silences"):
        s.create(m("a=c"), T0, T0 + H)
    with pytest.raises(SilenceStoreError):
        s.expire(a)
    assert [x.id for x in s.query()] == [a]
    assert s.mutes({"a": "b"}, T0) == [a]
    assert json.loads((tmp_path / SNAPSHOT_NAME).read_text())["silences"][0]["id"] == a


def test_an_unreadable_snapshot_stops_the_start(tmp_path: Path, clock: Clock) -> None:
    # Not a corrupt file to set aside but one that cannot be read: refusing to start (one line, the
    # CLI's StorageError) is better than starting empty and overwriting it with the next change.
    (tmp_path / SNAPSHOT_NAME).mkdir()
    with pytest.raises(SilenceStoreError, match="cannot read silences"):
        Silences(tmp_path, clock=clock)


def test_silences_gauge_by_state(tmp_path: Path, clock: Clock) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    s = Silences(tmp_path, clock=clock, registry=registry)
    s.create(m("a=1"), T0, T0 + H)
    s.create(m("a=2"), T0 + H, T0 + 2 * H)
    s.expire(s.create(m("a=3"), T0, T0 + H))

    def value(state: str) -> float | None:
        return registry.get_sample_value("alertmanager_silences", {"state": state})

    assert (value("active"), value("pending"), value("expired")) == (1, 1, 1)
    clock.now = T0 + H
    assert (value("active"), value("pending"), value("expired")) == (1, 0, 2)

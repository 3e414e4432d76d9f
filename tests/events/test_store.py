"""EventStore: round trip, idempotent ids, paging without gaps or repeats, matchers on kind/labels/
fields, retention by wall clock, reopening, concurrency and durability of acknowledged appends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.events.store import EventStore, check_storable, decode_cursor, encode_cursor
from vigil.model.event import Event, EventError
from vigil.model.matcher import Matcher
from vigil.promql.parser import parse_selector

NOW_S = 2_000_000.0  # the store's clock: events at ms 1_000_000.. are well inside retention
DAY_MS = 86_400_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "events.db", 30 * DAY_MS, clock=lambda: NOW_S) as s:
        yield s


def ev(i: int, t: int | None = None, kind: str = "auth", **fields: object) -> Event:
    return Event(
        1_000_000 + i if t is None else t,
        kind,
        f"event {i}",
        {"n": i, **fields},  # type: ignore[dict-item]
        {"instance": f"host{i % 3}", "job": "node"},
        f"id{i}",
    )


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def test_round_trip_and_duplicates(store: EventStore) -> None:
    e = Event(
        1_000_123,
        "auth",
        "Failed password for root",
        {"user": "root", "source_address": "203.0.113.7", "port": 22, "ok": False, "x": None, "r": 1.5},
        {"instance": "web1", "tenant": "acme"},
        "abc",
    )
    assert store.append([e]) == 1
    got, cursor = store.query()
    assert got == [e] and cursor is None
    assert got[0].to_json() == e.to_json()
    # The same id again (a re-sent batch) is stored once; a new one in the same batch is stored.
    assert store.append([e, ev(1)]) == 1
    assert store.count() == 2
    # Ids are unique per tenant: another tenant cannot suppress this one's event by its id.
    other = Event(e.time_ms, e.kind, "", {}, {"tenant": "mallory"}, "abc")
    assert store.append([other]) == 1
    assert store.count() == 3


def test_events_without_id_get_one_from_their_content(store: EventStore) -> None:
    a = Event(1_000_000, "log_unknown", "x", {"line": "boom"}, {"instance": "h"})
    b = Event(1_000_000, "log_unknown", "x", {"line": "bang"}, {"instance": "h"})
    assert store.append([a, b, a]) == 2
    assert store.append([a]) == 0
    got, _ = store.query()
    assert all(len(e.id) == 32 for e in got) and len(set(ids(got))) == 2


@pytest.mark.parametrize("direction", ["backward", "forward"])
@pytest.mark.parametrize("limit", [1, 7, 16, 1000])
def test_paging_visits_every_event_once(tmp_path: Path, direction: str, limit: int) -> None:
    with EventStore(tmp_path / "e.db", 30 * DAY_MS, clock=lambda: NOW_S) as store:
        # Many equal timestamps, inserted out of time order.
        events = [ev(i, t=1_000_000 + (i * 7919 % 40)) for i in range(300)]
        assert store.append(events) == 300
        expected = sorted(events, key=lambda e: (e.time_ms, int(e.id[2:])))
        if direction == "backward":
            expected.reverse()
        seen: list[Event] = []
        cursor = None
        for _ in range(400):
            page, cursor = store.query(limit=limit, cursor=cursor, direction=direction)  # type: ignore[arg-type]
            assert len(page) <= limit
            seen += page
            if cursor is None:
                break
            assert len(page) == limit  # a cursor means more is coming: no empty last page
        assert ids(seen) == ids(expected)


def test_paging_with_post_filtered_regex_and_scan_budget(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db", 30 * DAY_MS, clock=lambda: NOW_S, max_scan=50) as store:
        store.append([ev(i, t=1_000_000 + i // 5, user="root" if i % 13 == 0 else "bob") for i in range(400)])
        want = [f"id{i}" for i in reversed(range(400)) if i % 13 == 0]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page, cursor = store.query([Matcher.re("user", "ro+t")], limit=3, cursor=cursor)
            pages += 1
            seen += ids(page)
            if cursor is None:
                break
        assert seen == want
        assert pages > len(want) // 3  # the scan budget cut some pages short, losing nothing


def test_time_range_is_inclusive_and_kinds_filter(store: EventStore) -> None:
    store.append([ev(i, kind="auth" if i % 2 else "file_changed") for i in range(10)])
    got, _ = store.query(start_ms=1_000_002, end_ms=1_000_005, direction="forward")
    assert ids(got) == ["id2", "id3", "id4", "id5"]
    got, _ = store.query(kinds=["file_changed"], direction="forward")
    assert ids(got) == ["id0", "id2", "id4", "id6", "id8"]
    got, _ = store.query(kinds=["file_changed", "auth"], start_ms=1_000_008)
    assert ids(got) == ["id9", "id8"]


def q(store: EventStore, *selectors: str) -> list[str]:
    got, _ = store.query([parse_selector(s) for s in selectors], direction="forward")
    return ids(got)


def test_matchers_on_kind_labels_and_fields(store: EventStore) -> None:
    a, b, c = {"instance": "a"}, {"instance": "b"}, {"instance": "c"}
    addr, other = "203.0.113.7", "198.51.100.1"
    store.append(
        [
            Event(1_000_001, "auth", "", {"source_address": addr, "user": "root", "port": 22}, a, "1"),
            Event(1_000_002, "auth", "", {"source_address": other, "user": "alice", "ok": True}, b, "2"),
            Event(1_000_003, "file_changed", "", {"path": "/etc/passwd", "source_address": addr}, a, "3"),
            # A label wins over a field of the same name; `tenant` never comes from a field.
            Event(1_000_004, "auth", "", {"instance": "a", "tenant": "acme"}, c, "4"),
            Event(1_000_005, "auth", "", {"ratio": 0.25, "gone": None}, {**c, "tenant": "acme"}, "5"),
        ]
    )
    assert q(store, '{kind="auth", source_address="203.0.113.7"}') == ["1"]
    assert q(store, '{source_address="203.0.113.7"}') == ["1", "3"]
    assert q(store, 'auth{instance="a"}') == ["1"]  # the metric-name position is the kind
    assert q(store, '{kind=~"auth|file_.*", instance="a"}') == ["1", "3"]
    assert q(store, '{kind=~".+", kind!="auth"}') == ["3"]
    assert q(store, '{kind="auth", user!="root"}') == ["2", "4", "5"]
    assert q(store, '{user=~"r.*|al.ce"}') == ["1", "2"]
    assert q(store, '{kind="auth", user!~"r.*"}') == ["2", "4", "5"]
    assert q(store, '{source_address=~"203\\\\.0\\\\.113\\\\..+"}') == ["1", "3"]
    assert q(store, '{port="22"}', '{ok="true"}') == ["1", "2"]  # OR'ed; numbers/booleans as JSON
    assert q(store, '{ratio="0.25"}') == ["5"]
    assert q(store, '{instance="c"}') == ["4", "5"]
    assert q(store, '{tenant="acme"}') == ["5"]
    assert q(store, '{kind="auth", gone=""}') == ["1", "2", "4", "5"]  # null is absent
    assert q(store, '{kind=~".+", user=""}', '{kind="nothing"}') == ["3", "4", "5"]
    # A flat matcher list is one AND'ed set.
    got, _ = store.query([Matcher.eq("kind", "auth"), Matcher.eq("instance", "a")])
    assert ids(got) == ["1"]


def test_retention_by_wall_clock(tmp_path: Path) -> None:
    now = [NOW_S]
    with EventStore(tmp_path / "e.db", 10_000, clock=lambda: now[0]) as store:
        t0 = int(NOW_S * 1000)
        store.append([ev(i, t=t0 + i * 1000) for i in range(20)])
        now[0] = NOW_S + 15  # events 0..4 are now older than 10 s
        got, _ = store.query(direction="forward")
        assert ids(got)[0] == "id5"  # hidden at once, before any deletion
        assert store.count() == 20
        assert store.apply_retention() == 5
        assert store.count() == 15
        assert store.apply_retention(NOW_S + 25) == 10
        now[0] = NOW_S + 1000
        store.maintain()
        assert store.count() == 0


def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.db"
    with EventStore(path, 30 * DAY_MS, clock=lambda: NOW_S) as store:
        store.append([ev(i) for i in range(5)])
    with EventStore(path, 30 * DAY_MS, clock=lambda: NOW_S) as store:
        assert store.count() == 5
        assert store.append([ev(i) for i in range(6)]) == 1  # ids remembered across restarts
        got, _ = store.query(direction="forward")
        assert ids(got) == [f"id{i}" for i in range(6)]
    store.close()  # idempotent


def test_maintenance_thread_expires_and_stops(tmp_path: Path) -> None:
    now = [NOW_S]
    store = EventStore(tmp_path / "e.db", 1000, clock=lambda: now[0])
    store.append([ev(1, t=int(NOW_S * 1000))])
    now[0] += 10
    store.start_maintenance(0.01)
    deadline = 200
    while store.count() and deadline:
        threading.Event().wait(0.01)
        deadline -= 1
    assert store.count() == 0
    store.close()
    assert not any(t.name == "events-maintenance" for t in threading.enumerate())


def test_concurrent_writers_and_readers(store: EventStore) -> None:
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for j in range(20):
                store.append([ev(k * 1000 + j * 10 + m) for m in range(10)])
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(30):
                store.query([Matcher.re("instance", "host[01]")], limit=50)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == 4 * 200


def test_tenant_scoped_queries(store: EventStore) -> None:
    def of(tenant: str | None, i: int) -> Event:
        labels = {"instance": "h"} | ({"tenant": tenant} if tenant else {})
        return Event(1_000_000 + i, "auth", "", {"user": f"u{i}"}, labels, "same-id")

    assert store.append([of("acme", 1), of("beta", 2), of(None, 3)]) == 3
    assert [e.labels.get("tenant") for e in store.query(tenant="acme")[0]] == ["acme"]
    # Matchers narrow a tenant's answer, never widen it: the tenant is a column condition beneath them.
    for sets in (
        [[Matcher.eq("tenant", "beta")]],
        [[Matcher.re("tenant", ".*")], [Matcher.eq("user", "u3")]],
    ):
        assert [e.fields["user"] for e in store.query(sets, tenant="acme")[0]] in ([], ["u1"])
        assert all(e.labels.get("tenant") == "acme" for e in store.query(sets, tenant="acme")[0])
    assert len(store.query()[0]) == 3  # no tenant: a global reader's answer
    with pytest.raises(ValueError, match="tenant"):
        store.query(tenant="")  # would be the untenanted rows, which are no tenant's


def test_bad_arguments(store: EventStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.query(cursor="nonsense")
    with pytest.raises(ValueError, match="limit"):
        store.query(limit=0)
    with pytest.raises(ValueError, match="direction"):
        store.query(direction="sideways")  # type: ignore[arg-type]
    assert decode_cursor(encode_cursor(-5, 17)) == (-5, 17)
    with pytest.raises(EventError, match="message"):
        check_storable(Event(1, "auth", "\ud800"))
    with pytest.raises(EventError):
        store.append([ev(1), Event(1, "auth", "\ud800", id="x")])
    assert store.count() == 0  # nothing of the refused batch


_WRITER = """
import sys
import time
from pathlib import Path
from vigil.events.store import EventStore
from vigil.model.event import Event

store = EventStore(Path(sys.argv[1]), 10**12)
batch = 0
while True:
    now = int(time.time() * 1000)
    events = [Event(now, "auth", "m", {"k": i}, {"instance": "x"}, f"{batch}-{i}") for i in range(5)]
    store.append(events)
    print(" ".join(e.id for e in events), flush=True)  # acknowledged: append returned
    batch += 1
"""


def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_WRITER))
    path = tmp_path / "events.db"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        for _ in range(40):
            line = proc.stdout.readline()
            assert line, "writer died"
            acked += line.split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with EventStore(path, 10**12) as store:
        got, _ = store.query(limit=10_000, start_ms=0)
        stored = set(ids(got))
    assert len(acked) == 200
    assert set(acked) <= stored

"""EventStore: round trip, idempotent ids, paging without gaps or repeats, matchers on kind/labels/
fields, retention by arrival (shown by event time), schema migration, reopening, concurrency and
durability of acknowledged appends."""

from __future__ import annotations

import os
import signal
import sqlite3
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


def test_retention_by_arrival(tmp_path: Path) -> None:
    now = [NOW_S]
    with EventStore(tmp_path / "e.db", 10_000, clock=lambda: now[0]) as store:
        for i in range(20):  # one a second, with event times that say nothing about arrival
            now[0] = NOW_S + i
            store.append([ev(i, t=(1_000 if i % 2 else 9_000_000_000_000) + i)])
        now[0] = NOW_S + 15  # events 0..4 arrived more than 10 s ago
        got, _ = store.query(direction="forward", limit=100)
        assert sorted(ids(got)) == sorted(f"id{i}" for i in range(5, 20))  # hidden at once
        assert store.count() == 20
        assert store.apply_retention() == 5
        assert store.count() == 15
        assert store.apply_retention(NOW_S + 25) == 10
        now[0] = NOW_S + 1000
        store.maintain()
        assert store.count() == 0


def test_backlog_older_than_retention_is_shown_by_its_own_time(tmp_path: Path) -> None:
    # The report: auth events carry the log line's time; a backlog read 20 days late was stored but
    # never shown, because expiry went by event time. Shown by event time, expired by arrival.
    now = [NOW_S + 100 * DAY_MS / 1000]
    now_ms = int(now[0] * 1000)
    with EventStore(tmp_path / "e.db", 15 * DAY_MS, clock=lambda: now[0]) as store:
        assert store.append([ev(1, t=now_ms - 20 * DAY_MS), ev(2, t=now_ms)]) == 2
        got, _ = store.query(start_ms=now_ms - 21 * DAY_MS, end_ms=now_ms - 19 * DAY_MS)
        assert ids(got) == ["id1"]  # found where it happened
        got, _ = store.query(direction="forward")
        assert ids(got) == ["id1", "id2"]  # and ordered by event time
        assert store.apply_retention() == 0  # nothing arrived 15 days ago
        now[0] += 15 * DAY_MS / 1000 + 1
        assert store.query()[0] == []  # both arrived more than 15 days ago
        assert store.apply_retention() == 2


OLD_SCHEMA = """
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    labels  TEXT NOT NULL,
    fields  TEXT NOT NULL,
    message TEXT NOT NULL,
    UNIQUE (tenant, id)
);
CREATE INDEX events_time ON events (time_ms);
CREATE INDEX events_kind_time ON events (kind, time_ms);
"""


def _old_file(path: Path, times: list[int]) -> None:
    """An events.db as stores before `received_ms` wrote it."""
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.executemany(
        "INSERT INTO events (tenant, id, time_ms, kind, labels, fields, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [("", f"old{i}", t, "auth", '{"job":"node"}', '{"n":1}', "old") for i, t in enumerate(times)],
    )
    conn.commit()
    conn.close()


def test_file_of_the_old_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    now_ms = int(NOW_S * 1000)
    _old_file(path, [now_ms - 2000, now_ms - 1000, now_ms + 10 * DAY_MS])  # the last from the future
    now = [NOW_S]
    with EventStore(path, 5000, clock=lambda: now[0]) as store:
        assert store.count() == 3
        got, _ = store.query(direction="forward")
        assert ids(got) == ["old0", "old1", "old2"]
        assert store.append([ev(0, t=now_ms), Event(1, "auth", "x", {}, {}, "old0")]) == 1  # ids kept
        now[0] = NOW_S + 4.5  # old0 and old1 expire as they did (their time), old2 from now, ev0 too
        assert sorted(ids(store.query()[0])) == ["id0", "old2"]
        assert store.apply_retention() == 2
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        arrival = dict(conn.execute("SELECT id, received_ms FROM events").fetchall())
        assert arrival == {"old2": now_ms, "id0": now_ms}
        assert "events_received" in {r[1] for r in conn.execute("PRAGMA index_list(events)")}
    finally:
        conn.close()
    with EventStore(path, 5000, clock=lambda: NOW_S) as store:  # reopening: nothing to migrate
        assert store.count() == 2


def test_migration_by_two_stores_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _old_file(path, [1_000_000 + i for i in range(100)])
    stores: list[EventStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            stores.append(EventStore(path, 30 * DAY_MS, clock=lambda: NOW_S))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 2
    for store in stores:
        assert store.count() == 100
        store.close()


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
    before = set(threading.enumerate())
    store = EventStore(tmp_path / "e.db", 1000, clock=lambda: now[0], maintenance_interval_s=0.01)
    assert set(threading.enumerate()) == before  # opening starts nothing; start() does
    store.append([ev(1, t=int(NOW_S * 1000))])
    now[0] += 10
    store.start()
    deadline = 3000  # polls of 10 ms: generous on a loaded machine
    while store.count() and deadline:
        threading.Event().wait(0.01)
        deadline -= 1
    assert store.count() == 0
    store.close()
    assert not any(t.name == "vigil-events-maintenance" for t in threading.enumerate())


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
    with pytest.raises(TypeError, match="not a mix"):
        store.query([Matcher.eq("a", "b"), [Matcher.eq("c", "d")]])  # type: ignore[list-item]
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

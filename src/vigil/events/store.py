"""The server's event store: security events in SQLite (`<data dir>/events.db`), queried by label matchers.

Why SQLite: events are few next to samples (thousands a day per host, not millions), are read by
id/time/kind with arbitrary filters, and must survive a crash once acknowledged; SQLite in WAL mode
gives all of that from the standard library. `synchronous=FULL` makes every commit fsync the WAL, so
an acknowledged `POST /api/v1/events` survives `kill -9` and power loss alike (NORMAL would only
survive a process crash); one commit per request keeps that cheap.

Identity: an event carries the same labels as the series of its host; `tenant` is a label
set by the server and also a column, because ids are unique per tenant — one tenant must not be able to
suppress another's events by sending their (guessable) ids first. A re-sent batch is stored once
(`INSERT OR IGNORE` on (tenant, id)); an event without an id gets one derived from its content.

Queries: label matchers (`vigil.model.matcher`) apply to an event's `kind` (also as `__name__`, so
`auth{user="root"}` works), then its labels, then its fields in string form; `tenant` only ever comes
from the labels. A tenant's reads are scoped by the `tenant` column itself, beneath the matchers.
Equality on kind/tenant/labels/fields is pushed into SQL as a pre-filter; every matcher is then
checked in Python, so regexes keep their exact Prometheus semantics. Paging walks (time_ms, seq)
in either direction, seq being the autoincrement rowid, so equal timestamps neither repeat nor vanish
across pages.

Two times, one rule each: an event is *shown* by its own time (`time_ms`, when it happened: the log
line's stamp), and *expires* by its arrival (`received_ms`, the store's clock when it was stored).
Expiring by event time made a backlog vanish: auth events carry the log line's time, so lines read
15 days late were stored and never shown. An event whose arrival is older than `now - retention` is
hidden from queries at once and deleted by `maintain()`, whatever its own time. Files written before
`received_ms` existed are migrated on open (in one transaction): their events get the arrival
`min(time_ms, now)`, which keeps each stored event's expiry as it was.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeGuard

from vigil.model.event import Event, EventError, FieldValue, event_id
from vigil.model.matcher import Matcher, MatchType

__all__ = ["Direction", "EventStore", "check_storable", "field_string"]

log = logging.getLogger(__name__)

Direction = Literal["backward", "forward"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    labels  TEXT NOT NULL,
    fields  TEXT NOT NULL,
    message TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
"""
# After the migration (an index on received_ms needs the column).
_INDEXES = """
-- SQLite appends the rowid (seq) to every index, so these also order ties by seq for paging.
CREATE INDEX IF NOT EXISTS events_time ON events (time_ms);
CREATE INDEX IF NOT EXISTS events_kind_time ON events (kind, time_ms);
CREATE INDEX IF NOT EXISTS events_received ON events (received_ms);
-- A tenant's reads walk only its own rows.
CREATE INDEX IF NOT EXISTS events_tenant_time ON events (tenant, time_ms);
"""
_SCHEMA_VERSION = 1  # PRAGMA user_version: 0 = without received_ms

_COLUMNS = "seq, time_ms, id, kind, labels, fields, message"
_INSERT = (
    "INSERT OR IGNORE INTO events (tenant, id, time_ms, kind, labels, fields, message, received_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_KIND_NAMES = frozenset({"kind", "__name__"})
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # safe to splice into a JSON path
_DELETE_BATCH = 10_000
_CURSOR_PREFIX = "e1:"
_MIN, _MAX = -(2**63), 2**63 - 1


def field_string(value: FieldValue) -> str:
    """A field as matchers see it: strings as they are, numbers and booleans as JSON writes them,
    null as absent ("")."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)


def check_storable(event: Event) -> None:
    """Raise EventError for text SQLite cannot store (lone surrogates from `\\ud800`-style escapes)."""
    for part, text in (("id", event.id), ("message", event.message)):
        try:
            text.encode()
        except UnicodeEncodeError:
            raise EventError(f"{part}: not valid Unicode (lone surrogate)") from None


def encode_cursor(time_ms: int, seq: int) -> str:
    raw = f"{_CURSOR_PREFIX}{time_ms}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """(time_ms, seq) of an `encode_cursor` string; ValueError if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith(_CURSOR_PREFIX):
            t, _, s = raw[len(_CURSOR_PREFIX) :].partition(":")
            return int(t), int(s)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ValueError(f"invalid cursor {cursor!r}")


def _matcher_sets(matchers: Sequence[Matcher] | Sequence[Sequence[Matcher]]) -> list[list[Matcher]]:
    """A flat list is one AND'ed set; a list of lists is OR'ed sets (like several `match[]`)."""
    if not matchers:
        return []
    if _all_matchers(matchers):
        return [list(matchers)]
    sets: list[list[Matcher]] = []
    for s in matchers:
        if isinstance(s, Matcher):  # list() of it would fail too, less clearly
            raise TypeError("matchers: a flat list of Matcher or a list of lists of them, not a mix")
        sets.append(list(s))
    return sets


def _all_matchers(ms: Sequence[object]) -> TypeGuard[Sequence[Matcher]]:
    return all(isinstance(m, Matcher) for m in ms)


def _prefilter(matchers: Sequence[Matcher]) -> tuple[list[str], list[Any]]:
    """SQL conditions every event matching `matchers` satisfies (necessary, not sufficient)."""
    conds: list[str] = []
    params: list[Any] = []
    for m in matchers:
        wanted = m.pattern_set if m.type in (MatchType.EQ, MatchType.RE) else None
        if not wanted or "" in wanted or len(wanted) > 100:
            continue  # negations, real regexes and "absent" stay in Python
        marks = ",".join("?" * len(wanted))
        if m.name in _KIND_NAMES:
            conds.append(f"kind IN ({marks})")
            params += sorted(wanted)
        elif m.name == "tenant":
            conds.append(f"tenant IN ({marks})")
            params += sorted(wanted)
        elif _PLAIN_NAME.fullmatch(m.name):
            path = f'$."{m.name}"'
            # A string label or field equals one of the values, or the field is a number/boolean
            # (its string form is Python's business).
            conds.append(
                f"(json_extract(labels, ?) IN ({marks}) OR json_extract(fields, ?) IN ({marks})"
                " OR json_type(fields, ?) IN ('integer', 'real', 'true', 'false'))"
            )
            params += [path, *sorted(wanted), path, *sorted(wanted), path]
    return conds, params


class _Row:
    """One stored event, decoded lazily: most rows of a filtered scan are only matched, not returned."""

    __slots__ = ("fields", "id", "kind", "labels", "message", "seq", "time_ms")

    def __init__(self, row: tuple[int, int, str, str, str, str, str]) -> None:
        self.seq, self.time_ms, self.id, self.kind = row[0], row[1], row[2], row[3]
        self.labels: dict[str, str] = json.loads(row[4])
        self.fields: dict[str, FieldValue] = json.loads(row[5])
        self.message = row[6]

    def value(self, name: str) -> str:
        if name in _KIND_NAMES:
            return self.kind
        label = self.labels.get(name)
        if label is not None or name == "tenant":  # the tenant is the server's word, never a field's
            return label or ""
        return field_string(self.fields.get(name))

    def matches(self, sets: list[list[Matcher]]) -> bool:
        return not sets or any(all(m.matches(self.value(m.name)) for m in ms) for ms in sets)

    def event(self) -> Event:
        return Event(self.time_ms, self.kind, self.message, self.fields, self.labels, self.id)


class EventStore:
    """Events in `path` (an SQLite file), kept for `retention_ms` after they arrived.

    Thread-safe: writes go through one connection under a lock (SQLite has one writer anyway); reads
    take a pooled connection of their own, so queries run beside writes (WAL).
    """

    def __init__(
        self,
        path: Path,
        retention_ms: int,
        clock: Callable[[], float] = time.time,
        max_scan: int = 100_000,
        maintenance_interval_s: float = 0.0,
    ) -> None:
        """`max_scan`: rows one query may examine; past it a page may hold fewer than `limit` events
        (with a cursor to go on), so a rare regex over a long range cannot tie up a thread for long.
        `maintenance_interval_s` > 0: `start()` runs `maintain()` that often (the constructor starts
        no thread)."""
        self.path = Path(path)
        self.maintenance_interval_s = maintenance_interval_s
        self.retention_ms = retention_ms
        self._clock = clock
        self._max_scan = max_scan
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._migrate(self._writer)
        self._writer.executescript(_INDEXES)
        self._idle: list[sqlite3.Connection] = []  # pooled read connections
        self._subscribers: list[Callable[[Sequence[Event]], None]] = []
        self._write_error: str | None = None  # why the last append failed; None once one succeeds
        self._closed = False
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring a file of an older schema up to date; another process may be doing the same, hence
        the check again inside the write transaction."""
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= _SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
            if "received_ms" not in columns:
                conn.execute("ALTER TABLE events ADD COLUMN received_ms INTEGER NOT NULL DEFAULT 0")
                # The arrival of what is already stored is unknown: its own time (never later than
                # now) keeps the expiry each event had when it was stored.
                conn.execute("UPDATE events SET received_ms = MIN(time_ms, ?)", (self._now_ms(),))
                log.info("%s: events migrated to schema %d (arrival times)", self.path, _SCHEMA_VERSION)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) below.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection for the caller's exclusive use: pooled rather than per thread, as
        the web server's worker threads come and go."""
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the event store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        try:
            yield conn
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- writing -----------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> int:
        """Store `events` in one transaction, durable on return; returns how many were new (an id
        already stored for the same tenant is skipped). Raises EventError before storing anything
        if one of them cannot be stored."""
        rows = []
        received = self._now_ms()
        for ev in events:
            check_storable(ev)
            labels = json.dumps(ev.labels, sort_keys=True, separators=(",", ":"))
            fields = json.dumps(ev.fields, separators=(",", ":"))  # ASCII-escaped: always storable
            ident = ev.id or event_id("content", ev.time_ms, ev.kind, labels, fields, ev.message)
            tenant = ev.labels.get("tenant", "")
            rows.append((tenant, ident, ev.time_ms, ev.kind, labels, fields, ev.message, received))
        if not rows:
            return 0
        subscribers = tuple(self._subscribers)
        new: list[Event] = []
        with self._lock:
            conn = self._writer
            before = conn.total_changes
            try:
                conn.execute("BEGIN IMMEDIATE")
                if subscribers:  # row by row, to tell subscribers which events are new
                    for ev, row in zip(events, rows, strict=True):
                        n = conn.total_changes
                        conn.execute(_INSERT, row)
                        if conn.total_changes > n:
                            new.append(ev)
                else:
                    conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException as exc:
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.ProgrammingError):
                    self._write_error = f"{self.path}: {exc}"  # not a closed store: the disk or file
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._write_error = None
            stored = conn.total_changes - before
        for notify in subscribers if new else ():  # after the commit, outside the lock: durable only
            try:
                notify(new)
            except Exception:
                log.exception("an event subscriber failed")
        return stored

    def subscribe(self, callback: Callable[[Sequence[Event]], None]) -> None:
        """Have `callback` called with the events each `append` stored anew (not duplicates), after
        they are durable, in the appending thread (the event rules: alerts within a second)."""
        self._subscribers.append(callback)

    @property
    def write_error(self) -> str | None:
        """Why the last append failed (e.g. the disk is full), or None when it succeeded: readiness."""
        return self._write_error

    def apply_retention(self, now: float | None = None) -> int:
        """Delete events that arrived before `now` (clock seconds; default: the clock) minus retention,
        whatever their own time."""
        cutoff = int((self._clock() if now is None else now) * 1000) - self.retention_ms
        deleted = 0
        while True:
            # In batches, so a large expiry does not hold the write lock against ingest for long.
            with self._lock:
                cur = self._writer.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_ms < ? LIMIT ?)",
                    (cutoff, _DELETE_BATCH),
                )
            deleted += cur.rowcount
            if cur.rowcount < _DELETE_BATCH:
                return deleted

    def maintain(self) -> None:
        """Periodic upkeep: retention, and letting SQLite refresh its planner statistics."""
        deleted = self.apply_retention()
        if deleted:
            log.info("deleted %d events past retention", deleted)
        with self._lock:
            self._writer.execute("PRAGMA optimize")

    # -- lifecycle (a service of vigil.cmd.run: name, start, stop) ---------------------------------

    name = "events"

    def start(self) -> None:
        """Start maintenance every `maintenance_interval_s` (if > 0); idempotent."""
        if self.maintenance_interval_s > 0:
            self.start_maintenance(self.maintenance_interval_s)

    def stop(self) -> None:
        self.close()

    def start_maintenance(self, interval_s: float) -> None:
        """Run `maintain()` every `interval_s` seconds in a daemon thread until `close()`."""
        if self._timer is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.maintain()
                except Exception:
                    log.exception("event store maintenance failed; will retry")

        self._timer = threading.Thread(target=loop, name="vigil-events-maintenance", daemon=True)
        self._timer.start()

    # -- reading -----------------------------------------------------------------------------------

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def query(
        self,
        matchers: Sequence[Matcher] | Sequence[Sequence[Matcher]] = (),
        start_ms: int = _MIN,
        end_ms: int = _MAX,
        kinds: Sequence[str] = (),
        limit: int = 100,
        cursor: str | None = None,
        direction: Direction = "backward",
        tenant: str | None = None,
    ) -> tuple[list[Event], str | None]:
        """Events with `start_ms <= time_ms <= end_ms` (their own time) that have not expired (by their
        arrival), of one of `kinds` (all if empty), matching
        `matchers` (one AND'ed list, or a list of such lists OR'ed), newest first ("backward") or
        oldest first ("forward"); at most `limit`. The second item is the cursor to pass for the
        next page, None when there is none. ValueError for a bad cursor, limit or direction.

        `tenant` limits the answer to that tenant's events (by the column, so no matcher can widen
        it); None answers for every tenant (a global reader)."""
        if limit < 1:
            raise ValueError("limit must be positive")
        if direction not in ("backward", "forward"):
            raise ValueError(f"direction must be 'backward' or 'forward', got {direction!r}")
        sets = _matcher_sets(matchers)
        # Expired (by arrival) but not yet deleted rows stay hidden.
        where = ["time_ms >= ?", "time_ms <= ?", "received_ms >= ?"]
        params: list[Any] = [start_ms, end_ms, self._now_ms() - self.retention_ms]
        if tenant is not None:
            if not tenant:
                raise ValueError("tenant must be a tenant's name or None")  # "" is the untenanted rows
            where.append("tenant = ?")
            params.append(tenant)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params += list(kinds)
        ors = [_prefilter(ms) for ms in sets]
        if ors and all(conds for conds, _ in ors):  # a set without SQL conditions admits any row
            where.append("(" + " OR ".join("(" + " AND ".join(c) + ")" for c, _ in ors) + ")")
            params += [p for _, ps in ors for p in ps]
        back = direction == "backward"
        op, order = ("<", "DESC") if back else (">", "ASC")
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
            f" AND (time_ms {op} ? OR (time_ms = ? AND seq {op} ?))"
            f" ORDER BY time_ms {order}, seq {order} LIMIT ?"
        )
        pos = decode_cursor(cursor) if cursor else ((_MAX, _MAX) if back else (_MIN, 0))
        batch = min(max(4 * limit, 256), 10_000)
        with self._reading() as conn:
            return self._scan(conn, sql, params, pos, batch, sets, limit)

    def _scan(
        self,
        conn: sqlite3.Connection,
        sql: str,
        params: list[Any],
        pos: tuple[int, int],
        batch: int,
        sets: list[list[Matcher]],
        limit: int,
    ) -> tuple[list[Event], str | None]:
        """Read `batch` rows at a time after `pos` until limit + 1 match, the rows run out or the
        scan budget is spent."""
        out: list[_Row] = []
        scanned = 0
        while True:
            rows = conn.execute(sql, [*params, pos[0], pos[0], pos[1], batch]).fetchall()
            for raw in rows:
                row = _Row(raw)
                scanned += 1
                pos = (row.time_ms, row.seq)
                if row.matches(sets):
                    out.append(row)
                    # One more than asked tells whether there is a next page (no empty last page).
                    if len(out) > limit:
                        last = out[limit - 1]
                        return [r.event() for r in out[:limit]], encode_cursor(last.time_ms, last.seq)
            if len(rows) < batch:
                return [r.event() for r in out], None
            if scanned >= self._max_scan:
                return [r.event() for r in out], encode_cursor(*pos)

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop maintenance and close every connection; idempotent."""
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in [*self._idle, self._writer]:
                conn.close()  # a reader in use is closed when it comes back
            self._idle.clear()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

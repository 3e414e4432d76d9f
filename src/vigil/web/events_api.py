"""`POST /api/v1/events` (security events in) and `GET /api/v1/events` (events out).

In: newline-delimited JSON events (`vigil.model.event` wire format), as the agent ships them through
its durable queue: the same bearer tokens (write scope), HMAC signature and size limits as remote
write, `Content-Encoding` identity, gzip, snappy (raw block, as remote write) or zstd. A request is
all or nothing: one bad line refuses the whole request with 400 naming the line, so a client can fix
it and re-send without duplicates or gaps. The `tenant` label comes from the token, never from the
payload, so one tenant cannot write into another's. 200 with `{"stored": n, "duplicates": m}` in
the Prometheus envelope.

Out: the Prometheus API's conventions (envelope, `bad_data` errors, `start`/`end` as RFC 3339 or
Unix seconds, `match[]` selectors OR'ed), plus `kind`, `limit`, `cursor` and `direction` for paging.
A tenant's reader gets that tenant's events only, whatever its matchers say.
"""

from __future__ import annotations

import collections
import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence

import cramjam
from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vigil.events.store import Direction, EventStore, check_storable, decode_cursor
from vigil.model.event import KINDS, Event, EventError, EventLimits
from vigil.model.matcher import Matcher
from vigil.prompb.codec import DecodeError, DecompressedTooLarge, decode_snappy
from vigil.promql.errors import ParseError
from vigil.promql.parser import parse_selector
from vigil.ship import signing
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.body import BodyTooLarge, read_body
from vigil.web.errors import APIError, bad_data
from vigil.web.promapi import go_atoi, go_quote, parse_time, success_body

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "EventsAPI"]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
_DEFAULT_LIMITS = EventLimits()
MAX_LIMIT = 10_000
DEFAULT_RANGE_MS = 3_600_000  # `start` defaults to one hour before `end`, as in Grafana's default view
ENCODINGS = ("identity", "gzip", "snappy", "zstd")
MAX_GZIP_MEMBERS = 1024  # concatenated gzip members one body may hold (each costs a fresh inflater)
_GZIP_SLICE = 1 << 16


def _bad(message: str) -> APIError:
    return bad_data(message)


def _too_large(what: str, limit: int) -> APIError:
    return APIError(413, "bad_data", f"{what} exceeds {limit} bytes")


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` decoded per its Content-Encoding, never inflated beyond `limit` bytes (413)."""
    if encoding == "identity":
        out = body
    elif encoding == "snappy":
        try:
            out = decode_snappy(body, limit)
        except DecompressedTooLarge:
            raise _too_large("decompressed body", limit) from None
        except DecodeError as exc:
            raise _bad(f"bad snappy body: {exc}") from None
    elif encoding == "gzip":
        out = _gzip(body, limit)
    else:
        out = _zstd(body, limit)
    if len(out) > limit:
        raise _too_large("decompressed body", limit)
    return out


def _gzip(body: bytes, limit: int) -> bytes:
    """Gzip members one after another, as gunzip reads them, fed in bounded slices so neither the
    input nor the output is copied again per member; at most MAX_GZIP_MEMBERS members."""
    out: list[bytes] = []
    size = pos = members = 0
    view = memoryview(body)
    while pos < len(body):
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise _bad(f"bad gzip body: more than {MAX_GZIP_MEMBERS} gzip members")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        while not inflater.eof:
            chunk = view[pos : pos + _GZIP_SLICE]
            if not chunk:
                raise _bad("bad gzip body: truncated stream")
            try:
                piece = inflater.decompress(chunk, limit + 1 - size)  # bounded: a bomb stays small
            except zlib.error as exc:
                raise _bad(f"bad gzip body: {exc}") from None
            out.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(out)  # the caller refuses it as too large
            pos += len(chunk) - len(inflater.unused_data) - len(inflater.unconsumed_tail)
    return b"".join(out)


def _zstd(body: bytes, limit: int) -> bytes:
    # cramjam decodes into a caller's buffer and fails when it is full: grow it up to the limit
    # rather than trusting (or allocating) a size the sender declares.
    size = min(limit + 1, max(1 << 16, 8 * len(body)))
    while True:
        buf = bytearray(size)
        try:
            n = int(cramjam.zstd.decompress_into(body, buf))
        except cramjam.DecompressionError as exc:
            if "whole buffer" not in str(exc):
                raise _bad(f"bad zstd body: {exc}") from None
            if size > limit:
                raise _too_large("decompressed body", limit) from None
            size = min(limit + 1, size * 4)
            continue
        return bytes(buf[:n])


def parse_lines(body: bytes, tenant: str | None, limits: EventLimits = _DEFAULT_LIMITS) -> list[Event]:
    """The events of an NDJSON body, each with the server's `tenant` label; blank lines are skipped.
    Raises APIError (400) naming the first bad line."""
    events = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            ev = Event.from_json(line, limits)
            check_storable(ev)
        except EventError as exc:
            raise _bad(f"line {number}: {exc}") from None
        labels = {k: v for k, v in ev.labels.items() if k != "tenant"}  # never the payload's word
        if tenant:
            labels["tenant"] = tenant
        events.append(Event(ev.time_ms, ev.kind, ev.message, ev.fields, labels, ev.id))
    return events


class EventsMetrics:
    """The server's own account of events written to it (on `/metrics`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.stored = Counter(
            "vigil_events_stored_total", "Events stored, by kind.", ["kind"], registry=registry
        )
        self.duplicates = Counter(
            "vigil_events_duplicates_total",
            "Events received again (same id) and not stored twice: re-sent batches.",
            registry=registry,
        )
        self.rejected = Counter(
            "vigil_events_requests_rejected_total",
            "Event write requests refused as a whole, by HTTP status.",
            ["status"],
            registry=registry,
        )


class EventsAPI:
    """Handlers for `POST` and `GET /api/v1/events` over an EventStore."""

    def __init__(
        self,
        store: EventStore,
        auth: TokenAuth,
        max_body: int,
        hmac_key: str | None = None,
        max_decompressed: int | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
        limits: EventLimits = _DEFAULT_LIMITS,
    ) -> None:
        self._metrics = EventsMetrics(registry)
        self._limits = limits
        self._store = store
        self.auth = auth
        self._max_body = max_body
        self._max_decompressed = max_decompressed if max_decompressed is not None else 4 * max_body
        # When set, posts must carry an HMAC signature of their body, exactly as remote writes do.
        self._hmac_key = hmac_key or None
        self._clock = clock

    @property
    def write_error(self) -> str | None:
        """Why the event store's last append failed, or None: `/-/ready` reports it."""
        return self._store.write_error

    # -- POST ----------------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/events", self.post, methods=["POST"]),
            Route("/api/v1/events", self.get, methods=["GET"]),
        ]

    @requires(Scope.WRITE)
    async def post(self, request: Request, caller: Caller) -> Response:
        try:
            encoding = self._encoding(request)
            body = await self._read_body(request)
            key = caller.signing_key(self._hmac_key)  # the tenant's own, if it has one
            if key is not None:
                problem = signing.verify(key, body, request.headers, self._clock())
                if problem is not None:
                    raise APIError(401, "unauthorized", f"unauthorized: {problem}")
            stored, total = await run_in_threadpool(self._store_body, body, encoding, caller.tenant)
        except APIError as exc:
            self._metrics.rejected.labels(str(exc.status)).inc()
            raise
        except ClientDisconnect:
            self._metrics.rejected.labels("400").inc()
            raise _bad("client disconnected") from None
        data = json.dumps({"stored": stored, "duplicates": total - stored})
        return Response(success_body(data), media_type="application/json")

    def _encoding(self, request: Request) -> str:
        ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if ctype == "application/x-protobuf":
            raise APIError(415, "bad_data", "events are JSON lines; remote write goes to /api/v1/write")
        encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
        if encoding not in ENCODINGS:
            raise APIError(
                415,
                "bad_data",
                f"unsupported content encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}",
            )
        return encoding

    async def _read_body(self, request: Request) -> bytes:
        try:
            return await read_body(request, self._max_body)
        except BodyTooLarge:
            raise _too_large("request body", self._max_body) from None

    def _store_body(self, body: bytes, encoding: str, tenant: str | None) -> tuple[int, int]:
        events = parse_lines(decompress(body, encoding, self._max_decompressed), tenant, self._limits)
        try:
            stored = self._store.append(events)
        except sqlite3.Error as exc:
            # 503: the agent keeps the batch and retries; nothing of it was committed.
            log.error("event store error on write: %s", exc)
            raise APIError(503, "unavailable", f"storage error: {exc}") from None
        if stored == len(events):  # the usual case: count by kind without asking which were new
            # Kinds are the client's words: only Vigil's own become label values (bounded series).
            for kind, n in collections.Counter(
                e.kind if e.kind in KINDS else "other" for e in events
            ).items():
                self._metrics.stored.labels(kind).inc(n)
        else:
            self._metrics.stored.labels("mixed").inc(stored)
        self._metrics.duplicates.inc(len(events) - stored)
        return stored, len(events)

    # -- GET -----------------------------------------------------------------------------------------

    @requires(Scope.READ)
    async def get(self, request: Request, caller: Caller) -> Response:
        query = self._query_params(request)
        events, cursor = await run_in_threadpool(self._query, *query, caller.tenant)
        encoded = ",".join(e.to_json() for e in events)  # the wire format, as POST takes it
        data = f'{{"events":[{encoded}],"next_cursor":{json.dumps(cursor)}}}'
        return Response(success_body(data), media_type="application/json")

    def _query_params(
        self, request: Request
    ) -> tuple[list[list[Matcher]], int, int, list[str], int, str | None, Direction]:
        params = request.query_params
        sets = []
        for text in [*params.getlist("match[]"), *params.getlist("match")]:
            try:
                sets.append(parse_selector(text))
            except ParseError as exc:
                raise _bad(f'invalid parameter "match[]": {exc}') from None
        end = _time(params.get("end", ""), "end", int(self._clock() * 1000))
        start = _time(params.get("start", ""), "start", end - DEFAULT_RANGE_MS)
        if end < start:
            raise _bad('invalid parameter "end": end timestamp must not be before start time')
        kinds = sorted({k.strip() for v in params.getlist("kind") for k in v.split(",") if k.strip()})
        limit_text = params.get("limit", "")
        try:
            limit = go_atoi(limit_text) if limit_text else DEFAULT_LIMIT
        except ValueError as exc:
            raise _bad(f'invalid parameter "limit": {exc}') from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad(f'invalid parameter "limit": must be between 1 and {MAX_LIMIT}, got {limit}')
        cursor = params.get("cursor") or None
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except ValueError as exc:
                raise _bad(f'invalid parameter "cursor": {exc}') from None
        direction: Direction
        match params.get("direction") or "backward":
            case "backward":
                direction = "backward"
            case "forward":
                direction = "forward"
            case other:
                raise _bad(
                    f'invalid parameter "direction": expected "backward" or "forward", got {go_quote(other)}'
                )
        return sets, start, end, kinds, limit, cursor, direction

    def _query(
        self,
        sets: Sequence[Sequence[Matcher]],
        start: int,
        end: int,
        kinds: Sequence[str],
        limit: int,
        cursor: str | None,
        direction: Direction,
        tenant: str | None,
    ) -> tuple[list[Event], str | None]:
        """`tenant`: the reader's (only that tenant's events), None for a global reader."""
        try:
            return self._store.query(sets, start, end, kinds, limit, cursor, direction, tenant)
        except sqlite3.Error as exc:
            log.error("event store error on query: %s", exc)
            raise APIError(503, "unavailable", f"storage error: {exc}") from None


def _time(text: str, name: str, default: int) -> int:
    if not text:
        return default
    try:
        return parse_time(text)
    except ValueError as exc:
        raise _bad(f"invalid parameter {go_quote(name)}: {exc}") from None

"""The Prometheus query API: `/api/v1/query`, `query_range`, `series`, `labels`, `label/<name>/values`,
`metadata` and `format_query`, with Prometheus' parameters, defaults, limits and error responses.

Parameters come from the query string and, for POST, an `application/x-www-form-urlencoded` body
(body values first, as Go's `Request.FormValue`). Evaluation, storage look-ups and the encoding of
large results run in the thread pool so the event loop keeps serving other requests. Parsing and
formatting rules live in `vigil.web.promapi`.

Tenants: a reader scoped to one tenant (its read token, or a trusted proxy naming it) is served
from that tenant's view of the store (`vigil.storage.tenant`) with an engine over that view, so
every selector a query contains, at any depth, is matched against that tenant's series only;
metadata is scoped the same way. Global readers see the whole store.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

import promql_parser
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql.errors import ParseError, PromQLError
from vigil.promql.parser import parse, parse_selector
from vigil.promql.result import QueryResult
from vigil.storage.interface import Queryable, StorageError
from vigil.storage.metadata import MetadataStore
from vigil.storage.tenant import TenantView
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.errors import APIError, api_error, bad_data, invalid_param
from vigil.web.promapi import (
    INT64_MAX,
    INT64_MIN,
    MAX_POINTS_PER_SERIES,
    PROM_MAX_TIME_MS,
    PROM_MIN_TIME_MS,
    dumps,
    encode_query_data,
    go_atoi,
    go_quote,
    labels_json,
    parse_duration_ns,
    parse_duration_param,
    parse_limit,
    parse_time,
    success_body,
    unescape_name,
)

log = logging.getLogger(__name__)

# Go's http.Request.ParseForm refuses larger url-encoded bodies.
MAX_FORM_BYTES = 10 << 20
TRUNCATED = "results truncated due to limit"

_Data = tuple[str, Sequence[str], Sequence[str]]  # encoded data, warnings, infos


class QueryEngine(Protocol):
    def with_storage(self, storage: Queryable) -> QueryEngine:
        """The same engine evaluating over `storage` (a tenant's view) instead."""
        ...

    def instant_query(
        self, query: str, time_ms: int, lookback_delta_ms: int | None = None, timeout_s: float | None = None
    ) -> QueryResult: ...

    def range_query(
        self,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        lookback_delta_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult: ...


class Form:
    """Request parameters in Go's `Request.Form` order: url-encoded body first, then the query string."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str) -> str:
        """The first value, or "" (Go's FormValue: an empty parameter is the same as a missing one)."""
        for k, v in self._pairs:
            if k == name:
                return v
        return ""

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]


async def read_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> Form:
    pairs: list[tuple[str, str]] = []
    if request.method in ("POST", "PUT", "PATCH"):
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded":  # Go ignores other bodies too
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise bad_data("error parsing form values: http: POST too large")
                chunks.append(chunk)
            body = b"".join(chunks).decode("utf-8", "replace")
            pairs = parse_qsl(body, keep_blank_values=True)
    pairs.extend(request.query_params.multi_items())
    return Form(pairs)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _View:
    """What one request reads from: the whole store, or one tenant's view of it and an engine over that."""

    engine: QueryEngine
    storage: Queryable
    tenant: str | None  # None: everything (a global reader)


class QueryAPI:
    """Route handlers for the read side of the Prometheus HTTP API (see `routes`)."""

    def __init__(
        self,
        engine: QueryEngine,
        storage: Queryable,
        auth: TokenAuth,
        metadata: MetadataStore | None,
        now: Callable[[], int] = _now_ms,
        max_form_bytes: int = MAX_FORM_BYTES,
    ) -> None:
        self._engine = engine
        self._storage = storage
        self.auth = auth
        self._metadata = metadata
        self._now = now
        self._max_form = max_form_bytes

    def routes(self) -> list[BaseRoute]:
        """The routes to add to the application (all read-scoped)."""
        both = ["GET", "POST"]
        return [
            Route("/api/v1/query", self.query, methods=both),
            Route("/api/v1/query_range", self.query_range, methods=both),
            Route("/api/v1/series", self.series, methods=both),
            Route("/api/v1/labels", self.labels, methods=both),
            Route("/api/v1/label/{name}/values", self.label_values, methods=["GET"]),
            Route("/api/v1/metadata", self.metadata, methods=["GET"]),
            Route("/api/v1/format_query", self.format_query, methods=both),
        ]

    # -- plumbing ----------------------------------------------------------------------------------

    def _view(self, tenant: str | None) -> _View:
        if tenant is None:
            return _View(self._engine, self._storage, None)
        storage = TenantView(self._storage, tenant)
        return _View(self._engine.with_storage(storage), storage, tenant)

    async def _serve(
        self, request: Request, caller: Caller, handler: Callable[[Request, Form, _View], Awaitable[_Data]]
    ) -> Response:
        # Every failure in the Prometheus envelope, as Prometheus answers on these endpoints.
        try:
            form = await read_form(request, self._max_form)
            data, warnings, infos = await handler(request, form, self._view(caller.tenant))
        except APIError:
            raise
        except ClientDisconnect:
            raise api_error("canceled", "client disconnected") from None
        except StorageError as exc:
            log.error("storage error serving %s: %s", request.url.path, exc)
            raise api_error("internal", str(exc)) from None
        except Exception as exc:
            log.exception("error serving %s", request.url.path)
            raise api_error("internal", f"{type(exc).__name__}: {exc}") from None
        return Response(success_body(data, warnings, infos), media_type="application/json")

    def _query_kwargs(self, form: Form) -> dict[str, Any]:
        """`timeout` and `lookback_delta`, checked in Prometheus' order; absent: the engine's defaults."""
        kwargs: dict[str, Any] = {}
        if timeout := form.get("timeout"):
            try:
                ns = parse_duration_ns(timeout)
            except ValueError as exc:
                raise invalid_param("timeout", str(exc)) from None
            kwargs["timeout_s"] = ns / 1e9
        if lookback := form.get("lookback_delta"):
            try:
                ms = parse_duration_param(lookback)
            except ValueError as exc:
                raise bad_data(f"error parsing lookback delta duration: {exc}") from None
            if ms > 0:  # 0 or less: the default, as Prometheus
                kwargs["lookback_delta_ms"] = ms
        return kwargs

    async def _evaluate(self, limit: int, run: Callable[[], QueryResult]) -> _Data:
        """Run a query in the thread pool and encode its result there too (large matrices are slow
        to format); engine errors become API errors."""

        def work() -> _Data:
            try:
                result = run()
            except ParseError as exc:
                raise invalid_param("query", str(exc)) from None
            except PromQLError as exc:
                raise api_error(exc.error_type, str(exc)) from None
            warnings = list(result.warnings)
            series = result.series
            if result.type == "matrix":
                series = sorted(series, key=lambda s: s.labels)
            if limit > 0 and len(series) > limit and result.type in ("vector", "matrix"):
                series = series[:limit]
                warnings.append(TRUNCATED)
            if series is not result.series:
                result = QueryResult(result.type, series, result.scalar, result.string, [], result.infos)
            return encode_query_data(result), warnings, result.infos

        return await run_in_threadpool(work)

    # -- endpoints -----------------------------------------------------------------------------------

    @requires(Scope.READ)
    async def query(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._query)

    async def _query(self, _: Request, form: Form, view: _View) -> _Data:
        limit = _limit(form)
        t = _time_param(form, "time", self._now())
        kwargs = self._query_kwargs(form)
        q = form.get("query")
        return await self._evaluate(limit, functools.partial(view.engine.instant_query, q, t, **kwargs))

    @requires(Scope.READ)
    async def query_range(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._query_range)

    async def _query_range(self, _: Request, form: Form, view: _View) -> _Data:
        limit = _limit(form)
        start = _required_time(form, "start")
        end = _required_time(form, "end")
        if end < start:
            raise invalid_param("end", "end timestamp must not be before start time")
        try:
            step_ns = parse_duration_ns(form.get("step"))
        except ValueError as exc:
            raise invalid_param("step", str(exc)) from None
        step = step_ns // 1_000_000 if step_ns > 0 else 0  # the engine works in whole ms
        if step <= 0:
            raise invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
        if (end - start) * 1_000_000 // step_ns > MAX_POINTS_PER_SERIES:
            raise bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)",
            )
        kwargs = self._query_kwargs(form)
        q = form.get("query")
        return await self._evaluate(
            limit, functools.partial(view.engine.range_query, q, start, end, step, **kwargs)
        )

    @requires(Scope.READ)
    async def series(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._series)

    async def _series(self, _: Request, form: Form, view: _View) -> _Data:
        matches = form.getlist("match[]")
        if not matches:
            raise bad_data("no match[] parameter provided")
        limit = _limit(form)
        lo, hi = _range_params(form)
        try:
            sets = _parse_matchers(matches)
        except ValueError as exc:
            raise invalid_param("match[]", str(exc)) from None

        def work() -> _Data:
            found: set[Labels] = set()
            for matchers in sets:
                found.update(view.storage.series(matchers, lo, hi))
            result = sorted(found)
            warnings = []
            if limit > 0 and len(result) > limit:
                result = result[:limit]
                warnings.append(TRUNCATED)
            return "[" + ",".join(labels_json(lb) for lb in result) + "]", warnings, ()

        return await run_in_threadpool(work)

    @requires(Scope.READ)
    async def labels(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._labels)

    async def _labels(self, _: Request, form: Form, view: _View) -> _Data:
        limit = _limit(form)
        lo, hi = _range_params(form)
        sets = _matcher_sets(form)

        def work() -> _Data:
            names: set[str] = set()
            for matchers in sets or [[]]:
                names.update(view.storage.label_names(matchers, lo, hi))
            return _string_list(sorted(names), limit)

        return await run_in_threadpool(work)

    @requires(Scope.READ)
    async def label_values(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._label_values)

    async def _label_values(self, request: Request, form: Form, view: _View) -> _Data:
        name = unescape_name(request.path_params["name"])
        if not name or not _valid_utf8(name):
            raise bad_data(f"invalid label name: {go_quote(name)}")
        limit = _limit(form)
        lo, hi = _range_params(form)
        sets = _matcher_sets(form)

        def work() -> _Data:
            values: set[str] = set()
            for matchers in sets or [[]]:
                values.update(view.storage.label_values(name, matchers, lo, hi))
            return _string_list(sorted(values), limit)

        return await run_in_threadpool(work)

    @requires(Scope.READ)
    async def metadata(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._metadata_data)

    async def _metadata_data(self, _: Request, form: Form, view: _View) -> _Data:
        limit = _number(form, "limit")
        per_metric = _number(form, "limit_per_metric")
        if self._metadata is None:
            return "{}", (), ()
        found = self._metadata.query(form.get("metric") or None, limit, per_metric, tenant=view.tenant)
        return dumps(found), (), ()

    @requires(Scope.READ)
    async def format_query(self, request: Request, caller: Caller) -> Response:
        return await self._serve(request, caller, self._format_query)

    async def _format_query(self, _: Request, form: Form, __: _View) -> _Data:
        q = form.get("query")
        try:
            parse(q)  # for Prometheus' wording of syntax errors
        except ParseError as exc:
            raise invalid_param("query", str(exc)) from None
        return dumps(promql_parser.parse(q).prettify()), (), ()


# -- parameter helpers ------------------------------------------------------------------------------


def _limit(form: Form) -> int:
    try:
        return parse_limit(form.get("limit"))
    except ValueError as exc:
        raise invalid_param("limit", str(exc)) from None


def _number(form: Form, name: str) -> int:
    """/api/v1/metadata's `limit` and `limit_per_metric`: any int, -1 when absent."""
    value = form.get(name)
    if not value:
        return -1
    try:
        return go_atoi(value)
    except ValueError:
        raise bad_data(f"{name} must be a number") from None


def _time_param(form: Form, name: str, default: int) -> int:
    value = form.get(name)
    if value == "":
        return default
    try:
        return parse_time(value)
    except ValueError as exc:
        raise invalid_param(name, f"invalid time value for '{name}': {exc}") from None


def _required_time(form: Form, name: str) -> int:
    try:
        return parse_time(form.get(name))
    except ValueError as exc:
        raise invalid_param(name, str(exc)) from None


def _range_params(form: Form) -> tuple[int, int]:
    """`start`/`end` of series and label look-ups; absent (or Prometheus' own min/max times) means
    unbounded, which lets the store answer from its index without reading samples."""
    start = _time_param(form, "start", PROM_MIN_TIME_MS)
    end = _time_param(form, "end", PROM_MAX_TIME_MS)
    lo = INT64_MIN if start <= PROM_MIN_TIME_MS else start
    hi = INT64_MAX if end >= PROM_MAX_TIME_MS else end
    return lo, hi


def _parse_matchers(selectors: Sequence[str]) -> list[list[Matcher]]:
    """Each `match[]` selector as a matcher list (the lists are OR'ed); ValueError if one is invalid."""
    sets = []
    for text in selectors:
        try:
            matchers = parse_selector(text)
        except ParseError as exc:
            raise ValueError(str(exc)) from None
        if all(m.matches_empty for m in matchers):
            raise ValueError("match[] must contain at least one non-empty matcher")
        sets.append(matchers)
    return sets


def _matcher_sets(form: Form) -> list[list[Matcher]]:
    try:
        return _parse_matchers(form.getlist("match[]"))
    except ValueError as exc:
        raise bad_data(str(exc)) from None


def _string_list(values: list[str], limit: int) -> _Data:
    warnings = []
    if limit > 0 and len(values) > limit:
        values = values[:limit]
        warnings.append(TRUNCATED)
    return dumps(values), warnings, ()


def _valid_utf8(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:  # lone surrogates from undecodable bytes
        return False
    return True

"""The PromQL engine: parses a query and evaluates it over the storage interface.

Evaluation is vectorised over steps: every node is evaluated once for all the steps of a range
query (an instant query is a range query of one step), so the cost is a fixed number of numpy
calls per node rather than per step or per sample. What a query may spend is bounded by its
QueryLimits (see limits.py): every grid of points is charged to the sample budget before it is
allocated, and the deadline is checked at every node and in every per-series or per-step loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql import aggregations, ast, binops, functions
from vigil.promql.errors import ExecutionError, ParseError
from vigil.promql.limits import QueryLimits
from vigil.promql.parser import parse
from vigil.promql.result import QueryResult, Series
from vigil.promql.selectors import selector_labels
from vigil.promql.value import I64, Matrix, Scalar, String, Value, Vector
from vigil.storage.interface import Queryable, SeriesSet

STALE_NAN_BITS = 0x7FF0000000000002
DEFAULT_SUBQUERY_STEP_MS = 60_000


@dataclass(frozen=True)
class EngineOptions:
    lookback_delta_ms: int = 300_000
    timeout_s: float = 120.0
    max_samples: int = 50_000_000
    default_subquery_step_ms: int = DEFAULT_SUBQUERY_STEP_MS


class Engine:
    def __init__(
        self,
        storage: Queryable,
        options: EngineOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self.options = options or EngineOptions()
        self._clock = clock  # for the query deadline

    def with_storage(self, storage: Queryable) -> Engine:
        """An engine with the same options over other storage (e.g. one tenant's view of it).

        Evaluation reaches stored data only through `storage.select`, so a query run here can only
        ever see what `storage` gives it."""
        return Engine(storage, self.options, self._clock)

    def instant_query(
        self, query: str, time_ms: int, lookback_delta_ms: int | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        expr = parse(query)
        ev = self._evaluator(time_ms, time_ms, lookback_delta_ms, timeout_s)
        ev.limits.charge(1)
        steps = np.array([time_ms], np.int64)
        ev.step = 0
        return _instant_result(ev.eval(expr, steps), time_ms)

    def range_query(
        self,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        lookback_delta_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        if step_ms <= 0:
            raise ParseError("zero or negative query resolution step widths are not accepted")
        if end_ms < start_ms:
            raise ParseError("end timestamp must not be before start time")
        expr = parse(query)
        vt = ast.value_type(expr)
        if vt not in ("scalar", "vector"):
            kind = "range vector" if vt == "matrix" else vt
            raise ParseError(
                f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
            )
        ev = self._evaluator(start_ms, end_ms, lookback_delta_ms, timeout_s)
        ev.limits.charge((end_ms - start_ms) // step_ms + 1)  # the steps, before they exist
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ev.step = step_ms
        return _range_result(ev.eval(expr, steps), steps)

    def _evaluator(self, start: int, end: int, lookback: int | None, timeout_s: float | None) -> Evaluator:
        o = self.options
        timeout = o.timeout_s if timeout_s is None else min(timeout_s, o.timeout_s)
        limits = QueryLimits(o.max_samples, self._clock() + timeout, self._clock)
        return Evaluator(
            self._storage, start, end, lookback or o.lookback_delta_ms, limits, o.default_subquery_step_ms
        )


class Evaluator:
    def __init__(
        self,
        storage: Queryable,
        start: int,
        end: int,
        lookback: int,
        limits: QueryLimits,
        default_step: int,
    ) -> None:
        self.storage = storage
        self.start = start
        self.end = end
        self.lookback = lookback
        self.limits = limits
        self.default_step = default_step
        self.step = 0  # the query's step (0 for an instant query), for step()

    def eval(self, e: ast.Expr, steps: I64) -> Value:
        self.limits.tick()
        value = self._eval(e, steps)
        self.limits.tick()  # a node that ran past the deadline must not hand on its result
        return value

    def _eval(self, e: ast.Expr, steps: I64) -> Value:
        match e:
            case ast.NumberLiteral(value=v):
                return Scalar(np.full(steps.size, v))
            case ast.StringLiteral(value=s):
                return String(s)
            case ast.Paren(expr=x):
                return self.eval(x, steps)
            case ast.Unary(expr=x):
                return binops.negate(self.eval(x, steps))
            case ast.VectorSelector():
                return self.vector_selector(e, steps)
            case ast.MatrixSelector():
                return self.matrix_selector(e, steps)
            case ast.Subquery():
                return self.subquery(e, steps)
            case ast.Binary():
                lhs, rhs = self.eval(e.lhs, steps), self.eval(e.rhs, steps)
                return binops.evaluate(e, lhs, rhs, steps, self.limits)
            case ast.Aggregate():
                param = self.eval(e.param, steps) if e.param is not None else None
                return aggregations.evaluate(e, self.eval(e.expr, steps), param, steps, self.limits)
            case ast.Call():
                return functions.call(self, e, steps)
        raise ExecutionError(f"unsupported expression {e!r}")

    # -- selectors -------------------------------------------------------------------------------

    def effective_times(self, steps: I64, offset: int, at: ast.At | None) -> I64:
        if at is None:
            return steps - offset
        base = {"time": at.time_ms, "start": self.start, "end": self.end}[at.kind]
        return np.full(steps.size, base - offset, np.int64)

    def _select(self, matchers: Sequence[Matcher], mint: int, maxt: int, grid_steps: int) -> SeriesSet:
        """The series, with their samples charged, and the series x `grid_steps` grid to fill."""
        ss = self.storage.select(matchers, mint, maxt)
        self.limits.charge(int(ss.timestamps.size) + len(ss) * grid_steps)
        self.limits.tick()
        return ss

    def windows(
        self,
        labels: list[Labels],
        offsets: I64,
        ts: I64,
        vals: np.ndarray,
        end: I64,
        range_ms: int,
        selector_labels: Labels | None = None,
    ) -> Matrix:
        """`windows`, its series x steps bounds charged first. The points inside the windows are
        not copied (range functions reduce over the samples, already charged); the functions that
        do copy them into padded arrays charge those."""
        self.limits.charge(len(labels) * end.size)
        return windows(labels, offsets, ts, vals, end, range_ms, selector_labels)

    def vector_selector(self, e: ast.VectorSelector, steps: I64) -> Vector:
        t = self.effective_times(steps, e.offset_ms, e.at)
        # Prometheus 3: the lookback window is left-open, (t - lookback, t].
        ss = self._select(e.matchers, int(t.min()) - self.lookback + 1, int(t.max()), steps.size)
        n, k = steps.size, len(ss)
        if k == 0:
            return Vector.empty(n)
        keys, span, base = _composite_keys(ss.offsets, ss.timestamps)
        # Clip into each series' own key range: a time past its last sample must not reach the next one.
        q = np.arange(k)[:, None] * span + np.clip(t[None, :] - base, -1, span - 1)
        idx = np.searchsorted(keys, q.ravel(), side="right").reshape(k, n) - 1
        valid = (idx >= ss.offsets[:-1, None]) & (idx < ss.offsets[1:, None])
        idx = np.where(valid, idx, 0)
        st = ss.timestamps[idx]
        sv = ss.values[idx]
        present = valid & (st > t[None, :] - self.lookback) & (sv.view(np.int64) != STALE_NAN_BITS)
        return Vector(list(ss.labels), sv, present, st).compact()

    def matrix_selector(self, e: ast.MatrixSelector, steps: I64) -> Matrix:
        vs = e.selector
        t = self.effective_times(steps, vs.offset_ms, vs.at)
        ss = self._select(vs.matchers, int(t.min()) - e.range_ms + 1, int(t.max()), 0)
        # Stale markers only end a series for instant selectors; range functions never see them.
        keep = ss.values.view(np.int64) != STALE_NAN_BITS
        if not keep.all():
            counts = (
                np.add.reduceat(keep.astype(np.int64), ss.offsets[:-1]) if len(ss) else np.zeros(0, np.int64)
            )
            counts[np.diff(ss.offsets) == 0] = 0
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            ss = SeriesSet(ss.labels, offsets, ss.timestamps[keep], ss.values[keep])
        return self.windows(
            list(ss.labels),
            ss.offsets,
            ss.timestamps,
            ss.values,
            t,
            e.range_ms,
            selector_labels(vs.matchers),
        )

    def subquery(self, e: ast.Subquery, steps: I64) -> Matrix:
        step = e.step_ms or self.default_step
        t = self.effective_times(steps, e.offset_ms, e.at)
        lo_t = int(t.min()) - e.range_ms
        first = (lo_t // step + 1) * step  # first aligned step strictly after the window start
        last = int(t.max())
        # The inner steps are charged before they exist: `[30d:1ms]` is 2.6e9 of them.
        self.limits.charge(max(0, (last - first) // step + 1))
        inner_steps = np.arange(first, last + 1, step, dtype=np.int64)
        if inner_steps.size == 0:
            return windows([], np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0), t, e.range_ms)
        inner = self.eval(e.expr, inner_steps)
        if isinstance(inner, Scalar):
            inner = Vector([Labels()], inner.values[None, :], np.ones((1, inner_steps.size), bool))
        if not isinstance(inner, Vector):
            raise ExecutionError("subquery is only allowed on an instant vector or scalar")
        inner = inner.compact()
        counts = inner.present.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows, cols = np.nonzero(inner.present)  # row-major: per series, ascending time
        ts = inner_steps[cols]
        vals = inner.values[rows, cols]
        return self.windows(inner.labels, offsets, ts, vals, t, e.range_ms)


def _composite_keys(offsets: I64, ts: I64) -> tuple[I64, int, int]:
    """One sorted key array for all series: series i's sample at t is i * span + (t - base)."""
    base = int(ts.min()) - 1 if ts.size else 0
    span = (int(ts.max()) - base + 2) if ts.size else 1
    series_of = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    return series_of * span + (ts - base), span, base


def windows(
    labels: list[Labels],
    offsets: I64,
    ts: I64,
    vals: np.ndarray,
    end: I64,
    range_ms: int,
    selector_labels: Labels | None = None,
) -> Matrix:
    k, n = len(labels), end.size
    if k == 0 or ts.size == 0:
        z = np.zeros((k, n), np.int64)
        return Matrix(labels, offsets, ts, vals, z, z, end, range_ms, selector_labels)
    keys, span, base = _composite_keys(offsets, ts)
    rows = np.arange(k)[:, None] * span
    # Clip into each series' own key range so windows never reach into a neighbour.
    hi_q = rows + np.clip(end[None, :] - base, -1, span - 1)
    lo_q = rows + np.clip(end[None, :] - range_ms - base, -1, span - 1)
    hi = np.searchsorted(keys, hi_q.ravel(), side="right").reshape(k, n)
    lo = np.searchsorted(keys, lo_q.ravel(), side="right").reshape(k, n)
    lo = np.maximum(lo, offsets[:-1, None])
    hi = np.maximum(np.minimum(hi, offsets[1:, None]), lo)
    return Matrix(labels, offsets, ts, vals, lo, hi, end, range_ms, selector_labels)


# -- results ---------------------------------------------------------------------------------------


def _instant_result(v: Value, t: int) -> QueryResult:
    match v:
        case Scalar(values=vals):
            return QueryResult("scalar", scalar=(t, float(vals[0])))
        case String(value=s):
            return QueryResult("string", string=(t, s))
        case Vector():
            out = []
            for i in np.flatnonzero(v.present[:, 0]).tolist():
                out.append(Series(v.labels[i], np.array([t], np.int64), v.values[i, :1].copy()))
            _check_unique(out)
            return QueryResult("vector", out)
        case Matrix():
            out = []
            for i, lb in enumerate(v.labels):
                a, b = int(v.lo[i, 0]), int(v.hi[i, 0])
                if b > a:
                    out.append(Series(lb, v.ts[a:b].copy(), np.asarray(v.vals[a:b], np.float64).copy()))
            out.sort(key=lambda s: s.labels)
            return QueryResult("matrix", out)
    raise ExecutionError(f"unexpected result {type(v).__name__}")


def _range_result(v: Value, steps: I64) -> QueryResult:
    if isinstance(v, Scalar):
        return QueryResult("matrix", [Series(Labels(), steps.copy(), v.values.copy())])
    if not isinstance(v, Vector):
        raise ExecutionError(f"unexpected result {type(v).__name__} for a range query")
    out = []
    for i in np.flatnonzero(v.present.any(axis=1)).tolist():
        m = v.present[i]
        out.append(Series(v.labels[i], steps[m], v.values[i, m]))
    _check_unique(out)
    out.sort(key=lambda s: s.labels)
    return QueryResult("matrix", out)


def _check_unique(series: list[Series]) -> None:
    seen: set[Labels] = set()
    for s in series:
        if s.labels in seen:
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        seen.add(s.labels)

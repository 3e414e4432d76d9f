"""PromQL functions: over range vectors (rate, *_over_time, ...) and instant vectors (math, labels, ...).

Range functions see each series' samples flat with per-step window bounds, and reduce the windows
with `ufunc.reduceat` or cumulative sums, so a range query costs no Python loop per step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Protocol

import numpy as np

from vigil.model.labels import METRIC_NAME, Labels, is_valid_label_name
from vigil.model.regex import RegexMatch, RegexSyntaxError, compile_regex
from vigil.promql import ast
from vigil.promql.errors import ExecutionError
from vigil.promql.functions_util import (
    format_go_float,
    kahan_inc,
    kahan_sum,
    quantile_sorted,
    sort_for_quantile,
)
from vigil.promql.limits import QueryLimits
from vigil.promql.selectors import selector_labels
from vigil.promql.value import F64, I64, Matrix, Scalar, String, Value, Vector, merge_duplicates


class Evaluator(Protocol):
    """What the functions need of vigil.promql.engine.Evaluator (which calls them): the query's
    range and step, its limits, and evaluating an argument."""

    start: int
    end: int
    step: int
    limits: QueryLimits

    def eval(self, e: ast.Expr, steps: I64) -> Value: ...


# A range function: the matrix argument, all the arguments, the steps, the query's limits.
RangeFunction = Callable[[Matrix, list[Value], I64, QueryLimits], Vector]


def call(ev: Evaluator, e: ast.Call, steps: I64) -> Value:
    f = e.func
    args = [ev.eval(a, steps) for a in e.args]
    lim = ev.limits
    if f in _RANGE:
        m = next(a for a in args if isinstance(a, Matrix))
        return _RANGE[f](m, args, steps, lim)
    if f in _MATH:
        return _map(args[0], _MATH[f])
    if f in _DATE:
        v = args[0] if args else Vector([Labels()], (steps / 1000.0)[None, :], np.ones((1, steps.size), bool))
        assert isinstance(v, Vector)
        return _map(v, _DATE[f])
    match f:
        case "time":
            return Scalar(steps / 1000.0)
        case "step":
            return Scalar(np.full(steps.size, ev.step / 1000.0))
        case "range":
            return Scalar(np.full(steps.size, (ev.end - ev.start) / 1000.0 if ev.step else 0.0))
        case "start":
            return Scalar(np.full(steps.size, ev.start / 1000.0))
        case "end":
            return Scalar(np.full(steps.size, ev.end / 1000.0))
        case "min_of" | "max_of":
            a, b = args
            assert isinstance(a, Scalar) and isinstance(b, Scalar)
            return Scalar((np.minimum if f == "min_of" else np.maximum)(a.values, b.values))
        case "sort_by_label" | "sort_by_label_desc":
            return _sort_by_label(args, desc=f == "sort_by_label_desc")
        case "pi":
            return Scalar(np.full(steps.size, math.pi))
        case "vector":
            s = args[0]
            assert isinstance(s, Scalar)
            return Vector([Labels()], s.values[None, :].copy(), np.ones((1, steps.size), bool))
        case "scalar":
            return _scalar(args[0], steps.size)
        case "timestamp":
            v = args[0]
            assert isinstance(v, Vector)
            ts = v.sample_ts if v.sample_ts is not None else np.broadcast_to(steps, v.values.shape)
            out = Vector([lb.without(METRIC_NAME) for lb in v.labels], ts / 1000.0, v.present)
            return merge_duplicates(out)
        case "round":
            v = args[0]
            assert isinstance(v, Vector)
            to = args[1].values if len(args) > 1 and isinstance(args[1], Scalar) else np.ones(steps.size)
            with np.errstate(all="ignore"):
                inv = 1.0 / to
                vals = np.floor(v.values * inv + 0.5) / inv
            return _relabel(v, vals)
        case "clamp" | "clamp_min" | "clamp_max":
            return _clamp(f, args)
        case "sort" | "sort_desc":
            return _sort(args[0], desc=f == "sort_desc")
        case "label_replace":
            return _label_replace(args, lim)
        case "label_join":
            return _label_join(args, lim)
        case "absent":
            return _absent(args[0], e.args[0], steps)
        case "histogram_quantile":
            return _histogram_quantile(args[0], args[1], lim)
        case "histogram_quantiles":
            return _histogram_quantiles(args, lim)
        case "histogram_fraction":
            lo, hi = args[0], args[1]
            assert isinstance(lo, Scalar) and isinstance(hi, Scalar)
            return _classic_histograms(
                args[2],
                lambda j, up, c: _bucket_fraction(float(lo.values[j]), float(hi.values[j]), up, c),
                lim,
            )
    raise ExecutionError(f"function {f!r} is not supported")


# -- instant-vector helpers ----------------------------------------------------------------------


def _relabel(v: Vector, values: F64, keep_name: bool = False) -> Vector:
    labels = v.labels if keep_name else [lb.without(METRIC_NAME) for lb in v.labels]
    out = Vector(labels, values, v.present.copy())
    return out if keep_name else merge_duplicates(out)


def _map(v: Value, fn: Callable[[F64], F64]) -> Vector:
    assert isinstance(v, Vector)
    with np.errstate(all="ignore"):
        return _relabel(v, fn(v.values))


def _sgn(x: F64) -> F64:
    return np.where(np.isnan(x), np.nan, np.sign(x))


_MATH: dict[str, Callable[[F64], F64]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": _sgn,
    "acos": np.arccos,
    "acosh": np.arccosh,
    "asin": np.arcsin,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "cos": np.cos,
    "cosh": np.cosh,
    "sin": np.sin,
    "sinh": np.sinh,
    "tan": np.tan,
    "tanh": np.tanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def _datetime_part(part: str) -> Callable[[F64], F64]:
    def fn(x: F64) -> F64:
        ok = np.isfinite(x)
        secs = np.where(ok, x, 0).astype(np.int64)
        d = secs.astype("datetime64[s]")
        days = d.astype("datetime64[D]")
        match part:
            case "minute":
                r = (secs // 60) % 60
            case "hour":
                r = (secs // 3600) % 24
            case "day_of_week":
                r = (days.astype(np.int64) + 4) % 7  # 1970-01-01 was a Thursday
            case "day_of_month":
                r = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
            case "day_of_year":
                r = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
            case "days_in_month":
                m = days.astype("datetime64[M]")
                r = ((m + 1).astype("datetime64[D]") - m.astype("datetime64[D]")).astype(np.int64)
            case "month":
                r = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
            case "year":
                r = days.astype("datetime64[Y]").astype(np.int64) + 1970
            case _:
                raise ExecutionError(part)
        return np.where(ok, r.astype(np.float64), np.nan)

    return fn


_DATE = {
    p: _datetime_part(p)
    for p in (
        "minute",
        "hour",
        "day_of_week",
        "day_of_month",
        "day_of_year",
        "days_in_month",
        "month",
        "year",
    )
}


def _scalar(v: Value, n: int) -> Scalar:
    assert isinstance(v, Vector)
    if not len(v):
        return Scalar(np.full(n, np.nan))
    cnt = v.present.sum(axis=0)
    first = v.present.argmax(axis=0)
    vals = v.values[first, np.arange(n)]
    return Scalar(np.where(cnt == 1, vals, np.nan))


def _string_arg(a: Value) -> str:
    assert isinstance(a, String)  # the parser checked the argument types
    return a.value


def _scalar_arg(a: Value) -> F64:
    assert isinstance(a, Scalar)  # the parser checked the argument types
    return a.values


def _clamp(f: str, args: list[Value]) -> Vector:
    v = args[0]
    assert isinstance(v, Vector)
    n = v.values.shape[1]
    lo = _scalar_arg(args[1]) if f in ("clamp", "clamp_min") else np.full(n, -np.inf)
    hi = (
        (_scalar_arg(args[2]) if f == "clamp" else _scalar_arg(args[1]))
        if f != "clamp_min"
        else np.full(n, np.inf)
    )
    vals = np.maximum(np.minimum(v.values, hi[None, :]), lo[None, :])
    vals = np.where(np.isnan(v.values), np.nan, vals)
    out = _relabel(v, vals)
    if f == "clamp":
        out.present = out.present & (lo <= hi)[None, :]
    return out


def _sort(v: Value, desc: bool) -> Vector:
    assert isinstance(v, Vector)
    if not len(v) or v.values.shape[1] != 1:
        return v  # ordering only means something for an instant query
    vals = v.values[:, 0]
    key = -vals if desc else vals
    order = np.lexsort((key, np.isnan(vals)))  # NaN last either way
    return v.take(order)


NaturalKey = tuple[tuple[int, int, str], ...]


def _natural_key(s: str) -> NaturalKey:
    # Natural order, as Prometheus' sort_by_label: digit runs compare as numbers ("cpu2" < "cpu10").
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|\D+", s))


def _sort_by_label(args: list[Value], desc: bool) -> Vector:
    v, *names = args
    assert isinstance(v, Vector)
    if not len(v) or v.values.shape[1] != 1:
        return v
    label_names = [_string_arg(nm) for nm in names]

    def key(i: int) -> tuple[tuple[NaturalKey, ...], tuple[NaturalKey, ...]]:
        # The named labels first, then the whole label set to make the order total.
        lb = v.labels[i]
        named = tuple(_natural_key(lb.get(n)) for n in label_names)
        return named, tuple(_natural_key(x) for p in lb for x in p)

    order = sorted(range(len(v)), key=key, reverse=desc)
    return v.take(order)


def _expand(template: str, m: RegexMatch) -> str:
    # Go's Regexp.ExpandString: $1, ${1}, $name, ${name}; $$ is a literal $; unknown -> "".
    def sub(t: re.Match[str]) -> str:
        if t.group(0) == "$$":
            return "$"
        name = t.group(1) or t.group(2)
        try:
            g = m.group(int(name)) if name.isdigit() else m.group(name)
        except (IndexError, KeyError, re.error):
            return ""
        return g or ""

    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", sub, template)


def _label_replace(args: list[Value], lim: QueryLimits) -> Vector:
    v, dst, repl, src, regex = args
    assert isinstance(v, Vector)
    strs = [_string_arg(a) for a in (dst, repl, src, regex)]
    dst_s, repl_s, src_s, regex_s = strs
    try:
        rx = compile_regex(regex_s, dot_nl=True)  # linear time: the values are not ours to trust
    except RegexSyntaxError as exc:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex_s}: {exc}") from None
    if not is_valid_label_name(dst_s) and dst_s != METRIC_NAME:
        raise ExecutionError(f"invalid destination label name in label_replace(): {dst_s}")
    labels = []
    for lb in v.labels:
        lim.tick()
        m = rx.fullmatch(lb.get(src_s))
        if m is None:
            labels.append(lb)
            continue
        d = lb.to_dict()
        d[dst_s] = _expand(repl_s, m)
        labels.append(Labels.from_dict(d))
    return merge_duplicates(Vector(labels, v.values, v.present, v.sample_ts))


def _label_join(args: list[Value], lim: QueryLimits) -> Vector:
    v, dst, sep, *srcs = args
    assert isinstance(v, Vector)
    dst_s, sep_s = _string_arg(dst), _string_arg(sep)
    if not is_valid_label_name(dst_s) and dst_s != METRIC_NAME:
        raise ExecutionError(f"invalid destination label name in label_join(): {dst_s}")
    names = [_string_arg(s) for s in srcs]
    labels = []
    for lb in v.labels:
        lim.tick()
        d = lb.to_dict()
        d[dst_s] = sep_s.join(lb.get(n) for n in names)
        labels.append(Labels.from_dict(d))
    return merge_duplicates(Vector(labels, v.values, v.present, v.sample_ts))


def _absent(v: Value, arg: ast.Expr, steps: I64) -> Vector:
    assert isinstance(v, Vector)
    n = steps.size
    any_present = np.asarray(v.present.any(axis=0)) if len(v) else np.zeros(n, bool)
    labels = Labels()
    if isinstance(arg, ast.VectorSelector):
        labels = selector_labels(arg.matchers)
    return Vector([labels], np.ones((1, n)), ~any_present[None, :])


def _histogram_quantile(q: Value, v: Value, lim: QueryLimits) -> Vector:
    assert isinstance(q, Scalar)
    return _classic_histograms(v, lambda j, up, c: _bucket_quantile(float(q.values[j]), up, c), lim)


def _histogram_quantiles(args: list[Value], lim: QueryLimits) -> Vector:
    """histogram_quantiles(v, "label", q1, q2, ...): one series per quantile, labelled with it."""
    v, label, *qs = args
    assert isinstance(label, String)
    if not is_valid_label_name(label.value):
        raise ExecutionError(f"invalid label name {label.value!r}")
    parts = []
    for q in qs:
        assert isinstance(q, Scalar)
        part = _histogram_quantile(q, v, lim)
        text = format_go_float(float(q.values[0]))
        if text.lstrip("-").isdigit():
            text += ".0"  # OpenMetrics float text, as Prometheus writes these labels: "1.0", "0.25"
        part.labels = [Labels.from_dict({**lb.to_dict(), label.value: text}) for lb in part.labels]
        parts.append(part)
    n = parts[0].values.shape[1]
    return merge_duplicates(
        Vector(
            [lb for p in parts for lb in p.labels],
            np.concatenate([p.values for p in parts]).reshape(-1, n),
            np.concatenate([p.present for p in parts]).reshape(-1, n),
        )
    )


def _classic_histograms(v: Value, per_step: Callable[[int, F64, F64], float], lim: QueryLimits) -> Vector:
    """Group `_bucket` series by their labels without `le` and apply `per_step(step, upper bounds,
    cumulative counts)` to each group at each step where it has buckets."""
    assert isinstance(v, Vector)
    n = v.values.shape[1]
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for i, lb in enumerate(v.labels):
        le = lb.get("le")
        try:
            upper = float(le.replace("Inf", "inf")) if le else math.nan
        except ValueError:
            continue
        if math.isnan(upper):
            continue
        # Grouped with the metric name still on, so two histograms that differ only by name
        # collide after it is dropped (an error, as in Prometheus).
        groups.setdefault(lb.without("le"), []).append((upper, i))
    labels, out, present = [], [], []
    for lb, buckets in groups.items():
        buckets.sort()
        # Bounds spelled differently ("0.1", "0.10") are one bucket: their counts add up.
        uppers, first = np.unique([b for b, _ in buckets], return_index=True)
        rows = [i for _, i in buckets]
        counts = np.add.reduceat(np.where(v.present[rows], v.values[rows], 0.0), first, axis=0)
        pres = np.logical_or.reduceat(v.present[rows], first, axis=0)
        res = np.full(n, np.nan)
        anyp = pres.any(axis=0)
        for j in np.flatnonzero(anyp).tolist():
            lim.tick()
            m = pres[:, j]
            res[j] = per_step(j, uppers[m], counts[m, j])
        labels.append(lb.without(METRIC_NAME))
        out.append(res)
        present.append(anyp)
    if not labels:
        return Vector.empty(n)
    return merge_duplicates(Vector(labels, np.array(out), np.array(present)))


def _bucket_fraction(lower: float, upper: float, uppers: F64, counts: F64) -> float:
    """Estimated share of observations in [lower, upper], interpolating linearly inside buckets."""
    if uppers.size < 1 or not math.isinf(uppers[-1]) or uppers[-1] < 0:
        return math.nan
    counts = np.maximum.accumulate(counts)
    total = float(counts[-1])
    if total == 0 or math.isnan(lower) or math.isnan(upper):
        return math.nan
    if lower >= upper:
        return 0.0

    def rank_of(x: float) -> float:
        rank = 0.0
        for i in range(uppers.size):
            lo_b = float(uppers[i - 1]) if i > 0 else (0.0 if uppers[0] > 0 else -math.inf)
            hi_b = float(uppers[i])
            if lo_b >= x:
                return rank
            if lo_b < x < hi_b:
                if math.isinf(hi_b):
                    return rank  # nothing is known about where in the +Inf bucket x falls
                if math.isinf(lo_b):
                    return float(counts[i])
                return rank + (float(counts[i]) - rank) * (x - lo_b) / (hi_b - lo_b)
            rank = float(counts[i])
        return total

    return (min(rank_of(upper), total) - min(rank_of(lower), total)) / total


def _bucket_quantile(q: float, uppers: F64, counts: F64) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if uppers.size < 2 or not math.isinf(uppers[-1]) or uppers[-1] < 0:
        return math.nan
    # Collapse duplicate bounds and force monotonic counts, as Prometheus does.
    counts = np.maximum.accumulate(counts)
    total = float(counts[-1])
    if total == 0 or math.isnan(total):
        return math.nan
    rank = q * total
    b = int(np.searchsorted(counts[:-1], rank, side="left"))
    if b == uppers.size - 1:
        return float(uppers[-2])
    if b == 0 and uppers[0] <= 0:
        return float(uppers[0])
    start = 0.0 if b == 0 else float(uppers[b - 1])
    end = float(uppers[b])
    count = float(counts[b] - (counts[b - 1] if b > 0 else 0.0))
    rank -= counts[b - 1] if b > 0 else 0.0
    if count == 0:
        return end
    return start + (end - start) * (rank / count)


# -- range-vector functions ---------------------------------------------------------------------


def _wreduce(ufunc: np.ufunc, arr: np.ndarray, m: Matrix, fill: float = 0.0) -> F64:
    """ufunc over each window [lo, hi); empty windows give `fill`."""
    if arr.size == 0:
        return np.full(m.lo.shape, fill)
    padded = np.append(arr, fill)
    idx = np.stack([m.lo.ravel(), m.hi.ravel()], axis=1).ravel()
    r = ufunc.reduceat(padded, idx)[::2].reshape(m.lo.shape)
    return np.where(m.count > 0, r, fill)


def _windows(m: Matrix, lim: QueryLimits) -> tuple[F64, np.ndarray]:
    """All windows as a padded (series, steps, longest) array, NaN beyond each window's end.
    Charged whole (one dense window makes every other as wide) before it is allocated."""
    width = max(int(m.count.max()) if m.count.size else 0, 1)
    lim.charge(m.count.size * width)
    _, vals, mask = _padded(m, slice(None), width)
    return np.where(mask, vals, np.nan), mask


def _out(m: Matrix, values: F64, present: np.ndarray, keep_name: bool = False) -> Vector:
    labels = m.labels if keep_name else [lb.without(METRIC_NAME) for lb in m.labels]
    out = Vector(labels, values, present)
    return out if keep_name else merge_duplicates(out)


def _first(m: Matrix) -> tuple[F64, I64]:
    if not m.vals.size:
        return np.zeros(m.lo.shape), np.zeros(m.lo.shape, np.int64)
    i = np.minimum(m.lo, m.vals.size - 1)
    return m.vals[i], m.ts[i]


def _window_median(w: F64, mask: np.ndarray) -> F64:
    k, n, width = w.shape
    srt = sort_for_quantile(w, mask, axis=-1).reshape(k * n, width).T
    return quantile_sorted(srt, mask.sum(axis=-1).ravel(), np.full(k * n, 0.5)).reshape(k, n)


def _last(m: Matrix) -> tuple[F64, I64]:
    i = np.maximum(m.hi - 1, 0)
    return (
        m.vals[np.minimum(i, max(m.vals.size - 1, 0))] if m.vals.size else np.zeros(m.lo.shape),
        m.ts[np.minimum(i, max(m.ts.size - 1, 0))] if m.ts.size else np.zeros(m.lo.shape, np.int64),
    )


def _series_start_mask(m: Matrix) -> np.ndarray:
    start = np.zeros(m.vals.size, bool)
    start[m.offsets[:-1][np.diff(m.offsets) > 0]] = True
    return start


def _extrapolated(m: Matrix, counter: bool, rate: bool) -> Vector:
    cnt = m.count
    ok = cnt >= 2
    if not m.vals.size:
        return _out(m, np.zeros(cnt.shape), ok)
    lo = np.minimum(m.lo, m.vals.size - 1)
    last_i = np.maximum(m.hi - 1, 0)
    first_v, last_v = m.vals[lo], m.vals[last_i]
    first_t, last_t = m.ts[lo], m.ts[last_i]
    with np.errstate(all="ignore"):
        result = last_v - first_v
        if counter:
            prev = np.append(np.nan, m.vals[:-1])
            resets = (m.vals < prev) & ~_series_start_mask(m)
            cum = np.cumsum(np.where(resets, prev, 0.0))
            result = result + (cum[last_i] - cum[lo])
        range_start = m.end - m.range_ms
        to_start = (first_t - range_start[None, :]) / 1000.0
        to_end = (m.end[None, :] - last_t) / 1000.0
        sampled = (last_t - first_t) / 1000.0
        avg = sampled / (cnt - 1)
        threshold = avg * 1.1
        to_start = np.where(to_start >= threshold, avg / 2, to_start)
        if counter:
            to_zero = np.where((result > 0) & (first_v >= 0), sampled * (first_v / result), np.inf)
            to_start = np.where(to_zero < to_start, to_zero, to_start)
        to_end = np.where(to_end >= threshold, avg / 2, to_end)
        factor = (sampled + to_start + to_end) / sampled
        if rate:
            factor = factor / (m.range_ms / 1000.0)
        result = result * factor
    return _out(m, result, ok)


def _instant_rate(m: Matrix, counter: bool) -> Vector:
    cnt = m.count
    ok = cnt >= 2
    if not m.vals.size:
        return _out(m, np.zeros(cnt.shape), ok)
    i1 = np.maximum(m.hi - 1, 0)
    i0 = np.maximum(m.hi - 2, 0)
    v1, v0 = m.vals[i1], m.vals[i0]
    dt = (m.ts[i1] - m.ts[i0]) / 1000.0
    with np.errstate(all="ignore"):
        if counter:
            d = np.where(v1 < v0, v1, v1 - v0)
            res = d / dt
            ok = ok & (dt != 0)
        else:
            res = v1 - v0
    return _out(m, res, ok)


def _padded(m: Matrix, rows: slice, width: int) -> tuple[I64, F64, np.ndarray]:
    """Timestamps, values and validity of the windows of `rows`, padded to `width` samples."""
    ar = np.arange(width)
    lo, c = m.lo[rows], m.count[rows]
    idx = np.minimum(lo[..., None] + ar, m.ts.size)
    mask = ar < c[..., None]
    return np.append(m.ts, 0)[idx], np.append(m.vals, 0.0)[idx], mask


def _row_chunks(m: Matrix) -> tuple[int, list[slice]]:
    k, n = m.lo.shape
    width = int(m.count.max()) if m.count.size else 0
    step = max(1, 4_000_000 // max(width * n, 1))  # bound the padded arrays' size
    return width, [slice(a, a + step) for a in range(0, k, step)]


def _regression(m: Matrix, intercept_at: I64, lim: QueryLimits) -> tuple[F64, F64]:
    """Least-squares slope (per second) and value at `intercept_at` (series × steps) for every
    window, computed as Prometheus' linearRegression does (x from `intercept_at`, compensated
    sums), so results agree to the last bit, including the exact zeros alerts compare against."""
    k, n = m.lo.shape
    slope = np.zeros((k, n))
    intercept = np.zeros((k, n))
    width, chunks = _row_chunks(m)
    with np.errstate(all="ignore"):
        for rows in chunks:
            ts, ys, mask = _padded(m, rows, width)
            x = (ts - intercept_at[rows][..., None]) / 1e3
            shape = mask.shape[:-1]
            sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (np.zeros(shape) for _ in range(8))
            for i in range(width):
                lim.tick()
                on = mask[..., i]
                xi, yi = x[..., i], ys[..., i]
                for acc, inc in ((0, xi), (1, yi), (2, xi * yi), (3, xi * xi)):
                    tot, comp = ((sx, cx), (sy, cy), (sxy, cxy), (sx2, cx2))[acc]
                    nt, nc = kahan_inc(inc, tot, comp)
                    tot[...] = np.where(on, nt, tot)
                    comp[...] = np.where(on, nc, comp)
            cnt = m.count[rows].astype(np.float64)
            sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
            sl = (sxy - sx * sy / cnt) / (sx2 - sx * sx / cnt)
            ic = sy / cnt - sl * sx / cnt
            y0 = ys[..., 0]
            const = np.where(mask, ys == y0[..., None], True).all(axis=-1)
            # A constant window has slope 0 (an infinite one has none), as in Prometheus.
            sl = np.where(const, np.where(np.isinf(y0), np.nan, 0.0), sl)
            ic = np.where(const, np.where(np.isinf(y0), np.nan, y0), ic)
            slope[rows] = sl
            intercept[rows] = ic
    return slope, intercept


def _welford(m: Matrix, lim: QueryLimits) -> F64:
    """Population variance per window with Prometheus' compensated Welford updates."""
    k, n = m.lo.shape
    out = np.zeros((k, n))
    width, chunks = _row_chunks(m)
    with np.errstate(all="ignore"):
        for rows in chunks:
            _, ys, mask = _padded(m, rows, width)
            shape = mask.shape[:-1]
            count, mean, cmean, aux, caux = (np.zeros(shape) for _ in range(5))
            for i in range(width):
                lim.tick()
                on = mask[..., i]
                f = ys[..., i]
                cnt = np.where(on, count + 1, count)
                delta = f - (mean + cmean)
                nm, ncm = kahan_inc(delta / np.maximum(cnt, 1), mean, cmean)
                mean, cmean = np.where(on, nm, mean), np.where(on, ncm, cmean)
                na, nca = kahan_inc(delta * (f - (mean + cmean)), aux, caux)
                aux, caux = np.where(on, na, aux), np.where(on, nca, caux)
                count = cnt
            out[rows] = (aux + caux) / count
    return out


def _sum_windows(m: Matrix, lim: QueryLimits) -> F64:
    """Plain sums per window, redone with compensation where they show heavy cancellation."""
    plain = _wreduce(np.add, m.vals, m)
    with np.errstate(all="ignore"):
        mag = _wreduce(np.add, np.abs(m.vals), m)
        suspect = (m.count > 1) & np.isfinite(mag) & (np.abs(plain) < mag * 1e-9)
    if not suspect.any():
        return plain
    rows = np.flatnonzero(suspect.any(axis=1))
    sub = Matrix(
        [m.labels[i] for i in rows], m.offsets, m.ts, m.vals, m.lo[rows], m.hi[rows], m.end, m.range_ms
    )
    width, _ = _row_chunks(sub)
    lim.charge(sub.count.size * width)
    _, ys, mask = _padded(sub, slice(None), width)
    exact = kahan_sum(ys, mask)
    plain[rows] = np.where(suspect[rows], exact, plain[rows])
    return plain


def _deriv(m: Matrix, args: list[Value], steps: I64, lim: QueryLimits) -> Vector:
    # Prometheus measures x from each window's first sample here ("near the values in use").
    first = m.ts[np.minimum(m.lo, max(m.ts.size - 1, 0))] if m.ts.size else np.zeros(m.lo.shape, np.int64)
    slope, _ = _regression(m, first, lim)
    return _out(m, slope, m.count >= 2)


def _predict_linear(m: Matrix, args: list[Value], steps: I64, lim: QueryLimits) -> Vector:
    t = args[1]
    assert isinstance(t, Scalar)
    # The intercept is at the evaluation time itself, not the @/offset-shifted window end.
    slope, intercept = _regression(m, np.broadcast_to(steps, m.lo.shape), lim)
    return _out(m, slope * t.values[None, :] + intercept, m.count >= 2)


def _changes(m: Matrix, resets: bool) -> Vector:
    if not m.vals.size:
        return _out(m, np.zeros(m.lo.shape), m.count > 0)
    prev = np.append(np.nan, m.vals[:-1])
    # changes(): NaN to NaN is no change, as in Prometheus.
    ind = m.vals < prev if resets else ~((m.vals == prev) | (np.isnan(m.vals) & np.isnan(prev)))
    ind &= ~_series_start_mask(m)
    cum = np.cumsum(ind)
    last_i = np.maximum(m.hi - 1, 0)
    lo = np.minimum(m.lo, m.vals.size - 1)
    return _out(m, (cum[last_i] - cum[lo]).astype(np.float64), m.count > 0)


def _over_time(kind: str) -> RangeFunction:
    def fn(m: Matrix, args: list[Value], steps: I64, lim: QueryLimits) -> Vector:
        cnt = m.count
        ok = cnt > 0
        with np.errstate(all="ignore"):
            match kind:
                case "sum":
                    r = _sum_windows(m, lim)
                case "avg":
                    r = _sum_windows(m, lim) / cnt
                    bad = np.isinf(r) & ok
                    if bad.any():  # overflowed sum: mean of pre-divided values instead
                        w, _ = _windows(m, lim)
                        alt = np.nansum(w / cnt[..., None], axis=-1)
                        r = np.where(bad, alt, r)
                case "count":
                    r = cnt.astype(np.float64)
                case "min":
                    r = _wreduce(np.fmin, m.vals, m, np.nan)
                case "max":
                    r = _wreduce(np.fmax, m.vals, m, np.nan)
                case "last":
                    r = _last(m)[0]
                    return _out(m, r, ok, keep_name=True)
                case "first":
                    return _out(m, _first(m)[0], ok, keep_name=True)
                case "ts_of_last":
                    r = _last(m)[1] / 1000.0
                case "ts_of_first":
                    r = _first(m)[1] / 1000.0
                case "ts_of_min" | "ts_of_max":
                    w, mask = _windows(m, lim)
                    fill = np.inf if kind == "ts_of_min" else -np.inf
                    key = np.where(mask & ~np.isnan(w), w, fill)
                    pos = key.argmin(axis=-1) if kind == "ts_of_min" else key.argmax(axis=-1)
                    r = np.append(m.ts, 0)[np.minimum(m.lo + pos, m.ts.size)] / 1000.0
                case "mad":  # median absolute deviation from the median
                    w, mask = _windows(m, lim)
                    r = _window_median(np.abs(w - _window_median(w, mask)[..., None]), mask)
                case "present":
                    r = np.ones(cnt.shape)
                case "stddev" | "stdvar":
                    r = _welford(m, lim)
                    if kind == "stddev":
                        r = np.sqrt(r)
                case "quantile":
                    q = args[0]
                    assert isinstance(q, Scalar)
                    w, mask = _windows(m, lim)
                    srt = sort_for_quantile(w, mask, axis=-1)
                    k, n, width = srt.shape
                    flat = srt.reshape(k * n, width).T
                    qq = np.broadcast_to(q.values[None, :], (k, n)).ravel()
                    r = quantile_sorted(flat, cnt.ravel(), qq).reshape(k, n) if width else np.zeros((k, n))
                case _:
                    raise ExecutionError(kind)
        return _out(m, r, ok)

    return fn


def _double_exponential_smoothing(m: Matrix, args: list[Value], lim: QueryLimits) -> Vector:
    """Holt's linear smoothing of each window, following Prometheus' update order."""
    sf_v, tf_v = args[1], args[2]
    assert isinstance(sf_v, Scalar) and isinstance(tf_v, Scalar)
    sf, tf = sf_v.values[None, :], tf_v.values[None, :]
    if ((sf <= 0) | (sf >= 1)).any():
        raise ExecutionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {float(sf.ravel()[0])}")
    if ((tf <= 0) | (tf >= 1)).any():
        raise ExecutionError(f"invalid trend factor. Expected: 0 < tf < 1, got: {float(tf.ravel()[0])}")
    k, n = m.lo.shape
    out = np.zeros((k, n))
    width, chunks = _row_chunks(m)
    with np.errstate(all="ignore"):
        for rows in chunks:
            _, ys, mask = _padded(m, rows, width)
            s1 = ys[..., 0]
            b = ys[..., 1] - ys[..., 0] if width > 1 else np.zeros(s1.shape)
            s0 = np.zeros(s1.shape)
            for i in range(1, width):
                lim.tick()
                on = mask[..., i]
                x = sf * ys[..., i]
                nb = b if i == 1 else tf * (s1 - s0) + (1 - tf) * b
                y = (1 - sf) * (s1 + nb)
                s0, s1, b = np.where(on, s1, s0), np.where(on, x + y, s1), np.where(on, nb, b)
            out[rows] = s1
    return _out(m, out, m.count >= 2)


def _absent_over_time(m: Matrix, args: list[Value], steps: I64, lim: QueryLimits) -> Vector:
    n = m.end.size
    any_present = np.asarray((m.count > 0).any(axis=0)) if m.labels else np.zeros(n, bool)
    labels = m.selector_labels if m.selector_labels is not None else Labels()
    return Vector([labels], np.ones((1, n)), ~any_present[None, :])


_RANGE: dict[str, RangeFunction] = {
    "rate": lambda m, a, s, lim: _extrapolated(m, counter=True, rate=True),
    "increase": lambda m, a, s, lim: _extrapolated(m, counter=True, rate=False),
    "delta": lambda m, a, s, lim: _extrapolated(m, counter=False, rate=False),
    "irate": lambda m, a, s, lim: _instant_rate(m, counter=True),
    "idelta": lambda m, a, s, lim: _instant_rate(m, counter=False),
    "deriv": _deriv,
    "predict_linear": _predict_linear,
    "changes": lambda m, a, s, lim: _changes(m, resets=False),
    "resets": lambda m, a, s, lim: _changes(m, resets=True),
    "absent_over_time": _absent_over_time,
    "double_exponential_smoothing": lambda m, a, s, lim: _double_exponential_smoothing(m, a, lim),
    **{
        f"{k}_over_time": _over_time(k)
        for k in (
            "sum",
            "avg",
            "count",
            "min",
            "max",
            "last",
            "first",
            "present",
            "stddev",
            "stdvar",
            "quantile",
            "mad",
            "ts_of_last",
            "ts_of_first",
            "ts_of_min",
            "ts_of_max",
        )
    },
}

__all__ = ["String", "call"]

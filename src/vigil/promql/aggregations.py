"""Aggregation operators (sum, avg, topk, quantile, count_values, ...) with by/without grouping."""

from __future__ import annotations

import numpy as np

from vigil.model.labels import METRIC_NAME, Labels
from vigil.promql import ast
from vigil.promql.errors import ExecutionError
from vigil.promql.functions_util import format_go_float, kahan_inc, quantile_sorted, sort_for_quantile
from vigil.promql.limits import QueryLimits
from vigil.promql.value import F64, I64, Scalar, String, Value, Vector


def _group_labels(lb: Labels, e: ast.Aggregate) -> Labels:
    if e.without:
        return lb.without(METRIC_NAME, *e.grouping)
    keep = set(e.grouping)
    return Labels(p for p in lb if p[0] in keep)


def _groups(v: Vector, e: ast.Aggregate) -> tuple[list[Labels], I64]:
    index: dict[Labels, int] = {}
    gid = np.array([index.setdefault(_group_labels(lb, e), len(index)) for lb in v.labels], np.int64)
    return list(index), gid


def _param_values(param: Value | None, n: int, name: str) -> F64:
    if not isinstance(param, Scalar):
        raise ExecutionError(f"expected a scalar parameter for {name}")
    return param.values


def evaluate(e: ast.Aggregate, v: Value, param: Value | None, steps: np.ndarray, lim: QueryLimits) -> Vector:
    if not isinstance(v, Vector):
        raise ExecutionError(f"expected an instant vector in aggregation {e.op}")
    n = steps.size
    if e.op in ("topk", "bottomk"):
        return _topk(e, v, _param_values(param, n, e.op))
    if e.op == "limitk":
        return _limitk(e, v, _param_values(param, n, e.op))
    if e.op == "count_values":
        if not isinstance(param, String):
            raise ExecutionError("expected a string parameter for count_values")
        return _count_values(e, v, param.value, n, lim)
    if not len(v):
        return Vector.empty(n)
    groups, gid = _groups(v, e)
    g = len(groups)
    present = np.zeros((g, n), bool)
    np.logical_or.at(present, gid, v.present)
    counts = np.zeros((g, n))
    np.add.at(counts, gid, v.present.astype(np.float64))
    vals = np.where(v.present, v.values, 0.0)
    with np.errstate(all="ignore"):
        match e.op:
            case "sum":
                out = _compensated_sum(v, vals, gid, g)
            case "avg":
                out = _compensated_sum(v, vals, gid, g) / counts
                # Overflowed sums: fall back to a mean of scaled values, as Prometheus does.
                bad = np.isinf(out) & present
                if bad.any():
                    scaled = _group_sum(
                        np.where(v.present, v.values / np.maximum(counts[gid], 1), 0.0), gid, g
                    )
                    out = np.where(bad & np.isfinite(scaled), scaled, out)
            case "count":
                out = counts
            case "group":
                out = np.ones((g, n))
            case "min" | "max":
                fill = np.where(v.present, v.values, np.nan)
                out = np.full((g, n), np.nan)
                (np.fmin if e.op == "min" else np.fmax).at(out, gid, fill)
            case "stddev" | "stdvar":
                # Measured from each group's first value, so identical values give exactly 0.
                first = np.full((g, n), np.nan)
                for r in range(len(v) - 1, -1, -1):  # the last write per group is its first series
                    first[gid[r]] = np.where(v.present[r], v.values[r], first[gid[r]])
                shifted = np.where(v.present, v.values - first[gid], 0.0)
                mean = _group_sum(shifted, gid, g) / counts
                dev = np.where(v.present, shifted - mean[gid], 0.0)
                var = _group_sum(dev * dev, gid, g) / counts
                out = np.sqrt(var) if e.op == "stddev" else var
            case "quantile":
                q = _param_values(param, n, "quantile")
                out = _quantile(v, gid, g, q)
            case _:
                raise ExecutionError(f"aggregation {e.op!r} is not supported")
    return Vector(groups, out, present)


def _compensated_sum(v: Vector, vals: F64, gid: I64, g: int) -> F64:
    """Group sums; where they show heavy cancellation, redone in series order with Prometheus'
    compensated summation (so 1e100 + 1 - 1e100 + ... still adds up)."""
    plain = _group_sum(vals, gid, g)
    with np.errstate(all="ignore"):
        mag = _group_sum(np.abs(vals), gid, g)
        suspect = np.isfinite(mag) & (mag > 0) & (np.abs(plain) < mag * 1e-9)
    for k in np.flatnonzero(suspect.any(axis=1)).tolist():
        total = np.zeros(vals.shape[1])
        comp = np.zeros(vals.shape[1])
        for r in np.flatnonzero(gid == k).tolist():
            nt, nc = kahan_inc(vals[r], total, comp)
            on = v.present[r]
            total, comp = np.where(on, nt, total), np.where(on, nc, comp)
        with np.errstate(all="ignore"):
            exact = np.where(np.isinf(total), total, total + comp)
        plain[k] = np.where(suspect[k], exact, plain[k])
    return plain


def _group_sum(vals: F64, gid: I64, g: int) -> F64:
    out = np.zeros((g, vals.shape[1]))
    np.add.at(out, gid, vals)
    return out


def _quantile(v: Vector, gid: I64, g: int, q: F64) -> F64:
    n = v.values.shape[1]
    out = np.full((g, n), np.nan)
    for k in range(g):
        rows = np.flatnonzero(gid == k)
        cnt = v.present[rows].sum(axis=0)
        out[k] = quantile_sorted(sort_for_quantile(v.values[rows], v.present[rows], axis=0), cnt, q)
    return out


def _topk(e: ast.Aggregate, v: Vector, kparam: F64) -> Vector:
    n = kparam.size
    if np.isnan(kparam).any():
        raise ExecutionError("Parameter value is NaN")
    if not len(v):
        return Vector.empty(n)
    k = np.clip(np.trunc(kparam), 0, 2**31).astype(np.int64)
    _, gid = _groups(v, e)
    present = np.zeros_like(v.present)
    ranks = np.zeros(v.present.shape, np.int64)
    top = e.op == "topk"
    for grp in np.unique(gid).tolist():
        rows = np.flatnonzero(gid == grp)
        vals = v.values[rows]
        # NaN ranks below everything for topk and above everything for bottomk, as in Prometheus.
        key = np.where(np.isnan(vals), -np.inf if top else np.inf, vals)
        key = np.where(v.present[rows], key, np.nan)
        order = np.argsort(-key if top else key, axis=0, kind="stable")  # NaN (absent) sorts last
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(rows.size)[:, None].repeat(n, axis=1), axis=0)
        present[rows] = v.present[rows] & (rank < k[None, :])
        ranks[rows] = rank
    out = Vector(v.labels, v.values, present)
    if n == 1:  # an instant result lists series in rank order, as Prometheus does
        keep = np.flatnonzero(present[:, 0])
        out = out.take(keep[np.lexsort((ranks[keep, 0], gid[keep]))])
    return out


def _count_values(e: ast.Aggregate, v: Vector, label: str, n: int, lim: QueryLimits) -> Vector:
    from vigil.model.labels import is_valid_label_name

    if not is_valid_label_name(label):
        raise ExecutionError(f"invalid label name {label!r}")
    if not len(v):
        return Vector.empty(n)
    glabels = [_group_labels(lb, e) for lb in v.labels]
    out: dict[Labels, F64] = {}
    rows, cols = np.nonzero(v.present)
    text: dict[float, str] = {}
    for done, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        if not done % 1024:
            lim.tick()
        val = float(v.values[r, c])
        s = text.get(val) if val == val else "NaN"
        if s is None:
            s = text[val] = format_go_float(val)
        lb = Labels.from_dict({**glabels[r].to_dict(), label: s})
        arr = out.get(lb)
        if arr is None:
            lim.charge(n)  # every distinct value is a series of its own, as long as the query
            arr = out[lb] = np.zeros(n)
        arr[c] += 1
    labels = list(out)
    values = np.array([out[lb] for lb in labels]).reshape(len(labels), n)
    return Vector(labels, values, values > 0)


def _limitk(e: ast.Aggregate, v: Vector, kparam: F64) -> Vector:
    """Up to k series per group at each step, whichever come first (Prometheus leaves the choice open)."""
    if np.isnan(kparam).any():
        raise ExecutionError("Parameter value is NaN")
    if not len(v):
        return Vector.empty(kparam.size)
    k = np.clip(np.trunc(kparam), 0, 2**31).astype(np.int64)
    _, gid = _groups(v, e)
    present = np.zeros_like(v.present)
    for grp in np.unique(gid).tolist():
        rows = np.flatnonzero(gid == grp)
        taken = np.cumsum(v.present[rows], axis=0)
        present[rows] = v.present[rows] & (taken <= k[None, :])
    return Vector(v.labels, v.values, present)

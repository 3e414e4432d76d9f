"""Numeric helpers shared by functions and aggregations: quantiles and Go float formatting."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from vigil.promql.value import F64, I64


def quantile_sorted(sorted_vals: F64, counts: I64, q: F64) -> F64:
    """Prometheus' quantile (linear interpolation between closest ranks) per column.

    `sorted_vals` is (m, n) sorted along axis 0 with the `counts[j]` real values first."""
    n = counts.size
    out = np.full(n, np.nan)
    ok = counts > 0
    rank = np.nan_to_num(q * (counts - 1), nan=0.0, posinf=0.0, neginf=0.0)
    lower = np.clip(np.floor(rank), 0, np.maximum(counts - 1, 0)).astype(np.int64)
    upper = np.clip(lower + 1, 0, np.maximum(counts - 1, 0)).astype(np.int64)
    weight = rank - np.floor(rank)
    cols = np.arange(n)
    lv = sorted_vals[lower, cols] if sorted_vals.size else np.zeros(n)
    uv = sorted_vals[upper, cols] if sorted_vals.size else np.zeros(n)
    with np.errstate(all="ignore"):
        res = lv * (1 - weight) + uv * weight
        res = np.where(weight == 0, lv, res)
    out[ok] = res[ok]
    out[ok & (q < 0)] = -np.inf
    out[ok & (q > 1)] = np.inf
    out[ok & np.isnan(q)] = np.nan
    return out


def format_go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest digits that round-trip, never an exponent."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    return format(Decimal(repr(v)).normalize(), "f")


def kahan_inc(inc: F64, total: F64, c: F64) -> tuple[F64, F64]:
    """One step of Neumaier-compensated summation, elementwise (Prometheus' kahanSumInc)."""
    with np.errstate(all="ignore"):
        t = total + inc
        c = np.where(
            np.isinf(t),
            0.0,
            c + np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total),
        )
    return t, c


def kahan_sum(w: F64, mask: np.ndarray) -> F64:
    """Compensated sum over the last axis of a padded array (entries where ~mask are skipped)."""
    total = np.zeros(w.shape[:-1])
    c = np.zeros(w.shape[:-1])
    for i in range(w.shape[-1]):
        m = mask[..., i]
        nt, nc = kahan_inc(np.where(m, w[..., i], 0.0), total, c)
        total, c = np.where(m, nt, total), np.where(m, nc, c)
    with np.errstate(all="ignore"):
        return np.where(np.isinf(total), total, total + c)


def sort_for_quantile(vals: F64, present: np.ndarray, axis: int) -> F64:
    """Sort along `axis` as Prometheus' quantile does: NaN counts as the smallest value (so a
    quantile next to it interpolates to NaN), and absent entries go last."""
    key = np.where(present, np.where(np.isnan(vals), -np.inf, vals), np.inf)
    order = np.lexsort((~np.isnan(vals), key), axis=axis)  # NaN before -Inf on equal keys
    return np.take_along_axis(np.where(present, vals, np.inf), order, axis=axis)

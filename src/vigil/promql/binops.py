"""Binary operators: arithmetic, comparison (filter or bool) and set operators, with vector matching."""

from __future__ import annotations

import numpy as np

from vigil.model.labels import METRIC_NAME, Labels
from vigil.promql import ast
from vigil.promql.errors import ExecutionError
from vigil.promql.limits import QueryLimits
from vigil.promql.value import F64, Bool, Scalar, Value, Vector, merge_duplicates

ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}

Signature = tuple[tuple[str, str], ...]
"""The (name, value) pairs two series must share to match."""


def apply(op: str, a: F64, b: F64) -> F64:
    with np.errstate(all="ignore"):
        match op:
            case "+":
                return a + b
            case "-":
                return a - b
            case "*":
                return a * b
            case "/":
                return a / b
            case "%":
                return np.fmod(a, b)
            case "^":
                return np.power(a, b)
            case "atan2":
                return np.arctan2(a, b)
            case "==":
                # The ufuncs, not ==/!=: numpy's stubs type ndarray.__eq__/__ne__ as returning Any.
                return np.equal(a, b).astype(np.float64)
            case "!=":
                return np.not_equal(a, b).astype(np.float64)
            case ">":
                return (a > b).astype(np.float64)
            case "<":
                return (a < b).astype(np.float64)
            case ">=":
                return (a >= b).astype(np.float64)
            case "<=":
                return (a <= b).astype(np.float64)
    raise ExecutionError(f"unknown binary operator {op!r}")


def negate(v: Value) -> Value:
    if isinstance(v, Scalar):
        return Scalar(-v.values)
    if isinstance(v, Vector):
        return merge_duplicates(Vector([lb.without(METRIC_NAME) for lb in v.labels], -v.values, v.present))
    raise ExecutionError("unary minus is only defined on scalars and instant vectors")


def evaluate(e: ast.Binary, lhs: Value, rhs: Value, steps: np.ndarray, lim: QueryLimits) -> Value:
    op = e.op
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        return Scalar(apply(op, lhs.values, rhs.values))
    n = steps.size
    if op in ast.SET_OPS:
        assert isinstance(lhs, Vector) and isinstance(rhs, Vector)
        return _set_op(op, lhs, rhs, e.matching, n)
    comparison = op in ast.COMPARISON_OPS
    drop_name = not comparison or e.return_bool
    if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
        return _vector_scalar(op, lhs, rhs.values[None, :], drop_name, e.return_bool, scalar_right=True)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        return _vector_scalar(op, rhs, lhs.values[None, :], drop_name, e.return_bool, scalar_right=False)
    assert isinstance(lhs, Vector) and isinstance(rhs, Vector)
    return _vector_vector(e, lhs, rhs, drop_name, n, lim)


def _vector_scalar(
    op: str, v: Vector, s: F64, drop_name: bool, return_bool: bool, scalar_right: bool
) -> Vector:
    a, b = (v.values, s) if scalar_right else (s, v.values)
    res = apply(op, a, b)
    present = v.present
    values = res
    if op in ast.COMPARISON_OPS and not return_bool:
        present = present & (res == 1.0)
        values = v.values  # a filter keeps the vector's own value
    labels = [lb.without(METRIC_NAME) for lb in v.labels] if drop_name else v.labels
    out = Vector(labels, np.broadcast_to(values, v.values.shape).copy(), present.copy())
    return merge_duplicates(out) if drop_name else out


def signature(lb: Labels, matching: ast.VectorMatching | None) -> Signature:
    if matching is not None and matching.on:
        keep = set(matching.labels)
        return tuple(p for p in lb if p[0] in keep)
    drop = {METRIC_NAME, *(matching.labels if matching else ())}
    return tuple(p for p in lb if p[0] not in drop)


def _sig_presence(
    v: Vector, matching: ast.VectorMatching | None
) -> tuple[list[Signature], dict[Signature, int], Bool]:
    """Per distinct signature: whether any series with it is present at each step."""
    sigs = [signature(lb, matching) for lb in v.labels]
    index: dict[Signature, int] = {}
    gid = np.array([index.setdefault(s, len(index)) for s in sigs], np.int64)
    pres = np.zeros((len(index), v.present.shape[1]), bool)
    if len(v):
        np.logical_or.at(pres, gid, v.present)
    return sigs, index, pres


def _set_op(op: str, lhs: Vector, rhs: Vector, matching: ast.VectorMatching | None, n: int) -> Vector:
    lsigs = [signature(lb, matching) for lb in lhs.labels]
    _, rindex, rpres = _sig_presence(rhs, matching)
    match_rows = np.zeros((len(lhs), n), bool)
    for i, s in enumerate(lsigs):
        g = rindex.get(s)
        if g is not None:
            match_rows[i] = rpres[g]
    if op == "and":
        return Vector(lhs.labels, lhs.values, lhs.present & match_rows, lhs.sample_ts)
    if op == "unless":
        return Vector(lhs.labels, lhs.values, lhs.present & ~match_rows, lhs.sample_ts)
    # or: every lhs series, plus rhs series whose signature no lhs series has at that step.
    _, lindex, lpres = _sig_presence(lhs, matching)
    rsigs = [signature(lb, matching) for lb in rhs.labels]
    add = rhs.present.copy()
    for j, s in enumerate(rsigs):
        g = lindex.get(s)
        if g is not None:
            add[j] &= ~lpres[g]
    labels = lhs.labels + rhs.labels
    values = np.concatenate([lhs.values, rhs.values]) if len(rhs) else lhs.values
    present = np.concatenate([lhs.present, add]) if len(rhs) else lhs.present
    if not len(lhs):
        values, present = rhs.values, add
    return merge_duplicates(Vector(labels, values.reshape(len(labels), n), present.reshape(len(labels), n)))


def _result_labels(many: Labels, one: Labels, matching: ast.VectorMatching, drop_name: bool) -> Labels:
    lb = many.without(METRIC_NAME) if drop_name else many
    if matching.card == "one-to-one":
        if matching.on:
            keep = set(matching.labels)
            lb = Labels(p for p in lb if p[0] in keep)
        else:
            lb = lb.without(*matching.labels)
    if matching.include:
        d = lb.to_dict()
        od = one.to_dict()
        for name in matching.include:
            if name in od:
                d[name] = od[name]
            else:
                d.pop(name, None)
        lb = Labels.from_dict(d)
    return lb


def _vector_vector(
    e: ast.Binary, lhs: Vector, rhs: Vector, drop_name: bool, n: int, lim: QueryLimits
) -> Vector:
    matching = e.matching or ast.VectorMatching("one-to-one", False, (), ())
    if matching.card == "many-to-many":
        raise ExecutionError("many-to-many only allowed for set operators")
    swapped = matching.card == "one-to-many"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    # After the swap, the left fill stands in for the "many" side and the right one for the "one" side.
    fill_many, fill_one = matching.fill_left, matching.fill_right
    one_sigs = [signature(lb, matching) for lb in one.labels]
    one_index: dict[Signature, list[int]] = {}
    for j, s in enumerate(one_sigs):
        one_index.setdefault(s, []).append(j)
    # The "one" side must be unique per signature at every step.
    for s, rows in one_index.items():
        if len(rows) > 1:
            both = one.present[rows].sum(axis=0) > 1
            if both.any():
                dup = [one.labels[r] for r in rows if one.present[r, int(np.argmax(both))]][:2]
                raise _duplicate_error(s, "left" if swapped else "right", dup)
    many_sigs = [signature(lb, matching) for lb in many.labels]
    # Matching pairs can be many x one (one-side series with one signature, present at different
    # steps): charged before they are listed.
    lim.charge(sum(len(one_index.get(sig, ())) for sig in many_sigs) * n)
    lim.tick()
    pairs_m, pairs_o = [], []
    for i, sig in enumerate(many_sigs):
        for j in one_index.get(sig, ()):
            pairs_m.append(i)
            pairs_o.append(j)
    pm, po = np.array(pairs_m, np.int64), np.array(pairs_o, np.int64)
    present = many.present[pm] & one.present[po]
    if matching.card == "one-to-one":
        # The left side must be unique per signature too, where a match exists.
        seen: dict[Signature, list[int]] = {}
        for r, i in enumerate(pairs_m):
            seen.setdefault(many_sigs[i], []).append(r)
        for s, rows in seen.items():
            if len(rows) > 1:
                both = present[rows].sum(axis=0) > 1
                if both.any():
                    j = int(np.argmax(both))
                    dup = [many.labels[pairs_m[r]] for r in rows if present[r, j]][:2]
                    raise _duplicate_error(s, "left", dup)
    mv, ov = many.values[pm], one.values[po]
    labels = [
        _result_labels(many.labels[i], one.labels[j], matching, drop_name)
        for i, j in zip(pairs_m, pairs_o, strict=True)
    ]
    parts = [(mv, ov, present)]
    if fill_one is not None and len(many):
        # Many-side series with no match at a step meet the fill value instead.
        matched = np.zeros(many.present.shape, bool)
        if pm.size:
            np.logical_or.at(matched, pm, one.present[po])
        parts.append((many.values, np.full(many.values.shape, fill_one), many.present & ~matched))
        labels += [_result_labels(lb, Labels(), matching, drop_name) for lb in many.labels]
    if fill_many is not None and len(one):
        # One-side series no many-side series matches at a step: labelled by their signature.
        by_sig: dict[Signature, Bool] = {}
        for i, sig in enumerate(many_sigs):
            by_sig[sig] = by_sig.get(sig, np.zeros(n, bool)) | many.present[i]
        unmatched = np.array(
            [one.present[j] & ~by_sig.get(s, np.zeros(n, bool)) for j, s in enumerate(one_sigs)]
        )
        parts.append((np.full(one.values.shape, fill_many), one.values, unmatched.reshape(one.present.shape)))
        labels += [Labels(s) for s in one_sigs]
    mv = np.concatenate([p[0] for p in parts]).reshape(-1, n)
    ov = np.concatenate([p[1] for p in parts]).reshape(-1, n)
    present = np.concatenate([p[2] for p in parts]).reshape(-1, n)
    if not labels:
        return Vector.empty(n)
    lv, rv = (ov, mv) if swapped else (mv, ov)
    res = apply(e.op, lv, rv)
    values = res
    if e.op in ast.COMPARISON_OPS and not e.return_bool:
        present = present & (res == 1.0)
        values = lv
    return merge_duplicates(Vector(labels, values, present).compact())


def _fmt_sig(sig: Signature) -> str:
    return "{" + ", ".join(f'{n}="{v}"' for n, v in sig) + "}"


def _duplicate_error(sig: Signature, side: str, dup: list[Labels]) -> ExecutionError:
    shown = ", ".join(_fmt_sig(tuple(lb)) for lb in sorted(dup))
    return ExecutionError(
        f"found duplicate series for the match group {_fmt_sig(sig)} on the {side} hand-side of the "
        f"operation: [{shown}];many-to-many matching not allowed: matching labels must be unique on one side"
    )

"""The in-memory inverted index of the embedded store: label name and value -> series refs.

Selecting series for label matchers is set algebra over sorted int64 ref arrays, with Prometheus'
semantics: a matcher that matches the empty string also matches series without the label.

Postings grow by appending to `array('q')` buffers, which is cheap per label; they become numpy
arrays only when a query needs them. Long ones are cached, and a cache entry stays valid as long as
its buffer has the same length: refs only grow, and the rare in-place changes (delete, out-of-order
add) drop the entries they touch.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Collection

import numpy as np
from numpy.typing import NDArray

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher, MatchType

_Refs = NDArray[np.int64]
# A value's postings: a bare int while a single series has it (high-cardinality labels such as
# `instance` or `id` mostly do, and an int is a third of the size of an array), then an array.
_Posting = int | array

_CACHE_MIN = 64  # shorter postings are cheaper to convert again than to keep twice in memory


def _readonly(a: _Refs) -> _Refs:
    a.flags.writeable = False
    return a


_EMPTY: _Refs = _readonly(np.empty(0, np.int64))


def _to_np(buf: array) -> _Refs:
    # frombuffer exports buf only until the copy is taken; a live export would make append fail.
    return np.frombuffer(buf, np.int64).copy() if len(buf) else np.empty(0, np.int64)


def _isin(values: _Refs, sorted_set: _Refs) -> NDArray[np.bool_]:
    """Mask of `values` found in `sorted_set` (sorted, unique)."""
    n, m = len(values), len(sorted_set)
    if n == 0 or m == 0:
        return np.zeros(n, bool)
    lo, hi = int(sorted_set[0]), int(sorted_set[-1])
    span = hi - lo + 1
    if span <= 16 * (n + m):
        # Refs are dense small integers, so a byte table is several times faster than bisection.
        table = np.zeros(span, bool)
        table[sorted_set - lo] = True
        inside = (values >= lo) & (values <= hi)
        out = np.zeros(n, bool)
        out[inside] = table[values[inside] - lo]
        return out
    idx = np.searchsorted(sorted_set, values)
    np.minimum(idx, m - 1, out=idx)
    return sorted_set[idx] == values


def _intersect(a: _Refs, b: _Refs) -> _Refs:
    if len(a) > len(b):
        a, b = b, a
    return a[_isin(a, b)] if len(a) else _EMPTY


def _difference(a: _Refs, b: _Refs) -> _Refs:
    if not len(a) or not len(b):
        return a
    return a[~_isin(a, b)]


def _matcher_cost(m: Matcher) -> int:
    """Order in which select evaluates matchers: selective lookups first, so that an empty result
    can skip scanning label values with regexes."""
    if m.type is MatchType.EQ and m.value:
        return 0
    if m.pattern_set is not None and not m.negated:
        return 1
    if m.pattern_set is not None or m.matches_all_non_empty:
        return 2
    return 3


class MemPostings:
    """Label postings of the series in memory, for selecting series by matchers.

    Refs are int64 series ids that the caller assigns in increasing order and adds once each
    (adding an already present ref again is a no-op). Returned arrays are sorted and unique; they
    may be shared with the index's caches, so they are read-only.

    Not thread-safe: the caller serialises all calls (reads included, since they fill caches).
    """

    def __init__(self) -> None:
        # name -> value -> refs. Two plain dict levels and nothing else per label keep `add` at
        # a few dict operations per label.
        self._names: dict[str, dict[str, _Posting]] = {}
        self._all = array("q")
        self._all_np: _Refs = _EMPTY
        self._last = -1
        self._gen = 0  # bumped by every change; dates the per-name caches below
        self._np: dict[tuple[str, str], _Refs] = {}  # long postings, valid while the length holds
        # Refs of every series having a name, for `!=""`, `=~".+"`, `=""` and complements. Built
        # on demand (O(values)) rather than kept up to date, which would double the cost of add.
        self._has: dict[str, tuple[int, _Refs]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, ref: int, labels: Labels) -> None:
        if ref <= self._last:
            self._add_out_of_order(ref, labels)
            return
        self._last = ref
        self._gen += 1
        self._all.append(ref)
        names = self._names
        for name, value in labels:
            vals = names.get(name)
            if vals is None:
                vals = names[name] = {}
            p = vals.get(value)
            if p is None:
                vals[value] = ref
            elif p.__class__ is int:
                vals[value] = array("q", (p, ref))  # type: ignore[arg-type]
            else:
                p.append(ref)  # type: ignore[union-attr]

    def _add_out_of_order(self, ref: int, labels: Labels) -> None:
        # Only replays and callers bending the contract get here; O(postings) inserts are fine.
        i = bisect.bisect_left(self._all, ref)
        if i < len(self._all) and self._all[i] == ref:
            return
        self._gen += 1
        self._all.insert(i, ref)
        self._all_np = _EMPTY
        for name, value in labels:
            vals = self._names.setdefault(name, {})
            p = vals.get(value)
            if p is None:
                vals[value] = ref
            elif isinstance(p, int):
                vals[value] = array("q", sorted((p, ref)))
            else:
                p.insert(bisect.bisect_left(p, ref), ref)
                self._np.pop((name, value), None)

    def delete(self, refs: Collection[int]) -> None:
        """Forget series. Walks every posting list: O(index)."""
        dead = np.unique(np.fromiter(refs, np.int64, len(refs)))
        if not len(dead):
            return
        self._gen += 1
        dead_set = set(dead.tolist())
        self._all = _without(self._all, dead, dead_set)
        self._all_np = _EMPTY
        for name, vals in list(self._names.items()):
            for value, p in list(vals.items()):
                if isinstance(p, int):
                    if p in dead_set:
                        del vals[value]
                    continue
                q = _without(p, dead, dead_set)
                if q is not p:
                    self._np.pop((name, value), None)
                    if q:
                        vals[value] = q
                    else:
                        del vals[value]
            if not vals:
                del self._names[name]
                self._has.pop(name, None)

    def all_refs(self) -> _Refs:
        if len(self._all_np) != len(self._all):
            self._all_np = _readonly(_to_np(self._all))
        return self._all_np

    def _postings(self, name: str, p: _Posting) -> _Refs:
        if p.__class__ is int:
            return np.array((p,), np.int64)
        assert isinstance(p, array)
        if len(p) < _CACHE_MIN:
            return _to_np(p)
        key = (name, "")  # placeholder, replaced below; keeps the hot path free of tuple building
        del key
        raise NotImplementedError
def _is_sorted_unique(a: _Refs) -> bool:
    return len(a) < 2 or bool((a[1:] > a[:-1]).all())


def _without(buf: array, dead: _Refs, dead_set: set[int]) -> array:
    """`buf` minus the dead refs; `buf` itself when it has none of them."""
    if not buf or buf[-1] < dead[0] or buf[0] > dead[-1]:
        return buf
    if len(buf) <= 32:
        kept = [r for r in buf if r not in dead_set]
        return buf if len(kept) == len(buf) else array("q", kept)
    view = np.frombuffer(buf, np.int64)
    mask = _isin(view, dead)
    if not mask.any():
        return buf
    return array("q", view[~mask].tobytes())

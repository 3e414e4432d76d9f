"""The in-memory inverted index of the embedded store: label name and value -> series refs.

Selecting series for label matchers is set algebra over sorted int64 ref arrays, with Prometheus'
semantics: a matcher that matches the empty string also matches series without the label.

Postings grow by appending to `array('q')` buffers, which is cheap per label and invisible to the
garbage collector; they become numpy arrays only when a query needs them. Long ones are cached, and
a cache entry stays valid while its buffer keeps the same length: refs are only appended, and the
rare in-place changes (delete, out-of-order add) drop the entries they touch.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Collection, Sequence
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher, MatchType

_Refs = NDArray[np.int64]
# A value's postings: a bare int while a single series has it (high-cardinality labels such as
# `instance` or `pod` mostly do, and an int is a third of the size of an array), then an array.
_Posting: TypeAlias = "int | array[int]"

_CACHE_MIN = 64  # shorter postings are cheaper to convert again than to keep twice in memory


def _readonly(a: _Refs) -> _Refs:
    a.flags.writeable = False
    return a


_EMPTY: _Refs = _readonly(np.empty(0, np.int64))


def _to_np(buf: array[int]) -> _Refs:
    # frombuffer exports buf only until the copy is taken; a live export would make append fail.
    return np.frombuffer(buf, np.int64).copy() if len(buf) else np.empty(0, np.int64)


def _isin(values: _Refs, sorted_set: _Refs) -> NDArray[np.bool_]:
    """Mask of the `values` that are in `sorted_set` (sorted, unique)."""
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
    found: NDArray[np.bool_] = sorted_set[idx] == values
    return found


def _intersect(a: _Refs, b: _Refs) -> _Refs:
    if len(a) > len(b):
        a, b = b, a
    return a[_isin(a, b)] if len(a) else _EMPTY


def _difference(a: _Refs, b: _Refs) -> _Refs:
    if not len(a) or not len(b):
        return a
    return a[~_isin(a, b)]


def _is_sorted_unique(a: _Refs) -> bool:
    return len(a) < 2 or bool((a[1:] > a[:-1]).all())


def _without(buf: array[int], dead: _Refs, dead_set: set[int]) -> array[int]:
    """`buf` minus the dead refs; `buf` itself when it holds none of them."""
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


def _merge(postings: list[_Posting]) -> _Refs:
    """Sorted union of postings of one label name: disjoint, since a series has one value per
    name, so concatenating and sorting suffices."""
    ints = [p for p in postings if p.__class__ is int]
    out = np.array(ints, np.int64)
    if len(ints) < len(postings):
        # bytes.join reads the arrays' buffers directly: one C-level copy however many there are.
        # `__class__ is` (a hot path; cheaper than isinstance) does not narrow for mypy: these are arrays.
        bufs = b"".join([p for p in postings if p.__class__ is not int])  # type: ignore[misc]
        out = np.concatenate((out, np.frombuffer(bufs, np.int64)))
    # Timsort: the pieces are sorted runs, and singletons come in insertion (= ref) order.
    out.sort(kind="stable")
    return out


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
        self._gen = 0  # bumped by every change; dates `_has`
        self._np: dict[tuple[str, str], _Refs] = {}  # long postings; valid while the length holds
        # Refs of every series having a name, for `!=""`, `=~".+"`, `=""` and complements. Built
        # on demand (O(values)) rather than kept up to date, which would double the cost of add.
        self._has: dict[str, tuple[int, _Refs]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, ref: int, labels: Labels) -> None:
        """Index a new series. A few dict operations and an append per label."""
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
                vals[value] = array("q", (p, ref))
            else:
                p.append(ref)  # type: ignore[union-attr]  # an array: `__class__ is int` does not narrow

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
        """Refs of every series, sorted."""
        if len(self._all_np) != len(self._all):
            self._all_np = _readonly(_to_np(self._all))
        return self._all_np

    # -- postings as numpy ---------------------------------------------------------------------

    def _postings(self, name: str, value: str, p: _Posting) -> _Refs:
        if isinstance(p, int):
            return np.array((p,), np.int64)
        if len(p) < _CACHE_MIN:
            return _to_np(p)
        key = (name, value)
        cached = self._np.get(key)
        if cached is None or len(cached) != len(p):
            cached = self._np[key] = _readonly(_to_np(p))
        return cached

    def _union(self, name: str, vals: dict[str, _Posting], values: Sequence[str]) -> _Refs:
        """Sorted refs having any of `values` (all present in `vals`)."""
        if len(values) == 1:
            return self._postings(name, values[0], vals[values[0]])
        return _merge([vals[v] for v in values])

    def _with_label(self, name: str, vals: dict[str, _Posting]) -> _Refs:
        gen, refs = self._has.get(name, (-1, _EMPTY))
        if gen != self._gen:
            refs = _readonly(_merge(list(vals.values())))
            self._has[name] = (self._gen, refs)
        return refs

    # -- queries -------------------------------------------------------------------------------

    def select(self, matchers: Sequence[Matcher]) -> _Refs:
        """Refs of the series matching all matchers (all series when there are none)."""
        result: _Refs | None = None
        exclude: list[_Refs] = []
        for m in sorted(matchers, key=_matcher_cost):
            keep, refs = self._for_matcher(m)
            if refs is None:
                continue
            if keep:
                result = refs if result is None else _intersect(result, refs)
                if not len(result):
                    return _EMPTY
            else:
                exclude.append(refs)
        if result is None:
            result = self.all_refs()
        for refs in exclude:
            result = _difference(result, refs)
            if not len(result):
                return _EMPTY
        return _readonly(result)

    def _for_matcher(self, m: Matcher) -> tuple[bool, _Refs | None]:
        """The refs a matcher keeps, (True, refs), or removes, (False, refs); (True, None) when
        it keeps every series."""
        vals = self._names.get(m.name)
        if vals is None:  # no series has the label: all match, or none
            return (True, None) if m.matches_empty else (True, _EMPTY)
        if m.matches_all_non_empty:
            return (True, None) if m.matches_empty else (True, self._with_label(m.name, vals))

        # The label's series split into those whose value matches and the rest; describe the
        # matching ones through whichever side has fewer values.
        chosen: list[str]
        if m.pattern_set is not None:  # look the few values up rather than scan them all
            chosen = [v for v in m.pattern_set if v in vals]
            chosen_match = not m.negated
        else:
            matching = m.filter(vals)
            chosen_match = 2 * len(matching) <= len(vals)
            if chosen_match:
                chosen = matching
            else:
                matched = set(matching)
                chosen = [v for v in vals if v not in matched]
        if not chosen and not chosen_match:  # every value matches
            return (True, None) if m.matches_empty else (True, self._with_label(m.name, vals))
        union = self._union(m.name, vals, chosen)
        if m.matches_empty:
            # Series without the label match too: remove those whose value does not.
            return False, _difference(self._with_label(m.name, vals), union) if chosen_match else union
        return True, union if chosen_match else _difference(self._with_label(m.name, vals), union)

    def label_names(self, refs: _Refs | None = None) -> list[str]:
        """Sorted names of the labels that any of `refs` (None: any series) has."""
        if refs is None:
            return sorted(self._names)
        if not len(refs):
            return []
        return sorted(
            name for name, vals in self._names.items() if _isin(refs, self._with_label(name, vals)).any()
        )

    def label_values(self, name: str, refs: _Refs | None = None) -> list[str]:
        """Sorted values of label `name` among `refs` (None: all series)."""
        vals = self._names.get(name)
        if vals is None:
            return []
        if refs is None:
            return sorted(vals)
        if not len(refs):
            return []
        values = list(vals)
        flat, owners = _flatten(vals)
        wanted = refs if _is_sorted_unique(refs) else np.unique(refs)
        hits = np.unique(owners[_isin(flat, wanted)])
        return sorted(values[i] for i in hits.tolist())

    def count_by(self, names: Sequence[str]) -> dict[tuple[str, ...], int]:
        """How many series have each combination of values of `names` ("" for a label a series
        lacks). O(series) in numpy plus a step per distinct value, so cheap enough at start-up."""
        refs = self.all_refs()
        codes = np.zeros(len(refs), np.int64)
        tables: list[list[str]] = []
        if math.prod(1 + len(self._names.get(name, {})) for name in names) >= 1 << 62:
            raise ValueError(f"too many combinations of {', '.join(names)} to count")
        for name in names:
            vals = self._names.get(name, {})
            table = ["", *vals]
            ids = np.zeros(len(refs), np.int64)  # 0: the series lacks the label
            if vals:
                flat, owners = _flatten(vals)
                ids[np.searchsorted(refs, flat)] = owners + 1
            codes = codes * len(table) + ids
            tables.append(table)
        out: dict[tuple[str, ...], int] = {}
        found, counts = np.unique(codes, return_counts=True)
        for code, n in zip(found.tolist(), counts.tolist(), strict=True):
            key: list[str] = []
            for table in reversed(tables):
                code, i = divmod(code, len(table))
                key.append(table[i])
            out[tuple(reversed(key))] = n
        return out


def _flatten(vals: dict[str, _Posting]) -> tuple[_Refs, _Refs]:
    """All postings of one label laid end to end, and the number of the value each ref has there
    (vectorised: a numpy call per value would cost far more)."""
    ints: list[int] = []
    int_owners: list[int] = []
    bufs: list[array[int]] = []
    buf_owners: list[int] = []
    lengths: list[int] = []
    for i, p in enumerate(vals.values()):
        if isinstance(p, int):
            ints.append(p)
            int_owners.append(i)
        else:
            bufs.append(p)
            buf_owners.append(i)
            lengths.append(len(p))
    flat = np.concatenate((np.array(ints, np.int64), np.frombuffer(b"".join(bufs), np.int64)))
    owners = np.concatenate(
        (np.array(int_owners, np.int64), np.repeat(np.array(buf_owners, np.int64), lengths))
    )
    return flat, owners

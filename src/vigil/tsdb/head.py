"""The head: recent samples in memory, appended in vectorised batches.

Samples live in a pool of fixed-size chunks (rows of two 2-D numpy arrays); each series appends to
its current chunk and takes a new one when it is full, so an append costs a handful of numpy calls
per request whatever its size. Samples that are not newer than their series' last sample
(out-of-order or duplicate) go to a side list; reads return in-order data first and side data after
it, in arrival order, so "last written wins" when the caller de-duplicates.

Not thread-safe: the DB serialises access.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vigil.tsdb.samples import Samples

CHUNK_SIZE = 128
_NO_CHUNK = -1
_MIN_TS = np.iinfo(np.int64).min


class Head:
    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._k = chunk_size
        self._ts = np.empty((64, chunk_size), np.int64)
        self._vals = np.empty((64, chunk_size), np.float64)
        self._owner = np.empty(64, np.int64)
        self._chunk_fill = np.zeros(64, np.int64)
        self._nchunks = 0
        self._cur = np.full(1024, _NO_CHUNK, np.int64)
        self._fill = np.zeros(1024, np.int64)
        self._last = np.full(1024, _MIN_TS, np.int64)
        self._ooo: list[Samples] = []
        self.num_samples = 0
        self.mint = np.iinfo(np.int64).max
        self.maxt = _MIN_TS

    @property
    def empty(self) -> bool:
        return self.num_samples == 0

    def num_series(self) -> int:
        return int(np.count_nonzero(self._last != _MIN_TS))

    def memory_bytes(self) -> int:
        return int(self._ts.nbytes + self._vals.nbytes + sum(s.nbytes for s in self._ooo))

    def append(self, s: Samples) -> None:
        if len(s) == 0:
            return
        self._grow_series(int(s.refs.max()) + 1)
        order = np.argsort(s.refs, kind="stable")
        r, t, v = s.refs[order], s.timestamps[order], s.values[order]
        starts = np.empty(r.size, bool)
        starts[0] = True
        np.not_equal(r[1:], r[:-1], out=starts[1:])
        prev = np.empty_like(t)
        prev[1:] = t[:-1]
        prev[starts] = self._last[r[starts]]
        ok = t > prev
        if not ok.all():
            ok = self._in_order_mask(r, t, starts)
            late = ~ok
            self._ooo.append(Samples(r[late], t[late], v[late]))
            r, t, v = r[ok], t[ok], v[ok]
            starts = np.empty(r.size, bool)
            if r.size:
                starts[0] = True
                np.not_equal(r[1:], r[:-1], out=starts[1:])
        self.num_samples += int(s.refs.size)
        self.mint = min(self.mint, int(s.timestamps.min()))
        self.maxt = max(self.maxt, int(s.timestamps.max()))
        if r.size:
            self._append_in_order(r, t, v, starts)

    def _in_order_mask(
        self, r: npt.NDArray[np.int64], t: npt.NDArray[np.int64], starts: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        # Rare path (late or repeated samples): a running maximum per series, in Python.
        ok = np.empty(r.size, bool)
        bounds = np.append(np.flatnonzero(starts), r.size)
        last = self._last
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            hi = int(last[r[a]])
            for i in range(a, b):
                ti = int(t[i])
                ok[i] = ti > hi
                if ti > hi:
                    hi = ti
        return ok

    def _append_in_order(
        self,
        r: npt.NDArray[np.int64],
        t: npt.NDArray[np.int64],
        v: npt.NDArray[np.float64],
        starts: npt.NDArray[np.bool_],
    ) -> None:
        k = self._k
        first = np.flatnonzero(starts)
        group = np.cumsum(starts) - 1
        rank = np.arange(r.size) - first[group]
        grefs = r[first]
        cur = self._cur[grefs]
        # A series without a current chunk behaves as if its chunk were full.
        fill = np.where(cur == _NO_CHUNK, k, self._fill[grefs])
        pos = fill[group] + rank
        chunk_off = pos // k
        slot = pos % k
        last_idx = np.append(first[1:], r.size) - 1
        new_per_group = chunk_off[last_idx]
        total_new = int(new_per_group.sum())
        base = self._nchunks + np.cumsum(new_per_group) - new_per_group
        self._grow_chunks(self._nchunks + total_new)
        cid = np.where(chunk_off == 0, cur[group], base[group] + chunk_off - 1)
        if total_new:
            new_ids = np.arange(self._nchunks, self._nchunks + total_new)
            self._owner[new_ids] = np.repeat(grefs, new_per_group)
            self._chunk_fill[new_ids] = 0
            self._nchunks += total_new
        self._ts[cid, slot] = t
        self._vals[cid, slot] = v
        np.maximum.at(self._chunk_fill, cid, slot + 1)
        self._cur[grefs] = cid[last_idx]
        self._fill[grefs] = slot[last_idx] + 1
        self._last[grefs] = t[last_idx]

    def select(self, refs: npt.NDArray[np.int64] | None, mint: int, maxt: int) -> Samples:
        """Samples of `refs` (sorted; None = all) in [mint, maxt]: in-order data sorted by (ref, ts),
        then out-of-order data in arrival order."""
        n = self._nchunks
        cids = np.arange(n)
        if refs is not None:
            cids = cids[np.isin(self._owner[:n], refs)]
        fill = self._chunk_fill[cids]
        cmin = self._ts[cids, 0]
        cmax = self._ts[cids, fill - 1]
        cids = cids[(cmax >= mint) & (cmin <= maxt)]
        # Chunk ids grow with time within a series, so (owner, id) is (ref, ts) order.
        cids = cids[np.lexsort((cids, self._owner[cids]))]
        fill = self._chunk_fill[cids]
        valid = np.arange(self._k) < fill[:, None]
        t = self._ts[cids][valid]
        v = self._vals[cids][valid]
        r = np.repeat(self._owner[cids], fill)
        keep = (t >= mint) & (t <= maxt)
        parts = [Samples(r[keep], t[keep], v[keep])]
        for o in self._ooo:
            m = (o.timestamps >= mint) & (o.timestamps <= maxt)
            if refs is not None:
                m &= np.isin(o.refs, refs)
            parts.append(Samples(o.refs[m], o.timestamps[m], o.values[m]))
        return Samples.concat(parts)

    def series_refs(self) -> npt.NDArray[np.int64]:
        """Sorted refs of every series with samples in the head."""
        parts = [self._owner[: self._nchunks]] + [o.refs for o in self._ooo]
        return np.unique(np.concatenate(parts))

    def _grow_series(self, n: int) -> None:
        size = self._cur.size
        if n <= size:
            return
        new = max(n, size * 2)
        self._cur = np.concatenate([self._cur, np.full(new - size, _NO_CHUNK, np.int64)])
        self._fill = np.concatenate([self._fill, np.zeros(new - size, np.int64)])
        self._last = np.concatenate([self._last, np.full(new - size, _MIN_TS, np.int64)])

    def _grow_chunks(self, n: int) -> None:
        cap = self._owner.size
        if n <= cap:
            return
        new = max(n, cap * 2)
        ts = np.empty((new, self._k), np.int64)
        vals = np.empty((new, self._k), np.float64)
        ts[:cap] = self._ts
        vals[:cap] = self._vals
        self._ts, self._vals = ts, vals
        owner = np.empty(new, np.int64)
        owner[:cap] = self._owner
        self._owner = owner
        cfill = np.zeros(new, np.int64)
        cfill[:cap] = self._chunk_fill
        self._chunk_fill = cfill

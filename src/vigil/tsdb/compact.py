"""Which blocks to merge next: a pure planning function over block time ranges.

Head flushes produce blocks with arbitrary time ranges (level 0). For each level range (2h, 12h,
...) in turn, a complete aligned window that is overlapped by more than one block of a lower level,
or by one that crosses its edge, is merged: those blocks are rewritten as one block per aligned
window, at this level. A block is never a candidate at its own level again, so planning terminates,
and small levels go first so larger windows are built from aligned pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigil.tsdb.block import BlockMeta

HOUR_MS = 3_600_000
DEFAULT_RANGES = (2 * HOUR_MS, 12 * HOUR_MS, 48 * HOUR_MS)


@dataclass(frozen=True)
class Plan:
    inputs: list[int]  # indexes into the metas given to `plan`
    range_ms: int  # outputs are split on multiples of this


def block_ranges(retention_ms: int) -> tuple[int, ...]:
    """Level ranges, the largest kept to at most a tenth of retention (as Prometheus does)."""
    cap = max(retention_ms // 10, DEFAULT_RANGES[0])
    return tuple(r for r in DEFAULT_RANGES if r <= cap) or DEFAULT_RANGES[:1]


def plan(metas: Sequence[BlockMeta], ranges: Sequence[int], until: int) -> Plan | None:
    """The next merge, or None. Only windows ending at or before `until` are touched.

    Work is bounded by the number of blocks, never by the time they span: the only windows looked
    at are those where a lower-level block starts. That finds the same first window as looking at
    every window: in the first window that needs a merge, either a block starts, or every block
    there started earlier and crosses into it, and so also crossed out of the earlier window it
    started in, which would then have needed a merge first.
    """
    for r in ranges:
        windows = sorted({m.mint // r for m in metas if m.level < r})
        for w in windows:
            start, end = w * r, (w + 1) * r
            if end > until:
                break
            inside = [i for i, m in enumerate(metas) if m.level < r and m.mint < end and m.maxt >= start]
            crosses = any(metas[i].mint < start or metas[i].maxt >= end for i in inside)
            if len(inside) > 1 or crosses:
                return Plan(inside, r)
    return None

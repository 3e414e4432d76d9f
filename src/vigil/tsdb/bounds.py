"""Which timestamps a write may carry: bounds kept per tenant and measured against the wall clock.

The newest sample time used to be one number for the whole store, and it drove both the
out-of-order window and retention. So one writer's future-dated sample made everybody else's writes
"too old" and pushed their stored data out of retention. Here every bound is either the clock or a
tenant's own data, never another tenant's:

- more than `future_grace_ms` ahead of the clock: refused (`too_far_in_future`);
- older than `now - retention_ms`: refused (`too_old`), because retention would delete it anyway;
- older than `min(tenant's newest sample, now) - out_of_order_window_ms`: refused (`too_old`). The
  window trails the tenant's own newest sample, so an agent catching up after an outage keeps its
  backlog. It never runs ahead of the clock, so a sample inside the grace period does not move it.

Together these keep every stored timestamp within [now - retention, now + grace], so no later step
(head span, compaction windows) sees the int64 extremes. A tenant is the value of the tenant label
of a series ("" for series without it). The DB serialises access; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.model.labels import Labels

_NONE = np.iinfo(np.int64).min  # "no sample seen yet"
_I64_MIN, _I64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _clamp(t: int) -> int:
    return min(max(t, _I64_MIN), _I64_MAX)


@dataclass(frozen=True)
class Limits:
    retention_ms: int
    out_of_order_window_ms: int
    future_grace_ms: int


@dataclass(frozen=True)
class Verdict:
    """Per sample of an append: refused as too old, refused as too far in the future."""

    too_old: npt.NDArray[np.bool_]
    too_new: npt.NDArray[np.bool_]


class TenantTimes:
    """The tenant of each series ref and the newest accepted sample time of each tenant."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._ids: dict[str, int] = {}
        self._of = np.zeros(1024, np.int32)  # ref -> tenant id
        self._newest = np.full(8, _NONE, np.int64)  # tenant id -> newest sample time

    def _id(self, tenant: str) -> int:
        tid = self._ids.get(tenant)
        if tid is None:
            tid = self._ids[tenant] = len(self._ids)
            if tid >= self._newest.size:
                self._newest = np.concatenate([self._newest, np.full(self._newest.size, _NONE, np.int64)])
        return tid

    def add_series(self, ref: int, labels: Labels) -> None:
        if ref >= self._of.size:
            self._of = np.concatenate(
                [self._of, np.zeros(max(ref + 1, self._of.size * 2) - self._of.size, np.int32)]
            )
        self._of[ref] = self._id(labels.get(self._label))

    def add_many(self, refs: Iterable[int], labels: Iterable[Labels]) -> None:
        for ref, lb in zip(refs, labels, strict=True):
            self.add_series(ref, lb)

    def check(
        self, refs: npt.NDArray[np.int64], timestamps: npt.NDArray[np.int64], now: int, lim: Limits
    ) -> Verdict:
        """Which samples the bounds refuse (refs must be known series)."""
        retention_floor = _clamp(now - lim.retention_ms)
        newest = self._newest[: len(self._ids)]
        seen = newest != _NONE
        # Per tenant, as a small array, then one gather per sample. A tenant without samples yet
        # has no window: only retention bounds its first write.
        base = np.where(seen, np.minimum(newest, now), now)  # never the int64 sentinel: no overflow
        floors = np.where(
            seen, np.maximum(base - lim.out_of_order_window_ms, retention_floor), retention_floor
        )
        floor = floors[self._of[refs]]
        return Verdict(timestamps < floor, timestamps > _clamp(now + lim.future_grace_ms))

    def observe(self, refs: npt.NDArray[np.int64], timestamps: npt.NDArray[np.int64]) -> None:
        """Raise the newest sample time of the tenants of accepted samples."""
        if refs.size == 0:
            return
        tids = self._of[refs]
        first = int(tids[0])
        if (tids == first).all():  # the usual case: a request comes from one tenant
            self._newest[first] = max(int(self._newest[first]), int(timestamps.max()))
        else:
            np.maximum.at(self._newest, tids, timestamps)

    def newest(self) -> dict[str, int]:
        """Newest sample time by tenant name, for the tenants that have one (to persist)."""
        return {name: int(self._newest[tid]) for name, tid in self._ids.items() if self._newest[tid] != _NONE}

    def restore(self, newest: Mapping[str, int]) -> None:
        """Raise newest times to persisted values (of an earlier run)."""
        for name, t in newest.items():
            tid = self._id(name)
            self._newest[tid] = max(int(self._newest[tid]), t)

    def names(self) -> list[str]:
        return list(self._ids)

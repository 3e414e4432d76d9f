"""A settable clock for DBs under test (`DB(..., now_ms=clock)`): tests move time, never wait for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    now: int = 0  # ms since the epoch

    def __call__(self) -> int:
        return self.now

"""Numbers and times as the pages show them (the chart script formats the same units the same way)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["fmt_time", "fmt_value", "iso_time"]

_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _short(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.3g}"


def _bytes(v: float) -> str:
    a, i = abs(v), 0
    while a >= 1024 and i < len(_IEC) - 1:
        a /= 1024
        v /= 1024
        i += 1
    return (f"{v:.0f}" if i == 0 else f"{v:.3g}") + " " + _IEC[i]


def fmt_value(v: float | None, unit: str) -> str:
    """`v` in `unit` (percentunit: 0..1 as %, percent, bytes, Bps, s, ops, short); "–" for none."""
    if v is None:
        return "–"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    if unit == "percent":
        return f"{v:.1f}%"
    if unit == "bytes":
        return _bytes(v)
    if unit == "Bps":
        return _bytes(v) + "/s"
    if unit == "s":
        return f"{v:.3g} s" if abs(v) < 60 else f"{v / 60:.3g} min" if abs(v) < 3600 else f"{v / 3600:.3g} h"
    if unit == "ops":
        return _short(v) + " ops/s"
    return _short(v)


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fmt_time(ms: int) -> str:
    """UTC text; the shell script rewrites it in the viewer's zone when `tz=local`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

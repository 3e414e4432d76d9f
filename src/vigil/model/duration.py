"""Prometheus durations and byte sizes: parsing and formatting.

Durations are integer milliseconds everywhere in Vigil, the resolution of Prometheus timestamps.
The syntax is Prometheus' `model.ParseDuration`: one or more `<int><unit>` terms with units in the
order y w d h m s ms (`1h30m`, `15d`, `500ms`, `0s`; a bare `0` is also accepted). A year is 365
days. There is no sign: callers that allow negative durations (PromQL offsets) handle the sign.

Sizes are integer bytes: `512MiB`, `1GiB` (binary units), `16MB` (decimal units), `1024B` or a bare
`1024`. Errors are `ValueError`s phrased "expected ..., got ..." so they can be shown to users as-is.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
YEAR_MS = 365 * DAY_MS

# Timestamps and durations are stored as int64 milliseconds, so nothing larger is representable.
MAX_MS = 2**63 - 1
MAX_BYTES = 2**63 - 1

_DURATION_UNITS: tuple[tuple[str, int], ...] = (
    ("y", YEAR_MS),
    ("w", WEEK_MS),
    ("d", DAY_MS),
    ("h", HOUR_MS),
    ("m", MINUTE_MS),
    ("s", SECOND_MS),
    ("ms", 1),
)
# Each unit at most once, in descending order; the regex backtracking tells "m" from "ms".
_DURATION_RE = re.compile("".join(f"(?:([0-9]+){unit})?" for unit, _ in _DURATION_UNITS))

_SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)")


def _show(value: object) -> str:
    """Render a bad input for an error message: strings quoted, anything else by its repr."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    return repr(value)


def _duration_error(value: object, why: str = "") -> ValueError:
    return ValueError(f"expected a duration like 15d, got {_show(value)}{why}")


def parse_duration(s: str) -> int:
    """Parse a Prometheus duration (`1h30m`, `15d`, `500ms`, `0s`) into milliseconds."""
    if not isinstance(s, str) or s == "":
        raise _duration_error(s)
    if s == "0":  # Prometheus special-cases a unitless zero
        return 0
    m = _DURATION_RE.fullmatch(s)
    if m is None:
        raise _duration_error(s)
    total = 0
    for digits, (_, unit_ms) in zip(m.groups(), _DURATION_UNITS, strict=True):
        if digits is None:
            continue
        # Checked before int() so absurdly long digit strings cannot hit int's digit limit.
        if len(digits.lstrip("0")) > 19:
            raise _duration_error(s, " (out of range)")
        total += int(digits) * unit_ms
    if total > MAX_MS:
        raise _duration_error(s, " (out of range)")
    return total


def format_duration(ms: int) -> str:
    """Format milliseconds the way Prometheus does: `1h30m`, `15d`, `2w`, `0s`.

    Years and weeks are used only when they divide the duration exactly (`90d`, not `12w6d`).
    Negative durations get a leading `-`, which `parse_duration` does not accept.
    """
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"format_duration expects int milliseconds, got {type(ms).__name__}")
    if ms == 0:
        return "0s"
    if ms < 0:
        return "-" + format_duration(-ms)
    parts: list[str] = []
    for unit, unit_ms in _DURATION_UNITS:
        if unit in ("y", "w") and ms % unit_ms != 0:
            continue
        count, ms = divmod(ms, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _size_error(value: object, why: str = "") -> ValueError:
    return ValueError(f"expected a size like 512MiB, got {_show(value)}{why}")


def parse_size(s: str | int) -> int:
    """Parse a byte size (`512MiB`, `16MB`, `1GiB`, `1024`, or an int) into bytes.

    KiB/MiB/GiB/TiB/PiB are powers of 1024, KB/MB/GB/TB/PB powers of 1000. Fractions are
    accepted when they come to a whole number of bytes (`1.5KiB`, not `1.5B`).
    """
    if isinstance(s, bool):
        raise _size_error(s)
    if isinstance(s, int):
        if s < 0:
            raise _size_error(s)
        if s > MAX_BYTES:
            raise _size_error(s, " (out of range)")
        return s
    if not isinstance(s, str):
        raise _size_error(s)
    m = _SIZE_RE.fullmatch(s)
    if m is None:
        raise _size_error(s)
    number, unit = m.groups()
    factor = _SIZE_UNITS.get(unit or "B")
    if factor is None:
        raise _size_error(s, " (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    if len(number.lstrip("0").split(".")[0]) > 19:
        raise _size_error(s, " (out of range)")
    value = Fraction(number) * factor
    if value.denominator != 1:
        raise _size_error(s, " (not a whole number of bytes)")
    if value > MAX_BYTES:
        raise _size_error(s, " (out of range)")
    return int(value)


def format_size(n: int) -> str:
    """Format bytes with the exact unit giving the smallest number: `512MiB`, `16MB`, `100B`."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"format_size expects int bytes, got {type(n).__name__}")
    if n < 0:
        return "-" + format_size(-n)
    best = (n, "B")
    for unit, factor in _SIZE_UNITS.items():
        if n and n % factor == 0 and n // factor < best[0]:
            best = (n // factor, unit)
    return f"{best[0]}{best[1]}"

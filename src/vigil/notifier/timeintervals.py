"""Alertmanager time intervals (`time_intervals`, `mute_time_intervals`): parsing and the "is this
instant inside" test, as pure functions with the instant passed in.

Semantics (Alertmanager's timeinterval package, HEAD): an interval entry holds optional lists of
`times` (`HH:MM` ranges, end exclusive, `24:00` allowed), `weekdays` (`monday:friday`),
`days_of_month` (`1:5`, negative counts from the month's end: `-1` is the last day), `months`
(`january:march` or numbers), `years` (`2024:2026`) and a `location` (IANA zone, default UTC). An
instant is inside when every list that is present has a range containing it, in the location's
local time; a route's named interval is active when any of its entries contains the instant.
Names and ranges are case-insensitive.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.config.validate import KeyedError


class _Range(Protocol):
    @property
    def start_time(self) -> str: ...
    @property
    def end_time(self) -> str: ...


class TimeSpecConfig(Protocol):
    """What `compile_spec` reads: `vigil.notifier.config.TimeSpecConfig` (not imported: that module
    imports this one to validate)."""

    @property
    def times(self) -> Iterable[_Range] | None: ...
    @property
    def weekdays(self) -> Iterable[str] | None: ...
    @property
    def days_of_month(self) -> Iterable[str] | None: ...
    @property
    def months(self) -> Iterable[str] | None: ...
    @property
    def years(self) -> Iterable[str] | None: ...
    @property
    def location(self) -> str | None: ...


__all__ = ["TimeInterval", "active_intervals", "compile_spec", "contains"]

_WEEKDAYS = {
    d: i for i, d in enumerate(("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"))
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_TIME_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class IntervalError(KeyedError):
    """A bad time interval entry; `subkey` names the offending key (`weekdays[1]`)."""


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """One compiled entry. None means the list was absent (no constraint); ranges are inclusive,
    except times: minutes of the day, [start, end)."""

    times: tuple[tuple[int, int], ...] | None = None
    weekdays: tuple[tuple[int, int], ...] | None = None  # 0 = Sunday
    days_of_month: tuple[tuple[int, int], ...] | None = None
    months: tuple[tuple[int, int], ...] | None = None
    years: tuple[tuple[int, int], ...] | None = None
    location: tzinfo | None = None


def _range(text: str, member: object, key: str) -> tuple[int, int]:
    assert callable(member)
    low = text.lower()
    parts = low.split(":") if ":" in low else [low, low]
    if len(parts) != 2:
        raise IntervalError(key, f"expected a range like a:b, got {_q(text)}")
    return member(parts[0], key), member(parts[1], key)


def _int(text: str, key: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise IntervalError(key, f"expected a number, got {_q(text)}")
    return int(text)


def _weekday(text: str, key: str) -> int:
    if text not in _WEEKDAYS:
        raise IntervalError(key, f"expected a weekday like monday, got {_q(text)}")
    return _WEEKDAYS[text]


def _month(text: str, key: str) -> int:
    if text in _MONTHS:
        return _MONTHS[text]
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise IntervalError(key, f"expected a month like january or 1, got {_q(text)}")
    return int(text)


def _minutes(text: str, key: str) -> int:
    if _TIME_RE.fullmatch(text) is None:
        raise IntervalError(key, f"expected a time like 09:30 (00:00 to 24:00), got {_q(text)}")
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def compile_spec(spec: TimeSpecConfig) -> TimeInterval:
    """Check and compile one entry as Alertmanager validates it. Raises IntervalError."""
    times = None
    if spec.times is not None:
        times_list = []
        for i, tr in enumerate(spec.times):
            key = f"times[{i}]"
            if not tr.start_time or not tr.end_time:
                raise IntervalError(key, "expected both start_time and end_time, got only one")
            start = _minutes(tr.start_time, f"{key}.start_time")
            end = _minutes(tr.end_time, f"{key}.end_time")
            if start >= end:
                raise IntervalError(
                    key, f"expected start_time before end_time, got {tr.start_time}-{tr.end_time}"
                )
            times_list.append((start, end))
        times = tuple(times_list)
    weekdays = None
    if spec.weekdays is not None:
        wl = []
        for i, text in enumerate(spec.weekdays):
            b, e = _range(text, _weekday, f"weekdays[{i}]")
            if b > e:
                raise IntervalError(
                    f"weekdays[{i}]", f"expected the start day before the end day, got {_q(text)}"
                )
            wl.append((b, e))
        weekdays = tuple(wl)
    days = None
    if spec.days_of_month is not None:
        dl = []
        for i, text in enumerate(spec.days_of_month):
            key = f"days_of_month[{i}]"
            b, e = _range(text, _int, key)
            for d in (b, e):
                if d == 0 or not -31 <= d <= 31:
                    raise IntervalError(key, f"expected days from 1 to 31 or -31 to -1, got {d}")
            if b < 0 and e > 0:
                raise IntervalError(
                    key, f"expected a negative end day with a negative start day, got {_q(text)}"
                )
            if (28 + b if b < 0 else b) > (28 + e if e < 0 else e):
                raise IntervalError(key, f"expected the start day before the end day, got {_q(text)}")
            dl.append((b, e))
        days = tuple(dl)
    months = None
    if spec.months is not None:
        ml = []
        for i, text in enumerate(spec.months):
            b, e = _range(text, _month, f"months[{i}]")
            if b > e:
                raise IntervalError(
                    f"months[{i}]", f"expected the start month before the end month, got {_q(text)}"
                )
            ml.append((b, e))
        months = tuple(ml)
    years = None
    if spec.years is not None:
        yl = []
        for i, text in enumerate(spec.years):
            b, e = _range(text, _int, f"years[{i}]")
            if b > e:
                raise IntervalError(
                    f"years[{i}]", f"expected the start year before the end year, got {_q(text)}"
                )
            yl.append((b, e))
        years = tuple(yl)
    location: tzinfo | None = None
    if spec.location is not None:
        location = _zone(spec.location)
    return TimeInterval(times, weekdays, days, months, years, location)


def _zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise IntervalError(
            "location", f"expected an IANA time zone like Europe/Berlin, got {_q(name)}"
        ) from None


def contains(ti: TimeInterval, t: datetime) -> bool:
    """Whether the aware instant `t` is inside the entry (in its location's local time)."""
    if t.tzinfo is None:
        raise ValueError("expected an aware datetime")
    local = t.astimezone(ti.location or UTC)
    if ti.times is not None:
        minute = local.hour * 60 + local.minute
        if not any(s <= minute < e for s, e in ti.times):
            return False
    if ti.days_of_month is not None:
        dim = calendar.monthrange(local.year, local.month)[1]
        ok = False
        for b, e in ti.days_of_month:
            begin = dim + b + 1 if b < 0 else b
            end = dim + e + 1 if e < 0 else e
            if begin > dim:
                continue
            begin = max(-dim, min(begin, dim))
            end = max(-dim, min(end, dim))
            if begin <= local.day <= end:
                ok = True
                break
        if not ok:
            return False
    if ti.months is not None and not any(b <= local.month <= e for b, e in ti.months):
        return False
    if ti.weekdays is not None:
        wd = (local.weekday() + 1) % 7  # Python: Monday=0; Go: Sunday=0
        if not any(b <= wd <= e for b, e in ti.weekdays):
            return False
    return ti.years is None or any(b <= local.year <= e for b, e in ti.years)


def active_intervals(
    names: Iterable[str], intervals: Mapping[str, Iterable[TimeInterval]], now: datetime
) -> list[str]:
    """The names among `names` with an entry containing `now` (in order, each once per entry that
    contains it, as Alertmanager lists them). Unknown names raise KeyError: the config checks them."""
    out = []
    for name in names:
        for ti in intervals[name]:
            if contains(ti, now):
                out.append(name)
    return out

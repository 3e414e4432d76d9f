"""Go's time.Time and time.Duration as template values: printing, `Format` layouts, arithmetic.

Prometheus' `toTime`/`humanizeTimestamp` and Alertmanager's `date`/`tz`/`since` hand Go time values
to templates, which print them with Go's `String()` (`1970-01-01 00:00:01 +0000 UTC`, `1h2m3.5s`)
or call methods on them (`.Format "2006-01-02"`, `.Unix`, `.UTC`). Times are integer nanoseconds
since the epoch plus a zone (UTC, or an IANA zone from the system's tz database).

Not covered: the monotonic clock reading Go prints for `time.Now()` (`m=+0.001`), layouts with
fractional-second `,999` variants beyond `.000`/`.999`/`,000`, years outside 1..9999.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.template.funcs import FuncError

__all__ = ["GoDuration", "GoTime", "load_location", "parse_go_time"]

_UTC = _dt.UTC
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def load_location(name: str) -> _dt.tzinfo:
    """time.LoadLocation: "" and "UTC" are UTC, "Local" is refused (no host state), else IANA."""
    if name in ("", "UTC"):
        return _UTC
    if name == "Local":
        raise FuncError("unknown time zone Local")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FuncError(f"unknown time zone {name}") from None


@dataclass(frozen=True, slots=True)
class GoDuration:
    """time.Duration: integer nanoseconds."""

    ns: int
    go_type_name = "time.Duration"

    def String(self) -> str:
        return duration_string(self.ns)

    def Seconds(self) -> float:
        return self.ns / 1e9

    def Minutes(self) -> float:
        return self.ns / 6e10

    def Hours(self) -> float:
        return self.ns / 3.6e12

    def Milliseconds(self) -> int:
        return int(self.ns / 1e6)

    def __str__(self) -> str:
        return self.String()


def _frac(v: int, prec: int) -> tuple[str, int]:
    digits = f"{v % 10**prec:0{prec}d}".rstrip("0")
    return ("." + digits if digits else ""), v // 10**prec


def duration_string(ns: int) -> str:
    """Go's Duration.String()."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u < 1_000:
            s = f"{u}ns"
        elif u < 1_000_000:
            f, w = _frac(u, 3)
            s = f"{w}{f}µs"
        else:
            f, w = _frac(u, 6)
            s = f"{w}{f}ms"
    else:
        f, secs = _frac(u, 9)
        s = f"{secs % 60}{f}s"
        mins = secs // 60
        if mins:
            s = f"{mins % 60}m" + s
            hours = mins // 60
            if hours:
                s = f"{hours}h" + s
    return ("-" if neg else "") + s


@dataclass(frozen=True, slots=True)
class GoTime:
    """time.Time: nanoseconds since the Unix epoch in a zone."""

    ns: int
    tz: _dt.tzinfo = _UTC
    go_type_name = "time.Time"

    def _datetime(self) -> _dt.datetime:
        try:
            base = _dt.datetime.fromtimestamp(self.ns // 1_000_000_000, self.tz)
        except (OverflowError, OSError, ValueError):
            raise FuncError("time out of the supported range (years 1..9999)") from None
        return base

    def String(self) -> str:
        return self.Format("2006-01-02 15:04:05.999999999 -0700 MST")

    def __str__(self) -> str:
        return self.String()

    def Format(self, layout: str) -> str:
        return go_format(self._datetime(), self.ns % 1_000_000_000, layout)

    def Unix(self) -> int:
        return self.ns // 1_000_000_000

    def UnixMilli(self) -> int:
        return self.ns // 1_000_000

    def UnixNano(self) -> int:
        return self.ns

    def UTC(self) -> GoTime:
        return GoTime(self.ns, _UTC)

    def In(self, loc: _dt.tzinfo) -> GoTime:
        return GoTime(self.ns, loc)

    def Sub(self, other: GoTime) -> GoDuration:
        return GoDuration(self.ns - other.ns)

    def Year(self) -> int:
        return self._datetime().year

    def IsZero(self) -> bool:
        return self.ns == _ZERO_NS


# Go's zero Time is January 1, year 1, 00:00:00 UTC.
_ZERO_NS = -62135596800 * 1_000_000_000


def _zone(d: _dt.datetime) -> tuple[str, int]:
    off = d.utcoffset() or _dt.timedelta(0)
    secs = int(off.total_seconds())
    name = d.tzname() or ""
    if d.tzinfo is _UTC:
        name = "UTC"
    return name, secs


# Layout chunks, longest first where one is a prefix of another.
_CHUNKS = [
    "January", "Monday", "Jan", "Mon", "MST",
    "2006", "002", "01", "02", "06", "_2", "__2", "15", "03", "04", "05",
    "-07:00:00", "-070000", "-07:00", "-0700", "-07",
    "Z07:00:00", "Z070000", "Z07:00", "Z0700", "Z07",
    "PM", "pm", "1", "2", "3", "4", "5",
]  # fmt: skip


def go_format(d: _dt.datetime, frac_ns: int, layout: str) -> str:
    """Format `d` (with `frac_ns` nanoseconds) by a Go reference-time layout."""
    out: list[str] = []
    i = 0
    n = len(layout)
    while i < n:
        # Fractional seconds: .000 / .999 / ,000 after a seconds field or anywhere as in Go.
        if layout[i] in ".," and i + 1 < n and layout[i + 1] in "09":
            j = i + 1
            while j < n and layout[j] == layout[i + 1]:
                j += 1
            if j >= n or not layout[j].isdigit():
                digits = j - i - 1
                s = f"{frac_ns:09d}"[:digits]
                if layout[i + 1] == "9":
                    s = s.rstrip("0")
                    out.append(("." + s) if s else "")
                else:
                    out.append(layout[i] + s)
                i = j
                continue
        for c in _CHUNKS:
            if layout.startswith(c, i):
                # Go's "Jan"/"Mon" need a non-lowercase letter after them to count.
                if c in ("Jan", "Mon") and layout[i + 3 : i + 4].islower():
                    continue
                out.append(_chunk(d, c))
                i += len(c)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def _chunk(d: _dt.datetime, c: str) -> str:
    name, off = _zone(d)
    if c == "January":
        return _MONTHS[d.month - 1]
    if c == "Jan":
        return _MONTHS[d.month - 1][:3]
    if c == "Monday":
        return _DAYS[d.weekday()]
    if c == "Mon":
        return _DAYS[d.weekday()][:3]
    if c == "MST":
        if name and not name.startswith(("+", "-")):
            return name
        h, m = divmod(abs(off) // 60, 60)
        return ("-" if off < 0 else "+") + f"{h:02d}" + (f"{m:02d}" if m else "")
    if c == "2006":
        return f"{d.year:04d}"
    if c == "06":
        return f"{d.year % 100:02d}"
    if c == "01":
        return f"{d.month:02d}"
    if c == "1":
        return str(d.month)
    if c == "02":
        return f"{d.day:02d}"
    if c == "2":
        return str(d.day)
    if c == "_2":
        return f"{d.day:2d}"
    if c == "002":
        return f"{d.timetuple().tm_yday:03d}"
    if c == "__2":
        return f"{d.timetuple().tm_yday:3d}"
    if c == "15":
        return f"{d.hour:02d}"
    if c in ("03", "3"):
        h = d.hour % 12 or 12
        return f"{h:02d}" if c == "03" else str(h)
    if c in ("04", "4"):
        return f"{d.minute:02d}" if c == "04" else str(d.minute)
    if c in ("05", "5"):
        return f"{d.second:02d}" if c == "05" else str(d.second)
    if c == "PM":
        return "PM" if d.hour >= 12 else "AM"
    if c == "pm":
        return "pm" if d.hour >= 12 else "am"
    # Zone offsets.
    if c.startswith("Z") and off == 0:
        return "Z"
    sign = "-" if off < 0 else "+"
    a = abs(off)
    hh, mm, ss = a // 3600, a // 60 % 60, a % 60
    body = c.lstrip("Z-")
    if body == "07":
        return f"{sign}{hh:02d}"
    if body == "0700":
        return f"{sign}{hh:02d}{mm:02d}"
    if body == "07:00":
        return f"{sign}{hh:02d}:{mm:02d}"
    if body == "070000":
        return f"{sign}{hh:02d}{mm:02d}{ss:02d}"
    return f"{sign}{hh:02d}:{mm:02d}:{ss:02d}"


def parse_go_time(layout: str, value: str) -> GoTime:
    """time.ParseInLocation(layout, value, UTC) for the common numeric layouts (no month names)."""
    pattern: list[str] = []
    fields: list[str] = []
    i = 0
    n = len(layout)
    simple = {"2006": r"(\d{4})", "01": r"(\d{2})", "02": r"(\d{2})", "15": r"(\d{2})", "04": r"(\d{2})",
              "05": r"(\d{2})", "1": r"(\d{1,2})", "2": r"(\d{1,2})", "Z07:00": r"(Z|[+-]\d{2}:\d{2})",
              "-07:00": r"([+-]\d{2}:\d{2})", "-0700": r"([+-]\d{4})", "MST": r"([A-Z]{3,4})"}  # fmt: skip
    import re

    while i < n:
        for c in ("Z07:00", "-07:00", "-0700", "2006", "MST", "01", "02", "15", "04", "05", "1", "2"):
            if layout.startswith(c, i):
                pattern.append(simple[c])
                fields.append(c)
                i += len(c)
                break
        else:
            if layout[i] == "." and layout[i + 1 : i + 2] in ("0", "9"):
                j = i + 1
                while j < n and layout[j] in "09":
                    j += 1
                pattern.append(r"(?:\.(\d+))?")
                fields.append("frac")
                i = j
                continue
            pattern.append(re.escape(layout[i]))
            i += 1
    m = re.fullmatch("".join(pattern), value)
    if m is None:
        raise FuncError(f'parsing time "{value}" as "{layout}": cannot parse')
    vals = dict(zip(fields, m.groups(), strict=True))
    try:
        year = int(vals.get("2006") or 1)
        month = int(vals.get("01") or vals.get("1") or 1)
        day = int(vals.get("02") or vals.get("2") or 1)
        d = _dt.datetime(year, month, day, int(vals.get("15") or 0), int(vals.get("04") or 0),
                         int(vals.get("05") or 0), tzinfo=_UTC)  # fmt: skip
    except ValueError as e:
        raise FuncError(f'parsing time "{value}": {e}') from None
    off = 0
    z = vals.get("Z07:00") or vals.get("-07:00") or vals.get("-0700")
    if z and z != "Z":
        z = z.replace(":", "")
        off = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * (-1 if z[0] == "-" else 1)
    frac = vals.get("frac") or ""
    frac_ns = int((frac + "000000000")[:9]) if frac else 0
    secs = int(d.timestamp()) - off
    tz: _dt.tzinfo = _UTC if off == 0 else _dt.timezone(_dt.timedelta(seconds=off))
    return GoTime(secs * 1_000_000_000 + frac_ns, tz)

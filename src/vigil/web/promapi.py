"""Prometheus HTTP API conventions as pure functions: parameter parsing, value formatting, envelopes.

Everything here mirrors Prometheus (`web/api/v1/api.go`, `util/jsonutil`, `promql/value.go`) down
to error wording, because clients such as Grafana show those messages to users and some tests
compare them:

- times: float Unix seconds (rounded to ms exactly as Go does it) or RFC 3339 (`parse_time`);
- durations: float seconds or a Prometheus duration such as `5m` (`parse_duration_param`);
- sample values: JSON strings in Go's `strconv.FormatFloat` format (`format_value`), timestamps
  JSON numbers in seconds with exactly the ms digits (`format_timestamp`);
- responses: `{"status":"success","data":...,"warnings":[...],"infos":[...]}` or
  `{"status":"error","errorType":"bad_data","error":"..."}` with the matching HTTP status.

JSON for query results is written by hand: values are strings and timestamps must keep their
exact digits, which `json.dumps` of floats would not do.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal

from vigil.model.duration import parse_duration
from vigil.promql.result import QueryResult

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Prometheus' defaults for an open time range (api.go MinTime/MaxTime), in ms, and the strings
# clients send for them (Go's time parser cannot read these years, so Prometheus special-cases them).
PROM_MIN_TIME_MS = (INT64_MIN // 1000 + 1 + 62135596801) * 1000  # Go's division truncates: +1
PROM_MAX_TIME_MS = (INT64_MAX // 1000 - 62135596801) * 1000 + 999
MIN_TIME_FORMATTED = "-292273086-05-16T16:47:06Z"
MAX_TIME_FORMATTED = "292277025-08-18T07:12:54.999999999Z"

# query_range refuses more points than this per series (as Prometheus).
MAX_POINTS_PER_SERIES = 11_000

STATUS_BY_ERROR_TYPE = {
    "bad_data": 400,
    "execution": 422,
    "canceled": 499,
    "timeout": 503,
    "internal": 500,
    "not_found": 404,
    "unavailable": 503,
    "not_acceptable": 406,
}

# Prometheus shows at most this many warnings (and infos), then a count of the rest.
MAX_ANNOTATIONS = 10


# ---------------------------------------------------------------------------------------------
# Go string quoting and number parsing


def go_quote(s: str) -> str:
    """Go's `%q`/`strconv.Quote`: double quotes, backslash escapes, printable characters kept."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}

# What Go's strconv.ParseFloat accepts (decimal, hex with a p exponent, inf/infinity/nan); Python's
# float() is laxer (whitespace, underscores) so the syntax is checked first.
_GO_FLOAT_RE = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|(?P<hex>[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)"
    r"|(?P<special>[+-]?(?i:inf|infinity)|(?i:nan))"
)


def go_parse_float(s: str) -> float | None:
    """The value Go's `strconv.ParseFloat(s, 64)` returns without error, else None (incl. overflow)."""
    m = _GO_FLOAT_RE.fullmatch(s)
    if m is None:
        return None
    if m.group("special"):
        return float(s)
    try:
        v = float.fromhex(s) if m.group("hex") else float(s)
    except OverflowError:  # float.fromhex overflows with an exception, float() with inf
        return None
    return None if math.isinf(v) else v  # Go: out of range is an error


_ATOI_RE = re.compile(r"[+-]?[0-9]+")


def go_atoi(s: str) -> int:
    """Go's `strconv.Atoi` (64-bit), raising ValueError with Go's message."""
    if _ATOI_RE.fullmatch(s) is None:
        raise ValueError(f"strconv.Atoi: parsing {go_quote(s)}: invalid syntax")
    digits = s.lstrip("+-").lstrip("0")
    if len(digits) > 19 or not INT64_MIN <= (n := int(s)) <= INT64_MAX:
        raise ValueError(f"strconv.Atoi: parsing {go_quote(s)}: value out of range")
    return n


# ---------------------------------------------------------------------------------------------
# Times and durations


def parse_time(s: str) -> int:
    """A time parameter as int ms: float Unix seconds (`1435781451.781`) or RFC 3339 (`...Z`, `+02:00`).

    Float seconds are split into integer and fraction and the fraction rounded to ms with the same
    float operations as Prometheus, so results agree to the millisecond. RFC 3339 times are
    truncated to the ms. Raises ValueError with Prometheus' message.
    """
    f = go_parse_float(s)
    if f is not None:
        if math.isfinite(f):
            whole = math.trunc(f)
            frac = f - whole  # exact, as Go's math.Modf
            frac = float(Decimal(frac * 1000).quantize(Decimal(1), ROUND_HALF_UP)) / 1000  # math.Round
            ms = (whole * 1_000_000_000 + int(frac * 1e9)) // 1_000_000  # time.Unix, then floor to ms
            if INT64_MIN <= ms <= INT64_MAX:  # Go would wrap around; refuse instead
                return ms
    else:
        parsed = _parse_rfc3339_ms(s)
        if parsed is not None:
            return parsed
        if s == MIN_TIME_FORMATTED:
            return PROM_MIN_TIME_MS
        if s == MAX_TIME_FORMATTED:
            return PROM_MAX_TIME_MS
    raise ValueError(f"cannot parse {go_quote(s)} to a valid timestamp")


_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)


def _parse_rfc3339_ms(s: str) -> int | None:
    """Go's `time.Parse(time.RFC3339Nano, s)` (its strict fast path) as Unix ms, None if invalid."""
    m = _RFC3339_RE.fullmatch(s)
    if m is None:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= _days_in(year, month)):
        return None
    if hour > 23 or minute > 59 or sec > 59:
        return None
    frac, sign, oh, om = m.group(7), m.group(8), m.group(9), m.group(10)
    nanos = int(frac[:9].ljust(9, "0")) if frac else 0  # Go ignores digits past the ns
    offset = 0
    if sign:
        if int(oh) > 23 or int(om) > 59:
            return None
        offset = (int(oh) * 60 + int(om)) * 60 * (-1 if sign == "-" else 1)
    secs = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - offset
    return secs * 1000 + nanos // 1_000_000


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, unlike `datetime`)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_duration_ns(s: str) -> int:
    """A duration parameter as int ns, as Prometheus' `parseDuration`: float seconds or `5m`."""
    f = go_parse_float(s)
    if f is not None:
        fns = f * 1e9
        if math.isnan(fns):
            raise ValueError(f"cannot parse {go_quote(s)} to a valid duration")
        if not -9.223372036854775808e18 <= fns < 9.223372036854775808e18:
            raise ValueError(f"cannot parse {go_quote(s)} to a valid duration. It overflows int64")
        return int(fns)  # time.Duration(float) truncates toward zero
    try:
        ns = parse_duration(s) * 1_000_000
    except ValueError:
        ns = INT64_MAX + 1
    if ns > INT64_MAX:  # Go's model.Duration is ns too: ~292 years at most
        raise ValueError(f"cannot parse {go_quote(s)} to a valid duration")
    return ns


def parse_duration_param(s: str) -> int:
    """A duration parameter (`step`, `timeout`, `lookback_delta`) as int ms, truncated toward zero."""
    ns = parse_duration_ns(s)
    return ns // 1_000_000 if ns >= 0 else -(-ns // 1_000_000)


def parse_limit(s: str) -> int:
    """The `limit` parameter: 0 (no limit) when empty; ValueError with Prometheus' message."""
    if s == "":
        return 0
    n = go_atoi(s)
    if n < 0:
        raise ValueError("limit must be non-negative")
    return n


def unescape_name(name: str) -> str:
    """Undo Prometheus' `U__` value-encoding escaping of label names (`U__http_2e_status`).

    Invalid escapes leave the name unchanged, as `model.UnescapeName` does.
    """
    if not name.startswith("U__"):
        return name
    body, out, i = name[3:], [], 0
    while i < len(body):
        c = body[i]
        if c != "_":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            return name
        if body[i] == "_":
            out.append("_")
            i += 1
            continue
        end = body.find("_", i)
        code = body[i:end] if end >= 0 else ""
        if not 0 < len(code) <= 6 or any(ch not in "0123456789abcdefABCDEF" for ch in code):
            return name
        cp = int(code, 16)
        if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            return name
        out.append(chr(cp))
        i = end + 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Formatting


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it: `strconv.FormatFloat(v, 'f', -1, 64)`, or `'e'` when
    0 < |v| < 1e-6 or |v| >= 1e21; `NaN`, `+Inf`, `-Inf`. (100 -> "100", 1e-05 -> "0.00001",
    1e-07 -> "1e-07", 1e21 -> "1e+21", -0.0 -> "-0".)"""
    r = repr(v)  # shortest round-tripping digits, the same digits Go's precision -1 picks
    if "e" not in r:
        if r[-2:] == ".0":
            return r[:-2]
        if r[-1] in "0123456789":
            return r
        return "NaN" if r == "nan" else ("+Inf" if r == "inf" else "-Inf")
    a = abs(v)
    if a < 1e-6 or a >= 1e21:
        return r  # Python's exponent form is Go's: "1e-07", "1.5e+300"
    return _expand(r)


def format_value_f(v: float) -> str:
    """`strconv.FormatFloat(v, 'f', -1, 64)` for every magnitude: how Prometheus writes scalar results."""
    r = repr(v)
    if "e" in r:
        return _expand(r)
    return format_value(v)


def _expand(r: str) -> str:
    """Python's exponent repr (`1e-05`, `1.2345e+16`) as plain decimal digits."""
    return format(Decimal(r), "f")


def format_timestamp(ms: int) -> str:
    """A timestamp as a JSON number of seconds with the exact ms: 1435781451.781, 1435781451, 1.500."""
    sign = ""
    if ms < 0:
        sign, ms = "-", -ms
    sec, frac = divmod(ms, 1000)
    return f"{sign}{sec}.{frac:03d}" if frac else f"{sign}{sec}"


def format_float_seconds(ms: int) -> str:
    """A timestamp as Go's encoding/json writes `float64(ms)/1000` (scalar and string results)."""
    f = ms / 1000
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        # encoding/json: 'e' format, a padded negative exponent cleaned up ("1e-07" -> "1e-7").
        return re.sub(r"e-0(\d)$", r"e-\1", repr(f))
    return format_value_f(f)


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
dumps = _JSON.encode


def labels_json(labels: Iterable[tuple[str, str]]) -> str:
    return dumps(dict(labels))


def encode_query_data(result: QueryResult) -> str:
    """`{"resultType":...,"result":...}` for a query result, formatted as Prometheus formats it."""
    kind = result.type
    if kind == "scalar":
        t, v = result.scalar if result.scalar is not None else (0, math.nan)
        body = f'[{format_float_seconds(t)},"{format_value_f(v)}"]'
    elif kind == "string":
        t, text = result.string if result.string is not None else (0, "")
        body = f"[{format_float_seconds(t)},{dumps(text)}]"
    elif kind == "vector":
        parts = []
        for s in result.series:
            t, v = int(s.timestamps[0]), float(s.values[0])
            parts.append(
                f'{{"metric":{labels_json(s.labels)},"value":[{format_timestamp(t)},"{format_value(v)}"]}}'
            )
        body = "[" + ",".join(parts) + "]"
    elif kind == "matrix":
        ts_cache: dict[int, str] = {}  # range query steps repeat across series
        parts = []
        for s in result.series:
            points = []
            for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
                ts = ts_cache.get(t)
                if ts is None:
                    ts = ts_cache[t] = format_timestamp(t)
                points.append(f'[{ts},"{format_value(v)}"]')
            values = ',"values":[' + ",".join(points) + "]" if points else ""  # Go omits an empty list
            parts.append(f'{{"metric":{labels_json(s.labels)}{values}}}')
        body = "[" + ",".join(parts) + "]"
    else:
        raise ValueError(f"unknown result type {kind!r}")
    return f'{{"resultType":"{kind}","result":{body}}}'


def _cap(notes: Sequence[str], what: str) -> list[str]:
    """Drop duplicates (Prometheus keeps annotations in a set) and cap the list as Prometheus does."""
    unique = list(dict.fromkeys(notes))
    if len(unique) <= MAX_ANNOTATIONS:
        return unique
    rest = len(unique) - MAX_ANNOTATIONS
    return [*unique[:MAX_ANNOTATIONS], f"{rest} more {what} annotations omitted"]


def success_body(data_json: str, warnings: Sequence[str] = (), infos: Sequence[str] = ()) -> bytes:
    """The success envelope around already-encoded `data`; warnings/infos only when non-empty."""
    out = ['{"status":"success","data":', data_json]
    if warnings:
        out += [',"warnings":', dumps(_cap(warnings, "warning"))]
    if infos:
        out += [',"infos":', dumps(_cap(infos, "info"))]
    out.append("}")
    return "".join(out).encode()


def error_body(error_type: str, message: str) -> bytes:
    return dumps({"status": "error", "errorType": error_type, "error": message}).encode()

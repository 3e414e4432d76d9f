"""Template functions Prometheus and Alertmanager share (prometheus/common's helpers and Go's stdlib).

`humanizeDuration` and the float conversion behind `humanize*` come from prometheus/common, so
both function sets must print them identically; `match` and `reReplaceAll` are Go's regexp (RE2,
unanchored, `$1`/`${name}` expansion, Go's rule for empty matches next to a previous match), run by
`vigil.model.regex` in linear time since label values are not ours to trust; `title` is
golang.org/x/text's `cases.Title` (words by Unicode word boundaries, approximated below).
"""

from __future__ import annotations

import math
import re
from typing import Any

from vigil.model.regex import RegexSyntaxError, compile_regex
from vigil.template.fmt import go_type, sprintf
from vigil.template.funcs import FuncError
from vigil.template.gotime import GoDuration

__all__ = [
    "convert_to_float",
    "go_parse_float",
    "humanize_duration",
    "match",
    "re_replace_all",
    "title",
]

_FLOAT = re.compile(r"[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d*(?:_\d+)*(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.I)


def go_parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64), with Go's error text."""
    body = s[1:] if s[:1] in "+-" else s
    ok = bool(s) and bool(_FLOAT.fullmatch(s)) and "_" not in s and any(c.isdigit() for c in s)
    if body.lower() in ("inf", "infinity", "nan"):
        ok = True
    if not ok and body.lower().startswith("0x"):
        try:
            return float.fromhex(s)
        except ValueError:
            pass
    if not ok:
        raise FuncError(f'strconv.ParseFloat: parsing "{s}": invalid syntax')
    v = float(s)
    if math.isinf(v) and body.lower() not in ("inf", "infinity"):
        raise FuncError(f'strconv.ParseFloat: parsing "{s}": value out of range')
    return v


def convert_to_float(v: Any) -> float:
    """prometheus/common ConvertToFloat: float64, string, int and time.Duration (as seconds)."""
    if isinstance(v, bool):
        raise FuncError("can't convert bool to float")
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, str):
        return go_parse_float(v)
    if isinstance(v, GoDuration):
        return v.ns / 1e9
    raise FuncError(f"can't convert {'<nil>' if v is None else go_type(v)} to float")


def _g4(v: float) -> str:
    return sprintf("%.4g", [v])


def humanize_duration(i: Any) -> str:
    """prometheus/common HumanizeDuration: `9d 23h 54m 0s`, `1.5s`, `500ms`."""
    v = convert_to_float(i)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}s"


def _compile(pattern: str) -> Any:
    try:
        return compile_regex(pattern)
    except RegexSyntaxError as e:
        raise FuncError(f"error parsing regexp: {e}") from None


def match(pattern: str, text: str) -> bool:
    """regexp.MatchString: does `pattern` match anywhere in `text`."""
    return _compile(pattern).search(text) is not None


_GROUP_NAME = re.compile(r"[A-Za-z0-9_]+")


def _expand(template: str, m: Any, names: dict[str, int]) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups are empty."""
    out: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        i = j + 1
        if template.startswith("$", i):
            out.append("$")
            i += 1
            continue
        if template.startswith("{", i):
            close = template.find("}", i)
            name = template[i + 1 : close] if close > 0 else ""
            if close < 0 or not _GROUP_NAME.fullmatch(name):
                out.append("$")
                continue
            i = close + 1
        else:
            gm = _GROUP_NAME.match(template, i)
            if gm is None:
                out.append("$")
                continue
            name = gm.group()
            i = gm.end()
        idx: int | None = int(name) if name.isdigit() else names.get(name)
        if idx is not None:
            try:
                g = m.group(idx)
            except IndexError:
                g = None
            out.append(g or "")
    return "".join(out)


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    """regexp.MustCompile(pattern).ReplaceAllString(text, repl)."""
    rx = _compile(pattern)
    names: dict[str, int] = dict(getattr(rx._re2, "groupindex", {}) or {})
    out: list[str] = []
    pos = 0
    last_end = 0
    n = len(text)
    steps = 0
    while pos <= n:
        m = rx.search(text, pos)
        if m is None:
            break
        steps += 1
        start, end = m.span()
        out.append(text[last_end:start])
        # No replacement for an empty match right after the previous match (Go's rule).
        if end > last_end or start == 0:
            out.append(_expand(repl, m, names))
        last_end = end
        pos = pos + 1 if pos + 1 > end else end
    out.append(text[last_end:])
    return "".join(out)


_MID = "'.:·’\u2027\ufe13\ufe52\ufe55\uff07\uff0e\uff1a"  # UAX #29 MidLetter / MidNumLet


def title(s: str, lower_rest: bool = True) -> str:
    """cases.Title(language.AmericanEnglish): upper-case each word's first letter; with
    `lower_rest` (Alertmanager) lower-case the rest, without it (`cases.NoLower`, Prometheus 3.x)
    keep it. Words per UAX #29, approximated: letters, digits, `_`, and `'` `.` `:` between letters."""
    out: list[str] = []
    in_word = False
    n = len(s)
    for i, ch in enumerate(s):
        wordy = ch.isalnum() or ch == "_" or ch in "\u00ad"
        if not wordy and ch in _MID and in_word and i + 1 < n and s[i + 1].isalnum():
            wordy = True
        if wordy:
            if not in_word:
                out.append(ch.title() if ch.isalpha() else ch)
                in_word = True
            else:
                out.append(ch.lower() if lower_rest else ch)
        else:
            in_word = False
            out.append(ch)
    return "".join(out)

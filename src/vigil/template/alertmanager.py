"""Notification templates as Alertmanager renders them: its function map and `{{define}}` files.

Alertmanager (template/template.go) parses the template files of its configuration (globs; a glob
matching nothing is fine) into one set, and renders each notification field by parsing the field's
text as a new template `""` in a clone of that set, with `missingkey=zero`, in text mode or, for
HTML bodies, with html/template's contextual escaping (`htmlesc`). The function map is Alertmanager's
current one: toUpper toLower title trimSpace join match safeHtml safeUrl urlUnescape reReplaceAll
stringSlice date tz now since humanizeDuration toDate mustToDate toJson base64encode base64decode
list append dict (0.25 has the first nine and stringSlice; the rest are later additions).

Data is what the caller builds (nested dicts, lists, strings, objects with attributes; times as
`gotime.GoTime`); this module knows nothing of Alertmanager's data model. Time comes from an
injected clock (`now_ns`), so `now` and `since` are testable and there is no hidden state.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import glob as _glob
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from vigil.template import Func, FuncError, Limits, Template, TemplateError
from vigil.template.common import humanize_duration, match, re_replace_all, title
from vigil.template.exec import DEFAULT_LIMITS
from vigil.template.fmt import HTML, NO_VALUE
from vigil.template.funcs import AnyMap
from vigil.template.gotime import GoDuration, GoTime, load_location, parse_go_time
from vigil.template.htmlesc import URL, HtmlEscaper

__all__ = ["TemplateError", "TemplateSet", "functions", "to_json"]


def _as_time(v: Any) -> GoTime:
    if isinstance(v, GoTime):
        return v
    if isinstance(v, _dt.datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=_dt.UTC)
        ns = int(aware.timestamp()) * 1_000_000_000 + aware.microsecond * 1000
        return GoTime(ns, aware.tzinfo or _dt.UTC)
    raise FuncError(f"wrong type for value; expected time.Time; got {type(v).__name__}")


def _url_unescape(s: str) -> str:
    """url.QueryUnescape: `+` is a space; a bad %-escape is an error."""
    i = 0
    while (i := s.find("%", i)) >= 0:
        h = s[i + 1 : i + 3]
        if len(h) < 2 or any(c not in "0123456789abcdefABCDEF" for c in h):
            raise FuncError(f'invalid URL escape "{s[i : i + 3]}"')
        i += 3
    return urllib.parse.unquote_plus(s, errors="replace")


def _jsonable(v: Any) -> Any:
    if v is None or v is NO_VALUE:
        return None
    if isinstance(v, str | bool | int):
        return str.__str__(v) if isinstance(v, str) else v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise FuncError(f"json: unsupported value: {v}")
        return v
    if isinstance(v, GoTime):
        return v.Format("2006-01-02T15:04:05.999999999Z07:00")  # RFC 3339 with nanoseconds
    if isinstance(v, GoDuration):
        return v.ns
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    fields = {k: x for k, x in vars(v).items() if not k.startswith("_")} if hasattr(v, "__dict__") else {}
    return {k: _jsonable(x) for k, x in fields.items()}


def to_json(v: Any) -> str:
    """json.Marshal as Go writes it: compact, map keys sorted, `<`, `>`, `&` escaped."""
    s = json.dumps(_jsonable(v), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (
        s.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _b64decode(s: str) -> str:
    try:
        return base64.urlsafe_b64decode(s.encode()).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        raise FuncError("illegal base64 data at input byte 0") from None


def _dict(*values: Any) -> AnyMap:
    if len(values) % 2:
        raise FuncError("dict requires an even number of arguments")
    res = AnyMap()
    for k, v in zip(values[::2], values[1::2], strict=True):
        if not isinstance(k, str):
            raise FuncError("dict keys must be strings")
        res[k] = v
    return res


# Go's unicode.IsSpace, which strings.TrimSpace trims.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def functions(now_ns: Callable[[], int] = time.time_ns) -> dict[str, Func]:
    """Alertmanager's DefaultFuncs, with the clock injected."""
    s1 = ("string",)

    def to_date(layout: str, s: str) -> GoTime:
        try:
            return parse_go_time(layout, s)
        except FuncError:
            return GoTime(-62135596800 * 1_000_000_000)  # Go's zero time on failure

    return {
        "toUpper": Func(str.upper, s1),
        "toLower": Func(str.lower, s1),
        "title": Func(title, s1),
        "trimSpace": Func(lambda s: s.strip(_GO_SPACE), s1),
        "join": Func(lambda sep, s: sep.join(s or []), ("string", "[]string")),
        "match": Func(match, ("string", "string")),
        "safeHtml": Func(HTML, s1),
        "safeUrl": Func(URL, s1),
        "urlUnescape": Func(_url_unescape, s1),
        "reReplaceAll": Func(re_replace_all, ("string", "string", "string")),
        "stringSlice": Func(lambda *s: list(s), (), "string"),
        "date": Func(lambda layout, t: _as_time(t).Format(layout), ("string", "value")),
        "tz": Func(lambda name, t: _as_time(t).In(load_location(name)), ("string", "value")),
        "now": Func(lambda: GoTime(now_ns())),
        "since": Func(lambda t: GoDuration(now_ns() - _as_time(t).ns), ("value",)),
        "humanizeDuration": Func(humanize_duration, ("any",)),
        "toDate": Func(to_date, ("string", "string")),
        "mustToDate": Func(parse_go_time, ("string", "string")),
        "toJson": Func(to_json, ("any",)),
        "base64encode": Func(lambda s: base64.urlsafe_b64encode(s.encode()).decode(), s1),
        "base64decode": Func(_b64decode, s1),
        "list": Func(lambda *a: list(a), (), "any"),
        "append": Func(lambda sl, *a: [*(sl or []), *a], ("any",), "any"),
        "dict": Func(_dict, (), "any"),
    }


class TemplateSet:
    """Alertmanager's parsed template files, rendering notification fields against caller data."""

    def __init__(
        self,
        globs: Iterable[str] = (),
        *,
        now_ns: Callable[[], int] = time.time_ns,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """Parse every file the globs match (sorted, as Go's filepath.Glob); raises TemplateError
        naming the file for a syntax error, OSError for an unreadable file."""
        self._base = Template("", funcs=functions(now_ns), missingkey="zero", limits=limits)
        for pattern in globs:
            for path in sorted(_glob.glob(pattern)):
                self.add(Path(path).read_text(encoding="utf-8"), Path(path).name)

    def add(self, text: str, name: str) -> TemplateSet:
        """Parse `text` (usually `{{define}}`s) as a file named `name` (raises TemplateError)."""
        base = self._base
        t = base.clone(name)
        t.parse(text)
        base.trees.update(t.trees)
        return self

    def names(self) -> list[str]:
        return sorted(self._base.trees)

    def render(self, text: str, data: Any, *, html: bool = False) -> str:
        """Render a notification field: `text` parsed as template "" in a clone of the set."""
        if text == "":
            return ""
        t = self._base.clone("")
        t.parse(text)
        return t.execute(data, escaper=HtmlEscaper() if html else None)

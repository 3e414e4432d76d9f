"""Alert label and annotation templates, expanded exactly as Prometheus 3.x expands them.

Prometheus prepends `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL :=
.ExternalURL}}{{$value := .Value}}` to each text, names the template `__alert_<rule name>`, runs it
with `missingkey=zero` (a missing label is the empty string) on data with the fields `Labels`,
`ExternalLabels`, `ExternalURL` and `Value`, and gives it its function map (template/template.go):
query first label value strvalue args reReplaceAll safeHtml match title toUpper toLower graphLink
tableLink sortByLabel stripPort stripDomain humanize humanize1024 humanizeDuration
humanizePercentage humanizeTimestamp toTime toDuration now pathPrefix externalURL parseDuration
urlQueryEscape. Errors read as Prometheus' do (`error executing template __alert_x: template: ...`),
so the caller can show `<error expanding template: ...>` as Prometheus does.

Where promtool 2.42 differs by design, 3.x is followed: `title` is `cases.Title` with `NoLower`
(2.42: `strings.Title`), `toDuration` and `urlQueryEscape` exist.
"""

from __future__ import annotations

import ipaddress
import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from vigil.model.duration import parse_duration
from vigil.template import Func, FuncError, Limits, Template, TemplateError
from vigil.template.common import convert_to_float, humanize_duration, match, re_replace_all, title
from vigil.template.fmt import HTML, sprintf, value_string
from vigil.template.funcs import AnyMap, query_escape
from vigil.template.gotime import GoDuration, GoTime

__all__ = ["ANNOTATION_LIMITS", "DEFS", "QueryLike", "check", "expand", "functions"]

# One label or annotation value: far below what a notification body may need.
ANNOTATION_LIMITS = Limits(max_output=1 << 20, max_steps=200_000)

DEFS = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
    "{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


class QueryLike(Protocol):
    """Runs a PromQL instant query at a Unix-millisecond time; returns samples with `.labels`
    (Labels or a mapping) and `.value`."""

    def __call__(self, expr: str, ts_ms: int, /) -> Sequence[Any]: ...


class _Sample:
    """Prometheus' template `sample`: `.Labels` (with `__name__`) and `.Value`."""

    go_type_name = "*template.sample"
    go_pointer = True
    __slots__ = ("Labels", "Value")

    def __init__(self, labels: dict[str, str], value: Any) -> None:
        self.Labels = labels
        self.Value = value


class _QueryResult(list[_Sample]):
    go_type_name = "template.queryResult"


class _AlertData:
    """The data an alert template runs on (Prometheus' AlertTemplateData)."""

    go_type_name = (
        "struct { Labels map[string]string; ExternalLabels map[string]string; "
        "ExternalURL string; Value interface {} }"
    )
    __slots__ = ("ExternalLabels", "ExternalURL", "Labels", "Value")
    go_fields = ("Labels", "ExternalLabels", "ExternalURL", "Value")

    def __init__(self, labels: dict[str, str], ext: dict[str, str], url: str, value: float) -> None:
        self.Labels = labels
        self.ExternalLabels = ext
        self.ExternalURL = url
        self.Value = value


_RESULT = "template.queryResult"
_SAMPLE = "*template.sample"


class _TimePointer(GoTime):
    """toTime's result: Prometheus returns a *time.Time (its type shows in error messages)."""

    go_type_name = "*time.Time"


class _DurationPointer(GoDuration):
    """toDuration's result, a *time.Duration."""

    go_type_name = "*time.Duration"


def _want_sample(v: _Sample | None) -> _Sample:
    if v is None:
        raise FuncError("runtime error: invalid memory address or nil pointer dereference")
    return v


def split_host_port(hp: str) -> tuple[str, str] | None:
    """net.SplitHostPort, or None where Go returns an error."""
    i = hp.rfind(":")
    if i < 0:
        return None
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hp[1:end]
        if "[" in hp[1:] or "]" in hp[end + 1 :]:
            return None
    else:
        host = hp[:i]
        if ":" in host or "[" in host or "]" in host:
            return None
    return host, hp[i + 1 :]


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return "%" not in s


def _strip_port(hp: str) -> str:
    parts = split_host_port(hp)
    return hp if parts is None else parts[0]


def _strip_domain(hp: str) -> str:
    parts = split_host_port(hp)
    host, port = (hp, "") if parts is None else parts
    if _is_ip(host):
        return hp
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _humanize(i: Any) -> str:
    v = convert_to_float(i)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return sprintf("%.4g", [v])
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return sprintf("%.4g", [v]) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return sprintf("%.4g", [v]) + prefix


def _humanize1024(i: Any) -> str:
    v = convert_to_float(i)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return sprintf("%.4g", [v])
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return sprintf("%.4g", [v]) + prefix


def _float_to_time(v: float) -> GoTime:
    if math.isnan(v) or math.isinf(v):
        raise FuncError("value is NaN or Inf")
    ts = v * 1e9
    if ts > 2**63 - 1 or ts < -(2**63):
        why = "cannot be represented as a nanoseconds timestamp since it overflows int64"
        raise FuncError(f"{value_string(v)} {why}")
    # model.TimeFromUnixNano truncates to milliseconds.
    return _TimePointer(int(ts) // 1_000_000 * 1_000_000)


def _humanize_timestamp(i: Any) -> str:
    v = convert_to_float(i)
    if math.isnan(v) or math.isinf(v):
        return sprintf("%.4g", [v])
    return _float_to_time(v).String()


def _to_duration(i: Any) -> GoDuration:
    v = convert_to_float(i) * 1e9
    if math.isnan(v) or math.isinf(v):
        return _DurationPointer(-(2**63))  # Go's float-to-int64 conversion of NaN/Inf
    return _DurationPointer(max(-(2**63), min(2**63 - 1, int(v))))


def _parse_duration(d: str) -> float:
    neg = d.startswith("-")
    try:
        ms = parse_duration(d[1:] if neg else d)
    except ValueError:
        raise FuncError(f'not a valid duration string: "{d}"') from None
    return (-ms if neg else ms) / 1000


def _sort_by_label(label: str, v: _QueryResult | None) -> _QueryResult:
    if v is None:
        raise FuncError("runtime error: invalid memory address or nil pointer dereference")
    res = v
    res.sort(key=lambda s: s.Labels.get(label, "").encode())
    return res


def _labels_dict(labels: Any) -> dict[str, str]:
    if isinstance(labels, Mapping):
        return {str(k): str(x) for k, x in labels.items()}
    return {str(k): str(x) for k, x in labels}  # vigil.model.labels.Labels: pairs


def functions(
    *, timestamp_ms: int, external_url: str, query: QueryLike | None, max_output: int = 1 << 20
) -> dict[str, Func | Callable[..., Any]]:
    """Prometheus' template function map for one expansion (`max_output` bounds reReplaceAll)."""

    def run_query(q: str) -> _QueryResult:
        if query is None:
            raise FuncError("no query engine available")
        try:
            vector = query(q, timestamp_ms)
        except Exception as e:  # a failing query fails the template, as in Prometheus
            raise FuncError(str(e)) from None
        return _QueryResult(_Sample(_labels_dict(s.labels), float(s.value)) for s in vector)

    def first(res: _QueryResult | None) -> _Sample:
        if not res:
            raise FuncError("first() called on vector with no elements")
        return res[0]

    path = urllib.parse.urlsplit(external_url).path
    s1, s2, s3 = ("string",), ("string", "string"), ("string", "string", "string")
    return {
        "query": Func(run_query, s1),
        "first": Func(first, (_RESULT,)),
        "label": Func(lambda name, s: _want_sample(s).Labels.get(name, ""), ("string", _SAMPLE)),
        "value": Func(lambda s: _want_sample(s).Value, (_SAMPLE,)),
        "strvalue": Func(lambda s: _want_sample(s).Labels.get("__value__", ""), (_SAMPLE,)),
        "args": Func(lambda *a: AnyMap({f"arg{i}": x for i, x in enumerate(a)}), (), "any"),
        "reReplaceAll": Func(lambda p, r, t: re_replace_all(p, r, t, max_output), s3),
        "safeHtml": Func(HTML, s1),
        "match": Func(match, s2),
        "title": Func(lambda s: title(s, lower_rest=False), s1),
        "toUpper": Func(str.upper, s1),
        "toLower": Func(str.lower, s1),
        "graphLink": Func(lambda e: f"/graph?g0.expr={query_escape(e)}&g0.tab=0", s1),
        "tableLink": Func(lambda e: f"/graph?g0.expr={query_escape(e)}&g0.tab=1", s1),
        "sortByLabel": Func(_sort_by_label, ("string", _RESULT)),
        "stripPort": Func(_strip_port, s1),
        "stripDomain": Func(_strip_domain, s1),
        "humanize": Func(_humanize, ("any",)),
        "humanize1024": Func(_humanize1024, ("any",)),
        "humanizeDuration": Func(humanize_duration, ("any",)),
        "humanizePercentage": Func(lambda i: sprintf("%.4g%%", [convert_to_float(i) * 100]), ("any",)),
        "humanizeTimestamp": Func(_humanize_timestamp, ("any",)),
        "toTime": Func(lambda i: _float_to_time(convert_to_float(i)), ("any",)),
        "toDuration": Func(_to_duration, ("any",)),
        "now": Func(lambda: timestamp_ms / 1000.0),
        "pathPrefix": Func(lambda: path),
        "externalURL": Func(lambda: external_url),
        "parseDuration": Func(_parse_duration, s1),
        "urlQueryEscape": Func(query_escape, s1),
    }


def expand(
    text: str,
    *,
    name: str,
    labels: Mapping[str, str],
    value: float,
    external_labels: Mapping[str, str],
    external_url: str,
    timestamp_ms: int,
    query: QueryLike | None = None,
    limits: Limits = ANNOTATION_LIMITS,
) -> str:
    """Render one alert label or annotation as Prometheus does; raises TemplateError."""
    funcs = functions(
        timestamp_ms=timestamp_ms, external_url=external_url, query=query, max_output=limits.max_output
    )
    t = Template(name, funcs=funcs, missingkey="zero", limits=limits)
    try:
        t.parse(DEFS + text)
    except TemplateError as e:
        raise TemplateError(f"error parsing template {name}: {e}") from None
    data = _AlertData(dict(labels), dict(external_labels), external_url, float(value))
    try:
        return t.execute(data)
    except TemplateError as e:
        raise TemplateError(f"error executing template {name}: {e}") from None


def check(text: str, name: str = "") -> None:
    """Parse only, as rule loading (promtool check rules) does; raises TemplateError."""
    funcs = functions(timestamp_ms=0, external_url="", query=None)
    Template(name, funcs=funcs, missingkey="zero").parse(DEFS + text)

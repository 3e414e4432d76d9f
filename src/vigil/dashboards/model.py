"""The dashboard file schema: a dashboard is variables plus rows of panels, each panel PromQL queries
drawn as one chart kind with a unit and thresholds.

The shape follows Grafana's classic dashboard model closely enough that `vigil.dashboards.grafana`
maps it both ways without losing what Vigil can draw: panel kinds are Grafana's visualisation ids,
units are Grafana's unit ids, widths and heights count cells of Grafana's 24-column grid, and query
text may use Grafana's variable syntax (`$var`, `${var}`, `[[var]]`, `$__rate_interval`, ...).

Files are validated through `vigil.config.validate` like every other file Vigil reads, so a mistake
is one line `file: rows[0].panels[2].unit: expected ..., got ...`. Every query is checked to parse
as PromQL once its variables are replaced by sample values (`substitute`), so a dashboard that loads
never shows a parse error on its first draw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, model_validator

from vigil.config.types import Bool, Section, integer
from vigil.config.validate import KeyedError, validate
from vigil.model.duration import parse_duration
from vigil.model.show import show
from vigil.promql.errors import ParseError
from vigil.promql.parser import parse

__all__ = [
    "GRID_COLUMNS",
    "KINDS",
    "MAX_PANELS",
    "MAX_QUERIES",
    "MAX_VARIABLES",
    "SAMPLE_BUILTINS",
    "UNITS",
    "Dashboard",
    "Panel",
    "Query",
    "Row",
    "Threshold",
    "Variable",
    "check_expr",
    "dashboard_from",
    "substitute",
    "to_yaml",
]

GRID_COLUMNS = 24  # Grafana's gridPos grid
MAX_PANELS = 500  # per dashboard: a page draws each one, so this bounds the work of showing it
MAX_QUERIES = 26  # per panel: Grafana's refIds run A..Z
MAX_VARIABLES = 50
KINDS = ("timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text")
Kind = Literal["timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text"]
# Grafana unit ids Vigil knows how to format: the common ones, and the others Node Exporter Full-style
# dashboards use, so that importing one keeps its units.
UNITS = (
    "none", "short", "percent", "percentunit", "bytes", "decbytes", "bits", "decbits", "bps",
    "Bps", "binBps", "pps", "ops", "reqps", "rps", "wps", "iops", "eps", "s", "ms", "µs", "ns",
    "m", "h", "d", "dtdurations", "dtdurationms", "dateTimeAsIso", "dateTimeFromNow", "hertz",
    "celsius", "bool", "bool_yes_no", "bool_on_off", "rotrpm", "watt", "volt", "amp",
)  # fmt: skip
_UID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")  # Grafana's uid: at most 40 characters
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Hex, rgb()/rgba() (old singlestat panels), or Grafana's color names (dark-red, semi-dark-green).
_COLOR_RE = re.compile(r"#[0-9a-fA-F]{3,8}|rgba?\([0-9., ]{5,40}\)|[a-z][a-z-]{0,31}")
_LABEL_VALUES_RE = re.compile(
    r"label_values\(\s*(?:(?P<sel>.+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)"
)

# Grafana's built-in variables, with sample values of their kind for checking that queries parse:
# a duration where Grafana puts one (`[$__rate_interval]`), a number where it puts one (`$__range_s`).
# A page drawing a dashboard passes the real values of its range and step to `substitute` instead.
SAMPLE_BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__rate_interval_ms": "60000",
    "__interval": "1m",
    "__range": "1h",
    "__interval_ms": "60000",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__from": "0",
    "__to": "3600000",
}
# `$name`, `${name}`, `${name:format}`, `[[name]]` / `[[name:format]]`: Grafana's three forms.
_VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


def substitute(expr: str, values: Mapping[str, str], builtins: Mapping[str, str] = SAMPLE_BUILTINS) -> str:
    """`expr` with Grafana variable references replaced: `$__…` built-ins from `builtins`, the
    dashboard's own variables from `values` (already formatted: a multi-value selection as the
    caller wants it, e.g. `(a|b)` for `=~`); references to neither are left as written, as Grafana
    leaves them, so `$1` in a label_replace replacement stays."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        return values.get(name, m.group(0))

    return _VAR_RE.sub(repl, expr)


def check_expr(expr: str, values: Mapping[str, str]) -> str | None:
    """None when `expr` parses as PromQL after `substitute`, else the parser's message."""
    try:
        parse(substitute(expr, values))
    except ParseError as e:
        return str(e)
    return None


def _text(what: str, *, empty: bool = True, limit: int = 256) -> BeforeValidator:
    def validate(value: object) -> str:
        if value is None and empty:
            return ""
        if not isinstance(value, str) or (not empty and not value) or len(value) > limit:
            raise ValueError(f"expected {what} (at most {limit} characters), got {show(value)}")
        return value

    return BeforeValidator(validate)


def _choice(*options: str) -> BeforeValidator:
    def validate(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {show(value)}")
        return value

    return BeforeValidator(validate)


def _number(value: object) -> float | None:
    if value is None:
        return None
    # YAML's .nan and .inf are floats; neither is a threshold or an axis bound.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {show(value)}")
    return float(value)


def _uid(value: object) -> str:
    if not isinstance(value, str) or _UID_RE.fullmatch(value) is None:
        raise ValueError(
            f"expected a uid of 1 to 40 letters, digits, _ or -, like node-host, got {show(value)}"
        )
    return value


def _unit(value: object) -> str:
    if value is None:
        return "short"
    if not isinstance(value, str) or value not in UNITS:
        raise ValueError(f"expected a Grafana unit id ({', '.join(UNITS[:12])}, ...), got {show(value)}")
    return value


def _color(value: object) -> str:
    if not isinstance(value, str) or _COLOR_RE.fullmatch(value) is None:
        raise ValueError(f"expected a color like red, dark-yellow or #e02f44, got {show(value)}")
    return value


def _list(what: str, limit: int) -> BeforeValidator:
    def validate(value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of {what}, got {show(value)}")
        if len(value) > limit:
            raise ValueError(f"expected at most {limit} {what}, got {len(value)}")
        return tuple(value)

    return BeforeValidator(validate)


def _duration_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 5m, got {show(value)}")
    parse_duration(value)  # its ValueError reads "expected a duration like 15d, got ..."
    return value


def _time_from(value: object) -> str:
    # Grafana's relative times: now, now-6h, now-7d (rounding like now/d is Grafana's, not drawn here).
    if not isinstance(value, str) or re.fullmatch(r"now(-\d+[smhdwy])?", value) is None:
        raise ValueError(f"expected a relative time like now-6h, got {show(value)}")
    return value


Text = Annotated[str, _text("text")]
Name = Annotated[str, _text("a name", empty=False)]
Number = Annotated[float | None, BeforeValidator(_number)]


class Threshold(Section):
    """One step of a panel's thresholds: from `value` up the color is `color` (null: the base step,
    from minus infinity, as Grafana's first step)."""

    value: Number = None
    color: Annotated[str, BeforeValidator(_color)]


class Query(Section):
    """One PromQL query of a panel."""

    expr: Annotated[str, _text("a PromQL expression", empty=False, limit=16384)]
    legend: Annotated[str, _text("a legend template like {{instance}}")] = ""
    instant: Bool = False
    """Evaluate at the end of the range only (a stat's or table's current value)."""


class Panel(Section):
    """One chart: its queries drawn as `kind`, `width` x `height` cells of the 24-column grid."""

    title: Text = ""
    description: Annotated[str, _text("text", limit=4096)] = ""
    kind: Annotated[Kind, _choice(*KINDS)] = "timeseries"
    queries: Annotated[tuple[Query, ...], _list("queries", MAX_QUERIES)] = ()
    unit: Annotated[str, BeforeValidator(_unit)] = "short"
    thresholds: Annotated[
        tuple[Threshold, ...], _list("thresholds", 20), AfterValidator(lambda t: _based(t))
    ] = ()
    """Color steps; without a null base step, one (green) is put first, as Grafana requires one."""
    thresholds_mode: Annotated[Literal["absolute", "percentage"], _choice("absolute", "percentage")] = (
        "absolute"
    )
    min: Number = None
    max: Number = None
    decimals: Annotated[int | None, BeforeValidator(lambda v: v if v is None else _decimals(v))] = None
    stacked: Bool = False
    width: Annotated[int, integer(minimum=1), AfterValidator(lambda v: _at_most(v, GRID_COLUMNS))] = 12
    height: Annotated[int, integer(minimum=1), AfterValidator(lambda v: _at_most(v, 100))] = 8
    content: Annotated[str, _text("markdown text", limit=65536)] = ""
    """The markdown a `text` panel shows."""

    @model_validator(mode="after")
    def _queries_for_kind(self) -> Panel:
        if self.kind == "text" and self.queries:
            raise KeyedError("queries", f"expected no queries on a text panel, got {len(self.queries)}")
        if self.kind != "text" and not self.queries:
            raise KeyedError("queries", f"expected at least one query on a {self.kind} panel, got none")
        values = [t.value for t in self.thresholds]
        numbers = [v for v in values if v is not None]
        if None in values[1:] or numbers != sorted(numbers):
            raise KeyedError("thresholds", "expected steps in increasing value order, only the first null")
        return self


def _based(steps: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
    if steps and steps[0].value is not None:
        return (Threshold(value=None, color="green"), *steps)
    return steps


def _decimals(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise ValueError(f"expected an integer from 0 to 10, got {show(value)}")
    return value


def _at_most(value: int, limit: int) -> int:
    if value > limit:
        raise ValueError(f"expected an integer <= {limit}, got {value}")
    return value


class Row(Section):
    """Panels under a title; a collapsed row shows its title only until opened."""

    title: Text = ""
    collapsed: Bool = False
    panels: Annotated[tuple[Panel, ...], _list("panels", MAX_PANELS)] = ()


class Variable(Section):
    """A dashboard variable, referenced in queries as `$name`.

    `query`: values of a label, `label_values(metric{matchers}, label)` or `label_values(label)`;
    `custom`: the listed `values`; `interval`: the listed durations (`values: [1m, 5m, 1h]`)."""

    name: Annotated[str, BeforeValidator(lambda v: _var_name(v))]
    label: Text = ""
    kind: Annotated[Literal["query", "custom", "interval"], _choice("query", "custom", "interval")] = "query"
    query: Annotated[str, _text("label_values(metric, label)", limit=4096)] = ""
    values: Annotated[tuple[Annotated[str, _text("a value", empty=False)], ...], _list("values", 1000)] = ()
    multi: Bool = False
    include_all: Bool = False

    @model_validator(mode="after")
    def _kind_fields(self) -> Variable:
        if self.kind == "query":
            m = _LABEL_VALUES_RE.fullmatch(self.query.strip())
            if m is None:
                raise KeyedError(
                    "query",
                    f"expected label_values(metric, label) or label_values(label), got {show(self.query)}",
                )
            sel = m.group("sel")
            problem = check_expr(sel, {}) if sel else None
            if problem is not None:
                raise KeyedError(
                    "query", f"expected a PromQL selector in label_values, got {show(sel)} ({problem})"
                )
        elif not self.values:
            raise KeyedError("values", f"expected at least one value for a {self.kind} variable, got none")
        if self.kind == "interval":
            for i, v in enumerate(self.values):
                try:
                    parse_duration(v)
                except ValueError as e:
                    raise KeyedError(f"values[{i}]", str(e)) from None
        return self

    def sample_value(self) -> str:
        """A value standing for this variable when checking that queries parse."""
        if self.values:
            return self.values[0]
        return "value"


def _var_name(value: object) -> str:
    if not isinstance(value, str) or _VAR_NAME_RE.fullmatch(value) is None or value.startswith("__"):
        raise ValueError(f"expected a variable name like instance, got {show(value)}")
    return value


def _length(value: object) -> int:
    return len(value) if isinstance(value, list | tuple) else 0


class Dashboard(Section):
    """A whole dashboard file."""

    title: Name
    uid: Annotated[str, BeforeValidator(_uid)]
    description: Annotated[str, _text("text", limit=4096)] = ""
    tags: Annotated[tuple[Annotated[str, _text("a tag", empty=False, limit=64)], ...], _list("tags", 20)] = ()
    variables: Annotated[tuple[Variable, ...], _list("variables", MAX_VARIABLES)] = ()
    time_from: Annotated[str, BeforeValidator(_time_from)] = "now-6h"
    """Default time range: from `time_from` to now."""
    refresh: Annotated[str, BeforeValidator(lambda v: "" if v in ("", None) else _duration_text(v))] = "1m"
    """Default auto-refresh interval ("" : off)."""
    panels: Annotated[tuple[Panel, ...], _list("panels", MAX_PANELS)] = ()
    """Panels above the first row (and a dashboard without rows)."""
    rows: Annotated[tuple[Row, ...], _list("rows", MAX_PANELS)] = ()

    @model_validator(mode="before")
    @classmethod
    def _bound(cls, data: Any) -> Any:
        # Counted in the parsed document, before any panel is validated: YAML aliases let a 9 KB file
        # name one row of 500 panels 500 times, and validating those 250,000 panels would take
        # minutes and GiBs before an after-check could refuse them.
        if isinstance(data, dict):
            count = _length(data.get("panels"))
            rows = data.get("rows")
            if isinstance(rows, list | tuple):
                count += sum(_length(r.get("panels")) for r in rows[: MAX_PANELS + 1] if isinstance(r, dict))
            if count > MAX_PANELS:
                raise KeyedError(
                    "panels", f"expected at most {MAX_PANELS} panels in a dashboard, got {count}"
                )
        return data

    @model_validator(mode="after")
    def _check(self) -> Dashboard:
        names = [v.name for v in self.variables]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise KeyedError(f"variables[{i}].name", f"expected a name not used before, got {show(name)}")
        values = {v.name: v.sample_value() for v in self.variables}
        checked: dict[str, str | None] = {}  # an expression used again (a YAML alias) is parsed once
        for key, panel in self.all_panels():
            for j, q in enumerate(panel.queries):
                if q.expr not in checked:
                    checked[q.expr] = check_expr(q.expr, values)
                problem = checked[q.expr]
                if problem is not None:
                    raise KeyedError(
                        f"{key}.queries[{j}].expr", f"expected PromQL, got {show(q.expr)}: {problem}"
                    )
        return self

    def all_panels(self) -> list[tuple[str, Panel]]:
        """Every panel with its key path (`panels[0]`, `rows[2].panels[1]`), in drawing order."""
        out = [(f"panels[{i}]", p) for i, p in enumerate(self.panels)]
        for r, row in enumerate(self.rows):
            out += [(f"rows[{r}].panels[{i}]", p) for i, p in enumerate(row.panels)]
        return out


def to_yaml(d: Dashboard) -> str:
    """The dashboard as a YAML file that loads back to an equal Dashboard (defaults left out)."""
    data = d.model_dump(mode="json", exclude_defaults=True)
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))


def dashboard_from(data: Any, source: str) -> Dashboard:
    """Validate a parsed dashboard document; raise ConfigError `source: key.path: ...`."""
    return validate(Dashboard, data, source)

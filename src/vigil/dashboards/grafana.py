"""Vigil dashboards to Grafana dashboard JSON and back (Grafana's classic JSON model).

Export writes what Grafana's "Import dashboard" page and file provisioning both accept: `__inputs`
declares the Prometheus data source as `DS_PROMETHEUS`, which the import page offers as a picker and
substitutes into every `${DS_PROMETHEUS}`; and a data source variable of that same name makes the
reference resolve when the file is provisioned without the import page (where `__inputs` is not
applied and the placeholder would otherwise name no data source). Panels sit on the 24-column
`gridPos` grid, laid out left to right and wrapped as Vigil draws them; rows are `row` panels, a
collapsed one holding its panels.

Import reads a Grafana dashboard (classic `panels[]` with rows, collapsed or not; the `rows[]` of
dashboards older than schemaVersion 16; a dashboard wrapped as the HTTP API returns it) into a Vigil
one. Panels of a kind Vigil draws are mapped (graph -> timeseries, singlestat -> stat, table-old ->
table, ...); any other panel, or one whose queries do not parse as PromQL or that queries another
data source, is listed as skipped with its title, type and why. Input is hostile: its size, nesting
depth and panel count are bounded before any of it is converted.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from vigil.config.types import ConfigError
from vigil.dashboards.model import (
    GRID_COLUMNS,
    MAX_PANELS,
    MAX_QUERIES,
    MAX_VARIABLES,
    UNITS,
    Dashboard,
    Panel,
    Variable,
    check_expr,
    dashboard_from,
)
from vigil.model.duration import parse_duration
from vigil.model.show import show

__all__ = [
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_DEPTH",
    "ImportResult",
    "Skipped",
    "from_grafana",
    "parse_grafana",
    "to_grafana",
]

SCHEMA_VERSION = 39  # Grafana 10.4/11.0's classic model
DS_INPUT = "DS_PROMETHEUS"
DATASOURCE = {"type": "prometheus", "uid": "${" + DS_INPUT + "}"}
MAX_IMPORT_BYTES = 8 << 20  # Node Exporter Full is ~470 KB
MAX_IMPORT_DEPTH = 64
_REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PANEL_NAMES = {
    "timeseries": "Time series",
    "stat": "Stat",
    "gauge": "Gauge",
    "bargauge": "Bar gauge",
    "table": "Table",
    "heatmap": "Heatmap",
    "text": "Text",
}

# ---------------------------------------------------------------------------------------------
# Export


def _layout(panels: list[Panel], y: int) -> tuple[list[dict[str, int]], int]:
    """Grid positions of `panels` from row `y`: left to right, wrapping at 24 columns, each line as
    tall as its tallest panel. Returns the positions and the first free row below them."""
    out: list[dict[str, int]] = []
    x, line_height = 0, 0
    for p in panels:
        if x + p.width > GRID_COLUMNS:
            y, x, line_height = y + line_height, 0, 0
        out.append({"h": p.height, "w": p.width, "x": x, "y": y})
        x += p.width
        line_height = max(line_height, p.height)
    return out, y + line_height


def _reduce() -> dict[str, Any]:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def _options(p: Panel) -> dict[str, Any]:
    if p.kind == "timeseries":
        return {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if p.kind == "stat":
        return {
            "reduceOptions": _reduce(),
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if p.kind == "gauge":
        return {
            "reduceOptions": _reduce(),
            "orientation": "auto",
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        }
    if p.kind == "bargauge":
        return {
            "reduceOptions": _reduce(),
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    if p.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}}
    if p.kind == "heatmap":
        return {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left", "unit": p.unit},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": False},
        }
    return {"mode": "markdown", "content": p.content}


def _field_defaults(p: Panel) -> dict[str, Any]:
    d: dict[str, Any] = {"unit": p.unit, "mappings": []}
    for key in ("min", "max", "decimals"):
        if getattr(p, key) is not None:
            d[key] = getattr(p, key)
    steps = [{"color": t.color, "value": t.value} for t in p.thresholds] or [
        {"color": "green", "value": None}
    ]
    d["thresholds"] = {"mode": p.thresholds_mode, "steps": steps}
    d["color"] = {"mode": "palette-classic" if p.kind == "timeseries" else "thresholds"}
    if p.kind == "timeseries":
        d["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if p.stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stacked else "none", "group": "A"},
            # Thresholds exist to be seen: drawn as dashed lines on a graph.
            "thresholdsStyle": {"mode": "dashed" if len(p.thresholds) > 1 else "off"},
        }
    return d


def _panel(p: Panel, pid: int, pos: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": pid, "type": p.kind, "title": p.title, "gridPos": pos}
    if p.description:
        out["description"] = p.description
    if p.kind != "text":
        fmt = {"table": "table", "heatmap": "heatmap"}.get(p.kind, "time_series")
        out["datasource"] = dict(DATASOURCE)
        out["targets"] = [
            {
                "datasource": dict(DATASOURCE),
                "editorMode": "code",
                "expr": q.expr,
                "format": fmt,
                "instant": q.instant,
                "legendFormat": q.legend,
                "range": not q.instant,
                "refId": _REF_IDS[i],
            }
            for i, q in enumerate(p.queries)
        ]
    out["fieldConfig"] = {"defaults": _field_defaults(p), "overrides": []}
    out["options"] = _options(p)
    return out


def _variable(v: Variable) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": v.name,
        "label": v.label,  # empty: Grafana shows the name
        "hide": 0,
        "multi": v.multi,
        "includeAll": v.include_all,
        "skipUrlSync": False,
    }
    if v.kind == "query":
        return base | {
            "type": "query",
            "datasource": dict(DATASOURCE),
            "definition": v.query,
            "query": {"query": v.query, "refId": f"PrometheusVariableQueryEditor-{v.name}"},
            "refresh": 2,  # on time range change: hosts come and go
            "regex": "",
            "sort": 1,
            "current": {},
            "options": [],
        }
    first = v.values[0]
    options = [{"selected": i == 0, "text": x, "value": x} for i, x in enumerate(v.values)]
    out = base | {
        "type": v.kind,
        "query": ",".join(x.replace(",", "\\,") for x in v.values),  # Grafana's escape for a comma
        "current": {"selected": True, "text": first, "value": first},
        "options": options,
    }
    if v.kind == "interval":
        out |= {"auto": False, "auto_count": 30, "auto_min": "10s", "refresh": 2}
    return out


def to_grafana(d: Dashboard, grafana_version: str = "10.0.0") -> dict[str, Any]:
    """The dashboard as Grafana dashboard JSON (a dict ready for `json.dumps`)."""
    panels: list[dict[str, Any]] = []
    pid = 0
    positions, y = _layout(list(d.panels), 0)
    for p, pos in zip(d.panels, positions, strict=True):
        pid += 1
        panels.append(_panel(p, pid, pos))
    for row in d.rows:
        pid += 1
        row_json: dict[str, Any] = {
            "id": pid,
            "type": "row",
            "title": row.title,
            "collapsed": row.collapsed,
            "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
            "panels": [],
        }
        panels.append(row_json)
        positions, y = _layout(list(row.panels), y + 1)
        # A collapsed row holds its panels; an open one is followed by them.
        into = row_json["panels"] if row.collapsed else panels
        for p, pos in zip(row.panels, positions, strict=True):
            pid += 1
            into.append(_panel(p, pid, pos))
    kinds = sorted({p.kind for _, p in d.all_panels()} | ({"row"} if d.rows else set()))
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": grafana_version},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [
        {"type": "panel", "id": k, "name": _PANEL_NAMES.get(k, "Row"), "version": ""}
        for k in kinds
        if k != "row"
    ]
    ds_variable = {
        "name": DS_INPUT,
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "hide": 0,
        "multi": False,
        "includeAll": False,
        "refresh": 1,
        "regex": "",
        "current": {},
        "options": [],
        "skipUrlSync": False,
    }
    return {
        "__inputs": [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "the Vigil server (or any Prometheus-compatible data source)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": requires,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": d.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,  # shared crosshair, as Vigil draws panels of one page in step
        "id": None,
        "links": [],
        "panels": panels,
        "refresh": d.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(d.tags),
        "templating": {"list": [ds_variable] + [_variable(v) for v in d.variables]},
        "time": {"from": d.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": d.title,
        "uid": d.uid,
        "version": 1,
        "weekStart": "",
    }


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class Skipped:
    """A panel or variable left out of an import, and why."""

    title: str
    type: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.type} {self.title!r}: {self.reason}"


@dataclass
class ImportResult:
    dashboard: Dashboard
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # kept, but changed (an unknown unit, ...)


_KIND_OF = {
    "timeseries": "timeseries",
    "graph": "timeseries",
    "stat": "stat",
    "singlestat": "stat",
    "grafana-singlestat-panel": "stat",
    "gauge": "gauge",
    "bargauge": "bargauge",
    "table": "table",
    "table-old": "table",
    "heatmap": "heatmap",
    "text": "text",
}
_UID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_TIME_RE = re.compile(r"now(-\d+[smhdwy])?")


def _depth_ok(text: str, limit: int) -> bool:
    """Whether JSON text nests at most `limit` levels (brackets inside strings not counted); a
    linear scan, so deep input never reaches the recursive parser."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_grafana(raw: bytes, source: str) -> dict[str, Any]:
    """Grafana dashboard JSON bytes as a dict, within the import bounds; ConfigError naming `source`."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise ConfigError(f"expected at most {MAX_IMPORT_BYTES} bytes of JSON, got {len(raw)}", source=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    if not _depth_ok(text, MAX_IMPORT_DEPTH):
        raise ConfigError(f"expected JSON nested at most {MAX_IMPORT_DEPTH} levels deep", source=source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON: {e.msg}", source=source, line=e.lineno, column=e.colno) from None
    if isinstance(data, dict) and isinstance(data.get("dashboard"), dict):
        data = data["dashboard"]  # as GET /api/dashboards/uid/<uid> returns it
    elif isinstance(data, dict) and isinstance(data.get("spec"), dict) and "apiVersion" in data:
        data = data["spec"]  # Grafana 12's v1 resource: the classic model in `spec`
    if not isinstance(data, dict):
        raise ConfigError(f"expected a Grafana dashboard (a JSON object), got {show(data)}", source=source)
    return data


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _lst(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _num(v: Any) -> float | None:
    """A finite number from a number or numeric text (old panels write `"min": "0"`), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        return None
    try:
        n = float(v)
    except ValueError:
        return None
    return n if math.isfinite(n) else None  # Python's json reads NaN and Infinity; Grafana's never


def _int(v: Any, default: int, lo: int, hi: int) -> int:
    n = _num(v)
    return default if n is None or n != n else max(lo, min(hi, int(n)))


class _Importer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.skipped: list[Skipped] = []
        self.notes: list[str] = []
        self.values: dict[str, str] = {}  # variable sample values for the PromQL check
        self.count = 0
        self.elements: dict[str, Any] = {}  # library panels by uid (`__elements` of a shared export)

    # Variables ------------------------------------------------------------------------------

    def variables(self, templating: Any) -> list[dict[str, Any]]:
        items = templating.get("list") if isinstance(templating, dict) else None
        out: list[dict[str, Any]] = []
        for v in _lst(items)[: 4 * MAX_VARIABLES]:  # beyond, no dashboard is plausibly meant
            if not isinstance(v, dict):
                continue
            name, kind = _str(v.get("name")), _str(v.get("type"))
            if kind == "datasource":
                continue  # Vigil queries itself
            if len(out) == MAX_VARIABLES or name in self.values:
                why = "a variable of this name came before" if name in self.values else "too many variables"
                self.skipped.append(Skipped(name, f"{kind} variable", why))
                continue
            converted = self._variable(v, name, kind)
            if isinstance(converted, str):
                self.skipped.append(Skipped(name, f"{kind or 'untyped'} variable", converted))
                continue
            try:
                var = Variable.model_validate(converted)
            except ValueError as e:
                self.skipped.append(Skipped(name, f"{kind} variable", _first_error(e)))
                continue
            out.append(converted)
            self.values[var.name] = var.sample_value()
        return out

    def _variable(self, v: dict[str, Any], name: str, kind: str) -> dict[str, Any] | str:
        common: dict[str, Any] = {"name": name, "multi": v.get("multi") is True}
        common["include_all"] = v.get("includeAll") is True
        if isinstance(v.get("label"), str) and v["label"]:
            common["label"] = v["label"]
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        query = _str(query).strip()
        if kind == "query":
            if not query.startswith("label_values("):
                return f"only label_values(...) queries are supported, got {show(query)}"
            if _str(v.get("regex")):
                self.notes.append(f"variable {name!r}: its regex filter {v['regex']!r} is not applied")
            return common | {"kind": "query", "query": query}
        if kind in ("custom", "interval"):
            # Grafana's custom values are comma separated, optionally `text : value`.
            parts = [p.split(" : ")[-1].strip().replace("\\,", ",") for p in re.split(r"(?<!\\),", query)]
            values = [p for p in parts if p and p != "auto"]
            return common | {"kind": kind, "values": values}
        return f"{kind or 'this'} variables are not supported"

    # Panels ---------------------------------------------------------------------------------

    def panel(self, p: dict[str, Any]) -> dict[str, Any] | None:
        library = _dict(p.get("libraryPanel"))
        if library and "targets" not in p:
            # A library panel: its definition is in `__elements` when Grafana exported the
            # dashboard for sharing; the dashboard's own reference only places it.
            model = _dict(_dict(self.elements.get(_str(library.get("uid")))).get("model"))
            if not model:
                name = _str(p.get("title"), _str(library.get("name")))
                self.skipped.append(Skipped(name, "library panel", "its definition is not in the file"))
                return None
            p = model | {"gridPos": p.get("gridPos", model.get("gridPos"))}
        gtype, title = _str(p.get("type"), "?"), _str(p.get("title"))
        if isinstance(p.get("repeat"), str) and p["repeat"]:
            self.notes.append(f"panel {title!r} repeats per ${p['repeat']} in Grafana; drawn once here")
        kind = _KIND_OF.get(gtype)
        if kind is None:
            self.skipped.append(Skipped(title, gtype, "this panel type is not drawn by Vigil"))
            return None
        ds = p.get("datasource")
        ds_type = ds.get("type") if isinstance(ds, dict) else None
        if isinstance(ds_type, str) and ds_type not in ("prometheus", "datasource") and kind != "text":
            self.skipped.append(Skipped(title, gtype, f"queries a {ds_type} data source, not Prometheus"))
            return None
        out: dict[str, Any] = {"title": title[:256], "kind": kind}
        if isinstance(p.get("description"), str) and p["description"]:
            out["description"] = p["description"][:4096]
        grid = _dict(p.get("gridPos"))
        if "span" in p and not grid:  # legacy rows: a 12-column span, height in pixels
            out["width"] = _int(p.get("span"), 6, 1, 12) * 2
            height = _str(p.get("height")).removesuffix("px") or p.get("height")
            out["height"] = _int(height, 250, 30, 3000) // 30
        else:
            out["width"] = _int(grid.get("w"), 12, 1, GRID_COLUMNS)
            out["height"] = _int(grid.get("h"), 8, 1, 100)
        if kind == "text":
            opts = _dict(p.get("options"))
            out["content"] = _str(opts.get("content"), _str(p.get("content")))[:65536]
            return self._valid(out, gtype)
        queries = []
        for t in _lst(p.get("targets")):
            if not isinstance(t, dict) or t.get("hide") is True or not _str(t.get("expr")).strip():
                continue
            problem = check_expr(t["expr"], self.values)
            if problem is not None:
                why = f"query {t.get('refId', '?')} is not PromQL Vigil parses: {problem}"
                self.skipped.append(Skipped(title, gtype, why))
                return None
            q: dict[str, Any] = {"expr": t["expr"]}
            if _str(t.get("legendFormat")) and t["legendFormat"] != "__auto":
                q["legend"] = t["legendFormat"][:256]
            if t.get("instant") is True and t.get("range") is not True:
                q["instant"] = True
            queries.append(q)
            if len(queries) == MAX_QUERIES:  # Grafana's refIds run out at Z too; parse no more
                break
        if not queries:
            self.skipped.append(Skipped(title, gtype, "no PromQL queries"))
            return None
        out["queries"] = queries
        out |= self._fields(p, gtype, title)
        return self._valid(out, gtype)

    def _valid(self, out: dict[str, Any], gtype: str) -> dict[str, Any] | None:
        try:
            Panel.model_validate(out)
        except ValueError as e:
            self.skipped.append(Skipped(out["title"], gtype, _first_error(e)))
            return None
        return out

    def _fields(self, p: dict[str, Any], gtype: str, title: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fc = _dict(p.get("fieldConfig"))
        d = _dict(fc.get("defaults"))
        unit: Any = d.get("unit")
        if gtype == "graph":  # Grafana 7's graph: the left y axis' format, `stack`
            axes = p.get("yaxes")
            if isinstance(axes, list) and axes and isinstance(axes[0], dict):
                unit = axes[0].get("format")
                out["min"], out["max"] = _num(axes[0].get("min")), _num(axes[0].get("max"))
            out["stacked"] = p.get("stack") is True
        elif gtype in ("singlestat", "grafana-singlestat-panel"):
            unit = p.get("format")
            out["thresholds"] = _singlestat_thresholds(p)
        if isinstance(unit, str) and unit:
            if unit in UNITS:
                out["unit"] = unit
            else:
                self.notes.append(f"panel {title!r}: unit {unit!r} is not one Vigil formats; drawn as short")
        for key in ("min", "max"):
            if _num(d.get(key)) is not None:
                out[key] = _num(d[key])
        if _num(d.get("decimals")) is not None:
            out["decimals"] = _int(d["decimals"], 0, 0, 10)
        th = d.get("thresholds")
        if isinstance(th, dict) and isinstance(th.get("steps"), list):
            steps: list[dict[str, Any]] = []
            for i, s in enumerate(th["steps"][:20]):
                if isinstance(s, dict):
                    value = None if i == 0 else _num(s.get("value"))
                    steps.append({"value": value, "color": _str(s.get("color"), "green")})
            rest = sorted((s for s in steps[1:] if s["value"] is not None), key=lambda s: s["value"])
            kept = steps[:1] + rest
            if kept and kept != [{"value": None, "color": "green"}]:  # that one is Grafana's default
                out["thresholds"] = kept
            if th.get("mode") == "percentage":
                out["thresholds_mode"] = "percentage"
        custom = _dict(d.get("custom"))
        stacking = custom.get("stacking")
        if isinstance(stacking, dict) and stacking.get("mode") in ("normal", "percent"):
            out["stacked"] = True
        return {k: v for k, v in out.items() if v is not None}

    def panels(self, items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(panels above the first row, rows) from a classic `panels[]`, in grid order."""
        top: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for p in sorted((p for p in items if isinstance(p, dict)), key=_grid_order):
            self._count()
            if p.get("type") == "row":
                nested = [q for q in _lst(p.get("panels")) if isinstance(q, dict)]
                row: dict[str, Any] = {
                    "title": _str(p.get("title"))[:256],
                    "collapsed": p.get("collapsed") is True,
                    "panels": [],
                }
                for q in sorted(nested, key=_grid_order):
                    self._count()
                    converted = self.panel(q)
                    if converted is not None:
                        row["panels"].append(converted)
                rows.append(row)
                continue
            converted = self.panel(p)
            if converted is None:
                continue
            if rows and rows[-1]["collapsed"]:
                # Grafana shows a panel placed after a collapsed row (the row holds only its own
                # nested panels), so it goes under an untitled open row rather than out of sight.
                rows.append({"title": "", "collapsed": False, "panels": []})
            (rows[-1]["panels"] if rows else top).append(converted)
        return top, rows

    def legacy_rows(self, items: list[Any]) -> list[dict[str, Any]]:
        rows = []
        for r in items:
            if not isinstance(r, dict):
                continue
            row: dict[str, Any] = {
                "title": _str(r.get("title"))[:256],
                "collapsed": r.get("collapse") is True,
                "panels": [],
            }
            for p in _lst(r.get("panels")):
                self._count()
                if isinstance(p, dict) and (converted := self.panel(p)) is not None:
                    row["panels"].append(converted)
            rows.append(row)
        return rows

    def _count(self) -> None:
        self.count += 1
        if self.count > MAX_PANELS:
            raise ConfigError(
                f"expected at most {MAX_PANELS} panels, got more", source=self.source, key="panels"
            )


def _grid_order(p: dict[str, Any]) -> tuple[int, int]:
    g = _dict(p.get("gridPos"))
    return (_int(g.get("y"), 0, 0, 1 << 30), _int(g.get("x"), 0, 0, GRID_COLUMNS))


def _singlestat_thresholds(p: dict[str, Any]) -> list[dict[str, Any]] | None:
    # singlestat: `thresholds: "80,90"` and `colors: [base, warn, crit]`.
    values = [_num(v) for v in _str(p.get("thresholds")).split(",") if v.strip()]
    colors = _lst(p.get("colors"))
    if not values or None in values or len(colors) < len(values) + 1:
        return None
    return [{"value": None, "color": colors[0]}] + [
        {"value": v, "color": c} for v, c in zip(values, colors[1:], strict=False)
    ]


def _first_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        first = errors()[0]
        ctx = first.get("ctx", {}).get("error")
        return str(ctx) if ctx is not None else str(first.get("msg"))
    return str(e)


def _uid_of(data: dict[str, Any], title: str) -> str:
    uid = _str(data.get("uid"))
    if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        return uid
    slug = _UID_CHARS.sub("-", title.lower()).strip("-")[:40]
    return slug or "imported"


def from_grafana(data: dict[str, Any], source: str) -> ImportResult:
    """A Grafana dashboard (parsed JSON, see `parse_grafana`) as a Vigil dashboard, with what was
    skipped. Raises ConfigError naming `source` when the result is not a valid dashboard."""
    imp = _Importer(source)
    imp.elements = _dict(data.get("__elements"))
    title = _str(data.get("title"), "Imported dashboard").strip()[:256] or "Imported dashboard"
    variables = imp.variables(data.get("templating"))
    if isinstance(data.get("panels"), list):
        top, rows = imp.panels(data["panels"])
    elif isinstance(data.get("rows"), list):
        top, rows = [], imp.legacy_rows(data["rows"])
    else:
        top, rows = [], []
    doc: dict[str, Any] = {"title": title, "uid": _uid_of(data, title), "variables": variables}
    if isinstance(data.get("description"), str):
        doc["description"] = data["description"][:4096]
    tags = data.get("tags")
    if isinstance(tags, list):
        doc["tags"] = [t[:64] for t in tags if isinstance(t, str) and t][:20]
    time = data.get("time")
    if isinstance(time, dict) and isinstance(time.get("from"), str):
        if _TIME_RE.fullmatch(time["from"]):
            doc["time_from"] = time["from"]
        else:
            imp.notes.append(f"time range from {time['from']!r} is not a relative time; now-6h used")
    refresh = data.get("refresh")
    if refresh in (False, None, ""):
        doc["refresh"] = ""
    elif isinstance(refresh, str):
        try:
            parse_duration(refresh)
            doc["refresh"] = refresh
        except ValueError:
            imp.notes.append(f"refresh {refresh!r} is not a duration; 1m used")
    doc["panels"], doc["rows"] = top, rows
    return ImportResult(dashboard_from(doc, source), imp.skipped, imp.notes)

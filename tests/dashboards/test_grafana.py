"""Grafana dashboard JSON: what Vigil exports is valid against a JSON Schema of Grafana's classic
dashboard model (ours, `grafana-dashboard.schema.json`, written from Grafana's documented JSON model;
not Grafana's official schema), export -> import gives the same dashboard back, and a Node Exporter
Full-style dashboard imports with the panels Vigil cannot draw listed as skipped.

No Grafana server is installable here (Debian has none, npm/PyPI ship none), so the import into a
real Grafana is not tested; the schema check stands in for it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.config.types import ConfigError
from vigil.config.validate import load_yaml
from vigil.dashboards.grafana import (
    MAX_IMPORT_BYTES,
    MAX_IMPORT_DEPTH,
    Skipped,
    from_grafana,
    parse_grafana,
    to_grafana,
)
from vigil.dashboards.load import load_builtin
from vigil.dashboards.model import Dashboard, check_expr, dashboard_from, to_yaml

HERE = Path(__file__).parent
SCHEMA = json.loads((HERE / "grafana-dashboard.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
FIXTURE = HERE / "fixtures" / "node-exporter-full-style.json"

EVERYTHING: dict[str, Any] = {
    "title": "Everything",
    "uid": "everything",
    "description": "every panel kind and variable kind",
    "tags": ["a", "b"],
    "time_from": "now-2d",
    "refresh": "",
    "variables": [
        {
            "name": "instance",
            "label": "Host",
            "query": "label_values(up, instance)",
            "multi": True,
            "include_all": True,
        },
        {"name": "window", "kind": "interval", "values": ["5m", "1h"]},
        {"name": "n", "kind": "custom", "values": ["5", "10"]},
        {"name": "sep", "kind": "custom", "values": ["a,b", "c"]},
    ],
    "panels": [
        {"title": "About", "kind": "text", "content": "# Hello", "width": 24, "height": 2},
        {
            "title": "Up",
            "kind": "stat",
            "queries": [{"expr": 'sum(up{instance=~"$instance"})', "instant": True}],
            "unit": "none",
            "decimals": 0,
            "width": 16,
        },
        {
            "title": "Top",
            "kind": "table",
            "queries": [{"expr": "topk($n, up)", "instant": True, "legend": "{{job}}"}],
            "width": 10,
        },
    ],
    "rows": [
        {
            "title": "Open",
            "panels": [
                {
                    "title": "Rate",
                    "queries": [
                        {"expr": "rate(vigil_http_requests_total[$window])", "legend": "{{vhost}}"},
                        {"expr": "rate(vigil_http_requests_total[$__rate_interval])"},
                    ],
                    "unit": "reqps",
                    "stacked": True,
                    "min": 0,
                    "width": 12,
                    "height": 6,
                },
                {
                    "title": "Gauge",
                    "kind": "gauge",
                    "queries": [{"expr": "avg(up)", "instant": True}],
                    "unit": "percentunit",
                    "min": 0,
                    "max": 1,
                    "thresholds_mode": "percentage",
                    "thresholds": [{"value": None, "color": "green"}, {"value": 80, "color": "#e02f44"}],
                    "width": 6,
                    "height": 6,
                },
                {
                    "title": "Bars",
                    "kind": "bargauge",
                    "queries": [{"expr": "up", "instant": True}],
                    "width": 12,
                },
            ],
        },
        {
            "title": "Closed",
            "collapsed": True,
            "panels": [
                {
                    "title": "Latency",
                    "kind": "heatmap",
                    "queries": [
                        {"expr": "sum by (le) (rate(vigil_http_request_duration_seconds_bucket[5m]))"}
                    ],
                    "unit": "s",
                    "width": 24,
                },
            ],
        },
    ],
}


def _dashboards() -> list[Dashboard]:
    return [x.dashboard for x in load_builtin()] + [dashboard_from(EVERYTHING, "everything.yml")]


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("d", _dashboards(), ids=lambda d: d.uid)
def test_export_is_valid_grafana_json(d: Dashboard) -> None:
    exported = json.loads(json.dumps(to_grafana(d)))  # what is written is JSON, nothing else
    assert _errors(exported) == []


def test_schema_catches_what_grafana_would_refuse() -> None:
    """The schema is not vacuous: each of these breaks an export in a way Grafana's import chokes on."""
    good = to_grafana(dashboard_from(EVERYTHING, "everything.yml"))
    breakages = [
        (lambda g: g["panels"][1]["gridPos"].update(w=25), "25 is greater than the maximum of 24"),
        (lambda g: g["panels"][1]["gridPos"].pop("y"), "'y' is a required property"),
        (lambda g: g["panels"][1]["targets"][0].pop("refId"), "'refId' is a required property"),
        (lambda g: g["panels"][1].pop("datasource"), "'datasource' is a required property"),
        (lambda g: g.pop("uid"), "'uid' is a required property"),
        (lambda g: g["templating"]["list"][1].pop("query"), "'query' is a required property"),
        (
            lambda g: g["panels"][5]["fieldConfig"]["defaults"]["thresholds"]["steps"].reverse(),
            "",  # the base step (value null) must be first
        ),
        (lambda g: g["panels"][3].update(collapsed=False, panels=[g["panels"][4]]), ""),
    ]
    for change, message in breakages:
        broken = copy.deepcopy(good)
        change(broken)
        errors = _errors(broken)
        assert errors, message
        assert any(message in e for e in errors), errors


def test_export_shape() -> None:
    g = to_grafana(dashboard_from(EVERYTHING, "everything.yml"))
    assert g["__inputs"][0]["name"] == "DS_PROMETHEUS" and g["__inputs"][0]["pluginId"] == "prometheus"
    ds_var = g["templating"]["list"][0]
    assert (ds_var["name"], ds_var["type"], ds_var["query"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    assert [v["name"] for v in g["templating"]["list"][1:]] == ["instance", "window", "n", "sep"]
    assert g["templating"]["list"][4]["query"] == "a\\,b,c"
    types = [(p["type"], p["title"]) for p in g["panels"]]
    assert types == [
        ("text", "About"),
        ("stat", "Up"),
        ("table", "Top"),
        ("row", "Open"),
        ("timeseries", "Rate"),
        ("gauge", "Gauge"),
        ("bargauge", "Bars"),
        ("row", "Closed"),
    ]
    grid = [(p["title"], p["gridPos"]) for p in g["panels"]]
    assert grid == [
        ("About", {"h": 2, "w": 24, "x": 0, "y": 0}),
        ("Up", {"h": 8, "w": 16, "x": 0, "y": 2}),
        ("Top", {"h": 8, "w": 10, "x": 0, "y": 10}),  # 16 + 10 > 24: wraps
        ("Open", {"h": 1, "w": 24, "x": 0, "y": 18}),
        ("Rate", {"h": 6, "w": 12, "x": 0, "y": 19}),
        ("Gauge", {"h": 6, "w": 6, "x": 12, "y": 19}),
        ("Bars", {"h": 8, "w": 12, "x": 0, "y": 25}),
        ("Closed", {"h": 1, "w": 24, "x": 0, "y": 33}),
    ]
    closed = g["panels"][-1]
    assert closed["collapsed"] is True
    assert [(p["type"], p["gridPos"]) for p in closed["panels"]] == [
        ("heatmap", {"h": 8, "w": 24, "x": 0, "y": 34})
    ]
    rate = g["panels"][4]
    assert [(t["refId"], t["expr"], t["legendFormat"]) for t in rate["targets"]] == [
        ("A", "rate(vigil_http_requests_total[$window])", "{{vhost}}"),
        ("B", "rate(vigil_http_requests_total[$__rate_interval])", ""),
    ]
    assert all(t["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for t in rate["targets"])
    assert rate["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    gauge = g["panels"][5]["fieldConfig"]["defaults"]
    assert gauge["unit"] == "percentunit" and (gauge["min"], gauge["max"]) == (0, 1)
    assert gauge["thresholds"] == {
        "mode": "percentage",
        "steps": [{"color": "green", "value": None}, {"color": "#e02f44", "value": 80}],
    }
    assert len({p["id"] for p in g["panels"] + closed["panels"]}) == 9
    assert g["time"] == {"from": "now-2d", "to": "now"} and g["refresh"] == ""


@pytest.mark.parametrize("d", _dashboards(), ids=lambda d: d.uid)
def test_round_trip_keeps_everything(d: Dashboard) -> None:
    exported = json.loads(json.dumps(to_grafana(d)))
    result = from_grafana(exported, "exported.json")
    assert result.skipped == [] and result.notes == []
    assert result.dashboard == d  # queries, units, thresholds, sizes, rows, variables
    assert to_grafana(result.dashboard) == to_grafana(d)  # and so the same grid positions


def test_node_exporter_full_style_import() -> None:
    result = from_grafana(parse_grafana(FIXTURE.read_bytes(), str(FIXTURE)), str(FIXTURE))
    d = result.dashboard
    assert (d.title, d.uid, d.time_from, d.refresh) == (
        "Node Exporter Full (style fixture)",
        "rYdddlPWk-fixture",
        "now-24h",
        "1m",
    )
    # The datasource variable is dropped, the query and custom ones kept, the textbox one skipped.
    assert [(v.name, v.kind) for v in d.variables] == [
        ("job", "query"),
        ("nodename", "query"),
        ("node", "query"),
        ("diskdevices", "custom"),
    ]
    assert d.variables[2].query == 'label_values(node_uname_info{job="$job", nodename="$nodename"}, instance)'
    assert d.panels == ()
    assert [(r.title, r.collapsed, [p.title for p in r.panels]) for r in d.rows] == [
        # Sorted by grid position, not by order in the file (this row's panels are listed backwards).
        (
            "Quick CPU / Mem / Disk",
            False,
            ["Pressure", "CPU Busy", "Sys Load", "RAM Used", "CPU Cores", "Uptime"],
        ),
        (
            "Basic CPU / Mem / Net / Disk",
            False,
            ["CPU Basic", "Memory Basic", "Network Traffic Basic", "Disk Space Used Basic"],
        ),
        (
            "CPU / Memory / Net / Disk",
            True,
            ["CPU", "Network Traffic by Packets", "Disk IOps", "Hardware temperature monitor"],
        ),
        ("System Misc", True, ["Processes Status", "File descriptors used"]),
        ("", False, ["About"]),  # after a collapsed row, still shown: under an untitled open row
    ]
    assert result.skipped == [
        Skipped("filter", "textbox variable", "textbox variables are not supported"),
        Skipped("Processes by state", "piechart", "this panel type is not drawn by Vigil"),
        Skipped("Log volume", "timeseries", "queries a loki data source, not Prometheus"),
        Skipped(
            "Context Switches (broken query)",
            "timeseries",
            "query A is not PromQL Vigil parses: 1:62: parse error: unclosed left parenthesis",
        ),
        Skipped("Firing alerts", "alertlist", "this panel type is not drawn by Vigil"),
    ]
    assert result.notes == [
        "panel 'Hardware temperature monitor': unit 'celsius-weird' is not one Vigil formats; drawn as short"
    ]
    panels = {p.title: p for _, p in d.all_panels()}
    pressure = panels["Pressure"]
    assert (pressure.kind, pressure.unit, pressure.thresholds_mode, pressure.width, pressure.height) == (
        "bargauge",
        "percentunit",
        "percentage",
        3,
        4,
    )
    assert [(t.value, t.color) for t in pressure.thresholds] == [
        (None, "green"),
        (70, "dark-yellow"),
        (90, "dark-red"),
    ]
    assert [(q.legend, q.instant) for q in pressure.queries] == [("CPU", True), ("Mem", True), ("I/O", True)]
    assert "[$__rate_interval]" in pressure.queries[0].expr
    busy = panels["CPU Busy"]
    assert (busy.kind, busy.unit, busy.min, busy.max, busy.decimals) == ("gauge", "percent", 0, 100, 1)
    assert busy.thresholds[1].color == "rgba(237, 129, 40, 0.89)"
    assert panels["Uptime"].unit == "s" and panels["CPU Basic"].stacked  # percent stacking is stacking
    assert not panels["Memory Basic"].stacked and panels["Network Traffic Basic"].unit == "bps"
    assert (
        panels["Disk IOps"].unit == "iops" and len(panels["Disk IOps"].queries) == 2
    )  # the hidden one dropped
    legacy = panels["Processes Status"]  # Grafana 7's graph panel
    assert (legacy.kind, legacy.unit, legacy.min, legacy.stacked, legacy.width, legacy.height) == (
        "timeseries",
        "short",
        0,
        True,
        12,
        10,
    )
    single = panels["File descriptors used"]
    assert (single.kind, single.unit) == ("stat", "percent")
    assert [(t.value, t.color) for t in single.thresholds] == [
        (None, "#299c46"),
        (80, "rgba(237, 129, 40, 0.89)"),
        (90, "#d44a3a"),
    ]
    assert panels["About"].content == "Fixture footer: see **README**."
    assert sum(len(p.queries) for p in panels.values()) == 26
    # What it wrote loads back as a dashboard file, and exports as valid Grafana JSON.
    again = dashboard_from(load_yaml(to_yaml(d), "imported.yml"), "imported.yml")
    assert again == d
    assert _errors(json.loads(json.dumps(to_grafana(again)))) == []
    values = {v.name: v.sample_value() for v in d.variables}
    assert all(check_expr(q.expr, values) is None for p in panels.values() for q in p.queries)


def test_legacy_rows_import() -> None:
    old = {
        "title": "Old",
        "schemaVersion": 14,
        "rows": [
            {
                "title": "CPU",
                "collapse": False,
                "panels": [
                    {
                        "type": "graph",
                        "title": "Load",
                        "span": 6,
                        "height": "300px",
                        "targets": [{"expr": "node_load1", "refId": "A"}],
                        "yaxes": [{"format": "short"}, {}],
                    },
                    {
                        "type": "singlestat",
                        "title": "Up",
                        "span": 3,
                        "format": "none",
                        "targets": [{"expr": "up", "refId": "A"}],
                    },
                ],
            },
            {
                "title": "Hidden",
                "collapse": True,
                "height": "250px",
                "panels": [{"type": "dashlist", "title": "Links", "span": 12}],
            },
        ],
    }
    result = from_grafana(old, "old.json")
    d = result.dashboard
    assert d.uid == "old"  # none given: from the title
    assert [(r.title, r.collapsed) for r in d.rows] == [("CPU", False), ("Hidden", True)]
    assert [(p.title, p.kind, p.width, p.height) for p in d.rows[0].panels] == [
        ("Load", "timeseries", 12, 10),
        ("Up", "stat", 6, 8),
    ]
    assert result.skipped == [Skipped("Links", "dashlist", "this panel type is not drawn by Vigil")]


def test_api_wrapper_and_v1_resource_accepted() -> None:
    inner = {
        "title": "T",
        "uid": "t",
        "panels": [{"type": "stat", "title": "x", "targets": [{"expr": "up"}]}],
    }
    for wrapped in (
        {"dashboard": inner, "meta": {}},
        {"apiVersion": "dashboard.grafana.app/v1", "spec": inner},
    ):
        data = parse_grafana(json.dumps(wrapped).encode(), "w.json")
        assert from_grafana(data, "w.json").dashboard.panels[0].title == "x"


def test_import_input_is_bounded() -> None:
    with pytest.raises(ConfigError, match=rf"big\.json: expected at most {MAX_IMPORT_BYTES} bytes"):
        parse_grafana(b" " * (MAX_IMPORT_BYTES + 1), "big.json")
    # Refused by the linear scan, before the recursive JSON parser sees it (which would raise
    # RecursionError, or worse, at this depth).
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(
        ConfigError, match=rf"deep\.json: expected JSON nested at most {MAX_IMPORT_DEPTH} levels"
    ):
        parse_grafana(deep, "deep.json")
    ok = b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    assert parse_grafana(ok, "ok.json")  # brackets inside strings do not count
    with pytest.raises(ConfigError, match=r"^bad\.json:1:2: invalid JSON"):
        parse_grafana(b"{,}", "bad.json")
    with pytest.raises(
        ConfigError, match=r"^list\.json: expected a Grafana dashboard \(a JSON object\), got a list"
    ):
        parse_grafana(b"[1]", "list.json")
    stat = {"type": "stat", "title": "s", "targets": [{"expr": "up"}]}
    many = {
        "title": "many",
        "panels": [{"type": "row", "title": "r", "collapsed": True, "panels": [stat] * 501}],
    }
    with pytest.raises(ConfigError, match=r"^many\.json: panels: expected at most 500 panels"):
        from_grafana(many, "many.json")


def test_non_finite_numbers_are_dropped() -> None:
    text = (
        b'{"title": "n", "panels": [{"type": "gauge", "title": "g", "targets": [{"expr": "up"}],'
        b' "fieldConfig": {"defaults": {"min": NaN, "max": Infinity, "decimals": -Infinity,'
        b' "thresholds": {"steps": [{"color": "green"}, {"color": "red", "value": NaN}]}}}}]}'
    )
    [p] = from_grafana(parse_grafana(text, "n.json"), "n.json").dashboard.panels
    assert (p.min, p.max, p.decimals, p.thresholds) == (None, None, None, ())


def test_hostile_values_are_clamped_or_skipped() -> None:
    doc = {
        "title": 42,
        "uid": "not a valid uid!",
        "refresh": "sometimes",
        "time": {"from": "2020-01-01"},
        "templating": {"list": [{"type": "query", "name": "x", "query": "query_result(up)"}, "junk"]},
        "panels": [
            {
                "type": "timeseries",
                "title": "w",
                "gridPos": {"w": 1000, "h": -3, "x": "a", "y": None},
                "targets": [{"expr": "up", "legendFormat": "x" * 10_000}],
                "fieldConfig": {
                    "defaults": {
                        "decimals": 99,
                        "thresholds": {
                            "steps": [
                                {"color": "green"},
                                {"color": "red", "value": 90},
                                {"color": "orange", "value": 80},
                            ]
                        },
                    }
                },
            },
            {"type": "stat", "title": "no queries", "targets": [{"expr": ""}, {"refId": "B"}]},
            {
                "type": "stat",
                "title": "bad color",
                "targets": [{"expr": "up"}],
                "fieldConfig": {"defaults": {"thresholds": {"steps": [{"color": "no such colour!"}]}}},
            },
            "not a panel",
        ],
    }
    result = from_grafana(doc, "hostile.json")
    d = result.dashboard
    assert (d.title, d.uid, d.refresh, d.time_from) == (
        "Imported dashboard",
        "imported-dashboard",
        "1m",
        "now-6h",
    )
    [p] = d.panels
    assert (p.width, p.height, p.decimals, len(p.queries[0].legend)) == (24, 1, 10, 256)
    assert [t.value for t in p.thresholds] == [None, 80, 90]  # put in order
    assert [(s.title, s.type) for s in result.skipped] == [
        ("x", "query variable"),
        ("no queries", "stat"),
        ("bad color", "stat"),
    ]
    assert "expected a color" in result.skipped[2].reason
    assert len(result.notes) == 2


def test_library_panels_repeats_and_escaped_custom_values() -> None:
    stat = {
        "type": "stat",
        "title": "Shared",
        "targets": [{"expr": "up", "refId": "A"}],
        "repeat": "instance",
    }
    doc = {
        "title": "Lib",
        "__elements": {"lib-1": {"name": "Shared", "uid": "lib-1", "kind": 1, "model": stat}},
        "templating": {
            "list": [
                {"type": "custom", "name": "pairs", "query": "a\\,b,c"},
                {"type": "query", "name": "host", "query": "label_values(up, instance)", "regex": "/web.*/"},
            ]
        },
        "panels": [
            {
                "id": 1,
                "gridPos": {"h": 3, "w": 5, "x": 0, "y": 0},
                "libraryPanel": {"uid": "lib-1", "name": "Shared"},
            },
            {
                "id": 2,
                "gridPos": {"h": 3, "w": 5, "x": 5, "y": 0},
                "libraryPanel": {"uid": "gone", "name": "Gone"},
            },
        ],
    }
    result = from_grafana(doc, "lib.json")
    [p] = result.dashboard.panels
    assert (p.title, p.kind, p.width, p.height, p.queries[0].expr) == ("Shared", "stat", 5, 3, "up")
    assert result.skipped == [Skipped("Gone", "library panel", "its definition is not in the file")]
    assert result.notes == [
        "variable 'host': its regex filter '/web.*/' is not applied",
        "panel 'Shared' repeats per $instance in Grafana; drawn once here",
    ]
    assert result.dashboard.variables[0].values == ("a,b", "c")


def test_import_work_per_panel_and_variable_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import vigil.dashboards.grafana as grafana

    parsed: list[str] = []
    real = grafana.check_expr
    monkeypatch.setattr(grafana, "check_expr", lambda e, v: parsed.append(e) or real(e, v))
    targets = [{"expr": f'up{{n="{i}"}}', "refId": "A"} for i in range(10_000)]
    variables = [{"type": "custom", "name": f"v{i % 60}", "query": "a"} for i in range(100_000)]
    doc = {
        "title": "t",
        "templating": {"list": variables},
        "panels": [{"type": "stat", "title": "s", "targets": targets}],
    }
    result = from_grafana(doc, "t.json")
    assert len(parsed) == 26 and len(result.dashboard.panels[0].queries) == 26
    assert len(result.dashboard.variables) == 50
    assert len(result.skipped) == 200 - 50  # only the first 200 are looked at
    assert result.skipped[0] == Skipped("v50", "custom variable", "too many variables")
    assert Skipped("v0", "custom variable", "a variable of this name came before") in result.skipped


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from(
    ["type", "title", "gridPos", "targets", "fieldConfig", "datasource", "panels", "collapsed", "options",
     "yaxes", "stack", "format", "thresholds", "colors", "libraryPanel", "repeat", "span", "height"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    panel=st.dictionaries(_KEYS, _JSON, max_size=6),
    variable=st.dictionaries(
        st.sampled_from(["type", "name", "query", "multi", "includeAll", "label"]), _JSON
    ),
    top=st.dictionaries(st.sampled_from(["title", "uid", "time", "refresh", "tags", "__elements"]), _JSON),
)
def test_any_json_imports_or_is_one_config_error(
    panel: dict[str, Any], variable: dict[str, Any], top: dict[str, Any]
) -> None:
    """Whatever shape the values have, import returns a valid dashboard or raises ConfigError."""
    fixture = json.loads(FIXTURE.read_text())
    fixture["panels"].append(panel)
    next(p for p in fixture["panels"] if p.get("collapsed"))["panels"].append(panel)  # in a row too
    fixture["templating"]["list"].append(variable)
    fixture.update(top)
    try:
        result = from_grafana(fixture, "fuzz.json")
    except ConfigError:
        return
    assert isinstance(result.dashboard, Dashboard)

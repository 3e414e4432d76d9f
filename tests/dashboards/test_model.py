"""The dashboard file schema: one-line `file: key.path: expected ..., got ...` errors, the PromQL check
of every query after Grafana-style variable substitution, and YAML that loads back equal."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.isolated import run_isolated
from vigil.config.types import ConfigError
from vigil.dashboards.load import load_file
from vigil.dashboards.model import Dashboard, check_expr, dashboard_from, substitute, to_yaml

BASE: dict[str, Any] = {
    "title": "Web",
    "uid": "web",
    "variables": [
        {"name": "instance", "query": 'label_values(node_uname_info{job="node"}, instance)', "multi": True},
        {"name": "window", "kind": "interval", "values": ["5m", "1h"]},
        {"name": "limit", "kind": "custom", "values": ["10", "20"]},
    ],
    "rows": [
        {
            "title": "Traffic",
            "panels": [
                {
                    "title": "Requests",
                    "queries": [{"expr": 'sum(rate(vigil_http_requests_total{instance=~"$instance"}[5m]))'}],
                    "unit": "reqps",
                    "thresholds": [{"value": None, "color": "green"}, {"value": 100, "color": "red"}],
                }
            ],
        }
    ],
}


def _with(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def _panel(doc: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = doc["rows"][0]["panels"][0]
    return p


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: _panel(d).update(unit="kilobytes"),
            "dash.yml: rows[0].panels[0].unit: expected a Grafana unit id (none, short, percent,",
        ),
        (
            lambda d: _panel(d).update(kind="piechart"),
            "dash.yml: rows[0].panels[0].kind: expected one of timeseries, stat, gauge, bargauge, table, "
            'heatmap, text, got "piechart"',
        ),
        (
            lambda d: _panel(d).update(width=25),
            "dash.yml: rows[0].panels[0].width: expected an integer <= 24, got 25",
        ),
        (
            lambda d: _panel(d).update(height=0),
            "dash.yml: rows[0].panels[0].height: expected an integer >= 1, got 0",
        ),
        (
            lambda d: _panel(d).update(colour="red"),
            "dash.yml: rows[0].panels[0].colour: unknown key (expected one of: title, description, kind,",
        ),
        (
            lambda d: _panel(d)["queries"][0].update(expr="sum(rate(x[5m])"),
            'dash.yml: rows[0].panels[0].queries[0].expr: expected PromQL, got "sum(rate(x[5m])": '
            "1:4: parse error: unclosed left parenthesis",
        ),
        (
            lambda d: _panel(d).update(queries=[]),
            "dash.yml: rows[0].panels[0].queries: expected at least one query on a timeseries panel, "
            "got none",
        ),
        (
            lambda d: _panel(d).update(
                thresholds=[{"value": 90, "color": "red"}, {"value": 80, "color": "orange"}]
            ),
            "dash.yml: rows[0].panels[0].thresholds: expected steps in increasing value order",
        ),
        (
            lambda d: _panel(d).update(thresholds=[{"value": 1, "color": "not a color"}]),
            "dash.yml: rows[0].panels[0].thresholds[0].color: expected a color like red, dark-yellow or "
            '#e02f44, got "not a color"',
        ),
        (
            lambda d: _panel(d).update(max=float("nan")),
            "dash.yml: rows[0].panels[0].max: expected a finite number, got nan",
        ),
        (
            lambda d: _panel(d).update(min="0"),
            'dash.yml: rows[0].panels[0].min: expected a finite number, got "0"',
        ),
        (
            lambda d: _panel(d).update(decimals=True),
            "dash.yml: rows[0].panels[0].decimals: expected an integer from 0 to 10, got true",
        ),
        (
            lambda d: d.update(uid="has spaces"),
            "dash.yml: uid: expected a uid of 1 to 40 letters, digits, _ or -, like node-host, "
            'got "has spaces"',
        ),
        (lambda d: d.pop("title"), "dash.yml: title: field required"),
        (
            lambda d: d.update(time_from="yesterday"),
            'dash.yml: time_from: expected a relative time like now-6h, got "yesterday"',
        ),
        (
            lambda d: d.update(refresh="often"),
            'dash.yml: refresh: expected a duration like 15d, got "often"',
        ),
        (
            lambda d: d["variables"][0].update(query="query_result(up)"),
            "dash.yml: variables[0].query: expected label_values(metric, label) or label_values(label), "
            'got "query_result(up)"',
        ),
        (
            lambda d: d["variables"][0].update(query="label_values(up{job=}, instance)"),
            'dash.yml: variables[0].query: expected a PromQL selector in label_values, got "up{job=}"',
        ),
        (
            lambda d: d["variables"][1].update(values=["5m", "soon"]),
            'dash.yml: variables[1].values[1]: expected a duration like 15d, got "soon"',
        ),
        (
            lambda d: d["variables"][2].update(values=[]),
            "dash.yml: variables[2].values: expected at least one value for a custom variable, got none",
        ),
        (
            lambda d: d["variables"].append({"name": "instance", "kind": "custom", "values": ["a"]}),
            'dash.yml: variables[3].name: expected a name not used before, got "instance"',
        ),
        (
            lambda d: d["variables"].append({"name": "__interval", "kind": "custom", "values": ["a"]}),
            'dash.yml: variables[3].name: expected a variable name like instance, got "__interval"',
        ),
        (
            lambda d: d["rows"][0].update(
                panels=[{"title": "t", "kind": "text", "queries": [{"expr": "up"}]}]
            ),
            "dash.yml: rows[0].panels[0].queries: expected no queries on a text panel, got 1",
        ),
    ],
)
def test_errors_name_file_and_key(change: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        dashboard_from(_with(change), "dash.yml")
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("title: Web\nuid: web\npanels:\n  - title: x\n    queries: [{expr: 'up{'}]\n")
    with pytest.raises(ConfigError) as e:
        load_file(path)
    assert str(e.value).startswith(f'{path}: panels[0].queries[0].expr: expected PromQL, got "up{{"')
    path.write_text("title: Web\ntitle: again\nuid: web\n")
    with pytest.raises(ConfigError, match=r"web\.yml:2:1: invalid YAML: duplicate key \"title\""):
        load_file(path)


@pytest.mark.parametrize(
    "expr",
    [
        'rate(node_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])',
        'rate(node_cpu_seconds_total{instance=~"${instance}"}[$__interval])',
        'rate(node_cpu_seconds_total{instance=~"${instance:regex}"}[${__range}])',
        'rate(node_cpu_seconds_total{instance=~"[[instance]]"}[$window])',
        "increase(vigil_auth_attempts_total[$__range]) / $__range_s",
        "topk($limit, node_load1)",
        'label_replace(up, "host", "$1", "instance", "(.*):.*")',  # `$1` is no variable: left alone
        "sum_over_time(up[$__range:$__interval]) * $__interval_ms / $__range_ms",
    ],
)
def test_queries_with_variables_parse(expr: str) -> None:
    doc = _with(lambda d: _panel(d)["queries"][0].update(expr=expr))
    d = dashboard_from(doc, "dash.yml")
    assert d.rows[0].panels[0].queries[0].expr == expr  # the file's text is kept, not the substitution


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        (
            "rate(node_cpu_seconds_total[$instance])",
            "unexpected character inside brackets",
        ),  # a label value, not a range
        ("topk($undefined, up)", "parse error"),  # unknown variables stay as written
        ("sum(rate(up[$__rate_interval])", "unclosed left parenthesis"),
    ],
)
def test_queries_that_only_look_like_promql_are_refused(expr: str, reason: str) -> None:
    doc = _with(lambda d: _panel(d)["queries"][0].update(expr=expr))
    with pytest.raises(ConfigError, match=reason):
        dashboard_from(doc, "dash.yml")


def test_substitute_forms() -> None:
    values = {"instance": "host-1", "window": "5m"}
    assert substitute("$instance ${instance} ${instance:pipe} [[instance]] [[instance:csv]]", values) == (
        "host-1 host-1 host-1 host-1 host-1"
    )
    assert (
        substitute("[$__rate_interval] [$window] $__range_s $other $1", values) == "[1m] [5m] 3600 $other $1"
    )
    # A page drawing the dashboard passes its range's real values.
    assert (
        substitute("[$__rate_interval] $__range_s", {}, {"__rate_interval": "2m", "__range_s": "60"})
        == "[2m] 60"
    )
    assert check_expr('up{a="$x"}', {}) is None
    assert check_expr("up[$x]", {}) is not None


def test_base_threshold_added_and_yaml_round_trip() -> None:
    doc = _with(lambda d: _panel(d).update(thresholds=[{"value": 80, "color": "red"}]))
    d = dashboard_from(doc, "dash.yml")
    steps = d.rows[0].panels[0].thresholds
    assert [(t.value, t.color) for t in steps] == [(None, "green"), (80.0, "red")]
    from vigil.config.validate import load_yaml

    again = dashboard_from(load_yaml(to_yaml(d), "again.yml"), "again.yml")
    assert again == d
    assert isinstance(again, Dashboard)


def test_panel_count_bounded() -> None:
    panel = {"title": "p", "queries": [{"expr": "up"}]}
    doc = {"title": "t", "uid": "t", "rows": [{"panels": [panel] * 300}, {"panels": [panel] * 201}]}
    with pytest.raises(
        ConfigError, match=r"dash\.yml: panels: expected at most 500 panels in a dashboard, got 501"
    ):
        dashboard_from(doc, "dash.yml")


def test_alias_amplified_panels_refused_before_validation() -> None:
    """A 9 KB file naming one row of 500 panels 500 times through YAML aliases: refused from the
    parsed document's shape. Validating its 250,000 panels first took 40 s and 3.4 GB here, so the
    child runs under a 1 GiB address-space limit and fails if the count comes after validation."""
    outcome = run_isolated(
        """
        from vigil.config.types import ConfigError
        from vigil.config.validate import load_yaml
        from vigil.dashboards.model import dashboard_from

        qs = ", ".join(["&q {expr: up}"] + ["*q"] * 25)
        panels = "\\n".join(["      - &p {title: p, queries: [" + qs + "]}"] + ["      - *p"] * 499)
        rows = "\\n".join(["  - &r\\n    panels:\\n" + panels] + ["  - *r"] * 499)
        try:
            dashboard_from(load_yaml("title: t\\nuid: t\\nrows:\\n" + rows + "\\n", "bomb.yml"), "bomb.yml")
        except ConfigError as e:
            print(e)
        """,
        max_bytes=1 << 30,
    )
    assert outcome.ok, outcome.stderr[-2000:]
    assert outcome.stdout == "bomb.yml: panels: expected at most 500 panels in a dashboard, got 250000\n"


def test_an_expression_used_many_times_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import vigil.dashboards.model as model

    calls: list[str] = []
    real = model.check_expr

    def counting(expr: str, values: Mapping[str, str]) -> str | None:
        calls.append(expr)
        return real(expr, values)

    monkeypatch.setattr(model, "check_expr", counting)
    expr = (
        'sum(rate(node_cpu_seconds_total{instance=~"'
        + "|".join(f"host-{i}" for i in range(1500))
        + '"}[5m]))'
    )
    panel = {"title": "p", "queries": [{"expr": expr}] * 26}
    d = dashboard_from({"title": "t", "uid": "t", "panels": [panel] * 500}, "dash.yml")
    assert sum(len(p.queries) for _, p in d.all_panels()) == 13_000
    assert calls == [expr]


_YAML_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**4), 10**4) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_PANEL_KEYS = st.sampled_from(
    ["title", "kind", "queries", "unit", "thresholds", "thresholds_mode", "min", "max", "decimals", "stacked",
     "width", "height", "content", "expr"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    panel=st.dictionaries(_PANEL_KEYS, _YAML_VALUE, max_size=5),
    variable=st.dictionaries(st.sampled_from(["name", "kind", "query", "values", "multi"]), _YAML_VALUE),
    top=st.dictionaries(
        st.sampled_from(["title", "uid", "time_from", "refresh", "tags", "rows"]), _YAML_VALUE
    ),
)
def test_any_document_loads_or_is_one_config_error(
    panel: dict[str, Any], variable: dict[str, Any], top: dict[str, Any]
) -> None:
    doc = copy.deepcopy(BASE)
    doc["rows"][0]["panels"].append(panel)
    doc["variables"].append(variable)
    doc.update(top)
    try:
        dashboard_from(doc, "fuzz.yml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.yml: ") and "\n" not in str(e)

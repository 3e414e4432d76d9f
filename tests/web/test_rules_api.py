"""`/api/v1/rules` and `/api/v1/alerts`: Prometheus' JSON shapes and formats, its filters, refusals,
and tenants (the manager's rules are the default tenant's: a tenant's reader sees none)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from tests.web.asgi import Client
from vigil.model.labels import Labels
from vigil.rules.manager import Manager, ManagerSettings
from vigil.rules.types import ListAppender, Sample
from vigil.rules.view import AlertView, GroupView
from vigil.storage.interface import SeriesSet
from vigil.web.app import create_app
from vigil.web.auth import Tenant, TokenAuth
from vigil.web.rules_api import RulesAPI, format_go_e, rfc3339_nano

RULES = """groups:
- name: g
  interval: 30s
  rules:
  - record: job:up
    expr: sum by(job)(up)
  - record: labelled
    expr: up
    labels: {x: y}
  - alert: Fires
    expr: up>0
    keep_firing_for: 90s
    labels: {severity: page}
    annotations: {summary: s}
  - alert: Other
    expr: up
- name: other
  rules:
  - alert: Quiet
    expr: up < 0
    for: 5m
"""


class NoStore:
    def select(self, *_: object) -> SeriesSet:
        return SeriesSet.empty()


def fake_query(expr: str, ts: int) -> list[Sample]:
    if expr == "up":
        return [Sample(Labels.from_dict({"__name__": "up", "job": "a"}), 1.0)]
    if expr.startswith("sum"):
        return [Sample(Labels.from_dict({"job": "a"}), 1.0)]
    if expr == "up>0":
        return [Sample(Labels.from_dict({"job": "a"}), 1234.5)]
    return []


@pytest.fixture
def manager(tmp_path: object) -> Manager:
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "rules.yml").write_text(RULES)
    m = Manager(
        ManagerSettings(rule_files=("rules.yml",), base_dir=d),
        query=fake_query,
        appender=ListAppender(),
        storage=NoStore(),  # type: ignore[arg-type]
        clock=lambda: 1_700_000_000_000,
        builtin=None,
        registry=CollectorRegistry(),
    )
    m.run_once(1_700_000_000_000)
    due = m.next_due()
    assert due is not None
    m.run_once(due + 60_000)  # both groups evaluated once
    return m


def client(source: object, auth: TokenAuth | None = None) -> Client:
    return Client(create_app([RulesAPI(source, auth or TokenAuth([], []))], registry=None))  # type: ignore[arg-type]


def test_rules_shape(manager: Manager) -> None:
    r = client(manager).get("/api/v1/rules")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success"
    g, other = body["data"]["groups"]
    assert list(g) == ["name", "file", "rules", "interval", "limit", "evaluationTime", "lastEvaluation"]
    assert g["name"] == "g" and g["file"].endswith("rules.yml") and g["interval"] == 30 and g["limit"] == 0
    assert other["interval"] == 60
    rec, labelled, fires, other_rule = g["rules"]
    assert list(rec) == ["name", "query", "health", "evaluationTime", "lastEvaluation", "type"]
    assert rec["query"] == "sum by (job) (up)" and rec["type"] == "recording"  # printed as Prometheus does
    assert labelled["labels"] == {"x": "y"}
    assert list(fires) == [
        "state",
        "name",
        "query",
        "duration",
        "keepFiringFor",
        "labels",
        "annotations",
        "alerts",
        "health",
        "evaluationTime",
        "lastEvaluation",
        "type",
    ]
    assert fires["state"] == "firing" and fires["query"] == "up > 0" and fires["keepFiringFor"] == 90
    (a,) = fires["alerts"]
    assert a["value"] == "1.2345e+03" and a["state"] == "firing"
    assert a["labels"] == {"alertname": "Fires", "job": "a", "severity": "page"}
    assert a["activeAt"].endswith("Z")
    quiet = other["rules"][0]
    assert quiet["state"] == "inactive" and quiet["alerts"] == [] and quiet["duration"] == 300
    assert other_rule["health"] == "ok"


def test_rule_expressions_are_printed_once_and_off_the_event_loop(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Printing an expression parses it (about 0.4 ms): done per rule on every poll, on the event
    # loop, 1,000 rules stalled every other request for 0.4 s.
    import threading

    import promql_parser

    from vigil.web import rules_api

    rules_api.display_expr.cache_clear()
    parses: list[str] = []
    real = promql_parser.parse

    def counting(expr: str) -> object:
        parses.append(threading.current_thread().name)
        return real(expr)

    monkeypatch.setattr(rules_api.promql_parser, "parse", counting)
    c = client(manager)
    for _ in range(3):
        assert c.get("/api/v1/rules").status_code == 200
    assert len(parses) == 4  # the distinct expressions of RULES, once each
    assert threading.main_thread().name not in parses


def test_last_error_and_unevaluated(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "r.yml").write_text("groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n")

    def failing(expr: str, ts: int) -> list[Sample]:
        raise RuntimeError("boom")

    m = Manager(
        ManagerSettings(rule_files=("r.yml",), base_dir=d),
        query=failing,
        appender=ListAppender(),
        storage=NoStore(),  # type: ignore[arg-type]
        clock=lambda: 0,
        builtin=None,
    )
    (rule,) = client(m).get("/api/v1/rules").json()["data"]["groups"][0]["rules"]
    assert rule["health"] == "unknown" and rule["lastEvaluation"] == "0001-01-01T00:00:00Z"
    assert "lastError" not in rule
    m.run_once(0)
    m.run_once(m.next_due() or 0)
    (rule,) = client(m).get("/api/v1/rules").json()["data"]["groups"][0]["rules"]
    assert rule["health"] == "err" and rule["lastError"] == "boom"


def test_filters(manager: Manager) -> None:
    c = client(manager)

    def names(url: str) -> list[tuple[str, str]]:
        return [(g["name"], r["name"]) for g in c.get(url).json()["data"]["groups"] for r in g["rules"]]

    assert names("/api/v1/rules?type=record") == [("g", "job:up"), ("g", "labelled")]
    assert names("/api/v1/rules?type=alert&rule_group[]=other") == [("other", "Quiet")]
    assert names("/api/v1/rules?rule_name[]=Fires&rule_name[]=Quiet") == [("g", "Fires"), ("other", "Quiet")]
    assert names("/api/v1/rules?file[]=nope") == []
    assert names('/api/v1/rules?match[]={severity="page"}') == [("g", "Fires")]
    assert names('/api/v1/rules?match[]={x="y"}&match[]={severity=~"p.*"}') == [
        ("g", "labelled"),
        ("g", "Fires"),
    ]
    g = c.get("/api/v1/rules?exclude_alerts=true&rule_name[]=Fires").json()["data"]["groups"][0]
    assert "alerts" not in g["rules"][0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("type=x", 'invalid parameter "type": not supported value "x"'),
        ("exclude_alerts=maybe", 'invalid parameter "exclude_alerts": '),
        ('match[]={x=~"("}', 'invalid parameter "match[]": '),
        (
            'match[]={x=""}',
            'invalid parameter "match[]": 1:6: parse error: vector selector must contain',
        ),
    ],
)
def test_bad_parameters(manager: Manager, query: str, message: str) -> None:
    r = client(manager).get("/api/v1/rules?" + query)
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert r.json()["error"].startswith(message)


def test_alerts(manager: Manager) -> None:
    body = client(manager).get("/api/v1/alerts").json()
    alerts = body["data"]["alerts"]
    assert [a["labels"]["alertname"] for a in alerts] == ["Fires", "Other"]  # firing ones, rule order
    assert all(list(a) == ["labels", "annotations", "state", "activeAt", "value"] for a in alerts)


class Views:
    def __init__(self, groups: Sequence[GroupView], alerts: Sequence[AlertView]) -> None:
        self.g, self.a = groups, alerts

    def rule_groups(self) -> Sequence[GroupView]:
        return self.g

    def active_alerts(self) -> Sequence[AlertView]:
        return self.a


def test_tenant_reader_sees_nothing_global_reader_everything(manager: Manager) -> None:
    auth = TokenAuth([], ["global"], [Tenant("t1", (), ("t1-read",))])
    c = client(manager, auth)
    for path, key in (("/api/v1/rules", "groups"), ("/api/v1/alerts", "alerts")):
        assert c.get(path, headers={"Authorization": "Bearer t1-read"}).json()["data"][key] == []
        assert c.get(path, headers={"Authorization": "Bearer global"}).json()["data"][key] != []
        assert c.get(path).status_code == 401


def test_keep_firing_since_shown() -> None:
    a = AlertView({"alertname": "A"}, {}, "firing", 1000, 1.0, keep_firing_since_ms=61_500)
    (out,) = client(Views([], [a])).get("/api/v1/alerts").json()["data"]["alerts"]
    assert out["keepFiringSince"] == "1970-01-01T00:01:01.5Z" and out["activeAt"] == "1970-01-01T00:00:01Z"


@pytest.mark.parametrize(
    ("v", "want"),
    [
        (1.0, "1e+00"),
        (0.0, "0e+00"),
        (-2.5, "-2.5e+00"),
        (1234.5, "1.2345e+03"),
        (1e-7, "1e-07"),
        (1.5e300, "1.5e+300"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (100.0, "1e+02"),
    ],
)
def test_format_go_e(v: float, want: str) -> None:
    assert format_go_e(v) == want


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_120) == "2023-11-14T22:13:20.12Z"
    assert rfc3339_nano(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339_nano(None) == "0001-01-01T00:00:00Z"

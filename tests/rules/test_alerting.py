"""The alert state machine against Prometheus 3.x semantics, driven by evaluation timestamps."""

from __future__ import annotations

from vigil.model.labels import Labels
from vigil.rules.alerting import AlertingRule, AlertState
from vigil.rules.group import Group, group_offset_ns
from vigil.rules.types import ListAppender, Sample

M = 60_000


def series(points: dict[int, float]):  # minute -> value; absent minutes return nothing
    def query(expr: str, ts_ms: int) -> list[Sample]:
        v = points.get(ts_ms // M)
        return [] if v is None else [Sample(Labels.from_dict({"__name__": "x", "job": "j"}), v)]

    return query


def run(rule: AlertingRule, points: dict[int, float], minutes: range) -> dict[int, list[AlertState]]:
    q = series(points)
    out = {}
    for m in minutes:
        rule.eval(m * M, 0, q, 0)
        out[m] = [a.state for a in rule.active_alerts()]
    return out


def test_for_pending_then_firing_and_pending_dropped_at_once() -> None:
    r = AlertingRule("A", "x", for_ms=2 * M)
    states = run(r, {0: 1, 1: 1, 2: 1, 4: 1}, range(6))
    assert states[0] == [AlertState.PENDING] and states[1] == [AlertState.PENDING]
    assert states[2] == [AlertState.FIRING]
    assert states[3] == []  # resolved: not active
    assert states[4] == [AlertState.PENDING] and states[5] == []


def test_for_zero_fires_at_first_evaluation() -> None:
    r = AlertingRule("A", "x")
    assert run(r, {0: 1}, range(1))[0] == [AlertState.FIRING]


def test_keep_firing_for_boundary_and_frozen_annotations() -> None:
    # last true 31m, first false 32m, keep 10m -> firing at 41m, gone at 42m
    r = AlertingRule("A", "x", keep_firing_for_ms=10 * M, annotations={"v": "{{ $value }}"})
    r.expander = lambda text, **kw: str(kw["value"])  # stand-in until the real engine lands
    pts = dict.fromkeys(range(32), 30.0)
    states = run(r, pts, range(43))
    assert states[41] == [AlertState.FIRING] and states[42] == []
    assert r.all_alerts()[0].annotations == {"v": "30.0"}


def test_alerts_and_for_state_samples() -> None:
    r = AlertingRule("A", "x", for_ms=10 * M)
    q = series({0: 1, 4: 1, **dict.fromkeys(range(5), 1)})
    for m in range(5):
        out = r.eval(m * M, 0, q, 0)
    by_name = {s.labels.metric_name: s for s in out}
    assert by_name["ALERTS_FOR_STATE"].value == 0.0
    assert by_name["ALERTS"].labels.get("alertstate") == "pending"
    assert by_name["ALERTS_FOR_STATE"].labels.get("alertstate") == ""


def test_resolved_resent_for_15_minutes() -> None:
    r = AlertingRule("A", "x")
    q = series({0: 1})
    sent = {}
    for m in range(20):
        r.eval(m * M, 0, q, 0)
        sent[m] = [a.state for a in r.alerts_to_send(m * M, M, M)]
    assert sent[0] == [AlertState.FIRING]
    assert sent[1] == [AlertState.INACTIVE]  # resolved: at once
    assert sent[2] == [] and sent[3] == [AlertState.INACTIVE]  # then every resend delay (strictly after)
    assert sent[17] == []  # retention over


def test_limit_and_duplicates() -> None:
    r = AlertingRule("A", "x")
    g = Group("g", "f.yml", [r], interval_ms=M, limit=0)

    def two(expr: str, ts: int) -> list[Sample]:
        return [Sample(Labels.from_dict({"i": str(i)}), 1) for i in range(2)]

    g.limit = 1
    g.eval(0, two, ListAppender())
    assert r.status.health == "err" and r.status.last_error == "exceeded limit of 1 with 2 alerts"
    r.labels = {"i": "same"}
    g.limit = 0
    g.eval(M, two, ListAppender())
    assert "same labelset after applying alert labels" in r.status.last_error


def test_group_phase_is_stable_and_within_interval() -> None:
    off = group_offset_ns("g", "f.yml", M)
    assert 0 <= off < M * 1_000_000
    g = Group("g", "f.yml", [], interval_ms=M)
    t = g.eval_timestamp(10 * M + 5)
    # slots are ns-exact in Prometheus; ms timestamps are the slot floored, so +1 ms is in the slot
    assert t <= 10 * M + 5 and g.eval_timestamp(t + 1) == t and g.eval_timestamp(t + M + 1) == t + M

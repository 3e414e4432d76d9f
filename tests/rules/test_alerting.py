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


def test_flapping_restarts_for_each_time() -> None:
    r = AlertingRule("A", "x", for_ms=2 * M)
    states = run(r, {0: 1, 1: 1, 3: 1, 4: 1, 6: 1, 7: 1, 8: 1}, range(9))
    assert all(states[m] != [AlertState.FIRING] for m in range(8))  # never 2 minutes in a row
    assert states[8] == [AlertState.FIRING]
    assert r.active_alerts()[0].active_at_ms == 6 * M


def test_query_offset_queries_earlier_and_stamps_earlier() -> None:
    asked = []

    def q(expr: str, ts: int) -> list[Sample]:
        asked.append(ts)
        return [Sample(Labels.from_dict({"a": "b"}), 1)]

    r = AlertingRule("A", "x")
    g = Group("g", "f.yml", [r], interval_ms=M, query_offset_ms=30_000)
    app = ListAppender()
    g.eval(10 * M, q, app)
    assert asked == [10 * M - 30_000]
    assert {t for _, t, _ in app.samples} == {10 * M - 30_000}
    assert r.active_alerts()[0].active_at_ms == 10 * M  # the alert's clock is the evaluation time


def test_valid_until_is_four_times_max_interval_resend() -> None:
    r = AlertingRule("A", "x")
    run(r, {0: 1}, range(1))
    (a,) = r.alerts_to_send(0, M, 5 * M)
    assert a.valid_until_ms == 4 * 5 * M and r.alerts_to_send(30_000, M, 5 * M) == []


def test_restored_active_at_in_future_of_for_goes_back_to_pending() -> None:
    r = AlertingRule("A", "x", for_ms=10 * M)
    q = series(dict.fromkeys(range(30), 1.0))
    for m in range(12):
        r.eval(m * M, 0, q, 0)
    (a,) = r.active_alerts()
    assert a.state is AlertState.FIRING
    a.active_at_ms = 8 * M  # as a restore moves it
    r.eval(12 * M, 0, q, 0)
    assert a.state is AlertState.PENDING and a.fired_at_ms is None
    r.eval(18 * M, 0, q, 0)
    assert a.state is AlertState.FIRING


def test_stale_markers_for_resolved_alert_series() -> None:
    r = AlertingRule("A", "x")
    g = Group("g", "f.yml", [r], interval_ms=M)
    app = ListAppender()
    q = series({0: 1})
    g.eval(0, q, app)
    g.eval(M, q, app)
    at_1m = [(lb.metric_name, v) for lb, t, v in app.samples if t == M]
    assert sorted(n for n, _ in at_1m) == ["ALERTS", "ALERTS_FOR_STATE"]
    assert all(v != v for _, v in at_1m)  # NaN stale markers

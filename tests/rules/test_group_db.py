"""Groups evaluated over a real tsdb DB with Vigil's engine: write-back, query_offset, staleness,
ALERTS_FOR_STATE, the `for` restore after a restart, and the group metrics."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.tsdb.clock import FakeClock
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql.engine import Engine
from vigil.rules.alerting import AlertState
from vigil.rules.group import Group, RuleMetrics, RuleOptions, groups_from_spec
from vigil.rules.query import StorageAppender, engine_query
from vigil.rules.rulefmt import parse_rule_text
from vigil.tsdb.db import DB, Options

M = 60_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[DB, FakeClock]]:
    clock = FakeClock(10 * 3_600_000)
    d = DB(tmp_path, Options(fsync=False, out_of_order_window_ms=24 * 3_600_000), now_ms=clock)
    yield d, clock
    d.close()


def put(db: DB, name: str, points: list[tuple[int, float]], **labels: str) -> None:
    ref = db.series_ref(Labels.from_dict({"__name__": name, **labels}))
    ts = np.array([t for t, _ in points], np.int64)
    db.append(np.full(ts.size, ref), ts, np.array([v for _, v in points], np.float64))


def read(db: DB, name: str) -> dict[Labels, list[tuple[int, float]]]:
    out = {}
    for lb, ts, vs in db.select([Matcher.eq("__name__", name)], 0, 2**62):
        out[lb] = list(zip(ts.tolist(), vs.tolist(), strict=True))
    return out


def group(text: str, **kw: object) -> Group:
    spec, errs = parse_rule_text(text, "rules.yml")
    assert not errs and spec is not None
    return groups_from_spec(spec, RuleOptions(), **kw)[0]  # type: ignore[arg-type]


def is_stale(v: float) -> bool:
    return math.isnan(v) and struct.pack("<d", v) == struct.pack("<Q", 0x7FF0000000000002)


def test_recording_rule_written_back_with_offset_and_stale_marker(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    put(d, "up", [(base + i * M, 1.0) for i in range(3)], job="a")
    g = group("groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: job:up\n    expr: up\n")
    q, app = engine_query(Engine(d)), StorageAppender(d)
    for i in range(1, 4):
        g.eval(base + i * M, q, app)
    got = read(d, "job:up")[Labels.from_dict({"__name__": "job:up", "job": "a"})]
    # queried and stamped at ts - 1m; at base+3m the query (base+2m) still sees data (lookback)
    assert [t for t, _ in got] == [base, base + M, base + 2 * M]
    g.eval(base + 10 * M, q, app)  # the series is gone (past lookback): a stale marker
    got = read(d, "job:up")[Labels.from_dict({"__name__": "job:up", "job": "a"})]
    assert got[-1][0] == base + 9 * M and is_stale(got[-1][1])


def test_alerts_for_state_is_active_at_in_seconds(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    put(d, "m", [(base + i * M, 1.0) for i in range(10)])
    g = group("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: 10m\n")
    q, app = engine_query(Engine(d)), StorageAppender(d)
    for i in range(5):
        g.eval(base + i * M, q, app)
    fs = read(d, "ALERTS_FOR_STATE")
    (series,) = fs.values()
    assert series[-1] == (base + 4 * M, base / 1000)  # active since base, in unix seconds
    (alerts,) = read(d, "ALERTS")
    assert alerts.get("alertstate") == "pending"


def restart_case(d: DB, stop_at_min: int, restart_at_min: int, for_min: int) -> Group:
    base = 9 * 3_600_000
    put(d, "m", [(base + i * M, 1.0) for i in range(0, 61)])
    text = f"groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 0\n    for: {for_min}m\n"
    g = group(text)
    q, app = engine_query(Engine(d)), StorageAppender(d)
    for i in range(stop_at_min + 1):
        g.eval(base + i * M, q, app)
    g2 = group(text)  # the restarted process
    g2.mark_unrestored()
    ts = base + restart_at_min * M
    g2.eval(ts, q, app)
    # not restored yet: the first evaluation after the restart writes no ALERTS
    assert all(t <= base + stop_at_min * M for series in read(d, "ALERTS").values() for t, _ in series)
    g2.restore_for_state(ts, d)
    return g2


def test_restore_during_pending_resumes_remaining_time(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    # pending 20 of 60 minutes, down 5 minutes: 40 minutes left, counted from the restart
    g = restart_case(d, 20, 25, 60)
    (a,) = g.rules[0].active_alerts()  # type: ignore[union-attr]
    assert a.active_at_ms == base + 5 * M


def test_restore_during_firing_keeps_it_firing(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    g = restart_case(d, 30, 32, 15)  # fired at 15m; restored active_at stays base
    (a,) = g.rules[0].active_alerts()  # type: ignore[union-attr]
    assert a.active_at_ms == base
    q, app = engine_query(Engine(d)), StorageAppender(d)
    g.eval(base + 33 * M, q, app)
    assert [x.state for x in g.rules[0].active_alerts()] == [AlertState.FIRING]  # type: ignore[union-attr]


def test_restore_near_end_waits_the_grace_period(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    g = restart_case(d, 12, 14, 15)  # 3 minutes left < 10m grace: fires 10m after the restart
    (a,) = g.rules[0].active_alerts()  # type: ignore[union-attr]
    assert a.active_at_ms == base + 14 * M + 10 * M - 15 * M


def test_short_for_not_restored(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    g = restart_case(d, 8, 9, 5)  # for 5m < grace 10m: waits `for` again
    (a,) = g.rules[0].active_alerts()  # type: ignore[union-attr]
    assert a.active_at_ms == base + 9 * M


def test_metrics_and_health(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    reg = CollectorRegistry()
    g = group(
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n  - record: b\n    expr: rate(up[5m])\n",
        metrics=RuleMetrics(reg),
    )
    g.rules[1].expr = "up + on() group_left() up"  # valid at load, fails at evaluation (many-to-many)
    put(d, "up", [(9 * 3_600_000, 1.0)], job="a")
    put(d, "up", [(9 * 3_600_000, 1.0)], job="b")
    g.eval(9 * 3_600_000, engine_query(Engine(d)), StorageAppender(d))
    assert [r.status.health for r in g.rules] == ["ok", "err"] and g.rules[1].status.last_error
    key = {"rule_group": "rules.yml;g"}
    assert reg.get_sample_value("vigil_rule_evaluations_total", key) == 2
    assert reg.get_sample_value("vigil_rule_evaluation_failures_total", key) == 1


def test_rules_run_in_file_order_and_see_earlier_results(db: tuple[DB, FakeClock]) -> None:
    d, _ = db
    base = 9 * 3_600_000
    put(d, "up", [(base, 1.0)], job="a")
    g = group(
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up * 2\n  - record: b\n    expr: a + 1\n"
    )
    g.eval(base, engine_query(Engine(d)), StorageAppender(d))
    (b,) = read(d, "b").values()
    assert b == [(base, 3.0)]


def test_missed_iterations_counted(db: tuple[DB, FakeClock]) -> None:
    reg = CollectorRegistry()
    g = group("groups:\n- name: g\n  rules: []\n", metrics=RuleMetrics(reg))
    g.missed(3)
    g.missed(0)
    assert (
        reg.get_sample_value("vigil_rule_group_iterations_missed_total", {"rule_group": "rules.yml;g"}) == 3
    )

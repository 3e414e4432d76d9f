"""One scenario run through Debian's `promtool test rules` and through Vigil's group evaluation over a
real DB: `for: 10m` fires at 10m (not 9m), ALERTS_FOR_STATE is ActiveAt in seconds, and
`keep_firing_for: 10m` after the last true evaluation at 31m keeps it firing at 41m, gone at 42m.
(Only firing alerts count, as in promtool's alert_rule_test. Windows here are not at a boundary, so
2.42's closed and 3.x's left-open lookback agree.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql.engine import Engine
from vigil.rules.alerting import AlertingRule
from vigil.rules.group import RuleOptions, load_groups
from vigil.rules.query import StorageAppender, engine_query
from vigil.tsdb.db import DB, Options

M = 60_000
RULES = (
    "groups:\n- name: g\n  interval: 1m\n  rules:\n"
    "  - alert: A\n    expr: m > 10\n    for: 10m\n    keep_firing_for: 10m\n"
)
UNIT = """rule_files: [r.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'm{job="j"}'
    values: '30x31 0x20'
  promql_expr_test:
  - expr: ALERTS_FOR_STATE
    eval_time: 4m
    exp_samples:
    - labels: 'ALERTS_FOR_STATE{alertname="A",job="j"}'
      value: 0
  alert_rule_test:
  - {eval_time: 9m, alertname: A, exp_alerts: []}
  - {eval_time: 10m, alertname: A, exp_alerts: [{exp_labels: {job: j}}]}
  - {eval_time: 41m, alertname: A, exp_alerts: [{exp_labels: {job: j}}]}
  - {eval_time: 42m, alertname: A, exp_alerts: []}
"""
EXPECT_FIRING = {9: False, 10: True, 41: True, 42: False}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_agrees_with_the_expectations(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(RULES)
    (tmp_path / "t.yml").write_text(UNIT)
    p = subprocess.run(["promtool", "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_vigil_gives_the_same(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text(RULES)
    (g,) = load_groups([str(tmp_path / "r.yml")], RuleOptions())
    opts = Options(fsync=False, out_of_order_window_ms=3_600_000)  # the rules write behind the input
    with DB(tmp_path / "db", opts, now_ms=lambda: 60 * M) as db:
        ref = db.series_ref(Labels.from_dict({"__name__": "m", "job": "j"}))
        ts = np.arange(0, 53 * M, M, dtype=np.int64)
        db.append(np.full(ts.size, ref), ts, np.where(ts <= 31 * M, 30.0, 0.0))
        q, app = engine_query(Engine(db)), StorageAppender(db)
        rule = g.rules[0]
        assert isinstance(rule, AlertingRule)
        firing = {}
        for m in range(43):
            g.eval(m * M, q, app)
            firing[m] = bool(rule.firing_alerts())
        assert {m: firing[m] for m in EXPECT_FIRING} == EXPECT_FIRING
        (lb, t, v), *_ = list(db.select([Matcher.eq("__name__", "ALERTS_FOR_STATE")], 4 * M, 4 * M))
        assert lb == Labels.from_dict({"__name__": "ALERTS_FOR_STATE", "alertname": "A", "job": "j"})
        assert t.tolist() == [4 * M] and v.tolist() == [0.0]

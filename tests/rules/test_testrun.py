"""The runner of `vigil rules test` (vigil.rules.testrun) with rule groups given to it.

The rules engine itself is compared with promtool in test_promtool_differential.py; here the groups
are small recorders, so what the runner does around them (evaluation times, group order, when alerts
are compared, stopping on a rule error) is checked step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vigil.model.labels import Labels
from vigil.rules.testfile import parse_test_file
from vigil.rules.testrun import GroupContext, LoadError, UnitAlert, UnitGroup, UnitRule, run_group


@dataclass(frozen=True)
class Fired:
    firing: bool
    labels: Labels
    annotations: Sequence[tuple[str, str]] = ()


@dataclass
class Rule:
    name: str
    fire_from_ms: int | None = None  # an alerting rule firing from then on, else a recording rule
    error_at_ms: int | None = None
    last_error: str | None = None
    now: int = -1

    def alerts(self) -> Sequence[UnitAlert] | None:
        if self.fire_from_ms is None:
            return None
        lb = Labels.from_dict({"alertname": self.name})
        return [Fired(self.now >= self.fire_from_ms, lb)]


@dataclass
class Group:
    name: str
    log: list[tuple[str, int]]
    rules: list[UnitRule] = field(default_factory=list)

    def eval(self, ts_ms: int) -> None:
        self.log.append((self.name, ts_ms))
        for r in self.rules:
            assert isinstance(r, Rule)
            r.now = ts_ms
            r.last_error = "boom" if r.error_at_ms == ts_ms else None


def run(text: str, groups: list[Group]) -> list[str]:
    utf = parse_test_file(text, "t.yml")

    def load(files: Sequence[Path], ctx: GroupContext) -> Sequence[UnitGroup]:
        assert [f.name for f in files] == ["r.yml"]
        return groups

    return run_group(utf.tests[0], utf, [Path("r.yml")], load)


def test_groups_evaluated_each_interval_in_eval_order() -> None:
    log: list[tuple[str, int]] = []
    groups = [Group("x", log), Group("b", log), Group("a", log), Group("y", log)]
    text = (
        "evaluation_interval: 2m\ngroup_eval_order: [a, b]\n"
        "tests:\n- promql_expr_test: [{expr: '1', eval_time: 5m, exp_samples: [{labels: '{}', value: 1}]}]\n"
    )
    assert run(text, groups) == []
    # unnamed groups rank like the first named one (promtool's partial order); ties keep file order
    assert log == [(g, t) for t in (0, 120_000, 240_000) for g in ("x", "a", "y", "b")]


def test_alerts_compared_with_the_evaluation_at_or_before_eval_time() -> None:
    log: list[tuple[str, int]] = []
    g = Group("g", log, [Rule("A", fire_from_ms=120_000)])
    fires = "[{exp_labels: {}}]"
    text = (
        "tests:\n- alert_rule_test:\n"
        f"  - {{eval_time: 119s, alertname: A, exp_alerts: []}}\n"
        f"  - {{eval_time: 2m, alertname: A, exp_alerts: {fires}}}\n"
        f"  - {{eval_time: 179s, alertname: A, exp_alerts: {fires}}}\n"
    )
    assert run(text, [g]) == []
    wrong = "tests:\n- alert_rule_test:\n  - {eval_time: 90s, alertname: A, exp_alerts: " + fires + "}\n"
    (err,) = run(wrong, [Group("g", [], [Rule("A", fire_from_ms=120_000)])])
    assert err.startswith("    alertname: A, time: 1m30s, \n        exp:[\n")
    assert '- missing alert {alertname="A"}' in err


def test_a_rule_error_stops_the_group() -> None:
    log: list[tuple[str, int]] = []
    g = Group("g", log, [Rule("R", error_at_ms=60_000)])
    text = (
        "tests:\n- promql_expr_test: [{expr: '1', eval_time: 5m, exp_samples: [{labels: '{}', value: 2}]}]\n"
    )
    assert run(text, [g]) == ["    rule: R, time: 1m0s, err: boom"]
    assert log == [("g", 0), ("g", 60_000)]  # nor are the promql tests run


def test_load_errors_are_the_failures() -> None:
    def load(files: Sequence[Path], ctx: GroupContext) -> Sequence[UnitGroup]:
        raise LoadError(['r.yml:3:5: group "g", rule 1, "x": bad'])

    utf = parse_test_file("tests:\n- input_series: []\n", "t.yml")
    assert run_group(utf.tests[0], utf, [Path("r.yml")], load) == ['r.yml:3:5: group "g", rule 1, "x": bad']

"""The rules engine (vigil.rules.group) as `vigil rules test` drives it.

promtool loads the rule files with the test group's external labels and URL and evaluates every
group itself, at the times the test dictates, against the test's storage: so does this. Alerting
rules report their firing alerts only, the ones promtool's alert_rule_test compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.model.labels import Labels
from vigil.rules.alerting import AlertingRule, AlertState
from vigil.rules.group import Group, RuleLoadError, RuleOptions
from vigil.rules.group import load_groups as load_rule_groups
from vigil.rules.query import StorageAppender, engine_query
from vigil.rules.recording import RecordingRule
from vigil.rules.testrun import GroupContext, LoadError, UnitAlert, UnitGroup, UnitRule
from vigil.rules.types import Appender, QueryFunc
from vigil.template.prometheus import expand


@dataclass(frozen=True)
class _Alert:
    firing: bool
    labels: Labels
    annotations: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class _Rule:
    rule: AlertingRule | RecordingRule

    @property
    def name(self) -> str:
        return str(self.rule.name)

    @property
    def last_error(self) -> str | None:
        return self.rule.status.last_error or None

    def alerts(self) -> Sequence[UnitAlert] | None:
        if not isinstance(self.rule, AlertingRule):
            return None
        return [
            _Alert(a.state == AlertState.FIRING, a.labels, sorted(a.annotations.items()))
            for a in self.rule.firing_alerts()
        ]


@dataclass(frozen=True)
class _Group:
    group: Group
    query: QueryFunc
    appender: Appender

    @property
    def name(self) -> str:
        return str(self.group.name)

    @property
    def rules(self) -> Sequence[UnitRule]:
        return [_Rule(r) for r in self.group.rules]

    def eval(self, ts_ms: int) -> None:
        self.group.eval(ts_ms, self.query, self.appender)


def load_groups(files: Sequence[Path], ctx: GroupContext) -> Sequence[UnitGroup]:
    """The groups of `files`, in file order, wired to the test's storage and engine."""
    opts = RuleOptions(
        expander=expand,
        external_labels=ctx.external_labels.to_dict(),
        external_url=ctx.external_url,
        default_interval_ms=ctx.default_interval_ms,
    )
    try:
        groups = load_rule_groups([str(f) for f in files], opts)
    except RuleLoadError as e:
        raise LoadError([str(err) for err in e.errors]) from None
    query = engine_query(ctx.engine)
    appender = StorageAppender(ctx.storage)
    return [_Group(g, query, appender) for g in groups]

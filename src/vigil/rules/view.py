"""Read-only snapshots of rule groups and alerts, for the rules and alerts APIs.

The HTTP layer shows these and nothing else: plain frozen values copied under the group's lock, so
a request never walks a dict an evaluation is changing, and never holds that lock while it writes
its response.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.rules.alerting import Alert, AlertingRule
from vigil.rules.recording import RecordingRule


@dataclass(frozen=True)
class AlertView:
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing
    active_at_ms: int
    value: float
    keep_firing_since_ms: int | None = None


@dataclass(frozen=True)
class RuleView:
    type: str  # alerting | recording, as the API's `type`
    name: str
    query: str
    labels: dict[str, str]
    health: str
    last_error: str
    last_eval_ms: int | None
    last_duration_s: float
    # alerting rules only
    state: str = "inactive"
    duration_ms: int = 0
    keep_firing_for_ms: int = 0
    annotations: dict[str, str] | None = None
    alerts: tuple[AlertView, ...] = ()


@dataclass(frozen=True)
class GroupView:
    name: str
    file: str
    interval_ms: int
    limit: int
    last_eval_ms: int | None
    last_duration_s: float
    rules: tuple[RuleView, ...]


def alert_view(a: Alert) -> AlertView:
    return AlertView(
        a.labels.to_dict(),
        dict(a.annotations),
        a.state.value,
        a.active_at_ms,
        a.value,
        a.keep_firing_since_ms,
    )


def rule_view(r: AlertingRule | RecordingRule) -> RuleView:
    st = r.status
    common = (r.name, r.expr.strip(), dict(r.labels), st.health, st.last_error, st.last_eval_ms)
    if isinstance(r, RecordingRule):
        return RuleView("recording", *common, st.last_duration_s)
    return RuleView(
        "alerting",
        *common,
        st.last_duration_s,
        state=r.state().value,
        duration_ms=r.for_ms,
        keep_firing_for_ms=r.keep_firing_for_ms,
        annotations=dict(r.annotations),
        alerts=tuple(alert_view(a) for a in r.active_alerts()),
    )

"""An alerting rule and the state of its alerts: inactive → pending → firing → resolved (3.x).

The clock is the evaluation timestamp passed to `eval`; nothing here reads the wall clock.
Semantics follow Prometheus' rules/alerting.go as of 3.x:
- pending once the expression returns the series, firing once `ts - active_at >= for` (`for: 0`
  fires on the first evaluation); a pending alert whose series is gone is dropped at once;
- a firing alert whose series is gone resolves, unless `keep_firing_for` keeps it firing (with the
  labels and annotations of its last true evaluation) while `ts - keep_firing_since < keep_firing_for`;
- resolved alerts are kept for 15 minutes so the notifier re-sends them;
- a firing alert whose `active_at` was moved by a restore so that `for` is not yet over goes back
  to pending (3.x).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from vigil.model.duration import MINUTE_MS
from vigil.model.labels import METRIC_NAME, Labels
from vigil.rules.recording import RuleEvalError, RuleStatus
from vigil.rules.types import (
    ALERTNAME,
    ALERTS_FOR_STATE_METRIC,
    ALERTS_METRIC,
    ALERTSTATE,
    Expander,
    QueryFunc,
    Sample,
)

RESOLVED_RETENTION_MS = 15 * MINUTE_MS
DUPLICATE_ALERT = "vector contains metrics with the same labelset after applying alert labels"


class AlertState(enum.Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


@dataclass
class Alert:
    labels: Labels  # the alert's identity: sample labels − __name__ + templated rule labels + alertname
    annotations: dict[str, str]
    state: AlertState
    value: float
    active_at_ms: int
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    last_sent_at_ms: int | None = None
    valid_until_ms: int | None = None
    keep_firing_since_ms: int | None = None

    def needs_sending(self, ts_ms: int, resend_delay_ms: int) -> bool:
        """Whether the notifier must (re)send this alert at `ts_ms`."""
        if self.state is AlertState.PENDING:
            return False
        if self.resolved_at_ms is not None and (
            self.last_sent_at_ms is None or self.resolved_at_ms > self.last_sent_at_ms
        ):
            return True  # resolved since the last send: send at once
        return self.last_sent_at_ms is None or self.last_sent_at_ms + resend_delay_ms < ts_ms


@dataclass
class AlertingRule:
    name: str
    expr: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    expander: Expander | None = None
    # False until the `for` state was restored after a start; ALERTS series are written only after.
    restored: bool = True
    status: RuleStatus = field(default_factory=RuleStatus)
    active: dict[Labels, Alert] = field(default_factory=dict)

    def _expand(self, text: str, sample: Sample, ts_ms: int, query: QueryFunc) -> str:
        if self.expander is None or "{{" not in text:
            return text
        try:
            return self.expander(
                text,
                name=f"__alert_{self.name}",
                labels=sample.labels.to_dict(),
                value=sample.value,
                external_labels=self.external_labels,
                external_url=self.external_url,
                timestamp_ms=ts_ms,
                query=query,
            )
        except Exception as exc:  # a broken template shows in the alert, as in Prometheus
            return f"<error expanding template: {exc}>"

    def eval(self, ts_ms: int, query_offset_ms: int, query: QueryFunc, limit: int) -> list[Sample]:
        """Advance the alerts to `ts_ms`; returns the ALERTS / ALERTS_FOR_STATE samples to write
        (stamped `ts_ms - query_offset_ms` by the caller). Raises RuleEvalError or what `query` raises."""
        result = query(self.expr, ts_ms - query_offset_ms)
        fresh: dict[Labels, Alert] = {}
        for s in result:
            d = s.labels.without(METRIC_NAME).to_dict()
            for k, v in self.labels.items():
                d[k] = self._expand(v, s, ts_ms, query)
            d[ALERTNAME] = self.name
            lb = Labels.from_dict(d)
            annotations = {k: self._expand(v, s, ts_ms, query) for k, v in self.annotations.items()}
            if lb in fresh:
                raise RuleEvalError(
                    "vector contains metrics with the same labelset after applying alert labels"
                )
            fresh[lb] = Alert(lb, annotations, AlertState.PENDING, s.value, ts_ms)

        for lb, a in fresh.items():
            old = self.active.get(lb)
            if old is not None and old.state is not AlertState.INACTIVE:
                old.value, old.annotations = a.value, a.annotations
            else:
                self.active[lb] = a

        out: list[Sample] = []
        n_active = 0
        for lb in sorted(self.active):
            a = self.active[lb]
            if lb not in fresh:
                keep = False
                if a.state is AlertState.FIRING and self.keep_firing_for_ms > 0:
                    if a.keep_firing_since_ms is None:
                        a.keep_firing_since_ms = ts_ms
                    keep = ts_ms - a.keep_firing_since_ms < self.keep_firing_for_ms
                if a.state is AlertState.PENDING or (
                    a.resolved_at_ms is not None and ts_ms - a.resolved_at_ms > RESOLVED_RETENTION_MS
                ):
                    del self.active[lb]
                if a.state is not AlertState.INACTIVE and not keep:
                    a.state, a.resolved_at_ms = AlertState.INACTIVE, ts_ms
                if not keep:
                    continue
            else:
                a.keep_firing_since_ms = None
            n_active += 1
            if a.state is AlertState.PENDING and ts_ms - a.active_at_ms >= self.for_ms:
                a.state, a.fired_at_ms = AlertState.FIRING, ts_ms
            if a.state is AlertState.FIRING and ts_ms - a.active_at_ms < self.for_ms:
                # a restore moved active_at forward: `for` is not over yet
                a.state, a.fired_at_ms, a.last_sent_at_ms, a.keep_firing_since_ms = (
                    AlertState.PENDING,
                    None,
                    None,
                    None,
                )
            if self.restored:
                out.append(self._alerts_sample(a))
                out.append(self._for_state_sample(a))
        if limit > 0 and n_active > limit:
            self.active = {}
            raise RuleEvalError(f"exceeded limit of {limit} with {n_active} alerts")
        return out

    @staticmethod
    def _alerts_sample(a: Alert) -> Sample:
        d = a.labels.to_dict()
        d[METRIC_NAME], d[ALERTSTATE] = ALERTS_METRIC, a.state.value
        return Sample(Labels.from_dict(d), 1.0)

    @staticmethod
    def _for_state_sample(a: Alert) -> Sample:
        d = a.labels.to_dict()
        d[METRIC_NAME] = ALERTS_FOR_STATE_METRIC
        return Sample(Labels.from_dict(d), float(math.floor(a.active_at_ms / 1000)))  # unix seconds

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (not resolved ones), sorted by labels."""
        return [a for _, a in sorted(self.active.items()) if a.state is not AlertState.INACTIVE]

    def firing_alerts(self) -> list[Alert]:
        """What promtool's alert_rule_test compares: firing alerts only."""
        return [a for a in self.active_alerts() if a.state is AlertState.FIRING]

    def all_alerts(self) -> list[Alert]:
        """Every alert kept, resolved ones included (for the notifier)."""
        return [a for _, a in sorted(self.active.items())]

    def state(self) -> AlertState:
        """The rule's state: the highest of its alerts' (the rules API)."""
        states = {a.state for a in self.active.values()}
        for s in (AlertState.FIRING, AlertState.PENDING):
            if s in states:
                return s
        return AlertState.INACTIVE

    def alerts_to_send(self, ts_ms: int, resend_delay_ms: int, interval_ms: int) -> list[Alert]:
        """Mark and return the alerts the notifier must send after an evaluation at `ts_ms`: firing
        ones every resend delay, resolved ones at once and then like firing ones until retention
        ends. Each copy carries `valid_until_ms` (the EndsAt Alertmanager gets for a firing alert)."""
        out: list[Alert] = []
        for a in self.all_alerts():
            if a.needs_sending(ts_ms, resend_delay_ms):
                a.last_sent_at_ms = ts_ms
                a.valid_until_ms = ts_ms + 4 * max(interval_ms, resend_delay_ms)
                out.append(replace(a, annotations=dict(a.annotations)))
        return out

"""A rule group: its rules evaluated in file order at timestamps aligned as Prometheus aligns them.

A group evaluation runs every rule once at `ts` (the query at `ts - query_offset`), writes what
the rules produce (recording results, ALERTS, ALERTS_FOR_STATE) stamped `ts - query_offset`,
and a stale marker for each series a rule wrote last time but not this time. Rules run one after
the other in file order, with no dependency analysis: a rule sees what earlier rules of the same
evaluation wrote. Rules run untenanted for now (they query and write the whole store).

Nothing reads the clock but `eval`'s duration measurement (the `clock` passed in); the scheduler
that calls `eval` on a timer is the caller's.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.model.labels import METRIC_NAME, Labels
from vigil.model.matcher import Matcher
from vigil.rules.alerting import Alert, AlertingRule
from vigil.rules.recording import RecordingRule
from vigil.rules.rulefmt import RuleError, RuleFileSpec, TemplateCheck, parse_rule_file
from vigil.rules.types import ALERTNAME, ALERTS_FOR_STATE_METRIC, Appender, Expander, QueryFunc
from vigil.rules.xxhash64 import xxh64
from vigil.storage.interface import Queryable

log = logging.getLogger(__name__)

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

Rule = AlertingRule | RecordingRule


@dataclass(frozen=True)
class RuleOptions:
    """Settings shared by all groups (Prometheus' flags and global config, with its defaults)."""

    expander: Expander | None = None
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    default_interval_ms: int = 60_000  # global.evaluation_interval
    default_query_offset_ms: int = 0  # global.rule_query_offset
    outage_tolerance_ms: int = 3_600_000  # --rules.alert.for-outage-tolerance
    grace_period_ms: int = 600_000  # --rules.alert.for-grace-period
    resend_delay_ms: int = 60_000  # --rules.alert.resend-delay


class RuleMetrics:
    """The rule manager's own metrics, in a registry the caller passes (labelled by group key
    `file;name`, as Prometheus' `rule_group`)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Summary

        g = ["rule_group"]
        self.evaluations = Counter("vigil_rule_evaluations_total", "Rule evaluations.", g, registry=registry)
        self.failures = Counter(
            "vigil_rule_evaluation_failures_total", "Rule evaluations that failed.", g, registry=registry
        )
        self.duration = Summary(
            "vigil_rule_evaluation_duration_seconds", "Duration of rule evaluations.", registry=registry
        )
        self.last_duration = Gauge(
            "vigil_rule_group_last_duration_seconds",
            "Duration of the last group evaluation.",
            g,
            registry=registry,
        )
        self.last_eval = Gauge(
            "vigil_rule_group_last_evaluation_timestamp_seconds",
            "Timestamp of the last group evaluation.",
            g,
            registry=registry,
        )
        self.missed = Counter(
            "vigil_rule_group_iterations_missed_total",
            "Group evaluations skipped because one took longer than the interval.",
            g,
            registry=registry,
        )
        self.samples = Gauge(
            "vigil_rule_group_last_evaluation_samples",
            "Samples the last group evaluation wrote.",
            g,
            registry=registry,
        )
        # Prometheus only logs these (a warning with num_dropped); counted so they cannot vanish.
        self.refused = Counter(
            "vigil_rule_samples_refused_total",
            "Samples rule evaluations produced that the store refused (e.g. older than its "
            "out-of-order window), by reason.",
            ["rule_group", "reason"],
            registry=registry,
        )


def group_offset_ns(name: str, file: str, interval_ms: int) -> int:
    """The group's fixed evaluation phase: Prometheus hashes the label set {file, name} (3.x
    "stringlabels" layout: each string preceded by its length) with XXH64, modulo the interval
    in nanoseconds."""
    data = bytearray()
    for part in ("file", file, "name", name):
        b = part.encode()
        n = len(b)
        data += bytes([n]) if n < 255 else bytes([255, n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF])
        data += b
    return xxh64(bytes(data)) % (interval_ms * 1_000_000)


class Group:
    def __init__(
        self,
        name: str,
        file: str,
        rules: Sequence[Rule],
        *,
        interval_ms: int,
        query_offset_ms: int = 0,
        limit: int = 0,
        options: RuleOptions | None = None,
        metrics: RuleMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
        notify: Callable[[AlertingRule, list[Alert]], None] | None = None,
    ) -> None:
        self.name, self.file = name, file
        self.rules = list(rules)
        self.interval_ms, self.query_offset_ms, self.limit = interval_ms, query_offset_ms, limit
        self.options = options or RuleOptions()
        self._metrics, self._clock, self._notify = metrics, clock, notify
        self._offset_ns = group_offset_ns(name, file, interval_ms)
        self._previous: list[dict[Labels, None]] = [{} for _ in self.rules]
        self.last_eval_ms: int | None = None
        self.last_duration_s = 0.0

    @property
    def key(self) -> str:
        return f"{self.file};{self.name}"

    def eval_timestamp(self, now_ms: int) -> int:
        """The latest evaluation slot at or before `now_ms` (Prometheus' EvalTimestamp)."""
        iv = self.interval_ms * 1_000_000
        adj = now_ms * 1_000_000 - self._offset_ns
        return (adj - adj % iv + self._offset_ns) // 1_000_000

    def alerting_rules(self) -> list[AlertingRule]:
        return [r for r in self.rules if isinstance(r, AlertingRule)]

    def eval(self, ts_ms: int, query: QueryFunc, appender: Appender) -> None:
        """Evaluate every rule at `ts_ms` and write the results through `appender`."""
        start = self._clock()
        out_ts = ts_ms - self.query_offset_ms
        written = 0
        for i, rule in enumerate(self.rules):
            t0 = self._clock()
            if self._metrics:
                self._metrics.evaluations.labels(self.key).inc()
            try:
                samples = rule.eval(ts_ms, self.query_offset_ms, query, self.limit)
            except Exception as exc:  # any failure is the rule's health, the group goes on
                rule.status.health, rule.status.last_error = "err", str(exc) or type(exc).__name__
                if self._metrics:
                    self._metrics.failures.labels(self.key).inc()
                samples = None
            if samples is not None:
                rule.status.health, rule.status.last_error = "ok", ""
                if isinstance(rule, AlertingRule) and self._notify is not None:
                    sent = rule.alerts_to_send(ts_ms, self.options.resend_delay_ms, self.interval_ms)
                    if sent:
                        self._notify(rule, sent)
                returned: dict[Labels, None] = {}
                for s in samples:
                    appender.append(s.labels, out_ts, s.value)
                    returned[s.labels] = None
                for lb in self._previous[i]:
                    if lb not in returned:
                        appender.append(lb, out_ts, STALE_NAN)
                written += len(samples)
                self._previous[i] = returned
            try:
                refused = appender.commit()
            except Exception as exc:
                rule.status.health, rule.status.last_error = "err", str(exc) or type(exc).__name__
                if self._metrics:
                    self._metrics.failures.labels(self.key).inc()
            else:
                self._refused(rule, refused)
            took = self._clock() - t0
            rule.status.last_eval_ms, rule.status.last_duration_s = ts_ms, took
            if self._metrics:
                self._metrics.duration.observe(took)
        self.last_eval_ms, self.last_duration_s = ts_ms, self._clock() - start
        if self._metrics:
            self._metrics.last_duration.labels(self.key).set(self.last_duration_s)
            self._metrics.last_eval.labels(self.key).set(ts_ms / 1000)
            self._metrics.samples.labels(self.key).set(written)

    def _refused(self, rule: Rule, refused: Mapping[str, int] | None) -> None:
        """Samples the store refused are not an evaluation failure (the rule ran, as in Prometheus)
        but are counted and logged, and the total is kept for the rules API."""
        if not refused:
            return
        total = sum(refused.values())
        rule.status.refused_samples += total
        if self._metrics:
            for reason, n in refused.items():
                self._metrics.refused.labels(self.key, reason).inc(n)
        log.warning(
            "rule group %s, rule %s: the store refused %d samples (%s)",
            self.key,
            rule.name,
            total,
            ", ".join(f"{k}: {v}" for k, v in sorted(refused.items())),
        )

    def missed(self, n: int) -> None:
        """Count `n` skipped evaluations (the scheduler's call)."""
        if self._metrics and n > 0:
            self._metrics.missed.labels(self.key).inc(n)

    def definition(self) -> tuple[Any, ...]:
        """What the group is, for deciding whether a reload changed it (its state left out)."""
        rules: list[tuple[Any, ...]] = []
        for r in self.rules:
            if isinstance(r, AlertingRule):
                rules.append(
                    ("alert", r.name, r.expr, r.for_ms, r.keep_firing_for_ms, r.labels, r.annotations)
                )
            else:
                rules.append(("record", r.name, r.expr, r.labels))
        return (self.name, self.file, self.interval_ms, self.query_offset_ms, self.limit, rules, self.options)

    def copy_state(self, old: Group) -> None:
        """Take over the state of the group this one replaces on a reload, as Prometheus' CopyState:
        a rule of the same kind, name and labels (the n-th of that name to the n-th) keeps its
        alerts, health and the series it wrote last (so they get stale markers when gone)."""
        by_key: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[int]] = {}
        for i, r in enumerate(old.rules):
            by_key.setdefault(_rule_key(r), []).append(i)
        for i, r in enumerate(self.rules):
            candidates = by_key.get(_rule_key(r))
            if not candidates:
                continue
            j = candidates.pop(0)
            o = old.rules[j]
            self._previous[i] = old._previous[j]
            r.status = o.status
            if isinstance(r, AlertingRule) and isinstance(o, AlertingRule):
                r.active = o.active
        self.last_eval_ms, self.last_duration_s = old.last_eval_ms, old.last_duration_s

    def mark_all_stale(self, ts_ms: int, appender: Appender) -> None:
        """Stale markers for every series the group wrote last (it was removed by a reload)."""
        for i, prev in enumerate(self._previous):
            for lb in prev:
                appender.append(lb, ts_ms, STALE_NAN)
            self._previous[i] = {}
        appender.commit()

    def restore_for_state(self, ts_ms: int, storage: Queryable) -> None:
        """Restore the `for` state of active alerts from ALERTS_FOR_STATE after a restart (call once,
        after the first evaluation), with Prometheus' outage tolerance and grace period rules."""
        o = self.options
        for rule in self.alerting_rules():
            try:
                if rule.for_ms >= o.grace_period_ms:
                    _restore_rule(rule, ts_ms, storage, o)
            finally:
                rule.restored = True

    def mark_unrestored(self) -> None:
        """A freshly started group: write no ALERTS until `restore_for_state` ran."""
        for rule in self.alerting_rules():
            rule.restored = False


def _rule_key(r: Rule) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    kind = "alert" if isinstance(r, AlertingRule) else "record"
    return kind, r.name, tuple(sorted(r.labels.items()))


def _restore_rule(rule: AlertingRule, ts_ms: int, storage: Queryable, o: RuleOptions) -> None:
    matchers = [Matcher.eq(METRIC_NAME, ALERTS_FOR_STATE_METRIC), Matcher.eq(ALERTNAME, rule.name)]
    matchers += [Matcher.eq(k, v) for k, v in sorted(rule.labels.items())]
    found: dict[Labels, tuple[int, float]] = {}
    for lb, ts, vals in storage.select(matchers, ts_ms - o.outage_tolerance_ms, ts_ms):
        if ts.size:  # the last sample in the window counts, stale or not
            found[lb.without(METRIC_NAME)] = (int(ts[-1]), float(vals[-1]))
    for a in rule.active_alerts():
        last = found.get(a.labels)
        if last is None or _is_stale(last[1]):
            continue
        down_s = last[0] // 1000  # Prometheus works in whole seconds here
        active_s = int(last[1])
        remaining = rule.for_ms - (down_s - active_s) * 1000
        if remaining <= 0:
            restored = active_s * 1000
        elif remaining < o.grace_period_ms:
            restored = ts_ms + o.grace_period_ms - rule.for_ms
        else:
            restored = active_s * 1000 + (ts_ms - down_s * 1000)
        a.active_at_ms = restored


def _is_stale(v: float) -> bool:
    return math.isnan(v) and struct.pack("<d", v) == struct.pack("<Q", 0x7FF0000000000002)


class RuleLoadError(Exception):
    """Rule files that do not validate; `errors` are all their problems."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def groups_from_spec(
    spec: RuleFileSpec, options: RuleOptions, metrics: RuleMetrics | None = None, **group_kw: Any
) -> list[Group]:
    """The groups of one validated file. Group labels are added to every rule's labels (a rule's
    own label of the same name wins), as Prometheus does."""
    out = []
    for g in spec.groups:
        rules: list[Rule] = []
        for r in g.rules:
            labels = {**g.labels, **r.labels}
            if r.kind == "record":
                rules.append(RecordingRule(r.name, r.expr, labels))
            else:
                rules.append(
                    AlertingRule(
                        r.name,
                        r.expr,
                        for_ms=r.for_ms,
                        keep_firing_for_ms=r.keep_firing_for_ms,
                        labels=labels,
                        annotations=dict(r.annotations),
                        external_labels=options.external_labels,
                        external_url=options.external_url,
                        expander=options.expander,
                    )
                )
        out.append(
            Group(
                g.name,
                spec.file,
                rules,
                interval_ms=g.interval_ms or options.default_interval_ms,
                query_offset_ms=options.default_query_offset_ms
                if g.query_offset_ms is None
                else g.query_offset_ms,
                limit=g.limit,
                options=options,
                metrics=metrics,
                **group_kw,
            )
        )
    return out


def load_groups(
    paths: Sequence[str],
    options: RuleOptions,
    metrics: RuleMetrics | None = None,
    template_check: TemplateCheck | None = None,
    **group_kw: Any,
) -> list[Group]:
    """Parse and validate every file; raise RuleLoadError with all the problems of all files."""
    errors: list[RuleError] = []
    groups: list[Group] = []
    for p in paths:
        spec, errs = parse_rule_file(p, template_check)
        errors += errs
        if spec is not None:
            groups += groups_from_spec(spec, options, metrics, **group_kw)
    if errors:
        raise RuleLoadError(errors)
    return groups

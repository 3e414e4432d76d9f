"""Event rules: alerts raised by security events as they are stored, not at the next rule evaluation.

A new listening port or a burst of failed logins should reach the notifier within a second. The
event store calls `EventRules.observe` with each batch of newly stored events (after the commit, so
only durable events alert, each once: a re-sent duplicate is not new); a rule (`event_rules:` in
vigil.yml) whose `kind` and `match` selector match counts the event under its `by` key and fires
once `count` events of that key fall within `window` (event time). The alert goes at once to the
same `AlertSender` as rule alerts (so the same routing and grouping apply), with Prometheus'
sending rules: re-sent every `resend_delay` with an end `now + 4 * resend_delay`, resolved once no
matching event came for `keep_firing_for` (sent with its resolution time and re-sent for 15
minutes, as rule alerts are).

Bounded: a rule tracks at most `max_keys` keys (the least recently seen quiet one is forgotten for
a new one; when every key is firing the event is counted as dropped), a key holds at most `count`
event times, and keys quiet for longer than their window are pruned by `tick`. Events older than
`now - keep_firing_for` (a backlog) would resolve at once and are not counted; an event dated more
than `FUTURE_SKEW_MS` ahead counts as dated then (it must not hide the events after it).

Built-in event rules (`vigil.rules.builtin`'s `events/events.yml`: a new unexpected listening port, a
brute force from one address) come first, unless `rules.builtin.enabled` is false; like the built-in
alerting rules, one is left out when `rules.builtin.disable` names it or replaced when `event_rules`
has an entry of the same alert name (`with_builtin`).

Tenants: only untenanted events (no `tenant` label) are matched, as rules are the default
tenant's; per-tenant rules are later work.

Clock: `clock()` is wall time in ms; `tick(now_ms)` runs the timers (the rule manager's loop calls
it and sleeps until the time it returns; `wake` is called when an observed event brings a timer
forward).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from vigil.config.rules import BuiltinRulesConfig, EventRuleConfig
from vigil.config.types import ConfigError, Section
from vigil.config.validate import read_yaml, validate
from vigil.events.store import field_string
from vigil.model.event import Event
from vigil.model.matcher import Matcher
from vigil.notifier.alert import Alert as NotifierAlert
from vigil.promql.errors import PromQLError
from vigil.promql.parser import parse_selector
from vigil.rules.alerting import RESOLVED_RETENTION_MS
from vigil.rules.group import RuleOptions
from vigil.rules.rulefmt import TemplateCheck
from vigil.rules.view import AlertView

__all__ = ["EventRule", "EventRules", "builtin_event_rules", "compile_event_rules", "with_builtin"]

log = logging.getLogger(__name__)

# How far ahead of the server's clock an event's time is believed (agents' clocks drift). Later
# times count as now + this: one event dated next year would otherwise stay the newest time of its
# key, and every real event after it would fall outside the window, blinding the rule for that key.
FUTURE_SKEW_MS = 60_000

_KIND_NAMES = frozenset({"kind", "__name__"})


def event_value(ev: Event, name: str) -> str:
    """A label or field of an event as the event store's matchers see it (kind as `kind` and
    `__name__`, then labels, then fields in string form; `tenant` only from the labels)."""
    if name in _KIND_NAMES:
        return ev.kind
    label = ev.labels.get(name)
    if label is not None or name == "tenant":
        return label or ""
    return field_string(ev.fields.get(name))


@dataclass(frozen=True)
class EventRule:
    """A validated `event_rules` entry with its parsed matchers."""

    cfg: EventRuleConfig
    matchers: tuple[Matcher, ...]

    def matches(self, ev: Event) -> bool:
        return ev.kind == self.cfg.kind and all(m.matches(event_value(ev, m.name)) for m in self.matchers)


class EventRulesFile(Section):
    """A file of event rules in vigil.yml's schema (the built-in ones)."""

    event_rules: tuple[EventRuleConfig, ...] = ()


def builtin_event_rules() -> tuple[EventRuleConfig, ...]:
    """The event rules shipped in `vigil.rules.builtin` (a broken file is a bug of the package, and
    raises ConfigError naming it like any other file)."""
    from vigil.rules.builtin import event_rule_file  # package data beside the rule pack

    f = event_rule_file()
    return validate(EventRulesFile, read_yaml(str(f)), str(f)).event_rules


def with_builtin(
    user: Sequence[EventRuleConfig],
    builtin: BuiltinRulesConfig,
    shipped: Callable[[], Sequence[EventRuleConfig]] = builtin_event_rules,
) -> tuple[EventRuleConfig, ...]:
    """The event rules to run: the built-in ones not disabled and not replaced by a user rule of the
    same alert name, then the user's."""
    if not builtin.enabled:
        return tuple(user)
    drop = set(builtin.disable) | {r.alert for r in user}
    return (*(r for r in shipped() if r.alert not in drop), *user)


def compile_event_rules(
    rules: Sequence[EventRuleConfig], source: str = "vigil.yml", template_check: TemplateCheck | None = None
) -> list[EventRule]:
    """Parse each rule's `match` (and check its templates with `template_check`, as rule files');
    ConfigError naming `event_rules[N].match` (or `.labels.K`, `.annotations.K`) when one is wrong."""
    out = []
    for i, r in enumerate(rules):
        if template_check is not None:
            _check_templates(r, i, source, template_check)
        try:
            matchers = tuple(parse_selector(r.match)) if r.match else ()
        except (PromQLError, ValueError) as exc:
            raise ConfigError(
                f'expected label matchers like {{result="failure"}}, got {r.match!r} ({exc})',
                source=source,
                key=f"event_rules[{i}].match",
            ) from None
        out.append(EventRule(r, matchers))
    return out


def _check_templates(r: EventRuleConfig, i: int, source: str, check: TemplateCheck) -> None:
    for what, pairs in (("labels", r.labels), ("annotations", r.annotations)):
        for k, text in pairs:
            try:
                check(text, f"__alert_{r.alert}")
            except Exception as exc:  # the checker's message is the problem
                raise ConfigError(
                    f"expected a valid template, got {text!r} ({exc})",
                    source=source,
                    key=f"event_rules[{i}].{what}.{k}",
                ) from None


@dataclass
class _Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    active_at_ms: int
    last_event_ms: int  # clock time of the last matching event: the quiet period runs from it
    last_sent_ms: int | None = None
    resolved_at_ms: int | None = None


@dataclass
class _Key:
    times: list[int] = field(default_factory=list)  # the latest `count` event times, sorted
    last_seen_ms: int = 0  # clock time of the last matching event
    alert: _Alert | None = None

    def firing(self) -> bool:
        return self.alert is not None and self.alert.resolved_at_ms is None


class _RuleState:
    def __init__(self, rule: EventRule) -> None:
        self.rule = rule
        self.keys: OrderedDict[tuple[str, ...], _Key] = OrderedDict()  # least recently seen first


class EventRules:
    """The event rules' state and timers (see the module docstring)."""

    def __init__(
        self,
        rules: Sequence[EventRule],
        *,
        sender: Any = None,
        options: RuleOptions | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        registry: Any = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """`sender`: an AlertSender (vigil.rules.manager); `options`: the expander, external labels
        and URL and resend delay shared with rule alerts."""
        from prometheus_client import Counter

        self._rules = [_RuleState(r) for r in rules]
        self.sender = sender
        self.options = options or RuleOptions()
        self._clock = clock
        self.wake = wake
        self._lock = threading.Lock()
        self._dropped = Counter(
            "vigil_event_rule_events_dropped_total",
            "Matching events not counted because the rule tracks max_keys keys, all firing.",
            ["alertname"],
            registry=registry,
        )
        self._fired = Counter(
            "vigil_event_rule_alerts_total", "Alerts event rules raised.", ["alertname"], registry=registry
        )
        self.send_failures = 0

    # -- events -------------------------------------------------------------------------------------

    def observe(self, events: Sequence[Event]) -> None:
        """The event store's subscriber: count `events` (newly stored) and send what fires now."""
        if not self._rules:
            return
        now = self._clock()
        out: list[NotifierAlert] = []
        with self._lock:
            for ev in events:
                if ev.labels.get("tenant"):
                    continue
                for st in self._rules:
                    if st.rule.matches(ev) and ev.time_ms >= now - st.rule.cfg.keep_firing_for:
                        self._count(st, ev, now, out)
        self._send(out)
        if out and self.wake is not None:
            self.wake()

    def _count(self, st: _RuleState, ev: Event, now: int, out: list[NotifierAlert]) -> None:
        cfg = st.rule.cfg
        key = tuple(event_value(ev, name) for name in cfg.by)
        k = st.keys.get(key)
        if k is None:
            if len(st.keys) >= cfg.max_keys and not self._evict(st):
                self._dropped.labels(cfg.alert).inc()
                return
            k = st.keys[key] = _Key()
        st.keys.move_to_end(key)
        k.last_seen_ms = now
        bisect.insort(k.times, min(ev.time_ms, now + FUTURE_SKEW_MS))
        del k.times[: -cfg.count]  # only the latest `count` can make a burst
        in_window = [t for t in k.times if t > k.times[-1] - cfg.window]
        if k.firing():
            assert k.alert is not None
            k.alert.last_event_ms = now  # a matching event keeps it firing
            k.alert.value = float(len(in_window))
            return
        if len(in_window) < cfg.count:
            return
        labels, annotations = self._render(st.rule, key, ev, float(len(in_window)), now)
        k.alert = _Alert(labels, annotations, float(len(in_window)), now, now)
        self._fired.labels(cfg.alert).inc()
        out.append(self._sent(st.rule, k.alert, now))

    @staticmethod
    def _evict(st: _RuleState) -> bool:
        """Forget the least recently seen key that is not firing; False when all are firing."""
        for key, k in st.keys.items():
            if not k.firing():
                del st.keys[key]
                return True
        return False

    def _render(
        self, rule: EventRule, key: tuple[str, ...], ev: Event, value: float, now: int
    ) -> tuple[dict[str, str], dict[str, str]]:
        cfg, o = rule.cfg, self.options
        identity = {n: v for n, v in zip(cfg.by, key, strict=True) if v}
        seen = {**{k: field_string(v) for k, v in ev.fields.items()}, **ev.labels, **identity}

        def expand(text: str, labels: Mapping[str, str]) -> str:
            if o.expander is None or "{{" not in text:
                return text
            try:
                return o.expander(
                    text,
                    name=f"__alert_{cfg.alert}",
                    labels=labels,
                    value=value,
                    external_labels=o.external_labels,
                    external_url=o.external_url,
                    timestamp_ms=now,
                )
            except Exception as exc:  # as a rule's: the error shows in the alert
                return f"<error expanding template: {exc}>"

        labels = dict(identity)
        for k, v in cfg.labels:
            labels[k] = expand(v, seen)
        labels["alertname"] = cfg.alert
        annotations = {k: expand(v, {**seen, **labels}) for k, v in cfg.annotations}
        return labels, annotations

    # -- timers -------------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> int | None:
        """Resolve quiet alerts, re-send due ones, drop old resolved ones and quiet keys; returns the
        time (ms) the next of these is due, None when nothing is pending."""
        out: list[NotifierAlert] = []
        due: list[int] = []
        resend = self.options.resend_delay_ms
        with self._lock:
            for st in self._rules:
                cfg = st.rule.cfg
                for key in list(st.keys):
                    k = st.keys[key]
                    a = k.alert
                    if (
                        a is not None
                        and a.resolved_at_ms is None
                        and now_ms - a.last_event_ms >= cfg.keep_firing_for
                    ):
                        a.resolved_at_ms = now_ms
                        out.append(self._sent(st.rule, a, now_ms))
                    elif a is not None and a.last_sent_ms is not None and a.last_sent_ms + resend <= now_ms:
                        if a.resolved_at_ms is not None and now_ms - a.resolved_at_ms > RESOLVED_RETENTION_MS:
                            k.alert = a = None
                        else:
                            out.append(self._sent(st.rule, a, now_ms))
                    if a is None and now_ms - k.last_seen_ms >= cfg.window:
                        del st.keys[key]
                        continue
                    if a is None:
                        due.append(k.last_seen_ms + cfg.window)
                        continue
                    if a.last_sent_ms is not None:
                        due.append(a.last_sent_ms + resend)
                    if a.resolved_at_ms is None:
                        due.append(a.last_event_ms + cfg.keep_firing_for)
        self._send(out)
        return min(due) if due else None

    # -- sending ------------------------------------------------------------------------------------

    def _sent(self, rule: EventRule, a: _Alert, now: int) -> NotifierAlert:
        a.last_sent_ms = now
        o = self.options
        labels = dict(a.labels)
        for k, v in o.external_labels.items():
            if k not in labels and v:
                labels[k] = v
        ends = a.resolved_at_ms if a.resolved_at_ms is not None else now + 4 * o.resend_delay_ms
        selector = rule.cfg.kind + (rule.cfg.match or "")
        return NotifierAlert(
            labels=labels,
            annotations=dict(a.annotations),
            starts_at_ms=a.active_at_ms,
            ends_at_ms=ends,
            generator_url=f"{o.external_url}/api/v1/events?match[]={quote_plus(selector, safe='')}",
        )

    def _send(self, alerts: list[NotifierAlert]) -> None:
        if not alerts or self.sender is None:
            return
        try:
            self.sender.send(alerts)
        except Exception:  # re-sent at the next resend, like rule alerts
            self.send_failures += 1
            log.exception("sending %d event-rule alerts failed", len(alerts))

    # -- reload and the API -------------------------------------------------------------------------

    def reload(self, rules: Sequence[EventRule], options: RuleOptions | None = None) -> None:
        """Swap in `rules`; a rule whose configuration did not change keeps its keys and alerts."""
        with self._lock:
            old = {st.rule.cfg: st for st in self._rules}
            self._rules = [old.get(r.cfg) or _RuleState(r) for r in rules]
            if options is not None:
                self.options = options

    def active_alerts(self) -> list[AlertView]:
        with self._lock:
            return [
                AlertView(
                    dict(k.alert.labels),
                    dict(k.alert.annotations),
                    "firing",
                    k.alert.active_at_ms,
                    k.alert.value,
                )
                for st in self._rules
                for k in st.keys.values()
                if k.alert is not None and k.alert.resolved_at_ms is None
            ]

    def keys(self, alert: str) -> int:
        """Keys a rule tracks (tests, bounds)."""
        with self._lock:
            return next((len(st.keys) for st in self._rules if st.rule.cfg.alert == alert), 0)

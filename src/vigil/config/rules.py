"""The `rule_files`, `rules` and `event_rules` schema: what the server's rule manager evaluates.

`rule_files` and `rules` carry Prometheus' names and defaults (its `rule_files`, and the flags
`--rules.alert.for-outage-tolerance`, `--rules.alert.for-grace-period`, `--rules.alert.resend-delay`
with `global.evaluation_interval` / `global.rule_query_offset`), so a Prometheus setup carries over.
`event_rules` are Vigil's own: alerts raised by security events as they are stored. An event rule's
`match` selector is only checked for its shape here; the rule manager parses it with PromQL's
selector parser (a floor above this one) and reports `event_rules.N.match` when it does not parse.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from vigil.config.types import Bool, Duration, PositiveDuration, Section, integer
from vigil.model.duration import parse_duration
from vigil.model.labels import is_valid_label_name
from vigil.model.show import show

__all__ = ["BuiltinRulesConfig", "EventRuleConfig", "EventRules", "RuleFiles", "RulesConfig"]

_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _strings(what: str) -> BeforeValidator:
    def validate(value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"expected a list of {what}, got {show(value)}")
        return tuple(value)

    return BeforeValidator(validate)


def _label_names(value: tuple[str, ...]) -> tuple[str, ...]:
    for v in value:
        if not is_valid_label_name(v):
            raise ValueError(f"expected label or field names like source_address, got {show(v)}")
    return value


def _string_map(value: object) -> object:
    # Held as pairs, in file order: the Config stays hashable (it is frozen and hashed).
    if value is None:
        return ()
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # a validated Config's own form (model_dump, model_copy)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"expected a mapping of names to text, got {show(value)}")
    for k in value:
        if not isinstance(k, str) or not is_valid_label_name(k):
            raise ValueError(f"expected label names like severity as keys, got {show(k)}")
    return tuple(value.items())


def _kind(value: object) -> str:
    if not isinstance(value, str) or not _KIND.fullmatch(value):
        raise ValueError(f"expected an event kind like listener_new, got {show(value)}")
    return value


def _alert_name(value: object) -> str:
    if not isinstance(value, str) or value == "":
        raise ValueError(f"expected an alert name, got {show(value)}")
    return value


def _selector(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or (value.strip() and not value.strip().endswith("}")):
        raise ValueError(f'expected label matchers like {{result="failure"}}, got {show(value)}')
    return value.strip()


RuleFiles = Annotated[tuple[str, ...], _strings("file paths or globs")]
StringMap = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_string_map)]


class BuiltinRulesConfig(Section):
    enabled: Bool = True
    """Load Vigil's built-in alerting rules (the `vigil.rules.builtin` package)."""
    disable: Annotated[tuple[str, ...], _strings("alert names")] = ()
    """Built-in alerts to leave out, by alert name. A rule in `rule_files` with the name of a built-in
    alert replaces it without being listed here."""


class RulesConfig(Section):
    """How `rule_files` are evaluated (Prometheus' flags and global settings, with its defaults)."""

    evaluation_interval: PositiveDuration = parse_duration("10s")
    """Interval of groups that set none (Prometheus' `global.evaluation_interval`). Prometheus'
    default is 1m; Vigil's is the agent's collection interval, so that an alert waits for at most
    one evaluation after the data that raises it arrives. The built-in groups set their own."""
    query_offset: Duration = 0
    """How far back rules query by default, for data that arrives late (`global.rule_query_offset`)."""
    outage_tolerance: PositiveDuration = parse_duration("1h")
    """Longest downtime after which the `for` state of alerts is still restored
    (`--rules.alert.for-outage-tolerance`)."""
    for_grace_period: Duration = parse_duration("10m")
    """Least time a restored alert waits before it fires again after a restart; alerts whose `for`
    is shorter are not restored (`--rules.alert.for-grace-period`)."""
    resend_delay: PositiveDuration = parse_duration("1m")
    """How often firing and recently resolved alerts are sent again (`--rules.alert.resend-delay`)."""
    external_labels: StringMap = ()
    """Labels added to every alert sent (unless it has them) and offered to templates as
    `$externalLabels` (Prometheus' `global.external_labels`)."""
    builtin: BuiltinRulesConfig = BuiltinRulesConfig()


class EventRuleConfig(Section):
    """One `event_rules:` entry: an alert raised by stored events of one kind."""

    alert: Annotated[str, BeforeValidator(_alert_name)]
    """The alert's name (its `alertname` label)."""
    kind: Annotated[str, BeforeValidator(_kind)]
    """The event kind it watches, e.g. listener_new, file_changed, auth."""
    match: Annotated[str, BeforeValidator(_selector)] = ""
    """Label matchers on the event's labels and fields, in PromQL syntax as `GET /api/v1/events`
    takes them, e.g. `{result="failure", service="sshd"}`."""
    count: Annotated[int, integer(minimum=1)] = 1
    """Events needed within `window` (per `by` key) before the alert fires; 1 fires on the first."""
    window: PositiveDuration = parse_duration("5m")
    """The span (of event time) `count` events must fall in."""
    by: Annotated[tuple[str, ...], _strings("label or field names"), AfterValidator(_label_names)] = ()
    """Event labels or fields that key the count and the alert, e.g. [instance, source_address]:
    one alert per distinct value set. Empty: one alert for the rule."""
    labels: StringMap = ()
    """Labels added to the alert; templates (Go syntax) see `$labels` and `$value` (the count)."""
    annotations: StringMap = ()
    """Annotations of the alert; templates see `$labels` (the alert's labels and the last event's
    labels and fields) and `$value` (the count)."""
    keep_firing_for: PositiveDuration = parse_duration("10m")
    """Quiet time after the last matching event after which the alert resolves."""
    max_keys: Annotated[int, integer(minimum=1)] = 1000
    """Distinct `by` keys tracked at most; past it the oldest quiet key is forgotten, and an event
    for a new key is counted as dropped when every key is firing."""


def _event_list(value: object) -> object:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of event rules, got {show(value)}")
    return value


def _unique_alerts(value: tuple[EventRuleConfig, ...]) -> tuple[EventRuleConfig, ...]:
    seen: set[str] = set()
    for r in value:
        if r.alert in seen:
            raise ValueError(f"expected unique alert names, got {show(r.alert)} twice")
        seen.add(r.alert)
    return value


EventRules = Annotated[
    tuple[EventRuleConfig, ...], BeforeValidator(_event_list), AfterValidator(_unique_alerts)
]

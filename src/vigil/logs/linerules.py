"""Log line rules: regexes over log lines that keep counters, gauges and histograms (mtail-like, in YAML).

These count log lines; they are not the alerting and recording rules of `vigil.rules` (Prometheus'
meaning of "rules"). Their files are named by `agent.logs.rule_files`.

A rules file lists rules; each one names a metric, the regex whose named groups feed it, and which
groups become labels. Like an mtail program it keeps its state in memory, but the format is
declarative YAML rather than a language, so a rules file is checked completely at load time and
errors name `file: rules[3].match: expected ...`:

```yaml
rules:
  - name: app_login_failures_total   # metric name; counters end in _total
    type: counter                    # counter (default) | gauge | histogram
    help: Failed logins by the app.
    sources: [app]                   # LogLine.source names the rule applies to (default: all)
    match: 'login failed for user (?P<user>\\S+) from (?P<ip>\\S+)'
    labels: {reason: bad_password}   # static labels
    label_groups: [ip]               # labels taken from named groups (bounded by max_series)
    max_series: 1000                 # label sets beyond this fold into "other"
    event: true                      # also emit a `log_match` event per matching line
  - name: app_request_seconds
    type: histogram
    match: 'took (?P<ms>[0-9.]+)ms'
    value: ms                        # gauge: set, histogram: observe, counter: add (default +1)
    scale: 0.001                     # ms -> seconds
    buckets: [0.01, 0.1, 1, 10]
```

Why RE2 (`google-re2`): the logs are untrusted input and rules are written by users, so a pattern
with nested quantifiers must not let one crafted line stall the agent; RE2 matches in linear time.
All rules for a source are compiled into one `re2.Set`, so a line costs one DFA pass whatever the
number of rules, and only the rules that matched are run again to extract their groups (the same
"match first, capture later" shape mtail's VM has). RE2 syntax has no look-around or back-references.

Cardinality is bounded twice: each rule keeps at most `max_series` label sets (further ones are
counted under the label value "other" and in `vigil_log_rule_series_overflow_total{rule}`), and the
processor as a whole at most `max_total_series`. Label values are cut at 256 characters.

Several rules may feed one metric (say, one regex per log format): they then share name, type,
buckets and label names, and each rule needs its own `id` (the value of the `rule` label on the
processor's own metrics and in events; it defaults to the metric name).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import re2
from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from pydantic import BeforeValidator, Field, ValidationInfo, model_validator

from vigil.config.types import ConfigError, Section
from vigil.config.validate import KeyedError, read_yaml, validate
from vigil.logs.processor import LogLine
from vigil.model.event import Event
from vigil.model.show import show

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_MAX_SERIES",
    "DEFAULT_MAX_TOTAL_SERIES",
    "LineRule",
    "LineRuleProcessor",
    "load_line_rules",
    "parse_line_rules",
]

DEFAULT_MAX_SERIES = 1000
DEFAULT_MAX_TOTAL_SERIES = 100_000
# prometheus_client's defaults: a sensible spread for request durations in seconds.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
OTHER = "other"

_MAX_MAX_SERIES = 1_000_000
_MAX_LABEL_VALUE = 256
_MAX_EVENT_FIELD = 16384  # Event.from_dict's limit: longer fields would be refused at ingest
_TYPES = ("counter", "gauge", "histogram")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Identity labels the agent adds to everything it ships (`vigil.agent.identity`) and names with a
# meaning in the exposition format.
_RESERVED_LABELS = frozenset(
    {"tenant", "cluster", "instance", "platform", "container", "app", "function", "job", "le", "quantile"}
)
# Event fields every log_match event has; a group of the same name would overwrite them.
_EVENT_FIELDS = frozenset({"source", "rule", "line"})

_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED


def _re2_options() -> Any:
    """RE2's defaults, except that a pattern that does not parse is not also logged by RE2 itself: that
    goes through absl to stderr (with absl's "before InitializeLog" banner), beside our own one line."""
    options = re2.Options()
    options.log_errors = False
    return options


def _re2_message(exc: Exception) -> str:
    """The text of a re2.error, which carries RE2's message as bytes."""
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


@dataclass(frozen=True, slots=True)
class LineRule:
    """One validated rule; build these with `parse_line_rules` / `load_line_rules`."""

    name: str
    match: str
    type: str = "counter"
    id: str = ""  # defaults to `name`
    help: str = ""
    sources: frozenset[str] | None = None  # None: every source
    labels: tuple[tuple[str, str], ...] = ()  # static labels, sorted by name
    label_groups: tuple[str, ...] = ()
    value: str | None = None
    scale: float = 1.0
    buckets: tuple[float, ...] = ()
    max_series: int = DEFAULT_MAX_SERIES
    event: bool = False

    @property
    def rule_id(self) -> str:
        return self.id or self.name


# --- parsing --------------------------------------------------------------------------------------
# A rules file is validated like vigil.yml (`vigil.config.validate`): a pydantic schema whose
# validators write the "expected ..., got ..." messages. Fields are declared in the order they are
# checked, because later checks read earlier values (`name` depends on `type`, `label_groups` and
# `value` on the groups of `match`); the first error in that order is the one reported.


def _str_list(raw: object, what: str) -> list[str]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise ValueError(f"expected a list of {what}, got {show(raw)}")
    return list(items)


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _check_label(name: object, key: str | None = None) -> str:
    """A label name a rule may set; `key` names the offending key below the field, if any."""
    problem = None
    if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
        problem = f"expected a label name like reason, got {show(name)}"
    elif name in _RESERVED_LABELS:
        problem = f"label name {show(name)} is reserved (identity or exposition label)"
    if problem is not None:
        raise ValueError(problem) if key is None else KeyedError(key, problem)
    return str(name)


def _kind(raw: object) -> str:
    if raw not in _TYPES:
        raise ValueError(f"expected one of counter, gauge, histogram, got {show(raw)}")
    return str(raw)


def _metric_name(raw: object, info: ValidationInfo) -> str:
    kind = info.data.get("type", "counter")
    if not isinstance(raw, str) or not _METRIC_NAME.fullmatch(raw) or raw.startswith("__"):
        raise ValueError(f"expected a metric name like app_errors_total, got {show(raw)}")
    if raw.startswith("vigil_"):
        raise ValueError(f"expected a name without the vigil_ prefix (reserved), got {show(raw)}")
    if kind == "counter" and not raw.endswith("_total"):
        raise ValueError(f"expected a counter name ending in _total, got {show(raw)}")
    if kind != "counter" and raw.endswith("_total"):
        raise ValueError(f"expected a {kind} name not ending in _total (counters only), got {show(raw)}")
    if kind == "histogram" and raw.endswith(("_bucket", "_count", "_sum")):
        raise ValueError(f"expected a histogram name not ending in _bucket/_count/_sum, got {show(raw)}")
    return raw


def _rule_id(raw: object) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 128:
        raise ValueError(f"expected a rule id (text, at most 128 characters), got {show(raw)}")
    return raw


def _help(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a one-line description, got {show(raw)}")
    return raw.strip()


def _sources(raw: object) -> frozenset[str] | None:
    return None if raw is None else frozenset(_str_list(raw, "log source names"))


def _match(raw: object) -> Any:
    """The compiled regex (its `groupindex` feeds the checks below); LineRule keeps the pattern."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a regular expression (RE2 syntax), got {show(raw)}")
    try:
        return re2.compile(raw, _re2_options())
    except re2.error as e:
        raise ValueError(
            f"expected a regular expression in RE2 syntax (no look-around or back-references), "
            f"got {show(raw)}: {_re2_message(e)}"
        ) from None


def _groups(info: ValidationInfo) -> dict[str, int]:
    regexp = info.data.get("match")
    return dict(regexp.groupindex) if regexp is not None else {}


def _labels(raw: object) -> tuple[tuple[str, str], ...]:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of label names to values, got {show(raw)}")
    labels: dict[str, str] = {}
    for k, v in raw.items():
        _check_label(k, str(k))
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, str | int | float):
            raise KeyedError(str(k), f"expected a label value (text), got {show(v)}")
        labels[k] = str(v)
    return tuple(sorted(labels.items()))


def _label_groups(raw: object, info: ValidationInfo) -> tuple[str, ...]:
    names = _str_list(raw or [], "named groups")
    groups, static = _groups(info), dict(info.data.get("labels", ()))
    for g in names:
        if g not in groups:
            raise ValueError(f"expected names of groups in match like (?P<{g}>...), got {show(g)}")
        _check_label(g)
        if g in static:
            raise ValueError(f"label {show(g)} is also a static label")
    if len(set(names)) != len(names):
        raise ValueError("expected each group once")
    return tuple(names)


def _value(raw: object, info: ValidationInfo) -> str | None:
    kind = info.data.get("type", "counter")
    if raw is not None and (not isinstance(raw, str) or raw not in _groups(info)):
        raise ValueError(f"expected the name of a group in match holding a number, got {show(raw)}")
    if raw is None and kind != "counter":
        raise ValueError(f"expected the name of a group in match holding the {kind}'s number")
    return raw


def _scale(raw: object) -> float:
    value = _number(raw)
    if value is None or value == 0:
        raise ValueError(f"expected a non-zero number, got {show(raw)}")
    return value


def _buckets(raw: object, info: ValidationInfo) -> tuple[float, ...]:
    if info.data.get("type") != "histogram":
        if raw is not None:
            raise ValueError("only histograms have buckets")
        return ()
    raw = list(DEFAULT_BUCKETS) if raw is None else raw
    nums = [_number(b) for b in raw] if isinstance(raw, list) else [None]
    if not nums or None in nums or any(b >= a for a, b in zip(nums[1:], nums, strict=False)):  # type: ignore[operator]
        raise ValueError(f"expected a list of increasing finite numbers like [0.1, 1, 10], got {show(raw)}")
    return tuple(float(b) for b in nums if b is not None)


def _max_series(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= _MAX_MAX_SERIES:
        raise ValueError(f"expected an integer from 1 to {_MAX_MAX_SERIES}, got {show(raw)}")
    return raw


def _event(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {show(raw)}")
    return raw


class _RuleSpec(Section):
    """One rule as written in the file; `LineRule` is what is kept of it."""

    type: Annotated[str, BeforeValidator(_kind)] = "counter"
    name: Annotated[str, BeforeValidator(_metric_name)] = Field(default=None, validate_default=True)
    id: Annotated[str, BeforeValidator(_rule_id)] = ""  # "": the metric name
    help: Annotated[str, BeforeValidator(_help)] = ""
    sources: Annotated[frozenset[str] | None, BeforeValidator(_sources)] = None
    match: Annotated[Any, BeforeValidator(_match)] = Field(default=None, validate_default=True)
    labels: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_labels)] = ()
    label_groups: Annotated[tuple[str, ...], BeforeValidator(_label_groups)] = ()
    value: Annotated[str | None, BeforeValidator(_value)] = Field(default=None, validate_default=True)
    scale: Annotated[float, BeforeValidator(_scale)] = 1.0
    buckets: Annotated[tuple[float, ...], BeforeValidator(_buckets)] = Field(
        default=None, validate_default=True
    )
    max_series: Annotated[int, BeforeValidator(_max_series)] = DEFAULT_MAX_SERIES
    event: Annotated[bool, BeforeValidator(_event)] = False

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        # Replaces Section's: a rule must be a mapping (null is not "all defaults" here).
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping with name and match, got {show(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ValueError(f"unknown key {show(key)} (expected one of: {', '.join(cls.model_fields)})")
        return data

    @model_validator(mode="after")
    def _event_fields_free(self) -> _RuleSpec:
        clash = sorted(_EVENT_FIELDS & set(self.match.groupindex)) if self.event else []
        if clash:
            raise KeyedError(
                "match", f"group name {show(clash[0])} is reserved for event fields (source, rule, line)"
            )
        return self

    def rule(self) -> LineRule:
        return LineRule(
            name=self.name,
            match=self.match.pattern,
            type=self.type,
            id=self.id or self.name,
            help=self.help,
            sources=self.sources,
            labels=self.labels,
            label_groups=self.label_groups,
            value=self.value,
            scale=self.scale,
            buckets=self.buckets,
            max_series=self.max_series,
            event=self.event,
        )


def _rule_list(raw: object) -> object:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"expected a list of rules, got {show(raw)}")
    return raw


class LineRulesFile(Section):
    """The schema of a log line rules file: `rules:`, a list of rules (see the module docstring)."""

    rules: Annotated[tuple[_RuleSpec, ...], BeforeValidator(_rule_list)] = ()


def parse_line_rules(data: Any, source: str = "<rules>", key: str = "rules") -> list[LineRule]:
    """Validate an already-parsed rules document: `{rules: [...]}`, a bare list, or None (no rules).

    `key` is where the list sits, for rules embedded in a larger file (`logs.rules[0].match`).
    """
    document = {"rules": data} if isinstance(data, list) else data
    try:
        specs = validate(LineRulesFile, document, source).rules
    except ConfigError as e:
        if key == "rules" or not (e.key or "").startswith("rules"):
            raise
        raise ConfigError(e.message, source=e.source, key=key + (e.key or "")[len("rules") :]) from None

    rules: list[LineRule] = []
    seen_ids: dict[str, int] = {}
    by_name: dict[str, LineRule] = {}
    for i, spec in enumerate(specs):
        rule = spec.rule()
        where = f"{key}[{i}]"
        if rule.rule_id in seen_ids:
            raise ConfigError(
                f"duplicate rule id {show(rule.rule_id)} (also {key}[{seen_ids[rule.rule_id]}]); "
                "rules sharing a metric name need distinct ids",
                source=source,
                key=f"{where}.id",
            )
        seen_ids[rule.rule_id] = i
        first = by_name.setdefault(rule.name, rule)
        if first is not rule:
            _check_shared(source, where, first, rule)
        rules.append(rule)
    return rules


def _check_shared(source: str, where: str, first: LineRule, rule: LineRule) -> None:
    """Rules feeding one metric must describe the same family."""

    def error(key: str, message: str) -> ConfigError:
        return ConfigError(message, source=source, key=f"{where}.{key}")

    if rule.type != first.type:
        raise error("type", f"expected {first.type} like the other rules named {show(rule.name)}")
    names = {k for k, _ in rule.labels} | set(rule.label_groups)
    first_names = {k for k, _ in first.labels} | set(first.label_groups)
    if names != first_names:
        raise error(
            "labels",
            f"expected the label names {sorted(first_names)} of the other rules named {show(rule.name)}, "
            f"got {sorted(names)}",
        )
    if rule.buckets != first.buckets:
        raise error("buckets", f"expected the buckets of the other rules named {show(rule.name)}")
    if rule.help and first.help and rule.help != first.help:
        raise error("help", f"expected no help or the help of the other rules named {show(rule.name)}")


def load_line_rules(path: Path | str) -> list[LineRule]:
    """Read and validate a rules YAML file; every problem is a ConfigError naming the file (read and
    parsed as `vigil.yml` is: no duplicate keys, syntax errors with line and column)."""
    return parse_line_rules(read_yaml(path), str(path))


# --- processing -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """One rule, compiled, with its series (keyed by the tuple of label-group values)."""

    rule: LineRule
    regexp: Any  # the low-level _re2.RE2: called with UTF-8 bytes, it skips re2's per-call str wrapper
    label_idx: tuple[int, ...]  # span indexes of the label groups
    value_idx: int  # span index of the value group, -1 for "+1"
    event_groups: tuple[tuple[str, int], ...]
    needs_spans: bool
    other: tuple[str, ...]
    series: dict[tuple[str, ...], Any] = field(default_factory=dict)  # float, or histogram list
    matches: int = 0
    overflow: int = 0
    value_errors: int = 0


@dataclass(slots=True)
class _Plan:
    """The rules that apply to one source, with their RE2 set (None when one rule can match directly)."""

    states: tuple[_State, ...]
    rset: Any  # _re2.Set or None


class LineRuleProcessor:
    """Runs log rules over lines (a `LineProcessor`); see the module docstring.

    Families: one per distinct rule name (labels: the rule's static and group labels), plus
    `vigil_log_rule_matches_total{rule}`, `vigil_log_rule_series_overflow_total{rule}` and
    `vigil_log_rule_value_errors_total{rule}` (a matched line whose value group was not a usable
    number: not numeric, not finite, or negative for a counter; its update is skipped).
    """

    def __init__(
        self,
        rules: Sequence[LineRule],
        *,
        name: str = "log_rules",
        max_total_series: int = DEFAULT_MAX_TOTAL_SERIES,
    ) -> None:
        self.name = name
        self._max_total = max_total_series
        self._total = 0
        self._states = [self._compile(r) for r in rules]
        for st in self._states:
            self._init_series(st)
        self._plans: dict[str, _Plan] = {}
        # Family layout: name -> (type, help, label names in exposition order, buckets, states).
        self._families: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...], list[_State]]] = {}
        for st in self._states:
            r = st.rule
            fam = self._families.get(r.name)
            if fam is None:
                names = tuple(k for k, _ in r.labels) + r.label_groups
                self._families[r.name] = (r.type, r.help or f"Log rule {r.rule_id}.", names, r.buckets, [st])
            else:
                if r.help and fam[1].startswith("Log rule "):
                    self._families[r.name] = (fam[0], r.help, *fam[2:])
                fam[4].append(st)

    def _init_series(self, st: _State) -> None:
        # A counter or histogram without group labels has one series known in advance: expose it at
        # zero from the start, so that rate() and increase() see the first match.
        if not st.label_idx and st.rule.type != "gauge" and () not in st.series:
            st.series[()] = 0.0 if st.rule.type == "counter" else [0] * (len(st.rule.buckets) + 1) + [0.0]
            self._total += 1

    @staticmethod
    def _compile(rule: LineRule) -> _State:
        regexp = re2.compile(rule.match, _re2_options())
        index = regexp.groupindex
        label_idx = tuple(index[g] for g in rule.label_groups)
        value_idx = index[rule.value] if rule.value else -1
        event_groups = tuple(sorted(index.items(), key=lambda kv: kv[1])) if rule.event else ()
        return _State(
            rule=rule,
            regexp=regexp._regexp,
            label_idx=label_idx,
            value_idx=value_idx,
            event_groups=event_groups,
            needs_spans=bool(label_idx) or value_idx >= 0 or rule.event,
            other=(OTHER,) * len(label_idx),
        )

    def _plan(self, source: str) -> _Plan:
        states = tuple(s for s in self._states if s.rule.sources is None or source in s.rule.sources)
        rset = None
        if len(states) > 1 or (states and not states[0].needs_spans):
            rset = re2.Set.SearchSet(_re2_options())
            for s in states:
                rset.Add(s.rule.match)
            rset.Compile()
        plan = _Plan(states, None if rset is None else rset._set)
        self._plans[source] = plan
        return plan

    # The hot path: one RE2 set match per line; captures only for the rules that matched.
    def process(self, line: LogLine) -> Iterable[Event]:
        plan = self._plans.get(line.source) or self._plan(line.source)
        states = plan.states
        if not states:
            return ()
        data = line.text.encode("utf-8", "replace")
        rset = plan.rset
        if rset is not None:
            hits = rset.Match(data)
            if not hits:
                return ()
            if len(hits) > 1:
                hits.sort()
            matched: Iterable[_State] = [states[i] for i in hits]
        else:
            matched = states
        events: list[Event] | None = None
        for st in matched:
            if not st.needs_spans:
                st.matches += 1
                self._update(st, (), 1.0)
                continue
            spans = st.regexp.Match(_UNANCHORED, data, 0, len(data))
            if spans[0][0] < 0:
                continue
            st.matches += 1
            key = tuple(_text(data, spans[i])[:_MAX_LABEL_VALUE] for i in st.label_idx)
            if st.value_idx < 0:
                self._update(st, key, 1.0)
            else:
                s, e = spans[st.value_idx]
                try:
                    value = float(data[s:e]) * st.rule.scale if s >= 0 else math.nan
                except ValueError:
                    value = math.nan
                if not math.isfinite(value) or (value < 0 and st.rule.type == "counter"):
                    st.value_errors += 1
                else:
                    self._update(st, key, value)
            if st.rule.event:
                if events is None:
                    events = []
                events.append(self._event(st, line, data, spans))
        return events or ()

    def _update(self, st: _State, key: tuple[str, ...], value: float) -> None:
        series = st.series
        cur: Any = series.get(key)
        if cur is None:
            if len(series) >= st.rule.max_series or self._total >= self._max_total:
                st.overflow += 1
                key = st.other
                cur = series.get(key)
            if cur is None:
                self._total += 1
                kind = st.rule.type
                cur = [0] * (len(st.rule.buckets) + 1) + [0.0] if kind == "histogram" else 0.0
                series[key] = cur
        kind = st.rule.type
        if kind == "counter":
            total = cur + value
            if math.isfinite(total):  # a sum that overflows would poison the series and the checkpoint
                series[key] = total
            else:
                st.value_errors += 1
        elif kind == "gauge":
            series[key] = value
        elif math.isfinite(cur[-1] + value):
            cur[bisect_left(st.rule.buckets, value)] += 1  # bucket i counts values <= buckets[i]
            cur[-1] += value
        else:
            st.value_errors += 1

    @staticmethod
    def _event(st: _State, line: LogLine, data: bytes, spans: Sequence[tuple[int, int]]) -> Event:
        fields: dict[str, str | int | float | bool | None] = {
            "source": line.source,
            "rule": st.rule.rule_id,
            "line": line.text[:_MAX_EVENT_FIELD],
        }
        for name, idx in st.event_groups:
            if spans[idx][0] >= 0:
                fields[name] = _text(data, spans[idx])[:_MAX_EVENT_FIELD]
        return Event(line.time_ms, "log_match", f"log rule {st.rule.rule_id} matched", fields)

    # --- exposition and checkpoints ---------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        out: list[Metric] = []
        for name, (kind, help_text, label_names, buckets, states) in self._families.items():
            fam: Any  # the three family classes have different add_metric signatures
            if kind == "counter":
                fam = CounterMetricFamily(name, help_text, labels=label_names)
            elif kind == "gauge":
                fam = GaugeMetricFamily(name, help_text, labels=label_names)
            else:
                fam = HistogramMetricFamily(name, help_text, labels=label_names)
            merged: dict[tuple[str, ...], Any] = {}
            for st in states:
                for key, value in st.series.items():
                    labels = self._labels(st, label_names, key)
                    prev = merged.get(labels)
                    if prev is None or kind == "gauge":  # rules sharing a gauge: the later rule wins
                        merged[labels] = list(value) if kind == "histogram" else value
                    elif kind == "counter":
                        merged[labels] = prev + value
                    else:
                        merged[labels] = [a + b for a, b in zip(prev, value, strict=True)]
            for labels, value in sorted(merged.items()):
                if kind == "histogram":
                    cumulative, acc = [], 0
                    for bound, n in zip((*buckets, math.inf), value[:-1], strict=True):
                        acc += n
                        cumulative.append((_le(bound), float(acc)))
                    fam.add_metric(list(labels), cumulative, value[-1])
                else:
                    fam.add_metric(list(labels), float(value))
            out.append(fam)
        for fname, help_text, attr in (
            ("vigil_log_rule_matches", "Lines matched by each log rule.", "matches"),
            (
                "vigil_log_rule_series_overflow",
                'Updates counted under the label value "other" because the rule (max_series) or the '
                "processor (max_total_series) had reached its series limit.",
                "overflow",
            ),
            (
                "vigil_log_rule_value_errors",
                "Matched lines whose value group was not a usable number (the update was skipped).",
                "value_errors",
            ),
        ):
            c = CounterMetricFamily(fname, help_text, labels=["rule"])
            for st in self._states:
                c.add_metric([st.rule.rule_id], float(getattr(st, attr)))
            out.append(c)
        return out

    @staticmethod
    def _labels(st: _State, label_names: tuple[str, ...], key: tuple[str, ...]) -> tuple[str, ...]:
        values = dict(st.rule.labels)
        values.update(zip(st.rule.label_groups, key, strict=True))
        return tuple(values[n] for n in label_names)

    @staticmethod
    def signature(rule: LineRule) -> list[Any]:
        """What must not change for a rule's saved series to keep their meaning (the regex may be
        fixed): `restore` drops the series of a rule whose signature differs from the snapshot's."""
        return [
            rule.name,
            rule.type,
            [list(kv) for kv in rule.labels],
            list(rule.label_groups),
            list(rule.buckets),
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "rules": {
                st.rule.rule_id: {
                    "signature": self.signature(st.rule),
                    "series": [[list(k), v] for k, v in st.series.items()],
                    "matches": st.matches,
                    "overflow": st.overflow,
                    "value_errors": st.value_errors,
                }
                for st in self._states
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a snapshot. Rules whose metric changed shape (name, type, labels, buckets)
        start from zero; series beyond today's limits are folded into "other" (gauges: dropped)."""
        if (
            not isinstance(state, Mapping)
            or state.get("version") != 1
            or not isinstance(state.get("rules"), dict)
        ):
            raise ValueError("log rules snapshot: expected {version: 1, rules: {...}}")
        saved: dict[str, Any] = state["rules"]
        restored: list[tuple[_State, dict[tuple[str, ...], Any], int, int, int]] = []
        for st in self._states:
            entry = saved.get(st.rule.rule_id)
            if not isinstance(entry, dict) or entry.get("signature") != self.signature(st.rule):
                restored.append((st, {}, 0, 0, 0))
                continue
            series: dict[tuple[str, ...], Any] = {}
            for raw_key, value in entry.get("series", []):
                key = tuple(str(v) for v in raw_key)
                if len(key) != len(st.label_idx):
                    raise ValueError(
                        f"log rules snapshot: rule {st.rule.rule_id}: bad series key {raw_key!r}"
                    )
                series[key] = _checked_value(st.rule, value)
            restored.append(
                (
                    st,
                    series,
                    int(entry.get("matches", 0)),
                    int(entry.get("overflow", 0)),
                    int(entry.get("value_errors", 0)),
                )
            )
        # All parsed: now replace the state, applying today's limits.
        self._total = 0
        for st, series, matches, overflow, value_errors in restored:
            st.series = {}
            st.matches, st.overflow, st.value_errors = matches, overflow, value_errors
            for key, value in series.items():
                if key in st.series or (
                    len(st.series) < st.rule.max_series and self._total < self._max_total
                ):
                    st.series[key] = value
                    self._total += 1
                elif st.rule.type != "gauge":
                    other = st.series.get(st.other)
                    if other is None:
                        self._total += 1
                        st.series[st.other] = value
                    elif st.rule.type == "counter":
                        st.series[st.other] = other + value
                    else:
                        st.series[st.other] = [a + b for a, b in zip(other, value, strict=True)]
            self._init_series(st)


def _checked_value(rule: LineRule, value: Any) -> Any:
    if rule.type == "histogram":
        if (
            not isinstance(value, list)
            or len(value) != len(rule.buckets) + 2
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        ):
            raise ValueError(f"log rules snapshot: rule {rule.rule_id}: bad histogram {value!r}")
        return [int(v) for v in value[:-1]] + [float(value[-1])]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"log rules snapshot: rule {rule.rule_id}: bad value {value!r}")
    return float(value)


def _text(data: bytes, span: tuple[int, int]) -> str:
    s, e = span
    return data[s:e].decode("utf-8", "replace") if s >= 0 else ""


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))

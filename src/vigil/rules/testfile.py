"""The rule unit-test file format of `promtool test rules`, read unchanged by `vigil rules test`.

    rule_files: [alerts.yml]          globs, relative to the test file
    evaluation_interval: 1m           default 1m
    group_eval_order: [g1, g2]        groups named here are evaluated first, in this order
    fuzzy_compare: false              (3.x) floats equal within one ulp
    tests:
      - name: ...
        interval: 1m                  step of input_series; default evaluation_interval
        input_series: [{series: 'up{job="a"}', values: '1+1x10 _x3 stale'}]
        external_labels: {...}        $externalLabels in templates
        external_url: http://...      $externalURL in templates
        start_timestamp: ...          (3.x) where time 0 of the test is; RFC 3339 or unix seconds
        alert_rule_test: [{eval_time, alertname, exp_alerts: [{exp_labels, exp_annotations}]}]
        promql_expr_test: [{expr, eval_time, exp_samples: [{labels, value, histogram}]}]

promtool reads it strictly (an unknown key is an error), so do these models; problems are one-line
`ConfigError`s naming `file: key.path: expected ..., got ...`. Fields as in Prometheus 3.x
(cmd/promtool/unittest.go); 2.42 lacks `fuzzy_compare`, `start_timestamp` and `histogram`.
"""

from __future__ import annotations

import glob
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from vigil.config import ConfigError
from vigil.config.types import Bool, Duration, Section
from vigil.config.validate import load_yaml, validate
from vigil.model.show import show

DEFAULT_EVALUATION_INTERVAL_MS = 60_000


def _text(value: object) -> str:
    """A YAML scalar read into a Go string: yaml.v2 takes numbers and booleans as their text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"expected a string, got {show(value)}")


def _string_map(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of names to strings, got {show(value)}")
    return {_text(k): _text(v) for k, v in value.items()}


def _float(value: object) -> float:
    # A float64 field: YAML numbers (.inf and .nan included); also the Go float text PyYAML leaves as
    # a string though yaml.v2 reads it as a number (`1e3`).
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a number, got {show(value)}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
    raise ValueError(f"expected a number, got {show(value)}")


def _timestamp(value: object) -> float:
    """`start_timestamp`: RFC 3339 or (fractional) unix seconds, as promtool's parseTime; in seconds."""
    if value is None:
        return 0.0
    if isinstance(value, datetime):  # PyYAML resolves unquoted ISO timestamps itself (UTC if naive)
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    raise ValueError(f"expected an RFC 3339 time or unix seconds, got {show(value)}")


Text = Annotated[str, BeforeValidator(_text)]
StringMap = Annotated[dict[str, str], BeforeValidator(_string_map)]
Float = Annotated[float, BeforeValidator(_float)]
Timestamp = Annotated[float, BeforeValidator(_timestamp)]


class InputSeries(Section):
    """One input series: labels and values in the expanding notation (`1+1x10 _x3 stale`)."""

    series: Text = ""
    values: Text = ""


class ExpAlert(Section):
    """One expected firing alert; `alertname` is added to exp_labels by the runner."""

    exp_labels: StringMap = Field(default_factory=dict)
    exp_annotations: StringMap = Field(default_factory=dict)


class AlertRuleTest(Section):
    """The firing alerts of the rules named `alertname` at `eval_time`."""

    eval_time: Duration = 0
    alertname: Text = ""
    exp_alerts: tuple[ExpAlert, ...] = ()


class ExpSample(Section):
    """One expected sample: `labels` in PromQL metric notation (`up{job="a"}`)."""

    labels: Text = ""
    value: Float = 0.0
    histogram: Text = ""  # a `{{...}}` native histogram; `value` is ignored when set


class PromqlExprTest(Section):
    """The result of an instant query of `expr` at `eval_time`."""

    expr: Text = ""
    eval_time: Duration = 0
    exp_samples: tuple[ExpSample, ...] = ()


class TestGroup(Section):
    """Input series, the tests over them and the context templates see."""

    __test__ = False  # not a pytest class

    name: Text = ""
    interval: Duration = 0
    input_series: tuple[InputSeries, ...] = ()
    alert_rule_test: tuple[AlertRuleTest, ...] = ()
    promql_expr_test: tuple[PromqlExprTest, ...] = ()
    external_labels: StringMap = Field(default_factory=dict)
    external_url: Text = ""
    start_timestamp: Timestamp = 0.0  # unix seconds of the test's time 0

    def max_eval_time(self) -> int:
        """The latest eval_time of any of its tests (ms): rules are evaluated up to it."""
        times = [t.eval_time for t in self.alert_rule_test] + [t.eval_time for t in self.promql_expr_test]
        return max(times, default=0)


class UnitTestFile(Section):
    """A whole unit-test file."""

    rule_files: tuple[Text, ...] = ()
    evaluation_interval: Duration = 0
    group_eval_order: tuple[Text, ...] = ()
    tests: tuple[TestGroup, ...] = ()
    fuzzy_compare: Bool = False

    def interval_ms(self) -> int:
        return self.evaluation_interval or DEFAULT_EVALUATION_INTERVAL_MS


def parse_test_file(text: str, source: str) -> UnitTestFile:
    """Parse and validate a unit-test file's text; errors are one-line ConfigErrors."""
    data: Any = load_yaml(text, source)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping with keys {', '.join(UnitTestFile.model_fields)}, got {show(data)}",
            source=source,
        )
    parsed = validate(UnitTestFile, data, source)
    seen: set[str] = set()
    for i, name in enumerate(parsed.group_eval_order):
        if name in seen:
            raise ConfigError(
                f"group name repeated in evaluation order: {name}",
                source=source,
                key=f"group_eval_order[{i}]",
            )
        seen.add(name)
    return parsed


def load_test_file(path: Path) -> UnitTestFile:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=str(path)
        ) from None
    return parse_test_file(text, str(path))


def resolve_rule_files(test_file: Path, patterns: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """The rule files a test names: each pattern relative to the test file's directory, globbed (Go's
    filepath.Glob: `*`, `?`, `[...]`, no `**`), matches in sorted order. Returns the files and the
    patterns that matched nothing (promtool warns about those and carries on)."""
    base = test_file.parent
    files: list[Path] = []
    unmatched: list[str] = []
    for pattern in patterns:
        full = pattern if pattern == "" or os.path.isabs(pattern) else os.path.join(base, pattern)
        shown = os.path.normpath(full) if full else full
        matches = (
            sorted(glob.glob(full, include_hidden=True))
            if glob.has_magic(full)
            else ([full] if full and os.path.lexists(full) else [])
        )
        if not matches:
            unmatched.append(shown)
        files.extend(Path(m) for m in matches)
    return files, unmatched

"""`vigil rules test`: run promtool-format rule unit tests with promtool's verdicts and output.

For each test group (cmd/promtool/unittest.go, 3.x semantics):
  * input_series are expanded (vigil.promql.seriesdesc) into samples at start + i*interval and put
    into a fresh Vigil TSDB in a temporary directory, lazily: before the evaluation at ts only the
    samples at or before ts are present, as promtool's LazyLoader does (this is visible to `@` and
    negative offsets, and to promql_expr_test evaluated after the last rule evaluation);
  * the rule groups are evaluated at start, start+evaluation_interval, ... up to the latest eval_time
    of the group's tests, in `group_eval_order` (groups not named there come first, in file order:
    promtool gives them no order at all); a rule evaluation error stops the group with that error;
  * after the evaluation at ts, every alert_rule_test with ts <= eval_time < ts + interval compares
    the *firing* alerts of the rules named `alertname` (pending ones do not count) with exp_alerts,
    labels and annotations exactly, both sides sorted;
  * promql_expr_test then run as instant queries at start + eval_time; the samples (a scalar is one
    sample with no labels) are sorted by labels and compared exactly (`fuzzy_compare`: one ulp).
The query engine is configured as promtool's test engine: 5m lookback, 10000 samples, 100 s timeout,
subqueries without a step use evaluation_interval. Prometheus 3.x semantics throughout (left-open
range windows), where promtool 2.42 differs.

Output: `Unit Testing:  FILE` then `  SUCCESS` on stdout, or `  FAILED:` and each failure on stderr
(promtool's text, plus a diff of expected vs got). Exit 0 when every file passes, 1 otherwise.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from vigil.config import ConfigError
from vigil.model.duration import format_duration
from vigil.model.labels import Labels
from vigil.promql.engine import Engine, EngineOptions
from vigil.promql.errors import PromQLError
from vigil.promql.seriesdesc import Histogram, SeriesDescError, parse_metric, parse_series, parse_values
from vigil.rules.testfile import TestGroup, UnitTestFile, load_test_file, resolve_rule_files
from vigil.rules.testfmt import (
    Alert,
    Pairs,
    Sample,
    SampleEq,
    alerts_diff,
    alerts_string,
    go_duration,
    go_quote,
    indent_lines,
    samples_diff,
    samples_string,
)
from vigil.storage.interface import Storage
from vigil.tsdb.db import DB, Options

EXIT_OK = 0
EXIT_FAILED = 1

# promtool's test engine (promqltest.NewLazyLoader): 10000 samples, 100 s, 5m lookback.
MAX_SAMPLES = 10_000
TIMEOUT_S = 100.0

# Test data starts at 0 and may span years; nothing may be refused, flushed or expired meanwhile.
_HUGE_MS = 2**62
_DB_OPTIONS = Options(
    out_of_order_window_ms=_HUGE_MS,
    retention_ms=_HUGE_MS,
    future_grace_ms=_HUGE_MS,
    head_flush_span_ms=_HUGE_MS,
    fsync=False,
)


# ---------------------------------------------------------------------------------------------
# What the runner needs of the rules engine (vigil.rules): loading groups and evaluating them.


class UnitAlert(Protocol):
    @property
    def firing(self) -> bool: ...
    @property
    def labels(self) -> Labels: ...
    @property
    def annotations(self) -> Sequence[tuple[str, str]]: ...


class UnitRule(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    def alerts(self) -> Sequence[UnitAlert] | None:
        """The active alerts of an alerting rule; None for a recording rule."""
        ...


class UnitGroup(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def rules(self) -> Sequence[UnitRule]: ...
    def eval(self, ts_ms: int) -> None: ...


@dataclass(frozen=True)
class GroupContext:
    """What the rules see of a test group: where they read and write, and the template context."""

    storage: Storage
    engine: Engine
    default_interval_ms: int
    external_labels: Labels
    external_url: str


class LoadError(Exception):
    """The rule files cannot be loaded; one message per problem (promtool: LoadGroups' errors)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# Loads the groups of the rule files, in file order and group order within a file; raises LoadError.
RuleLoader = Callable[[Sequence[Path], GroupContext], Sequence[UnitGroup]]


# ---------------------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors


@dataclass
class _Loader:
    """Input samples appended up to a time, as promtool's LazyLoader.appendTill."""

    db: DB
    series: list[tuple[int, np.ndarray, np.ndarray]]  # (ref, timestamps, values), timestamps ascending
    done: list[int] = field(default_factory=list)  # per series: how many are appended

    def __post_init__(self) -> None:
        self.done = [0] * len(self.series)

    def append_till(self, ts_ms: int) -> None:
        refs, ts, vs = [], [], []
        for i, (ref, t, v) in enumerate(self.series):
            end = int(np.searchsorted(t, ts_ms, side="right"))
            if end > self.done[i]:
                refs.append(np.full(end - self.done[i], ref, np.int64))
                ts.append(t[self.done[i] : end])
                vs.append(v[self.done[i] : end])
                self.done[i] = end
        if refs:
            res = self.db.append(np.concatenate(refs), np.concatenate(ts), np.concatenate(vs))
            if res.rejected:  # cannot happen with _DB_OPTIONS; never drop test input silently
                raise RuntimeError(f"storage refused input samples: {res.rejected}")


def _input_series(tg: TestGroup, start_ms: int, step_ms: int) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """Expand input_series; raises SeriesDescError naming the series. A repeated series replaces the
    earlier one, as in promtool's load command."""
    defs: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}
    for i, s in enumerate(tg.input_series):
        try:
            labels, _ = parse_series(s.series + " _") if s.series else (None, [])
            if labels is None:
                raise SeriesDescError("expected a metric name or a label set, got an empty series")
            values = parse_values(s.values.strip(" \t"))
        except SeriesDescError as e:
            raise SeriesDescError(f"input_series[{i}]: {s.series} {s.values}: {e}") from None
        if any(isinstance(v, Histogram) for v in values):
            raise SeriesDescError(f"input_series[{i}]: {s.series}: native histograms are not supported")
        slots = [(k, v) for k, v in enumerate(values) if isinstance(v, float)]
        t = np.array([start_ms + k * step_ms for k, _ in slots], np.int64)
        v = np.array([v for _, v in slots], np.float64)
        defs[labels] = (t, v)
    return [(lb, t, v) for lb, (t, v) in defs.items()]


def _ordered(groups: Sequence[UnitGroup], order: Sequence[str]) -> list[UnitGroup]:
    # promtool sorts by the index in group_eval_order, unnamed groups counting as 0 (so they tie
    # with the first named group, in random map order); here ties keep file order.
    rank = {name: i for i, name in enumerate(order)}
    return sorted(groups, key=lambda g: rank.get(g.name, 0))


@contextmanager
def _test_db() -> Iterator[DB]:
    path = Path(tempfile.mkdtemp(prefix="vigil-rules-test-"))
    db = DB(path / "db", _DB_OPTIONS, now_ms=lambda: 0)
    try:
        yield db
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)


def _sorted_pairs(d: dict[str, str]) -> Pairs:
    return tuple(sorted(d.items()))


def run_group(
    tg: TestGroup, utf: UnitTestFile, rule_files: Sequence[Path], load_rules: RuleLoader, where: str = ""
) -> list[str]:
    """Run one test group; returns promtool's failure texts (empty when it passes). `where` names the
    group in input errors (`file: tests[0]`)."""
    eval_ms = utf.interval_ms()
    step_ms = tg.interval or eval_ms
    start_ms = round(tg.start_timestamp * 1000)
    name_line = f"    name: {tg.name},\n" if tg.name else ""
    try:
        inputs = _input_series(tg, start_ms, step_ms)
    except SeriesDescError as e:
        return [f"{where}.{e}" if where else str(e)]
    with _test_db() as db:
        engine = Engine(
            db, EngineOptions(max_samples=MAX_SAMPLES, timeout_s=TIMEOUT_S, default_subquery_step_ms=eval_ms)
        )
        loader = _Loader(db, [(db.series_ref(lb), t, v) for lb, t, v in inputs])
        ctx = GroupContext(db, engine, step_ms, Labels.from_dict(tg.external_labels), tg.external_url)
        for a in tg.alert_rule_test:
            if not a.alertname:
                where = f" (in TestGroup {tg.name})" if tg.name else ""
                return [
                    "an item under alert_rule_test misses required attribute alertname at eval_time "
                    f"{format_duration(a.eval_time)}{where}"
                ]
        try:
            groups = _ordered(load_rules(rule_files, ctx), utf.group_eval_order) if rule_files else []
        except LoadError as e:
            return e.messages
        errs: list[str] = []
        alert_times = sorted({a.eval_time for a in tg.alert_rule_test})
        curr = 0
        maxt = start_ms + tg.max_eval_time()
        ts = start_ms
        while ts <= maxt:
            loader.append_till(ts)
            eval_errs: list[str] = []
            for g in groups:
                g.eval(ts)
                for r in g.rules:
                    if r.last_error is not None:
                        eval_errs.append(f"    rule: {r.name}, time: {go_duration(ts)}, err: {r.last_error}")
            errs.extend(eval_errs)
            if eval_errs:
                return errs
            while curr < len(alert_times) and ts - start_ms <= alert_times[curr] < ts - start_ms + eval_ms:
                errs.extend(_check_alerts(tg, alert_times[curr], groups, name_line))
                curr += 1
            ts += eval_ms
        errs.extend(_check_exprs(tg, engine, start_ms, SampleEq(utf.fuzzy_compare)))
    return errs


def _check_alerts(tg: TestGroup, t: int, groups: Sequence[UnitGroup], name_line: str) -> list[str]:
    errs: list[str] = []
    tests = [a for a in tg.alert_rule_test if a.eval_time == t]
    wanted = {a.alertname for a in tests}
    got: dict[str, list[Alert]] = {}
    for g in groups:  # the same alert name may be used by rules in several groups
        for r in g.rules:
            alerts = r.alerts()
            if alerts is None or r.name not in wanted:
                continue
            got.setdefault(r.name, []).extend(
                (tuple(a.labels), tuple(sorted(a.annotations))) for a in alerts if a.firing
            )
    for test in tests:
        got_alerts = sorted(got.get(test.alertname, []))
        exp_alerts = sorted(
            (_sorted_pairs({**a.exp_labels, "alertname": test.alertname}), _sorted_pairs(a.exp_annotations))
            for a in test.exp_alerts
        )
        if exp_alerts == got_alerts:
            continue
        exp_s = indent_lines(alerts_string(exp_alerts), " " * 12)
        got_s = indent_lines(alerts_string(got_alerts), " " * 12)
        diff = "\n".join("          " + line for line in alerts_diff(exp_alerts, got_alerts))
        errs.append(
            f"{name_line}    alertname: {test.alertname}, time: {format_duration(t)}, \n"
            f"        exp:{exp_s}, \n        got:{got_s}\n        diff (- expected, + got):\n{diff}"
        )
    return errs


def _check_exprs(tg: TestGroup, engine: Engine, start_ms: int, same: SampleEq) -> list[str]:
    errs: list[str] = []
    for tc in tg.promql_expr_test:
        where = f"    expr: {go_quote(tc.expr)}, time: {format_duration(tc.eval_time)}"
        try:
            res = engine.instant_query(tc.expr, start_ms + tc.eval_time)
        except PromQLError as e:
            errs.append(f"{where}, err: {e}")
            continue
        got: list[Sample]
        if res.type == "vector":
            got = [(tuple(s.labels), float(s.values[0]), "") for s in res.series]
        elif res.type == "scalar" and res.scalar is not None:
            got = [((), res.scalar[1], "")]
        else:
            errs.append(f"{where}, err: rule result is not a vector or scalar")
            continue
        exp: list[Sample] = []
        bad = None
        for s in tc.exp_samples:
            try:
                labels = tuple(parse_metric(s.labels))
                if s.histogram:
                    hist = parse_values(s.histogram)
                    if len(hist) != 1 or not isinstance(hist[0], Histogram):
                        raise SeriesDescError(f"expected one histogram, got {s.histogram!r}")
            except SeriesDescError as e:
                bad = f"{where}, err: labels {go_quote(s.labels)}: {e}"
                break
            exp.append((labels, s.value, s.histogram))
        if bad:
            errs.append(bad)
            continue
        exp.sort(key=lambda s: s[0])
        got.sort(key=lambda s: s[0])
        if len(exp) == len(got) and all(same(e, g) for e, g in zip(exp, got, strict=True)):
            continue
        diff = "\n".join("          " + line for line in samples_diff(exp, got, same))
        errs.append(
            f"{where},\n        exp: {samples_string(exp)}\n        got: {samples_string(got)}\n"
            f"        diff (- expected, + got):\n{diff}"
        )
    return errs


def run_file(path: Path, load_rules: RuleLoader) -> FileResult:
    """Run every test group of one file."""
    result = FileResult(str(path))
    try:
        utf = load_test_file(path)
    except ConfigError as e:
        result.errors.append(str(e))
        return result
    files, unmatched = resolve_rule_files(path, utf.rule_files)
    result.warnings.extend(f"  WARNING: no file match pattern {p}" for p in unmatched)
    for i, tg in enumerate(utf.tests):
        result.errors.extend(run_group(tg, utf, files, load_rules, f"{path}: tests[{i}]"))
    return result


def main(
    paths: Sequence[Path], load_rules: RuleLoader, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Test each file, print as promtool does; 0 if all pass, 1 otherwise (a missing file included)."""
    out = out or sys.stdout  # looked up per call: the streams may be replaced after import
    err = err or sys.stderr
    missing = [p for p in paths if not p.exists()]
    if missing:  # promtool refuses to start (kingpin ExistingFiles), exit 1
        print(f"vigil rules test: error: path '{missing[0]}' does not exist", file=err)
        return EXIT_FAILED
    failed = False
    for p in paths:
        print("Unit Testing: ", p, file=out, flush=True)
        result = run_file(p, load_rules)
        for w in result.warnings:
            print(w, file=err)
        if result.passed:
            print("  SUCCESS", file=out)
        else:
            failed = True
            print("  FAILED:", file=err)
            for e in result.errors:
                print(e, file=err)
                print(file=out)
        print(file=out, flush=True)
    return EXIT_FAILED if failed else EXIT_OK

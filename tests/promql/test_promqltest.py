"""The promqltest DSL parser and runner themselves (no PromQL engine needed: a toy one stands in)."""

from __future__ import annotations

import math
import runpy
import struct
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import promql_parser
import pytest

from tests.promql import promqltest as dsl
from tests.promql.xfail import XFAIL
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql import seriesdesc as sd
from vigil.promql.errors import ParseError
from vigil.promql.result import QueryResult, Series
from vigil.storage.interface import Storage
from vigil.tsdb.db import DB

FILES = dsl.testdata_files()
needs_testdata = pytest.mark.skipif(not FILES, reason=f"no *.test files in {dsl.TESTDATA_DIR}")

# Eval commands per file at prometheus@d15adb9 (the counts in /work/shared/notes/promql-testsuite.md).
EVALS_PER_FILE = {
    "aggregators.test": 160,
    "at_modifier.test": 78,
    "collision.test": 2,
    "duration_expression.test": 59,
    "extended_vectors.test": 169,
    "fill-modifier.test": 46,
    "functions.test": 431,
    "histograms.test": 185,
    "info.test": 53,
    "limit.test": 37,
    "literals.test": 25,
    "name_label_dropping.test": 30,
    "native_histograms.test": 522,
    "operators.test": 214,
    "range_queries.test": 18,
    "selectors.test": 31,
    "staleness.test": 17,
    "start_timestamps.test": 26,
    "subquery.test": 34,
    "trig_functions.test": 19,
    "type_and_unit.test": 58,
}


def bits(v: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def L(name: str = "", **labels: str) -> Labels:
    return Labels.from_dict({"__name__": name, **labels})


# ---------------------------------------------------------------------------------------------
# The test data


@needs_testdata
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_file_parses(path: Path) -> None:
    script = dsl.parse_file(path)
    assert script.evals
    assert len(script.evals) == EVALS_PER_FILE.get(path.name), "eval count changed: update EVALS_PER_FILE"
    for ev in script.evals:
        if ev.kind == "range":
            assert ev.end_ms is not None and ev.step_ms > 0
        assert ev.loads_before <= len(script.segments[ev.segment])


@needs_testdata
def test_eval_counts() -> None:
    total = nh = 0
    print()
    for path in FILES:
        evals = dsl.parse_file(path).evals
        n = sum(ev.native_histograms for ev in evals)
        print(f"{path.name:28} {len(evals):4} evals  {n:4} native-histogram")
        total, nh = total + len(evals), nh + n
    print(f"{'total':28} {total:4} evals  {nh:4} native-histogram")
    assert total == sum(EVALS_PER_FILE.values())


@needs_testdata
def test_xfail_table_names_real_cases() -> None:
    cases = {ev.id: ev for _, ev in dsl.iter_cases()}
    unknown = sorted(set(XFAIL) - set(cases))
    assert not unknown, f"xfail.py names cases that do not exist: {unknown}"
    redundant = sorted(i for i in XFAIL if cases[i].native_histograms)
    assert not redundant, f"native-histogram cases are xfailed automatically: {redundant}"


@needs_testdata
def test_at_variants_of_the_suite_reparse() -> None:
    rewritten = 0
    for _, ev in dsl.iter_cases():
        if ev.kind != "instant":
            continue
        try:
            variants = dsl.at_modifier_variants(ev.query, ev.eval_ms)
        except dsl.AtRewriteError:
            continue  # experimental syntax promql_parser does not know
        for query, _ in variants[:1]:
            promql_parser.parse(query)
            rewritten += 1
    assert rewritten > 1000


def test_almost_equal() -> None:
    assert dsl.almost_equal(1.0, 1.0 + 1e-9)
    assert not dsl.almost_equal(1.0, 1.0001)
    assert not dsl.almost_equal(0.0, 1e-300)  # exact around zero
    assert dsl.almost_equal(math.nan, math.nan)
    assert not dsl.almost_equal(math.nan, sd.STALE_NAN)
    assert dsl.almost_equal(sd.STALE_NAN, sd.STALE_NAN)
    assert dsl.almost_equal(math.inf, math.inf) and not dsl.almost_equal(math.inf, -math.inf)
    assert not dsl.almost_equal(math.inf, 1e308)


def test_start_timestamp_sequences() -> None:
    assert dsl.parse_st_values("_ _ -30s-1mx2 -1ms 0 1msx1 _x2") == [
        None, None, -30_000, -90_000, -150_000, -1, 0, 1, 1, None, None
    ]  # fmt: skip
    assert dsl.parse_st_values("-1m * *x1") == [-60_000] * 4


# ---------------------------------------------------------------------------------------------
# Commands


SCRIPT = """
# a comment
load 1m
  metric{a="1"} 1 2 stale 4
  metric{a="2"} _ 10x2
  metric{a="2"} _ 20x2

eval instant at 1m metric
  metric{a="1"} 2
  metric{a="2"} 20

clear
load_with_nhcb 5m
\thist_bucket{le="1"} 1
\thist_bucket{le="+Inf"} 2
\tnh {{schema:0 count:1}} 2

eval_ordered instant at 0 sort(hist_bucket)
  expect warn msg: PromQL warning: something (1:1)
  hist_bucket{le="1"} 1
  expect no_info
  hist_bucket{le="+Inf"} 2

eval instant at 0 hist
  expect fail regex: ^bad

eval range from 0 to 10m step 5m {__name__=~"n.*"}
  {} 1 _ 3

eval instant at 10m x[10m]
  expect range vector from 5m to 10m step 5m
  x 1 2

eval instant at 1h "s"
  expect string "s"

eval instant at 1m30s 0x10
  16
<whitespace-only line>
eval_fail instant at 0 y
  expected_fail_message some error
""".replace("<whitespace-only line>", " \t ")


def test_commands() -> None:
    script = dsl.parse_text(SCRIPT, "t.test")
    kinds = [type(c).__name__ for c in script.commands]
    assert kinds == ["Load", "Eval", "Clear", "Load", "Eval", "Eval", "Eval", "Eval", "Eval", "Eval", "Eval"]
    load = script.commands[0]
    assert isinstance(load, dsl.Load) and load.step_ms == 60_000
    (l1, t1, v1), (l2, t2, v2) = load.series
    assert l1 == L("metric", a="1") and t1.tolist() == [0, 60_000, 120_000, 180_000]
    assert bits(float(v1[2])) == sd.STALE_NAN_BITS
    assert l2 == L("metric", a="2") and t2.tolist() == [60_000, 120_000, 180_000]  # the later line wins
    assert v2.tolist() == [20.0, 20.0, 20.0]

    first, ordered, fail, rng, rvec, string, scalar, legacy = script.evals
    assert first.id == "t.test:8" and first.kind == "instant" and first.eval_ms == 60_000
    assert first.expected[L("metric", a="2")].values == [20.0] and first.segment == 0
    assert first.loads_before == 1

    nhcb = script.commands[3]
    assert isinstance(nhcb, dsl.Load) and nhcb.with_nhcb and nhcb.histogram_series == [L("nh")]
    assert ordered.is_ordered and ordered.segment == 1 and ordered.loads_before == 1
    assert [e.kind for e in ordered.expects] == ["warn", "no_info"]
    assert ordered.expected[L("hist_bucket", le="1")].pos == 1
    assert ordered.expected[L("hist_bucket", le="+Inf")].pos == 2  # expect lines do not count
    assert not ordered.native_histograms  # hist_bucket itself is a float series
    assert fail.is_fail and fail.expects[0].regex == "^bad" and fail.native_histograms  # `hist` is NHCB
    assert rng.kind == "range" and (rng.start_ms, rng.end_ms, rng.step_ms) == (0, 600_000, 300_000)
    assert rng.native_histograms  # {__name__=~"n.*"} selects `nh`
    assert rvec.range_vector and rvec.exclude_from_range_query
    assert (rvec.start_ms, rvec.end_ms, rvec.step_ms, rvec.eval_ms) == (300_000, 600_000, 300_000, 600_000)
    assert string.expected_string == "s" and string.exclude_from_range_query
    assert scalar.expect_scalar and scalar.scalar == 16.0 and scalar.eval_ms == 90_000
    assert legacy.is_fail and legacy.expected_fail_message == "some error"


@pytest.mark.parametrize(
    "text",
    [
        "bogus 1m",
        "load",
        "load 1.5m\n  x 1",
        "eval instant at 1m x\n  x 1 2",  # several values need `expect range vector`
        "eval instant at 1m x\n  expect fail\n  expect fail",
        "eval instant at 1m x\n  expect warn\n  expect no_warn",
        "eval instant at 1m x\n  expect nonsense",
        "eval range from 2m to 1m step 1m x",
        'eval instant at 0 "a"\n  expect string a',
        "load 1m\n  x@st -1m\n",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(dsl.DSLError):
        dsl.parse_text(text, "bad.test")


def test_at_modifier_variants() -> None:
    assert dsl.at_modifier_variants("sum(x) + rate(y[5m] offset 1m)", 100_500) == [
        (q := "sum(x @ 100.500) + rate(y[5m] @ 100.500 offset 1m)", -1_005_000),
        (q, 0),
        (q, 20_100),
        (q, 100_500),
        (q, 1_005_000),
    ]
    assert [t for _, t in dsl.at_modifier_variants("x", 0)] == [-1000, 0, 1000]
    # Nothing inside a subquery is touched; fixed `@` stays; start()/end() are pinned to T.
    q, _ = dsl.at_modifier_variants("max_over_time(x[5m:1m]) + y @ 3 + z @ end()", 60_000)[0]
    assert q == "max_over_time(x[5m:1m] @ 60.000) + y @ 3.000 + z @ 60.000"
    assert dsl.at_modifier_variants("time() + x", 60_000) == []
    assert dsl.at_modifier_variants("timestamp(x)", 60_000) == []
    with pytest.raises(dsl.AtRewriteError):
        dsl.at_modifier_variants("rate(x[1m] smoothed)", 0)


# ---------------------------------------------------------------------------------------------
# The runner, against a toy engine


class ToyEngine:
    """Just enough PromQL for the runner's tests: number and string literals, vector selectors (5m
    lookback, `@`, staleness) and matrix selectors; anything else is a ParseError."""

    def __init__(self, storage: Storage, ignore_at: bool = False) -> None:
        self.storage = storage
        self.ignore_at = ignore_at

    def _matchers(self, vs: Any) -> list[Matcher]:
        ms = [Matcher("=", "__name__", vs.name)] if vs.name else []
        ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
        return ms + [Matcher(ops[str(m.op)], m.name, m.value) for m in vs.matchers.matchers]

    def _at(self, vs: Any, t: int) -> int:
        if vs.at is None or self.ignore_at:
            return t
        at: datetime = vs.at.at
        return round(at.timestamp() * 1000)

    def instant_query(self, query: str, time_ms: int) -> QueryResult:
        try:
            expr = promql_parser.parse(query)
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        if isinstance(expr, promql_parser.NumberLiteral):
            return QueryResult("scalar", scalar=(time_ms, expr.val))
        if isinstance(expr, promql_parser.StringLiteral):
            return QueryResult("string", string=(time_ms, expr.val))
        if isinstance(expr, promql_parser.VectorSelector):
            t = self._at(expr, time_ms)
            out = []
            for labels, ts, vs in self.storage.select(self._matchers(expr), t - 300_000 + 1, t):
                if len(ts) and not sd.is_stale(float(vs[-1])):
                    out.append(Series(labels, np.array([time_ms]), vs[-1:]))
            return QueryResult("vector", out)
        if isinstance(expr, promql_parser.MatrixSelector):
            vsel = expr.vector_selector
            t = self._at(vsel, time_ms)
            rng = int(expr.range.total_seconds() * 1000)
            out = []
            for labels, ts, vs in self.storage.select(self._matchers(vsel), t - rng + 1, t):
                keep = ~np.array([sd.is_stale(float(v)) for v in vs], dtype=bool)
                if keep.any():
                    out.append(Series(labels, ts[keep], vs[keep]))
            return QueryResult("matrix", sorted(out, key=lambda s: s.labels))
        raise ParseError(f"toy engine cannot run {query!r}")

    def range_query(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        points: dict[Labels, list[tuple[int, float]]] = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            res = self.instant_query(query, t)
            if res.type == "scalar":
                assert res.scalar is not None
                points.setdefault(Labels(), []).append((t, res.scalar[1]))
            else:
                for s in res.series:
                    points.setdefault(s.labels, []).append((t, float(s.values[0])))
        series = [
            Series(labels, np.array([t for t, _ in pts]), np.array([v for _, v in pts]))
            for labels, pts in sorted(points.items())
        ]
        return QueryResult("matrix", series)


RUNNABLE = """
load 1m
  metric{a="1"} 1 2 stale 4
  metric{a="2"} _ 10x3

eval instant at 1m metric
  metric{a="1"} 2
  metric{a="2"} 10

eval instant at 2m metric
  metric{a="2"} 10

eval range from 0 to 3m step 1m metric
  metric{a="1"} 1 2 _ 4
  metric{a="2"} _ 10 10 10

eval instant at 3m metric[2m]
  expect range vector from 2m to 3m step 1m
  metric{a="1"} _ 4
  metric{a="2"} 10 10

eval instant at 0 "a"
  expect string "a"

eval instant at 0 5
  5

eval instant at 0 rate(metric[5m])
  expect fail regex: cannot run

eval instant at 0 metric{a="3"}

clear

eval instant at 1m metric

load 1m
  other 1

eval instant at 1m other
  other 1
"""


def _run(
    tmp_path: Path, text: str, make_engine: Callable[[Storage], Any] = ToyEngine
) -> list[dsl.CaseResult]:
    path = tmp_path / "case.test"
    path.write_text(text)
    return dsl.run_file(path, make_engine, tmp_path / "dbs")


def test_runner_passes_a_correct_file(tmp_path: Path) -> None:
    results = _run(tmp_path, RUNNABLE)
    assert [r.message for r in results if r.status != "passed"] == []
    assert len(results) == 10


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('eval instant at 1m metric\n  metric{a="1"} 3\n  metric{a="2"} 10', "expected 3.0 for"),
        ('eval instant at 1m metric\n  metric{a="1"} 2', 'unexpected metric metric{a="2"}'),
        ('eval instant at 1m metric{a="1"}\n  metric{a="1"} 2\n  metric{a="3"} 2', "not found"),
        ('eval instant at 1m metric{a="1"}\n  2', "expected scalar result"),
        ("eval instant at 1m 1\n  metric 1", "expected vector or matrix result, but got scalar"),
        (
            'eval range from 0 to 3m step 1m metric\n  metric{a="1"} 1 2 3 4\n  metric{a="2"} _ 10 10 10',
            "expected 4 float points",
        ),
        ('eval range from 0 to 1m step 1m metric{a="2"}\n  metric{a="2"} 10 _', "to have timestamp"),
        ('eval instant at 1m metric{a="1"}\n  expect fail', "expected an error but got none"),
        ("eval instant at 0 rate(metric[5m])\n  expect fail msg: nope", "expected error matching 'nope'"),
        ("eval instant at 0 rate(metric[5m])", "at 0ms: error: toy engine cannot run"),
        ('eval instant at 1m metric[1m]\n  metric{a="1"} 2', "cannot return this many points"),
        ('eval instant at 0 "a"\n  expect string "b"', 'expected string "b"'),
    ],
)
def test_runner_reports_mismatches(tmp_path: Path, body: str, message: str) -> None:
    (result,) = _run(tmp_path, RUNNABLE.split("eval")[0] + body + "\n")
    assert result.status == "failed" and message in result.message, result.message


def test_runner_runs_at_modifier_variants(tmp_path: Path) -> None:
    # An engine that ignores `@` is caught by the variants evaluated at other times.
    text = "load 1m\n  m 1 2 3\n\neval instant at 2m m\n  m 3\n"
    assert _run(tmp_path, text)[0].status == "passed"
    (result,) = _run(tmp_path, text, lambda s: ToyEngine(s, ignore_at=True))
    assert result.status == "failed" and "m @ 120.000" in result.message


def test_runner_checks_range_mode(tmp_path: Path) -> None:
    class RangeOffByOne(ToyEngine):
        """Range queries report each step's value one step late."""

        def range_query(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
            res = super().range_query(query, start_ms - step_ms, end_ms - step_ms, step_ms)
            return QueryResult(
                "matrix", [Series(s.labels, s.timestamps + step_ms, s.values) for s in res.series]
            )

    text = "load 1m\n  m 1 2 3\n\neval instant at 2m m\n  m 3\n"
    (result,) = _run(tmp_path, text, RangeOffByOne)
    assert result.status == "failed" and "in range mode" in result.message


def test_runner_reports_engine_crashes(tmp_path: Path) -> None:
    class Crashing(ToyEngine):
        def instant_query(self, query: str, time_ms: int) -> QueryResult:
            raise TypeError("boom")

    (result,) = _run(tmp_path, "eval instant at 0 x\n  expect fail\n", Crashing)
    assert result.status == "failed" and "engine: raised TypeError: boom" in result.message


def test_native_histogram_cases_are_not_run(tmp_path: Path) -> None:
    text = "load 1m\n  h {{count:1}}\n  f 1\n\neval instant at 0 h\n  h 1\n\neval instant at 0 f\n  f 1\n"
    results = _run(tmp_path, text)
    assert [(r.status, r.message) for r in results] == [
        ("unsupported", dsl.NATIVE_HISTOGRAMS),
        ("passed", ""),
    ]


def test_sessions_rebuild_state_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "case.test"
    path.write_text(RUNNABLE)
    script = dsl.parse_file(path)
    pool = dsl.SessionPool({script.file: script}, ToyEngine, tmp_path / "dbs")
    try:
        for ev in reversed(script.evals):  # every eval still sees exactly its preceding loads
            result = pool.run(ev)
            assert result.status == "passed", result.message
    finally:
        pool.close()


def test_loaded_data_round_trips_through_the_db(tmp_path: Path) -> None:
    script = dsl.parse_text("load 1m\n  b 5 stale\n  a _ 1\n", "x.test")
    load = script.commands[0]
    assert isinstance(load, dsl.Load)
    with DB(tmp_path / "db", dsl.DB_OPTIONS) as db:
        dsl._append(db, load)
        got = {
            labels.metric_name: (ts.tolist(), vs.view(np.uint64).tolist())
            for labels, ts, vs in db.select([Matcher("=~", "__name__", ".+")], -(2**62), 2**62)
        }
    assert got == {"a": ([60_000], [bits(1.0)]), "b": ([0, 60_000], [bits(5.0), sd.STALE_NAN_BITS])}


def test_write_xfail(tmp_path: Path) -> None:
    table = tmp_path / "xfail.py"
    table.write_text(
        '"""Doc."""\n\nXFAIL: dict[str, str] = {\n    "a.test:1": "old",\n    "b.test:9": "old"\n}\n'
    )
    results = [
        dsl.CaseResult("a.test:3", "a.test", 3, "q", "failed", reason="x" * 300),
        dsl.CaseResult("a.test:2", "a.test", 2, "q", "failed", reason='quote " and \\'),
        dsl.CaseResult("a.test:5", "a.test", 5, "q", "passed"),
        dsl.CaseResult("a.test:7", "a.test", 7, "q", "unsupported", reason=dsl.NATIVE_HISTOGRAMS),
    ]
    assert dsl.write_xfail(results, {"a.test"}, table) == 3
    text = table.read_text()
    assert text.startswith('"""Doc."""\n\nXFAIL')
    assert max(len(line) for line in text.splitlines()) <= 110
    xfail = runpy.run_path(str(table))["XFAIL"]
    assert list(xfail) == ["a.test:3", "a.test:2", "b.test:9"]  # run order, other files kept
    assert xfail["a.test:2"] == 'quote " and \\' and xfail["a.test:3"].endswith("...")

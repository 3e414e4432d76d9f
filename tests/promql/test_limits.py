"""Query limits: a sample budget, a timeout, a parse-depth and length limit, linear-time regexes,
reported with Prometheus' error types.

Regressions here would crash the interpreter (a deep query overflows the parser extension's
stack), freeze it (a backtracking regex holds the GIL) or allocate GiBs; those cases run in a
child process (tests.isolated) with an address-space limit, or check that the guard rejects the
query before the work starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import VigilProcess
from tests.isolated import run_isolated
from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.prompb.encode import encode_write_request
from vigil.promql import ast, parser
from vigil.promql.engine import Engine, EngineOptions
from vigil.promql.errors import ParseError, QueryTimeout, TooManySamples
from vigil.tsdb.db import DB, Options


@pytest.fixture
def db(tmp_path: Path):
    d = DB(tmp_path, Options(fsync=False), now_ms=lambda: 600_000)  # the samples' "now"
    ref = d.series_ref(Labels.from_dict({"__name__": "m"}))
    ts = np.arange(0, 600_000, 15_000)
    d.append(np.full(ts.size, ref), ts, np.ones(ts.size))
    yield d
    d.close()


def test_sample_budget(db: DB) -> None:
    assert len(Engine(db, EngineOptions(max_samples=100)).instant_query("m[10m]", 599_000).series) == 1
    with pytest.raises(TooManySamples, match="too many samples"):
        Engine(db, EngineOptions(max_samples=10)).instant_query("m[10m]", 599_000)


def test_timeout(db: DB) -> None:
    with pytest.raises(QueryTimeout, match="query timed out"):
        Engine(db, EngineOptions(timeout_s=0.0)).range_query("sum(rate(m[1m]))", 0, 600_000, 15_000)


# -- parse depth and length ---------------------------------------------------------------------


def _deep(shape: str, n: int) -> str:
    """A query of `n` levels of one kind of nesting."""
    return {
        "parens": "(" * n + "1" + ")" * n,
        "plus": "+".join(["1"] * (n + 1)),
        "minus": "-" * n + "x",
        "calls": "abs(" * n + "x" + ")" * n,
        "aggregations": "sum(" * n + "x" + ")" * n,
        "subqueries": "max_over_time(" * (n // 2) + "x" + "[5m:1m])" * (n // 2),
        "power": "^".join(["x"] * (n + 1)),
        "label_replace": "label_replace(" * n + "x" + ',"b","c","a","(.*)")' * n,
        "or": " or ".join(["x"] * (n + 1)),
    }[shape]


SHAPES = ("parens", "plus", "minus", "calls", "aggregations", "subqueries", "power", "label_replace", "or")


@pytest.fixture
def no_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser extension must not see what the guard rejects: calling it fails the test."""

    def refuse(query: str) -> None:
        raise AssertionError(f"the extension was given a {len(query)}-character query")

    monkeypatch.setattr(parser.pp, "parse", refuse)


@pytest.mark.parametrize(
    "query",
    [
        "(" * 10_000 + "1" + ")" * 10_000,  # the audit's: SIGSEGV in the extension
        "+".join(["1"] * 5_001),  # the audit's `1+1+…` x 5,000: 25 s, 8 GiB, then SIGSEGV
        "(" * 5_000 + "1" + ")" * 5_000,  # the audit's: 6.7 s and 2.1 GiB
        "(" * 10_000,  # never closed: still as deep for the extension
        "sum(" * 300 + "x",
        "-" * 1_000 + "x",
        "x" + "[5m:1m]" * 300,
    ],
    ids=lambda q: f"{q[:12]}…{len(q)}",
)
def test_deep_queries_are_rejected_before_parsing(query: str, no_extension: None) -> None:
    with pytest.raises(ParseError, match="parse error: expression nests too deeply: more than 200 levels"):
        parser.parse(query)


def test_long_queries_are_rejected_before_parsing(no_extension: None) -> None:
    query = 'up{instance=~"' + "a" * parser.MAX_LENGTH + '"}'
    with pytest.raises(ParseError, match=f"query is {len(query)} characters long; at most 131072"):
        parser.parse(query)


@pytest.mark.parametrize("shape", SHAPES)
def test_queries_at_the_depth_limit_evaluate(db: DB, shape: str) -> None:
    # The limit leaves room for every recursion over the tree (extension, conversion, evaluation),
    # also on a server's worker thread; one more level is refused.
    n = parser.MAX_DEPTH
    while parser.nesting_depth(_deep(shape, n))[0] > parser.MAX_DEPTH:
        n -= 1
    assert n >= parser.MAX_DEPTH // 2 - 1  # subqueries count twice: a call and a bracket
    query = _deep(shape, n)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Engine(db).instant_query(query, 599_000)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert not errors, errors
    deeper = _deep(shape, n + 2)
    with pytest.raises(ParseError, match="nests too deeply"):
        parser.parse(deeper)


def test_pathological_parse_in_a_child_does_not_crash() -> None:
    # End to end, as a request would: the process survives and answers with a 400-type error.
    outcome = run_isolated(
        """
        from vigil.promql.errors import ParseError
        from vigil.promql.parser import parse
        for q in ["(" * 10_000 + "1" + ")" * 10_000, "+".join(["1"] * 5_001)]:
            try:
                parse(q)
            except ParseError as e:
                print(e.status, "nests too deeply" in str(e))
        """,
        max_bytes=1 << 30,
    )
    assert outcome.ok, outcome.stderr
    assert outcome.stdout.split() == ["400", "True"] * 2


_EXPR = st.deferred(
    lambda: st.one_of(
        st.sampled_from(["x", "1", 'y{a=~"(("}', "z[5m]", "time()"]),
        st.builds("({})".format, _EXPR),
        st.builds("-{}".format, _EXPR),
        st.builds("abs({})".format, _EXPR),
        st.builds("sum by (a) ({})".format, _EXPR),
        st.builds("max_over_time(({})[5m:1m])".format, _EXPR),
        st.builds("{} {} {}".format, _EXPR, st.sampled_from(["+", "*", "^", "==", "and", "or", "/"]), _EXPR),
        st.builds("{} + on(a) group_left {}".format, _EXPR, _EXPR),
        st.builds("clamp({}, {}, {})".format, _EXPR, _EXPR, _EXPR),
    )
)


def _tree_depth(e: object) -> int:
    children = [
        c
        for f in dataclasses.fields(e)  # type: ignore[arg-type]
        for c in (getattr(e, f.name) if isinstance(getattr(e, f.name), tuple) else (getattr(e, f.name),))
        if dataclasses.is_dataclass(c) and not isinstance(c, ast.At | ast.VectorMatching | Matcher)
    ]
    return 1 + max((_tree_depth(c) for c in children), default=0)


@settings(deadline=None, max_examples=300)
@given(_EXPR)
def test_nesting_depth_bounds_the_tree(query: str) -> None:
    try:
        tree = parser.parse(query)
    except ParseError:
        return  # type errors of the generated query: nothing to bound
    assert _tree_depth(tree) <= parser.nesting_depth(query)[0] + 1, query


# -- regexes on request-driven values ---------------------------------------------------------


def test_backtracking_regexes_cannot_freeze_the_server(tmp_path: Path) -> None:
    # The audit's: one series with a 40-character value froze the server for 60 s past a 5 s
    # timeout (Python's re holds the GIL; no deadline can interrupt it), and label_replace ran
    # > 106 s. In a child, so that a regression fails this test instead of hanging the suite.
    outcome = run_isolated(
        f"""
        from pathlib import Path
        import numpy as np
        from vigil.model.labels import Labels
        from vigil.promql.engine import Engine, EngineOptions
        from vigil.tsdb.db import DB, Options
        db = DB(Path({str(tmp_path)!r}), Options(fsync=False), now_ms=lambda: 86_400_000)
        ref = db.series_ref(Labels.from_dict({{"__name__": "card", "a": "a" * 40}}))
        db.append(np.array([ref]), np.array([1000]), np.array([1.0]))
        engine = Engine(db, EngineOptions(timeout_s=5.0))
        r = engine.instant_query('card{{a=~"(a?){{30}}a{{30}}"}}', 2000)
        print(len(r.series))
        r = engine.instant_query('label_replace(card, "x", "$1", "a", "(a+)+b")', 2000)
        print(len(r.series), r.series[0].labels.get("x") == "")
        r = engine.instant_query('label_replace(card, "x", "$1", "a", "(a+)+")', 2000)
        print(r.series[0].labels.get("x") == "a" * 40)
        db.close()
        """
    )
    assert outcome.ok, outcome.stderr
    assert outcome.stdout.split() == ["1", "1", "True", "True"]


# -- deadline inside evaluation ------------------------------------------------------------------


def _stepping_clock(step_s: float = 1.0) -> Callable[[], float]:
    """A clock that moves `step_s` each time it is read: the deadline passes after a fixed number
    of checks, whatever the machine's speed."""
    counter = itertools.count()
    return lambda: next(counter) * step_s


@pytest.mark.parametrize(
    "query",
    [
        "deriv(m[10m])",  # a Python loop over the 40 samples of each window
        "stddev_over_time(m[10m])",
        "double_exponential_smoothing(m[10m], 0.5, 0.5)",
        'histogram_quantile(0.5, label_replace(m, "le", "+Inf", "", ""))',  # per step
    ],
)
def test_deadline_is_checked_inside_functions(db: DB, query: str) -> None:
    # 20 readings of the clock: more than the few checks between nodes (so a plain `m` passes),
    # fewer than the per-sample or per-step ones inside these functions.
    engine = Engine(db, EngineOptions(timeout_s=20.0), clock=_stepping_clock())
    assert engine.instant_query("m", 599_000).series
    with pytest.raises(QueryTimeout, match="query timed out in query execution"):
        engine.range_query(query, 0, 600_000, 15_000)
    generous = Engine(db, EngineOptions(timeout_s=1e6), clock=_stepping_clock())
    assert generous.range_query(query, 0, 600_000, 15_000).series


def test_deadline_is_checked_per_series(tmp_path: Path) -> None:
    d = DB(tmp_path, Options(fsync=False), now_ms=lambda: 86_400_000)  # the samples are in the first day
    try:
        refs = [d.series_ref(Labels.from_dict({"__name__": "m", "i": str(i)})) for i in range(100)]
        d.append(np.array(refs), np.full(100, 1000), np.ones(100))
        for fn in ('label_replace(m, "j", "$1", "i", "(.*)")', 'label_join(m, "j", ",", "i")'):
            with pytest.raises(QueryTimeout):
                Engine(d, EngineOptions(timeout_s=20.0), clock=_stepping_clock()).instant_query(fn, 2000)
    finally:
        d.close()


# -- the sample budget counts what evaluation materialises ---------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "max_over_time(vector(1)[30d:1ms])",  # > 6 GiB in the audit
        "sum_over_time(vector(1)[1d:1ms])",  # > 6 GiB
        "max_over_time(m[1d:1ms])",  # 500 MemoryError, 51.5 GiB
        "rate(m[5m])[5m:1ms]",  # 53 s
        "count_over_time(m[5m:1ms])",  # 200 series x 300,000 steps
    ],
)
def test_subquery_steps_count_against_the_budget(tmp_path: Path, query: str) -> None:
    # Default budget (50 M points), a 1 GiB address space: the error must come before the arrays.
    outcome = run_isolated(
        f"""
        from pathlib import Path
        import numpy as np
        from vigil.model.labels import Labels
        from vigil.promql.engine import Engine
        from vigil.promql.errors import TooManySamples
        from vigil.tsdb.db import DB, Options
        db = DB(Path({str(tmp_path)!r}), Options(fsync=False), now_ms=lambda: 86_400_000)
        refs = [db.series_ref(Labels.from_dict({{"__name__": "m", "i": str(i)}})) for i in range(200)]
        ts = np.arange(86_400_000 - 600_000, 86_400_000, 15_000)  # the last 10 minutes
        db.append(np.repeat(refs, ts.size), np.tile(ts, 200), np.ones(200 * ts.size))
        try:
            Engine(db).instant_query({query!r}, 86_400_000)
        except TooManySamples as e:
            print(e.status, e.error_type)
        db.close()
        """,
        max_bytes=1 << 30,
    )
    assert outcome.ok, outcome.stderr[-2000:]
    assert outcome.stdout.split() == ["422", "execution"]


def test_budget_counts_range_steps(db: DB) -> None:
    # A 1 ms step over an hour is 3.6 M steps; refused before the step array exists.
    with pytest.raises(TooManySamples):
        Engine(db, EngineOptions(max_samples=1_000_000)).range_query("vector(1)", 0, 3_600_000, 1)
    assert len(Engine(db, EngineOptions(max_samples=1_000)).range_query("m", 0, 600_000, 15_000).series) == 1
    with pytest.raises(TooManySamples):  # 41 steps x 1 series + 40 samples + 41 steps > 100
        Engine(db, EngineOptions(max_samples=100)).range_query("m", 0, 600_000, 15_000)


def test_budget_counts_what_operators_create(tmp_path: Path) -> None:
    d = DB(tmp_path, Options(fsync=False), now_ms=lambda: 86_400_000)  # the samples are in the first day
    try:
        # count_values: a series per distinct value, each as long as the query.
        small = Engine(d, EngineOptions(max_samples=100_000))
        assert small.range_query('count_values("v", vector(1))', 0, 999_000, 1000).series
        with pytest.raises(TooManySamples):
            small.range_query('count_values("v", vector(time()))', 0, 999_000, 1000)
        # group_left pairs every many-side series with every one-side series of its signature,
        # which is legal as long as those are present at different steps (1 ms lookback: each
        # b series only at its own step).
        a = [d.series_ref(Labels.from_dict({"__name__": "a", "i": str(i)})) for i in range(10)]
        b = [d.series_ref(Labels.from_dict({"__name__": "b", "i": str(i)})) for i in range(200)]
        steps = np.arange(1000, 201_000, 1000)
        d.append(np.repeat(a, steps.size), np.tile(steps, len(a)), np.ones(len(a) * steps.size))
        d.append(np.array(b), steps, np.ones(len(b)))
        pairs = "a + on() group_left b"  # 10 x 200 pairs x 200 steps = 400,000 points
        kwargs = {"lookback_delta_ms": 1}
        with pytest.raises(TooManySamples):
            small.range_query(pairs, 1000, 200_000, 1000, **kwargs)
        big = Engine(d, EngineOptions(max_samples=1_000_000))
        assert len(big.range_query(pairs, 1000, 200_000, 1000, **kwargs).series) == 10
    finally:
        d.close()


# -- math on scalars is a type error ------------------------------------------------------------


@pytest.mark.parametrize("query", ["ln(-1)", "ln(0)", "log2(-1)", "log10(-1)", "exp(NaN)", "ln(-Inf)"])
def test_math_functions_reject_scalars(db: DB, query: str) -> None:
    # The extension lets these through (for sqrt(-1) it does not); Prometheus: 400 bad_data.
    with pytest.raises(ParseError, match=r"expected type vector in call to function '\w+', got scalar"):
        Engine(db).instant_query(query, 599_000)


def test_math_functions_on_vectors(db: DB) -> None:
    for query, expected in [
        ("ln(vector(-1))", "nan"),
        ("ln(vector(0))", "-inf"),
        ("log2(vector(-1))", "nan"),
    ]:
        series = Engine(db).instant_query(query, 599_000).series
        assert [str(float(s.values[0])) for s in series] == [expected]


def test_limits_through_the_api(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("query:\n  max_samples: 5\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    try:
        t0 = int(time.time()) * 1000 - 60_000  # a minute of samples up to now: the server takes them
        body = encode_write_request(
            [[("__name__", "m")]], [[(t0 + t, 1.0) for t in range(1000, 60_000, 1000)]]
        )
        r = httpx.post(
            v.url + "/api/v1/write",
            content=bytes(cramjam.snappy.compress_raw(body)),
            headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 204
        r = httpx.get(
            v.url + "/api/v1/query", params={"query": "count_over_time(m[1m])", "time": t0 // 1000 + 60}
        )
        assert r.status_code == 422
        assert r.json()["errorType"] == "execution" and "too many samples" in r.json()["error"]
        # A 1 ns timeout has always expired by the time evaluation starts.
        r = httpx.get(
            v.url + "/api/v1/query", params={"query": "m", "time": t0 // 1000 + 60, "timeout": "0.000000001"}
        )
        assert r.status_code == 503 and r.json()["errorType"] == "timeout", r.text
        r = httpx.get(v.url + "/api/v1/query", params={"query": "max_over_time(vector(1)[30d:1ms])"})
        assert r.status_code == 422 and "too many samples" in r.json()["error"], r.text
        for query, message in [
            ("(" * 10_000 + "1" + ")" * 10_000, "nests too deeply"),
            ("+".join(["1"] * 5_001), "nests too deeply"),
            ("ln(-1)", "expected type vector in call to function 'ln', got scalar"),
        ]:
            r = httpx.post(v.url + "/api/v1/query", data={"query": query, "time": "60"})
            assert r.status_code == 400 and r.json()["errorType"] == "bad_data", r.text
            assert message in r.json()["error"]
        assert httpx.get(v.url + "/-/healthy").status_code == 200  # still serving
    finally:
        v.stop()

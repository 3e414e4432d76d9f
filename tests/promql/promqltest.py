"""Prometheus' PromQL conformance DSL (`promqltest`): a parser for its `*.test` files and a runner.

The files come from prometheus/prometheus `promql/promqltest/testdata/` (copied to the team's
`shared/peers/promql-testdata/`, beside the checkout or in /work, or wherever `VIGIL_PROMQL_TESTDATA`
points). Their meaning is defined by `promql/promqltest/test.go`; this module follows it line by line:

    load <step>              series lines `metric{a="b"} 1+2x3 _ stale`, sample i at i*step ms
    load_with_nhcb <step>    the same (classic histograms are also turned into native ones upstream)
    clear                    start again from empty storage
    eval instant at <t> <q>  expected series lines with one value each, a bare number (scalar),
                             `expect string "s"`, `expect range vector from a to b step s` + series
    eval range from <a> to <b> step <s> <q>
    expect fail|warn|info|no_warn|no_info|ordered [msg: text|regex: re]

How an eval is checked (test.go `execInstantEval`, `runInstantQuery`, `execRangeEval`):
  * range eval: one range query; the result must be a matrix sorted by labels and match exactly.
  * instant eval at T: the query at T; then, unless it calls a function whose value depends on the
    evaluation time, the query rewritten with `@ T` on every selector and subquery that lacks one
    (nothing inside a subquery is touched) is run at -10T, 0, T/5, T and 10T (T=0: -1s, 0, 1s), and
    must give the same result. Each of these is also run as a range query from t-1m to t+1m step 1m
    and the middle step compared, except for `expect fail|ordered|string|range vector` and queries
    matching `(start|end|range|step)\\(\\)`.
  * values compare with almost.Equal(1e-6): relative error, exact around 0, NaN equals NaN, a
    stale marker only equals a stale marker.
  * expected errors compare `str(exc)` of a `PromQLError` with the Prometheus message (exact or
    regex); any other exception from the engine is a failure, never an expected error.
  * warn/info annotations are NOT checked (Vigil does not reproduce Prometheus' annotation texts
    yet): `expect warn|info|no_warn|no_info` lines and the legacy `eval_warn`/`eval_info` are parsed
    and kept on the Eval, but the runner ignores them; the rest of such a case is checked as usual.

Series descriptions (`load` lines) are read by vigil.promql.seriesdesc.
Native histograms are out of scope: `{{...}}` values are recognised (kept as `Histogram` text, never
loaded), and an eval that expects a histogram or selects a series that holds histograms (including
the ones `load_with_nhcb` would create) is marked `native_histograms` and reported as unsupported.
Start timestamps (`metric@st ...` lines) are parsed but not loaded: Vigil stores none.

Run it by hand (needs `vigil.promql.engine`), from the repository root:
    .venv/bin/python -m tests.promql.promqltest [-v] [--xfail | --write-xfail] [FILE.test ...]
-v prints every failure, --xfail prints the failures as xfail.py entries, --write-xfail rewrites the
table in xfail.py (for the given files only, if any).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import runpy
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import promql_parser

from vigil.model.duration import parse_duration
from vigil.model.labels import METRIC_NAME, Labels
from vigil.model.matcher import Matcher
from vigil.promql.errors import PromQLError
from vigil.promql.result import QueryResult
from vigil.promql.seriesdesc import (
    Histogram,
    SeqValue,
    go_parse_number,
    go_unquote,
    is_stale,
    parse_series,
)
from vigil.storage.interface import Storage
from vigil.tsdb.db import DB, Options


def _testdata_dir() -> Path:
    """`VIGIL_PROMQL_TESTDATA`, else the team's shared/ copy: beside the checkout (where CI lays it)
    or at /work/shared."""
    if env := os.environ.get("VIGIL_PROMQL_TESTDATA"):
        return Path(env)
    beside = Path(__file__).resolve().parents[3] / "shared" / "peers" / "promql-testdata"
    return beside if beside.is_dir() else Path("/work/shared/peers/promql-testdata")


TESTDATA_DIR = _testdata_dir()
NATIVE_HISTOGRAMS = "native histograms are not supported"

# Prometheus' test engine (promqltest.NewTestEngine): 5m lookback, 10000 samples, 100s timeout.
MAX_SAMPLES = 10_000
TIMEOUT_S = 100.0

EPSILON = 1e-6
_MIN_NORMAL = 2.2250738585072014e-308
_MAX_FLOAT = sys.float_info.max

# Test DBs: data is loaded out of time order across series, starts at t=0 and may span years;
# nothing may be rejected, flushed in the background or expired by retention.
_HUGE_MS = 2**62
DB_OPTIONS = Options(
    out_of_order_window_ms=_HUGE_MS, retention_ms=_HUGE_MS, head_flush_span_ms=_HUGE_MS, fsync=False
)

# test.go's regexes, verbatim (RE2 and Python agree on them).
_PAT_SPACE = re.compile(r"[\t ]+")
_PAT_LOAD = re.compile(r"^load(?:_(with_nhcb))?\s+(.+?)$")
_PAT_EVAL_INSTANT = re.compile(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
_PAT_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$"
)
_PAT_EXPECT = re.compile(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
_PAT_MATCH_ANY = r"^.*$"
_METRIC_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_RANGE_VECTOR_PREFIX = "expect range vector"
_PAT_EXPECT_RANGE = re.compile("^" + _RANGE_VECTOR_PREFIX + r"\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
_EXPECT_STRING_PREFIX = "expect string"
_QUERY_CONTEXT_FUNCS = re.compile(r"(start|end|range|step)\(\)")

# promql.AtModifierUnsafeFunctions (+ the duration-expression functions, per the notes): their value
# depends on the evaluation time even with step-invariant arguments, so no `@` variants are run.
AT_MODIFIER_UNSAFE_FUNCTIONS = frozenset(
    {
        *("days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute", "month"),
        *("year", "predict_linear", "time", "timestamp", "start", "end", "range", "step"),
    }
)


class DSLError(ValueError):
    """A test file does not follow the promqltest syntax."""


# ---------------------------------------------------------------------------------------------
# Value comparison


def almost_equal(a: float, b: float, epsilon: float = EPSILON) -> bool:
    """Prometheus' util/almost.Equal."""
    if is_stale(a) or is_stale(b):
        return is_stale(a) and is_stale(b)
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, _MAX_FLOAT) < epsilon


def parse_time(s: str) -> int:
    """A test time or duration (`model.ParseDuration`: `0`, `90s`, `1m30s`, `5ms`) in ms."""
    try:
        return parse_duration(s)
    except ValueError as exc:
        raise DSLError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Start timestamps (`metric@st` lines); the series descriptions themselves are vigil.promql.seriesdesc


def _parse_duration_prefix(s: str) -> tuple[int, str]:
    m = re.match(r"([+-]?)([0-9]+[a-wyzA-Z]*)", s)
    if not m:
        raise DSLError(f"expected digits in duration {s!r}")
    ms = parse_time(m.group(2))
    return (-ms if m.group(1) == "-" else ms), s[m.end() :]


def parse_st_values(text: str) -> list[int | None]:
    """A start-timestamp offset sequence (test.go parseSTSequence): `_`, `_xN`, `*`, `*xN`, `<dur>`,
    `<dur>xN`, `<dur>±<dur>xN` with signed durations, as ms offsets from each sample's time."""
    out: list[int | None] = []
    for item in text.split():
        prev = next((v for v in reversed(out) if v is not None), 0)
        if item == "_":
            out.append(None)
        elif item.startswith("_x"):
            if not item[2:].isdigit() or int(item[2:]) == 0:
                raise DSLError(f"invalid ST item {item!r}: invalid repeat count")
            out.extend([None] * int(item[2:]))
        elif item == "*":
            out.append(prev)
        elif item.startswith("*x"):
            if not item[2:].isdigit():
                raise DSLError(f"invalid ST item {item!r}: invalid repeat count")
            out.extend([prev] * (int(item[2:]) + 1))
        else:
            base, rest = _parse_duration_prefix(item)
            if rest == "":
                out.append(base)
            elif rest[0] == "x":
                if not rest[1:].isdigit():
                    raise DSLError(f"invalid ST item {item!r}: invalid repeat count")
                out.extend([base] * (int(rest[1:]) + 1))
            elif rest[0] in "+-":
                delta, rest2 = _parse_duration_prefix(rest[1:])
                delta = -delta if rest[0] == "-" else delta
                if not rest2.startswith("x") or not rest2[1:].isdigit():
                    raise DSLError(f"invalid ST item {item!r}: expected 'x<count>' after step duration")
                out.extend(base + i * delta for i in range(int(rest2[1:]) + 1))
            else:
                raise DSLError(f"invalid ST item {item!r}: unexpected character {rest[0]!r} after duration")
    return out


# ---------------------------------------------------------------------------------------------
# Commands


@dataclass
class Load:
    line: int
    step_ms: int
    # Float samples per series (histogram and omitted slots dropped), in the block's order.
    series: list[tuple[Labels, npt.NDArray[np.int64], npt.NDArray[np.float64]]]
    # Series with at least one `{{...}}` sample (those samples are not loaded).
    histogram_series: list[Labels] = field(default_factory=list)
    with_nhcb: bool = False
    # `metric@st` lines: per-slot start-timestamp offsets (ms); parsed only, Vigil stores none.
    start_timestamps: dict[Labels, list[int | None]] = field(default_factory=dict)


@dataclass
class Clear:
    line: int


@dataclass(frozen=True)
class Expect:
    """An `expect <kind> [msg: text | regex: re]` line; neither text nor regex means "anything"."""

    kind: str  # ordered | fail | warn | no_warn | info | no_info
    message: str | None = None
    regex: str | None = None

    def matches(self, text: str) -> bool:
        if self.regex is None:
            return self.message == text
        return re.search(self.regex, text) is not None

    def __str__(self) -> str:
        return (self.message or "") if self.regex is None else self.regex


@dataclass
class Expected:
    pos: int  # 1-based line position in the block (for `expect ordered`)
    values: list[SeqValue]


@dataclass
class Eval:
    file: str
    line: int  # 1-based line of the `eval` command
    kind: Literal["instant", "range"]
    query: str
    eval_ms: int = 0  # instant: the evaluation time (the end of `expect range vector` if given)
    start_ms: int = 0  # range / expected matrix: first step
    end_ms: int | None = None  # None: a plain instant eval (Go's zero time: every point is "after")
    step_ms: int = 0
    legacy_fail: bool = False  # eval_fail / eval_ordered / eval_warn / eval_info
    legacy_ordered: bool = False
    legacy_warn: bool = False
    legacy_info: bool = False
    expected_fail_message: str | None = None
    expected_fail_regexp: str | None = None
    expects: list[Expect] = field(default_factory=list)
    expected: dict[Labels, Expected] = field(default_factory=dict)
    expect_scalar: bool = False
    scalar: float | None = None
    expected_string: str = ""
    range_vector: bool = False
    exclude_from_range_query: bool = False
    segment: int = 0  # index of the clear-separated part of the file the eval runs in
    loads_before: int = 0  # loads of that part that precede it
    native_histograms: bool = False

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_fail(self) -> bool:
        return self.legacy_fail or any(e.kind == "fail" for e in self.expects)

    @property
    def is_ordered(self) -> bool:
        return self.legacy_ordered or any(e.kind == "ordered" for e in self.expects)


Command = Load | Clear | Eval


@dataclass
class Script:
    """One parsed test file: its commands in order, and its loads grouped by clear-separated part."""

    file: str
    commands: list[Command]
    segments: list[list[Load]]

    @property
    def evals(self) -> list[Eval]:
        return [c for c in self.commands if isinstance(c, Eval)]


def _lines(text: str) -> list[str]:
    lines = [ln.strip() for ln in text.split("\n")]
    return ["" if ln.startswith("#") else ln for ln in lines]


def _parse_load(lines: list[str], i: int) -> tuple[int, Load]:
    m = _PAT_LOAD.match(lines[i])
    if not m:
        raise DSLError("invalid load command. (load[_with_nhcb] <step:duration>)")
    step = parse_time(m.group(2))
    defs: dict[Labels, list[SeqValue]] = {}
    sts: dict[Labels, list[int | None]] = {}
    default_st: list[int | None] | None = None
    pending: tuple[Labels, list[int | None]] | None = None
    while i + 1 < len(lines) and lines[i + 1] != "":
        i += 1
        line = lines[i]
        head = _PAT_SPACE.split(line, maxsplit=1)
        if len(head) == 2 and head[0].endswith("@st"):
            if pending is not None:
                raise DSLError("@st line has no following sample line")
            metric = head[0].removesuffix("@st")
            st_vals = parse_st_values(head[1].strip())
            if metric == "":
                default_st = st_vals
                continue
            pending = (parse_series(metric + " _")[0], st_vals)
            continue
        labels, values = parse_series(line)
        if pending is not None:
            if pending[0] != labels:
                raise DSLError("@st metric does not match the following sample line metric")
            if len(pending[1]) != len(values):
                raise DSLError(f"@st line has {len(pending[1])} values but sample line has {len(values)}")
            sts[labels] = pending[1]
            pending = None
        elif default_st:
            sts[labels] = [default_st[k % len(default_st)] for k in range(len(values))]
        defs[labels] = values  # a repeated series replaces the earlier line, as upstream
    if pending is not None:
        raise DSLError("@st line has no following sample line")
    load = Load(line=0, step_ms=step, series=[], with_nhcb=m.group(1) == "with_nhcb", start_timestamps=sts)
    for labels, values in defs.items():
        ts = [k * step for k, v in enumerate(values) if isinstance(v, float)]
        vs = [v for v in values if isinstance(v, float)]
        if any(isinstance(v, Histogram) for v in values):
            load.histogram_series.append(labels)
        load.series.append((labels, np.array(ts, dtype=np.int64), np.array(vs, dtype=np.float64)))
    return i, load


def _parse_eval(lines: list[str], i: int, file: str) -> tuple[int, Eval]:
    header = lines[i]
    im = _PAT_EVAL_INSTANT.match(header)
    rm = _PAT_EVAL_RANGE.match(header)
    if im is None and rm is None:
        raise DSLError(
            "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant "
            "[at <offset:duration>] <query>' or "
            "'eval[_fail|_warn] range from <from> to <to> step <step> <query>'"
        )
    if im is not None:
        mod, query = im.group(1), im.group(3)
        t = parse_time(im.group(2) or "")
        ev = Eval(file, i + 1, "instant", query, eval_ms=t, start_ms=t)
    else:
        assert rm is not None
        mod, query = rm.group(1), rm.group(5)
        start, end, step = parse_time(rm.group(2)), parse_time(rm.group(3)), parse_time(rm.group(4))
        if end < start:
            raise DSLError(
                f"invalid test definition, end timestamp ({rm.group(3)}) is before start timestamp"
            )
        ev = Eval(file, i + 1, "range", query, start_ms=start, end_ms=end, step_ms=step)
    ev.legacy_fail, ev.legacy_ordered = mod == "fail", mod == "ordered"
    ev.legacy_warn, ev.legacy_info = mod == "warn", mod == "info"

    j = 0
    while i + 1 < len(lines):
        i += 1
        j += 1
        line = lines[i]
        if line == "":
            i -= 1
            break
        # The legacy fail follow-ups end the block (upstream `break`s without backing up).
        if ev.legacy_fail and line.startswith("expected_fail_message"):
            ev.expected_fail_message = line.removeprefix("expected_fail_message").strip()
            break
        if ev.legacy_fail and line.startswith("expected_fail_regexp"):
            ev.expected_fail_regexp = line.removeprefix("expected_fail_regexp").strip()
            re.compile(ev.expected_fail_regexp)
            break
        if line.startswith(_RANGE_VECTOR_PREFIX):
            m = _PAT_EXPECT_RANGE.match(line)
            if not m:
                raise DSLError(f"invalid range vector definition {line!r}")
            start, end, step = (parse_time(m.group(k)) for k in (1, 2, 3))
            if end < start:
                raise DSLError(f"invalid test definition, end timestamp is before start timestamp: {line!r}")
            ev.range_vector = True
            ev.start_ms, ev.end_ms, ev.step_ms, ev.eval_ms = start, end, step, end
            ev.exclude_from_range_query = True
            continue
        if line.startswith(_EXPECT_STRING_PREFIX):
            text = line.removeprefix(_EXPECT_STRING_PREFIX + " ")
            if line == _EXPECT_STRING_PREFIX or text == "":
                raise DSLError("expected string literal not valid - a quoted string literal is required")
            try:
                ev.expected_string = go_unquote(text)
            except ValueError:
                raise DSLError(
                    "expected string literal not valid - check that the string is correctly quoted"
                ) from None
            ev.exclude_from_range_query = True
            continue
        if line.split(" ")[0] == "expect":
            m = _PAT_EXPECT.match(line.strip())
            if not m:
                raise DSLError(
                    "invalid expect statement, must match `expect <type> <match_type>: <string>` format"
                )
            kind, how, arg = m.group(1), m.group(2), m.group(3)
            if how == "msg":
                ev.expects.append(Expect(kind, message=arg.strip()))
            elif how == "regex":
                re.compile(arg.strip())
                ev.expects.append(Expect(kind, regex=arg.strip()))
            else:
                ev.expects.append(Expect(kind, regex=_PAT_MATCH_ANY))
            kinds = [e.kind for e in ev.expects]
            if ("info" in kinds and "no_info" in kinds) or ("warn" in kinds and "no_warn" in kinds):
                raise DSLError("invalid expect lines, warn/info and no_warn/no_info cannot be used together")
            if kinds.count("fail") > 1:
                raise DSLError("invalid expect lines, multiple expect fail lines are not allowed")
            j -= 1
            continue
        try:
            value = go_parse_number(line)
        except ValueError:
            pass
        else:
            ev.expect_scalar, ev.scalar = True, value
            break
        labels, values = parse_series(line)
        if len(values) > 1 and ev.kind == "instant" and not ev.range_vector:
            raise DSLError(
                "expecting multiple values in instant evaluation not allowed. consider using "
                "'expect range vector' directive to enable a range vector result for an instant query"
            )
        ev.expect_scalar = False
        ev.expected[labels] = Expected(j, values)
    return i, ev


def parse_text(text: str, file: str = "<string>") -> Script:
    """Parse a whole test file (test.go `parse`)."""
    lines = _lines(text)
    commands: list[Command] = []
    segments: list[list[Load]] = [[]]
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "":
            i += 1
            continue
        word = _PAT_SPACE.split(line, maxsplit=1)[0].lower()
        start = i
        cmd: Command
        try:
            if word == "clear":
                cmd = Clear(i + 1)
                segments.append([])
            elif word.startswith("load"):
                i, cmd = _parse_load(lines, i)
                cmd.line = start + 1
                segments[-1].append(cmd)
            elif word.startswith("eval"):
                i, cmd = _parse_eval(lines, i, file)
                cmd.segment, cmd.loads_before = len(segments) - 1, len(segments[-1])
            else:
                raise DSLError(f"invalid command {line!r}")
        except (ValueError, re.error) as exc:  # DSLError is a ValueError
            raise DSLError(f"{file}:{start + 1}: {exc}") from None
        commands.append(cmd)
        i += 1
    script = Script(file, commands, segments)
    _mark_native_histograms(script)
    return script


def parse_file(path: Path | str) -> Script:
    path = Path(path)
    return parse_text(path.read_text(encoding="utf-8"), path.name)


def testdata_files(directory: Path = TESTDATA_DIR) -> list[Path]:
    return sorted(directory.glob("*.test"))


def require_testdata() -> list[Path]:
    """The test files; without them a module skips, except on CI (`CI` set), where it fails: there
    the data is always laid out, so missing files are a broken setup, not a reason to run nothing."""
    import pytest  # here: the module is also a command-line runner

    files = testdata_files()
    if not files:
        message = f"no *.test files in {TESTDATA_DIR} (set VIGIL_PROMQL_TESTDATA)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return files


# ---------------------------------------------------------------------------------------------
# Queries: selectors (for native-histogram detection) and the `@` rewrite


def _fatal(exc: BaseException) -> bool:
    # promql_parser panics surface as pyo3's PanicException, a BaseException: catch those (with
    # `except BaseException`) but let these through.
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def _parse_query(query: str) -> Any | None:
    try:
        return promql_parser.parse(query)
    except BaseException as exc:
        if _fatal(exc):
            raise
        return None


# promql_parser's MatchOp is not hashable: look it up by equality.
_MATCH_OPS = [
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
]


def _match_type(op: Any) -> str:
    return next(t for o, t in _MATCH_OPS if o == op)


def query_selectors(query: str) -> list[list[Matcher]] | None:
    """The matchers of every vector selector in the query, or None if promql_parser cannot parse it."""
    expr = _parse_query(query)
    if expr is None:
        return None
    out: list[list[Matcher]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            ms = [Matcher("=", METRIC_NAME, node.name)] if node.name else []
            for m in node.matchers.matchers:
                # A regex Vigil cannot compile is left out, i.e. the selector matches more.
                with contextlib.suppress(ValueError):
                    ms.append(Matcher(_match_type(m.op), m.name, m.value))
            out.append(ms)

    promql_parser.walk(expr, visit)
    return out


def _selects(selectors: list[list[Matcher]], series: Iterable[Labels]) -> bool:
    for labels in series:
        d = labels.to_dict()
        if any(all(m.matches(d.get(m.name, "")) for m in ms) for ms in selectors):
            return True
    return False


def _nhcb_series(load: Load) -> list[Labels]:
    """The native histograms `load_with_nhcb` makes of classic `X_bucket`/`X_sum`/`X_count` series."""
    out = []
    for labels, _, _ in load.series:
        name = labels.metric_name
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and len(name) > len(suffix):
                out.append(
                    Labels.from_dict({**labels.without("le").to_dict(), METRIC_NAME: name[: -len(suffix)]})
                )
                break
    return out


def _histogram_series(load: Load) -> list[Labels]:
    return load.histogram_series + (_nhcb_series(load) if load.with_nhcb else [])


def _mark_native_histograms(script: Script) -> None:
    """Flag evals that expect a histogram or select a series that holds histograms by then."""
    for ev in script.evals:
        values = [v for e in ev.expected.values() for v in e.values]
        if any(isinstance(v, Histogram) for v in values):
            ev.native_histograms = True
            continue
        hist = [h for load in script.segments[ev.segment][: ev.loads_before] for h in _histogram_series(load)]
        if not hist:
            continue
        selectors = query_selectors(ev.query)
        if selectors is None:  # unparsable: look for the names in the text
            names = {h.metric_name for h in hist}
            ev.native_histograms = bool(names & set(_METRIC_IDENT.findall(ev.query)))
        else:
            ev.native_histograms = _selects(selectors, hist)


class AtRewriteError(Exception):
    """The harness cannot build the `@` variants of a query (promql_parser cannot parse it)."""


_STRIP_AT_START_END = re.compile(r"\s@\s(?:start|end)\(\)(?=(?:\s+offset\s+\S+)?$)")


def at_modifier_variants(query: str, t_ms: int) -> list[tuple[str, int]]:
    """test.go atModifierTestCases: `query` with `@ t` on every selector/subquery lacking a fixed `@`
    (`@ start()`/`@ end()` are replaced; nothing inside a subquery is touched), with the times to run
    it at; empty when the query calls a function whose result depends on the evaluation time."""
    expr = _parse_query(query)
    if expr is None:
        raise AtRewriteError(f"promql_parser cannot parse {query!r}")
    unsafe = False

    def find_unsafe(node: Any) -> None:
        nonlocal unsafe
        if isinstance(node, promql_parser.Call) and node.func.name in AT_MODIFIER_UNSAFE_FUNCTIONS:
            unsafe = True

    promql_parser.walk(expr, find_unsafe)
    if unsafe:
        return []
    at = f" @ {t_ms // 1000}.{t_ms % 1000:03d}"  # Go prints `@ %.3f` seconds; t_ms >= 0 here
    depth = 0

    def with_at(node: Any) -> Any:
        if node.at is not None and node.at.type == promql_parser.AtModifierType.At:
            return None
        text = node.prettify()
        if node.at is not None:
            text = _STRIP_AT_START_END.sub("", text)
        return promql_parser.parse(text + at)

    def pre(node: Any) -> None:
        nonlocal depth
        if isinstance(node, promql_parser.SubqueryExpr):
            depth += 1

    def post(node: Any) -> Any:
        nonlocal depth
        if isinstance(node, promql_parser.SubqueryExpr):
            depth -= 1
            return with_at(node) if depth == 0 else None
        if isinstance(node, promql_parser.VectorSelector) and depth == 0:
            return with_at(node)
        return None

    try:
        rewritten = promql_parser.transform(expr, pre, post).prettify()
    except BaseException as exc:
        if _fatal(exc):
            raise
        raise AtRewriteError(f"cannot add @ modifiers to {query!r}: {exc!r}") from None
    times = [-1000, 0, 1000] if t_ms == 0 else [-10 * t_ms, 0, t_ms // 5, t_ms, 10 * t_ms]
    return [(rewritten, t) for t in times]


# ---------------------------------------------------------------------------------------------
# Running


class QueryEngine(Protocol):
    def instant_query(self, query: str, time_ms: int) -> QueryResult: ...

    def range_query(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult: ...


EngineFactory = Callable[[Storage], QueryEngine]


def default_engine_factory() -> EngineFactory:
    """Vigil's engine, configured as Prometheus' own test engine."""
    from vigil.promql.engine import Engine, EngineOptions

    options = EngineOptions(max_samples=MAX_SAMPLES, timeout_s=TIMEOUT_S)
    return lambda storage: Engine(storage, options)


@dataclass
class CaseResult:
    id: str
    file: str
    line: int
    query: str
    status: Literal["passed", "failed", "unsupported"]
    message: str = ""  # the full story, for a test report
    reason: str = ""  # one line, without the query: for the xfail table
    seconds: float = 0.0


@dataclass
class _Value:
    """A query result as compareResult sees it; series are (labels, timestamps, values)."""

    type: Literal["vector", "matrix", "scalar", "string"]
    series: list[tuple[Labels, list[int], list[float]]] = field(default_factory=list)
    scalar: float = 0.0
    string: str = ""

    @classmethod
    def of(cls, res: QueryResult) -> _Value:
        if res.type == "scalar":
            assert res.scalar is not None, "scalar result without a value"
            return cls("scalar", scalar=float(res.scalar[1]))
        if res.type == "string":
            assert res.string is not None, "string result without a value"
            return cls("string", string=res.string[1])
        series = [(s.labels, s.timestamps.tolist(), s.values.tolist()) for s in res.series]
        return cls(res.type, series)


def _fmt(v: float) -> str:
    return "stale" if is_stale(v) else repr(v)


def _fmt_series(ts: list[int], vs: list[float]) -> str:
    pts = ", ".join(f"{_fmt(v)} @[{t}]" for t, v in zip(ts, vs, strict=True))
    return f"{len(ts)} float point{'' if len(ts) == 1 else 's'} [{pts}]"


def _sorted_error(series: list[tuple[Labels, list[int], list[float]]]) -> str | None:
    for k in range(len(series) - 1):
        if tuple(series[k][0]) > tuple(series[k + 1][0]):
            return (
                f"matrix results should always be sorted by labels, but series at index {k + 1} with labels "
                f"{series[k + 1][0]} sorts before series at index {k} with labels {series[k][0]}"
            )
    return None


def compare_result(ev: Eval, val: _Value) -> str | None:
    """test.go compareResult: None if `val` is what `ev` expects, else why not."""
    if val.type == "matrix":
        if ev.is_ordered:
            return "expected ordered result, but query returned a matrix"
        if ev.expect_scalar:
            return f"expected scalar result, but got matrix with {len(val.series)} series"
        if err := _sorted_error(val.series):
            return err
        seen = set()
        for labels, ts, vs in val.series:
            exp = ev.expected.get(labels)
            if exp is None:
                return f"unexpected metric {labels} in result, has {_fmt_series(ts, vs)}"
            seen.add(labels)
            want: list[tuple[int, float]] = []
            hists = 0
            for k, e in enumerate(exp.values):
                t = ev.start_ms + k * ev.step_ms
                if ev.end_ms is None or t > ev.end_ms:
                    return (
                        f"expected {len(exp.values)} points for {labels}, "
                        "but query time range cannot return this many points"
                    )
                if isinstance(e, Histogram):
                    hists += 1
                elif e is not None:
                    want.append((t, e))
            if len(want) != len(ts) or hists:
                return (
                    f"expected {len(want)} float points and {hists} histogram points for {labels}, "
                    f"but got {_fmt_series(ts, vs)}"
                )
            for k, ((wt, wv), t, v) in enumerate(zip(want, ts, vs, strict=True)):
                if wt != t:
                    return (
                        f"expected float value at index {k} for {labels} to have timestamp {wt}, but it had "
                        f"timestamp {t} (result has {_fmt_series(ts, vs)})"
                    )
                if not almost_equal(v, wv):
                    return (
                        f"expected float value at index {k} (t={t}) for {labels} to be {_fmt(wv)}, but got "
                        f"{_fmt(v)} (result has {_fmt_series(ts, vs)})"
                    )
        for labels in ev.expected:
            if labels not in seen:
                return f"expected metric {labels} not found"
        return None
    if val.type == "vector":
        if ev.expect_scalar:
            return f"expected scalar result, but got vector with {len(val.series)} samples"
        seen = set()
        for pos, (labels, _, vs) in enumerate(val.series):
            exp = ev.expected.get(labels)
            if exp is None:
                return f"unexpected metric {labels} in result, has value {_fmt(vs[0])}"
            if ev.is_ordered and exp.pos != pos + 1:
                return f"expected metric {labels} at position {exp.pos} but was at {pos + 1}"
            if not exp.values or len(vs) != 1:
                return f"{labels}: a vector sample needs one expected and one actual value"
            first = exp.values[0]
            if isinstance(first, Histogram):
                return f"expected histogram {first.text} for {labels} but got float value {_fmt(vs[0])}"
            value = 0.0 if first is None else first  # Go: an omitted SequenceValue has Value 0
            if not almost_equal(value, vs[0]):
                return f"expected {_fmt(value)} for {labels} but got {_fmt(vs[0])}"
            seen.add(labels)
        for labels, exp in ev.expected.items():
            if labels not in seen:
                return f"expected metric {labels} with {exp.values} not found"
        return None
    if val.type == "scalar":
        if not ev.expect_scalar:
            return f"expected vector or matrix result, but got scalar {_fmt(val.scalar)}"
        assert ev.scalar is not None
        if not almost_equal(ev.scalar, val.scalar):
            return f"expected scalar {_fmt(ev.scalar)} but got {_fmt(val.scalar)}"
        return None
    if ev.expected_string != val.string:
        return f'expected string "{ev.expected_string}" but got "{val.string}"'
    return None


def _call(fn: Callable[..., QueryResult], *args: Any) -> tuple[QueryResult | None, PromQLError | None]:
    """Run a query; a PromQLError is the query failing, anything else propagates (an engine bug)."""
    try:
        return fn(*args), None
    except PromQLError as exc:
        return None, exc


@dataclass(frozen=True)
class Failure:
    """Why a case failed: `what` went wrong, `where` (which query, time, mode)."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _check_failure(ev: Eval, err: PromQLError, where: str) -> Failure | None:
    text = str(err)
    if ev.expected_fail_message and ev.expected_fail_message != text:
        return Failure(where, f"expected error {ev.expected_fail_message!r}, but got: {text}")
    if ev.expected_fail_regexp and not re.search(ev.expected_fail_regexp, text):
        return Failure(where, f"expected error matching {ev.expected_fail_regexp!r}, but got: {text}")
    fails = [e for e in ev.expects if e.kind == "fail"]
    if fails and not fails[0].matches(text):
        return Failure(where, f"expected error matching {str(fails[0])!r}, but got: {text}")
    return None


def _check(ev: Eval, res: QueryResult, where: str) -> Failure | None:
    # Annotations (res.warnings / res.infos) are deliberately not checked: see the module docstring.
    msg = compare_result(ev, _Value.of(res))
    return Failure(where, msg) if msg else None


def _exec_range(engine: QueryEngine, ev: Eval) -> Failure | None:
    assert ev.end_ms is not None
    where = f"range query {ev.query!r} from {ev.start_ms}ms to {ev.end_ms}ms step {ev.step_ms}ms"
    res, err = _call(engine.range_query, ev.query, ev.start_ms, ev.end_ms, ev.step_ms)
    if err is not None:
        if ev.is_fail:
            return _check_failure(ev, err, where)
        return Failure(where, f"error: {err}")
    assert res is not None
    if ev.is_fail:
        return Failure(where, "expected an error but got none")
    if res.type != "matrix":
        return Failure(where, f"returned a {res.type}, not a matrix")
    return _check(ev, res, where)


def _run_instant(engine: QueryEngine, ev: Eval, query: str, t: int) -> Failure | None:
    where = f"instant query {query!r} at {t}ms"
    res, err = _call(engine.instant_query, query, t)
    if err is not None:
        if ev.is_fail:
            return _check_failure(ev, err, where)
        return Failure(where, f"error: {err}")
    assert res is not None
    if ev.is_fail:
        return Failure(where, "expected an error but got none")
    if fail := _check(ev, res, where):
        return fail
    if ev.exclude_from_range_query or _QUERY_CONTEXT_FUNCS.search(query):
        return None
    # The same query in range mode must give the same result at the middle step.
    where += " in range mode (t-1m..t+1m step 1m)"
    rres, rerr = _call(engine.range_query, query, t - 60_000, t + 60_000, 60_000)
    if rerr is not None:
        return Failure(where, f"error: {rerr}")
    assert rres is not None
    if ev.is_ordered:
        return None  # range results are always sorted by labels
    if rres.type != "matrix":
        return Failure(where, f"returned a {rres.type}, not a matrix")
    mat = _Value.of(rres)
    if msg := _sorted_error(mat.series):
        return Failure(where, msg)
    vec = []
    for labels, ts, vs in mat.series:
        for pt, pv in zip(ts, vs, strict=True):
            if pt == t:
                vec.append((labels, [pt], [pv]))
                break
    if res.type == "scalar":
        if not vec:
            return Failure(where, f"no point at {t}ms for a scalar result")
        msg = compare_result(ev, _Value("scalar", scalar=vec[0][2][0]))
    else:
        msg = compare_result(ev, _Value("vector", vec))
    return Failure(where, msg) if msg else None


def _exec_instant(engine: QueryEngine, ev: Eval) -> Failure | None:
    try:
        variants = at_modifier_variants(ev.query, ev.eval_ms)
    except AtRewriteError as exc:
        return Failure("harness", f"cannot build the @-modifier variants upstream runs: {exc}")
    for query, t in [(ev.query, ev.eval_ms), *variants]:
        if fail := _run_instant(engine, ev, query, t):
            return fail
    return None


def _append(db: DB, load: Load) -> None:
    refs, ts, vs = [], [], []
    for labels, t, v in load.series:
        if len(t) == 0:
            continue  # a series of `_` only never exists upstream either
        refs.append(np.full(len(t), db.series_ref(labels), dtype=np.int64))
        ts.append(t)
        vs.append(v)
    if not refs:
        return
    res = db.append(np.concatenate(refs), np.concatenate(ts), np.concatenate(vs))
    if res.rejected:
        raise RuntimeError(f"load at line {load.line}: storage rejected samples: {res.rejected}")


class FileSession:
    """Storage for one script, advanced lazily to the state an eval needs.

    Evals never change storage, so the state before an eval is "part `segment` of the file with its
    first `loads_before` loads applied". Running evals in file order only ever appends loads or
    opens a fresh DB at a `clear`; any other order still works by rebuilding the part.
    """

    def __init__(self, script: Script, make_engine: EngineFactory, workdir: Path) -> None:
        self.script = script
        self.make_engine = make_engine
        self.workdir = workdir
        self._db: DB | None = None
        self._db_path: Path | None = None
        self._engine: QueryEngine | None = None
        self._state = (-1, 0)  # (segment, loads applied)
        self._opened = 0

    def _engine_for(self, ev: Eval) -> QueryEngine:
        seg, applied = self._state
        if self._db is None or seg != ev.segment or applied > ev.loads_before:
            self.release()
            self._opened += 1
            self._db_path = self.workdir / f"{Path(self.script.file).stem}-{self._opened}"
            self._db = DB(self._db_path, DB_OPTIONS)
            seg, applied = ev.segment, 0
        loads = self.script.segments[seg]
        if applied < ev.loads_before or self._engine is None:
            for load in loads[applied : ev.loads_before]:
                _append(self._db, load)
            self._state = (seg, ev.loads_before)
            self._engine = self.make_engine(self._db)
        return self._engine

    def run(self, ev: Eval) -> CaseResult:
        result = CaseResult(ev.id, ev.file, ev.line, ev.query, "passed")
        if ev.native_histograms:
            result.status, result.message = "unsupported", NATIVE_HISTOGRAMS
            result.reason = NATIVE_HISTOGRAMS
            return result
        started = time.perf_counter()
        engine = self._engine_for(ev)
        try:
            fail = _exec_range(engine, ev) if ev.kind == "range" else _exec_instant(engine, ev)
        except Exception as exc:  # an engine bug, not a PromQL error: show where it came from
            tb = "".join(traceback.format_exception(exc, limit=-4))
            fail = Failure("engine", f"raised {type(exc).__name__}: {exc}\n{tb}")
        result.seconds = time.perf_counter() - started
        if fail:
            result.status, result.message = "failed", f"{ev.id}: {fail}"
            result.reason = fail.what.split("\n")[0]
        return result

    def release(self) -> None:
        """Close and delete the DB (it is rebuilt if needed again)."""
        self._engine = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._db_path is not None:
            shutil.rmtree(self._db_path, ignore_errors=True)
            self._db_path = None
        self._state = (-1, 0)


class SessionPool:
    """One FileSession per script; only the file in use keeps a DB open."""

    def __init__(self, scripts: dict[str, Script], make_engine: EngineFactory, workdir: Path) -> None:
        self.scripts = scripts
        self.make_engine = make_engine
        self.workdir = workdir
        self._sessions: dict[str, FileSession] = {}
        self._active: str | None = None

    def run(self, ev: Eval) -> CaseResult:
        if self._active is not None and self._active != ev.file:
            self._sessions[self._active].release()
        self._active = ev.file
        if ev.file not in self._sessions:
            self._sessions[ev.file] = FileSession(self.scripts[ev.file], self.make_engine, self.workdir)
        return self._sessions[ev.file].run(ev)

    def close(self) -> None:
        for s in self._sessions.values():
            s.release()


def run_file(path: Path | str, make_engine: EngineFactory, workdir: Path | None = None) -> list[CaseResult]:
    """Parse a test file and run all its evals in order against fresh storage."""
    script = parse_file(path)
    tmp = Path(tempfile.mkdtemp(prefix="promqltest-")) if workdir is None else workdir
    session = FileSession(script, make_engine, tmp)
    try:
        return [session.run(ev) for ev in script.evals]
    finally:
        session.release()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


XFAIL_FILE = Path(__file__).with_name("xfail.py")
_XFAIL_START = "XFAIL: dict[str, str] = {"


def _py_str(s: str) -> str:
    """A string literal as `ruff format` writes it: double quotes unless single ones escape less."""
    body = s.encode("unicode_escape").decode("ascii")
    quote = "'" if body.count('"') > body.count("'") else '"'
    return quote + body.replace(quote, "\\" + quote) + quote


def render_xfail(entries: dict[str, str], width: int = 110) -> str:
    """The `XFAIL = {...}` assignment for xfail.py, one entry a line, reasons cut to fit `width`."""
    lines = [_XFAIL_START]
    for case_id, reason in entries.items():
        key = _py_str(case_id)
        text = reason
        while True:
            line = f"    {key}: {_py_str(text)},"
            if len(line) <= width or len(text) <= 10:
                break
            text = text[: len(text) - (len(line) - width) - 3].rstrip() + "..."
        lines.append(line)
    return "\n".join([*lines, "}", ""])


def write_xfail(results: list[CaseResult], files: set[str] | None = None, path: Path = XFAIL_FILE) -> int:
    """Rewrite the table in xfail.py from `results`, keeping the entries of files not in `files`."""
    text = path.read_text(encoding="utf-8")
    head = text[: text.index(_XFAIL_START)]
    old: dict[str, str] = runpy.run_path(str(path))["XFAIL"]
    keep = {k: v for k, v in old.items() if files is not None and k.rsplit(":", 1)[0] not in files}
    new = {r.id: r.reason for r in results if r.status == "failed"}
    order = {r.id: n for n, r in enumerate(results)}
    entries = dict(
        sorted({**keep, **new}.items(), key=lambda kv: (kv[0].rsplit(":", 1)[0], order.get(kv[0], 0)))
    )
    path.write_text(head + render_xfail(entries), encoding="utf-8")
    return len(entries)


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="*.test files (default: all of the test data)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    ap.add_argument("--xfail", action="store_true", help="print failures as entries for xfail.py")
    ap.add_argument("--write-xfail", action="store_true", help=f"rewrite the table in {XFAIL_FILE}")
    args = ap.parse_args(argv)
    make_engine = default_engine_factory()
    totals = {"passed": 0, "failed": 0, "unsupported": 0}
    everything: list[CaseResult] = []
    # Bare names (`functions.test`) are looked up in the test data directory.
    paths = [p if p.exists() else TESTDATA_DIR / p for p in args.files] or testdata_files()
    for path in paths:
        started = time.perf_counter()
        results = run_file(path, make_engine)
        everything += results
        counts = {k: sum(r.status == k for r in results) for k in totals}
        for k, n in counts.items():
            totals[k] += n
        print(
            f"{path.name:28} {counts['passed']:5} passed {counts['failed']:5} failed "
            f"{counts['unsupported']:5} unsupported  {time.perf_counter() - started:6.1f}s"
        )
        if args.verbose:
            for r in results:
                if r.status == "failed":
                    print("   ", r.message.replace("\n", "\n    "))
    print(
        f"{'total':28} {totals['passed']:5} passed {totals['failed']:5} failed "
        f"{totals['unsupported']:5} unsupported"
    )
    if args.xfail:
        print(render_xfail({r.id: r.reason for r in everything if r.status == "failed"}), end="")
    if args.write_xfail:
        n = write_xfail(everything, None if not args.files else {p.name for p in paths})
        print(f"wrote {n} entries to {XFAIL_FILE}")
    return 1 if totals["failed"] else 0


def iter_cases(directory: Path = TESTDATA_DIR) -> Iterator[tuple[Script, Eval]]:
    for path in testdata_files(directory):
        script = parse_file(path)
        for ev in script.evals:
            yield script, ev


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

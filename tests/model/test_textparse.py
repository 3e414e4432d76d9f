"""Tests for the text exposition parser (vigil.model.textparse)."""

from __future__ import annotations

import contextlib
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics

from tests.waiting import run_python
from vigil.model.labels import Labels
from vigil.model.textparse import ParsedText, TextParseError, parse_text

D = 1_700_000_000_000  # default timestamp used throughout
INT64_MAX = 2**63 - 1

Sample = tuple[Labels, int, float | str]  # NaN is represented as "NaN" so that samples compare equal


def L(name: str, **labels: str) -> Labels:
    return Labels.from_dict({"__name__": name, **labels})


def norm(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def samples(parsed: ParsedText) -> list[Sample]:
    return [
        (parsed.series[i], int(t), norm(float(v)))
        for i, t, v in zip(parsed.series_index, parsed.timestamps, parsed.values, strict=True)
    ]


def check_shape(parsed: ParsedText) -> None:
    assert parsed.series_index.dtype == np.int64
    assert parsed.timestamps.dtype == np.int64
    assert parsed.values.dtype == np.float64
    assert len(parsed.series_index) == len(parsed.timestamps) == len(parsed.values)
    assert len(set(parsed.series)) == len(parsed.series)  # series are distinct
    # ... and listed in order of first appearance
    firsts = list(dict.fromkeys(int(i) for i in parsed.series_index))
    assert firsts == list(range(len(parsed.series)))


# --- valid inputs ---------------------------------------------------------------------------------

VALID: list[tuple[str, str, list[Sample]]] = [
    ("bare name", "foo 1\n", [(L("foo"), D, 1.0)]),
    ("labels and timestamp", 'foo{a="x",b="y"} 2.5 123\n', [(L("foo", a="x", b="y"), 123, 2.5)]),
    ("trailing comma", 'foo{a="x",} 1\n', [(L("foo", a="x"), D, 1.0)]),
    ("trailing comma and blank", 'foo{a="x", } 1\n', [(L("foo", a="x"), D, 1.0)]),
    ("empty braces", "foo{} 1\n", [(L("foo"), D, 1.0)]),
    ("blank after comma", 'foo{a="x", b="y"} 1\n', [(L("foo", a="x", b="y"), D, 1.0)]),
    (
        "escapes",
        'foo{a="q\\"b\\\\c\\nd"} 1\n',
        [(L("foo", a='q"b\\c\nd'), D, 1.0)],
    ),
    ("unknown escape kept as written", 'foo{p="C:\\temp"} 1\n', [(L("foo", p="C:\\temp"), D, 1.0)]),
    ("escaped backslash before n", 'foo{a="x\\\\n"} 1\n', [(L("foo", a="x\\n"), D, 1.0)]),
    (
        "blanks and tabs everywhere",
        ' \tfoo \t{ a = "x" ,\tb="y" , } \t 1 \t 5 \t\n',
        [(L("foo", a="x", b="y"), 5, 1.0)],
    ),
    ("blank before brace", 'foo {a="x"} 1\n', [(L("foo", a="x"), D, 1.0)]),
    ("no blank after brace", 'foo{a="x"}1\n', [(L("foo", a="x"), D, 1.0)]),
    ("tab separators", "foo\t1\t2\n", [(L("foo"), 2, 1.0)]),
    (
        "special floats",
        "a NaN\nb nan\nc +Inf\nd -Inf\ne Inf\nf inf\ng +infinity\nh -Infinity\ni iNf\n",
        [
            (L("a"), D, "NaN"),
            (L("b"), D, "NaN"),
            (L("c"), D, math.inf),
            (L("d"), D, -math.inf),
            (L("e"), D, math.inf),
            (L("f"), D, math.inf),
            (L("g"), D, math.inf),
            (L("h"), D, -math.inf),
            (L("i"), D, math.inf),
        ],
    ),
    (
        "number syntax",
        "a 1.7560473e+07\nb -1E-3\nc .5\nd 5.\ne +3\nf -0\ng 1e-400\nh 0001\n",
        [
            (L("a"), D, 17560473.0),
            (L("b"), D, -0.001),
            (L("c"), D, 0.5),
            (L("d"), D, 5.0),
            (L("e"), D, 3.0),
            (L("f"), D, 0.0),
            (L("g"), D, 0.0),  # underflow is not an error, as in Go
            (L("h"), D, 1.0),
        ],
    ),
    (
        "timestamp signs and bounds",
        f"a 1 -1000\nb 1 +5\nc 1 {INT64_MAX}\nd 1 {-(2**63)}\ne 1 0\n",
        [
            (L("a"), -1000, 1.0),
            (L("b"), 5, 1.0),
            (L("c"), INT64_MAX, 1.0),
            (L("d"), -(2**63), 1.0),
            (L("e"), 0, 1.0),
        ],
    ),
    ("crlf line endings", "foo 1\r\nbar 2 3\r\n\r\n", [(L("foo"), D, 1.0), (L("bar"), 3, 2.0)]),
    ("crlf on slow path", 'foo{a="\\n"} 1\r\n', [(L("foo", a="\n"), D, 1.0)]),
    ("no final newline", "foo 1", [(L("foo"), D, 1.0)]),
    ("empty payload", "", []),
    ("only comments", "# hello\n#\n#x\n", []),
    (
        "blank lines and comments",
        "\n# just a comment\n#nospace\n  \t\n# HELPx foo\nfoo 1\n\n",
        [(L("foo"), D, 1.0)],
    ),
    ("empty label value means absent", 'foo{a="",b="x"} 1\n', [(L("foo", b="x"), D, 1.0)]),
    ("all label values empty", 'foo{a=""} 1\nfoo 2\n', [(L("foo"), D, 1.0), (L("foo"), D, 2.0)]),
    (
        "same series spelled differently",
        'foo{b="2",a="1"} 1 1\nfoo{a="1",b="2"} 2 2\nfoo{ a="1" , b="2" } 3 3\n',
        [
            (L("foo", a="1", b="2"), 1, 1.0),
            (L("foo", a="1", b="2"), 2, 2.0),
            (L("foo", a="1", b="2"), 3, 3.0),
        ],
    ),
    ("same series and timestamp twice", "foo 1 5\nfoo 2 5\n", [(L("foo"), 5, 1.0), (L("foo"), 5, 2.0)]),
    ("punctuation in label value", 'foo{a="}{,=# x 1"} 1\n', [(L("foo", a="}{,=# x 1"), D, 1.0)]),
    ("unicode label value", 'foo{a="héllo ✓ 日本"} 1\n', [(L("foo", a="héllo ✓ 日本"), D, 1.0)]),
    ("tab and cr inside label value", 'foo{a="x\ty\rz"} 1\n', [(L("foo", a="x\ty\rz"), D, 1.0)]),
    ("colons in metric name", "job:rate5m:sum 1\n", [(L("job:rate5m:sum"), D, 1.0)]),
    ("reserved-looking label names", 'foo{__meta="x",_a="y"} 1\n', [(L("foo", __meta="x", _a="y"), D, 1.0)]),
    ("byte order mark", "\ufefffoo 1\n", [(L("foo"), D, 1.0)]),
    # '# EOF' only means OpenMetrics at the very end; elsewhere in 0.0.4 it is a comment.
    ("EOF comment mid-way in 0.0.4", "foo 1 5\n# EOF\nbar 2 6\n", [(L("foo"), 5, 1.0), (L("bar"), 6, 2.0)]),
    (
        "OpenMetrics fractional seconds",
        "# TYPE foo counter\nfoo_total 1 1520879607.789\n# EOF\n",
        [(L("foo_total"), 1520879607789, 1.0)],
    ),
    ("OpenMetrics integer seconds", "foo 1 1520879607\n# EOF", [(L("foo"), 1520879607000, 1.0)]),
    (
        "OpenMetrics negative, exponent and sub-ms seconds",
        "a 1 -1.5\nb 1 1.5e3\nc 1 0.0005\nd 1 0.0015\n# EOF\n",
        [(L("a"), -1500, 1.0), (L("b"), 1_500_000, 1.0), (L("c"), 0, 1.0), (L("d"), 2, 1.0)],
    ),
    (
        "OpenMetrics exemplars are dropped",
        'foo_total 1 # {trace_id="abc"} 0.67 1520879607.789\n'
        'foo_total{a="b"} 2 7 # {trace_id="x\\"y",} 1\n'
        'foo_bucket{le="1"} 3 # {} 1\n'
        "# EOF\n",
        [(L("foo_total"), D, 1.0), (L("foo_total", a="b"), 7000, 2.0), (L("foo_bucket", le="1"), D, 3.0)],
    ),
    ("OpenMetrics EOF with trailing blank lines", "foo 1 2\n# EOF\n\n \r\n", [(L("foo"), 2000, 1.0)]),
]


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize(("text", "expected"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid(text: str, expected: list[Sample], as_bytes: bool) -> None:
    parsed = parse_text(text.encode() if as_bytes else text, D)
    check_shape(parsed)
    assert samples(parsed) == expected


def test_series_are_deduplicated_in_order_of_first_appearance() -> None:
    parsed = parse_text('b 1\na{x="1"} 2\nb 3\na{x="2"} 4\na{x="1"} 5\n', D)
    assert parsed.series == [L("b"), L("a", x="1"), L("a", x="2")]
    assert parsed.series_index.tolist() == [0, 1, 0, 2, 1]
    assert parsed.values.tolist() == [1, 2, 3, 4, 5]


def test_metadata() -> None:
    text = (
        '# HELP foo_seconds How long \\\\ it took.\\nReally. \\"quoted\\"\n'
        "# TYPE foo_seconds GAUGE\n"
        "# UNIT foo_seconds seconds\n"
        "foo_seconds 1\n"
        "# HELP only_help\n"
        "# TYPE only_type summary\n"
        "#  \t TYPE\tspaced \t untyped \n"
        "# TYPE g gaugehistogram\n# TYPE s stateset\n# TYPE i info\n# TYPE u unknown\n"
    )
    assert parse_text(text, D).metadata == {
        # 0.0.4 HELP unescapes only \\ and \n
        "foo_seconds": ("gauge", 'How long \\ it took.\nReally. \\"quoted\\"', "seconds"),
        "only_help": ("", "", ""),
        "only_type": ("summary", "", ""),
        "spaced": ("untyped", "", ""),
        "g": ("gaugehistogram", "", ""),
        "s": ("stateset", "", ""),
        "i": ("info", "", ""),
        "u": ("unknown", "", ""),
    }


def test_openmetrics_help_unescapes_quotes() -> None:
    text = '# HELP foo A \\"b\\" \\\\ c\\nd\n# EOF\n'
    assert parse_text(text, D).metadata == {"foo": ("", 'A "b" \\ c\nd', "")}


def test_type_lines_for_other_families_do_not_conflict() -> None:
    # prometheus_client's 0.0.4 layout: a histogram, then its _created series typed as a gauge.
    text = '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n# TYPE h_created gauge\nh_created 5\n'
    parsed = parse_text(text, D)
    assert parsed.metadata == {"h": ("histogram", "", ""), "h_created": ("gauge", "", "")}


# --- invalid inputs -------------------------------------------------------------------------------

INVALID: list[tuple[str, str | bytes, int, str]] = [
    ("duplicate label", 'foo{a="1",a="2"} 1\n', 1, "duplicate label name 'a'"),
    ("duplicate label, slow path", 'foo{a="1", b="x" ,a="2"} 1\n', 1, "duplicate label name 'a'"),
    ("duplicate among many", 'x 1\nfoo{a="1",b="2",c="3",b="4"} 1\n', 2, "duplicate label name 'b'"),
    ("__name__ label", 'foo{__name__="bar"} 1\n', 1, "'__name__' duplicates the metric name"),
    ("__name__ label, slow path", 'foo{ __name__="bar"} 1\n', 1, "'__name__' duplicates the metric name"),
    ("bad value", "\nfoo abc\n", 2, "expected a value after the metric name, got 'abc'"),
    (
        "bad value after labels",
        'a 1\nb 2\nfoo{a="b"} abc\n',
        3,
        "expected a value after the labels, got 'abc'",
    ),
    ("missing value", "foo\n", 1, "expected a value after the metric name, got end of line"),
    ("missing value after labels", 'foo{a="b"}\n', 1, "expected a value after the labels, got end of line"),
    ("missing value, crlf", "foo{}\r\n", 1, "got end of line"),
    ("signed nan", "foo +NaN\n", 1, "expected a value after the metric name, got '+NaN'"),
    ("negative nan", "foo -nan\n", 1, "got '-nan'"),
    ("underscore in number", "foo 1_000\n", 1, "got '1_000'"),
    ("hex float", "foo 0x1p3\n", 1, "got '0x1p3'"),
    ("non-ASCII digit", "foo \u0661\n", 1, "expected a value"),
    ("partial infinity", "foo infin\n", 1, "got 'infin'"),
    ("bare exponent", "foo 1e\n", 1, "got '1e'"),
    ("value overflow", "foo 1e400\n", 1, "value '1e400' is out of range for a float64"),
    ("value overflow, slow path", "foo\t-1e400\n", 1, "value '-1e400' is out of range"),
    ("metric name starts with digit", "1foo 1\n", 1, "invalid metric name '1foo'"),
    ("dash in metric name", "foo-bar 1\n", 1, "invalid metric name 'foo-bar'"),
    ("no metric name", '{a="b"} 1\n', 1, "expected a metric name, got '{a=\"b\"}'"),
    ("label name starts with digit", 'foo{1a="b"} 1\n', 1, "invalid label name '1a'"),
    ("colon in label name", 'foo{a:b="c"} 1\n', 1, "invalid label name 'a:b'"),
    ("missing equals", 'foo{a"b"} 1\n', 1, "expected '=' after label name 'a', got '\"b\"}'"),
    ("unquoted label value", "foo{a=b} 1\n", 1, "expected '\"' to start the value of label 'a', got 'b}'"),
    ("unterminated label value", 'foo{a="b} 1\n', 1, "unterminated value for label 'a'"),
    ("escaped closing quote", 'foo{a="b\\"} 1\n', 1, "unterminated value for label 'a'"),
    ("newline inside label value", 'foo{a="b\nc"} 1\n', 1, "unterminated value for label 'a'"),
    (
        "missing comma",
        'foo{a="b" c="d"} 1\n',
        1,
        "expected ',' or '}' after the value of label 'a', got 'c=\"d\"}'",
    ),
    (
        "unclosed braces",
        'foo{a="b"\n',
        1,
        "expected ',' or '}' after the value of label 'a', got end of line",
    ),
    ("lone comma", "foo{,} 1\n", 1, "expected a label name or '}', got ',}'"),
    ("double comma", 'foo{a="b",,} 1\n', 1, "expected a label name or '}', got ',}'"),
    ("unclosed empty braces", "foo{\n", 1, "expected a label name or '}', got end of line"),
    ("extra closing brace", 'foo{a="b"}} 1\n', 1, "expected a value after the labels, got '}'"),
    ("extra token", "foo 1 2 3\n", 1, "unexpected text after the timestamp: '3'"),
    ("float timestamp in 0.0.4", "foo 1 1.5\n", 1, "fractional seconds are only valid in OpenMetrics input"),
    (
        "bad timestamp",
        "foo 1 abc\n",
        1,
        "expected a timestamp in integer milliseconds after the value, got 'abc'",
    ),
    (
        "timestamp overflow",
        "foo 1 9223372036854775808\n",
        1,
        "timestamp '9223372036854775808' is out of range",
    ),
    ("timestamp underflow", "foo 1 -9223372036854775809\n", 1, "is out of range"),
    ("exemplar in 0.0.4", 'foo 1 # {a="b"} 1\n', 1, "exemplars need OpenMetrics input"),
    ("unknown type", "# TYPE foo blah\n", 1, "unknown metric type 'blah'"),
    ("type with extra text", "# TYPE foo counter gauge\n", 1, "unknown metric type 'counter gauge'"),
    ("missing type", "# TYPE foo\n", 1, "expected a metric type after TYPE foo"),
    (
        "second TYPE",
        "# TYPE foo counter\n\n# TYPE foo gauge\n",
        3,
        "second TYPE line for 'foo' (first on line 1)",
    ),
    (
        "TYPE after samples",
        "foo 1\n# TYPE foo gauge\n",
        2,
        "TYPE line for 'foo' comes after its sample on line 1",
    ),
    ("TYPE after histogram samples", 'x 1\nh_bucket{le="1"} 1\n# TYPE h histogram\n', 3, "sample on line 2"),
    ("TYPE after counter samples", "c_total 1\n# TYPE c counter\n", 2, "comes after its sample on line 1"),
    ("second HELP", "# HELP foo a\n# HELP foo b\n", 2, "second HELP line for 'foo' (first on line 1)"),
    ("HELP without name", "# HELP\n", 1, "expected a metric name after HELP"),
    ("HELP without name, blanks", "# HELP  \t\n", 1, "expected a metric name after HELP"),
    ("invalid name in HELP", "# HELP 1foo text\n", 1, "invalid metric name '1foo' in HELP line"),
    ("invalid name in TYPE", "# TYPE foo-bar gauge\n", 1, "invalid metric name 'foo-bar' in TYPE line"),
    (
        "unit not a suffix",
        "# UNIT foo_seconds bytes\n",
        1,
        "unit 'bytes' is not a suffix of metric name 'foo_seconds'",
    ),
    ("second UNIT", "# UNIT a_s s\n# UNIT a_s s\n", 2, "second UNIT line for 'a_s'"),
    (
        "OM bad exemplar value",
        'foo 1 # {a="b"} x\n# EOF\n',
        1,
        "expected a value after the exemplar labels, got 'x'",
    ),
    ("OM exemplar without blank", 'foo 1 #{a="b"} 1\n# EOF\n', 1, "expected '# {' to start an exemplar"),
    ("OM exemplar without labels", "foo 1 # 1\n# EOF\n", 1, "expected '# {' to start an exemplar"),
    (
        "OM exemplar trailing text",
        'foo 1 # {a="b"} 1 2 3\n# EOF\n',
        1,
        "unexpected text after the exemplar: '3'",
    ),
    (
        "OM NaN timestamp",
        "foo 1 NaN\n# EOF\n",
        1,
        "expected a timestamp in seconds after the value, got 'NaN'",
    ),
    ("OM timestamp overflow", "foo 1 1e30\n# EOF\n", 1, "timestamp '1e30' is out of range"),
    ("OM huge timestamp exponent", "foo 1 1e999999999\n# EOF\n", 1, "is out of range"),
    ("OM early EOF", "# EOF\nfoo 1\n# EOF\n", 1, "'# EOF' must be the last line of OpenMetrics input"),
    ("OM early EOF with blanks", "foo 1\n # EOF \nfoo 2\n# EOF", 2, "'# EOF' must be the last line"),
    ("invalid UTF-8", b'foo{a="\xff"} 1\n', 1, "invalid UTF-8"),
    ("truncated UTF-8 on line 3", b'ok 1\n\nfoo{a="\xc3"} 1\n', 3, "invalid UTF-8"),
    ("lone surrogate in str", 'a 1\nb{x="\udcff"} 1\n', 2, "invalid UTF-8"),
    ("error after valid lines", "a 1\nb 2\n\nc{\n", 4, "expected a label name or '}'"),
    ("error on crlf line 2", "a 1\r\nb{\r\n", 2, "expected a label name or '}', got end of line"),
    ("5000-digit timestamp", "foo 1 " + "1" * 5000 + "\n", 1, "timestamp '11111"),
    ("5000-digit timestamp, slow path", "foo 1\t" + "1" * 5000 + "\n", 1, "...' is out of range"),
    ("OM absurd exponent", "foo 1 1e" + "9" * 5000 + "\n# EOF\n", 1, "is out of range"),
    ("400-digit value", "foo " + "9" * 400 + "\n", 1, "value '99999"),
    ("long token is shortened", "foo " + "x" * 100 + "\n", 1, "got '" + "x" * 40 + "...'"),
]


@pytest.mark.parametrize(("data", "line", "fragment"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid(data: str | bytes, line: int, fragment: str) -> None:
    with pytest.raises(TextParseError) as info:
        parse_text(data, D)
    message = str(info.value)
    assert info.value.line == line
    assert message.startswith(f"line {line}: "), message
    assert fragment in message, message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_error_pickles() -> None:
    error = TextParseError(3, "boom")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.message, str(copy)) == (3, "boom", "line 3: boom")


def test_error_message_format() -> None:
    with pytest.raises(TextParseError) as info:
        parse_text('a 1\nb 2\nfoo{a="b"} abc\n', D)
    assert str(info.value) == "line 3: expected a value after the labels, got 'abc'"


# --- prometheus_client output ---------------------------------------------------------------------


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests \\ served.\nSecond line", ["method", "path"], registry=registry)
    requests.labels("GET", '/a"b\\c\nd').inc(3)
    requests.labels("POST", "/").inc()
    Gauge("temperature_celsius", "Temperature.", unit="celsius", registry=registry).set(-3.5)
    latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for v in (0.05, 0.5, 5):
        latency.observe(v)
    payload = Summary("payload_bytes", "Payload size.", registry=registry)
    payload.observe(100)
    payload.observe(300)
    return registry


def by_series(parsed: ParsedText) -> dict[Labels, float]:
    out = {parsed.series[i]: float(v) for i, v in zip(parsed.series_index, parsed.values, strict=True)}
    assert len(out) == len(parsed.values)  # one sample per series in a scrape
    return out


def test_prometheus_client_text_format() -> None:
    parsed = parse_text(generate_latest(make_registry()), D)
    check_shape(parsed)
    got = by_series(parsed)
    assert got[L("requests_total", method="GET", path='/a"b\\c\nd')] == 3.0
    assert got[L("requests_total", method="POST", path="/")] == 1.0
    assert got[L("requests_created", method="GET", path='/a"b\\c\nd')] > 1e9
    assert got[L("temperature_celsius")] == -3.5
    assert got[L("latency_seconds_bucket", le="0.1")] == 1.0
    assert got[L("latency_seconds_bucket", le="1.0")] == 2.0
    assert got[L("latency_seconds_bucket", le="+Inf")] == 3.0
    assert got[L("latency_seconds_count")] == 3.0
    assert got[L("latency_seconds_sum")] == pytest.approx(5.55)
    assert got[L("payload_bytes_count")] == 2.0
    assert got[L("payload_bytes_sum")] == 400.0
    assert set(parsed.timestamps.tolist()) == {D}
    meta = parsed.metadata
    assert meta["requests_total"] == ("counter", "Requests \\ served.\nSecond line", "")
    assert meta["requests_created"][0] == "gauge"
    assert meta["temperature_celsius"] == ("gauge", "Temperature.", "")
    assert meta["latency_seconds"] == ("histogram", "Latency.", "")
    assert meta["payload_bytes"] == ("summary", "Payload size.", "")


def test_prometheus_client_openmetrics_format() -> None:
    registry = make_registry()
    data = generate_latest_openmetrics(registry)
    assert data.endswith(b"# EOF\n")
    parsed = parse_text(data, D)
    check_shape(parsed)
    got = by_series(parsed)
    assert got[L("requests_total", method="GET", path='/a"b\\c\nd')] == 3.0
    assert got[L("latency_seconds_bucket", le="+Inf")] == 3.0
    assert got[L("payload_bytes_sum")] == 400.0
    meta = parsed.metadata
    assert meta["requests"] == ("counter", "Requests \\ served.\nSecond line", "")
    assert meta["temperature_celsius"] == ("gauge", "Temperature.", "celsius")
    assert meta["latency_seconds"] == ("histogram", "Latency.", "")
    # Both renderings of one registry carry the same samples.
    assert got == by_series(parse_text(generate_latest(registry), D))


# --- properties -----------------------------------------------------------------------------------

metric_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda n: n != "__name__")
# Any text a label may hold: quotes, backslashes, newlines, braces, non-ASCII; not lone surrogates.
label_values = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.text(st.sampled_from('ab"\\\n{},= #\t\r'), max_size=8),
)
values = st.floats(allow_nan=True, allow_infinity=True)
timestamps = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
blanks = st.sampled_from(["", " ", "\t", "  "])
Drawn = tuple[str, dict[str, str], float, int | None]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_value(draw: st.DrawFn, value: float) -> str:
    if math.isnan(value):
        return draw(st.sampled_from(["NaN", "nan", "NAN"]))
    if math.isinf(value):
        forms = ["+Inf", "Inf", "inf", "+infinity"] if value > 0 else ["-Inf", "-inf", "-Infinity"]
        return draw(st.sampled_from(forms))
    return draw(st.sampled_from([repr(value), f"{value:.17e}", f"{value:.17g}"]))


def render_ts(ts: int, openmetrics: bool) -> str:
    if not openmetrics:
        return str(ts)
    sign = "-" if ts < 0 else ""
    return f"{sign}{abs(ts) // 1000}.{abs(ts) % 1000:03d}"


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, list[Drawn], bool]:
    """Random samples rendered as exposition text, canonical or with random (legal) spacing."""
    openmetrics = draw(st.booleans())
    series = st.tuples(metric_names, st.dictionaries(label_names, label_values, max_size=4))
    pool = draw(st.lists(series, min_size=1, max_size=5))
    drawn: list[Drawn] = []
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 12))):
        name, labels = draw(st.sampled_from(pool))
        value = draw(values)
        ts = draw(timestamps)
        pairs = list(labels.items())
        pairs = draw(st.permutations(pairs))
        if draw(st.booleans()):  # canonical, as client libraries write it
            inner = ",".join(f'{n}="{escape(v)}"' for n, v in pairs)
            line = name + (f"{{{inner}}}" if len(pairs) > 0 or draw(st.booleans()) else "")
            line += " " + render_value(draw, value)
            if ts is not None:
                line += " " + render_ts(ts, openmetrics)
        else:
            b = [draw(blanks) for _ in range(8)]
            inner = ",".join(
                f'{draw(blanks)}{n}{draw(blanks)}={draw(blanks)}"{escape(v)}"{draw(blanks)}' for n, v in pairs
            )
            if len(pairs) > 0 and draw(st.booleans()):
                inner += ","
            line = f"{b[0]}{name}{b[1]}{{{inner}{b[2]}}}{b[3]} {render_value(draw, value)}"
            if ts is not None:
                line += f"{b[4]} {render_ts(ts, openmetrics)}"
            line += b[5]
        lines.append(line)
        drawn.append((name, labels, value, ts))
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "# a comment", "  ", "#"])))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(lines)
    if openmetrics:
        text += ending + "# EOF"
    if draw(st.booleans()):
        text += ending
    return text, drawn, openmetrics


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(payloads())
def test_round_trip(payload: tuple[str, list[Drawn], bool]) -> None:
    text, drawn, _ = payload
    parsed = parse_text(text, D)
    check_shape(parsed)
    expected = [
        (L(name, **labels), D if ts is None else ts, norm(value)) for name, labels, value, ts in drawn
    ]
    assert samples(parsed) == expected
    assert parsed.series == list(dict.fromkeys(s for s, _, _ in expected))
    # bytes in, same result out
    assert samples(parse_text(text.encode(), D)) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_input_parses_or_raises_text_parse_error(data: bytes | str) -> None:
    try:
        parsed = parse_text(data, D)
    except TextParseError as e:
        assert str(e).startswith(f"line {e.line}: ")
        assert "\n" not in str(e)
    else:
        check_shape(parsed)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from('ab_:{}=", \t\\#\n01.e+-IN'), max_size=60))
def test_near_miss_input_parses_or_raises_text_parse_error(data: str) -> None:
    with contextlib.suppress(TextParseError):
        check_shape(parse_text(data, D))


# --- robustness -----------------------------------------------------------------------------------


# Linear time is checked without a clock: see tests/model/pathological.py for why the inputs are big
# and why they run in a child process (a runaway `re` holds the GIL; no thread could stop it).
def test_pathological_lines_fail() -> None:
    out = run_python("from tests.model.pathological import parse_pathological as f; print(f())")
    assert out.strip() == "[]", f"accepted: {out}"


@pytest.mark.slow
def test_long_lines_of_repeated_fragments_stay_linear() -> None:
    # Guards against regexes that backtrack quadratically: 832 lines of 200 kB each.
    out = run_python("from tests.model.pathological import parse_repeated_fragments as f; print(f(200_000))")
    assert out.split() == ["832"]


def test_large_payload_mixes_paths_and_keeps_order() -> None:
    lines = []
    for i in range(3000):
        lines.append(f'm{{i="{i % 50}",k="v"}} {i} {i}')  # fast path
        lines.append(f'm{{ k="v", i="{i % 50}" }} {i} {i}')  # slow path, same series
    parsed = parse_text("\n".join(lines) + "\n", D)
    assert len(parsed.series) == 50
    assert parsed.values.tolist() == [float(i) for i in range(3000) for _ in range(2)]
    assert parsed.series_index.tolist() == [i % 50 for i in range(3000) for _ in range(2)]

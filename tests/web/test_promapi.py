"""Prometheus API conventions: time/duration parsing and value/timestamp formatting, checked against
values Prometheus (Go) produces for the same inputs."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.model.labels import Labels
from vigil.promql.result import QueryResult, Series
from vigil.web.errors import api_error
from vigil.web.promapi import (
    MAX_TIME_FORMATTED,
    MIN_TIME_FORMATTED,
    PROM_MAX_TIME_MS,
    PROM_MIN_TIME_MS,
    encode_query_data,
    error_body,
    format_float_seconds,
    format_timestamp,
    format_value,
    format_value_f,
    go_atoi,
    go_parse_float,
    go_quote,
    parse_duration_ns,
    parse_duration_param,
    parse_limit,
    parse_time,
    success_body,
    unescape_name,
)

TIMES = [
    # (parameter, ms)
    ("1435781451.781", 1435781451781),
    ("1435781451", 1435781451000),
    ("1435781451.7815", 1435781451782),  # rounded half away from zero, as Go's math.Round
    ("1435781451.7814", 1435781451781),
    ("0", 0),
    ("1.5", 1500),
    ("0.05", 50),
    ("-1.5", -1500),
    ("-0.0005", -1),  # fraction rounds to -1 ms
    ("1e3", 1_000_000),
    ("+12", 12000),
    (".5", 500),
    ("5.", 5000),
    ("0x1p3", 8000),  # Go's ParseFloat reads hex floats
    ("1700000000", 1_700_000_000_000),
    ("2015-07-01T20:10:51.781Z", 1435781451781),
    ("2015-07-01T20:10:51Z", 1435781451000),
    ("2015-07-01T22:10:51.781+02:00", 1435781451781),
    ("2015-07-01T15:40:51.781-04:30", 1435781451781),
    ("2015-07-01T20:10:51.7819999Z", 1435781451781),  # truncated to the ms
    ("2015-07-01T20:10:51.781999999999Z", 1435781451781),  # digits past ns ignored
    ("2015-07-01T20:10:51,5Z", 1435781451500),  # Go accepts a comma too
    ("1970-01-01T00:00:00Z", 0),
    ("1969-12-31T23:59:59.9995Z", -1),  # floor, as timestamp.FromTime
    ("2024-02-29T00:00:00Z", 1709164800000),
    ("0001-01-01T00:00:00Z", -62135596800000),
    (MIN_TIME_FORMATTED, PROM_MIN_TIME_MS),
    (MAX_TIME_FORMATTED, PROM_MAX_TIME_MS),
]

BAD_TIMES = [
    "",
    "abc",
    " 1",
    "1_000",
    "NaN",
    "Inf",
    "1e400",
    "1e19",  # the ms would not fit int64
    "2015-07-01 20:10:51Z",
    "2015-07-01T20:10:51",  # no zone
    "2015-07-01t20:10:51Z",
    "2015-02-29T00:00:00Z",
    "2015-13-01T00:00:00Z",
    "2015-07-01T24:00:00Z",
    "2015-07-01T23:60:00Z",
    "2015-07-01T23:59:60Z",
    "2015-07-01T20:10:51+24:00",
    "2015-07-01T20:10:51+0200",
    "2015-07-01T20:10:51.Z",
    "15-07-01T20:10:51Z",
]


@pytest.mark.parametrize(("text", "ms"), TIMES)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", BAD_TIMES)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_time(text)
    assert str(exc.value) == f"cannot parse {json.dumps(text)} to a valid timestamp"


def test_prometheus_min_max_time() -> None:
    # time.Unix(math.MinInt64/1000+62135596801, 0) and time.Unix(math.MaxInt64/1000-62135596801, 999999999)
    assert PROM_MIN_TIME_MS == -9223309901257974000
    assert PROM_MAX_TIME_MS == 9223309901257974999


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_parse_time_float_seconds_round_trip(ms: int) -> None:
    # What Grafana sends: FormatFloat(ms/1000, 'f', -1) style seconds; they must come back exact.
    assert parse_time(format_timestamp(ms)) == ms
    assert parse_time(repr(ms / 1000)) == ms


DURATIONS = [
    ("15", 15_000),
    ("15s", 15_000),
    ("5m", 300_000),
    ("1h30m", 5_400_000),
    ("1d", 86_400_000),
    ("1w", 604_800_000),
    ("1y", 31_536_000_000),
    ("500ms", 500),
    ("0", 0),
    ("0.5", 500),
    ("0.0015", 1),  # truncated toward zero
    ("-3", -3000),
    ("-0.0015", -1),
    ("1e3", 1_000_000),
]


@pytest.mark.parametrize(("text", "ms"), DURATIONS)
def test_parse_duration_param(text: str, ms: int) -> None:
    assert parse_duration_param(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'cannot parse "" to a valid duration'),
        ("5 m", 'cannot parse "5 m" to a valid duration'),
        ("1m1h", 'cannot parse "1m1h" to a valid duration'),
        ("-5m", 'cannot parse "-5m" to a valid duration'),
        ("300y", 'cannot parse "300y" to a valid duration'),  # over Go's ~292 years of ns
        ("1e10", 'cannot parse "1e10" to a valid duration. It overflows int64'),
        ("Inf", 'cannot parse "Inf" to a valid duration. It overflows int64'),
        ("NaN", 'cannot parse "NaN" to a valid duration'),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration_param(text)
    assert str(exc.value) == message


def test_parse_duration_ns_keeps_sub_ms() -> None:
    assert parse_duration_ns("0.0005") == 500_000
    assert parse_duration_ns("1ms") == 1_000_000


VALUES = [
    # (value, Go's jsonutil.MarshalFloat, Go's FormatFloat(v, 'f', -1, 64))
    (100.0, "100", "100"),
    (1.0, "1", "1"),
    (0.1, "0.1", "0.1"),
    (1.5, "1.5", "1.5"),
    (-2.25, "-2.25", "-2.25"),
    (1e-05, "0.00001", "0.00001"),
    (1e-06, "0.000001", "0.000001"),
    (1e-07, "1e-07", "0.0000001"),
    (-2.5e-07, "-2.5e-07", "-0.00000025"),
    (1.2345e-10, "1.2345e-10", "0.00000000012345"),
    (1e15, "1000000000000000", "1000000000000000"),
    (1e16, "10000000000000000", "10000000000000000"),
    (1.2345678901234568e17, "123456789012345680", "123456789012345680"),
    (9.99e20, "999000000000000000000", "999000000000000000000"),
    (1e21, "1e+21", "1000000000000000000000"),
    (1.5e300, "1.5e+300", "15" + "0" * 299),
    (5e-324, "5e-324", "0." + "0" * 323 + "5"),
    (1.7976931348623157e308, "1.7976931348623157e+308", "17976931348623157" + "0" * 292),
    (0.0, "0", "0"),
    (-0.0, "-0", "-0"),
    (math.nan, "NaN", "NaN"),
    (math.inf, "+Inf", "+Inf"),
    (-math.inf, "-Inf", "-Inf"),
    (1 / 3, "0.3333333333333333", "0.3333333333333333"),
    (123456.789, "123456.789", "123456.789"),
]


@pytest.mark.parametrize(("v", "api", "f"), VALUES)
def test_format_value(v: float, api: str, f: str) -> None:
    assert format_value(v) == api
    assert format_value_f(v) == f


def test_format_value_stale_nan() -> None:
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    assert format_value(stale) == "NaN"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_round_trips(v: float) -> None:
    # Go's precision -1 is the shortest string that parses back to the same float.
    s = format_value(v)
    assert float(s) == v and math.copysign(1, float(s)) == math.copysign(1, v)
    assert ("e" in s) == (v != 0 and (abs(v) < 1e-6 or abs(v) >= 1e21))
    assert "e" not in format_value_f(v) and float(format_value_f(v)) == v


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (1435781451781, "1435781451.781"),
        (1435781451000, "1435781451"),
        (1500, "1.500"),
        (50, "0.050"),
        (5, "0.005"),
        (0, "0"),
        (-1500, "-1.500"),
        (-1, "-0.001"),
        (1_700_000_000_010, "1700000000.010"),
    ],
)
def test_format_timestamp(ms: int, text: str) -> None:
    assert format_timestamp(ms) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [(4000, "4"), (1500, "1.5"), (1435781451781, "1435781451.781"), (50, "0.05"), (0, "0"), (-1500, "-1.5")],
)
def test_format_float_seconds(ms: int, text: str) -> None:
    assert format_float_seconds(ms) == text


def test_go_parse_float() -> None:
    assert go_parse_float("1.5") == 1.5
    assert go_parse_float("-.5e1") == -5.0
    assert go_parse_float("0X1.8P1") == 3.0
    assert go_parse_float("infinity") == math.inf
    assert math.isnan(go_parse_float("nan") or 0.0)
    for bad in ("", "1_0", " 1", "1 ", "0x1", "1e", "e1", "+nan", "1e309", "--1", "1.2.3"):
        assert go_parse_float(bad) is None, bad


def test_go_atoi_and_limit() -> None:
    assert go_atoi("+5") == 5 and go_atoi("-05") == -5 and go_atoi("9223372036854775807") == 2**63 - 1
    with pytest.raises(ValueError, match=r'^strconv.Atoi: parsing "1.5": invalid syntax$'):
        go_atoi("1.5")
    with pytest.raises(
        ValueError, match=r'^strconv.Atoi: parsing "9223372036854775808": value out of range$'
    ):
        go_atoi("9223372036854775808")
    assert parse_limit("") == 0 and parse_limit("10") == 10
    with pytest.raises(ValueError, match=r"^limit must be non-negative$"):
        parse_limit("-1")
    with pytest.raises(ValueError, match="invalid syntax"):
        parse_limit("1_000")


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("\x00\n\t\x7f") == '"\\x00\\n\\t\\x7f"'
    assert go_quote("é€\u2028") == '"é€\\u2028"'


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("U__http_2e_status", "http.status"),
        ("U__a__b", "a_b"),
        ("U___1f600_", "\U0001f600"),
        ("job", "job"),
        ("U__bad_zz_", "U__bad_zz_"),  # invalid escapes leave the name as it is
        ("U__open_2e", "U__open_2e"),
        ("U__trailing_", "U__trailing_"),
        ("U___d800_", "U___d800_"),
    ],
)
def test_unescape_name(name: str, plain: str) -> None:
    assert unescape_name(name) == plain


def _series(labels: dict[str, str], points: list[tuple[int, float]]) -> Series:
    ts = np.array([t for t, _ in points], np.int64)
    vs = np.array([v for _, v in points], np.float64)
    return Series(Labels.from_dict(labels), ts, vs)


def test_encode_query_data_shapes() -> None:
    vec = QueryResult("vector", [_series({"__name__": "up", "job": "a"}, [(1435781451781, 1.0)])])
    assert encode_query_data(vec) == (
        '{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},'
        '"value":[1435781451.781,"1"]}]}'
    )
    mat = QueryResult("matrix", [_series({"a": 'é"<'}, [(1000, 1e-07), (2500, math.inf)]), _series({}, [])])
    assert encode_query_data(mat) == (
        '{"resultType":"matrix","result":[{"metric":{"a":"é\\"<"},"values":[[1,"1e-07"],[2.500,"+Inf"]]},'
        '{"metric":{}}]}'
    )
    assert json.loads(encode_query_data(QueryResult("vector"))) == {"resultType": "vector", "result": []}
    assert json.loads(encode_query_data(QueryResult("matrix"))) == {"resultType": "matrix", "result": []}
    scalar = QueryResult("scalar", scalar=(4000, 2.0))
    assert encode_query_data(scalar) == '{"resultType":"scalar","result":[4,"2"]}'
    assert encode_query_data(QueryResult("scalar", scalar=(1500, 1e-07))) == (
        '{"resultType":"scalar","result":[1.5,"0.0000001"]}'
    )
    string = QueryResult("string", string=(1000, 'a "b"'))
    assert encode_query_data(string) == '{"resultType":"string","result":[1,"a \\"b\\""]}'


def test_envelopes() -> None:
    assert success_body("[]") == b'{"status":"success","data":[]}'
    body = json.loads(success_body("1", ["w1", "w1", "w2"], ["i"]))
    assert body == {"status": "success", "data": 1, "warnings": ["w1", "w2"], "infos": ["i"]}
    many = json.loads(success_body("1", [f"w{i}" for i in range(15)]))
    assert many["warnings"][:10] == [f"w{i}" for i in range(10)]
    assert many["warnings"][10] == "5 more warning annotations omitted" and len(many["warnings"]) == 11
    assert json.loads(error_body("bad_data", "x")) == {
        "status": "error",
        "errorType": "bad_data",
        "error": "x",
    }
    assert [
        api_error(t, "").status for t in ("bad_data", "execution", "timeout", "internal", "canceled")
    ] == [
        400,
        422,
        503,
        500,
        499,
    ]

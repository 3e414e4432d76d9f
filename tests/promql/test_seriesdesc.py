"""The series description notation (vigil.promql.seriesdesc): `1+2x3`, `_x3`, `stale`, `{{...}}`.

Used by the PromQL conformance runner's `load` blocks and by `vigil rules test`'s `input_series`.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from vigil.model.labels import Labels
from vigil.promql import seriesdesc as sd


def bits(v: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def L(name: str = "", **labels: str) -> Labels:
    return Labels.from_dict({"__name__": name, **labels})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1+2x3", [1.0, 3.0, 5.0, 7.0]),
        ("1-2x3", [1.0, -1.0, -3.0, -5.0]),
        ("-1x2", [-1.0, -1.0, -1.0]),
        ("-2x3", [-2.0, -2.0, -2.0, -2.0]),
        ("1x0", [1.0]),
        ("_x3", [None, None, None]),
        ("_x0", []),
        ("1 _ 3", [1.0, None, 3.0]),
        ("_", [None]),
        ("0x5", [0.0] * 6),  # no hexadecimal in series descriptions
        ("5 2+3x2 _ 7", [5.0, 2.0, 5.0, 8.0, None, 7.0]),
        ("1e3 .5 -0.25 +4", [1000.0, 0.5, -0.25, 4.0]),
        ("010", [8.0]),  # strconv.ParseInt(s, 0, 64): a leading 0 is octal
        ("1\t\t2", [1.0, 2.0]),
        ("0+10x2 _x2 1", [0.0, 10.0, 20.0, None, None, 1.0]),
        ("", []),
    ],
)
def test_value_expansion(text: str, expected: list[float | None]) -> None:
    assert sd.parse_values(text) == expected


def test_ramp_accumulates_like_go() -> None:
    # Go adds the increment repeatedly (0.1+0.1+0.1 != 0.3): loaded values must be bit-identical.
    values = sd.parse_values("0+0.1x3")
    assert values[3] == 0.1 + 0.1 + 0.1 != 0.3


def test_special_values() -> None:
    inf, ninf, nan, pinf, lower = sd.parse_values("Inf -Inf NaN +Inf inf")
    assert inf == math.inf and pinf == math.inf and lower == math.inf and ninf == -math.inf
    assert isinstance(nan, float) and math.isnan(nan) and not sd.is_stale(nan)
    one, stale = sd.parse_values("1 stale")
    assert one == 1.0 and isinstance(stale, float) and bits(stale) == sd.STALE_NAN_BITS


def test_stale_markers_keep_their_bits() -> None:
    arr = np.array(sd.parse_values("stale 1 stale"), dtype=np.float64)
    assert arr.view(np.uint64).tolist() == [sd.STALE_NAN_BITS, bits(1.0), sd.STALE_NAN_BITS]


@pytest.mark.parametrize(
    "text", ["foo", "1x", "1+2", "1x-2", "1 2x1.5", "1s", "{{schema:0", "{{bogus:1}}", "x3"]
)
def test_bad_value_sequences(text: str) -> None:
    with pytest.raises(sd.SeriesDescError):
        sd.parse_values(text)


def test_histogram_notation() -> None:
    h = (
        "{{schema:1 sum:-0.3 count:3.1 z_bucket:7.1 z_bucket_w:0.05 buckets:[5.1 10 7] offset:-3 "
        "n_buckets:[4.1 5]}}"
    )
    values = sd.parse_values(f"1 {h} {{{{}}}}x2 {{{{count:1}}}}+{{{{count:2}}}}x3 _")
    assert values[0] == 1.0 and values[-1] is None
    assert [type(v) for v in values[1:-1]] == [sd.Histogram] * 8
    assert values[1] == sd.Histogram(h)


def test_series_descriptions() -> None:
    assert sd.parse_series('metric{a="b", c="d"} 1') == (L("metric", a="b", c="d"), [1.0])
    assert sd.parse_series("metric 1 2") == (L("metric"), [1.0, 2.0])
    assert sd.parse_series("{} 5") == (Labels(), [5.0])
    assert sd.parse_series('{__name__="m",} 5')[0] == L("m")
    assert sd.parse_series('{"my.metric", job="a"} 1')[0] == L("my.metric", job="a")
    assert sd.parse_series("a:b:c{x='y'} 1")[0] == L("a:b:c", x="y")
    assert sd.parse_series(r'm{a="q\"uo\\te\n", b=`raw\n`} 1')[0] == L("m", a='q"uo\\te\n', b="raw\\n")
    assert sd.parse_series('sum{by="x"}')[0] == L("sum", by="x")  # keywords are fine as names
    assert sd.parse_series('m{a="1"}  _x2 1')[1] == [None, None, 1.0]
    with pytest.raises(sd.SeriesDescError):
        sd.parse_series('m{a="1" 1')
    with pytest.raises(sd.SeriesDescError):
        sd.parse_series("m{a=1} 1")


def test_numbers_and_strings_like_go() -> None:
    assert sd.go_parse_number("0x1f") == 31.0
    assert sd.go_parse_number("017") == 15.0
    assert sd.go_parse_number("09") == 9.0
    assert sd.go_parse_number("-Inf") == -math.inf
    assert math.isnan(sd.go_parse_number("NaN"))
    assert sd.go_parse_number("1e-3") == 0.001
    for bad in ("", "1 2", "{} 1", "foo", "1x3"):
        with pytest.raises(ValueError):
            sd.go_parse_number(bad)
    assert sd.go_unquote('"a\\x41\\u00e9\\101"') == "aAéA"
    assert sd.go_unquote("`a\\n`") == "a\\n"
    assert sd.go_unquote("'it\\'s'") == "it's"


def test_parse_metric_reads_a_whole_metric() -> None:
    # promtool reads `exp_samples[].labels` with ParseMetric: the metric and nothing after it.
    assert sd.parse_metric('up{job="a", instance="b"}') == L("up", job="a", instance="b")
    assert sd.parse_metric("{}") == Labels()
    assert sd.parse_metric(' m{a="1"} ') == L("m", a="1")
    assert sd.parse_metric('{"my.metric"}') == L("my.metric")
    for bad in ('m{a="1"} 1', "m{a=1}", 'm{a="1"', ""):
        with pytest.raises(sd.SeriesDescError):
            sd.parse_metric(bad)

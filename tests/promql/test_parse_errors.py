"""Parse errors carry a Prometheus-style `line:col` position of the offending text."""

from __future__ import annotations

import pytest

from vigil.promql.errors import ParseError
from vigil.promql.parser import parse


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sum(x", "1:4: parse error: unclosed left parenthesis"),
        ("sum(rate(x[5m])) bogus", "1:18: parse error:"),
        ("up\n  or\n sum(", "3:5: parse error:"),
        ('x{a=~"("}', "1:9: parse error:"),
        ("info(x)", "1:1: parse error: function 'info' is not supported"),
        ("rate(x[5m]) + mad_over_time(y[5m]) + info(z)", "1:38: parse error: function 'info'"),
        ("", "1:1: parse error: no expression found in input"),
    ],
)
def test_positions(query: str, expected: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(query)
    assert str(e.value).startswith(expected), str(e.value)

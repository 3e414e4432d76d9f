"""Prometheus 3.x alert template expansion: what promtool 2.42 cannot check (3.x-only functions and
3.x behaviour where 2.42 differs), the error wording the rule manager shows, and `check`."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.model.labels import Labels
from vigil.template import Limits, TemplateError
from vigil.template.prometheus import DEFS, check, expand


class Sample:
    def __init__(self, labels: Any, value: float) -> None:
        self.labels = labels
        self.value = value


def run(text: str, **kw: Any) -> str:
    args: dict[str, Any] = {
        "name": "__alert_A",
        "labels": {"__name__": "up", "instance": "h.example.com:9100"},
        "value": 0.5,
        "external_labels": {},
        "external_url": "http://x.example/sub",
        "timestamp_ms": 1_700_000_000_500,
    }
    args.update(kw)
    return expand(text, **args)


def test_functions_newer_than_promtool_2_42() -> None:
    assert run("{{ now }}") == "1.7000000005e+09"
    assert run("{{ toDuration 3723.5 }} {{ toDuration 0.0015 }} {{ toDuration 0 }}") == "1h2m3.5s 1.5ms 0s"
    assert run('{{ urlQueryEscape "a b/c" }}') == "a+b%2Fc"


def test_title_is_cases_title_without_lowering() -> None:
    # 3.x: cases.Title(language.AmericanEnglish, cases.NoLower); 2.42's strings.Title gave "Foo.Bar".
    assert run('{{ title "foo.bar wORLD it\'s x_y" }}') == "Foo.bar WORLD It's X_y"


def test_value_is_an_interface_in_3x() -> None:
    with pytest.raises(TemplateError, match=r"Value interface \{\} \}$"):
        run("{{ .Nope }}")


def test_errors_read_as_prometheus_reports_them() -> None:
    with pytest.raises(TemplateError) as e:
        run("{{ nope }}")
    assert (
        str(e.value) == 'error parsing template __alert_A: template: __alert_A:1: function "nope" not defined'
    )
    with pytest.raises(TemplateError) as e:
        run('{{ humanize "x" }}')
    col = len(DEFS) + 3  # columns count the prepended definitions, as in Prometheus
    assert str(e.value) == (
        f'error executing template __alert_A: template: __alert_A:1:{col}: executing "__alert_A" '
        'at <humanize "x">: error calling humanize: strconv.ParseFloat: parsing "x": invalid syntax'
    )


def test_query_results_from_labels_objects_and_query_errors() -> None:
    def query(expr: str, ts_ms: int) -> list[Sample]:
        assert (expr, ts_ms) == ("up", 1_700_000_000_500)
        return [Sample(Labels.from_dict({"__name__": "up", "i": "b"}), 1.0), Sample({"i": "a"}, 2.0)]

    text = '{{ range query "up" | sortByLabel "i" }}{{ .Labels.i }}{{ .Value }}{{ end }}'
    assert run(text, query=query) == "a2b1"
    assert run('{{ query "up" | first | label "__name__" }}', query=query) == "up"

    def failing(expr: str, ts_ms: int) -> list[Sample]:
        raise RuntimeError("parse error: bad expr")

    with pytest.raises(TemplateError, match=r"error calling query: parse error: bad expr"):
        run('{{ query "(" }}', query=failing)
    with pytest.raises(TemplateError, match=r"first\(\) called on vector with no elements"):
        run('{{ query "x" | first }}', query=lambda e, t: [])


def test_missing_label_is_empty_and_nil_map_value_is_no_value() -> None:
    assert run("[{{ $labels.nope }}]") == "[]"
    assert run("{{ $a := args 1 }}{{ $a.arg5 }}") == "<no value>"


def test_check_parses_only() -> None:
    check('{{ $labels.instance }} {{ humanize $value }} {{ query "up" }}', "__alert_A")
    with pytest.raises(TemplateError, match='template: __alert_A:1: function "nope" not defined'):
        check("{{ nope }}", "__alert_A")
    with pytest.raises(TemplateError, match="unclosed action"):
        check("{{ $labels.x ", "__alert_A")


def test_bounds_apply_to_expansion() -> None:
    with pytest.raises(TemplateError, match="output exceeds the limit of 100 characters"):
        run('{{ range $i, $x := args 1 2 3 4 5 6 7 8 9 10 11 }}{{ printf "%10d" $i }}{{ end }}',
            limits=Limits(max_output=100))  # fmt: skip


def test_regex_functions_are_linear_time_re2() -> None:
    # A pattern that backtracks exponentially in Python's re: RE2 answers in linear time.
    assert run('{{ match "(a+)+b" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" }}') == "true"
    assert run('{{ match "^(a+)+c$" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" }}') == "false"
    with pytest.raises(TemplateError, match="error calling match: error parsing regexp"):
        run('{{ match "(?<=x)" "x" }}')  # lookbehind: not RE2

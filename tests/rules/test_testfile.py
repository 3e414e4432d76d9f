"""The promtool unit-test file model and promtool's text formats (vigil.rules.testfile / testfmt)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vigil.config import ConfigError
from vigil.rules.testfile import parse_test_file, resolve_rule_files
from vigil.rules.testfmt import SampleEq, alerts_diff, go_duration, go_float_e, labels_string, samples_diff


def test_defaults_and_fields() -> None:
    utf = parse_test_file(
        "rule_files: [a.yml]\ntests:\n- input_series: [{series: up, values: '1x3'}]\n"
        "  alert_rule_test: [{eval_time: 5m, alertname: A, exp_alerts: [{exp_labels: {code: 500}}]}]\n",
        "t.yml",
    )
    assert utf.interval_ms() == 60_000 and utf.tests[0].interval == 0
    a = utf.tests[0].alert_rule_test[0]
    assert a.eval_time == 300_000 and a.exp_alerts[0].exp_labels == {
        "code": "500"
    }  # yaml.v2 reads 500 as "500"
    assert utf.tests[0].max_eval_time() == 300_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tests:\n- promql_expr_test:\n  - expr: up\n    eval_time: 60\n",
            "t.yml: tests[0].promql_expr_test[0].eval_time: expected a duration",
        ),
        (
            "tests:\n- promql_expr_test:\n  - expr: up\n    exp_sample: []\n",
            "t.yml: tests[0].promql_expr_test[0].exp_sample: unknown key "
            "(expected one of: expr, eval_time, exp_samples)",
        ),
        ("bogus: 1\n", "t.yml: bogus: unknown key (expected one of: rule_files,"),
        (
            "tests:\n- promql_expr_test:\n  - exp_samples: [{labels: up, value: x}]\n",
            'exp_samples[0].value: expected a number, got "x"',
        ),
        (
            "group_eval_order: [a, b, a]\n",
            "t.yml: group_eval_order[2]: group name repeated in evaluation order: a",
        ),
        ("tests: [\n", "t.yml:2:1: invalid YAML"),
        ("tests: {a: 1}\ntests: []\n", "duplicate key"),
        ("- 1\n", "t.yml: expected a mapping"),
    ],
)
def test_errors_name_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_test_file(text, "t.yml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_rule_files_relative_to_the_test_file(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    for name in ("b.yml", "a.yml", ".hidden.yml"):
        (tmp_path / "r" / name).write_text("groups: []\n")
    files, unmatched = resolve_rule_files(
        tmp_path / "t.yml", ("r/*.yml", "missing.yml", str(tmp_path / "r/a.yml"))
    )
    assert [f.name for f in files] == [".hidden.yml", "a.yml", "b.yml", "a.yml"]  # Go's Glob matches dotfiles
    assert unmatched == [str(tmp_path / "missing.yml")]


def test_go_formats() -> None:
    assert [go_float_e(v) for v in (1.0, 30.0, 31.0, 0.25, -0.5, 0.0, -0.0, 1e21, 123456789.0)] == [
        *("1E+00", "3E+01", "3.1E+01", "2.5E-01", "-5E-01", "0E+00", "-0E+00", "1E+21", "1.23456789E+08")
    ]
    assert go_float_e(math.nan) == "NaN" and go_float_e(-math.inf) == "-Inf"
    assert [go_duration(ms) for ms in (0, 1500, 60_000, 240_000, 3_600_000, 3_690_500)] == [
        *("0s", "1.5s", "1m0s", "4m0s", "1h0m0s", "1h1m30.5s")
    ]
    assert labels_string((("__name__", "up"), ("job", 'a"b\n'))) == '{__name__="up", job="a\\"b\\n"}'


def test_diffs_say_what_differs() -> None:
    lb = (("alertname", "A"), ("job", "x"))
    exp = [(lb, (("summary", "x down"),)), ((("alertname", "A"), ("job", "y")), ())]
    got = [(lb, (("summary", "y down"),)), ((("alertname", "A"), ("job", "z")), ())]
    assert alerts_diff(exp, got) == [
        '  alert {alertname="A", job="x"}: annotations differ',
        "    annotation summary:",
        '      - "x down"',
        '      + "y down"',
        '- missing alert {alertname="A", job="y"}',
        '+ unexpected alert {alertname="A", job="z"}',
    ]
    same = SampleEq(fuzzy=False)
    assert samples_diff([((("a", "1"),), 1.0, "")], [((("a", "1"),), 2.0, ""), ((), 3.0, "")], same) == [
        '  {a="1"}: value differs',
        "      - 1E+00",
        "      + 2E+00",
        "+ unexpected {} 3E+00",
    ]


def test_float_equality_as_promtool() -> None:
    exact, fuzzy = SampleEq(fuzzy=False), SampleEq(fuzzy=True)
    assert not exact.floats(math.nan, math.nan) and not fuzzy.floats(math.nan, math.nan)
    assert not exact.floats(0.3, 0.1 + 0.2) and fuzzy.floats(0.3, 0.1 + 0.2)
    assert not fuzzy.floats(0.3, math.nextafter(math.nextafter(0.3, 1), 1))


@pytest.mark.parametrize(
    "value",
    ["2026-01-02T03:04:05Z", "'2026-01-02T03:04:05Z'", "2026-01-02 03:04:05", "1767323045", "'1767323045.0'"],
)
def test_start_timestamp_rfc3339_or_unix_seconds(value: str) -> None:
    utf = parse_test_file(f"tests:\n- start_timestamp: {value}\n", "t.yml")
    assert utf.tests[0].start_timestamp == 1767323045.0

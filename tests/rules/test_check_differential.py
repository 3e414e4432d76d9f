"""`vigil rules check` against Debian's `promtool check rules` (2.42) on valid and broken files.

Both must give the same exit code, and our message must contain promtool's problem text. Where
2.42 and 3.x differ by design the case records the 3.x verdict (`v3`) and is not compared.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.cmd.rules import check_files

R = "groups:\n- name: g\n  rules:\n"
CASES: dict[str, str] = {
    "ok_record": R + "  - record: job:up:sum\n    expr: sum by (job) (up)\n",
    "ok_alert": R + "  - alert: Down\n    expr: up == 0\n    for: 5m\n    labels: {severity: page}\n"
    "    annotations: {summary: 'x'}\n",
    "ok_keep_firing": R + "  - alert: A\n    expr: up == 0\n    keep_firing_for: 10m\n",
    "ok_group_fields": "groups:\n- name: g\n  interval: 30s\n  limit: 10\n  rules:\n"
    "  - record: a\n    expr: up\n",
    "ok_empty_file": "",
    "ok_no_groups": "groups: []\n",
    "ok_two_groups": R + "  - record: a\n    expr: up\n- name: h\n  rules:\n  - alert: B\n    expr: up\n",
    "ok_null_rules": "groups:\n- name: g\n",
    "empty_group_name": "groups:\n- name: ''\n  rules: []\n",
    "dup_group": "groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n",
    "both_record_alert": R + "  - record: a\n    alert: b\n    expr: up\n",
    "neither": R + "  - expr: up\n",
    "no_expr": R + "  - record: a\n",
    "bad_expr": R + "  - record: a\n    expr: sum(up\n",
    "bad_expr2": R + "  - alert: a\n    expr: up{job=}\n",
    "bad_record_name": R + "  - record: 'a b'\n    expr: up\n",
    "record_braces": R + "  - record: 'a{b=\"c\"}'\n    expr: up\n",
    "record_for": R + "  - record: a\n    expr: up\n    for: 1m\n",
    "record_keep_firing": R + "  - record: a\n    expr: up\n    keep_firing_for: 1m\n",
    "record_annotations": R + "  - record: a\n    expr: up\n    annotations: {a: b}\n",
    "bad_label_name": R + "  - alert: a\n    expr: up\n    labels: {'a-b': c}\n",
    "name_label": R + "  - record: a\n    expr: up\n    labels: {__name__: c}\n",
    "bad_annotation_name": R + "  - alert: a\n    expr: up\n    annotations: {'a b': c}\n",
    "bad_for": R + "  - alert: a\n    expr: up\n    for: 5x\n",
    "bad_interval": "groups:\n- name: g\n  interval: soon\n  rules: []\n",
    "unknown_rule_field": R + "  - alert: a\n    expr: up\n    severity: page\n",
    "unknown_group_field": "groups:\n- name: g\n  foo: 1\n  rules: []\n",
    "unknown_top_field": "groups: []\nrules: []\n",
    "bad_yaml": "groups: [\n",
    "labels_not_map": R + "  - alert: a\n    expr: up\n    labels: [a]\n",
    "limit_not_int": "groups:\n- name: g\n  limit: many\n  rules: []\n",
    "dup_key": R + "  - alert: a\n    expr: up\n    expr: down\n",
    "dup_rules_lint": R + "  - record: a\n    expr: up\n  - record: a\n    expr: down\n",
    "bad_template": R + "  - alert: a\n    expr: up\n    annotations: {s: '{{ .x '}\n",
    "bad_template_label": R + "  - alert: a\n    expr: up\n    labels: {s: '{{ end }}'}\n",
    "many_errors": R + "  - record: 'a b'\n    expr: up{\n  - expr: up\n- name: g\n  rules: []\n",
}
# 3.x accepts what 2.42 does not know (query_offset, v2.53) — Vigil follows 3.x here.
V3_ONLY = {
    "ok_query_offset": ("groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: a\n    expr: up\n", 0)
}
PROMTOOL = shutil.which("promtool")


def vigil(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    return check_files([str(path)], True, False, out, err), out.getvalue() + err.getvalue()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_as_promtool(case: str, tmp_path: Path) -> None:
    f = tmp_path / f"{case}.yml"
    f.write_text(CASES[case])
    p = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    code, text = vigil(f)
    assert code == p.returncode, (p.stdout + p.stderr, text)
    assert case.startswith("ok_") == (code == 0 and "SUCCESS" in text)
    # The problem text promtool prints (without its positions) appears in ours.
    for line in p.stderr.splitlines():
        m = re.match(rf"{re.escape(str(f))}: (?:\d+:\d+: )*(.*)$", line)
        if m and not m.group(1).startswith(("yaml:", "not a valid duration")):
            # PromQL parser messages are the parser's own: compare up to them
            problem = m.group(1).split("could not parse expression:")[0]
            assert problem in text, (line, text)


@pytest.mark.parametrize("case", sorted(V3_ONLY))
def test_3x_only(case: str, tmp_path: Path) -> None:
    f = tmp_path / f"{case}.yml"
    f.write_text(V3_ONLY[case][0])
    assert vigil(f)[0] == V3_ONLY[case][1]


def test_every_error_positioned(tmp_path: Path) -> None:
    f = tmp_path / "m.yml"
    f.write_text(CASES["many_errors"])
    code, text = vigil(f)
    errs = [ln for ln in text.splitlines() if ln.startswith(str(f))]
    assert code == 1 and len(errs) == 4
    assert all(re.match(rf"{re.escape(str(f))}:[1-9]\d*:[1-9]\d*: ", ln) for ln in errs), errs


def test_missing_file_fails_before_checking(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_files([str(tmp_path / "nope.yml")], True, False, out, err) == 1
    assert out.getvalue() == "" and "does not exist" in err.getvalue()


def test_duplicate_lint_fatal(tmp_path: Path) -> None:
    f = tmp_path / "d.yml"
    f.write_text(CASES["dup_rules_lint"])
    assert check_files([str(f)], True, True, io.StringIO(), io.StringIO()) == 3

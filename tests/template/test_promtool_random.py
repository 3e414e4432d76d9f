"""Differential test on random alert annotations: a seeded grammar over Prometheus' template
functions, `$labels`/`$value`/`$externalLabels`, query results (sorted, through first/label/value/
len: Prometheus prints a slice of samples as pointer addresses), if/range/with; one promtool run
checks them all (see test_promtool.py for the mechanics). Texts using `title` or `parseDuration`
are left out: there 2.42 and 3.x differ by design (pinned in test_prometheus.py)."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from tests.template import test_promtool as pt
from vigil.template import TemplateError
from vigil.template.prometheus import check

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(pt.PROMTOOL is None, reason="Debian's promtool (package prometheus) is not installed"),
]
TEXTS = 250

OPS = [
    "$value", "$labels", "$labels.instance", "$labels.job", "$labels.nope", "$externalLabels.dc",
    "$externalURL", ".Value", '"s"', '"host.example.com:9100"', '"1.5"', "1", "0", "-1500", "2.5",
    "0.000123", "1e9", "true", "nil", '(query "node_load1" | sortByLabel "instance" | first)',
    '(len (query "disk_bytes"))', '(args 1 "a")', "(toTime 1700000000)",
    '(query "disk_bytes" | first | value)', '(query "disk_bytes" | first | label "device")',
]  # fmt: skip
FUNCS = [
    "humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "toUpper",
    "toLower", "stripPort", "stripDomain", "graphLink", "tableLink", "match", "reReplaceAll", "first",
    "label", "value", "strvalue", "len", "index", "printf", "print", "eq", "lt", "and", "or", "not",
    "safeHtml", "toTime",
]  # fmt: skip


def _expr(rng: random.Random, d: int) -> str:
    if d <= 0 or rng.random() < 0.4:
        return rng.choice(OPS)
    f = rng.choice(FUNCS)
    args = [_expr(rng, d - 1) for _ in range(rng.randint(0, 2))]
    if f == "printf":
        args = [rng.choice(['"%v"', '"%.2f"', '"%s"', '"%d"', '"%5.1f|"']), *args]
    return "(" + " ".join([f, *args]) + ")"


def _text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        r, e = rng.random(), _expr(rng, 2)
        if r < 0.5:
            parts.append("{{ " + e + " }}")
        elif r < 0.7:
            parts.append("{{ if " + e + " }}y{{ else }}n{{ end }}")
        elif r < 0.85:
            parts.append("{{ range $i, $e := " + e + " }}{{ $i }}={{ $e }};{{ end }}")
        else:
            parts.append("{{ with " + e + " }}{{ . }}{{ end }}")
    return " ".join(parts)


def test_random_annotations_agree_with_promtool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pt.PROMTOOL is not None
    rng = random.Random(20261207)  # fixed: a failure reproduces
    cases: list[str] = []
    while len(cases) < TEXTS:
        text = _text(rng)
        try:
            check(text, "x")  # promtool refuses the whole file for one text that does not parse
        except TemplateError:
            continue
        cases.append(text)
    monkeypatch.setattr(pt, "CASES", cases)
    rendered = [pt._render(i, t) for i, t in enumerate(cases)]
    pt._write(tmp_path, rendered)
    p = subprocess.run([pt.PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False)  # fmt: skip
    out = p.stdout + p.stderr
    failed = sorted({int(m) for m in re.findall(r"alertname: T(\d+), time:", out)})
    assert p.returncode == 0 or failed, out  # the files themselves loaded
    detail = "\n".join(f"T{i} {cases[i]!r}\n   vigil: {rendered[i]!r}" for i in failed)
    assert not failed, f"{len(failed)} of {TEXTS} differ from promtool:\n{detail}\n{out[-3000:]}"

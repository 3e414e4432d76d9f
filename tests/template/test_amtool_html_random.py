"""Differential test on random HTML bodies: seeded combinations of escaping contexts (element text,
quoted and unquoted attributes, URLs and their query parts, JavaScript values and strings, CSS,
RCDATA, comments) and hostile values, rendered with `--template.type=html` by amtool (Go's
html/template) and by vigil's contextual escaper.

In CSS contexts values with `<` or `>` are left out: Go rejects them there since 1.20.4
(CVE-2023-24539), as vigil does, while amtool 0.25 was built with an older Go."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.template.amdata import Data
from tests.template.test_amtool import DATA_FILE
from vigil.template import TemplateError
from vigil.template.alertmanager import TemplateSet

AMTOOL = shutil.which("amtool")
pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(
        AMTOOL is None, reason="Debian's amtool (package prometheus-alertmanager) is not installed"
    ),
]
TEXTS = 150

VALUES = [
    '"<b>&x</b>"', '"a b"', '"javascript:alert(1)"', '"http://x/a?b=c&d"', '"it\'s \\"q\\""', ".ExternalURL",
    ".Receiver", "(index .Alerts 0).Annotations.summary", '(safeHtml "<i>ok</i>")', "1.5", "true", "nil",
    ".GroupLabels", '""', '"x y=z"', '(printf "%s/%d" "a" 3)', '"/path?q=1#frag"', '"mailto:a@b"',
    '"red; background: url(x)"', '"10px"', '"</script>"', '"é ü"',
]  # fmt: skip
CONTEXTS = [
    "<p>{V}</p>", '<a href="{V}">x</a>', "<a href='{V}'>x</a>", "<a href={V}>x</a>", '<a title="{V}">x</a>',
    "<a title={V}>x</a>", '<img src="http://h/{V}">', '<a href="/s?q={V}&r={V}">', '<a href="{V}/x?y={V}">',
    "<script>var a = {V};</script>", '<script>var s = "{V}";</script>', "<script>var s = '{V}';</script>",
    '<a onclick="f({V})">x</a>', '<div style="color: {V}">x</div>', "<style>p { color: {V} }</style>",
    "<textarea>{V}</textarea>", "<title>{V}</title>", "<!-- {V} -->z", "{V}", '<b class="c">{V} and {V}</b>',
    '<input value="{V}" disabled>', '<a href="#{V}">', '<div data-x="{V}">',
]  # fmt: skip
_ANGLED = {'"<b>&x</b>"', "(index .Alerts 0).Annotations.summary", '(safeHtml "<i>ok</i>")', '"</script>"'}


def _text(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 3)):
        ctx = rng.choice(CONTEXTS)
        css = "style" in ctx
        while "{V}" in ctx:
            value = rng.choice([v for v in VALUES if not (css and v in _ANGLED)])
            ctx = ctx.replace("{V}", "{{ " + value + " }}", 1)
        out.append(ctx)
    return "".join(out)


def test_random_html_bodies_agree_with_amtool(tmp_path: Path) -> None:
    assert AMTOOL is not None
    (tmp_path / "d.tmpl").write_text("")
    (tmp_path / "data.json").write_text(json.dumps(DATA_FILE))
    rng = random.Random(20261207)  # fixed: a failure reproduces
    ts = TemplateSet([])
    mismatches = []
    for _ in range(TEXTS):
        text = _text(rng)
        args = [AMTOOL, "template", "render", f"--template.glob={tmp_path / 'd.tmpl'}",
                "--template.type=html", f"--template.text={text}",
                f"--template.data={tmp_path / 'data.json'}"]  # fmt: skip
        p = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        want = (
            (True, p.stdout)
            if p.returncode == 0
            else (False, p.stderr.removeprefix("amtool: error: ").rstrip())
        )
        try:
            got = (True, ts.render(text, Data.from_json(DATA_FILE), html=True))
        except TemplateError as e:
            got = (False, str(e).rstrip())
        if want != got:
            mismatches.append(f"{text!r}\n   amtool: {want!r}\n   vigil:  {got!r}")
    assert not mismatches, f"{len(mismatches)} of {TEXTS} differ:\n" + "\n".join(mismatches)

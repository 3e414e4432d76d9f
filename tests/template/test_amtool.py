"""Differential test: Debian's `amtool template render` (Alertmanager 0.25, Go's real text/template and
html/template) against `vigil.template.alertmanager.TemplateSet` on the same texts and the same data
(amtool's example data, rebuilt in amdata.py).

Each case is rendered by both; outputs must be equal byte for byte, and where amtool fails vigil must
fail too with the same message (Go's `template: name:line:col: executing ... at <...>: ...`), except
for the few cases in MESSAGE_DIFFERS where only the failure itself is compared (said why there).
The texts cover the syntax corners (trim markers, comments, range/else/break/continue, with/else
with, define/template/block, variable scope), Go's printf verbs and value printing, comparisons and
their type errors, Alertmanager's 0.25 functions and methods on its data, and HTML escaping.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.template.amdata import Data
from vigil.template import TemplateError
from vigil.template.alertmanager import TemplateSet

AMTOOL = shutil.which("amtool")
pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        AMTOOL is None, reason="Debian's amtool (package prometheus-alertmanager) is not installed"
    ),
]

DEFINES = """{{ define "greet" }}Hello {{ . }}{{ end }}
{{ define "alerts.list" }}{{ range . }}[{{ .Status }} {{ .Labels.SortedPairs.Values | join "," }}]{{ end }}
{{- end }}
{{ define "rec" }}{{ if gt (len .) 0 }}{{ index . 0 }}{{ template "rec" (slice . 1) }}{{ end }}{{ end }}
"""

TEXT_CASES = [
    # plain fields and methods on the data
    "{{ .Receiver }} {{ .Status }} {{ .ExternalURL }}",
    "{{ .CommonLabels.commonlabelkey1 }}|{{ .CommonLabels.missing }}|",
    "{{ .GroupLabels.SortedPairs.Names }} {{ .GroupLabels.Values }}",
    "{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
    '{{ (.CommonLabels.Remove (stringSlice "commonlabelkey1")).Names }}',
    "{{ len .Alerts }} {{ len .Alerts.Firing }} {{ len .Alerts.Resolved }}",
    "{{ range .Alerts.Firing }}{{ .Labels.instance }} {{ .Fingerprint }}{{ end }}",
    "{{ range $i, $a := .Alerts }}{{ $i }}:{{ $a.Status }} {{ end }}",
    "{{ range .Alerts }}{{ .Annotations.SortedPairs }}{{ end }}",
    '{{ template "alerts.list" .Alerts }}',
    '{{ template "greet" .Receiver }}',
    '{{ template "rec" (stringSlice "a" "b" "c") }}',
    '{{ block "blk" .Status }}<{{ . }}>{{ end }}',
    "{{ .CommonLabels }}",
    '{{ .Alerts.Firing | len | printf "%03d" }}',
    # trim markers and comments
    "a  {{- .Receiver -}}  b",
    "a\n\t{{- .Receiver }}\n\tb",
    "x {{/* comment */}} y {{- /* trimmed */ -}} z",
    "{{- /* only a comment */ -}}",
    "{{ range .Alerts -}}\n  {{ .Status }}\n{{- end }}",
    # control structures
    "{{ if .Alerts.Firing }}firing{{ else }}quiet{{ end }}",
    '{{ if eq .Status "x" }}x{{ else if eq .Status "alertstatus" }}as{{ else }}other{{ end }}',
    "{{ with .CommonLabels.missing }}has{{ else }}empty{{ end }}",
    "{{ with .GroupLabels }}{{ .grouplabelkey1 }}{{ end }}",
    '{{ range .Alerts }}{{ if eq .Status "resolved" }}{{ continue }}{{ end }}{{ .Fingerprint }}{{ end }}',
    "{{ range .Alerts }}{{ .Fingerprint }}{{ break }}{{ end }}",
    "{{ range .CommonLabels.missing }}x{{ else }}nothing{{ end }}",
    "{{ range $k, $v := .GroupLabels }}{{ $k }}->{{ $v }} {{ end }}",
    '{{ $x := "a" }}{{ range .Alerts }}{{ $x = .Status }}{{ end }}{{ $x }}',
    "{{ $x := 1 }}{{ with $x := 2 }}{{ $x }}{{ end }}{{ $x }}",
    "{{ range $a := .Alerts }}{{ $.Receiver }}{{ end }}",
    # literals, printing, printf
    "{{ \"quoted\\t\\u00e9\" }} {{ `raw\\n` }} {{ 'x' }} {{ 0x1F }} {{ 1e3 }} {{ -2.5 }} {{ true }}",
    "{{ 1234567.0 }} {{ 0.1 }} {{ 1e21 }} {{ 100000.0 }} {{ 0.00001 }} {{ 3.0 }}",
    '{{ printf "%5.2f|%-5d|%05d|%x|%X|%o|%b|%c|%U" 3.14159 42 42 255 255 8 5 65 65 }}',
    '{{ printf "%s %q %v %10s|%-10s|" "a" "b\\"c" "d" "right" "left" }}',
    '{{ printf "%e %E %g %G %.3g %8.3e" 123456.789 0.000123 1e-7 1e20 2.0 12345.678 }}',
    '{{ printf "%t %v %d %s" true false "str" 12 }}',
    '{{ printf "%d %s" }} {{ printf "%d" 1 2 3 }} {{ printf "%!" }} {{ printf "%z" 1 }}',
    '{{ printf "%+d % d %+.1f %x" 5 5 2.25 "hi" }}',
    '{{ printf "%v %v" .GroupLabels .Alerts.Firing.Nope }}',
    '{{ print 1 2 "a" "b" 3 }} {{ println "x" 1 }}',
    '{{ printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159 }}',
    '{{ printf "%T %T %T %T" 1 "a" 1.5 .GroupLabels }}',
    # builtins
    '{{ len "héllo" }} {{ index .GroupLabels "grouplabelkey2" }} {{ index (stringSlice "a" "b") 1 }}',
    '{{ slice "abcdef" 1 3 }} {{ slice (stringSlice "a" "b" "c") 1 }} {{ index "abc" 1 }}',
    '{{ and 1 0 }} {{ and 1 2 }} {{ or 0 "" }} {{ or 0 "x" }} {{ not .Alerts }}',
    '{{ eq .Status "alertstatus" "x" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }}',
    '{{ gt "b" "a" }} {{ ge 1.5 2.5 }} {{ eq .CommonLabels.nope "" }} {{ ne .Status "y" }}',
    '{{ html "<b>&\'\\"</b>" }} {{ js "a\'b\\"<>&=" }} {{ urlquery "a b&c=d/é" }}',
    '{{ (print 1 2) }} {{ (len .Alerts) | printf "%d alerts" }}',
    # Alertmanager functions (0.25)
    '{{ toUpper "abc" }} {{ toLower "ABC" }} {{ title "hello wORLD of foo.bar" }}',
    '{{ stringSlice "a" "b" | join ", " }} {{ .CommonLabels.Names | join "+" }}',
    '{{ match "^foo" "foobar" }} {{ match "b+" "aaa" }}',
    '{{ reReplaceAll "(\\\\w+):(\\\\d+)" "$2/${1}" "foo.bar:1234" }}',
    '{{ reReplaceAll "(?P<h>[a-z]+)" "<$h>" "ab1cd" }} {{ reReplaceAll "(a)(b)?" "[$2|$9|${1}x]" "ac" }}',
    '{{ reReplaceAll "a*" "-" "baaac" }} {{ reReplaceAll "" "." "ab" }} {{ reReplaceAll "x" "$$" "axb" }}',
    '{{ safeHtml "<b>x</b>" }}',
    # errors
    "{{ .Nope }}",
    "{{ .Receiver.Foo }}",
    "{{ len 3 }}",
    "{{ eq 1 1.0 }}",
    '{{ lt "a" 1 }}',
    "{{ index .Alerts 5 }}",
    '{{ template "nope" }}',
    "{{ nope }}",
    "{{ $undefined }}",
    "{{ if .Status }}unclosed",
    "{{ end }}",
    "{{ .Status | toUpper 1 }}",
    "{{ printf 1 }}",
    "{{ 1 2 }}",
    "{{ range 5 }}{{ end }}",
    '{{ match "(" "x" }}',
    "{{ toUpper .CommonLabels.missing }}x",
    "{{ .Alerts.Firing 1 }}",
]

HTML_CASES = [
    '<p>{{ "<b>&amp;</b>" }}</p>',
    '<a href="{{ .ExternalURL }}/path?x={{ "a b&c" }}">link</a>',
    '<a href="{{ "javascript:alert(1)" }}">x</a>',
    '<a title={{ "two words" }}>x</a>',
    '<p>{{ safeHtml "<i>ok</i>" }}</p>',
    "<!-- a comment -->{{ .Receiver }}<!-- {{ .Status }} -->",
    '<script>var x = {{ "a\'b" }}; var y = "{{ "q\\"r" }}";</script>',
    '<div style="color: {{ "red" }}">{{ .Status }}</div>',
    '<title>{{ "<t>" }}</title>',
    '<img src="{{ "http://x/a b" }}" alt="{{ "\\"q\\"" }}">',
    '<a href="{{ "http://x/ä ö?a=b c" }}">',
    '<a href={{ "<b>x+y</b>" }}>',
    "<p>{{ 12 }} {{ .CommonLabels.x }}|</p><script>var a = {{ 1.5 }}, b = {{ .CommonLabels }};</script>",
]

# Cases whose failure both tools report, with a message worded differently.
MESSAGE_DIFFERS: dict[str, str] = {
    '{{ match "(" "x" }}': "vigil.model.regex words RE2 syntax errors its own way",
}


def run_amtool(tmp: Path, text: str, html: bool) -> tuple[bool, str]:
    assert AMTOOL is not None
    args = [AMTOOL, "template", "render", f"--template.glob={tmp / '*.tmpl'}", f"--template.text={text}"]
    if html:
        args.append("--template.type=html")
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if p.returncode == 0:
        return True, p.stdout
    err = p.stderr.rstrip("\n")
    return False, err.removeprefix("amtool: error: ")


def run_vigil(ts: TemplateSet, text: str, html: bool) -> tuple[bool, str]:
    try:
        return True, ts.render(text, Data(), html=html)
    except TemplateError as e:
        return False, str(e)


@pytest.fixture(scope="module")
def tmpl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("amtmpl")
    (d / "defs.tmpl").write_text(DEFINES)
    return d


def test_case_table_is_large_enough() -> None:
    assert len(TEXT_CASES) + len(HTML_CASES) >= 60


@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
def test_amtool_agrees(tmpl_dir: Path, html: bool) -> None:
    ts = TemplateSet([str(tmpl_dir / "*.tmpl")])
    cases = HTML_CASES if html else TEXT_CASES
    mismatches = []
    for text in cases:
        want = run_amtool(tmpl_dir, text, html)
        got = run_vigil(ts, text, html)
        if text in MESSAGE_DIFFERS and not want[0] and not got[0]:
            continue
        if want != got:
            mismatches.append(f"{text!r}\n   amtool: {want!r}\n   vigil:  {got!r}")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ:\n" + "\n".join(mismatches)

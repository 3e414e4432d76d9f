"""Alertmanager's template set: loading `{{define}}` files, functions newer than amtool 0.25 (so not
in the differential test), and the HTML autoescaping contexts amtool's cases do not reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.template import TemplateError
from vigil.template.alertmanager import TemplateSet, to_json
from vigil.template.gotime import GoTime

T0 = GoTime(1_700_000_000_123_456_789)


def ts(**kw: object) -> TemplateSet:
    return TemplateSet(now_ns=lambda: 1_700_000_090_123_456_789)


def test_loads_define_files_from_globs_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.tmpl").write_text('{{ define "x" }}from a{{ end }}{{ define "y" }}y{{ end }}')
    (tmp_path / "b.tmpl").write_text('{{ define "x" }}from b{{ end }}')
    s = TemplateSet([str(tmp_path / "*.tmpl"), str(tmp_path / "none-*.tmpl")])  # an empty glob is fine
    assert s.render('{{ template "x" }} {{ template "y" }}', None) == "from b y"
    assert {"x", "y", "a.tmpl", "b.tmpl"} <= set(s.names())
    assert s.render("", {"x": 1}) == ""


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.tmpl").write_text('{{ define "x" }}\n{{ if }}{{ end }}')
    with pytest.raises(TemplateError, match=r"template: bad\.tmpl:2: missing value for if"):
        TemplateSet([str(tmp_path / "*.tmpl")])


def test_missing_keys_are_empty_as_alertmanager_sets_missingkey_zero() -> None:
    assert ts().render("[{{ .CommonLabels.nope }}]", {"CommonLabels": {"a": "b"}}) == "[]"


def test_newer_functions() -> None:
    s = ts()
    assert s.render('{{ date "2006-01-02 15:04:05.000 MST Mon Jan _2" . }}', T0) == (
        "2023-11-14 22:13:20.123 UTC Tue Nov 14"
    )
    assert s.render('{{ (tz "Europe/Paris" .).Format "15:04 -07:00 MST" }}', T0) == "23:13 +01:00 CET"
    assert s.render("{{ since . }} {{ since . | humanizeDuration }}", T0) == "1m30s 1m 30s"
    assert s.render("{{ now.Unix }}", None) == "1700000090"
    assert s.render('{{ trimSpace "  x \\n" }}|{{ urlUnescape "a%20b+c" }}', None) == "x|a b c"
    assert s.render('{{ base64encode "a?b" }} {{ base64decode "YT9i" }}', None) == "YT9i a?b"
    assert s.render('{{ toJson (dict "b" 1 "a" (list "<x>" 2.5 true)) }}', None) == (
        '{"a":["\\u003cx\\u003e",2.5,true],"b":1}'
    )
    assert s.render('{{ (append (list 1) 2 3) }} {{ (toDate "2006-01-02" "2024-02-29").Unix }}', None) == (
        "[1 2 3] 1709164800"
    )
    assert s.render('{{ (toDate "2006-01-02" "nope").IsZero }}', None) == "true"
    assert s.render('{{ title "hELLO wORLD" }} {{ safeUrl "x" }}', None) == "Hello World x"
    with pytest.raises(TemplateError, match="error calling tz: unknown time zone Mars/Base"):
        s.render('{{ tz "Mars/Base" . }}', T0)
    with pytest.raises(TemplateError, match="error calling dict: dict requires an even number of arguments"):
        s.render('{{ dict "a" }}', None)
    with pytest.raises(TemplateError, match="error calling mustToDate: parsing time"):
        s.render('{{ mustToDate "2006-01-02" "x" }}', None)
    with pytest.raises(TemplateError, match='error calling urlUnescape: invalid URL escape "%zz"'):
        s.render('{{ urlUnescape "%zz" }}', None)


def test_to_json_of_objects_and_times() -> None:
    class A:
        def __init__(self) -> None:
            self.Status = "firing"
            self.StartsAt = T0
            self._hidden = 1

    assert to_json(A()) == '{"Status":"firing","StartsAt":"2023-11-14T22:13:20.123456789Z"}'


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("<p>{{ . }}</p>", "<p>&lt;b&gt;x&#43;y&lt;/b&gt;</p>"),
        ('<a href="/s?q={{ . }}">', '<a href="/s?q=%3cb%3ex%2by%3c%2fb%3e">'),
        ("<a href={{ . }}>", "<a href=%3cb%3ex&#43;y%3c/b%3e>"),
        ("<a title={{ . }}>", "<a title=&lt;b&gt;x&#43;y&lt;/b&gt;>"),
        ('<a onclick="f({{ . }})">', '<a onclick="f(&#34;\\u003cb\\u003ex&#43;y\\u003c/b\\u003e&#34;)">'),
        ("<style>p { color: {{ . }} }</style>", "<style>p { color: ZgotmplZ }</style>"),
        ("<textarea>{{ . }}</textarea>", "<textarea>&lt;b&gt;x&#43;y&lt;/b&gt;</textarea>"),
        ("a<!-- {{ . }} -->b", "ab"),
    ],
)
def test_html_contexts(text: str, want: str) -> None:
    assert ts().render(text, "<b>x+y</b>", html=True) == want


def test_html_url_scheme_filter_and_safe_types() -> None:
    s = ts()
    assert s.render('<a href="{{ . }}">', "javascript:alert(1)", html=True) == '<a href="#ZgotmplZ">'
    assert s.render('<a href="{{ safeUrl . }}">', "javascript:x", html=True) == '<a href="javascript:x">'
    assert s.render("<p>{{ safeHtml . }}</p>", "<i>ok</i>", html=True) == "<p><i>ok</i></p>"
    # the same text in text mode is not escaped at all
    assert s.render("<p>{{ . }}</p>", "<i>", html=False) == "<p><i></p>"


DEBIAN_TEMPLATES = Path("/usr/share/prometheus/alertmanager")


@pytest.mark.skipif(
    not (DEBIAN_TEMPLATES / "email.tmpl").exists(), reason="Debian's Alertmanager templates missing"
)
def test_default_limits_fit_a_large_group_in_alertmanagers_email_template() -> None:
    # A group of 1000 alerts: Alertmanager renders it (about 2 MB of HTML); the bounds must too.
    from tests.template.amdata import Data
    from tests.template.test_amtool import DATA_FILE

    first = DATA_FILE["alerts"][0]
    doc = {
        **DATA_FILE,
        "alerts": [{**first, "labels": {**first["labels"], "instance": f"h{i}"}} for i in range(1000)],
    }
    s = TemplateSet([str(DEBIAN_TEMPLATES / "*.tmpl")])
    out = s.render('{{ template "email.default.html" . }}', Data.from_json(doc), html=True)
    assert out.count("h999") == 1 and len(out) > 1 << 20

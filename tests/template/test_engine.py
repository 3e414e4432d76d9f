"""The Go text/template engine on its own: syntax, semantics, fmt verbs, errors with positions, bounds.

Expected outputs are what Go's text/template prints for the same text and data (checked against
amtool, which runs Go's engine, in test_amtool.py; these cases pin the corners without a peer).
"""

from __future__ import annotations

from typing import Any

import pytest

from vigil.template import NO_VALUE, Func, FuncError, Limits, Template, TemplateError, parse


def render(text: str, data: Any = None, **kw: Any) -> str:
    return parse(text, "t", **kw).execute(data)


@pytest.mark.parametrize(
    ("text", "data", "want"),
    [
        ("a  {{- 1 -}}  b", None, "a1b"),
        ("a {{-1}}", None, "a -1"),  # `{{-1` is a number, not a trim marker
        ("x {{/* c */}} {{- /* d */ -}} y", None, "x y"),
        ("{{range $i, $e := .}}{{$i}}={{$e}},{{else}}none{{end}}", [3, 4], "0=3,1=4,"),
        ("{{range .}}{{.}}{{else}}none{{end}}", [], "none"),
        ("{{range $k, $v := .}}{{$k}}{{$v}}{{end}}", {"b": 2, "a": 1}, "a1b2"),
        (
            "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
            [1, 2, 3, 4, 5],
            "13",
        ),
        ('{{define "x"}}X{{.}}{{end}}{{template "x" 5}}{{block "y" .}}B{{.}}{{end}}', 7, "X5B7"),
        ("{{if eq . 1}}one{{else if eq . 2}}two{{else}}many{{end}}", 2, "two"),
        ("{{with .a}}{{.}}{{else with .b}}b{{.}}{{else}}none{{end}}", {"b": 3}, "b3"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{$y := 3}}{{end}}{{$x}}", None, "2"),
        ("{{.a.b}}", {"a": {}}, "<no value>"),
        ("{{print .missing}}", {}, "<nil>"),
        (
            "{{ 1234567.0 }} {{ 100000.0 }} {{ 1e21 }} {{ 0.00001 }} {{ 0.1 }}",
            None,
            "1.234567e+06 100000 1e+21 1e-05 0.1",
        ),
        (
            '{{ printf "%5.1f|%-6s|%05s|%x|%q|%d|%+d|%x|%o|%c" '
            '3.14159 "ab" "ab" "hi" "a\\"b" "x" 5 255 8 65 }}',
            None,
            '  3.1|ab    |000ab|6869|"a\\"b"|%!d(string=x)|+5|ff|10|A',
        ),
        (
            '{{ printf "%d %s" }}{{ printf "%d" 1 2 }}{{ printf "%z" 1 }}',
            None,
            "%!d(MISSING) %!s(MISSING)1%!(EXTRA int=2)%!z(int=1)",
        ),
        (
            '{{ printf "%v %v %v %t %.3e %g" nil .a true false 1234.5678 0.000012345 }}',
            {"a": [1, "x"]},
            "<nil> [1 x] true false 1.235e+03 1.2345e-05",
        ),
        (
            '{{ printf "%6.2f|%-8.3g|%08.3f|%+.1e" 3.14159 2.0 -3.14159 12345.0 }}',
            None,
            "  3.14|2       |-003.142|+1.2e+04",
        ),
        ('{{ print 1 2 "a" "b" 3 nil }}', None, "1 2ab3 <nil>"),
        ('{{ println 1 "a" }}', None, "1 a\n"),
        ("{{ len . }} {{ index . 1 }} {{ slice . 1 2 }}", [1, 2, 3], "3 2 [2]"),
        ('{{ len "héllo" }} {{ slice "hello" 1 3 }} {{ index "abc" 1 }}', None, "6 el 98"),
        ('{{ index . "k" }}|{{ index . "nope" }}|', {"k": "v"}, "v||"),
        ('{{ and 1 0 2 }} {{ or 0 "" 3 }} {{ not 0 }} {{ and 1 2 }}', None, "0 3 true 2"),
        (
            '{{ eq 1 2 3 1 }} {{ ne "a" "b" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge "b" "a" }}',
            None,
            "true true true true false true",
        ),
        (
            '{{ html "<a href=\'x\'>&</a>" }} {{ js "a\'b<" }} {{ urlquery "a b&c" }}',
            None,
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt; a\\'b\\u003C a+b%26c",
        ),
        (
            "{{ \"\\u00e9\\x41\\t\" }}{{ `raw\\n` }}{{ 'a' }}{{ 0x1F }}{{ 1_000 }}{{ 017 }}",
            None,
            "éA\traw\\n9731100015",
        ),
        ('{{ (1) }}{{ (print 1 2) | printf "%s!" }}', None, "11 2!"),
        ("{{ .M.K }}", {"M": {"K": "deep"}}, "deep"),
        ('{{if .}}t{{else}}f{{end}}{{if 0.0}}t{{else}}f{{end}}{{if ""}}t{{else}}f{{end}}', {"x": 1}, "tff"),
    ],
)
def test_render(text: str, data: Any, want: str) -> None:
    assert render(text, data) == want


class Obj:
    """A struct-like value with a method, as Go data with methods."""

    Name = "obj"

    def Greet(self, who: str) -> str:
        return f"hi {who}"

    def Items(self) -> list[str]:
        return ["a", "b"]


class Pairs(dict[str, str]):
    def Names(self) -> list[str]:
        return sorted(self)


def test_methods_fields_and_map_methods() -> None:
    assert (
        render('{{ .Name }} {{ .Greet "you" }} {{ range .Items }}{{ . }}{{ end }}', Obj()) == "obj hi you ab"
    )
    assert render('{{ "me" | .Greet }}', Obj()) == "hi me"
    assert render("{{ .Names }} {{ .a }}", Pairs(b="2", a="1")) == "[a b] 1"
    # dict's own methods are not Go methods: `.keys` is a map key.
    assert render("{{ .keys }}", {"keys": "k"}) == "k"


def test_missingkey_options() -> None:
    assert render("{{ .x }}|", {"a": "b"}, missingkey="zero") == "|"
    assert render("{{ .x }}", {"a": 1}, missingkey="zero") == "0"
    with pytest.raises(TemplateError, match='map has no entry for key "x"'):
        render("{{ .x }}", {"a": "b"}, missingkey="error")


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        ("{{ .Foo }}", 1, 'template: t:1:3: executing "t" at <.Foo>: can\'t evaluate field Foo in type int'),
        (
            "{{ len 3 }}",
            None,
            'template: t:1:3: executing "t" at <len 3>: error calling len: len of type int',
        ),
        ("{{ eq 1 1.0 }}", None, "error calling eq: incompatible types for comparison"),
        ("{{ lt true false }}", None, "error calling lt: invalid type for comparison"),
        (
            "a\n  {{ index . 5 }}",
            [1],
            'template: t:2:5: executing "t" at <index . 5>: error calling index: index out of range: 5',
        ),
        ('{{ template "nope" }}', None, 'template "nope" not defined'),
        ("{{ 1 2 }}", None, "can't give argument to non-function 1"),
        ("{{ nil }}", None, "nil is not a command"),
        ("{{ nope }}", None, 'template: t:1: function "nope" not defined'),
        ("{{ $x }}", None, 'template: t:1: undefined variable "$x"'),
        ("{{ if 1 }}", None, "unexpected EOF"),
        ("{{ end }}", None, "unexpected {{end}}"),
        ("{{ break }}", None, "{{break}} outside {{range}}"),
        ("{{ .a", None, "unclosed action"),
        ("{{ /* x */ }}", None, ""),  # a comment must touch the delimiters: `{{ /*` is a syntax error
        ("{{/* x */ a}}", None, "comment ends before closing delimiter"),
        ("{{ printf 1 }}", None, "at <1>: expected string; found 1"),
        ('{{ "a" | len 2 }}', None, "wrong number of args for len: want 1 got 2"),
        ("{{ range 5 }}{{ end }}", None, "range can't iterate over 5"),
        ("{{ .x.y }}", {"x": None}, "nil pointer evaluating interface {}.y"),
        ('{{ printf "%d" }}{{ 1 | not 2 }}', None, "wrong number of args for not: want 1 got 2"),
    ],
)
def test_errors(text: str, data: Any, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(text, data)
    assert message in str(e.value)


def test_functions_are_type_checked_as_go_does() -> None:
    funcs = {"up": Func(str.upper, ("string",)), "half": Func(lambda x: x / 2, ("float64",))}
    assert render('{{ up "a" }} {{ half 3 }}', funcs=funcs) == "A 1.5"  # the constant 3 is a float64 here
    with pytest.raises(TemplateError, match="wrong type for value; expected string; got int"):
        render("{{ up . }}", 5, funcs=funcs)
    with pytest.raises(TemplateError, match="wrong type for value; expected float64; got int"):
        render("{{ half . }}", 3, funcs=funcs)
    with pytest.raises(TemplateError, match="invalid value; expected string"):
        render("{{ up .nope }}", {}, funcs=funcs)

    def boom(s: str) -> str:
        raise FuncError("no good")

    with pytest.raises(TemplateError, match=r"at <boom \.>: error calling boom: no good"):
        render("{{ boom . }}", "x", funcs={"boom": Func(boom, ("string",))})


def test_define_redefinition_and_empty_definitions() -> None:
    t = Template("main").parse('{{define "a"}}one{{end}}')
    t.parse('{{define "a"}}two{{end}}{{define "a"}}{{end}}')  # a later one wins; an empty one never does
    t.parse('{{template "a"}}')
    assert t.execute(None) == "two"
    assert t.execute(None, "a") == "two"


def test_variables_are_scoped_to_their_control_structure() -> None:
    with pytest.raises(TemplateError, match='undefined variable "\\$y"'):
        render("{{if true}}{{$y := 1}}{{end}}{{$y}}")
    assert render('{{$x := "outer"}}{{with $x := "inner"}}{{$x}}{{end}} {{$x}}') == "inner outer"
    assert render('{{define "d"}}{{$}}{{end}}{{template "d" 5}}', 1) == "5"  # $ is the callee's dot


# --- bounds: counted, not timed ---


def test_output_bound() -> None:
    limits = Limits(max_output=1000)
    text = '{{range .}}{{printf "%100s" "x"}}{{end}}'
    assert len(render(text, list(range(10)), limits=limits)) == 1000
    with pytest.raises(TemplateError, match="output exceeds the limit of 1000 characters"):
        render(text, list(range(11)), limits=limits)


def test_step_bound() -> None:
    limits = Limits(max_steps=500)
    nested = "{{range .}}{{range $}}{{range $}}x{{end}}{{end}}{{end}}"
    render(nested, [1, 2], limits=limits)
    with pytest.raises(TemplateError, match="evaluation exceeds the limit of 500 steps"):
        render(nested, list(range(20)), limits=limits)


def test_recursion_bound() -> None:
    t = '{{define "r"}}{{if .}}.{{template "r" (slice . 1)}}{{end}}{{end}}{{template "r" .}}'
    assert render(t, list(range(50)), limits=Limits(max_depth=60)) == "." * 50
    with pytest.raises(TemplateError, match="exceeded maximum template depth \\(60\\)"):
        render(t, list(range(80)), limits=Limits(max_depth=60))
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        render('{{define "r"}}{{template "r"}}{{end}}{{template "r"}}')


def test_parse_nesting_bound() -> None:
    deep = "{{" + "(" * 150 + "1" + ")" * 150 + "}}"
    with pytest.raises(TemplateError, match="nesting exceeds the limit of 100"):
        render(deep)
    assert render("{{" + "(" * 50 + "1" + ")" * 50 + "}}") == "1"


def test_printf_width_is_capped_before_allocating() -> None:
    with pytest.raises(TemplateError, match="width or precision over"):
        render('{{ printf "%999999999d" 1 }}')


def test_no_value_is_falsy_and_prints_as_go() -> None:
    assert render("{{ if .x }}y{{ else }}n{{ end }}{{ .x }}", {}) == "n<no value>"
    assert repr(NO_VALUE) == "<no value>"

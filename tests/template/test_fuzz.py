"""Property test: random template texts (hostile input: rule annotations and notification templates
come from users) never fail with anything but TemplateError, and always respect the bounds."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.template import Limits, Template, TemplateError
from vigil.template.alertmanager import TemplateSet
from vigil.template.prometheus import expand

FRAGMENTS = [
    "{{", "}}", "{{- ", " -}}", "{{/*", "*/}}", " ", "\n", "x", ".", ".A", ".B.C", ".M", ".L", "$", "$x",
    "$y", ":=", "=", ",", "|", "(", ")", "if", "else", "end", "range", "with", "define", "template",
    "block", "break", "continue", '"s"', '"t"', "`r`", "'c'", "0", "1", "-1", "1.5", "1e400", "0x10",
    "nil", "true", "printf", '"%d%s%v%q%x%5.2f%*d%!"', "print", "println", "len", "index", "slice",
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "html", "js", "urlquery", "call",
    "humanize", "title", "reReplaceAll", "match", '"(a*)*"', "args", "query", "first", "toUpper",
    "join", "stringSlice", "toJson", "dict", "list", "<a href=\"", "<script>", "'", '"',
]  # fmt: skip

DATA: dict[str, Any] = {
    "A": [1, "two", 3.5, None, {"C": "deep"}],
    "B": {"C": ["x", "y"]},
    "M": {"k": "v", "n": 2},
    "L": list(range(30)),
}
LIMITS = Limits(max_output=2000, max_steps=3000, max_depth=20)

texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
settings_ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(texts)
def test_engine_fails_only_with_template_error_and_bounded_output(text: str) -> None:
    t = Template("f", limits=LIMITS)
    try:
        t.parse(text)
        out = t.execute(DATA)
    except TemplateError:
        return
    assert len(out) <= LIMITS.max_output


@settings_
@given(texts)
def test_prometheus_expand_fails_only_with_template_error(text: str) -> None:
    def query(expr: str, ts_ms: int) -> list[Any]:
        raise ValueError("no storage here")

    try:
        out = expand(text, name="__alert_f", labels={"a": "b"}, value=1.0, external_labels={},
                     external_url="http://x", timestamp_ms=0, query=query, limits=LIMITS)  # fmt: skip
    except TemplateError:
        return
    assert len(out) <= LIMITS.max_output


@settings_
@given(texts, st.booleans())
def test_alertmanager_render_fails_only_with_template_error(text: str, html: bool) -> None:
    try:
        out = TemplateSet(limits=LIMITS, now_ns=lambda: 0).render(text, DATA, html=html)
    except TemplateError:
        return
    assert len(out) <= LIMITS.max_output * 8  # escaping may grow what the engine bounded


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=6), st.integers(min_value=1, max_value=4))
def test_recursive_templates_are_cut_at_the_depth_bound(extra: int, fanout: int) -> None:
    # A template that calls itself `fanout` times per level: exponential work, bounded by steps/depth.
    calls = '{{ template "r" . }}' * fanout
    text = (
        '{{ define "r" }}x'
        + "{{ if true }}" * extra
        + calls
        + "{{ end }}" * extra
        + '{{ end }}{{ template "r" . }}'
    )
    try:
        Template("r0", limits=LIMITS).parse(text).execute(None)
    except TemplateError as e:
        assert "limit" in str(e) or "depth" in str(e)
    else:
        raise AssertionError("an unbounded recursion finished")


OPERANDS = [".", ".A", ".B.C", ".M", ".M.k", ".L", "$", '"s"', "1", "2.5", "true", "nil", "$.A"]
FUNCS = ["len", "index", "slice", "print", "printf", "eq", "ne", "lt", "and", "or", "not", "html", "js"]


def _call(t: tuple[str, list[str]]) -> str:
    return "(" + " ".join([t[0], *t[1]]) + ")"


exprs = st.recursive(
    st.sampled_from(OPERANDS),
    lambda e: st.tuples(st.sampled_from(FUNCS), st.lists(e, max_size=3)).map(_call),
    max_leaves=8,
)


def _nodes(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    block = st.lists(children, max_size=3).map("".join)
    return st.one_of(
        exprs.map(lambda e: "{{ " + e + " }}"),
        st.tuples(exprs, block, block).map(
            lambda t: "{{ if " + t[0] + " }}" + t[1] + "{{ else }}" + t[2] + "{{ end }}"
        ),
        st.tuples(exprs, block).map(
            lambda t: "{{ range $i, $e := " + t[0] + " }}" + t[1] + "{{ $e }}{{ end }}"
        ),
        st.tuples(exprs, block).map(lambda t: "{{ with $v := " + t[0] + " }}" + t[1] + "{{ end }}"),
        st.tuples(exprs, block).map(lambda t: '{{ block "b" ' + t[0] + " }}" + t[1] + "{{ end }}"),
    )


structured = st.recursive(st.sampled_from(["x", " ", "\n", "{{- /* c */ -}}"]), _nodes, max_leaves=12)


@settings_
@given(structured)
def test_structured_templates_fail_only_with_template_error(text: str) -> None:
    try:
        out = Template("s", limits=LIMITS).parse(text).execute(DATA)
    except TemplateError:
        return
    assert len(out) <= LIMITS.max_output

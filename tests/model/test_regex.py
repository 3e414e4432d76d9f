"""RE2 regexes (`vigil.model.regex`): what we accept and match is what RE2 does, on either engine.

google-re2 serves as the oracle for what RE2 accepts and matches; Prometheus uses Go's regexp,
which agrees with RE2 on everything generated here. The oracle helpers and the pattern grammar are
shared with the matcher tests.
"""

from __future__ import annotations

import re

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.model.regex import RegexSyntaxError, compile_regex, translate, translate_re2

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.dot_nl = True  # Prometheus 3 anchors matcher regexes as ^(?s:re)$


def re2_compile(pattern: str) -> re2._Regexp | None:
    """RE2's compile of a PromQL matcher regex, for fullmatch, or None if RE2 rejects it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def reference(pattern: str, value: str) -> bool:
    """Plain, unoptimised evaluation: our translation, fully anchored, on Python's re."""
    return re.fullmatch(translate(pattern), value, re.DOTALL) is not None


def test_compile_regex_groups() -> None:
    for pattern in ["(a+)-(?P<n>b*)", "(a+)+-(?P<n>b*)"]:  # Python's re, then RE2
        m = compile_regex(pattern).fullmatch("aa-bb")
        assert m is not None and (m.group(1), m.group("n")) == ("aa", "bb")
        with pytest.raises(IndexError):
            m.group(3)
        with pytest.raises(IndexError):
            m.group("nope")
    # Names Python's re cannot hold go to RE2, which keeps them as Go does.
    rx = compile_regex("(?P<1a>x)(?P<d>y)(?P<d>z)")
    m = rx.fullmatch("xyz")
    assert rx.engine == "re2" and m is not None and (m.group("1a"), m.group("d")) == ("x", "y")
    assert compile_regex("a.b").fullmatch("a\nb") is None  # relabelling's default: . stops at \n
    assert compile_regex("a.b", dot_nl=True).fullmatch("a\nb") is not None
    assert compile_regex("(?s)a.b").fullmatch("a\nb") is not None
    assert compile_regex("(a+)+b").search("xaab") is not None
    with pytest.raises(RegexSyntaxError):
        compile_regex("(?=x)")


def test_translate() -> None:
    assert translate("a.b") == "a.b"
    assert translate("a.b", dot_nl=False) == "a[^\\n]b"
    assert translate("(a)(?P<n>b)(?:c)", capture=True) == "(a)(?P<n>b)c"
    assert re.fullmatch(translate("(a+)-(?P<n>b*)", capture=True), "aa-bb").group(1, "n") == ("aa", "bb")  # type: ignore[union-attr]
    assert translate("x{,3}") == "x\\{,3\\}"
    with pytest.raises(RegexSyntaxError):
        translate("(?=x)")


def regex_trees() -> st.SearchStrategy[str]:
    """RE2 patterns built from a grammar covering the syntax we translate."""
    atoms = st.sampled_from(
        [
            "a", "b", "A", "K", "i", "I", "\u0131", "\u212a", "\u00e9", "\\.", "\\n", "\\x41",
            "\\x{e9}", "\\141", "\\-", "[h-j]", "[^I]",
            ".", "[ab]", "[^a]", "[a-c]", "[^\\n]", "[[:upper:]]", "[[:^alpha:]]", "[\\d\\s]",
            "[^\\W]", "\\d", "\\D", "\\s", "\\S", "\\w", "\\W", "\\pL", "\\PL", "\\p{Lu}",
            "[\\p{Ll}0]", "^", "$", "\\A", "\\z", "\\b", "\\B", "\\Qa.\\E", "x{,2}",
        ]
    )  # fmt: skip

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map("".join),
            st.tuples(inner, inner).map("|".join),
            inner.map("({})".format),
            inner.map("(?:{})".format),
            st.tuples(st.sampled_from(["i", "s", "-s", "m", "U", "i-s", "im"]), inner).map(
                lambda t: f"(?{t[0]}:{t[1]})"
            ),
            st.tuples(st.sampled_from(["i", "-s", "m"]), inner).map(lambda t: f"(?{t[0]}){t[1]}"),
            st.tuples(
                inner.map("(?:{})".format),
                st.sampled_from(["*", "+", "?", "*?", "+?", "??", "{2}", "{1,2}", "{0,}", "{2,}?"]),
            ).map("".join),
        )

    return st.recursive(atoms, extend, max_leaves=6)


VALUES = st.lists(st.text(alphabet="abAKiI\u0131\u0130\u212a\u00e9.-\n 0\v", max_size=6), max_size=8)


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(regex_trees(), VALUES)
def test_re2_printing_agrees_with_re2(pattern: str, values: list[str]) -> None:
    # What RE2 runs is our tree printed back, not the user's text: both must mean the same.
    oracle = re2_compile(pattern)
    assert oracle is not None, pattern
    options = re2.Options()
    options.log_errors = False
    printed = re2.compile(translate_re2(pattern), options)
    for v in values:
        assert (printed.fullmatch(v) is None) is (oracle.fullmatch(v) is None), (pattern, v)


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(regex_trees(), VALUES)
def test_compile_regex_groups_agree_with_re2(pattern: str, values: list[str]) -> None:
    # label_replace and relabelling: the same groups whichever engine runs the pattern.
    options = re2.Options()
    options.log_errors = False
    oracle = re2.compile(pattern, options)
    rx = compile_regex(pattern)
    for v in values:
        want, got = oracle.fullmatch(v), rx.fullmatch(v)
        assert (got is None) is (want is None), (pattern, rx.engine, v)
        if want is not None and got is not None:
            groups = range(oracle.groups + 1)
            assert [got.group(i) for i in groups] == [want.group(i) for i in groups], (pattern, rx.engine, v)
        found, expected = rx.search(v), oracle.search(v)
        assert (None if found is None else found.group(0)) == (
            None if expected is None else expected.group(0)
        )

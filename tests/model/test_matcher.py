"""Label matchers: Prometheus 3 semantics, the engine each regex runs on, and the fast paths.

google-re2 serves as the oracle for what RE2 accepts and matches; Prometheus uses Go's regexp,
which agrees with RE2 on everything generated here.
"""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.model.test_regex import re2_compile, reference, regex_trees
from tests.waiting import run_python
from vigil.model.matcher import InvalidMatcherError, Matcher, MatchType
from vigil.model.regex import compile_regex, translate

# ---------------------------------------------------------------------------------------------
# Semantics


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        (Matcher.eq("job", "api"), "api", True),
        (Matcher.eq("job", "api"), "API", False),
        (Matcher.eq("job", "api"), "", False),
        (Matcher.eq("job", ""), "", True),
        (Matcher.eq("job", ""), "api", False),
        (Matcher.neq("job", "api"), "api", False),
        (Matcher.neq("job", "api"), "web", True),
        (Matcher.neq("job", "api"), "", True),
        (Matcher.neq("job", ""), "", False),
        (Matcher.neq("job", ""), "x", True),
        # Anchoring: the whole value must match.
        (Matcher.re("job", "a"), "a", True),
        (Matcher.re("job", "a"), "ab", False),
        (Matcher.re("job", "b"), "ab", False),
        (Matcher.re("job", "a|b"), "ab", False),
        (Matcher.re("job", "a|ab"), "ab", True),
        (Matcher.re("job", "a.*"), "abc", True),
        (Matcher.re("job", "a.*"), "ba", False),
        (Matcher.re("job", ".*a"), "ba", True),
        (Matcher.re("job", ".*a"), "ab", False),
        (Matcher.re("job", "^a$"), "a", True),
        (Matcher.re("job", "^a$"), "a\n", False),
        (Matcher.re("job", "a$\n"), "a\n", False),  # RE2's $ is end of text, never before a \n
        (Matcher.re("job", "(?m)a$\n"), "a\n", True),
        (Matcher.re("job", "(?m)a\n^b"), "a\nb", True),
        (Matcher.re("job", "a\\z"), "a", True),
        (Matcher.re("job", "\\Aa"), "a", True),
        # Prometheus 3: dot matches newline.
        (Matcher.re("job", "."), "\n", True),
        (Matcher.re("job", "a.*b"), "a\n\nb", True),
        (Matcher.re("job", ".+"), "\n", True),
        (Matcher.re("job", "(?-s)a.*b"), "a\nb", False),
        (Matcher.re("job", "(?-s:.)"), "x", True),
        (Matcher.re("job", "[^a]"), "\n", True),
        # Empty value: a series without the label.
        (Matcher.re("job", ".*"), "", True),
        (Matcher.re("job", ".+"), "", False),
        (Matcher.re("job", "|x"), "", True),
        (Matcher.re("job", "x?"), "", True),
        (Matcher.re("job", ""), "", True),
        (Matcher.re("job", ""), "x", False),
        (Matcher.nre("job", "x"), "", True),
        (Matcher.nre("job", "x"), "x", False),
        (Matcher.nre("job", "x"), "xx", True),
        (Matcher.nre("job", ".*"), "", False),
        (Matcher.nre("job", ".+"), "", True),
        (Matcher.nre("job", ".+"), "x", False),
        (Matcher.nre("job", ""), "x", True),
        # Case-insensitivity, including Unicode folding RE2 does (K, KELVIN SIGN).
        (Matcher.re("job", "(?i)api|web"), "API", True),
        (Matcher.re("job", "(?i)api|web"), "Web", True),
        (Matcher.re("job", "(?i)api|web"), "apix", False),
        (Matcher.re("job", "(?i)k8s"), "\u212a8s", True),
        (Matcher.re("job", "(?i:a)b"), "AB", False),
        (Matcher.re("job", "a(?i)b|c"), "C", True),  # flags last to the end of the group, across |
        (Matcher.re("job", "(?i)[^a]"), "A", False),
        (Matcher.re("job", "(?i)[[:^alpha:]]"), "\u212a", False),  # RE2 folds, then negates
        (Matcher.re("job", "(?i)[^\\W]"), "\u212a", True),
        # Python folds i, I, ı and İ together; RE2 only i with I.
        (Matcher.re("job", "(?i)kiwi"), "KIWI", True),
        (Matcher.re("job", "(?i)kiwi"), "k\u0131w\u0130", False),
        (Matcher.re("job", "(?i)[a-z]+"), "\u0131", False),
        (Matcher.re("job", "(?i)[^a-z]"), "\u0131", True),
        (Matcher.re("job", "(?i)[^a-z]"), "I", False),
        (Matcher.re("job", "(?i)\u0131"), "I", False),
        (Matcher.re("job", "(?i)(?:ki)+"), "kIKi", True),
        # Classes and escapes.
        (Matcher.re("job", "\\d+"), "123", True),
        (Matcher.re("job", "\\d"), "\u0663", False),  # ASCII only, unlike Python's \d
        (Matcher.re("job", "\\w"), "\u00e9", False),
        (Matcher.re("job", "\\s"), "\v", False),  # RE2's \s leaves out \v
        (Matcher.re("job", "[[:alpha:]]+"), "abcXYZ", True),
        (Matcher.re("job", "[[:^alpha:]]"), "1", True),
        (Matcher.re("job", "[^[:alpha:]0-9]"), "5", False),
        (Matcher.re("job", "\\pL+"), "h\u00e9llo", True),
        (Matcher.re("job", "\\p{Lu}"), "a", False),
        (Matcher.re("job", "\\PL"), "1", True),
        (Matcher.re("job", "\\p{^L}"), "a", False),
        (Matcher.re("job", "[\\p{Nd}x]+"), "x\u0663", True),
        (Matcher.re("job", "\\x41\\x{1F600}\\101\\0"), "A\U0001f600A\0", True),
        (Matcher.re("job", "\\Qa.b\\E"), "a.b", True),
        (Matcher.re("job", "\\Qa.b\\E"), "axb", False),
        (Matcher.re("job", "\\Qab\\E+"), "abbb", True),
        (Matcher.re("job", "x{,3}"), "x{,3}", True),  # not a repetition in RE2
        (Matcher.re("job", "x{01}"), "x{01}", True),
        (Matcher.re("job", "x{2,3}"), "xxx", True),
        (Matcher.re("job", "x{2}"), "x", False),
        (Matcher.re("job", "\\bfoo\\b.*"), "foo bar", True),
        (Matcher.re("job", ".*\\bfoo"), "\u00e9foo", True),  # \b is ASCII: é is not a word char
        (Matcher.re("job", "\\B"), "", True),
        (Matcher.re("job", "\\b"), "", False),
        (Matcher.re("job", "a\\Bb"), "ab", True),
        (Matcher.re("job", "a\\B-"), "a-", False),
        (Matcher.re("job", "(?U)a+b"), "aab", True),
        (Matcher.re("job", "(?P<x>a)(?<y>b)"), "ab", True),
        (Matcher.re("job", "(?P<x>a)(?P<x>b)"), "ab", True),  # Go allows duplicate names
        (Matcher.re("job", "[]a]+"), "]a", True),
        (Matcher.re("job", "[a-]+"), "-a", True),
        (Matcher.re("job", "[&&~~||-]+"), "&~|-", True),
        (Matcher.re("job", "^*a"), "a", True),
        (Matcher.re("job", "(^)*a"), "a", True),
    ],
    ids=lambda x: repr(x) if isinstance(x, str | bool) else str(x),
)
def test_matches(matcher: Matcher, value: str, expected: bool) -> None:
    assert matcher.matches(value) is expected
    assert matcher.filter([value]) == ([value] if expected else [])
    if matcher.type in (MatchType.RE, MatchType.NRE):
        negate = matcher.type is MatchType.NRE
        assert reference(matcher.value, value) is (expected != negate)
        compiled = re2_compile(matcher.value)
        assert compiled is not None
        assert (compiled.fullmatch(value) is not None) is (expected != negate)


@pytest.mark.parametrize(
    ("matcher", "empty"),
    [
        (Matcher.eq("foo", ""), True),
        (Matcher.neq("foo", "x"), True),
        (Matcher.re("foo", "|x"), True),
        (Matcher.nre("foo", "x"), True),
        (Matcher.re("foo", ".*"), True),
        (Matcher.re("foo", "x*"), True),
        (Matcher.eq("foo", "x"), False),
        (Matcher.neq("foo", ""), False),
        (Matcher.re("foo", ".+"), False),
        (Matcher.re("foo", "x"), False),
        (Matcher.nre("foo", ""), False),
        (Matcher.nre("foo", ".*"), False),
        (Matcher.nre("foo", "x*"), False),
    ],
    ids=str,
)
def test_matches_empty(matcher: Matcher, empty: bool) -> None:
    assert matcher.matches_empty is empty
    assert matcher.matches("") is empty


@pytest.mark.parametrize(
    ("matcher", "pattern_set", "all_non_empty"),
    [
        (Matcher.eq("a", "x"), {"x"}, False),
        (Matcher.neq("a", "x"), {"x"}, False),
        (Matcher.neq("a", ""), {""}, True),
        (Matcher.re("a", "x|y|z"), {"x", "y", "z"}, False),
        (Matcher.re("a", "^(x|y)$"), {"x", "y"}, False),
        (Matcher.re("a", "(a|b)(c|d)"), {"ac", "ad", "bc", "bd"}, False),
        (Matcher.re("a", "x[12]"), {"x1", "x2"}, False),
        (Matcher.re("a", "x?"), {"", "x"}, False),
        (Matcher.re("a", "x\\.y"), {"x.y"}, False),
        (Matcher.nre("a", "x|y"), {"x", "y"}, False),
        (Matcher.nre("a", ""), {""}, True),
        (Matcher.re("a", ".*"), None, True),
        (Matcher.re("a", ".+"), None, True),
        (Matcher.re("a", "(.*)"), None, True),
        (Matcher.re("a", "(?i)x"), None, False),
        (Matcher.re("a", "x.*"), None, False),
        (Matcher.re("a", "(?-s).*"), None, False),
        (Matcher.re("a", "[a-z]"), None, False),  # too many to enumerate
    ],
    # Sets sorted: their order follows string hashing, which differs per process (pytest-xdist's
    # workers must collect the same ids).
    ids=lambda v: str(sorted(v)) if isinstance(v, set) else str(v),
)
def test_shortcut_introspection(matcher: Matcher, pattern_set: set[str] | None, all_non_empty: bool) -> None:
    assert matcher.pattern_set == (None if pattern_set is None else frozenset(pattern_set))
    assert matcher.matches_all_non_empty is all_non_empty


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(a", "missing )"),
        ("a)", "unexpected )"),
        ("[a", "missing closing ]"),
        ("[z-a]", "invalid character class range"),
        ("[[:foo:]]", "invalid character class range"),
        ("*a", "missing argument to repetition operator"),
        ("a|*", "missing argument to repetition operator"),
        ("a**", "invalid nested repetition operator"),
        ("a*+", "invalid nested repetition operator"),  # possessive in Python and PCRE
        ("a++", "invalid nested repetition operator"),
        ("a{2}{3}", "invalid nested repetition operator"),
        ("a{1001}", "invalid repeat count"),
        ("a{3,2}", "invalid repeat count"),
        ("(a{100}){100}", "invalid repeat count"),
        ("(?=a)", "lookahead"),
        ("(?!a)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "lookbehind"),
        ("(a)\\1", "backreferences"),
        ("(?P<n>a)(?P=n)", "backreferences"),
        ("(?>a)", "atomic groups"),
        ("(?(1)a|b)", "conditionals"),
        ("(?#comment)", "comments"),
        ("(?R)", "recursion"),
        ("(?x)a b", "invalid or unsupported Perl syntax"),
        ("(?a)\\w", "invalid or unsupported Perl syntax"),
        ("(?i-)a", "invalid or unsupported Perl syntax"),
        ("(?P<1-2>a)", "invalid named capture"),
        ("a\\Z", "invalid escape sequence"),
        ("\\C", "invalid escape sequence"),
        ("\\8", "backreferences"),
        ("\\u0041", "invalid escape sequence"),
        ("\\N{DIGIT ONE}", "invalid escape sequence"),
        ("\\x4", "invalid escape sequence"),
        ("\\x{110000}", "invalid escape sequence"),
        ("\\é", "invalid escape sequence"),
        ("[\\b]", "invalid escape sequence"),
        ("[a-\\d]", "invalid escape sequence"),
        ("a\\", "trailing backslash"),
        ("\\p{Greek}", "not scripts"),
        ("\\pX", "not scripts"),
        ("(" * 101 + ")" * 101, "nests too deeply"),
    ],
)
def test_invalid_regex(pattern: str, message: str) -> None:
    with pytest.raises(InvalidMatcherError, match=re.escape(message)) as info:
        Matcher.re("job", pattern)
    quoted = str(Matcher.eq("x", pattern))[2:]
    assert str(info.value).startswith(f"invalid regular expression in matcher job=~{quoted}: ")
    with pytest.raises(InvalidMatcherError):
        Matcher.nre("job", pattern)
    # RE2 C++ has \\C (any byte), Go does not; scripts and deep nesting are our own limits.
    if pattern != "\\C" and "not scripts" not in message and "nests too deeply" not in message:
        assert re2_compile(pattern) is None, "RE2 accepts it: we should too"


def test_invalid_regex_message() -> None:
    with pytest.raises(InvalidMatcherError) as info:
        Matcher.re("job", "(a")
    assert (
        str(info.value)
        == 'invalid regular expression in matcher job=~"(a": missing ) to close group opened at position 0'
    )
    assert isinstance(info.value, ValueError)


def test_str_escapes_like_promql() -> None:
    assert str(Matcher.re("job", "a.*")) == 'job=~"a.*"'
    assert str(Matcher.eq("job", 'say "hi"\\\n\t\x01\u200b')) == 'job="say \\"hi\\"\\\\\\n\\t\\x01\\u200b"'
    assert str(Matcher.neq("__name__", "up")) == '__name__!="up"'
    assert str(Matcher.nre("a", "é")) == 'a!~"é"'
    assert str(Matcher.eq("service.name", "x")) == '"service.name"="x"'


def test_value_semantics() -> None:
    a = Matcher.re("job", "a|b")
    assert a == Matcher(MatchType.RE, "job", "a|b")
    assert a == Matcher("=~", "job", "a|b")  # type: ignore[arg-type]
    assert Matcher("=~", "job", "a|b").type is MatchType.RE  # type: ignore[arg-type]
    assert hash(a) == hash(Matcher.re("job", "a|b"))
    assert a != Matcher.nre("job", "a|b")
    assert len({a, Matcher.re("job", "a|b"), Matcher.eq("job", "a|b")}) == 2
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.matches("a") and not b.matches("c")
    with pytest.raises(AttributeError):
        a.value = "c"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Matcher("~", "job", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("(a?){30}a{30}", "a" * 40, True),  # the audit's: 2^30 paths for a backtracking engine
        ("(a?){30}a{30}", "a" * 29, False),
        ("(a+)+b", "a" * 5000 + "!", False),
        ("(a|aa)*", "a" * 5000 + "!", False),
        (".*a.*a.*a.*b", "a" * 5000 + "!", False),
        ("(a|a)*!", "a" * 5000 + "!", True),
        ("a*a*", "a" * 5000 + "!", False),  # two ambiguous repetitions: quadratic
        ("(.+):(\\d+)", "a:" * 2000 + "1", True),
        ("(?i)(ab|a)+c", "aB" * 2000, False),
    ],
)
def test_patterns_a_backtracking_engine_cannot_bound_run_on_re2(
    pattern: str, value: str, expected: bool
) -> None:
    # Python's re would hold the GIL for as long as these take there: no deadline could stop them.
    m = Matcher.re("job", pattern)
    assert m.engine == "re2"
    assert m.matches(value) is expected
    assert Matcher.nre("job", pattern).matches(value) is not expected
    assert compile_regex(pattern).engine == "re2"


@pytest.mark.parametrize(
    ("pattern", "engine"),
    [
        # Dashboard shapes keep their shortcuts, or Python's re where the shape is proven linear.
        ("a|b|c", "shortcut"),
        ("foo.*", "shortcut"),
        (".*bar", "shortcut"),
        ("(sda|nvme0n1)", "shortcut"),
        (".*cpu.*", "shortcut"),
        ("[a-z]+_total", "re"),  # unambiguous: _ cannot continue [a-z]+
        ("[^:]+:(\\d+)", "re"),
        ("node_(cpu|memory)_.+", "re"),  # prefix-free alternation, then one ambiguous repetition
        ("(?i)node_cpu.*", "re"),
        ("a*a", "re"),  # one ambiguous repetition, a fixed tail
        ("[a-z]+[0-9]+", "re"),
        ("x{3}y?", "re"),
        ("(foo|foobar)x*", "re2"),  # foo is a prefix of foobar: two ways to start
        ("(?i)[a-z]+x", "re"),  # folded, so ambiguous; but only a fixed tail follows
        ("(?i)[a-z]+[0-9]+", "re2"),  # a second repetition after the ambiguous one
        ("\\pL+\\b.*", "re2"),
        ("(a)+", "re2"),  # a repeated group
        ("a*b*c", "re2"),
    ],
)
def test_engine_choice(pattern: str, engine: str) -> None:
    assert Matcher.re("l", pattern).engine == engine


def test_surrogates_in_values_do_not_break_re2() -> None:
    # No valid UTF-8 holds a lone surrogate; RE2 sees it as U+FFFD (which `.` matches).
    m = Matcher.re("l", "(a|b)*.")
    assert m.engine == "re2" and m.matches("ab\ud800") and not m.matches("\ud800\ud800")
    rx = compile_regex("(a+)+(.)")
    assert rx.engine == "re2"
    match = rx.fullmatch("aa\udc00")
    assert match is not None and match.group(2) == "\ufffd"
    found = compile_regex("b.").search("a\ud800b\udfff")
    assert found is not None and found.group(0) == "b\ufffd"


PATHOLOGICAL_REGEXES = [("(a+)+b", False), ("(a|aa)*", False), (".*a.*a.*a.*b", False), ("(a|a)*!", True)]


def test_pathological_regexes_stay_linear() -> None:
    # Nested repetition is exponential for a backtracking engine (and `.*a.*a.*a.*b` is O(n^4)): on
    # 5000 characters that is years, so a generous deadline proves these went to RE2 without timing
    # anything. A child process, because a runaway `re` match holds the GIL.
    code = (
        "from vigil.model.matcher import Matcher\n"
        f"for pattern, expected in {PATHOLOGICAL_REGEXES!r}:\n"
        "    assert Matcher.re('job', pattern).matches('a' * 5000 + '!') is expected, pattern\n"
        "print('ok')\n"
    )
    assert run_python(code).split() == ["ok"]


# ---------------------------------------------------------------------------------------------
# Properties: shortcuts agree with the plain anchored regex, which agrees with RE2

_ALPHABET = "abAB.-_:/\n\u00e9\u212aK0"
_values = st.text(alphabet=_ALPHABET, max_size=8)
_words = st.text(alphabet="abAB.-_:/\u00e9K0", min_size=0, max_size=4)


def _lit(word: str) -> str:
    return "".join("\\" + c if c in ".-/" else c for c in word)


@st.composite
def _shortcut_patterns(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Patterns of the shapes the matcher special-cases, with values near the matching ones."""
    words = draw(st.lists(_words, min_size=1, max_size=4))
    w = [_lit(x) for x in words]
    shape = draw(st.sampled_from(range(14)))
    pattern = [
        w[0],
        "|".join(w),
        f"^{w[0]}$",
        f"({'|'.join(w)})",
        f"{w[0]}.*",
        f"{w[0]}.+",
        f".*{w[0]}",
        f".+{w[0]}",
        f".*{w[0]}.*",
        f"{w[0]}.*{w[-1]}",
        f"{w[0]}.*{w[-1]}.*{w[0]}",
        f"(?i){'|'.join(w)}",
        f"{w[0]}[0-9]+{w[-1]}",
        f"{w[0]}(a|b)?{w[-1]}",
    ][shape]
    near = [a + b + c for a in ("", words[0]) for b in ("", "x", "\n") for c in ("", words[-1])]
    return pattern, near


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_shortcut_patterns(), st.lists(_values, max_size=6))
@example(("(?i)k", []), ["K", "k", "\u212a", "kk"])
@example(("a.*b.*a", []), ["aba", "aa", "a\nb\na", "ab"])
def test_shortcuts_agree_with_plain_regex(case: tuple[str, list[str]], values: list[str]) -> None:
    pattern, near = case
    m, n = Matcher.re("l", pattern), Matcher.nre("l", pattern)
    compiled = re2_compile(pattern)
    assert compiled is not None
    for v in [*near, *values, pattern]:
        expected = reference(pattern, v)
        assert m.matches(v) is expected, (pattern, v)
        assert n.matches(v) is not expected, (pattern, v)
        assert (compiled.fullmatch(v) is not None) is expected, (pattern, v)
        if m.pattern_set is not None:
            assert (v in m.pattern_set) is expected
        if m.matches_all_non_empty and v:
            assert expected


@pytest.mark.slow
@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    regex_trees(),
    st.lists(st.text(alphabet="abAKiI\u0131\u0130\u212a\u00e9.-\n 0\v", max_size=6), max_size=8),
)
def test_translation_agrees_with_re2(pattern: str, values: list[str]) -> None:
    compiled = re2_compile(pattern)
    assert compiled is not None, pattern
    m = Matcher.re("l", pattern)
    for v in values:
        expected = compiled.fullmatch(v) is not None
        assert reference(pattern, v) is expected, (pattern, translate(pattern), v)
        assert m.matches(v) is expected, (pattern, v)


@settings(deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab()[]{}|*+?.^$\\-,:=!<>P0129dLQEzbBxims-U#&", max_size=10))
def test_accepts_what_re2_accepts(pattern: str) -> None:
    # Spellings where Go's regexp (Prometheus) differs from RE2 C++ are left out: \\C, and the
    # Unicode class names (recent Go versions are lenient: \\pl, \\p{Letter}).
    assume("\\C" not in pattern and "\\P" not in pattern)
    compiled = re2_compile(pattern)
    try:
        m = Matcher.re("l", pattern)
    except InvalidMatcherError as e:
        assert compiled is None, f"RE2 accepts {pattern!r}; we said: {e}"
        return
    assert compiled is not None, f"RE2 rejects {pattern!r}; we translated it to {translate(pattern)!r}"
    for v in ["", "a", "ab", "b", "aab", "a\nb"]:
        assert m.matches(v) is (compiled.fullmatch(v) is not None), (pattern, v)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("\\p{Letter}+", "h\u00e9", True),
        ("\\p{lu}", "A", True),  # recent Go matches class names loosely
        ("\\p{Uppercase_Letter}", "a", False),
        ("\\p{ASCII}+", "abc~", True),
        ("\\p{ASCII}", "\u00e9", False),
        ("\\p{Assigned}", "\U000e0fff", False),
        ("\\p{Any}", "\n", True),
        ("[^\\P{Nd}]", "7", True),
    ],
)
def test_unicode_class_names(pattern: str, value: str, expected: bool) -> None:
    assert Matcher.re("l", pattern).matches(value) is expected


def test_filter_and_negated() -> None:
    values = ["api", "web", "", "apiv2"]
    assert Matcher.re("job", "api.*").filter(values) == ["api", "apiv2"]
    assert Matcher.nre("job", "api.*").filter(values) == ["web", ""]
    assert Matcher.neq("job", "web").filter(iter(values)) == ["api", "", "apiv2"]
    assert [Matcher(t, "a", "b").negated for t in MatchType] == [False, True, False, True]

"""Alertmanager matchers: the classic (0.25) parser, the UTF-8 parser it falls back to, escaping,
and anchored RE2 matching without the `s` flag. The parse results of the classic cases are also
checked against Debian's amtool in test_routes_amtool.py (it prints parsed matchers)."""

from __future__ import annotations

import pickle

import pytest

from vigil.notifier.matchers import (
    Matcher,
    MatcherError,
    Matchers,
    MatchType,
    legacy_matchers,
    parse_matcher,
    parse_matchers,
)

EQ, NEQ, RE, NRE = MatchType.EQ, MatchType.NEQ, MatchType.RE, MatchType.NRE


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('foo="bar"', [(EQ, "foo", "bar")]),
        ("foo=bar", [(EQ, "foo", "bar")]),
        ('{foo = "bar", dings != "bums", }', [(NEQ, "dings", "bums"), (EQ, "foo", "bar")]),
        ("foo=bar,dings!=bums", [(NEQ, "dings", "bums"), (EQ, "foo", "bar")]),
        ('statuscode=~"5.."', [(RE, "statuscode", "5..")]),
        ('x!~"a|b"', [(NRE, "x", "a|b")]),
        ('quote="She said: \\"Hi, ladies!\\""', [(EQ, "quote", 'She said: "Hi, ladies!"')]),
        ('a="b\\nc"', [(EQ, "a", "b\nc")]),
        ('a="b\\tc"', [(EQ, "a", "b\\tc")]),  # classic: a spurious escape is a literal backslash
        ("a=b\\", [(EQ, "a", "b\\")]),  # a last backslash is literal
        ('a="x,y", b=z', [(EQ, "a", "x,y"), (EQ, "b", "z")]),  # commas inside quotes
        ("a=", [(EQ, "a", "")]),
        ("a:b=c", [(EQ, "a:b", "c")]),  # classic names allow colons
        ("{a=b", [(EQ, "a", "b")]),  # braces are trimmed independently
        ("", []),
        ("  a  =~  x.*  ", [(RE, "a", "x.*")]),
        # Classic fails, the UTF-8 parser accepts: quoted UTF-8 names, Go escapes.
        ('"my label"="v"', [(EQ, "my label", "v")]),
        ('"ä"=~"x"', [(RE, "ä", "x")]),
        ('{"foo bar"="\\u00e9"}', [(EQ, "foo bar", "é")]),
    ],
)
def test_parse_matchers(text: str, want: list[tuple[MatchType, str, str]]) -> None:
    got = parse_matchers(text)
    assert [(m.type, m.name, m.value) for m in got] == sorted(
        want, key=lambda t: (t[1], t[2], list(MatchType).index(t[0]))
    )


@pytest.mark.parametrize(
    "text",
    [
        'a="b',  # unterminated
        'a=b"',  # unescaped quote at the end of an unquoted value
        'a="b"c"',  # unescaped quote inside
        "a=b,,c=d",  # empty matcher between commas
        "=b",  # no name
        "a~b",  # no operator
        'a=~"("',  # bad regex
        'a=~"x(?=y)"',  # lookahead: not RE2
        "a='b'",  # classic takes 'b' as the value... see test_quotes_other_than_double
    ][:-1],
)
def test_parse_matchers_refuses(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matchers(text)


def test_utf8_parser_takes_over_only_when_classic_fails() -> None:
    # `9a` is no classic name, but the UTF-8 parser accepts any unquoted run of non-reserved runes.
    assert [(m.name, m.value) for m in parse_matchers("9a=b")] == [("9a", "b")]
    # Both accept `a="b\tc"`; they disagree (UTF-8 unquotes a tab) and classic wins, as Alertmanager.
    assert parse_matchers('a="b\\tc"')[0].value == "b\\tc"
    # Both fail: classic's error is the one reported.
    with pytest.raises(MatcherError, match="unescaped double quote"):
        parse_matchers('a="b')


def test_parse_matcher_single() -> None:
    assert parse_matcher("foo=bar") == Matcher(EQ, "foo", "bar")
    with pytest.raises(MatcherError, match="brace"):
        parse_matcher("{foo=bar}")
    # The classic parser takes the rest of the text as the value, commas included.
    assert parse_matcher("a=b,c=d") == Matcher(EQ, "a", "b,c=d")
    with pytest.raises(MatcherError):
        parse_matcher("a")


def test_quotes_other_than_double() -> None:
    # Single quotes are reserved in the UTF-8 parser, but classic accepts them as part of the value.
    assert parse_matchers("a='b'")[0].value == "'b'"


def test_regex_is_anchored_and_dot_does_not_match_newline() -> None:
    m = Matcher(RE, "service", "web")
    assert m.matches("web") and not m.matches("web-1") and not m.matches("a-web")
    assert Matcher(RE, "x", "a.*").matches("abc")
    assert not Matcher(RE, "x", "a.*").matches("a\nb")  # Go's `^(?:a.*)$` has no s flag
    assert Matcher(RE, "x", "(?s)a.*").matches("a\nb")
    assert not Matcher(RE, "x", "a$").matches("a\n")  # `$` is the end of text, not of a line
    # Not a regex on its own, but Go compiles it inside ^(?:...)$ : "^(?:a)|(b)$"
    odd = Matcher(RE, "x", "a)|(b")
    assert odd.matches("abc") and odd.matches("xxb") and not odd.matches("xax")


def test_missing_label_is_empty() -> None:
    assert Matchers.of([Matcher(EQ, "team", "")]).matches({})
    assert Matchers.of([Matcher(NEQ, "team", "ops")]).matches({})
    assert Matchers.of([Matcher(NRE, "team", ".+")]).matches({"other": "x"})
    assert not Matchers.of([Matcher(RE, "team", ".+")]).matches({})
    assert Matchers().matches({"a": "b"})


def test_string_forms_and_order() -> None:
    ms = parse_matchers('z="1", a=~"x|y", b!="q\\"\\\\"')
    assert str(ms) == '{a=~"x|y",b!="q\\"\\\\",z="1"}'
    # Same name and value: ordered by type (= != =~ !~).
    assert [
        m.type for m in Matchers.of([Matcher(NRE, "a", "v"), Matcher(EQ, "a", "v"), Matcher(RE, "a", "v")])
    ] == [EQ, RE, NRE]
    # Names the UTF-8 parser needs quoted are printed quoted (Alertmanager HEAD).
    assert str(Matcher(EQ, "my label", 'a"b')) == '"my label"="a\\"b"'
    assert parse_matchers(str(ms)) == ms


def test_legacy_match_re_value_is_stored_anchored() -> None:
    (eq, rx) = legacy_matchers({"a": "b"}, {"c": "d.*"})
    assert (eq.type, eq.value) == (EQ, "b")
    assert (rx.type, rx.value) == (RE, "^(?:d.*)$")
    assert rx.matches("dx") and not rx.matches("xd")


def test_matcher_pickles() -> None:
    m = Matcher(RE, "a", "b+")
    assert pickle.loads(pickle.dumps(m)).matches("bbb")


def test_bad_regex_message_names_it() -> None:
    with pytest.raises(MatcherError, match="regexp"):
        Matcher(RE, "a", "(")

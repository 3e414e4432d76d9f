"""Alertmanager label matchers: parsing the `matchers:` strings and matching label sets.

Alertmanager has two parsers. The "classic" one (pkg/labels, the only one in 0.25) is a tolerant
regex-based splitter: values may be unquoted, stray backslashes are literal, names follow the legacy
`[a-zA-Z_:][a-zA-Z0-9_:]*` rule. The newer UTF-8 parser (matcher/parse, 0.26+) is a strict lexer:
names may be any UTF-8 when quoted, quoted text uses Go string escapes. Since 0.27 Alertmanager runs
in "fallback" mode by default: the UTF-8 parser's result unless the classic parser accepts the input,
in which case the classic result wins (on disagreement it logs and takes the classic one). We follow
that mode: classic first, UTF-8 when classic fails, classic's error when both fail. So every input
0.25 accepts means what it means in 0.25 (Debian's amtool is the oracle), and quoted UTF-8 names work.

Regex matchers are anchored as Go's `^(?:re)$` without the `s` flag (`.` does not match a newline),
run on RE2 through `vigil.model.matcher.compile_regex` (linear time whatever the value). A label that
is absent matches as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.model.matcher import MatchType
from vigil.model.regex import RegexSyntaxError, compile_regex

__all__ = [
    "MatchType",
    "Matcher",
    "MatcherError",
    "Matchers",
    "go_quote",
    "legacy_matchers",
    "parse_matcher",
    "parse_matchers",
]


class MatcherError(ValueError):
    """A matcher could not be parsed or built; the message says what and quotes the input."""


# Go's unicode.IsSpace (the White_Space property), used by strings.TrimSpace.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
# Go's regexp `\s` is ASCII only: [\t\n\f\r ].
_CLASSIC_RE = re.compile(
    r"[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*", re.S
)


def _no_surrogates(text: str, what: str) -> None:
    # A lone surrogate is what undecodable bytes become; Go rejects such text as invalid UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MatcherError(f"{what} not valid UTF-8: {text!r}") from None


def _compile(value: str) -> Callable[[str], bool]:
    """The anchored test Go's `regexp.Compile("^(?:" + v + ")$")` gives."""
    try:
        rx = compile_regex(value, dot_nl=False)
    except RegexSyntaxError:
        # `a)|(b` is no regex alone but Go compiles it inside the wrapper; search the wrapped form.
        try:
            wrapped = compile_regex(f"^(?:{value})$", dot_nl=False)
        except RegexSyntaxError as e:
            raise MatcherError(f"error parsing regexp: {e}: `{value}`") from None
        return lambda v: wrapped.search(v) is not None
    return lambda v: rx.fullmatch(v) is not None


def _om_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def go_quote(s: str) -> str:
    """Go's strconv.Quote (close enough for printing: Python's notion of printable)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            out.append(f"\\x{cp:02x}" if cp < 0x80 else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


# Characters the UTF-8 parser does not allow unquoted; names holding one are printed quoted.
_RESERVED = frozenset("{}!=~,\\\"'`")


def _reserved(ch: str) -> bool:
    return ch in _GO_SPACE or ch in _RESERVED


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager matcher, e.g. `severity=~"warn|crit"`. Compares by (type, name, value)."""

    type: MatchType
    name: str
    value: str
    _fn: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mtype = MatchType(self.type)
        object.__setattr__(self, "type", mtype)
        fn: Callable[[str], bool]
        if mtype is MatchType.EQ:
            fn = self.value.__eq__
        elif mtype is MatchType.NEQ:
            fn = self.value.__ne__
        else:
            pos = _compile(self.value)
            fn = pos if mtype is MatchType.RE else (lambda v: not pos(v))
        object.__setattr__(self, "_fn", fn)

    def matches(self, value: str) -> bool:
        """Whether a label value matches; "" stands for the label being absent."""
        return bool(self._fn(value))

    def __str__(self) -> str:
        if any(_reserved(ch) for ch in self.name):
            return f"{go_quote(self.name)}{self.type.value}{go_quote(self.value)}"
        return f'{self.name}{self.type.value}"{_om_escape(self.value)}"'

    def sort_key(self) -> tuple[str, str, int]:
        return (self.name, self.value, _TYPE_ORDER[self.type])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type, self.name, self.value))


_TYPE_ORDER = {MatchType.EQ: 0, MatchType.NEQ: 1, MatchType.RE: 2, MatchType.NRE: 3}


class Matchers(tuple[Matcher, ...]):
    """Matchers in Alertmanager's order (name, value, type); all must match. Build with `of`."""

    __slots__ = ()

    @classmethod
    def of(cls, matchers: Iterable[Matcher] = ()) -> Matchers:
        return cls(sorted(matchers, key=Matcher.sort_key))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self)

    def __add__(self, other: tuple[Any, ...]) -> Matchers:
        return Matchers.of([*self, *other])

    def __str__(self) -> str:
        return "{" + ",".join(str(m) for m in self) + "}"

    def __repr__(self) -> str:
        return f"Matchers({self})"


def legacy_matchers(match: Mapping[str, str], match_re: Mapping[str, str]) -> list[Matcher]:
    """`match:` / `match_re:` maps as matchers; a `match_re` value is stored as Alertmanager stores it,
    `^(?:re)$`, which is what route keys and `--tree` print."""
    out = [Matcher(MatchType.EQ, k, v) for k, v in match.items()]
    out += [Matcher(MatchType.RE, k, f"^(?:{v})$") for k, v in match_re.items()]
    return out


# ---------------------------------------------------------------------------------------------
# The classic parser (Alertmanager 0.25's pkg/labels).


def _classic_matcher(text: str) -> Matcher:
    m = _CLASSIC_RE.fullmatch(text)
    if m is None:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    expect_quote = raw.startswith('"')
    if expect_quote:
        raw = raw[1:]
    _no_surrogates(raw, "matcher value")
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in '"\\':
                out.append(ch)
            else:  # a spurious escape: the backslash is literal
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not expect_quote or i < last:
                raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
            expect_quote = False
        else:
            out.append(ch)
    if expect_quote:
        raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
    return Matcher(MatchType(op), name, "".join(out))


def _classic_matchers(text: str) -> list[Matcher]:
    text = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside = escaped = False
    for ch in text:
        if ch == ",":
            if not inside:
                tokens.append("".join(token))
                token = []
                continue
        elif ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip("".join(_GO_SPACE))
    if last:
        tokens.append(last)
    return [_classic_matcher(t) for t in tokens]


# ---------------------------------------------------------------------------------------------
# The UTF-8 parser (Alertmanager 0.26+'s matcher/parse): a lexer and a small state machine.

_OPS = ("=~", "!~", "!=", "=")


@dataclass(slots=True)
class _Tok:
    kind: str  # "{", "}", ",", "op", "quoted", "unquoted"
    text: str
    start: int  # column (rune offset) where it starts


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{},":
            toks.append(_Tok(ch, ch, i))
            i += 1
        elif ch in "=!":
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise MatcherError(f"{i}:{i + 1}: {text[i : i + 2]}: expected one of '=~'")
            toks.append(_Tok("op", op, i))
            i += len(op)
        elif ch == '"':
            j, esc = i + 1, False
            while j < n:
                c = text[j]
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    break
                j += 1
            if j >= n:
                raise MatcherError(f'{i}:{n}: {text[i:]}: missing end "')
            toks.append(_Tok("quoted", text[i : j + 1], i))
            i = j + 1
        elif ch in _GO_SPACE:
            i += 1
        elif _reserved(ch):
            raise MatcherError(f"{i}:{i + 1}: {ch}: invalid input")
        else:
            j = i
            while j < n and not _reserved(text[j]):
                j += 1
            toks.append(_Tok("unquoted", text[i:j], i))
            i = j
    return toks


_GO_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def _go_unquote(tok: _Tok) -> str:
    """strconv.Unquote of a double-quoted Go string; the token text itself when unquoted."""
    if tok.kind == "unquoted":
        return tok.text
    bad = MatcherError(f"{tok.start}:{tok.start + len(tok.text)}: {tok.text}: invalid input")
    body = tok.text[1:-1]
    if "\n" in body:
        raise bad
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise bad
        e = body[i + 1]
        if e in _GO_ESCAPES:
            out += _GO_ESCAPES[e].encode()
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise bad
            cp = int(digits, 16)
            if e == "x":
                out.append(cp)
            else:
                if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise bad
                out += chr(cp).encode()
            i += 2 + width
        elif e in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise bad
            out.append(int(digits, 8))
            i += 4
        else:
            raise bad
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise bad from None


def _utf8_matchers(text: str) -> list[Matcher]:
    toks = _lex(text)
    out: list[Matcher] = []
    i = 0
    braced = bool(toks) and toks[0].kind == "{"
    if braced:
        i = 1

    def at(k: int) -> _Tok | None:
        return toks[k] if k < len(toks) else None

    def unexpected(t: _Tok, what: str) -> MatcherError:
        return MatcherError(f"{t.start}:{t.start + len(t.text)}: unexpected {t.text}: {what}")

    while True:
        t = at(i)
        if t is None or t.kind == "}":
            break
        if t.kind not in ("quoted", "unquoted"):
            raise unexpected(t, "expected label name")
        name = _go_unquote(t)
        op = at(i + 1)
        if op is None or op.kind != "op":
            if op is None:
                raise MatcherError("end of input: expected an operator such as '=', '!=', '=~' or '!~'")
            raise unexpected(op, "expected an operator such as '=', '!=', '=~' or '!~'")
        val = at(i + 2)
        if val is None or val.kind not in ("quoted", "unquoted"):
            if val is None:
                raise MatcherError("end of input: expected label value")
            raise unexpected(val, "expected label value")
        out.append(Matcher(MatchType(op.text), name, _go_unquote(val)))
        i += 3
        nxt = at(i)
        if nxt is None or nxt.kind == "}":
            break
        if nxt.kind != ",":
            raise unexpected(nxt, "expected a comma or close brace")
        i += 1
    t = at(i)
    if braced:
        if t is None or t.kind != "}":
            raise MatcherError(f"0:{len(text)}: end of input: expected close brace")
        i += 1
    elif t is not None and t.kind == "}":
        raise MatcherError(f"0:{t.start + 1}: }}: expected opening brace")
    t = at(i)
    if t is not None:
        raise MatcherError(f"{t.start}:{t.start + len(t.text)}: {t.text}: expected end of input")
    return out


# ---------------------------------------------------------------------------------------------
# What the rest of Vigil calls.


def parse_matchers(text: str) -> Matchers:
    """Parse one `matchers:` item (`a="b", c=~"d"`, optionally in braces) as Alertmanager's default
    fallback mode does. Raises MatcherError."""
    try:
        return Matchers.of(_classic_matchers(text))
    except MatcherError as classic:
        try:
            return Matchers.of(_utf8_matchers(text))
        except MatcherError:
            raise classic from None


def parse_matcher(text: str) -> Matcher:
    """Parse exactly one matcher (amtool's label arguments, silence filters). As Alertmanager's
    fallback mode, braces are refused here. Raises MatcherError."""
    if text.startswith("{") or text.endswith("}"):
        raise MatcherError(f"unexpected open or close brace: {text}")
    try:
        return _classic_matcher(text)
    except MatcherError as classic:
        try:
            found = _utf8_matchers(text)
        except MatcherError:
            raise classic from None
        if len(found) != 1:
            raise classic from None
        return found[0]

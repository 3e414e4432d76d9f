"""RE2 regexes for label matchers, relabelling and label_replace: parsed, translated, run in linear time.

The label matchers themselves (`=`, `!=`, `=~`, `!~`) are in `vigil.model.matcher`; this module is
the regex half (as Prometheus splits `regexp.go` from `matcher.go`).

Users write regexes in RE2 syntax (what Prometheus accepts), fully anchored, with `.` matching
newlines. Patterns and the values they run on come from requests, so matching must take linear
time whatever either holds: a backtracking engine can take exponential time (`(a?){30}a{30}`,
`(a+)+b`), and Python's `re` holds the GIL while it does, freezing every thread of the server.

`_Parser` parses an RE2 pattern into a small syntax tree, rejecting what RE2 rejects (lookaround,
backreferences, possessive quantifiers, ...). The tree decides how a pattern runs:
- the shortcuts Prometheus also takes: `.*`, `.+`, literal sets, prefix/suffix/substring checks;
- shapes that are linear on a backtracking engine, checked structurally by
  `_linear_on_backtracking` (at most one ambiguous repetition, of a single character, and only
  fixed-cost items after it, such as `[a-z]+_total` or `node_(cpu|mem)_.+`): Python's `re`, an
  order of magnitude faster per match from Python than the google-re2 binding;
- everything else: google-re2, from the tree printed back as RE2 syntax (`_emit_re2`), so both
  engines run the language our parser defines. There is no fallback to backtracking.
`compile_anchored` picks a matcher's test; `compile_regex` gives the same choice, with capture groups,
to `label_replace` and relabelling.

Divergences from Go's regexp (what Prometheus uses), all deliberate:
- Unicode classes: `\\p{...}` is translated for the general categories (`\\pL`, `\\p{Lu}`, also by
  their long names as recent Go accepts: `\\p{Letter}`), `Any`, `Assigned` and `ASCII`, from
  Python's `unicodedata` (whose Unicode version may lag Go's). Scripts such as `\\p{Greek}` are
  rejected with an error: Python has no script data to translate them from.
- Nesting is limited to 100 groups (Go allows 1000): our parser and Python's are recursive.
- Go rejects regexes that compile to over ~3 million instructions; RE2's limit is its 8 MiB
  program memory, reported as an invalid regex.
- A lone surrogate in a value (no valid UTF-8 has one) is matched by RE2 as U+FFFD.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import re2

__all__ = [
    "AnchoredPattern",
    "Regex",
    "RegexMatch",
    "RegexSyntaxError",
    "compile_anchored",
    "compile_regex",
    "translate",
    "translate_re2",
]


class RegexSyntaxError(ValueError):
    """A pattern is not valid RE2 syntax, or uses a construct we do not support."""


# ---------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(slots=True)
class _Lit:
    text: str
    fold: bool  # case-insensitive, from (?i)


@dataclass(slots=True)
class _Class:
    ranges: list[tuple[int, int]]  # inclusive code point ranges, sorted and merged
    negated: bool
    fold: bool


@dataclass(slots=True)
class _Any:
    nl: bool  # matches "\n" too (flag s)


@dataclass(slots=True)
class _Assert:
    kind: str  # bot/eot: text start/end; bol/eol: line start/end (flag m); wb/nwb: \b, \B


@dataclass(slots=True)
class _Concat:
    items: list[_Node]


@dataclass(slots=True)
class _Alt:
    branches: list[_Node]


@dataclass(slots=True)
class _Repeat:
    sub: _Node
    min: int
    max: int | None  # None: unbounded
    greedy: bool
    counted: bool  # written as {n,m}; only those count towards RE2's 1000-copies limit


@dataclass(slots=True)
class _Capture:
    sub: _Node
    name: str | None


_Node = _Lit | _Class | _Any | _Assert | _Concat | _Alt | _Repeat | _Capture

_EMPTY = _Concat([])

# RE2 flags.
_I, _M, _S, _U = 1, 2, 4, 8  # case-fold, multi-line, dot matches \n, ungreedy
_FLAG_BITS = {"i": _I, "m": _M, "s": _S, "U": _U}

_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000  # RE2's limit on {n,m} counts
_MAX_DEPTH = 100
_HEX = frozenset("0123456789abcdefABCDEF")
_OCT = frozenset("01234567")
_COUNTED_RE = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")
_CONTROL_ESCAPES = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}

_R = list[tuple[int, int]]
_DIGIT: _R = [(0x30, 0x39)]
_UPPER: _R = [(0x41, 0x5A)]
_LOWER: _R = [(0x61, 0x7A)]
_WORD: _R = [*_DIGIT, *_UPPER, (0x5F, 0x5F), *_LOWER]
_PERL: dict[str, _R] = {"d": _DIGIT, "s": [(9, 10), (12, 13), (32, 32)], "w": _WORD}
_POSIX: dict[str, _R] = {
    "alnum": [*_DIGIT, *_UPPER, *_LOWER],
    "alpha": [*_UPPER, *_LOWER],
    "ascii": [(0, 0x7F)],
    "blank": [(9, 9), (32, 32)],
    "cntrl": [(0, 0x1F), (0x7F, 0x7F)],
    "digit": _DIGIT,
    "graph": [(0x21, 0x7E)],
    "lower": _LOWER,
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(9, 13), (32, 32)],
    "upper": _UPPER,
    "word": _WORD,
    "xdigit": [*_DIGIT, (0x41, 0x46), (0x61, 0x66)],
}


def _normalize(ranges: Iterable[tuple[int, int]]) -> _R:
    out: _R = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: Iterable[tuple[int, int]]) -> _R:
    out: _R = []
    nxt = 0
    for lo, hi in _normalize(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


# Unicode's long names for the general categories, accepted by recent Go versions.
_CATEGORY_ALIASES = {
    "Other": "C", "Control": "Cc", "Format": "Cf", "Unassigned": "Cn", "Private_Use": "Co",
    "Surrogate": "Cs", "Letter": "L", "Cased_Letter": "LC", "Lowercase_Letter": "Ll",
    "Modifier_Letter": "Lm", "Other_Letter": "Lo", "Titlecase_Letter": "Lt", "Uppercase_Letter": "Lu",
    "Mark": "M", "Combining_Mark": "M", "Spacing_Mark": "Mc", "Enclosing_Mark": "Me",
    "Nonspacing_Mark": "Mn", "Number": "N", "Decimal_Number": "Nd", "Digit": "Nd", "Letter_Number": "Nl",
    "Other_Number": "No", "Punctuation": "P", "Punct": "P", "Connector_Punctuation": "Pc",
    "Dash_Punctuation": "Pd", "Close_Punctuation": "Pe", "Final_Punctuation": "Pf",
    "Initial_Punctuation": "Pi", "Other_Punctuation": "Po", "Open_Punctuation": "Ps", "Symbol": "S",
    "Currency_Symbol": "Sc", "Modifier_Symbol": "Sk", "Math_Symbol": "Sm", "Other_Symbol": "So",
    "Separator": "Z", "Line_Separator": "Zl", "Paragraph_Separator": "Zp", "Space_Separator": "Zs",
    "Cntrl": "Cc",
}  # fmt: skip


def _canonical_class_name(name: str) -> str:
    """As Go matches \\p{...} names: case-insensitively after the first letter, ignoring `_- `."""
    name = "".join(c for c in name if c not in "_- ")
    return name[:1].upper() + name[1:].lower()


@functools.cache
def _unicode_classes() -> dict[str, _R]:
    """Code point ranges per canonical class name; built once (~0.5 s) on first use of \\p."""
    runs: dict[str, _R] = {}
    start, prev = 0, unicodedata.category("\0")
    for cp in range(1, _MAX_RUNE + 2):
        cat = unicodedata.category(chr(cp)) if cp <= _MAX_RUNE else ""
        if cat != prev:
            runs.setdefault(prev, []).append((start, cp - 1))
            start, prev = cp, cat
    for major in "CLMNPSZ":
        # Go's one-letter classes leave out unassigned code points (Cn).
        subs = [
            r for cat, rs in runs.items() if len(cat) == 2 and cat[0] == major and cat != "Cn" for r in rs
        ]
        runs[major] = _normalize(subs)
    runs["LC"] = _normalize([*runs["Lu"], *runs["Ll"], *runs["Lt"]])
    classes = {_canonical_class_name(cat): rs for cat, rs in runs.items()}
    classes.update({_canonical_class_name(alias): runs[cat] for alias, cat in _CATEGORY_ALIASES.items()})
    classes["Any"] = [(0, _MAX_RUNE)]
    classes["Assigned"] = _complement(runs["Cn"])
    classes["Ascii"] = [(0, 0x7F)]
    return classes


def _fold_ascii(ranges: _R) -> _R:
    """An ASCII table plus the case variants RE2 folds its letters with."""
    extra: _R = []
    for lo, hi in ranges:
        for cp in range(lo, min(hi, 0x7F) + 1):
            c = chr(cp)
            if c.isalpha():
                extra.append((ord(c.swapcase()),) * 2)
            if c in "kK":
                extra.append((0x212A, 0x212A))  # KELVIN SIGN
            if c in "sS":
                extra.append((0x17F, 0x17F))  # LATIN SMALL LETTER LONG S
    return _normalize([*ranges, *extra])


def _cased(text: str) -> bool:
    return any(c.lower() != c or c.upper() != c for c in text)


# ---------------------------------------------------------------------------------------------
# Parser: RE2 syntax (Go's regexp/syntax with Perl flags) -> tree


class _Parser:
    def __init__(self, pattern: str, flags: int) -> None:
        self.p = pattern
        self.i = 0
        self.flags = flags
        self.depth = 0

    def fail(self, msg: str) -> NoReturn:
        raise RegexSyntaxError(msg)

    def parse(self) -> _Node:
        node = self.alternation()
        if self.i < len(self.p):  # only an unmatched ")" stops the top-level alternation early
            self.fail(f"unexpected ) at position {self.i}")
        return node

    def alternation(self) -> _Node:
        branches = [self.concat()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.concat())
        return branches[0] if len(branches) == 1 else _Alt(branches)

    def concat(self) -> _Node:
        p = self.p
        items: list[_Node] = []
        last_repeat = ""  # operator just applied: RE2 rejects stacked ones (`a**`, and so `a*+`)
        while self.i < len(p):
            c = p[self.i]
            if c in "|)":
                break
            start = self.i
            rep = self.counted_repeat() if c == "{" else None
            if c in "*+?":
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif rep is not None:
                lo, hi = rep
            else:
                last_repeat = ""
                if p.startswith("\\Q", self.i):
                    # \Q...\E quotes literally; each character stays a separate item so that a
                    # following repetition applies to the last one only, as in RE2.
                    end = p.find("\\E", self.i + 2)
                    end = len(p) if end < 0 else end
                    items.extend(self.lit(ch) for ch in p[self.i + 2 : end])
                    self.i = min(end + 2, len(p))
                    continue
                item = self.atom()
                if item is not None:
                    items.append(item)
                continue
            greedy = True
            if self.i < len(p) and p[self.i] == "?":
                self.i += 1
                greedy = False
            op = p[start : self.i]
            if last_repeat:
                self.fail(f"invalid nested repetition operator: `{last_repeat}{op}`")
            if not items:
                self.fail(f"missing argument to repetition operator: `{op}`")
            if self.flags & _U:
                greedy = not greedy
            items[-1] = self.repeat(items[-1], lo, hi, greedy, rep is not None, op)
            last_repeat = op
        return _concat(items)

    def counted_repeat(self) -> tuple[int, int | None] | None:
        """Parse `{n}`, `{n,}` or `{n,m}` at self.i; None when the brace is a literal, as in RE2."""
        m = _COUNTED_RE.match(self.p, self.i)
        if m is None:
            return None
        lo_s, comma, hi_s = m.group(1), m.group(2), m.group(3)
        if any(len(s) > 1 and s[0] == "0" for s in (lo_s, hi_s or "")):
            return None  # RE2 does not read numbers with leading zeros; the brace is literal
        lo = int(lo_s)
        hi = lo if comma is None else (int(hi_s) if hi_s else None)
        if lo > _MAX_REPEAT or (hi is not None and (hi > _MAX_REPEAT or hi < lo)):
            self.fail(f"invalid repeat count: `{m.group(0)}`")
        self.i = m.end()
        return lo, hi

    def repeat(self, sub: _Node, lo: int, hi: int | None, greedy: bool, counted: bool, op: str) -> _Node:
        if isinstance(sub, _Assert):
            # Repeating an empty-width assertion is legal RE2 but not Python; it means the same
            # as the assertion itself, or as nothing when it may repeat zero times.
            return sub if lo > 0 else _Concat([])
        node = _Repeat(sub, lo, hi, greedy, counted)
        if counted and (lo >= 2 or (hi or 0) >= 2) and not _repeat_size_ok(node, _MAX_REPEAT):
            self.fail(f"invalid repeat count: `{op}`")
        return node

    def lit(self, ch: str) -> _Lit:
        return _Lit(ch, bool(self.flags & _I))

    def atom(self) -> _Node | None:
        c = self.p[self.i]
        if c == "(":
            return self.group()
        if c == "[":
            return self.char_class()
        if c == "\\":
            return self.escape_atom()
        self.i += 1
        if c == ".":
            return _Any(bool(self.flags & _S))
        if c == "^":
            return _Assert("bol" if self.flags & _M else "bot")
        if c == "$":
            return _Assert("eol" if self.flags & _M else "eot")
        return self.lit(c)

    def group(self) -> _Node | None:
        p, start = self.p, self.i
        self.i += 1
        name: str | None = None
        capture = True
        saved = self.flags
        if p.startswith("?", self.i):
            after = p[self.i + 1 : self.i + 3]
            if after.startswith(("P<", "<")) and not after.startswith(("<=", "<!")):
                name = self.group_name(start)
            else:
                self.reject_perl_group(start)
                flags, opens_group = self.perl_flags(start)
                if not opens_group:  # (?i): applies to the rest of the enclosing group
                    self.flags = flags
                    return None
                self.flags = flags
                capture = False
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"expression nests too deeply (more than {_MAX_DEPTH} groups)")
        sub = self.alternation()
        if self.i >= len(p):
            self.fail(f"missing ) to close group opened at position {start}")
        self.i += 1
        self.depth -= 1
        self.flags = saved
        return _Capture(sub, name) if capture else sub

    def group_name(self, start: int) -> str:
        p = self.p
        begin = self.i + (3 if p.startswith("?P<", self.i) else 2)
        end = p.find(">", begin)
        name = p[begin:end] if end >= 0 else ""
        if end < 0 or not name or not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
            self.fail(f"invalid named capture: `{p[start : end + 1 if end >= 0 else len(p)]}`")
        self.i = end + 1
        return name

    def reject_perl_group(self, start: int) -> None:
        """Name the common Perl/PCRE/Python extensions RE2 lacks, for a clearer error."""
        rest = self.p[start : start + 4]
        for prefixes, what in (
            (("(?=", "(?!"), "lookahead assertions"),
            (("(?<=", "(?<!"), "lookbehind assertions"),
            (("(?P=",), "backreferences"),
            (("(?>",), "atomic groups"),
            (("(?(",), "conditionals"),
            (("(?#",), "comments"),
            (("(?P>", "(?&", "(?R"), "recursion"),
        ):
            if rest.startswith(prefixes):
                self.fail(f"{what} are not supported in RE2 syntax: `{rest.rstrip(')')}`")

    def perl_flags(self, start: int) -> tuple[int, bool]:
        """Parse `(?flags)` or `(?flags:`; returns the new flags and whether a group opens."""
        p = self.p
        i = self.i + 1
        flags = self.flags
        negate = saw_flag = False
        while i < len(p):
            c = p[i]
            i += 1
            if c in _FLAG_BITS:
                flags = flags & ~_FLAG_BITS[c] if negate else flags | _FLAG_BITS[c]
                saw_flag = True
            elif c == "-" and not negate:
                negate, saw_flag = True, False
            elif c in ":)" and not (negate and not saw_flag):
                self.i = i
                return flags, c == ":"
            else:
                break
        self.fail(f"invalid or unsupported Perl syntax: `{p[start:i]}`")

    def escape_atom(self) -> _Node:
        p, i = self.p, self.i
        if i + 1 >= len(p):
            self.fail("trailing backslash at end of expression")
        c = p[i + 1]
        fold = bool(self.flags & _I)
        if c in "AzbB":
            self.i += 2
            return _Assert({"A": "bot", "z": "eot", "b": "wb", "B": "nwb"}[c])
        if c in "dDsSwW":
            self.i += 2
            return _Class(_PERL[c.lower()], c.isupper(), fold)
        if c in "pP":
            return _Class(self.unicode_class(), False, fold)
        return _Lit(chr(self.escape_char()), fold)

    def escape_char(self) -> int:
        """A single-character escape at self.i (the backslash): `\\n`, `\\x41`, `\\101`, `\\.`..."""
        p = self.p
        i = self.i + 1
        if i >= len(p):
            self.fail("trailing backslash at end of expression")
        c = p[i]
        i += 1
        if c.isascii() and not c.isalnum():  # escaped punctuation is always itself
            self.i = i
            return ord(c)
        if c in _OCT and (c == "0" or (i < len(p) and p[i] in _OCT)):
            value = int(c)
            for _ in range(2):
                if i < len(p) and p[i] in _OCT:
                    value = value * 8 + int(p[i])
                    i += 1
            self.i = i
            return value
        if c in "123456789":
            self.fail(f"backreferences are not supported in RE2 syntax: `\\{c}`")
        if c == "x":
            if p.startswith("{", i):
                end = p.find("}", i)
                digits = p[i + 1 : end] if end >= 0 else ""
                if digits and all(d in _HEX for d in digits) and int(digits, 16) <= _MAX_RUNE:
                    self.i = end + 1
                    return int(digits, 16)
            elif len(p) >= i + 2 and p[i] in _HEX and p[i + 1] in _HEX:
                self.i = i + 2
                return int(p[i : i + 2], 16)
            self.fail(f"invalid escape sequence: `{p[self.i : i + 2]}`")
        if c in _CONTROL_ESCAPES:
            self.i = i
            return _CONTROL_ESCAPES[c]
        hint = " (RE2 spells end of text \\z)" if c == "Z" else ""
        self.fail(f"invalid escape sequence: `\\{c}`{hint}")

    def unicode_class(self) -> _R:
        p, start = self.p, self.i
        negate = p[start + 1] == "P"
        i = start + 2
        if i >= len(p):
            self.fail(f"invalid character class range: `{p[start:]}`")
        if p[i] == "{":
            end = p.find("}", i)
            if end < 0:
                self.fail(f"invalid character class range: `{p[start:]}`")
            name, self.i = p[i + 1 : end], end + 1
        else:
            name, self.i = p[i], i + 1
        if name.startswith("^"):
            negate, name = not negate, name[1:]
        ranges = _unicode_classes().get(_canonical_class_name(name))
        if ranges is None:
            self.fail(
                f"unsupported Unicode class `{p[start : self.i]}`: only general categories "
                "(\\pL, \\p{Lu}, \\p{Letter}, ...), Any, Assigned and ASCII are supported, not scripts"
            )
        return _complement(ranges) if negate else list(ranges)

    def char_class(self) -> _Class:
        p, start = self.p, self.i
        self.i += 1
        negated = p.startswith("^", self.i)
        self.i += negated
        ranges: _R = []
        first = True  # a "]" right after "[" or "[^" is a literal
        while True:
            if self.i >= len(p):
                self.fail(f"missing closing ]: `{p[start:]}`")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and p.startswith(":", self.i + 1) and self.i + 2 < len(p):
                end = p.find(":]", self.i + 2)
                if end >= 0:
                    name = p[self.i + 2 : end]
                    table = _POSIX.get(name.removeprefix("^"))
                    if table is None:
                        self.fail(f"invalid character class range: `{p[self.i : end + 2]}`")
                    ranges.extend(self.negated_table(table) if name.startswith("^") else table)
                    self.i = end + 2
                    continue
            if c == "\\" and self.i + 1 < len(p):
                e = p[self.i + 1]
                if e in "dDsSwW":
                    ranges.extend(self.negated_table(_PERL[e.lower()]) if e.isupper() else _PERL[e])
                    self.i += 2
                    continue
                if e in "pP":
                    ranges.extend(self.unicode_class())
                    continue
            range_start = self.i
            lo = hi = self.class_char()
            if self.i + 1 < len(p) and p[self.i] == "-" and p[self.i + 1] != "]":
                self.i += 1
                hi = self.class_char()
                if hi < lo:
                    self.fail(f"invalid character class range: `{p[range_start : self.i]}`")
            ranges.append((lo, hi))
        return _Class(_normalize(ranges), negated, bool(self.flags & _I))

    def negated_table(self, table: _R) -> _R:
        # RE2 case-folds a class before negating it: (?i)[[:^alpha:]] must not match K (KELVIN SIGN).
        return _complement(_fold_ascii(table) if self.flags & _I else table)

    def class_char(self) -> int:
        if self.p[self.i] == "\\":
            return self.escape_char()
        self.i += 1
        return ord(self.p[self.i - 1])


def _concat(items: list[_Node]) -> _Node:
    """Flatten nested concatenations and merge adjacent literals with the same case-folding."""
    out: list[_Node] = []
    for item in items:
        for sub in item.items if isinstance(item, _Concat) else [item]:
            prev = out[-1] if out else None
            if isinstance(sub, _Lit) and isinstance(prev, _Lit) and prev.fold == sub.fold:
                out[-1] = _Lit(prev.text + sub.text, sub.fold)
            else:
                out.append(sub)
    return out[0] if len(out) == 1 else _Concat(out)


def _repeat_size_ok(node: _Node, n: int) -> bool:
    """RE2 rejects counted repetitions that would expand to more than 1000 copies of anything."""
    if isinstance(node, _Repeat) and node.counted:
        m = node.max if node.max is not None else node.min
        if m > n:
            return False
        if m > 0:
            n //= m
    if isinstance(node, _Concat):
        return all(_repeat_size_ok(s, n) for s in node.items)
    if isinstance(node, _Alt):
        return all(_repeat_size_ok(s, n) for s in node.branches)
    if isinstance(node, _Repeat | _Capture):
        return _repeat_size_ok(node.sub, n)
    return True


# ---------------------------------------------------------------------------------------------
# Printer: tree -> Python pattern


def _class_char(cp: int) -> str:
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def _lit_char(ch: str) -> str:
    if ch.isascii():
        return ch if ch.isalnum() else (re.escape(ch) if ch.isprintable() else _class_char(ord(ch)))
    return ch if ch.isprintable() else _class_char(ord(ch))


# \b and \B are ASCII in RE2. Python's \B (before 3.14) never matches an empty string, so spell it out.
_ASSERTS = {
    "bot": r"\A",
    "eot": r"\Z",
    "bol": "(?m:^)",
    "eol": "(?m:$)",
    "wb": r"(?a:\b)",
    "nwb": r"(?a:(?<=\w)(?=\w)|(?<!\w)(?!\w))",
}


# Python's case-insensitive matching makes i, I, ı (dotless) and İ (dotted) equivalent; RE2 folds
# by Unicode simple case folding, where i and I go together and ı and İ each stand alone.
_TURKISH_I = "Iiıİ"


def _emit_folded_lit(text: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for ch in [*text, ""]:
        if ch and ch not in _TURKISH_I:
            run.append(ch)
            continue
        if run:
            s = "".join(map(_lit_char, run))
            out.append(f"(?i:{s})" if _cased("".join(run)) else s)
            run = []
        if ch:
            out.append("[Ii]" if ch in "Ii" else ch)
    return "".join(out)


def _in_ranges(cp: int, ranges: _R) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _emit_class(node: _Class) -> str:
    ranges = node.ranges
    negated = node.negated
    if not ranges:  # e.g. [^\x00-\x{10FFFF}]: Python has no empty class, so use its complement
        ranges, negated = [(0, _MAX_RUNE)], not negated
    body = "".join(
        _class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in ranges
    )
    s = f"[{'^' if negated else ''}{body}]"
    if not node.fold:
        return s
    if not any(_in_ranges(ord(c), ranges) for c in _TURKISH_I):
        return f"(?i:{s})"
    # Decide the four i's ourselves (see _TURKISH_I); Python's folding handles every other char.
    groups = [("Ii", "Ii"), ("ı", "ı"), ("İ", "İ")]
    chosen = "".join(
        chars for members, chars in groups if any(_in_ranges(ord(c), ranges) for c in members) != negated
    )
    special = f"|[{chosen}]" if chosen else ""
    return f"(?:(?![{_TURKISH_I}])(?i:{s}){special})"


def _emit(node: _Node, capture: bool) -> str:
    if isinstance(node, _Lit):
        if node.fold and _cased(node.text):
            return _emit_folded_lit(node.text)
        return "".join(map(_lit_char, node.text))
    if isinstance(node, _Class):
        return _emit_class(node)
    if isinstance(node, _Any):
        return "." if node.nl else "[^\\n]"  # "." is only ever printed for flag s: we compile with DOTALL
    if isinstance(node, _Assert):
        return _ASSERTS[node.kind]
    if isinstance(node, _Concat):
        parts = (_emit(s, capture) for s in node.items)
        return "".join(
            f"(?:{t})" if isinstance(s, _Alt) else t for s, t in zip(node.items, parts, strict=True)
        )
    if isinstance(node, _Alt):
        return "|".join(_emit(b, capture) for b in node.branches)
    if isinstance(node, _Capture):
        if not capture:
            return f"(?:{_emit(node.sub, capture)})"
        # Go allows names Python does not (leading digits); those groups keep their number only.
        named = node.name is not None and node.name.isidentifier()
        return f"({'?P<' + str(node.name) + '>' if named else ''}{_emit(node.sub, capture)})"
    sub = _emit(node.sub, capture)
    atomic = isinstance(node.sub, _Class | _Any | _Capture) or (
        isinstance(node.sub, _Lit) and len(node.sub.text) == 1
    )
    if not atomic:
        sub = f"(?:{sub})"
    lo, hi = node.min, node.max
    quant = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((lo, hi))
    if quant is None:
        quant = f"{{{lo}}}" if hi == lo else f"{{{lo},{'' if hi is None else hi}}}"
    return sub + quant + ("" if node.greedy else "?")


def _parse(pattern: str, dot_nl: bool) -> _Node:
    try:
        return _Parser(pattern, _S if dot_nl else 0).parse()
    except RecursionError:
        raise RegexSyntaxError("expression nests too deeply") from None


def translate(pattern: str, *, dot_nl: bool = True, capture: bool = False) -> str:
    """Translate an RE2 pattern into an equivalent Python `re` pattern (to use with fullmatch).

    `dot_nl` starts with flag s on, as PromQL matchers do (Prometheus 3 anchors them as
    `^(?s:re)$`); relabelling and label_replace use `^(?:re)$`, i.e. dot_nl=False. With
    `capture`, groups keep their numbers and valid names, for replacements like `$1`.
    Raises RegexSyntaxError for patterns RE2 rejects or that we do not support.
    """
    return _emit(_parse(pattern, dot_nl), capture)


def translate_re2(pattern: str, *, dot_nl: bool = True, capture: bool = False) -> str:
    """The pattern as our parser reads it, printed back as RE2 syntax: what RE2 is given when it
    runs the pattern, so RE2 and Python's `re` run the same language. Same arguments as `translate`."""
    return _emit_re2(_parse(pattern, dot_nl), capture)


# ---------------------------------------------------------------------------------------------
# Shortcuts: what the tree lets us decide without running a regex

_MAX_SET = 256  # as Prometheus: bigger literal sets are not worth enumerating
_MAX_CLASS_SET = 16


def _simplify(node: _Node, at_start: bool, at_end: bool) -> _Node:
    """Drop captures and the anchors a full match makes redundant (users often write `^foo$`)."""
    if isinstance(node, _Capture):
        return _simplify(node.sub, at_start, at_end)
    if isinstance(node, _Alt):
        return _Alt([_simplify(b, at_start, at_end) for b in node.branches])
    if isinstance(node, _Concat):
        n = len(node.items)
        return _concat(
            [_simplify(s, at_start and k == 0, at_end and k == n - 1) for k, s in enumerate(node.items)]
        )
    if isinstance(node, _Assert) and (
        (at_start and node.kind in ("bot", "bol")) or (at_end and node.kind in ("eot", "eol"))
    ):
        return _EMPTY
    if isinstance(node, _Repeat):
        return _Repeat(_simplify(node.sub, False, False), node.min, node.max, node.greedy, node.counted)
    return node


def _strings(node: _Node, fold: bool) -> set[str] | None:
    """The finite set of strings `node` matches, or None. With `fold`, the ASCII-lowercased set
    of a pattern that is case-insensitive throughout (and ASCII, where folding is simple)."""
    if isinstance(node, _Lit):
        if node.fold != fold and _cased(node.text):
            return None
        if fold:
            return {node.text.lower()} if node.text.isascii() else None
        return {node.text}
    if isinstance(node, _Class):
        if node.negated or sum(hi - lo + 1 for lo, hi in node.ranges) > _MAX_CLASS_SET:
            return None
        chars = [chr(cp) for lo, hi in node.ranges for cp in range(lo, hi + 1)]
        if (node.fold != fold and _cased("".join(chars))) or (fold and not all(c.isascii() for c in chars)):
            return None
        return {c.lower() for c in chars} if fold else set(chars)
    if isinstance(node, _Concat):
        acc = {""}
        for item in node.items:
            sub = _strings(item, fold)
            if sub is None or len(acc) * len(sub) > _MAX_SET:
                return None
            acc = {a + b for a in acc for b in sub}
        return acc
    if isinstance(node, _Alt):
        out: set[str] = set()
        for b in node.branches:
            sub = _strings(b, fold)
            if sub is None:
                return None
            out |= sub
        return out if len(out) <= _MAX_SET else None
    if isinstance(node, _Repeat) and node.min == 0 and node.max == 1:
        sub = _strings(node.sub, fold)
        return None if sub is None else sub | {""}
    return None


def _is_dot_repeat(node: _Node, lo: int) -> bool:
    return (
        isinstance(node, _Repeat)
        and node.min == lo
        and node.max is None
        and isinstance(node.sub, _Any)
        and node.sub.nl
    )


def _case_sensitive_lit(node: _Node) -> str | None:
    if isinstance(node, _Lit) and not (node.fold and _cased(node.text)):
        return node.text
    return None


# ---------------------------------------------------------------------------------------------
# Engines: Python's re for shapes proven linear on it, RE2 for everything else


def _items(node: _Node) -> list[_Node]:
    """The top-level sequence of a pattern: concatenations and capture groups opened up (neither
    changes how a backtracking engine explores the items)."""
    if isinstance(node, _Concat):
        return [x for item in node.items for x in _items(item)]
    if isinstance(node, _Capture):
        return _items(node.sub)
    return [node]


def _single(node: _Node) -> bool:
    """Whether `node` matches exactly one character, in exactly one way."""
    return isinstance(node, _Class | _Any) or (isinstance(node, _Lit) and len(node.text) == 1)


def _charset(node: _Node) -> _R | None:
    """The characters a single-character node can match, or None when unknown (any, folded)."""
    if isinstance(node, _Lit) and not (node.fold and _cased(node.text)):
        return [(ord(node.text[0]),) * 2]
    if isinstance(node, _Class) and not node.fold:
        return _complement(node.ranges) if node.negated else node.ranges
    return None


def _literal_alt(node: _Node) -> list[str] | None:
    """The branches of an alternation of case-sensitive, non-empty literals none of which is a
    prefix of another: at any position at most one branch matches, and in one way only."""
    if not isinstance(node, _Alt):
        return None
    words = [_case_sensitive_lit(b) for b in node.branches]
    if not all(words):
        return None
    texts = sorted(w for w in words if w)
    if any(b.startswith(a) for a, b in itertools.pairwise(texts)):  # sorted: enough to check neighbours
        return None
    return texts


def _fixed(node: _Node) -> bool:
    """Whether `node` matches at most one way at a given position, at a cost bounded by its size."""
    if isinstance(node, _Lit | _Assert) or _single(node):
        return True
    if isinstance(node, _Repeat) and node.min == node.max and _single(node.sub):
        return True
    return _literal_alt(node) is not None


def _first_chars(node: _Node) -> _R | None:
    """Characters a non-empty match of `node` must start with, or None when unknown."""
    if isinstance(node, _Lit):
        return _charset(_Lit(node.text[0], node.fold))
    if _single(node):
        return _charset(node)
    if isinstance(node, _Repeat) and node.min > 0 and _single(node.sub):
        return _charset(node.sub)
    words = _literal_alt(node)
    return None if words is None else _normalize((ord(w[0]),) * 2 for w in words)


def _disjoint(a: _R, b: _R) -> bool:
    return all(hi1 < lo2 or hi2 < lo1 for lo1, hi1 in a for lo2, hi2 in b)


def _linear_on_backtracking(tree: _Node) -> bool:
    """Whether a backtracking engine's full match of `tree` takes time linear in the value
    (O(value length x pattern length), RE2's own bound), proven from the pattern's shape.

    The items of the top-level sequence may be fixed (literals, single characters, counted
    repeats of one, assertions, alternations of prefix-free literals: one way to match each) or
    repetitions of a single character. A repetition is unambiguous when what follows cannot start
    with a character it repeats (`[a-z]+_`, or at the end): it gives back characters only to fail
    at once. At most one may be ambiguous (the choice point: `.*`, `a*a`), and after it only fixed
    items, so that each of its O(n) choices costs O(pattern). Everything else goes to RE2:
    repetitions of groups (`(a?){30}`, `(a+)+`), two ambiguous repetitions (`.*a.*b`), ...
    """
    items = _items(tree)
    choice = False  # seen the ambiguous repetition
    for i, item in enumerate(items):
        if _fixed(item):
            continue
        if not (isinstance(item, _Repeat) and _single(item.sub)) or choice:
            return False
        if i + 1 == len(items):
            continue
        repeated, following = _charset(item.sub), _first_chars(items[i + 1])
        if repeated is None or following is None or not _disjoint(repeated, following):
            choice = True
    return True


def _group_names_ok_for_re(tree: _Node) -> bool:
    """Whether Python's re keeps every group name (unique identifiers; Go also allows `1a`, and
    repeats, which only RE2 keeps as Go does)."""
    names: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _Capture):
            if node.name is not None:
                names.append(node.name)
            stack.append(node.sub)
        elif isinstance(node, _Concat):
            stack.extend(node.items)
        elif isinstance(node, _Alt):
            stack.extend(node.branches)
        elif isinstance(node, _Repeat):
            stack.append(node.sub)
    return all(n.isidentifier() for n in names) and len(set(names)) == len(names)


# RE2 syntax printer. Everything non-alphanumeric is spelled \x{...}: no escaping rules to get
# wrong, and no pattern text to re-encode. Folding, \b and \B are RE2's own (what Go does).
_RE2_ASSERTS = {"bot": "\\A", "eot": "\\z", "bol": "(?m:^)", "eol": "(?m:$)", "wb": "\\b", "nwb": "\\B"}


def _re2_char(cp: int) -> str:
    return chr(cp) if cp < 0x80 and chr(cp).isalnum() else f"\\x{{{cp:x}}}"


def _emit_re2(node: _Node, capture: bool) -> str:
    if isinstance(node, _Lit):
        s = "".join(_re2_char(ord(c)) for c in node.text)
        return f"(?i:{s})" if node.fold and _cased(node.text) else s
    if isinstance(node, _Class):
        ranges, negated = node.ranges, node.negated
        if not ranges:  # an empty class: the complement of everything
            ranges, negated = [(0, _MAX_RUNE)], not negated
        body = "".join(_re2_char(lo) if lo == hi else f"{_re2_char(lo)}-{_re2_char(hi)}" for lo, hi in ranges)
        s = f"[{'^' if negated else ''}{body}]"
        return f"(?i:{s})" if node.fold else s
    if isinstance(node, _Any):
        return "(?s:.)" if node.nl else "(?-s:.)"
    if isinstance(node, _Assert):
        return _RE2_ASSERTS[node.kind]
    if isinstance(node, _Concat):
        return "".join(
            f"(?:{_emit_re2(s, capture)})" if isinstance(s, _Alt) else _emit_re2(s, capture)
            for s in node.items
        )
    if isinstance(node, _Alt):
        return "|".join(_emit_re2(b, capture) for b in node.branches)
    if isinstance(node, _Capture):
        sub = _emit_re2(node.sub, capture)
        if not capture:
            return f"(?:{sub})"
        return f"(?P<{node.name}>{sub})" if node.name is not None else f"({sub})"
    lo, hi = node.min, node.max
    quant = f"{{{lo}}}" if hi == lo else f"{{{lo},{'' if hi is None else hi}}}"
    return f"(?:{_emit_re2(node.sub, capture)}){quant}{'' if node.greedy else '?'}"


def _re2_options(capture: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = not capture  # a match/no-match answer then takes RE2's DFA only
    return options


def _compile_re2(tree: _Node, capture: bool) -> Any:
    try:
        return re2.compile(_emit_re2(tree, capture), _re2_options(capture))
    except re2.error as e:  # e.g. a program over RE2's memory budget
        raise RegexSyntaxError(f"RE2 cannot compile it: {e}") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value: str) -> str:
    """`value` with each lone surrogate (which UTF-8, and so RE2, cannot hold) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", value)


def _utf8(value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        return _no_surrogates(value).encode()


_ANCHOR_BOTH = re2._re2.RE2.Anchor.ANCHOR_BOTH


def _full_matcher(tree: _Node) -> tuple[Callable[[str], Any], str]:
    """A fullmatch test for the whole pattern and the engine it runs on ("re" or "re2")."""
    if _linear_on_backtracking(tree):
        return re.compile(_emit(tree, False), re.DOTALL).fullmatch, "re"
    regexp = _compile_re2(tree, capture=False)._regexp  # the low-level RE2: no per-call wrapper

    def match(value: str) -> bool:
        data = _utf8(value)
        return bool(regexp.Match(_ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0)

    return match, "re2"


class RegexMatch(Protocol):
    """What a successful match gives: groups by number or name (IndexError for unknown ones)."""

    def group(self, group: int | str, /) -> str | Any: ...


@dataclass(frozen=True, slots=True)
class Regex:
    """A compiled RE2 pattern with capture groups, for label_replace and relabelling; build it
    with `compile_regex`. `engine` says what runs `fullmatch`; `search` always runs on RE2 (an
    unanchored search on a backtracking engine retries every start: quadratic even for `a*b`)."""

    pattern: str
    engine: str  # "re" or "re2"
    _full: Callable[[str], RegexMatch | None]
    _re2: Any

    def fullmatch(self, value: str) -> RegexMatch | None:
        """The match of the whole of `value`, or None."""
        return self._full(value)

    def search(self, value: str, pos: int = 0) -> RegexMatch | None:
        """The leftmost match in `value` at or after `pos` (`^` and `\\b` still see the text
        before `pos`, as Go's regexp does when it resumes a search), or None."""
        try:
            return self._re2.search(value, pos)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            return self._re2.search(_no_surrogates(value), pos)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str, *, dot_nl: bool = False) -> Regex:
    """Compile an RE2 pattern with its capture groups, matching in linear time whatever the value.

    `dot_nl` starts with flag s on (PromQL matchers); relabelling, label_replace and the probes'
    body expectations leave it off, as Prometheus anchors them as `^(?:re)$`. Callers `fullmatch`
    where Prometheus anchors and `search` where it does not; values (scraped labels, probed bodies)
    are not ours to trust, hence linear time. Raises RegexSyntaxError for what RE2 rejects. Cached.
    """
    tree = _parse(pattern, dot_nl)
    linear = _compile_re2(tree, capture=True)
    if _linear_on_backtracking(tree) and _group_names_ok_for_re(tree):
        with contextlib.suppress(re.error):  # should not happen; RE2 then, which always can
            return Regex(pattern, "re", re.compile(_emit(tree, True), re.DOTALL).fullmatch, linear)

    def full(value: str) -> RegexMatch | None:
        try:
            return linear.fullmatch(value)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            return linear.fullmatch(_no_surrogates(value))  # type: ignore[no-any-return]

    return Regex(pattern, "re2", full, linear)


@dataclass(frozen=True, slots=True)
class AnchoredPattern:
    """A pattern compiled for a label matcher (anchored at both ends, flag s): the cheapest test
    that decides it, and what is known about the strings it matches."""

    fn: Callable[[str], Any]  # truthy when the pattern matches the whole string
    strings: frozenset[str] | None  # exactly the strings matched, when that is a small set
    all_non_empty: bool  # matches every non-empty string
    engine: str = "shortcut"  # what runs when no shortcut decides: "re", "re2", or nothing


def _true(_: str) -> bool:
    return True


@functools.lru_cache(maxsize=4096)
def compile_anchored(pattern: str) -> AnchoredPattern:
    """Compile an RE2 pattern for anchored matching with flag s, picking the cheapest test.

    Raises RegexSyntaxError for what RE2 rejects. Cached: matchers repeat across queries.
    """
    tree = _parse(pattern, dot_nl=True)
    node = _simplify(tree, True, True)
    strings = _strings(node, fold=False)
    if strings is not None:
        fs = frozenset(strings)
        return AnchoredPattern(next(iter(fs)).__eq__ if len(fs) == 1 else fs.__contains__, fs, False)
    if _is_dot_repeat(node, 0):
        return AnchoredPattern(_true, None, True)
    if _is_dot_repeat(node, 1):
        return AnchoredPattern(bool, None, True)  # bool(s): non-empty
    full, engine = _full_matcher(tree)

    folded = _strings(node, fold=True)
    if folded is not None:
        lowered = frozenset(folded)
        # ASCII values can be folded with lower(); others may match through Unicode folding
        # (K matches KELVIN SIGN), which only the regex knows.
        return AnchoredPattern(
            lambda v: v.lower() in lowered if v.isascii() else bool(full(v)), None, False, engine
        )

    items = node.items if isinstance(node, _Concat) else [node]
    prefix = _case_sensitive_lit(items[0]) or ""
    suffix = (_case_sensitive_lit(items[-1]) if len(items) > 1 else None) or ""
    middle = items[bool(prefix) : len(items) - bool(suffix)]
    n = len(prefix) + len(suffix)

    def affixed(v: str) -> bool:
        return v.startswith(prefix) and v.endswith(suffix)

    fn: Callable[[str], Any]
    uses_full = False
    if len(middle) == 1 and _is_dot_repeat(middle[0], 0):  # foo.*, .*foo, foo.*bar
        if not suffix:
            fn = lambda v: v.startswith(prefix)  # noqa: E731
        elif not prefix:
            fn = lambda v: v.endswith(suffix)  # noqa: E731
        else:
            fn = lambda v: len(v) >= n and affixed(v)  # noqa: E731
    elif len(middle) == 1 and _is_dot_repeat(middle[0], 1):  # foo.+, .+foo
        fn = lambda v: len(v) > n and affixed(v)  # noqa: E731
    elif (
        len(middle) == 3
        and _is_dot_repeat(middle[0], 0)
        and _is_dot_repeat(middle[2], 0)
        and (inner := _case_sensitive_lit(middle[1])) is not None
    ):  # .*foo.* (and with literal ends)
        if not n:
            fn = lambda v: inner in v  # noqa: E731
        else:
            m = n + len(inner)
            fn = lambda v: len(v) >= m and affixed(v) and inner in v[len(prefix) : len(v) - len(suffix)]  # noqa: E731
    elif n:
        fn = lambda v: affixed(v) and bool(full(v))  # noqa: E731  # cheap reject first
        uses_full = True
    else:
        fn, uses_full = full, True
    return AnchoredPattern(fn, None, False, engine if uses_full else "shortcut")

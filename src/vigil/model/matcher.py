"""PromQL label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus 3 semantics.

Users write regexes in RE2 syntax (what Prometheus accepts), fully anchored, with `.` matching
newlines. We run them on Python's `re`, which is an order of magnitude faster per match from Python
than the google-re2 binding. `translate` parses an RE2 pattern into a small syntax tree, rejecting
what RE2 rejects (lookaround, backreferences, possessive quantifiers, ...), and prints an equivalent
Python pattern; the same tree drives the shortcuts Prometheus also takes: `.*`, `.+`, literal sets,
prefix/suffix/substring checks.

Divergences from Go's regexp (what Prometheus uses), all deliberate:
- Unicode classes: `\\p{...}` is translated for the general categories (`\\pL`, `\\p{Lu}`, also by
  their long names as recent Go accepts: `\\p{Letter}`), `Any`, `Assigned` and `ASCII`, from
  Python's `unicodedata` (whose Unicode version may lag Go's). Scripts such as `\\p{Greek}` are
  rejected with an error: Python has no script data to translate them from.
- Nesting is limited to 100 groups (Go allows 1000): our parser and Python's are recursive.
- Go rejects regexes that compile to over ~3 million instructions; we do not check that.

Patterns on which a backtracking engine could take exponential or high-polynomial time (nested
repetition such as `(a+)+`, many `.*`) run on google-re2 instead: linear time, slower per match.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from vigil.model.labels import is_valid_label_name

__all__ = ["InvalidMatcherError", "MatchType", "Matcher", "RegexSyntaxError", "translate"]


class MatchType(enum.Enum):
    EQ = "="
    NEQ = "!="
    RE = "=~"
    NRE = "!~"


class InvalidMatcherError(ValueError):
    """A matcher could not be built, e.g. its regex is not valid RE2 syntax."""


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


def _backtracking_risk(node: _Node, in_repeat: bool = False) -> int:
    """How dangerous `node` is for a backtracking engine: 1000 for nested repetition (exponential
    time on some inputs, e.g. `(a+)+b`), otherwise the number of unbounded repetitions (the degree
    of the worst-case polynomial, e.g. `.*a.*a.*a.*b`)."""
    if isinstance(node, _Repeat):
        repeats = node.max is None or node.max > 1
        if in_repeat and repeats:
            return 1000
        return (node.max is None) + _backtracking_risk(node.sub, in_repeat or repeats)
    if isinstance(node, _Alt):
        if in_repeat:
            return 1000
        return max(_backtracking_risk(b, in_repeat) for b in node.branches)
    if isinstance(node, _Concat):
        return sum(_backtracking_risk(s, in_repeat) for s in node.items)
    if isinstance(node, _Capture):
        return _backtracking_risk(node.sub, in_repeat)
    return 0


_MAX_RISK = 3


def _full_matcher(pattern: str, tree: _Node) -> Callable[[str], Any]:
    """A fullmatch function for the whole pattern: Python's re, or RE2 when backtracking could
    take exponential or high-polynomial time (label values and patterns come from users)."""
    py = re.compile(_emit(tree, False), re.DOTALL).fullmatch
    if _backtracking_risk(tree) <= _MAX_RISK:
        return py
    try:
        import re2

        options = re2.Options()
        options.log_errors = False
        options.dot_nl = True
        linear = re2.compile(pattern, options).fullmatch
    except Exception:  # RE2 missing, or a spelling only Go accepts: backtracking it is
        return py

    def match(value: str) -> Any:
        try:
            return linear(value)
        except UnicodeEncodeError:  # lone surrogates cannot go to RE2 as UTF-8
            return py(value)

    return match


@dataclass(frozen=True, slots=True)
class _Compiled:
    fn: Callable[[str], Any]  # truthy when the pattern matches the whole string
    strings: frozenset[str] | None  # exactly the strings matched, when that is a small set
    all_non_empty: bool  # matches every non-empty string


def _true(_: str) -> bool:
    return True


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> _Compiled:
    """Compile an RE2 pattern for anchored matching with flag s, picking the cheapest test."""
    tree = _parse(pattern, dot_nl=True)
    node = _simplify(tree, True, True)
    strings = _strings(node, fold=False)
    if strings is not None:
        fs = frozenset(strings)
        return _Compiled(next(iter(fs)).__eq__ if len(fs) == 1 else fs.__contains__, fs, False)
    if _is_dot_repeat(node, 0):
        return _Compiled(_true, None, True)
    if _is_dot_repeat(node, 1):
        return _Compiled(bool, None, True)  # bool(s): non-empty
    full = _full_matcher(pattern, tree)

    folded = _strings(node, fold=True)
    if folded is not None:
        lowered = frozenset(folded)
        # ASCII values can be folded with lower(); others may match through Unicode folding
        # (K matches KELVIN SIGN), which only the regex knows.
        return _Compiled(lambda v: v.lower() in lowered if v.isascii() else full(v) is not None, None, False)

    items = node.items if isinstance(node, _Concat) else [node]
    prefix = _case_sensitive_lit(items[0]) or ""
    suffix = (_case_sensitive_lit(items[-1]) if len(items) > 1 else None) or ""
    middle = items[bool(prefix) : len(items) - bool(suffix)]
    n = len(prefix) + len(suffix)

    def affixed(v: str) -> bool:
        return v.startswith(prefix) and v.endswith(suffix)

    fn: Callable[[str], Any]
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
        fn = lambda v: affixed(v) and full(v) is not None  # noqa: E731  # cheap reject first
    else:
        fn = full
    return _Compiled(fn, None, False)


# ---------------------------------------------------------------------------------------------
# Matcher


def _quote(s: str) -> str:
    """Quote a string the way PromQL prints it (Go's strconv.Quote, which PromQL parses back)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        else:
            cp = ord(ch)
            out.append(f"\\x{cp:02x}" if cp < 0x80 else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Matcher:
    """A label matcher such as `job=~"api|web"`. Hashable; compares by (type, name, value).

    `matches("")` answers for a series that lacks the label, as in Prometheus: `{foo=""}` and
    `{foo!~"x"}` select series without `foo`.
    """

    type: MatchType
    name: str
    value: str
    _fn: Callable[[str], Any] = field(init=False, repr=False, compare=False)
    _matches_empty: bool = field(init=False, repr=False, compare=False)
    _pattern_set: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _all_non_empty: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mtype = MatchType(self.type)  # also accepts "=~" and friends
        if mtype is not self.type:
            object.__setattr__(self, "type", mtype)
        if mtype in (MatchType.EQ, MatchType.NEQ):
            compiled = _Compiled(self.value.__eq__, frozenset((self.value,)), False)
        else:
            try:
                compiled = _compile(self.value)
            except RegexSyntaxError as e:
                raise InvalidMatcherError(f"invalid regular expression in matcher {self}: {e}") from None
        fn = compiled.fn
        negated = mtype in (MatchType.NEQ, MatchType.NRE)
        strings = compiled.strings
        if negated:
            if mtype is MatchType.NEQ:
                fn = self.value.__ne__
            elif strings is not None:
                fn = lambda v: v not in strings  # noqa: E731
            else:
                pos = fn
                fn = lambda v: not pos(v)  # noqa: E731
            all_non_empty = strings is not None and strings <= {""}
        else:
            all_non_empty = compiled.all_non_empty
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_matches_empty", bool(fn("")))
        object.__setattr__(self, "_pattern_set", strings)
        object.__setattr__(self, "_all_non_empty", all_non_empty)

    @classmethod
    def eq(cls, name: str, value: str) -> Matcher:
        return cls(MatchType.EQ, name, value)

    @classmethod
    def neq(cls, name: str, value: str) -> Matcher:
        return cls(MatchType.NEQ, name, value)

    @classmethod
    def re(cls, name: str, value: str) -> Matcher:
        return cls(MatchType.RE, name, value)

    @classmethod
    def nre(cls, name: str, value: str) -> Matcher:
        return cls(MatchType.NRE, name, value)

    def matches(self, value: str) -> bool:
        """Whether a label value matches; "" stands for the label being absent."""
        return bool(self._fn(value))

    def filter(self, values: Iterable[str]) -> list[str]:
        """The matching values, in order; much cheaper than calling `matches` for each."""
        return list(filter(self._fn, values))

    @property
    def matches_empty(self) -> bool:
        """Whether a series without this label matches."""
        return self._matches_empty

    @property
    def negated(self) -> bool:
        return self.type in (MatchType.NEQ, MatchType.NRE)

    @property
    def pattern_set(self) -> frozenset[str] | None:
        """The exact strings the value or regex matches, when it is a small literal set (`a|b`).

        The matcher matches v iff `(v in pattern_set) != negated`; indexes use this to look the
        values up instead of scanning them all.
        """
        return self._pattern_set

    @property
    def matches_all_non_empty(self) -> bool:
        """Whether every non-empty value matches (`=~".+"`, `=~".*"`, `!=""`); False if unknown."""
        return self._all_non_empty

    def __str__(self) -> str:
        name = self.name if is_valid_label_name(self.name) else _quote(self.name)
        return f"{name}{self.type.value}{_quote(self.value)}"

    def __reduce__(self) -> tuple[Any, ...]:
        # The compiled state holds closures, which do not pickle; rebuild it instead.
        return (type(self), (self.type, self.name, self.value))

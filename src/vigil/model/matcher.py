"""PromQL label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus 3 semantics.

A matcher's regex is fully anchored, in RE2 syntax, with `.` matching newlines; how it is parsed
and which engine runs it (a string shortcut, Python's `re` for shapes proven linear, or RE2) is
`vigil.model.regex`. This module is what selectors, indexes and the event store hold: the match
type, the test, and what indexes may use instead of calling it (the literal set, "matches every
non-empty value").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.model.labels import is_valid_label_name
from vigil.model.regex import AnchoredPattern, RegexSyntaxError, compile_anchored

__all__ = ["InvalidMatcherError", "MatchType", "Matcher"]


class MatchType(enum.Enum):
    EQ = "="
    NEQ = "!="
    RE = "=~"
    NRE = "!~"


class InvalidMatcherError(ValueError):
    """A matcher could not be built, e.g. its regex is not valid RE2 syntax."""


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
    _engine: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mtype = MatchType(self.type)  # also accepts "=~" and friends
        if mtype is not self.type:
            object.__setattr__(self, "type", mtype)
        if mtype in (MatchType.EQ, MatchType.NEQ):
            compiled = AnchoredPattern(self.value.__eq__, frozenset((self.value,)), False)
        else:
            try:
                compiled = compile_anchored(self.value)
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
        object.__setattr__(self, "_engine", compiled.engine)

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
    def engine(self) -> str:
        """What decides the values no shortcut does: "re" (a shape proven linear on Python's re),
        "re2", or "shortcut" (string tests only: sets, prefixes, suffixes, ...)."""
        return self._engine

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

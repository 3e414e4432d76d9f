"""Hostile exposition text for the parser's linear-time tests, run in a child process by
tests/model/test_textparse.py (this module imports only the parser, so the child starts quickly).

The inputs are hundreds of kB: a quadratic or backtracking regression would take hours on them, while
the linear parser needs a fraction of a second, so a generous deadline tells the two apart on any
machine, loaded or not, without measuring time.
"""

from __future__ import annotations

import contextlib

from vigil.model.textparse import TextParseError, parse_text

D = 1_700_000_000_000

LINES = {
    "unclosed-pairs": "foo{" + 'a="b",' * 100_000,
    "blanks": "foo{" + " " * 500_000 + "1",
    "long-number": "foo " + "1" * 500_000 + "x",
    "long-name": "f" * 500_000 + "{",
    "backslashes": 'foo{a="' + "\\\\" * 250_000,
}


def parse_pathological() -> list[str]:
    """Parses each of `LINES`; returns the names of those that were (wrongly) accepted."""
    accepted = []
    for name, line in LINES.items():
        try:
            parse_text(line + "\n", D)
        except TextParseError:
            continue
        accepted.append(name)
    return accepted


def parse_repeated_fragments(length: int) -> int:
    """Parses every prefix x fragment*N x suffix x EOF combination of about `length` characters;
    returns how many were parsed (only TextParseError may be raised)."""
    prefixes = ["", "foo", "foo{", "foo ", "foo 1 ", 'foo{a="', "# HELP foo ", "foo 1 # {"]
    fragments = ["a", "1", "1.", "e1", " ", 'a="', 'a="b",', 'a="b", ', "\\", '"', ",", "#", " 1"]
    n = 0
    for prefix in prefixes:
        for fragment in fragments:
            for suffix in ["", "x", " 1", "}"]:
                for eof in ("", "\n# EOF"):
                    data = prefix + fragment * (length // len(fragment)) + suffix + eof + "\n"
                    with contextlib.suppress(TextParseError):
                        parse_text(data, D)
                    n += 1
    return n

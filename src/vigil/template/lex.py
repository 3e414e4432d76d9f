"""The lexer of Go's text/template syntax: template text in, a list of tokens out.

Rules and annotations are written for Prometheus and Alertmanager, which run Go's text/template; the
same text has to split into the same pieces here, including the corners users lean on: `{{-`/`-}}`
trim markers (a dash *and* a space), comments that must touch their delimiters, newlines inside
actions, raw strings, char constants and Go number syntax (hex, octal, binary, underscores).

The lexer works on the whole text at once (no goroutine/channel as in Go) and is linear in its
length. Positions are character offsets into the text, lines are 1-based, as Go reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

__all__ = ["KEYWORDS", "Kind", "LexError", "Token", "lex"]


class Kind(Enum):
    TEXT = auto()
    LEFT = auto()  # {{
    RIGHT = auto()  # }}
    SPACE = auto()
    IDENT = auto()
    KEYWORD = auto()
    BOOL = auto()
    FIELD = auto()  # .Name
    VARIABLE = auto()  # $name, $
    DOT = auto()  # .
    NUMBER = auto()
    CHAR = auto()
    STRING = auto()
    RAW = auto()
    PIPE = auto()
    LPAREN = auto()
    RPAREN = auto()
    DECLARE = auto()  # :=
    ASSIGN = auto()  # =
    COMMA = auto()
    EOF = auto()


KEYWORDS = frozenset(
    {"block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"}
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    pos: int
    line: int

    def describe(self) -> str:
        """The token as Go's parser quotes it in errors."""
        if self.kind is Kind.EOF:
            return "EOF"
        if self.kind is Kind.KEYWORD:
            return f"<{self.text}>"
        if self.kind is Kind.SPACE:
            return "space"
        if self.kind is Kind.TEXT:
            return repr_go(self.text)
        return repr_go(self.text) if len(self.text) <= 10 else f'"{self.text[:10]}"...'


def repr_go(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class LexError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


_SPACE = " \t\r\n"
_TRIM_SPACE = " \t\r\n"
LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdigit()


def lex(text: str) -> list[Token]:
    """Split `text` into tokens; raises LexError (with the line) on what Go's lexer rejects."""
    toks: list[Token] = []
    n = len(text)
    pos = 0
    line = 1

    def emit(kind: Kind, start: int, end: int) -> None:
        toks.append(Token(kind, text[start:end], start, line))

    while pos < n:
        # Text up to the next left delimiter.
        at = text.find(LEFT_DELIM, pos)
        if at < 0:
            emit(Kind.TEXT, pos, n)
            line += text.count("\n", pos, n)
            pos = n
            break
        trim_left = at + 3 < n and text[at + 2] == "-" and text[at + 3] in _SPACE
        end_text = at
        if trim_left:
            end_text = len(text[pos:at].rstrip(_TRIM_SPACE)) + pos
        if end_text > pos:
            emit(Kind.TEXT, pos, end_text)
        line += text.count("\n", pos, at)
        pos = at
        start_line = line
        emit(Kind.LEFT, at, at + 2)
        pos = at + 2
        if trim_left:
            pos += 2  # the dash and the space after it
        # A comment: it must start right after the delimiter (and trim marker).
        if text.startswith("/*", pos):
            close = text.find("*/", pos + 2)
            if close < 0:
                raise LexError("unclosed comment", start_line)
            line += text.count("\n", pos, close)
            pos = close + 2
            trim_right = False
            if text.startswith(" -" + RIGHT_DELIM, pos) or (
                pos + 1 < n and text[pos] in _SPACE and text.startswith("-" + RIGHT_DELIM, pos + 1)
            ):
                trim_right = True
                pos += 2
            if not text.startswith(RIGHT_DELIM, pos):
                raise LexError("comment ends before closing delimiter", line)
            toks.pop()  # comments leave no tokens behind
            pos += 2
            if trim_right:
                pos = _skip_space(text, pos)
                line = start_line + text.count("\n", at, pos)
            continue
        pos, line = _lex_action(text, pos, line, toks)
    toks.append(Token(Kind.EOF, "", n, line))
    return toks


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _TRIM_SPACE:
        pos += 1
    return pos


def _lex_action(text: str, pos: int, line: int, toks: list[Token]) -> tuple[int, int]:
    """Lex inside `{{ }}` from `pos`; returns the position after the right delimiter (and trim)."""
    n = len(text)
    depth = 0

    def emit(kind: Kind, start: int, end: int) -> None:
        toks.append(Token(kind, text[start:end], start, line))

    while True:
        if pos >= n:
            raise LexError("unclosed action", line)
        ch = text[pos]
        # Right delimiter, with or without a trim marker.
        if ch in _SPACE and text.startswith("-" + RIGHT_DELIM, pos + 1):
            if depth:
                raise LexError("unclosed left paren", line)
            emit(Kind.RIGHT, pos + 2, pos + 4)
            line += text.count("\n", pos, pos + 1)
            end = _skip_space(text, pos + 4)
            line += text.count("\n", pos + 4, end)
            return end, line
        if text.startswith(RIGHT_DELIM, pos):
            if depth:
                raise LexError("unclosed left paren", line)
            emit(Kind.RIGHT, pos, pos + 2)
            return pos + 2, line
        if ch in _SPACE:
            start = pos
            while pos < n and text[pos] in _SPACE and not text.startswith("-" + RIGHT_DELIM, pos + 1):
                pos += 1
            if pos == start:  # the space before " -}}"
                continue
            emit(Kind.SPACE, start, pos)
            line += text.count("\n", start, pos)
            continue
        if ch == "=":
            emit(Kind.ASSIGN, pos, pos + 1)
            pos += 1
        elif ch == ":":
            if not text.startswith(":=", pos):
                raise LexError("expected :=", line)
            emit(Kind.DECLARE, pos, pos + 2)
            pos += 2
        elif ch == "|":
            emit(Kind.PIPE, pos, pos + 1)
            pos += 1
        elif ch == ",":
            emit(Kind.COMMA, pos, pos + 1)
            pos += 1
        elif ch == '"':
            end = pos + 1
            while True:
                if end >= n or text[end] == "\n":
                    raise LexError("unterminated quoted string", line)
                if text[end] == "\\":
                    end += 2
                    continue
                if text[end] == '"':
                    break
                end += 1
            emit(Kind.STRING, pos, end + 1)
            pos = end + 1
        elif ch == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise LexError("unterminated raw quoted string", line)
            emit(Kind.RAW, pos, end + 1)
            line += text.count("\n", pos, end)
            pos = end + 1
        elif ch == "'":
            end = pos + 1
            while True:
                if end >= n or text[end] == "\n":
                    raise LexError("unterminated character constant", line)
                if text[end] == "\\":
                    end += 2
                    continue
                if text[end] == "'":
                    break
                end += 1
            emit(Kind.CHAR, pos, end + 1)
            pos = end + 1
        elif ch == "$":
            end = pos + 1
            while end < n and _is_alnum(text[end]):
                end += 1
            emit(Kind.VARIABLE, pos, end)
            pos = _after_word(text, end, line)
        elif ch == ".":
            if pos + 1 < n and text[pos + 1].isdigit():
                pos = _lex_number(text, pos, line, emit)
                continue
            end = pos + 1
            while end < n and _is_alnum(text[end]):
                end += 1
            emit(Kind.DOT if end == pos + 1 else Kind.FIELD, pos, end)
            pos = _after_word(text, end, line)
        elif ch in "+-" or ch.isdigit():
            pos = _lex_number(text, pos, line, emit)
        elif _is_alnum(ch):
            end = pos
            while end < n and _is_alnum(text[end]):
                end += 1
            word = text[pos:end]
            if word in KEYWORDS:
                emit(Kind.KEYWORD, pos, end)
            elif word in ("true", "false"):
                emit(Kind.BOOL, pos, end)
            else:
                emit(Kind.IDENT, pos, end)
            pos = _after_word(text, end, line)
        elif ch == "(":
            depth += 1
            emit(Kind.LPAREN, pos, pos + 1)
            pos += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise LexError("unexpected right paren", line)
            emit(Kind.RPAREN, pos, pos + 1)
            pos += 1
        else:
            raise LexError(f"unrecognized character in action: {_go_u(ch)}", line)


def _go_u(ch: str) -> str:
    cp = ord(ch)
    return f"U+{cp:04X} '{ch}'" if ch.isprintable() else f"U+{cp:04X}"


def _after_word(text: str, end: int, line: int) -> int:
    """Go requires a word to be followed by a terminator (space, `.`, `,`, `|`, `:`, `)`, `(`, `=`, `}}`)."""
    if end >= len(text):
        return end
    ch = text[end]
    if ch in " \t\r\n.,|:)(=" or text.startswith(RIGHT_DELIM, end):
        return end
    raise LexError(f"bad character {_go_u(ch)}", line)


def _lex_number(text: str, pos: int, line: int, emit: Callable[[Kind, int, int], None]) -> int:
    n = len(text)
    start = pos
    end = pos
    if end < n and text[end] in "+-":
        end += 1
    digits = "0123456789_"
    if text.startswith(("0x", "0X"), end):
        end += 2
        digits = "0123456789abcdefABCDEF_"
    elif text.startswith(("0o", "0O"), end):
        end += 2
        digits = "01234567_"
    elif text.startswith(("0b", "0B"), end):
        end += 2
        digits = "01_"
    while end < n and text[end] in digits:
        end += 1
    if end < n and text[end] == ".":
        end += 1
        while end < n and text[end] in digits:
            end += 1
    exp = "pP" if digits.startswith("0123456789a") else "eE"
    if digits != "01_" and digits != "01234567_" and end < n and text[end] in exp:
        end += 1
        if end < n and text[end] in "+-":
            end += 1
        while end < n and text[end] in "0123456789_":
            end += 1
    if end < n and text[end] == "i":
        end += 1
    if end < n and _is_alnum(text[end]):
        raise LexError(f"bad number syntax: {text[start : end + 1]!r}".replace("'", '"'), line)
    emit(Kind.NUMBER, start, end)
    return end

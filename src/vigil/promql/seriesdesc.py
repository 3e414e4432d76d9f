"""Prometheus' series description notation: `metric{a="b"} 1+2x3 _ stale {{schema:0 sum:1}}`.

The notation in which PromQL conformance tests (`load` blocks) and promtool's rule unit tests
(`input_series`) write their input data. Prometheus parses it with its PromQL grammar
(promql/parser, `ParseSeriesDesc`); this module follows that grammar so a test file means the same
samples here as there:

    a              one value (Go number syntax: `1e3`, `.5`, `010` is octal, `Inf`, `NaN`)
    stale          a stale marker (the NaN with bits 0x7FF0000000000002)
    _              an omitted slot: no sample at that step
    axn            n+1 copies of a
    a+bxn, a-bxn   n+1 values from a stepping by b (by repeated addition, as Go does)
    _xn            n omitted slots
    {{...}}        a native histogram literal, recognised and kept as text (Vigil stores floats)

Pure functions only: the callers decide what the values mean (sample i at start + i*step).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from vigil.model.labels import METRIC_NAME, Labels

__all__ = [
    "STALE_NAN",
    "STALE_NAN_BITS",
    "Histogram",
    "SeqValue",
    "SeriesDescError",
    "go_parse_number",
    "go_unquote",
    "is_stale",
    "parse_metric",
    "parse_metric_prefix",
    "parse_series",
    "parse_values",
]

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

_HISTOGRAM_KEYS = frozenset(
    {
        *("schema", "sum", "count", "z_bucket", "z_bucket_w", "buckets", "offset", "n_buckets"),
        *("n_offset", "counter_reset_hint", "custom_values"),
    }
)


class SeriesDescError(ValueError):
    """A series description (or one of its parts) does not follow the notation."""


def is_stale(v: float) -> bool:
    """Whether `v` is Prometheus' stale marker (a NaN, but not every NaN is one)."""
    return struct.pack("<d", v) == struct.pack("<Q", STALE_NAN_BITS)


_GO_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)")
_GO_FLOAT_CHARS = re.compile(r"[0-9a-zA-Z_.+-]+")


def go_parse_number(s: str) -> float:
    """`strconv.ParseInt(s, 0, 64)`, falling back to `strconv.ParseFloat(s, 64)` (as Prometheus does).

    ParseInt with base 0 reads `0x1f`, `0o17`, `0b101` and, unlike Python, `017` as octal.
    """
    if _GO_INT.fullmatch(s) and "__" not in s and not s.rstrip("_").endswith("_"):
        body = s.lstrip("+-").replace("_", "")
        sign = -1 if s.startswith("-") else 1
        legacy_octal = len(body) > 1 and body[0] == "0" and body[1].isdigit()
        n = sign * int(body, 8 if legacy_octal else 0)
        if -(2**63) <= n < 2**63:
            return float(n)
    if not _GO_FLOAT_CHARS.fullmatch(s):
        raise SeriesDescError(f"error parsing number: {s!r}")
    try:
        return float(s)
    except ValueError:
        try:
            return float.fromhex(s)  # Go accepts hex floats such as 0x1p-2
        except ValueError:
            raise SeriesDescError(f"error parsing number: {s!r}") from None


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def go_unquote(s: str) -> str:
    """Prometheus' strutil.Unquote: "..." and '...' with Go escapes, `...` raw.

    `\\x..` and octal escapes produce bytes; invalid UTF-8 survives as surrogate escapes.
    """
    if len(s) < 2 or s[0] != s[-1] or s[0] not in "\"'`":
        raise SeriesDescError(f"invalid quoted string {s!r}")
    quote, body = s[0], s[1:-1]
    if quote == "`":
        if "`" in body:
            raise SeriesDescError(f"invalid quoted string {s!r}")
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote or c == "\n":
            raise SeriesDescError(f"invalid quoted string {s!r}")
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        if i + 1 >= len(body):
            raise SeriesDescError(f"invalid escape in {s!r}")
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e == quote:
            out += e.encode()
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if not re.fullmatch(r"[0-7]{3}", digits) or int(digits, 8) > 255:
                raise SeriesDescError(f"invalid octal escape in {s!r}")
            out.append(int(digits, 8))
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + n]
            if not re.fullmatch(f"[0-9a-fA-F]{{{n}}}", digits):
                raise SeriesDescError(f"invalid \\{e} escape in {s!r}")
            i += n
            if e == "x":
                out.append(int(digits, 16))
            else:
                out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
        else:
            raise SeriesDescError(f"invalid escape \\{e} in {s!r}")
    return out.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Histogram:
    """A `{{...}}` native-histogram literal, kept as text: Vigil stores floats only."""

    text: str


SeqValue = float | Histogram | None  # None: an omitted slot (`_`)


def _is_alpha(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_alnum(c: str) -> bool:
    return _is_alpha(c) or ("0" <= c <= "9")


_METRIC_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_IDENT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`')
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]*)?")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def parse_metric_prefix(text: str) -> tuple[Labels, int]:
    """The `metric{labels}` part at the start of `text`; returns the labels and the end offset."""
    pairs: dict[str, str] = {}
    name = None
    pos = 0
    m = _METRIC_IDENT.match(text)
    if m:
        name, pos = m.group(), m.end()
    if pos < len(text) and text[pos] == "{":
        pos = _skip_ws(text, pos + 1)
        while pos < len(text) and text[pos] != "}":
            sm = _STRING.match(text, pos)
            im = _LABEL_IDENT.match(text, pos)
            if sm:
                key, pos = go_unquote(sm.group()), sm.end()
            elif im:
                key, pos = im.group(), im.end()
            else:
                raise SeriesDescError(f"expected a label name at {pos}: {text!r}")
            pos = _skip_ws(text, pos)
            if pos < len(text) and text[pos] == "=":
                vm = _STRING.match(text, _skip_ws(text, pos + 1))
                if not vm:
                    raise SeriesDescError(f"expected a quoted label value at {pos}: {text!r}")
                pairs[key] = go_unquote(vm.group())
                pos = vm.end()
            elif sm:  # {"metric.name", ...}: a quoted metric name
                pairs[METRIC_NAME] = key
            else:
                raise SeriesDescError(f"expected '=' after label name {key!r}: {text!r}")
            pos = _skip_ws(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
            elif pos < len(text) and text[pos] != "}":
                raise SeriesDescError(f"expected ',' or '}}' in label set at {pos}: {text!r}")
        if pos >= len(text):
            raise SeriesDescError(f"unterminated label set: {text!r}")
        pos += 1
    elif name is None:
        raise SeriesDescError(f"expected a metric name or a label set: {text!r}")
    if name is not None:
        pairs[METRIC_NAME] = name
    return Labels.from_dict(pairs), pos


def _lex_values(text: str) -> list[tuple[str, str]]:
    """Tokens of a value sequence, as the PromQL lexer's lexValueSequence emits them."""
    toks: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            j = i
            while j < n and text[j] in " \t":
                j += 1
            toks.append(("SPACE", text[i:j]))
            i = j
        elif c in "+-x_":
            toks.append(({"+": "ADD", "-": "SUB", "x": "TIMES", "_": "BLANK"}[c], c))
            i += 1
        elif c == "{" and text.startswith("{{", i):
            j = text.find("}}", i + 2)
            if j < 0:
                raise SeriesDescError(f"unterminated histogram {text[i:]!r}")
            toks.append(("HIST", text[i : j + 2]))
            i = j + 2
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            j = m.end()
            # No hexadecimal in series descriptions: `0x5` is 0 repeated; `x` may follow a number.
            if j < n and text[j] != "x" and _is_alnum(text[j]):
                raise SeriesDescError(f"bad number syntax at {text[i:]!r}")
            toks.append(("NUMBER", text[i:j]))
            i = j
        elif _is_alpha(c):
            j = i
            while j < n and (_is_alnum(text[j]) or text[j] == ":"):
                j += 1
            word = text[i:j]
            toks.append(("NUMBER" if word.lower() in ("inf", "nan") else "IDENT", word))
            i = j
        else:
            raise SeriesDescError(f"unexpected character in series sequence: {c!r} in {text!r}")
    return toks


def _check_histogram(text: str) -> Histogram:
    inner = text[2:-2]
    for key in re.findall(r"([A-Za-z_]+)\s*:", inner):
        if key not in _HISTOGRAM_KEYS:
            raise SeriesDescError(f"unknown key {key!r} in histogram {text!r}")
    return Histogram(text)


def parse_values(text: str) -> list[SeqValue]:
    """Expand a value sequence (generated_parser.y `series_item`).

    `a`, `stale`, `_`; `axn` = n+1 copies; `a+bxn` / `a-bxn` = n+1 values stepping by ±b (by repeated
    addition, as Go does); `_xn` = n omitted slots; `{{h}}`, `{{h}}xn`, `{{h1}}+{{h2}}xn`.
    """
    toks = _lex_values(text)
    pos = 0

    def peek(k: int = 0) -> str | None:
        return toks[pos + k][0] if pos + k < len(toks) else None

    def take(kind: str) -> str:
        nonlocal pos
        if peek() != kind:
            got = toks[pos][1] if pos < len(toks) else "end of line"
            raise SeriesDescError(f"expected {kind} but got {got!r} in series values {text!r}")
        pos += 1
        return toks[pos - 1][1]

    def uint() -> int:
        s = take("NUMBER")
        if not s.isdigit():
            raise SeriesDescError(f"invalid repetition in series values: {s!r}")
        return int(s)

    def number() -> float:
        if peek() in ("ADD", "SUB"):
            sign = -1.0 if take(toks[pos][0]) == "-" else 1.0
            return sign * go_parse_number(take("NUMBER"))
        return go_parse_number(take("NUMBER"))

    out: list[SeqValue] = []
    while pos < len(toks):
        kind = peek()
        if kind == "BLANK":
            take("BLANK")
            if peek() == "TIMES":
                take("TIMES")
                out.extend([None] * uint())
            else:
                out.append(None)
        elif kind == "HIST":
            h = _check_histogram(take("HIST"))
            if peek() == "TIMES":
                take("TIMES")
                out.extend([h] * (uint() + 1))
            elif peek() in ("ADD", "SUB") and peek(1) == "HIST":
                pos += 1
                _check_histogram(take("HIST"))
                take("TIMES")
                out.extend([h] * (uint() + 1))  # the sums themselves are never needed here
            else:
                out.append(h)
        else:
            if kind == "IDENT":
                word = take("IDENT")
                if word != "stale":
                    raise SeriesDescError(f'unexpected {word!r} in series values, expected number or "stale"')
                value = STALE_NAN
            else:
                value = number()
            if peek() == "TIMES":
                take("TIMES")
                out.extend([value] * (uint() + 1))
            elif peek() in ("ADD", "SUB"):
                delta = number()
                take("TIMES")
                for _ in range(uint() + 1):
                    out.append(value)
                    value += delta
            else:
                out.append(value)
        if pos < len(toks):
            take("SPACE")
    return out


def parse_metric(text: str) -> Labels:
    """A whole `metric{labels}` text (Prometheus' `ParseMetric`, as promtool reads `exp_samples`)."""
    labels, pos = parse_metric_prefix(text.strip(" \t"))
    if pos != len(text.strip(" \t")):
        raise SeriesDescError(f"unexpected text after the metric in {text!r}")
    return labels


def parse_series(line: str) -> tuple[Labels, list[SeqValue]]:
    """A series description: labels and the expanded values."""
    labels, pos = parse_metric_prefix(line)
    rest = line[pos:]
    if rest and rest[0] not in " \t":
        raise SeriesDescError(f"expected whitespace after the metric in {line!r}")
    return labels, parse_values(rest.strip(" \t"))

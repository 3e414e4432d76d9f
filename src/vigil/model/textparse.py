"""Parser for the Prometheus text exposition format 0.0.4, tolerant of OpenMetrics 1.0 input.

Used by ``POST /api/v1/import/prometheus`` (scripts and cron jobs push text there) and by the agent's
scraper. A payload is treated as OpenMetrics when its last non-blank line is ``# EOF``; that switches
timestamps to (possibly fractional) seconds, allows exemplars and ``\\"`` in HELP text. ``# UNIT`` and
the OpenMetrics metric types are accepted either way.

The whole payload is rejected on the first error, so a caller never ingests half a push.

Speed: one compiled regex, run over the whole payload with ``findall``, picks out the lines in the
canonical shape ``name{l="v",...} value [ts]``; only the lines it rejects (comments, escapes, extra
blanks, exemplars, fractional timestamps, errors) go through the careful per-line scanner, which also
produces the error messages.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import numpy as np
from numpy.typing import NDArray

from vigil.model.labels import METRIC_NAME, Labels, is_valid_label_name, is_valid_metric_name

__all__ = ["ParsedText", "TextParseError", "parse_text"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_INF = math.inf


class TextParseError(ValueError):
    """A malformed payload. ``str()`` is one line: ``"line 3: <what is wrong>"`` (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message

    def __reduce__(self) -> tuple[type[TextParseError], tuple[int, str]]:
        # The default would call TextParseError(str(self)) and fail (e.g. across processes).
        return (TextParseError, (self.line, self.message))


@dataclass(frozen=True)
class ParsedText:
    """A parsed payload: samples as parallel arrays over a table of distinct series."""

    series: list[Labels]  # distinct label sets in order of first appearance (includes __name__)
    series_index: NDArray[np.int64]  # per sample: index into `series`
    timestamps: NDArray[np.int64]  # per sample: milliseconds
    values: NDArray[np.float64]  # per sample
    metadata: dict[str, tuple[str, str, str]]  # family name -> (type, help, unit); "" when unknown


# --- regular expressions --------------------------------------------------------------------------
# Only ASCII digits: Python's `\d` and float() also accept other Unicode digits, Go's ParseFloat doesn't.
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# Written so that no digit can be matched two ways: "[0-9]+\.?[0-9]*" backtracks quadratically.
_DECIMAL = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# Go's ParseFloat accepts "inf"/"infinity" with a sign but "nan" only without one.
_GO_FLOAT = rf"{_DECIMAL}|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]"
# No newline in the value class: the fast regex runs over the whole payload and must never span lines.
_FAST_PAIR = rf'{_LABEL_NAME}="[^"\\\n]*"'

# The fast path, run over the whole payload at once: every line yields exactly one row, either
# (series text, value, timestamp, "") for a sample in the form clients emit (single spaces, no blanks
# inside braces except one after a comma, no escapes, integer timestamp), or ("", "", "", line) else,
# which the careful per-line scanner then handles (it accepts the same language plus blanks/escapes).
_FAST_LINE_RE = re.compile(
    rf"^({_NAME}(?:\{{(?:{_FAST_PAIR}, ?)*(?:{_FAST_PAIR})?\}})?) ({_GO_FLOAT})(?: ([+-]?[0-9]+))?\r?$"
    r"|^(.*)$",
    re.MULTILINE,
)
# Safe on series text the fast regex accepted: values there contain no quote, so pairs can't mis-split.
_FAST_PAIR_RE = re.compile(rf'({_LABEL_NAME})="([^"]*)"')

_DECIMAL_RE = re.compile(_DECIMAL)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_BLANKS_RE = re.compile(r"[ \t]*")
_METRIC_TOKEN_RE = re.compile(r"[^ \t{]*")
_LABEL_TOKEN_RE = re.compile(r'[^ \t=,{}"]*')
_TOKEN_RE = re.compile(r"[^ \t]*")
_QUOTED_RE = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"')
_ESCAPE_RE = re.compile(r"\\(.)")
_COMMENT_RE = re.compile(r"[ \t]*#[ \t]+([^ \t]+)(?:[ \t]+(.*))?")
_NAME_AND_REST_RE = re.compile(r"([^ \t]*)(?:[ \t]+(.*))?")
_EOF_RE = re.compile(r"[ \t]*#[ \t]+EOF[ \t]*\r?")

_SPECIAL_FLOATS = {
    "nan": math.nan,
    "inf": _INF,
    "+inf": _INF,
    "-inf": -_INF,
    "infinity": _INF,
    "+infinity": _INF,
    "-infinity": -_INF,
}

# Metric types -> sample-name suffixes of their family; used to notice a TYPE line after its samples.
# The union of 0.0.4 and OpenMetrics types is accepted in both modes: pushers mix them up in practice.
_FAMILY_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("", "_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "untyped": ("",),
    "unknown": ("",),
    "info": ("_info",),
    "stateset": ("",),
}

_LABEL_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_HELP_UNESCAPES = {"\\": "\\", "n": "\n"}
_OM_HELP_UNESCAPES = _LABEL_UNESCAPES


def _unescape(text: str, table: dict[str, str]) -> str:
    # Unknown escapes stay as written (backslash included), as Prometheus' own scraper does.
    if "\\" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: table.get(m.group(1), m.group(0)), text)


def _show(rest: str) -> str:
    """The offending text for an error message, kept short and on one line."""
    if not rest:
        return "end of line"
    token = _TOKEN_RE.match(rest).group() or rest  # type: ignore[union-attr]
    if len(token) > 40:
        token = token[:40] + "..."
    return repr(token)


def _skip(line: str, pos: int) -> int:
    return _BLANKS_RE.match(line, pos).end()  # type: ignore[union-attr]


def _parse_value(token: str, lineno: int, after: str) -> float:
    """Parse a sample value the way Go's strconv.ParseFloat does (minus hex floats)."""
    if _DECIMAL_RE.fullmatch(token):
        value = float(token)
        if value == _INF or value == -_INF:
            raise TextParseError(lineno, f"value {_show(token)} is out of range for a float64")
        return value
    special = _SPECIAL_FLOATS.get(token.lower())
    if special is None:
        raise TextParseError(lineno, f"expected a value after {after}, got {_show(token)}")
    return special


def _parse_timestamp(token: str, lineno: int, openmetrics: bool) -> int:
    """Timestamp token -> int64 milliseconds: integer ms in 0.0.4, (fractional) seconds in OpenMetrics."""
    if openmetrics:
        if not _DECIMAL_RE.fullmatch(token):
            got = _show(token)
            raise TextParseError(lineno, f"expected a timestamp in seconds after the value, got {got}")
        try:
            seconds = Decimal(token)
        except InvalidOperation:  # an exponent beyond what decimal can represent
            raise TextParseError(lineno, f"timestamp {_show(token)} is out of range") from None
        # Checked before scaling so that "1e999999999" cannot make a huge integer.
        if seconds.adjusted() > 17:
            raise TextParseError(lineno, f"timestamp {_show(token)} is out of range")
        if seconds.adjusted() < -4:
            return 0  # rounds to 0 ms
        # Exact decimal arithmetic: 1520879607.789 must become ...789 ms, which float math misses.
        ms = int((seconds * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))
        if not _INT64_MIN <= ms <= _INT64_MAX:
            raise TextParseError(lineno, f"timestamp {_show(token)} is out of range")
        return ms
    if not _INT_RE.fullmatch(token):
        hint = ""
        if _DECIMAL_RE.fullmatch(token):
            hint = " (fractional seconds are only valid in OpenMetrics input, which ends with '# EOF')"
        got = _show(token)
        raise TextParseError(
            lineno, f"expected a timestamp in integer milliseconds after the value, got {got}{hint}"
        )
    return _long_timestamp(token, lineno, 1)


def _long_timestamp(token: str, lineno: int, scale: int) -> int:
    """An integer timestamp token scaled to ms, range-checked; any length (int() refuses > 4300 digits)."""
    ms = int(token) * scale if len(token.lstrip("+-0")) <= 20 else _INT64_MAX + 1
    if not _INT64_MIN <= ms <= _INT64_MAX:
        raise TextParseError(lineno, f"timestamp {_show(token)} is out of range")
    return ms


def _parse_labels(line: str, pos: int, lineno: int) -> tuple[list[tuple[str, str]], int]:
    """Parse label pairs starting just after ``{``; return them and the position after ``}``."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    end = len(line)
    while True:
        pos = _skip(line, pos)
        if pos < end and line[pos] == "}":
            return pairs, pos + 1
        token = _LABEL_TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
        if not token:
            raise TextParseError(lineno, f"expected a label name or '}}', got {_show(line[pos:])}")
        if not is_valid_label_name(token):
            raise TextParseError(lineno, f"invalid label name {token!r}")
        if token == METRIC_NAME:
            raise TextParseError(lineno, f"label {METRIC_NAME!r} duplicates the metric name")
        if token in seen:
            raise TextParseError(lineno, f"duplicate label name {token!r}")
        seen.add(token)
        pos = _skip(line, pos + len(token))
        if pos >= end or line[pos] != "=":
            raise TextParseError(lineno, f"expected '=' after label name {token!r}, got {_show(line[pos:])}")
        pos = _skip(line, pos + 1)
        if pos >= end or line[pos] != '"':
            raise TextParseError(
                lineno, f"expected '\"' to start the value of label {token!r}, got {_show(line[pos:])}"
            )
        m = _QUOTED_RE.match(line, pos)
        if m is None:
            raise TextParseError(lineno, f"unterminated value for label {token!r}")
        pairs.append((token, _unescape(m.group(1), _LABEL_UNESCAPES)))
        pos = _skip(line, m.end())
        if pos < end and line[pos] == ",":
            pos += 1
        elif pos < end and line[pos] == "}":
            return pairs, pos + 1
        else:
            raise TextParseError(
                lineno, f"expected ',' or '}}' after the value of label {token!r}, got {_show(line[pos:])}"
            )


def _parse_exemplar(line: str, pos: int, lineno: int) -> None:
    """Validate an OpenMetrics exemplar (``# {labels} value [ts]``) starting at ``#``; it is dropped."""
    after_hash = _skip(line, pos + 1)
    if after_hash == pos + 1 or after_hash >= len(line) or line[after_hash] != "{":
        raise TextParseError(lineno, f"expected '# {{' to start an exemplar, got {_show(line[pos:])}")
    _, pos = _parse_labels(line, after_hash + 1, lineno)
    pos = _skip(line, pos)
    token = _TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
    _parse_value(token, lineno, "the exemplar labels")
    pos = _skip(line, pos + len(token))
    token = _TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
    if token:
        _parse_timestamp(token, lineno, openmetrics=True)
        pos = _skip(line, pos + len(token))
    if pos < len(line):
        raise TextParseError(lineno, f"unexpected text after the exemplar: {_show(line[pos:])}")


def _parse_sample_slow(
    line: str, lineno: int, openmetrics: bool
) -> tuple[str, list[tuple[str, str]], float, int | None]:
    """The careful path for a sample line: handles escapes and exemplars, and explains errors."""
    if line.endswith("\r"):
        line = line[:-1]
    end = len(line)
    pos = _skip(line, 0)
    name = _METRIC_TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
    if not name:
        raise TextParseError(lineno, f"expected a metric name, got {_show(line[pos:])}")
    if not is_valid_metric_name(name):
        raise TextParseError(lineno, f"invalid metric name {name!r}")
    pos = _skip(line, pos + len(name))
    pairs: list[tuple[str, str]] = []
    after = "the metric name"
    if pos < end and line[pos] == "{":
        pairs, pos = _parse_labels(line, pos + 1, lineno)
        pos = _skip(line, pos)
        after = "the labels"
    token = _TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
    value = _parse_value(token, lineno, after)
    pos = _skip(line, pos + len(token))
    timestamp: int | None = None
    token = _TOKEN_RE.match(line, pos).group()  # type: ignore[union-attr]
    if token and token[0] != "#":
        timestamp = _parse_timestamp(token, lineno, openmetrics)
        pos = _skip(line, pos + len(token))
    if pos < end:
        if line[pos] != "#":
            raise TextParseError(lineno, f"unexpected text after the timestamp: {_show(line[pos:])}")
        if not openmetrics:
            raise TextParseError(
                lineno,
                "unexpected '#' after the sample (exemplars need OpenMetrics input, which ends with '# EOF')",
            )
        _parse_exemplar(line, pos, lineno)
    return name, pairs, value, timestamp


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        # Lone surrogates (e.g. from a surrogateescape decode) would break Labels.encode() later.
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise TextParseError(data.count("\n", 0, e.start) + 1, "invalid UTF-8") from None
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextParseError(data.count(b"\n", 0, e.start) + 1, "invalid UTF-8") from None


def _eof_line(text: str) -> int:
    """Line number of the closing ``# EOF`` if the payload is OpenMetrics, else 0."""
    body = text.rstrip(" \t\r\n")
    last = body[body.rfind("\n") + 1 :]
    return body.count("\n") + 1 if _EOF_RE.fullmatch(last) else 0


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Parsing allocates a few tuples per series and nothing cyclic, yet each allocation counts towards
    # a collection over the growing result: ~20% of the time for a million-line payload.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _duplicate_label_error(pairs: list[tuple[str, str]], lineno: int) -> TextParseError:
    seen: set[str] = set()
    for name, _ in pairs:
        if name == METRIC_NAME:
            return TextParseError(lineno, f"label {METRIC_NAME!r} duplicates the metric name")
        if name in seen:
            return TextParseError(lineno, f"duplicate label name {name!r}")
        seen.add(name)
    raise AssertionError("no duplicate label")


class _Metadata:
    """HELP/TYPE/UNIT lines seen so far, with the line numbers that set them (for error messages)."""

    def __init__(self, openmetrics: bool) -> None:
        self.openmetrics = openmetrics
        self.types: dict[str, tuple[str, int]] = {}
        self.helps: dict[str, tuple[str, int]] = {}
        self.units: dict[str, tuple[str, int]] = {}
        self.order: dict[str, None] = {}  # families in order of first mention

    def handle(self, keyword: str, rest: str | None, lineno: int, first_seen: dict[str, int]) -> None:
        if not rest:
            raise TextParseError(lineno, f"expected a metric name after {keyword}")
        m = _NAME_AND_REST_RE.fullmatch(rest)
        assert m is not None  # the pattern matches any string without a newline
        name, text = m.group(1), m.group(2) or ""
        if not is_valid_metric_name(name):
            raise TextParseError(lineno, f"invalid metric name {name!r} in {keyword} line")
        if keyword == "HELP":
            self._set(self.helps, "HELP", name, lineno)
            table = _OM_HELP_UNESCAPES if self.openmetrics else _HELP_UNESCAPES
            self.helps[name] = (_unescape(text, table), lineno)
        elif keyword == "TYPE":
            self._set(self.types, "TYPE", name, lineno)
            kind = text.rstrip(" \t").lower()
            if not kind:
                raise TextParseError(lineno, f"expected a metric type after TYPE {name}")
            suffixes = _FAMILY_SUFFIXES.get(kind)
            if suffixes is None:
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise TextParseError(lineno, f"unknown metric type {shown!r}")
            for suffix in suffixes:
                first = first_seen.get(name + suffix)
                if first is not None:
                    raise TextParseError(
                        lineno, f"TYPE line for {name!r} comes after its sample on line {first}"
                    )
            self.types[name] = (kind, lineno)
        else:  # UNIT
            self._set(self.units, "UNIT", name, lineno)
            unit = text.rstrip(" \t")
            if unit and not name.endswith("_" + unit):
                raise TextParseError(lineno, f"unit {unit!r} is not a suffix of metric name {name!r}")
            self.units[name] = (unit, lineno)
        self.order[name] = None

    @staticmethod
    def _set(seen: dict[str, tuple[str, int]], keyword: str, name: str, lineno: int) -> None:
        if name in seen:
            first = seen[name][1]
            raise TextParseError(lineno, f"second {keyword} line for {name!r} (first on line {first})")

    def result(self) -> dict[str, tuple[str, str, str]]:
        return {
            name: (
                self.types.get(name, ("", 0))[0],
                self.helps.get(name, ("", 0))[0],
                self.units.get(name, ("", 0))[0],
            )
            for name in self.order
        }


def parse_text(data: bytes | str, default_timestamp_ms: int) -> ParsedText:
    """Parse a text exposition payload; raise `TextParseError` on the first problem."""
    text = _decode(data).removeprefix("\ufeff")  # a BOM, as written by some Windows tools
    eof_lineno = _eof_line(text)
    openmetrics = eof_lineno > 0
    with _gc_paused():
        return _parse(text, default_timestamp_ms, openmetrics, eof_lineno)


def _parse(text: str, default_ts: int, openmetrics: bool, eof_lineno: int) -> ParsedText:
    meta = _Metadata(openmetrics)
    series: list[Labels] = []
    by_labels: dict[Labels, int] = {}
    by_text: dict[str, int] = {}  # series text of fast-path lines -> series; skips re-parsing repeats
    first_seen: dict[str, int] = {}  # metric name -> line of its first sample
    index_out: list[int] = []
    ts_out: list[int] = []
    value_out: list[float] = []
    ts_scale = 1000 if openmetrics else 1

    def intern(name: str, pairs: list[tuple[str, str]], lineno: int) -> int:
        # Equivalent to Labels.from_pairs (callers drop empty values), inlined as it runs per series.
        pairs.append((METRIC_NAME, name))
        pairs.sort()
        labels = Labels(pairs)
        sid = by_labels.setdefault(labels, len(series))
        if sid == len(series):
            series.append(labels)
        if name not in first_seen:
            first_seen[name] = lineno
        return sid

    # Bound methods in locals: this loop runs once per line.
    add_index, add_ts, add_value = index_out.append, ts_out.append, value_out.append
    known_text = by_text.get
    for lineno, (series_text, value_text, ts_text, other) in enumerate(_FAST_LINE_RE.findall(text), 1):
        if series_text:
            sid = known_text(series_text)
            if sid is None:
                brace = series_text.find("{")
                if brace < 0:
                    sid = intern(series_text, [], lineno)
                else:
                    pairs: list[tuple[str, str]] = _FAST_PAIR_RE.findall(series_text, brace)
                    if len(pairs) > 1 or METRIC_NAME in series_text:
                        names = dict(pairs)
                        if len(names) < len(pairs) or METRIC_NAME in names:
                            raise _duplicate_label_error(pairs, lineno)
                    if '=""' in series_text:  # an empty value means "no such label"
                        pairs = [p for p in pairs if p[1]]
                    sid = intern(series_text[:brace], pairs, lineno)
                by_text[series_text] = sid
            value = float(value_text)
            if (value == _INF or value == -_INF) and value_text[-1] not in "fFyY":
                raise TextParseError(lineno, f"value {_show(value_text)} is out of range for a float64")
            if ts_text:
                if len(ts_text) <= 15:  # cannot overflow int64, even as seconds scaled to ms
                    add_ts(int(ts_text) * ts_scale)
                else:
                    add_ts(_long_timestamp(ts_text, lineno, ts_scale))
            else:
                add_ts(default_ts)
            add_index(sid)
            add_value(value)
            continue

        stripped = other.strip(" \t\r")
        if not stripped:
            continue
        if stripped[0] == "#":
            cm = _COMMENT_RE.fullmatch(other.removesuffix("\r"))
            if cm is None:
                continue  # e.g. "#foo": a plain comment
            keyword = cm.group(1)
            if keyword in ("HELP", "TYPE", "UNIT"):
                meta.handle(keyword, cm.group(2), lineno, first_seen)
            elif keyword == "EOF" and openmetrics and not cm.group(2):
                if lineno != eof_lineno:
                    raise TextParseError(lineno, "'# EOF' must be the last line of OpenMetrics input")
                break
            continue
        name, pairs, value, ts_or_none = _parse_sample_slow(other, lineno, openmetrics)
        index_out.append(intern(name, [p for p in pairs if p[1]], lineno))
        ts_out.append(default_ts if ts_or_none is None else ts_or_none)
        value_out.append(value)

    return ParsedText(
        series=series,
        series_index=np.array(index_out, dtype=np.int64),
        timestamps=np.array(ts_out, dtype=np.int64),
        values=np.array(value_out, dtype=np.float64),
        metadata=meta.result(),
    )

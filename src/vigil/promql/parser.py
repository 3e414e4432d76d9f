"""Parsing PromQL with the `promql-parser` package (Rust) into Vigil's own AST.

The package does the grammar and type checks; this module maps its nodes, anchors regexes through
Vigil's Matcher, puts the metric name among the matchers, and turns every failure into ParseError.

Queries come from requests, and the extension's cost grows faster than linearly with nesting (about
quadratic memory, 2 GiB at 5,000 parentheses; 10,000 crash the process with a stack overflow that
no exception handler sees), as does the recursion of `_convert` and the evaluator. So before the
extension sees a query, `check_size` bounds its length and its nesting depth with a linear scan
(`nesting_depth`): the depth it computes is an upper bound of the syntax tree's, so a query that
passes cannot nest deeper than MAX_DEPTH in any of them.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import promql_parser as pp

from vigil.model.matcher import InvalidMatcherError, Matcher, MatchType
from vigil.promql import ast
from vigil.promql.errors import ParseError

_MATCH_OPS = {
    "MatchOp.Equal": MatchType.EQ,
    "MatchOp.NotEqual": MatchType.NEQ,
    "MatchOp.Re": MatchType.RE,
    "MatchOp.NotRe": MatchType.NRE,
}
_CARD: dict[str, ast.Cardinality] = {
    "VectorMatchCardinality.OneToOne": "one-to-one",
    "VectorMatchCardinality.ManyToOne": "many-to-one",
    "VectorMatchCardinality.OneToMany": "one-to-many",
    "VectorMatchCardinality.ManyToMany": "many-to-many",
}
# Experimental in Prometheus 3 (behind a feature flag there) and not implemented here.
_UNSUPPORTED_FUNCS = {"info", "limit_ratio"}


class _ConvertError(Exception):
    """A problem found while mapping the parser's tree; `near` is text to point the position at."""

    def __init__(self, message: str, near: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.near = near


# Deep enough for any real query (dashboards rarely pass 20), shallow enough for every recursion
# that walks the tree, three Python frames a level at most, to fit in the default limit of 1000.
MAX_DEPTH = 200
# Grafana's multi-value variables make long `=~"a|b|..."` matchers: 5,000 host names fit. Parsing
# and compiling a query this long takes about a second.
MAX_LENGTH = 131_072

# What nesting depends on: comments and strings (skipped whole), brackets, operators. A `[` counts
# as an operator too, since a range or subquery wraps the expression before it in a new node.
_DEPTH_TOKENS = re.compile(
    r"""\#[^\n]*|"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|`[^`]*`?"""
    r"|[(\[{]|[)\]}]|[=!<>]=|[-+*/%^<>=!]|\b(?:and|or|unless|atan2)\b",
    re.DOTALL | re.IGNORECASE,
)


def nesting_depth(query: str, limit: int = MAX_DEPTH) -> tuple[int, int]:
    """An upper bound of the depth of `query`'s syntax tree, and the offset where it first passed
    `limit` (-1 if it did not). Linear and without recursion, for any text, valid PromQL or not.

    Each bracketed group is one level above what it holds, and inside a group (or at the top) the
    operators, however they associate, add at most one level each over its deepest operand. Inside
    braces (label matchers) operators are matchers and add nothing. Groups left open at the end
    count as closed there."""
    # Per group: its opening character, its operator count, the depth of its deepest subgroup.
    stack: list[list[Any]] = [["", 0, 0]]
    inner = 0  # levels the open groups add along the current path: sum of 1 + operators
    where = -1
    for m in _DEPTH_TOKENS.finditer(query):
        tok = m.group()
        frame = stack[-1]
        if tok in "([{":
            if tok == "[":
                frame[1] += 1
                inner += len(stack) > 1
            stack.append([tok, 0, 0])
            inner += 1
        elif tok in ")]}":
            if len(stack) == 1:
                continue
            stack.pop()
            inner -= 1 + frame[1]
            stack[-1][2] = max(stack[-1][2], 1 + frame[1] + frame[2])
        elif tok[0] not in "#\"'`" and frame[0] != "{":
            frame[1] += 1
            inner += len(stack) > 1
        else:
            continue
        # A lower bound of the final depth, which it equals once every group is closed.
        if where < 0 and inner + stack[0][1] + stack[-1][2] > limit:
            where = m.start()
    while len(stack) > 1:
        frame = stack.pop()
        stack[-1][2] = max(stack[-1][2], 1 + frame[1] + frame[2])
    depth = stack[0][1] + stack[0][2]
    if where < 0 and depth > limit:
        where = max(len(query) - 1, 0)
    return depth, where


def check_size(query: str) -> None:
    """Raise ParseError (400) for a query too long or too deeply nested to parse safely."""
    if len(query) > MAX_LENGTH:
        raise ParseError(
            f"1:1: parse error: query is {len(query)} characters long; at most {MAX_LENGTH} are accepted"
        )
    _, where = nesting_depth(query)
    if where >= 0:
        raise ParseError(
            f"{_position(query, where)}: parse error: expression nests too deeply: more than "
            f"{MAX_DEPTH} levels of parentheses, calls, brackets and operators"
        )


def parse(query: str) -> ast.Expr:
    """Parse a PromQL expression. Raises ParseError as Prometheus words it: `line:col: parse error: …`."""
    if not query.strip():
        raise ParseError("1:1: parse error: no expression found in input")
    check_size(query)
    message = _parse_failure(query)
    if message is not None:
        raise ParseError(f"{_position(query, _error_offset(query, message))}: parse error: {message}")
    try:
        return _convert(pp.parse(query))
    except _ConvertError as exc:
        offset = max(query.find(exc.near), 0) if exc.near else 0
        raise ParseError(f"{_position(query, offset)}: parse error: {exc.message}") from None
    except BaseException as exc:  # the Rust binding panics on a few inputs (negative @ times)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise ParseError(f"1:1: parse error: {exc}") from None


def _parse_failure(query: str) -> str | None:
    try:
        pp.parse(query)
    except ValueError as exc:
        return str(exc)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return str(exc)
    return None


def _error_offset(query: str, message: str) -> int:
    """Where the error is: the parser gives no positions, but it reads left to right, so the shortest
    prefix that fails with the same message ends at the offending character (found by bisection)."""
    lo, hi = 1, len(query)
    while lo < hi:
        mid = (lo + hi) // 2
        if _parse_failure(query[:mid]) == message:
            hi = mid
        else:
            lo = mid + 1
    return lo - 1


def _position(query: str, offset: int) -> str:
    line = query.count("\n", 0, offset) + 1
    col = offset - (query.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{col}"


def parse_selector(text: str) -> list[Matcher]:
    """Parse a series selector such as `up{job="x"}` (the API's `match[]`)."""
    e = parse(text)
    while isinstance(e, ast.Paren):
        e = e.expr
    if not isinstance(e, ast.VectorSelector) or e.offset_ms or e.at:
        raise ParseError(f"1:1: parse error: expected a series selector, got {text!r}")
    return list(e.matchers)


def _ms(td: timedelta | None) -> int:
    if td is None:
        return 0
    return td // timedelta(milliseconds=1)


def _at(at: Any) -> ast.At | None:
    if at is None:
        return None
    kind = str(at.type)
    if kind.endswith("Start"):
        return ast.At("start")
    if kind.endswith("End"):
        return ast.At("end")
    when = at.at  # datetime (UTC)
    ms = round(when.timestamp() * 1000)
    return ast.At("time", ms)


def _matcher(m: Any) -> Matcher:
    try:
        return Matcher(_MATCH_OPS[str(m.op)], m.name, m.value)
    except InvalidMatcherError as exc:
        raise _ConvertError(str(exc), m.name) from None


def _selector(vs: Any) -> ast.VectorSelector:
    if vs.matchers.or_matchers:
        raise _ConvertError("'or' inside a label matcher set is not PromQL", " or ")
    matchers = [_matcher(m) for m in vs.matchers.matchers]
    if vs.name and not any(m.name == "__name__" for m in matchers):
        matchers.insert(0, Matcher(MatchType.EQ, "__name__", vs.name))
    if all(m.matches_empty for m in matchers):
        raise _ConvertError("vector selector must contain at least one non-empty matcher", "{")
    return ast.VectorSelector(tuple(matchers), _ms(vs.offset), _at(vs.at))


def _check_arg_types(func: Any, args: tuple[ast.Expr, ...]) -> None:
    """Check argument types against the function's signature. The extension does, except that it
    lets a non-positive or non-finite number through to ln, log2, log10 and exp (`ln(-1)`)."""
    types = [str(t).rsplit(".", 1)[-1].lower() for t in func.arg_types]
    for i, arg in enumerate(args):
        want = types[min(i, len(types) - 1)]
        got = ast.value_type(arg)
        if got != want:
            raise _ConvertError(
                f"expected type {want} in call to function '{func.name}', got {got}", f"{func.name}("
            )


def _convert(n: Any) -> ast.Expr:
    match type(n).__name__:
        case "NumberLiteral":
            return ast.NumberLiteral(float(n.val))
        case "StringLiteral":
            return ast.StringLiteral(n.val)
        case "VectorSelector":
            return _selector(n)
        case "MatrixSelector":
            return ast.MatrixSelector(_selector(n.vector_selector), _ms(n.range))
        case "SubqueryExpr":
            return ast.Subquery(_convert(n.expr), _ms(n.range), _ms(n.step), _ms(n.offset), _at(n.at))
        case "ParenExpr":
            return ast.Paren(_convert(n.expr))
        case "UnaryExpr":
            inner = _convert(n.expr)
            if isinstance(inner, ast.NumberLiteral):
                return ast.NumberLiteral(-inner.value)
            return ast.Unary(inner)
        case "Call":
            name = n.func.name
            classic = ("histogram_quantile", "histogram_quantiles", "histogram_fraction")
            if name in _UNSUPPORTED_FUNCS or (name.startswith("histogram_") and name not in classic):
                raise _ConvertError(
                    f"function {name!r} is not supported "
                    "(native histograms and experimental functions are not implemented)",
                    name,
                )
            args = tuple(_convert(a) for a in n.args)
            _check_arg_types(n.func, args)
            return ast.Call(name, args)
        case "AggregateExpr":
            op = str(n.op)
            if op in _UNSUPPORTED_FUNCS:
                raise _ConvertError(f"aggregation {op!r} is not supported (experimental)", op)
            mod = n.modifier
            without = mod is not None and str(mod.type).endswith("Without")
            labels = tuple(mod.labels) if mod is not None else ()
            param = _convert(n.param) if n.param is not None else None
            return ast.Aggregate(op, _convert(n.expr), param, labels, without)
        case "BinaryExpr":
            op = str(n.op)
            mod = n.modifier
            matching = None
            return_bool = False
            if mod is not None:
                return_bool = bool(mod.return_bool)
                fills = getattr(mod, "fill_values", None)
                card = _CARD[str(mod.card)]
                if mod.matching is not None:
                    on = str(mod.matching.type).endswith("Include")
                    labels = tuple(mod.matching.labels)
                else:
                    on, labels = False, ()
                matching = ast.VectorMatching(
                    card,
                    on,
                    labels,
                    tuple(mod.group_labels or ()),
                    fills.lhs if fills is not None else None,
                    fills.rhs if fills is not None else None,
                )
            lhs, rhs = _convert(n.lhs), _convert(n.rhs)
            if op in ast.SET_OPS and matching is None:
                matching = ast.VectorMatching("many-to-many", False, (), ())
            return ast.Binary(op, lhs, rhs, return_bool, matching)
    raise _ConvertError(f"unsupported expression {type(n).__name__}")


def duration_ms(text: str) -> int:
    """A PromQL duration (`5m`, `1h30m`) in ms."""
    try:
        return _ms(pp.parse_duration(text))
    except ValueError as exc:
        raise ParseError(str(exc)) from None


__all__ = ["duration_ms", "math", "parse", "parse_selector"]

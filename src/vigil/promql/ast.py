"""Vigil's PromQL syntax tree: small frozen dataclasses the engine evaluates.

Times are int milliseconds; the metric name of a selector is always among its matchers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vigil.model.matcher import Matcher

ValueType = Literal["scalar", "vector", "matrix", "string"]


@dataclass(frozen=True)
class At:
    kind: Literal["time", "start", "end"]
    time_ms: int = 0


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class StringLiteral:
    value: str


@dataclass(frozen=True)
class VectorSelector:
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range_ms: int


@dataclass(frozen=True)
class Subquery:
    expr: Expr
    range_ms: int
    step_ms: int  # 0: the default evaluation interval
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool


Cardinality = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True)
class VectorMatching:
    card: Cardinality
    on: bool  # True: on(labels); False: ignoring(labels)
    labels: tuple[str, ...]
    include: tuple[str, ...]  # group_left/group_right labels
    # fill()/fill_left()/fill_right(): values standing in for a missing left or right operand.
    fill_left: float | None = None
    fill_right: float | None = None


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True)
class Unary:
    expr: Expr  # negation


@dataclass(frozen=True)
class Paren:
    expr: Expr


Expr = (
    NumberLiteral
    | StringLiteral
    | VectorSelector
    | MatrixSelector
    | Subquery
    | Call
    | Aggregate
    | Binary
    | Unary
    | Paren
)

COMPARISON_OPS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS = frozenset({"and", "or", "unless"})


def value_type(e: Expr) -> ValueType:
    match e:
        case NumberLiteral():
            return "scalar"
        case StringLiteral():
            return "string"
        case VectorSelector() | Aggregate():
            return "vector"
        case MatrixSelector() | Subquery():
            return "matrix"
        case Call(func=f):
            return FUNCTION_RETURNS.get(f, "vector")
        case Binary(lhs=lhs, rhs=rhs):
            return "scalar" if value_type(lhs) == "scalar" and value_type(rhs) == "scalar" else "vector"
        case Unary(expr=x) | Paren(expr=x):
            return value_type(x)
    raise TypeError(f"not an expression: {e!r}")


# The functions returning a scalar; every other one returns an instant vector.
FUNCTION_RETURNS: dict[str, ValueType] = dict.fromkeys(
    ("time", "scalar", "pi", "step", "range", "start", "end", "min_of", "max_of"), "scalar"
)

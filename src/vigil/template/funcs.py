"""Template functions: how a Python callable declares its Go signature, and Go's builtin escapers.

Go checks every argument of a template function against the function's parameter types (a
`float64` variable passed to a `string` parameter fails with `wrong type for value; expected
string; got float64`, an untyped constant `1` is accepted by a `float64` parameter), and a
function returning `(T, error)` fails the execution with `error calling name: ...`. `Func` carries
the parameter types so the evaluator can do the same; a function signals Go's `error` result by
raising `FuncError`. A plain callable is taken as taking `any` for each positional parameter.

`html`, `js` and `urlquery` here are text/template's builtin escapers (Go's HTMLEscapeString,
JSEscapeString and url.QueryEscape), shared with the html/template-style autoescaper.
"""

from __future__ import annotations

import inspect
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AnyMap",
    "Func",
    "FuncError",
    "as_func",
    "html_escape",
    "js_escape",
    "query_escape",
]

# Go parameter kinds a Func may declare: "any", "string", "int", "float64", "bool", "[]string",
# "value" (any value, even a missing one, unconverted), or any other Go type name, which a value
# matches when its `go_type` is that name (nil matches pointer, slice and map types).
PARAM_KINDS = frozenset({"any", "string", "int", "float64", "bool", "[]string", "value"})


class AnyMap(dict[str, Any]):
    """A Go `map[string]interface{}` (what `args` and `dict` return): a missing key is nil."""

    go_type_name = "map[string]interface {}"
    go_elem_zero = None


class FuncError(Exception):
    """Raised by a template function for Go's non-nil `error` result."""


@dataclass(frozen=True, slots=True)
class Func:
    fn: Callable[..., Any]
    params: tuple[str, ...] = ()
    variadic: str | None = None  # the kind of a trailing `...T` parameter

    def __post_init__(self) -> None:
        for k in (*self.params, *((self.variadic,) if self.variadic else ())):
            if not k:
                raise ValueError("empty parameter kind")


def as_func(f: Func | Callable[..., Any]) -> Func:
    """`f` as a Func: plain callables take `any` for each positional parameter (and `...any`)."""
    if isinstance(f, Func):
        return f
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return Func(f, (), "any")
    params: list[str] = []
    variadic: str | None = None
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            params.append("any")
        elif p.kind is p.VAR_POSITIONAL:
            variadic = "any"
    return Func(f, tuple(params), variadic)


def html_escape(s: str) -> str:
    """Go's template.HTMLEscapeString."""
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\0", "\ufffd")
    )


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def js_escape(s: str) -> str:
    """Go's template.JSEscapeString."""
    out: list[str] = []
    for ch in s:
        if ch in _JS:
            out.append(_JS[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x7F and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def query_escape(s: str) -> str:
    """Go's url.QueryEscape (space as `+`, `~` kept)."""
    return urllib.parse.quote_plus(s, safe="~")

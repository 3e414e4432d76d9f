"""Go's fmt for template values: how `{{ .X }}`, `print`, `println` and `printf` turn values into text.

Templates written for Prometheus print `$value` as Go does (`1.234567e+06`, `0.30000000000000004`),
and `printf` verbs misused on the wrong type print Go's error markers (`%!d(string=x)`,
`%!s(MISSING)`, `%!(EXTRA int=2)`) instead of failing. This module maps Python values onto the Go
types a template sees (str → string, int → int, float → float64, bool, None → nil, list → slice,
dict → map, objects → structs printed as `{v1 v2}` / `%+v` `{A:v1 B:v2}`, `HTML`, and anything
with a Go `String` method such as `gotime.GoTime`) and implements the verbs `v s q d b o x X c U e
E f F g G t T %` with the flags `-+ 0#`, width and precision (also `*`) and `[n]` argument indexes.

Not covered: `%p`, complex numbers, Go-syntax `%#v` of structs and maps, pointers (a value is
printed as Go prints what it points to). Widths and precisions are capped (`MAX_WIDTH`), and
`check_print_size` bounds what printing a value would write before it is built, so neither
`%999999999d` nor a list that shares its elements can allocate past the output bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "HTML",
    "MAX_WIDTH",
    "NO_VALUE",
    "FormatError",
    "check_print_size",
    "format_float_g",
    "go_quote",
    "go_type",
    "is_struct",
    "sprint",
    "sprintf",
    "sprintln",
    "struct_fields",
    "value_string",
]

MAX_WIDTH = 1 << 16


class FormatError(Exception):
    """A width or precision beyond MAX_WIDTH."""


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key or field of nil data evaluates to."""

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE = _NoValue()


class HTML(str):
    """html/template's HTML type: content trusted not to need escaping (what `safeHtml` returns)."""

    __slots__ = ()


def go_type(v: Any) -> str:
    """The Go type name a value has in a template, as Go prints it in error messages."""
    if v is None or v is NO_VALUE:
        return "<nil>"
    named = getattr(type(v), "go_type_name", None)
    if isinstance(named, str):
        return named
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, HTML):
        return "template.HTML"
    if isinstance(v, str):
        return "string"
    name = getattr(type(v), "go_type_name", None)
    if isinstance(name, str):
        return name
    # Python containers carry no element type: take the one all elements share, if any.
    if isinstance(v, Mapping):
        return "map[string]" + _elem_type(list(v.values()))
    if isinstance(v, list | tuple):
        return "[]" + _elem_type(list(v))
    return type(v).__name__


def _elem_type(items: list[Any]) -> str:
    kinds = {go_type(x) for x in items[:100]}
    if len(kinds) == 1 and "<nil>" not in kinds:
        return kinds.pop()
    return "interface {}"


def _shortest_digits(v: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip `v` (> 0) and the decimal point position."""
    _, digits, exp = Decimal(repr(v)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(str(x) for x in digits)
    return ds, len(ds) + exp  # v == 0.<ds> * 10**dp


def _exp_str(exp: int, upper: bool) -> str:
    return ("E" if upper else "e") + ("-" if exp < 0 else "+") + f"{abs(exp):02d}"


def format_float_g(v: float, prec: int = -1, upper: bool = False, sharp: bool = False) -> str:
    """strconv.FormatFloat(v, 'g', prec, 64) (prec -1: shortest), without the sign handling of fmt."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg = v < 0 or (v == 0 and math.copysign(1, v) < 0)
    a = abs(v)
    if a == 0:
        ds, dp = "0", 1
    elif prec < 0:
        ds, dp = _shortest_digits(a)
    else:
        p = max(prec, 1)
        s = f"{a:.{p - 1}e}"
        mant, e = s.split("e")
        ds = mant.replace(".", "").rstrip("0") or "0"
        dp = int(e) + 1
    nd = len(ds)
    shortest = prec < 0
    eprec = prec if prec >= 0 else nd
    if eprec == 0:
        eprec = 1
    if eprec > nd and nd >= dp:
        eprec = nd
    if shortest:
        eprec = 6
    exp = dp - 1
    if sharp:  # `#` keeps trailing zeros: the precision's digits (6 when shortest), as Go pads
        ds = ds.ljust(max(prec if prec >= 0 else 6, 1), "0")
        nd = len(ds)
    if exp < -4 or exp >= eprec:
        out = ds[0] + ("." + ds[1:] if len(ds) > 1 else ("." if sharp else "")) + _exp_str(exp, upper)
    elif dp <= 0:
        out = "0." + "0" * (-dp) + ds
    elif dp >= nd:
        out = ds + "0" * (dp - nd) + ("." if sharp else "")
    else:
        out = ds[:dp] + "." + ds[dp:]
    return ("-" if neg else "") + out


def _float_v(v: float) -> str:
    return format_float_g(v)


def go_quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\\ufffd")
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif (ascii_only and cp > 0x7E) or (cp > 0x7E and not ch.isprintable() and ch != " "):
            out.append(f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def check_print_size(values: Sequence[Any], limit: int) -> None:
    """Raise FormatError if printing `values` would take more than `limit` characters.

    Containers may share elements (`append $l $l` in a loop doubles what printing the list
    writes), so the walk counts what printing would write and stops as soon as it passes the
    limit: its cost is bounded by the limit, not by the (possibly exponential) printed size."""
    total = 0
    stack: list[Any] = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, Mapping):
            total += 5 + len(v)
            for k, x in v.items():
                stack.append(k)
                stack.append(x)
        elif isinstance(v, list | tuple):
            total += 2 + len(v)
            stack.extend(v)
        elif v is None or isinstance(v, bool | int | float) or v is NO_VALUE:
            total += 1  # a lower bound: printing is short, what matters is counting the many
        elif callable(getattr(v, "String", None)):
            total += 64
        else:
            fields = struct_fields(v)
            total += 2 + len(fields)
            stack.extend(x for _, x in fields)
        if total > limit:
            raise FormatError(f"printing the value would exceed the limit of {limit} characters")


def value_string(v: Any, plus: bool = False) -> str:
    """fmt's %v of one value (`plus`: %+v, struct fields with their names)."""
    if isinstance(v, str):
        return str.__str__(v)
    if v is NO_VALUE:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float_v(v)
    stringer = getattr(v, "String", None)
    if callable(stringer):
        return str(stringer())
    if isinstance(v, Mapping):
        items = sorted(v.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{value_string(k, plus)}:{value_string(x, plus)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(value_string(x, plus) for x in v) + "]"
    if is_struct(v):  # as Go prints a struct
        fields = struct_fields(v)
        if plus:
            return "{" + " ".join(f"{n}:{value_string(x, plus)}" for n, x in fields) + "}"
        return "{" + " ".join(value_string(x) for _, x in fields) + "}"
    return str(v)


def struct_fields(v: Any) -> list[tuple[str, Any]]:
    """The public data attributes of an object, in definition order (or as its class's
    `go_fields` lists them): Go's struct fields."""
    declared = getattr(type(v), "go_fields", None)
    if declared is not None:
        return [(n, getattr(v, n)) for n in declared]
    names: list[str] = []
    for cls in reversed(type(v).__mro__):
        slots = cls.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    names.extend(getattr(v, "__dict__", {}))
    seen: list[tuple[str, Any]] = []
    done: set[str] = set()
    for n in names:
        if n.startswith("_") or n in done or not hasattr(v, n):
            continue
        done.add(n)
        x = getattr(v, n)
        if not callable(x) or isinstance(x, str | Mapping | list | tuple):
            seen.append((n, x))
    return seen


def _hex_float(v: float, upper: bool) -> str:
    """strconv's 'x' format with the shortest precision: 0x1.cp+01."""
    if v == 0:
        s = "0x0p+00"
        return ("-" if math.copysign(1, v) < 0 else "") + (s.upper().replace("0X", "0X") if upper else s)
    h = float.hex(v)  # [-]0x1.<13 hex digits>p<exp>
    neg = h.startswith("-")
    mant, exp = h.lstrip("-")[2:].split("p")
    mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    s = "0x" + mant + "p" + ("-" if e < 0 else "+") + f"{abs(e):02d}"
    if upper:
        s = s.upper()
    return ("-" if neg else "") + s


def _sort_key(k: Any) -> tuple[int, Any]:
    if isinstance(k, bool):
        return (0, int(k))
    if isinstance(k, int | float):
        return (1, k)
    return (2, str(k))


def sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = True
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_pointer_mark(a) + value_string(a))
        prev_string = is_string
    return "".join(out)


def _pointer_mark(v: Any) -> str:
    """fmt prints a pointer to a struct passed to it directly as `&{...}` (classes say they model
    one with `go_pointer`); template actions print the struct itself, without the `&`."""
    return "&" if getattr(type(v), "go_pointer", False) else ""


def sprintln(args: Sequence[Any]) -> str:
    """fmt.Sprintln: spaces between all operands, and a newline."""
    return " ".join(_pointer_mark(a) + value_string(a) for a in args) + "\n"


class _Spec:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "verb", "width", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.space = self.zero = self.sharp = False
        self.width: int | None = None
        self.prec: int | None = None
        self.verb = ""


def _pad(s: str, sp: _Spec, zero_ok: bool = True) -> str:
    if sp.width is None or len(s) >= sp.width:
        return s
    fill = sp.width - len(s)
    if sp.minus:
        return s + " " * fill
    if sp.zero and zero_ok:
        if s[:1] in "+-" and len(s) > 0 and s[1:2].isdigit():
            return s[0] + "0" * fill + s[1:]
        return "0" * fill + s
    return " " * fill + s


def _bad(verb: str, v: Any, sp: _Spec | None = None) -> str:
    """Go's %!verb(type=value) marker; the value printed with %v under the same flags and width."""
    if v is None:
        return f"%!{verb}(<nil>)"
    if sp is None:
        return f"%!{verb}({go_type(v)}={value_string(v)})"
    as_v = _Spec()
    as_v.minus, as_v.plus, as_v.space, as_v.zero, as_v.sharp = sp.minus, sp.plus, sp.space, sp.zero, sp.sharp
    as_v.width, as_v.prec, as_v.verb = sp.width, sp.prec, "v"
    return f"%!{verb}({go_type(v)}={_format_one(v, as_v)})"


def _fmt_int(v: int, sp: _Spec) -> str:
    verb = sp.verb
    neg = v < 0
    a = -v if neg else v
    if verb == "c":
        return _pad(chr(a) if a <= 0x10FFFF else "\ufffd", sp)
    if verb == "q":
        return _pad("'" + go_quote(chr(a))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'", sp)
    if verb == "U":
        s = f"U+{a:04X}"
        if sp.sharp and a <= 0x10FFFF and chr(a).isprintable():
            s += f" '{chr(a)}'"
        return _pad(s, sp)
    base = {"d": 10, "v": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}[verb]
    digits = {2: f"{a:b}", 8: f"{a:o}", 10: f"{a:d}", 16: f"{a:x}"}[base]
    if verb == "X":
        digits = digits.upper()
    if sp.prec is not None:
        digits = digits.rjust(sp.prec, "0") if not (sp.prec == 0 and a == 0) else ""
    prefix = ""
    if sp.sharp or verb == "O":
        prefix = {2: "0b", 8: "0", 16: "0x"}.get(base, "")
        if verb == "X":
            prefix = "0X"
        if verb == "O":
            prefix = "0o"
        if base == 8 and verb == "o" and digits.startswith("0"):
            prefix = ""
    sign = "-" if neg else ("+" if sp.plus else (" " if sp.space else ""))
    body = prefix + digits
    if sp.zero and not sp.minus and sp.width is not None and sp.prec is None:
        body = prefix + digits.rjust(sp.width - len(sign) - len(prefix), "0")
        return sign + body
    return _pad(sign + body, sp, zero_ok=False)


def _fmt_float(v: float, sp: _Spec) -> str:
    verb = sp.verb
    if math.isnan(v) or math.isinf(v):
        if math.isnan(v):
            s = "+NaN" if sp.plus else (" NaN" if sp.space else "NaN")
        else:
            s = "+Inf" if v > 0 else "-Inf"
            if v > 0 and sp.space and not sp.plus:
                s = " Inf"
        return _pad(s, sp, zero_ok=False)
    if verb in ("v", "g", "G"):
        prec = -1 if sp.prec is None else sp.prec
        s = format_float_g(v, prec, upper=verb == "G", sharp=sp.sharp)
    elif verb in ("e", "E"):
        prec = 6 if sp.prec is None else sp.prec
        s = f"{v:.{prec}e}"
        mant, e = s.split("e")
        if sp.sharp and "." not in mant:
            mant += "."
        s = mant + _exp_str(int(e), verb == "E")
    else:  # f F
        prec = 6 if sp.prec is None else sp.prec
        s = f"{v:.{prec}f}"
        if sp.sharp and "." not in s:
            s += "."
    if not s.startswith("-"):
        if sp.plus:
            s = "+" + s
        elif sp.space:
            s = " " + s
    if sp.zero and not sp.minus and sp.width is not None and len(s) < sp.width:
        sign = s[0] if s[0] in "+- " else ""
        return sign + s[len(sign) :].rjust(sp.width - len(sign), "0")
    return _pad(s, sp, zero_ok=False)


def _fmt_str(s: str, sp: _Spec) -> str:
    verb = sp.verb
    if sp.prec is not None:
        s = s[: sp.prec]
    if verb in ("x", "X"):
        b = s.encode()
        sep = " " if sp.space else ""
        h = sep.join(f"{x:02x}" for x in b) if sep else b.hex()
        if sp.sharp:
            h = sep.join("0x" + f"{x:02x}" for x in b) if sep else "0x" + h
        s = h.upper() if verb == "X" else h
        return _pad(s, sp)
    if verb == "q":
        if sp.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", sp)
        return _pad(go_quote(s, ascii_only=sp.plus), sp)
    return _pad(s, sp)


def _format_one(v: Any, sp: _Spec) -> str:
    verb = sp.verb
    if verb == "T":
        return _pad(go_type(v), sp)
    if v is NO_VALUE:
        v = None
    if verb == "v" and sp.sharp:
        if isinstance(v, str):
            return _pad(go_quote(v), sp)
        if v is None:
            return _pad("<nil>", sp)
    if v is None:
        return _pad("<nil>", sp) if verb == "v" else _bad(verb, None)
    if isinstance(v, bool):
        if verb in ("v", "t"):
            return _pad("true" if v else "false", sp)
        return _bad(verb, v, sp)
    if isinstance(v, int):
        if verb in "dbcoOqxXUv":
            return _fmt_int(v, sp)
        return _bad(verb, v, sp)
    if isinstance(v, float):
        if verb in "veEfFgG":
            return _fmt_float(v, sp)
        if verb in "xX" and not (math.isnan(v) or math.isinf(v)):
            return _pad(_hex_float(v, verb == "X"), sp)
        return _bad(verb, v, sp)
    if isinstance(v, str):
        if verb in "vsqxX":
            return _fmt_str(str.__str__(v), sp)
        return _bad(verb, v, sp)
    stringer = getattr(v, "String", None)
    if callable(stringer):
        return _fmt_str(str(stringer()), sp) if verb in "vsqxX" else _bad(verb, v, sp)
    # Composites: Go formats every element with the same verb, flags and width.
    if isinstance(v, Mapping):
        items = sorted(v.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{_format_one(k, sp)}:{_format_one(x, sp)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_format_one(x, sp) for x in v) + "]"
    if is_struct(v):
        fields = struct_fields(v)
        if sp.plus and verb == "v":
            return "{" + " ".join(f"{n}:{_format_one(x, sp)}" for n, x in fields) + "}"
        return "{" + " ".join(_format_one(x, sp) for _, x in fields) + "}"
    if verb in "vs":
        return _pad(str(v), sp)
    return _bad(verb, v, sp)


def is_struct(v: Any) -> bool:
    """An object Go would print as a struct: no `__str__` of its own."""
    return not any("__str__" in c.__dict__ for c in type(v).__mro__[:-1])


def sprintf(fmt: str, args: Sequence[Any], limit: int | None = None) -> str:
    """fmt.Sprintf with Go's error markers for missing, extra and mismatched operands; with a
    `limit`, FormatError as soon as the result passes that many characters."""
    if limit is not None:
        check_print_size(args, limit)
    out: list[str] = []
    i = 0
    n = len(fmt)
    argi = 0
    reordered = False
    size = len(fmt)

    def arg_index(i: int, argi: int) -> tuple[int, int, bool]:
        """An explicit `[n]` argument index at fmt[i]: (new i, new argi, ok)."""
        if i >= n or fmt[i] != "[":
            return i, argi, True
        close = fmt.find("]", i)
        digits = fmt[i + 1 : close] if close > 0 else ""
        if not digits.isdigit() or not 1 <= int(digits) <= len(args) + 1:
            return (close + 1 if close > 0 else n), argi, False
        return close + 1, int(digits) - 1, True

    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        sp = _Spec()
        while i < n and fmt[i] in "-+ 0#":
            c = fmt[i]
            if c == "-":
                sp.minus = True
                sp.zero = False
            elif c == "+":
                sp.plus = True
            elif c == " ":
                sp.space = True
            elif c == "0":
                sp.zero = not sp.minus
            else:
                sp.sharp = True
            i += 1
        bad_index = False
        i, argi, ok = arg_index(i, argi)
        reordered = reordered or (i > 0 and fmt[i - 1] == "]")
        bad_index = bad_index or not ok
        bad_width = False
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and isinstance(args[argi], int) and not isinstance(args[argi], bool):
                w = args[argi]
                if w < 0:
                    sp.minus, sp.zero, w = True, False, -w
                sp.width = w
            else:
                bad_width = True
            argi += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                sp.width = int(fmt[start:i])
        if i < n and fmt[i] == ".":
            i += 1
            i, argi, ok = arg_index(i, argi)
            bad_index = bad_index or not ok
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and isinstance(args[argi], int) and not isinstance(args[argi], bool):
                    sp.prec = args[argi] if args[argi] >= 0 else None
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                sp.prec = int(fmt[start:i]) if i > start else 0
        if (sp.width or 0) > MAX_WIDTH or (sp.prec or 0) > MAX_WIDTH:
            raise FormatError(f"printf width or precision over {MAX_WIDTH}")
        if bad_width:
            out.append("%!(BADWIDTH)")
        i2, argi, ok = arg_index(i, argi)
        if i2 != i:
            reordered = True
        i = i2
        bad_index = bad_index or not ok
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if bad_index:
            out.append(f"%!{verb}(BADINDEX)")
            continue
        sp.verb = verb
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[argi]
        argi += 1
        if verb not in "vsqdbcoOxXUeEfFgGtT":
            out.append(_bad(verb, v, sp))
            continue
        out.append((_pointer_mark(v) if sp.verb != "T" else "") + _format_one(v, sp))
        if limit is not None:
            size += len(out[-1])
            if size > limit:
                raise FormatError(f"printf result exceeds the limit of {limit} characters")
    if argi < len(args) and not reordered:
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={value_string(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)

"""Go's fmt for template values: how `{{ .X }}`, `print`, `println` and `printf` turn values into text.

Templates written for Prometheus print `$value` as Go does (`1.234567e+06`, `0.30000000000000004`),
and `printf` verbs misused on the wrong type print Go's error markers (`%!d(string=x)`,
`%!s(MISSING)`, `%!(EXTRA int=2)`) instead of failing. This module maps Python values onto the Go
types a template sees (str → string, int → int, float → float64, bool, None → nil, list → slice,
dict → map, `HTML`, `GoTime`, `GoDuration`) and implements the verbs `v s q d b o x X c U e E f F g G
t %` with the flags `-+ 0#`, width and precision (also `*`).

Not covered: `%T` beyond the type names below, `%p`, complex numbers, `%x` on floats, Go-syntax
`%#v` of structs. Widths and precisions are capped (`MAX_WIDTH`) so `%999999999d` cannot allocate
a gigabyte before the output bound sees it.
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
    "format_float_g",
    "go_quote",
    "go_type",
    "sprint",
    "sprintf",
    "sprintln",
    "value_string",
]

MAX_WIDTH = 1 << 16


class FormatError(Exception):
    """A width or precision beyond MAX_WIDTH."""


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key or field of nil data evaluates to."""

    _inst: _NoValue | None = None

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
    if sharp and not shortest:
        ds = ds.ljust(max(prec, 1), "0")
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


def value_string(v: Any) -> str:
    """fmt's %v of one value."""
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
        return "map[" + " ".join(f"{value_string(k)}:{value_string(x)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(value_string(x) for x in v) + "]"
    return str(v)


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
        out.append(value_string(a))
        prev_string = is_string
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    """fmt.Sprintln: spaces between all operands, and a newline."""
    return " ".join(value_string(a) for a in args) + "\n"


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


def _bad(verb: str, v: Any) -> str:
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={value_string(v)})"


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
        return _bad(verb, v)
    if isinstance(v, int):
        if verb in "dbcoOqxXUv":
            return _fmt_int(v, sp)
        return _bad(verb, v)
    if isinstance(v, float):
        if verb in "veEfFgG":
            return _fmt_float(v, sp)
        return _bad(verb, v)
    if isinstance(v, str):
        if verb in "vsqxX":
            return _fmt_str(str.__str__(v), sp)
        return _bad(verb, v)
    stringer = getattr(v, "String", None)
    if callable(stringer) and verb in "vsqxX":
        return _fmt_str(str(stringer()), sp)
    if isinstance(v, list | tuple) and verb != "v":
        return "[" + " ".join(_format_one(x, sp) for x in v) + "]"
    if verb in "vs" or isinstance(v, Mapping | list | tuple):
        return _pad(value_string(v), sp)
    return _bad(verb, v)


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """fmt.Sprintf with Go's error markers for missing, extra and mismatched operands."""
    out: list[str] = []
    i = 0
    n = len(fmt)
    argi = 0
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
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        sp.verb = verb
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[argi]
        argi += 1
        if verb not in "vsqdbcoOxXUeEfFgGtT":
            out.append(_bad(verb, v))
            continue
        out.append(_format_one(v, sp))
    if argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={value_string(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)

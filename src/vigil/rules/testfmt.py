"""How `vigil rules test` prints what it compares: promtool's text, and a diff of expected vs got.

promtool prints label sets as Go's `labels.Labels.String()` (`{__name__="up", job="a"}`, every label
inside the braces), sample values as `strconv.FormatFloat(v, 'E', -1, 64)` (`1E+00`, `2.5E-01`),
eval times as `model.Duration` (`4m`) and rule-error times as Go's `time.Duration` (`4m0s`). These
are reproduced so output can be compared with promtool's and scripts grepping it keep working; the
diff under each failure is Vigil's addition, so a human sees at once which alert or sample differs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal

from vigil.model.labels import is_valid_label_name

Pairs = tuple[tuple[str, str], ...]  # a sorted label set that may keep empty values (expected ones can)


def go_quote(s: str) -> str:
    """strconv.Quote for the characters label values hold: printable text as is, the rest escaped."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def labels_string(pairs: Iterable[tuple[str, str]]) -> str:
    """Go's labels.Labels.String(); names that are not legacy names are quoted, as in 3.x."""
    return (
        "{"
        + ", ".join(f"{n if is_valid_label_name(n) else go_quote(n)}={go_quote(v)}" for n, v in pairs)
        + "}"
    )


def go_float_e(v: float) -> str:
    """strconv.FormatFloat(v, 'E', -1, 64): shortest digits that read back as v, exponent >= 2 digits."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0:
        return f"{sign}0E+00"
    t = Decimal(repr(abs(v))).normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    exp = int(t.exponent) + len(digits) - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mant}E{'+' if exp >= 0 else '-'}{abs(exp):02d}"


def go_duration(ms: int) -> str:
    """Go's time.Duration.String() for whole milliseconds: `0s`, `1.5s`, `4m0s`, `1h0m0s`."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    secs = f"{s}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    if m:
        return f"{sign}{m}m{secs}"
    return sign + secs


def indent_lines(text: str, indent: str) -> str:
    """promtool's indentLines: every line but the first gets `indent`."""
    return ("\n" + indent).join(text.split("\n"))


# ---------------------------------------------------------------------------------------------
# Alerts

Alert = tuple[Pairs, Pairs]  # labels, annotations


def alerts_string(alerts: Sequence[Alert]) -> str:
    """promtool's labelsAndAnnotations.String()."""
    if not alerts:
        return "[]"
    items = [
        f"{i}:" + indent_lines(f"\nLabels:{labels_string(lb)}\nAnnotations:{labels_string(an)}", "  ")
        for i, (lb, an) in enumerate(alerts)
    ]
    return "[\n" + ",\n".join(items) + "\n]"


def alerts_diff(exp: Sequence[Alert], got: Sequence[Alert]) -> list[str]:
    """Lines saying how `got` differs from `exp`: alerts matched by their labels, then annotations."""
    lines: list[str] = []
    unmatched = list(got)
    for labels, annots in exp:
        match = next((g for g in unmatched if g[0] == labels), None)
        if match is None:
            lines.append(f"- missing alert {labels_string(labels)}")
            continue
        unmatched.remove(match)
        if match[1] != annots:
            lines.append(f"  alert {labels_string(labels)}: annotations differ")
            lines.extend(_map_diff(dict(annots), dict(match[1]), "annotation"))
    for labels, _ in unmatched:
        lines.append(f"+ unexpected alert {labels_string(labels)}")
    return lines


def _map_diff(exp: dict[str, str], got: dict[str, str], what: str) -> list[str]:
    lines: list[str] = []
    for key in sorted(exp.keys() | got.keys()):
        e, g = exp.get(key), got.get(key)
        if e == g:
            continue
        lines.append(f"    {what} {key}:")
        lines.append(f"      - {go_quote(e) if e is not None else '(absent)'}")
        lines.append(f"      + {go_quote(g) if g is not None else '(absent)'}")
    return lines


# ---------------------------------------------------------------------------------------------
# Samples

Sample = tuple[Pairs, float, str]  # labels, value, histogram text ("" for a float sample)


def sample_string(s: Sample) -> str:
    labels, value, hist = s
    return f"{labels_string(labels)} {hist if hist else go_float_e(value)}"


def samples_string(samples: Sequence[Sample]) -> str:
    """promtool's parsedSamplesString: `nil` when empty."""
    return ", ".join(sample_string(s) for s in samples) if samples else "nil"


def samples_diff(exp: Sequence[Sample], got: Sequence[Sample], same: SampleEq) -> list[str]:
    lines: list[str] = []
    unmatched = list(got)
    for s in exp:
        match = next((g for g in unmatched if g[0] == s[0]), None)
        if match is None:
            lines.append(f"- missing   {sample_string(s)}")
            continue
        unmatched.remove(match)
        if not same(s, match):
            lines.append(f"  {labels_string(s[0])}: value differs")
            lines.append(f"      - {s[2] or go_float_e(s[1])}")
            lines.append(f"      + {match[2] or go_float_e(match[1])}")
            if math.isnan(s[1]) and math.isnan(match[1]):
                lines.append("      (NaN never equals NaN: promtool compares values with ==)")
    for g in unmatched:
        lines.append(f"+ unexpected {sample_string(g)}")
    return lines


class SampleEq:
    """Sample equality as promtool's cmp.Equal: exact floats (NaN never equal), or within one ulp with
    `fuzzy_compare` (3.x)."""

    def __init__(self, fuzzy: bool) -> None:
        self.fuzzy = fuzzy

    def floats(self, x: float, y: float) -> bool:
        if x == y:
            return True
        return self.fuzzy and (math.nextafter(x, -math.inf) == y or math.nextafter(x, math.inf) == y)

    def __call__(self, a: Sample, b: Sample) -> bool:
        return a[0] == b[0] and a[2] == b[2] and self.floats(a[1], b[1])

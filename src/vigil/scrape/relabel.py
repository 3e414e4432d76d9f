"""`metric_relabel_configs`: rewrite or drop a scraped sample's label set, with Prometheus' semantics.

Regexes are RE2, fully anchored, and `.` does not match a newline; they match in linear time
(`vigil.model.regex.compile_regex`), since label values come from the scraped target. The source
value is the source labels' values (missing ones as "") joined by the separator. `replacement`
expands `$1`, `${1}`, `$name`, `${name}` and `$$` like Go's `Regexp.Expand`: an unknown group expands
to "". A `replace` that yields an empty value deletes the target label; a target name that is not a
valid label name after expansion leaves the set unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from vigil.config.scrape import RelabelConfig
from vigil.model.labels import is_valid_label_name
from vigil.model.regex import RegexMatch, compile_regex

__all__ = ["expand", "relabel"]

# `$$`, `${name}` or `$name` (the longest run of word characters, as Go does).
_TEMPLATE_RE = re.compile(r"\$(?:(\$)|\{(\w+)\}|(\w+))")


def expand(template: str, match: RegexMatch) -> str:
    """`template` with group references filled from `match`, Go-style."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(3)
        try:
            group = match.group(int(name)) if name.isdigit() else match.group(name)
        except IndexError:  # re's error for unknown group numbers and names alike
            return ""
        return group or ""

    return _TEMPLATE_RE.sub(sub, template)


def _apply(cfg: RelabelConfig, labels: dict[str, str]) -> dict[str, str] | None:
    regex = compile_regex(cfg.regex)
    action = cfg.action
    if action == "labeldrop":
        return {k: v for k, v in labels.items() if regex.fullmatch(k) is None}
    if action == "labelkeep":
        return {k: v for k, v in labels.items() if regex.fullmatch(k) is not None}
    value = cfg.separator.join(labels.get(n, "") for n in cfg.source_labels)
    match = regex.fullmatch(value)
    if action == "keep":
        return labels if match is not None else None
    if action == "drop":
        return None if match is not None else labels
    # replace
    if match is None:
        return labels
    target = expand(cfg.target_label, match)
    if not is_valid_label_name(target):
        return labels
    result = expand(cfg.replacement, match)
    out = dict(labels)
    if result:
        out[target] = result
    else:
        out.pop(target, None)
    return out


def relabel(labels: dict[str, str], configs: Iterable[RelabelConfig]) -> dict[str, str] | None:
    """Apply the steps in order; None when a step drops the sample. `labels` is not modified."""
    current = labels
    for cfg in configs:
        step = _apply(cfg, current)
        if step is None:
            return None
        current = step
    # Empty values mean "absent" everywhere in Vigil, so strip any left by e.g. labelkeep.
    return {k: v for k, v in current.items() if v != ""}

"""Prometheus rule files: parsing and validation with the checks and messages of Prometheus 3.x.

The file is composed into YAML nodes first (not loaded into plain data), so every error carries the
line and column of the node it is about, and every error is reported rather than the first one.
Where Prometheus reports no position (label and template errors, a missing `expr`), the position of
the nearest node is given. Messages keep Prometheus' wording, so tools that grep promtool's output
work on ours.

Names: Prometheus 3.x accepts any UTF-8 metric and label name; Vigil's store takes only the legacy
names (`[a-zA-Z_:][a-zA-Z0-9_:]*`), so a rule whose output the store would refuse is rejected here,
as Prometheus 2.x did.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vigil.model.duration import parse_duration
from vigil.model.labels import METRIC_NAME, is_valid_label_name, is_valid_metric_name
from vigil.promql.errors import PromQLError
from vigil.promql.parser import parse as parse_promql

# Validates one label or annotation template (parse only) as Prometheus does — with `$labels` and
# friends defined — under the template name given (`__alert_<name>`); raises with the problem as its
# message (`vigil.template.prometheus.check`).
TemplateCheck = Callable[[str, str], None]

_GROUP_KEYS = ("name", "interval", "query_offset", "limit", "rules", "labels")
_RULE_KEYS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")


@dataclass(frozen=True)
class RuleError:
    """One problem in a rule file. `line`/`col` are 1-based; `rule_index` is 1-based, 0 for errors
    outside a rule. `lint` marks findings that are not errors (duplicate rules)."""

    file: str
    line: int
    col: int
    message: str
    group: str | None = None
    rule_index: int = 0
    rule_name: str = ""
    lint: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: "
        if self.group is not None and self.rule_index:
            group, name = _go_quote(self.group), _go_quote(self.rule_name)
            return f"{where}group {group}, rule {self.rule_index}, {name}: {self.message}"
        return where + self.message


@dataclass(frozen=True)
class RuleSpec:
    kind: str  # "record" | "alert"
    name: str
    expr: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class GroupSpec:
    name: str
    rules: list[RuleSpec]
    interval_ms: int | None = None
    query_offset_ms: int | None = None
    limit: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class RuleFileSpec:
    file: str
    groups: list[GroupSpec]

    def rule_count(self) -> int:
        return sum(len(g.rules) for g in self.groups)


def parse_rule_file(
    path: str | Path, template_check: TemplateCheck | None = None
) -> tuple[RuleFileSpec | None, list[RuleError]]:
    """Read and validate a rule file; the spec is None when there are errors."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [RuleError(name, 0, 0, f"open {name}: {reason.lower()}")]
    return parse_rule_text(text, name, template_check)


def parse_rule_text(
    text: str, file: str, template_check: TemplateCheck | None = None
) -> tuple[RuleFileSpec | None, list[RuleError]]:
    """Validate rule-file text named `file`; the spec is None when there are errors."""
    p = _Parser(file, template_check)
    spec = p.parse(text)
    errors = p.errors
    return (None if errors else spec), errors


class _Parser:
    def __init__(self, file: str, template_check: TemplateCheck | None) -> None:
        self.file = file
        self.template_check = template_check
        self.errors: list[RuleError] = []

    def err(self, node: Node | None, message: str, **ctx: object) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (0, 0)
        self.errors.append(RuleError(self.file, line, col, message, **ctx))  # type: ignore[arg-type]

    def parse(self, text: str) -> RuleFileSpec:
        root: Node | None = None
        try:
            # Only the first document counts (Prometheus ignores later ones).
            for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
                root = doc
                break
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            self.errors.append(RuleError(self.file, line, col, f"yaml: {exc.problem or exc}"))
            return RuleFileSpec(self.file, [])
        except yaml.YAMLError as exc:
            self.errors.append(RuleError(self.file, 0, 0, f"yaml: {exc}"))
            return RuleFileSpec(self.file, [])
        if root is None or _is_null(root):
            return RuleFileSpec(self.file, [])
        fields = self.mapping(root, ("groups",), "rulefmt.RuleGroups")
        groups: list[GroupSpec] = []
        seen: set[str] = set()
        for gnode in self.sequence(fields.get("groups")):
            g = self.group(gnode, seen)
            if g is not None:
                groups.append(g)
        return RuleFileSpec(self.file, groups)

    # --- YAML shapes, with Go yaml's messages -------------------------------------------------

    def mapping(self, node: Node, known: tuple[str, ...], type_name: str) -> dict[str, Node]:
        if _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.err(node, f"cannot unmarshal {_tag(node)} into {type_name}")
            return {}
        out: dict[str, Node] = {}
        first: dict[str, Node] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, ScalarNode) else ""
            if key in first:
                line = first[key].start_mark.line + 1
                self.err(k, f'mapping key "{key}" already defined at line {line}')
                continue
            first[key] = k
            if key not in known:
                self.err(k, f"field {key} not found in type {type_name}")
                continue
            out[key] = v
        return out

    def sequence(self, node: Node | None) -> list[Node]:
        if node is None or _is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.err(node, f"cannot unmarshal {_tag(node)} into a list")
            return []
        return list(node.value)

    def string(self, node: Node | None) -> str:
        if node is None or _is_null(node):
            return ""
        if not isinstance(node, ScalarNode):
            self.err(node, f"cannot unmarshal {_tag(node)} into string")
            return ""
        return str(node.value)

    def duration(self, node: Node | None) -> int | None:
        if node is None or _is_null(node):
            return None
        text = self.string(node)
        try:
            return parse_duration(text)
        except ValueError:
            self.err(node, f'not a valid duration string: "{text}"')
            return None

    def integer(self, node: Node | None) -> int:
        if node is None or _is_null(node):
            return 0
        text = self.string(node)
        try:
            return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
        except ValueError:
            self.err(node, f"cannot unmarshal {_tag(node)} `{text}` into int")
            return 0

    def string_map(self, node: Node | None) -> list[tuple[Node, str, Node, str]]:
        """(key node, key, value node, value) in file order."""
        if node is None or _is_null(node):
            return []
        if not isinstance(node, MappingNode):
            self.err(node, f"cannot unmarshal {_tag(node)} into map[string]string")
            return []
        out = []
        seen: dict[str, Node] = {}
        for k, v in node.value:
            key = self.string(k)
            if key in seen:
                self.err(k, f'mapping key "{key}" already defined at line {seen[key].start_mark.line + 1}')
                continue
            seen[key] = k
            out.append((k, key, v, self.string(v)))
        return out

    # --- groups and rules ---------------------------------------------------------------------

    def group(self, node: Node, seen: set[str]) -> GroupSpec | None:
        f = self.mapping(node, _GROUP_KEYS, "rulefmt.RuleGroup")
        name = self.string(f.get("name"))
        if name == "":
            self.err(node, "Groupname must not be empty")
        if name in seen:
            self.err(node, f'groupname: "{name}" is repeated in the same file')
        seen.add(name)
        interval = self.duration(f.get("interval"))
        offset = self.duration(f.get("query_offset"))
        limit = self.integer(f.get("limit"))
        labels: dict[str, str] = {}
        for knode, k, _vnode, v in self.string_map(f.get("labels")):
            if not is_valid_label_name(k) or k == METRIC_NAME:
                self.err(knode, f"invalid label name: {k}")
            labels[k] = v
        rules = [self.rule(r, name, i) for i, r in enumerate(self.sequence(f.get("rules")), 1)]
        return GroupSpec(
            name,
            [r for r in rules if r is not None],
            interval_ms=interval or None,  # 0 means "the global interval", as in Prometheus
            query_offset_ms=offset,
            limit=limit,
            labels=labels,
            line=node.start_mark.line + 1,
        )

    def rule(self, node: Node, group: str, index: int) -> RuleSpec | None:
        before = len(self.errors)
        f = self.mapping(node, _RULE_KEYS, "rulefmt.Rule")
        record, alert = self.string(f.get("record")), self.string(f.get("alert"))
        name = alert or record
        expr = self.string(f.get("expr"))
        for_ms = self.duration(f.get("for")) or 0
        keep_ms = self.duration(f.get("keep_firing_for")) or 0
        labels = self.string_map(f.get("labels"))
        annotations = self.string_map(f.get("annotations"))

        def err(n: Node | None, message: str) -> None:
            self.err(n, message, group=group, rule_index=index, rule_name=name)

        rnode = f.get("record")
        if record and alert:
            err(rnode, "only one of 'record' and 'alert' must be set")
        if not record and not alert:
            err(node, "one of 'record' or 'alert' must be set")
        if expr == "":
            err(f.get("expr", node), "field 'expr' must be set in rule")
        else:
            try:
                parse_promql(expr)
            except PromQLError as exc:
                err(f["expr"], f"could not parse expression: {exc}")
        if record:
            if annotations:
                err(rnode, "invalid field 'annotations' in recording rule")
            if for_ms:
                err(rnode, "invalid field 'for' in recording rule")
            if keep_ms:
                err(rnode, "invalid field 'keep_firing_for' in recording rule")
            if not is_valid_metric_name(record):
                err(rnode, f"invalid recording rule name: {record}")
            if "{" in record or "}" in record:
                err(rnode, f"braces present in the recording rule name; should it be in expr?: {record}")
        for knode, k, _v, _ in labels:
            if not is_valid_label_name(k) or k == METRIC_NAME:
                err(knode, f"invalid label name: {k}")
        for knode, k, _v, _ in annotations:
            if not is_valid_label_name(k):
                err(knode, f"invalid annotation name: {k}")
        if alert and self.template_check is not None:
            for what, pairs in (("label", labels), ("annotation", annotations)):
                for _k, k, vnode, v in pairs:
                    try:
                        self.template_check(v, f"__alert_{name}")
                    except Exception as exc:  # the checker's error is the message
                        err(vnode, f'{what} "{k}": {exc}')
        if len(self.errors) > before:
            return None
        return RuleSpec(
            "alert" if alert else "record",
            name,
            expr,
            for_ms=for_ms,
            keep_firing_for_ms=keep_ms,
            labels={k: v for _, k, _, v in labels},
            annotations={k: v for _, k, _, v in annotations},
            line=node.start_mark.line + 1,
        )


def duplicate_rules(spec: RuleFileSpec) -> list[tuple[str, list[tuple[str, str]]]]:
    """Rules with the same output name and labels (group labels + rule labels), as promtool's
    duplicate-rules lint: each duplicated (name, sorted labels) once, sorted."""
    keys = sorted((r.name, sorted({**g.labels, **r.labels}.items())) for g in spec.groups for r in g.rules)
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for a, b in itertools.pairwise(keys):
        if a == b and (not out or out[-1] != b):
            out.append(b)
    return out


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _tag(node: Node) -> str:
    tag: str = node.tag
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


def _go_quote(s: str) -> str:
    """Quoted as Go's %q does for printable text (what promtool prints)."""
    return json.dumps(s, ensure_ascii=False)

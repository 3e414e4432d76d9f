"""Go text/template, in Python: the template language Prometheus rules and Alertmanager notifications use.

Rules' annotations and labels, and notification templates, are written for Go's text/template and
must render exactly as Prometheus and Alertmanager render them, so this is a real implementation of
that language (lexer `lex`, parser `parse`, evaluator `exec`, Go's fmt in `fmt`), not string
substitution. The function sets of Prometheus and Alertmanager are in `prometheus` and
`alertmanager`; function maps are passed in, there is no global state.

`Template` is a set of named templates as Go's `*template.Template` is: `parse` adds text (its body
under the template's name, its `{{define}}`s under theirs), `execute` runs one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vigil.template.exec import DEFAULT_LIMITS, Escaper, Limits, TemplateError, Tree, execute
from vigil.template.fmt import HTML, NO_VALUE
from vigil.template.funcs import Func, FuncError, as_func
from vigil.template.parse import ParseError, parse_trees

__all__ = [
    "HTML",
    "NO_VALUE",
    "Func",
    "FuncError",
    "Limits",
    "Template",
    "TemplateError",
    "parse",
]

MISSINGKEY = ("default", "invalid", "zero", "error")


class Template:
    """A named set of parsed templates with a function map, Go's `missingkey` option and bounds."""

    def __init__(
        self,
        name: str = "",
        *,
        funcs: Mapping[str, Func | Callable[..., Any]] | None = None,
        missingkey: str = "default",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if missingkey not in MISSINGKEY:
            raise ValueError(f"missingkey: expected one of {', '.join(MISSINGKEY)}, got {missingkey!r}")
        self.name = name
        self.funcs: dict[str, Func] = {k: as_func(f) for k, f in (funcs or {}).items()}
        self.missingkey = "default" if missingkey == "invalid" else missingkey
        self.limits = limits
        self.trees: dict[str, Tree] = {}

    def clone(self, name: str | None = None) -> Template:
        """A copy sharing the parsed trees (they are immutable once parsed), optionally renamed."""
        t = Template(self.name if name is None else name, missingkey=self.missingkey, limits=self.limits)
        t.funcs = dict(self.funcs)
        t.trees = dict(self.trees)
        return t

    def add_funcs(self, funcs: Mapping[str, Func | Callable[..., Any]]) -> Template:
        self.funcs.update({k: as_func(f) for k, f in funcs.items()})
        return self

    def parse(self, text: str, parse_name: str | None = None) -> Template:
        """Parse `text` into the set; raises TemplateError with Go's message (`template: name:line: ...`).

        As in Go, the body becomes template `self.name` unless it is empty (only definitions and
        space) and that template already exists; an empty definition never replaces a non-empty one.
        """
        pname = self.name if parse_name is None else parse_name
        try:
            root, defs = parse_trees(text, self.funcs, max_depth=self.limits.max_depth)
        except ParseError as e:
            raise TemplateError(f"template: {pname}:{e.line}: {e.message}") from None
        except RecursionError:
            raise TemplateError(f"template: {pname}: nested too deeply") from None
        for name, body in defs.items():
            old = self.trees.get(name)
            if old is not None and _empty(body) and not _empty(old.root):
                continue
            self.trees[name] = Tree(name, body, text, pname)
        old = self.trees.get(self.name)
        if not (old is not None and _empty(root)):
            self.trees[self.name] = Tree(self.name, root, text, pname)
        return self

    def execute(self, data: Any, name: str | None = None, *, escaper: Escaper | None = None) -> str:
        """Render template `name` (default: this template's own) with `data` as dot and `$`."""
        return execute(
            self.trees,
            self.name if name is None else name,
            data,
            funcs=self.funcs,
            missingkey=self.missingkey,
            limits=self.limits,
            escaper=escaper,
        )


def _empty(root: Any) -> bool:
    from vigil.template.parse import TextNode

    return all(isinstance(n, TextNode) and not n.text.strip() for n in root.nodes)


def parse(
    text: str,
    name: str = "",
    *,
    funcs: Mapping[str, Func | Callable[..., Any]] | None = None,
    missingkey: str = "default",
    limits: Limits = DEFAULT_LIMITS,
) -> Template:
    """A new Template named `name` holding `text`."""
    return Template(name, funcs=funcs, missingkey=missingkey, limits=limits).parse(text)

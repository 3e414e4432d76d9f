"""The evaluator of parsed Go templates: a tree and data in, text out, with Go's semantics and bounds.

Semantics follow Go's text/template: truthiness (empty strings, slices, maps, zero numbers, nil
are false; structs always true), field lookup (methods first, then struct fields or map keys; a
missing map key per the `missingkey` option), `range` over slices and maps (keys sorted), `with`,
variables scoped to their control structure, the builtins `and or not len index slice print printf
println eq ne lt le gt ge html js urlquery call`, and Go's error messages with their position
(`template: name:line:col: executing "name" at <node>: message`).

Data is Python: str, int, float, bool, None, lists, dicts, and objects whose public attributes are
fields and whose public methods are Go methods (a dict or list subclass may add methods, e.g.
`SortedPairs`); `fmt.NO_VALUE` is Go's invalid value.

Every evaluation is bounded (`Limits`): output size, evaluation steps and template call depth,
each failing with a TemplateError naming the limit instead of hanging or eating memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from vigil.template.fmt import (
    HTML,
    NO_VALUE,
    FormatError,
    check_print_size,
    go_type,
    is_struct,
    sprint,
    sprintf,
    sprintln,
    struct_fields,
    value_string,
)
from vigil.template.funcs import Func, FuncError, as_func, html_escape, js_escape, query_escape
from vigil.template.lex import repr_go
from vigil.template.parse import (
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)

__all__ = ["DEFAULT_LIMITS", "Escaper", "Limits", "RawText", "TemplateError", "Tree", "execute"]


class TemplateError(Exception):
    """A template failed to parse or execute; the message is Go's (`template: name:line: ...`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Work bounds of one execution (and of parse nesting)."""

    # The defaults fit notification bodies: Alertmanager's own email template writes ~2 MB for a
    # group of 1000 alerts; alert annotations get tighter ones (prometheus.ANNOTATION_LIMITS).
    max_output: int = 16 << 20  # characters written
    max_steps: int = 2_000_000  # nodes evaluated, range iterations, function calls
    max_depth: int = 100  # nested {{template}} calls; also parse nesting of parens and controls


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Tree:
    """One named template: its body, and the text and name it was parsed from (for error positions)."""

    name: str
    root: ListNode
    text: str
    parse_name: str


# An escaper gets each printed value (and the TextNode texts around them) for html/template-style
# contextual escaping; None means plain text/template output.
Escaper = Callable[[Any], str]


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_BUILTINS = frozenset(
    {"and", "or", "not", "len", "index", "slice", "print", "printf", "println",
     "eq", "ne", "lt", "le", "gt", "ge", "html", "js", "urlquery", "call"}
)  # fmt: skip

_BUILTIN_BASES = (dict, list, tuple, str, int, float, object)

# Builtins' parameter counts: (n, True) for "at least n" (variadic), (n, False) for exactly n.
_BUILTIN_ARITY: dict[str, tuple[int, bool]] = {
    "and": (1, True), "or": (1, True), "not": (1, False), "len": (1, False), "index": (1, True),
    "slice": (1, True), "printf": (1, True), "eq": (1, True), "ne": (2, False), "lt": (2, False),
    "le": (2, False), "gt": (2, False), "ge": (2, False), "call": (1, True),
}  # fmt: skip


def _method(obj: Any, name: str) -> Callable[..., Any] | None:
    """A Go-visible method: a public callable defined by a class of obj other than the builtins."""
    if name[:1] == "_":
        return None
    for cls in type(obj).__mro__:
        if cls in _BUILTIN_BASES:
            break
        attr = cls.__dict__.get(name)
        if attr is not None:
            if isinstance(attr, property):
                return None
            bound = getattr(obj, name)
            return bound if callable(bound) else None
    return None


def _zero_of_values(m: Mapping[Any, Any]) -> Any:
    """The zero value of a map's element type: declared by the map's class (`go_elem_zero`), else
    inferred from its values, as Python maps carry no element type."""
    declared = getattr(type(m), "go_elem_zero", _MISSING)
    if declared is not _MISSING:
        return declared
    kinds = {type(v) for v in m.values()}
    if not kinds or kinds <= {str, HTML}:
        return ""
    if kinds == {int}:
        return 0
    if kinds == {float}:
        return 0.0
    if kinds == {bool}:
        return False
    return None


def _truth(v: Any) -> bool:
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float | str):
        return bool(v)
    if isinstance(v, Mapping | list | tuple):
        return len(v) > 0
    return True


class _State:
    def __init__(
        self,
        trees: Mapping[str, Tree],
        funcs: Mapping[str, Func],
        missingkey: str,
        limits: Limits,
        escaper: Escaper | None,
    ) -> None:
        self.trees = trees
        self.funcs = funcs
        self.missingkey = missingkey
        self.limits = limits
        self.escaper = escaper
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.depth = 0
        self.tree: Tree = next(iter(trees.values())) if trees else Tree("", ListNode(0), "", "")
        self.node: Node | None = None
        self.vars: list[tuple[str, Any]] = []

    # -- errors and bounds --
    def fail(self, msg: str, node: Node | None = None) -> NoReturn:
        node = node or self.node
        t = self.tree
        if node is None:
            raise TemplateError(f"template: {t.name}: {msg}")
        text = t.text[: node.pos]
        nl = text.rfind("\n")
        col = node.pos if nl < 0 else node.pos - (nl + 1)
        line = 1 + text.count("\n")
        ctx = str(node)
        raise TemplateError(f'template: {t.parse_name}:{line}:{col}: executing "{t.name}" at <{ctx}>: {msg}')

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            self.fail(f"evaluation exceeds the limit of {self.limits.max_steps} steps")

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > self.limits.max_output:
            self.fail(f"output exceeds the limit of {self.limits.max_output} characters")
        self.out.append(s)

    # -- variables --
    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        self.fail(f"undefined variable: {name}")

    # -- walking --
    def walk(self, dot: Any, node: Node) -> None:
        self.step()
        self.node = node
        if isinstance(node, TextNode):
            self.write(self.escaper(RawText(node.text)) if self.escaper else node.text)
        elif isinstance(node, ActionNode):
            pipe = node.pipe
            if self.escaper is not None and not pipe.decl:
                pipe = self.merge_predefined_escaper(pipe)
            v = self.eval_pipeline(dot, pipe)
            if not node.pipe.decl:
                self.print_value(node, v)
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, IfNode | WithNode):
            mark = len(self.vars)
            v = self.eval_pipeline(dot, node.pipe)
            if _truth(v):
                self.walk(v if isinstance(node, WithNode) else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
            del self.vars[mark:]
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        else:  # pragma: no cover - the parser makes no other statements
            self.fail(f"unknown node: {node}")

    def merge_predefined_escaper(self, pipe: PipeNode) -> PipeNode:
        """html/template folds a pipeline's final `html` or `urlquery` into its own contextual
        escaping (`{{ html x }}` is `{{ print x }}` escaped once), instead of escaping twice."""
        last = pipe.cmds[-1]
        first = last.args[0]
        if not isinstance(first, IdentifierNode) or first.name not in ("html", "urlquery"):
            return pipe
        if first.name in self.funcs:
            return pipe
        if len(last.args) > 1:
            printed = CommandNode(last.pos, [IdentifierNode(first.pos, "print"), *last.args[1:]])
            return PipeNode(pipe.pos, pipe.line, False, [], [*pipe.cmds[:-1], printed])
        if len(pipe.cmds) == 1:
            return pipe
        return PipeNode(pipe.pos, pipe.line, False, [], pipe.cmds[:-1])

    def print_value(self, node: Node, v: Any) -> None:
        self.node = node
        if callable(v) and not isinstance(v, str | Mapping | list | tuple) and not hasattr(v, "String"):
            self.fail(f"can't print {node} of type {go_type(v)}")
        try:
            check_print_size([v], self.limits.max_output - self.size)
        except FormatError as e:
            self.fail(f"output exceeds the limit of {self.limits.max_output} characters ({e})")
        if self.escaper is not None:
            self.write(self.escaper(v))
        else:
            self.write(value_string(v))

    def walk_range(self, dot: Any, node: RangeNode) -> None:
        mark = len(self.vars)
        v = self.eval_pipeline(dot, node.pipe)
        decl = node.pipe.decl
        del self.vars[mark:]  # the range sets its own variables per iteration
        items: Iterator[tuple[Any, Any]]
        if v is None or v is NO_VALUE:
            items = iter(())
        elif isinstance(v, Mapping):
            items = iter([(k, v[k]) for k in sorted(v, key=_map_key)])
        elif isinstance(v, list | tuple):
            items = iter(list(enumerate(v)))
        else:
            self.fail(f"range can't iterate over {value_string(v)}")  # at the last node evaluated, as Go
        ran = False
        for k, e in items:
            ran = True
            self.step()
            if node.pipe.is_assign:
                if len(decl) == 1:
                    self.set_var(decl[0].ident[0], e)
                elif len(decl) == 2:
                    self.set_var(decl[0].ident[0], k)
                    self.set_var(decl[1].ident[0], e)
            else:
                if len(decl) == 1:
                    self.vars.append((decl[0].ident[0], e))
                elif len(decl) == 2:
                    self.vars.append((decl[0].ident[0], k))
                    self.vars.append((decl[1].ident[0], e))
            try:
                self.walk(e, node.list)
            except _Continue:
                pass
            except _Break:
                del self.vars[mark:]
                break
            del self.vars[mark:]
        if not ran and node.else_list is not None:
            self.walk(dot, node.else_list)
        del self.vars[mark:]

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        tree = self.trees.get(node.name)
        if tree is None:
            self.fail(f"template {_q(node.name)} not defined", node)
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        self.depth += 1
        if self.depth > self.limits.max_depth:
            self.fail(f"exceeded maximum template depth ({self.limits.max_depth})", node)
        saved = (self.tree, self.vars)
        self.tree, self.vars = tree, [("$", new_dot)]
        try:
            self.walk(new_dot, tree.root)
        finally:
            self.tree, self.vars = saved
            self.depth -= 1

    # -- pipelines --
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        if value is _MISSING or value is None:
            # Go digs into a pipeline's interface{} result: a nil one becomes the invalid value
            # (printed "<no value>"; `print` of it still says "<nil>").
            value = NO_VALUE
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.vars.append((var.ident[0], value))
        return value

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        self.step()
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            self.node = first
            return self.eval_field_chain(dot, dot, first, first.ident, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):  # Go parses `{{ nil }}` and fails it when it runs
            self.fail("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        self.fail(f"can't evaluate command {first}")  # pragma: no cover

    def ideal_constant(self, node: NumberNode) -> Any:
        """A number constant as a value (Go's idealConstant): int64 ints, float64 floats."""
        v = node.value
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            if v < 2**64:
                self.fail(f"{node.text} overflows int", node)
            return NO_VALUE  # neither int, uint nor float-looking: Go yields no value
        return v

    def not_a_function(self, args: Sequence[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            self.fail(f"can't give argument to non-function {args[0]}")

    def eval_variable(self, dot: Any, node: VariableNode, args: Sequence[Node], final: Any) -> Any:
        self.node = node
        value = self.var(node.ident[0])
        if len(node.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, node, node.ident[1:], args, final)

    def eval_chain(self, dot: Any, chain: ChainNode, args: Sequence[Node], final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, PipeNode):
            pipe = self.eval_pipeline(dot, chain.node)
        else:
            pipe = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, idents: Sequence[str], args: Sequence[Node], final: Any
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [], _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(
        self, dot: Any, name: str, node: Node, args: Sequence[Node], final: Any, receiver: Any
    ) -> Any:
        # Errors here are reported at the node last evaluated (set by the caller), as in Go.
        if receiver is NO_VALUE:
            if self.missingkey == "error":
                self.fail(f"nil data; no entry for key {_q(name)}")
            return NO_VALUE
        if receiver is None:
            self.fail(f"nil pointer evaluating interface {{}}.{name}")
        method = _method(receiver, name)
        if method is not None:
            return self.eval_call(dot, method, None, name, node, args, final)
        has_args = len(args) > 1 or final is not _MISSING
        if isinstance(receiver, Mapping):
            if has_args:
                self.fail(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.missingkey == "zero":
                return _zero_of_values(receiver)
            if self.missingkey == "error":
                self.fail(f"map has no entry for key {_q(name)}")
            return NO_VALUE
        if (
            not isinstance(receiver, str | int | float | bool | list | tuple)
            and name[:1] != "_"
            and hasattr(receiver, name)
        ):
            if has_args:
                self.fail(f"{name} has arguments but cannot be invoked as function")
            return getattr(receiver, name)
        self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")

    def eval_function(
        self, dot: Any, ident: IdentifierNode, cmd: Node, args: Sequence[Node], final: Any
    ) -> Any:
        self.node = ident
        name = ident.name
        f = self.funcs.get(name)
        if f is None and name in _BUILTINS:
            return self.eval_builtin(dot, name, cmd, args, final)
        if f is None:
            self.fail(f"{_q(name)} is not a defined function")
        return self.eval_call(dot, f.fn, f, name, cmd, args, final)

    # -- calls --
    def eval_args(self, dot: Any, kinds: Sequence[str], args: Sequence[Node], final: Any) -> list[Any]:
        vals = [self.eval_arg(dot, k, a) for k, a in zip(kinds, args, strict=False)]
        if final is not _MISSING:
            vals.append(self.convert(final, kinds[len(args)] if len(kinds) > len(args) else "any", None))
        return vals

    def eval_call(
        self,
        dot: Any,
        fn: Callable[..., Any],
        spec: Func | None,
        name: str,
        node: Node,
        args: Sequence[Node],
        final: Any,
    ) -> Any:
        self.step()
        argn = list(args[1:])
        n = len(argn) + (0 if final is _MISSING else 1)
        if spec is None:
            spec = as_func(fn)
        params, variadic = spec.params, spec.variadic
        # Go reports the count at the function's own node, a failed call at the whole command.
        if variadic is not None:
            if n < len(params):
                self.fail(f"wrong number of args for {name}: want at least {len(params)} got {len(argn)}")
        elif n != len(params):
            self.fail(f"wrong number of args for {name}: want {len(params)} got {n}")
        kinds = list(params) + [variadic or "any"] * max(0, n - len(params))
        vals = self.eval_args(dot, kinds, argn, final)
        try:
            result = fn(*vals)
        except FuncError as e:
            self.fail(f"error calling {name}: {e}", node)
        except TemplateError:
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError, OverflowError) as e:
            self.fail(f"error calling {name}: {e}", node)
        if isinstance(result, str) and len(result) > self.limits.max_output:
            self.fail(
                f"error calling {name}: result exceeds the limit of {self.limits.max_output} characters", node
            )
        return result

    def eval_arg(self, dot: Any, kind: str, node: Node) -> Any:
        self.node = node
        if isinstance(node, DotNode):
            return self.convert(dot, kind, node)
        if isinstance(node, NilNode):
            if _nillable(kind) or kind == "value":
                return None
            self.fail(f"cannot assign nil to {kind}")
        if isinstance(node, FieldNode):
            v = self.eval_field_chain(dot, dot, node, node.ident, [node], _MISSING)
            return self.convert(v, kind, node)
        if isinstance(node, VariableNode):
            return self.convert(self.eval_variable(dot, node, [node], _MISSING), kind, node)
        if isinstance(node, PipeNode):
            return self.convert(self.eval_pipeline(dot, node), kind, node)
        if isinstance(node, IdentifierNode):
            return self.convert(self.eval_function(dot, node, node, [node], _MISSING), kind, node)
        if isinstance(node, ChainNode):
            return self.convert(self.eval_chain(dot, node, [node], _MISSING), kind, node)
        if isinstance(node, BoolNode):
            if kind in ("bool", "any", "value"):
                return node.value
            self.bad_literal(kind, node)
        if isinstance(node, StringNode):
            if kind in ("string", "any", "value"):
                return node.text
            self.bad_literal(kind, node)
        if isinstance(node, NumberNode):
            v = node.value
            if kind == "float64":
                return float(v)
            if kind == "int":
                if isinstance(v, float):
                    if v.is_integer() and not math.isinf(v):
                        return int(v)
                    self.fail(f"expected integer; found {node}")
                return v
            if kind in ("any", "value"):
                return self.ideal_constant(node)
            self.bad_literal(kind, node)
        self.fail(f"can't handle {node} for arg of type {kind}")  # pragma: no cover

    def bad_literal(self, kind: str, node: Node) -> NoReturn:
        word = {"string": "string", "int": "integer", "float64": "float", "bool": "bool"}.get(kind)
        if word is None:
            self.fail(f"can't handle {node} for arg of type {kind}")
        self.fail(f"expected {word}; found {node}")

    def convert(self, v: Any, kind: str, node: Node | None) -> Any:
        """Check a computed value against a parameter kind, as Go's validateType does (a failure is
        reported at the node evaluated last, as Go's is)."""
        if kind == "value":
            return v
        nillable = _nillable(kind)
        if v is NO_VALUE:
            if nillable:
                return None
            self.fail(f"invalid value; expected {kind}")
        if kind == "any":
            return v
        if v is None and nillable:
            return None
        if not _is_kind(v, kind):
            self.fail(f"wrong type for value; expected {kind}; got {go_type(v)}")
        return v

    # -- builtins --
    def eval_builtin(self, dot: Any, name: str, node: Node, args: Sequence[Node], final: Any) -> Any:
        self.step()
        argn = list(args[1:])
        n = len(argn) + (0 if final is _MISSING else 1)

        fn_node = self.node

        def want(k: int, at_least: bool = False) -> None:
            if (n < k) if at_least else (n != k):
                more = "at least " if at_least else ""
                self.fail(
                    f"wrong number of args for {name}: want {more}{k} got {len(argn) if at_least else n}",
                    fn_node,
                )

        def values() -> list[Any]:
            kinds = ["value"] * n
            if name == "printf" and n:
                kinds[0] = "string"
            return self.eval_args(dot, kinds, argn, final)

        # Go checks the count before it evaluates any argument.
        arity = _BUILTIN_ARITY.get(name)
        if arity is not None:
            want(arity[0], at_least=arity[1])

        if name in ("and", "or"):
            want(1, at_least=True)
            v: Any = NO_VALUE
            for a in argn:
                v = self.eval_arg(dot, "value", a)
                if _truth(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = final
            return v
        if name == "not":
            want(1)
            return not _truth(values()[0])
        vals = values()
        try:
            if name == "len":
                want(1)
                return _length(vals[0])
            if name == "index":
                want(1, at_least=True)
                return _index(vals[0], vals[1:])
            if name == "slice":
                want(1, at_least=True)
                return _slice(vals[0], vals[1:])
            if name in ("print", "println", "printf"):
                vals = [None if x is NO_VALUE else x for x in vals]
                # A printed value may go into a variable and be printed again: bound each one.
                limit = self.limits.max_output
                if name == "print":
                    check_print_size(vals, limit)
                    return sprint(vals)
                if name == "println":
                    check_print_size(vals, limit)
                    return sprintln(vals)
                want(1, at_least=True)
                return sprintf(vals[0], vals[1:], limit)
            if name in ("html", "js", "urlquery"):
                check_print_size(vals, self.limits.max_output)
                # Go's evalArgs: one string as is, else each operand's printable value (nil ones
                # become the string "<no value>") through fmt.Sprint.
                s = (
                    vals[0]
                    if len(vals) == 1 and isinstance(vals[0], str)
                    else sprint(["<no value>" if _is_nil(x) else x for x in vals])
                )
                return {"html": html_escape, "js": js_escape, "urlquery": query_escape}[name](str(s))
            if name == "eq":
                want(1, at_least=True)
                return _eq(vals[0], vals[1:])
            if name == "ne":
                want(2)
                return not _eq(vals[0], vals[1:])
            if name in ("lt", "le", "gt", "ge"):
                want(2)
                a, b = vals
                if name == "lt":
                    return _lt(a, b)
                if name == "le":
                    return _lt(a, b) or _eq(a, [b])
                if name == "gt":
                    return not (_lt(a, b) or _eq(a, [b]))
                return not _lt(a, b)
            if name == "call":
                want(1, at_least=True)
                fn = vals[0]
                if fn is None or fn is NO_VALUE:
                    raise FuncError("call of nil")
                if not callable(fn) or isinstance(fn, type):
                    raise FuncError(f"non-function of type {go_type(fn)}")
                return fn(*vals[1:])
        except (FuncError, FormatError) as e:
            self.fail(f"error calling {name}: {e}", node)
        self.fail(f"{_q(name)} is not a defined function")  # pragma: no cover


_SCALAR_KINDS = frozenset({"string", "int", "float64", "bool", "time.Time", "time.Duration"})


def _nillable(kind: str) -> bool:
    """Go's canBeNil for a parameter kind: interfaces, pointers, slices, maps (named ones too)."""
    return kind not in _SCALAR_KINDS


def _is_kind(v: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(v, str) and not isinstance(v, HTML)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float64":
        return isinstance(v, float)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "[]string":
        return isinstance(v, list | tuple) and all(isinstance(e, str) for e in v)
    return go_type(v) == kind


class _Missing:
    pass


_MISSING: Any = _Missing()


class RawText(str):
    """Template text (not data) handed to an escaper: the escaper follows the HTML context
    through it and copies it (minus comments), where data values are escaped."""

    __slots__ = ()


def _q(s: str) -> str:
    return repr_go(s)


def _map_key(k: Any) -> tuple[int, Any]:
    if isinstance(k, bool):
        return (0, k)
    if isinstance(k, int | float):
        return (1, k)
    return (2, str(k))


def _basic_kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return None


def _is_nil(v: Any) -> bool:
    return v is None or v is NO_VALUE


def _eq(a: Any, others: Sequence[Any]) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(a)
    for b in others:
        k2 = _basic_kind(b)
        if k1 != k2:
            if not _is_nil(a) and not _is_nil(b):
                raise FuncError("incompatible types for comparison")
            truth = False
        elif k1 is not None:
            truth = a == b
        else:
            if _is_nil(a) or _is_nil(b):
                truth = _is_nil(a) == _is_nil(b)
            elif _container_kind(a) != _container_kind(b):
                raise FuncError(f"non-comparable types {_shown(a)}: {go_type(a)}, {go_type(b)}: {_shown(b)}")
            elif not _comparable(b):
                raise FuncError(f"non-comparable type {_shown(b)}: {go_type(b)}")
            else:
                truth = a is b or (type(a) is type(b) and a == b)
        if truth:
            return True
    return False


def _container_kind(v: Any) -> str:
    return "map" if isinstance(v, Mapping) else "slice" if isinstance(v, list | tuple) else "struct"


def _comparable(v: Any) -> bool:
    """Go's Type.Comparable: not maps or slices, nor structs holding them."""
    if isinstance(v, Mapping | list | tuple):
        return False
    if _basic_kind(v) is not None or _is_nil(v) or not is_struct(v):
        return True
    return all(isinstance(x, str | int | float | bool) or x is None for _, x in struct_fields(v))


def _shown(v: Any) -> str:
    """A value for an error message, bounded."""
    try:
        check_print_size([v], 4096)
    except FormatError:
        return "..."
    return value_string(v)


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if k1 is None or k2 is None:
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    if k1 == "bool":
        raise FuncError("invalid type for comparison")
    if k1 == "string":
        return bool(a.encode("utf-8", "surrogatepass") < b.encode("utf-8", "surrogatepass"))
    return bool(a < b)


def _length(v: Any) -> int:
    if _is_nil(v):
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, Mapping | list | tuple):
        return len(v)
    raise FuncError(f"len of type {go_type(v).removeprefix('*')}")  # Go dereferences pointers first


class _Byte(int):
    """A byte of a string (what `index` of a string gives): Go's uint8."""

    go_type_name = "uint8"


def _index_arg(i: Any, cap: int) -> int:
    if _is_nil(i):
        raise FuncError("cannot index slice/array with nil")
    if isinstance(i, bool) or not isinstance(i, int):
        raise FuncError(f"cannot index slice/array with type {go_type(i)}")
    if i < 0 or i > cap:
        raise FuncError(f"index out of range: {i}")
    return i


def _index(item: Any, idx: Sequence[Any]) -> Any:
    if _is_nil(item):
        raise FuncError("index of untyped nil")
    for i in idx:
        if _is_nil(item):
            raise FuncError("index of nil pointer")
        if isinstance(item, str):
            b = item.encode("utf-8", "surrogatepass")
            x = _index_arg(i, len(b))
            if x == len(b):
                raise FuncError("reflect: string index out of range")
            item = _Byte(b[x])
        elif isinstance(item, list | tuple):
            x = _index_arg(i, len(item))
            if x == len(item):
                raise FuncError("reflect: slice index out of range")
            item = item[x]
        elif isinstance(item, Mapping):
            keys = list(item)
            if keys and _basic_kind(i) != _basic_kind(keys[0]) and not _is_nil(i):
                raise FuncError(f"value has type {go_type(i)}; should be {go_type(keys[0])}")
            if _is_nil(i):
                raise FuncError("value is nil; should be of type string")
            item = item[i] if i in item else _zero_of_values(item)
        else:  # Go dereferences a pointer before it looks at what it indexes
            raise FuncError(f"can't index item of type {go_type(item).removeprefix('*')}")
    return item


def _slice(item: Any, idx: Sequence[Any]) -> Any:
    if _is_nil(item):
        raise FuncError("slice of untyped nil")
    if len(idx) > 3:
        raise FuncError(f"too many slice indexes: {len(idx)}")
    if isinstance(item, str):
        if len(idx) == 3:
            raise FuncError("cannot 3-index slice a string")
        b = item.encode("utf-8", "surrogatepass")
        cap = len(b)
    elif isinstance(item, list | tuple):
        cap = len(item)
    else:
        raise FuncError(f"can't slice item of type {go_type(item)}")
    bounds = [0, cap]
    for k, i in enumerate(idx):
        bounds[k : k + 1] = [_index_arg(i, cap)]
    lo, hi = bounds[0], bounds[1]
    if lo > hi:
        raise FuncError(f"invalid slice index: {lo} > {hi}")
    if len(idx) == 3 and bounds[1] > bounds[2]:
        raise FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    if isinstance(item, str):
        part = item.encode("utf-8", "surrogatepass")[lo:hi].decode("utf-8", "replace")
        return type(item)(part) if type(item) is not str else part  # template.HTML stays HTML
    part_list = list(item[lo:hi])
    if type(item) not in (list, tuple):  # a named slice type (template.Pairs) keeps its type
        try:
            return type(item)(part_list)
        except TypeError:
            pass
    return part_list


def execute(
    trees: Mapping[str, Tree],
    name: str,
    data: Any,
    *,
    funcs: Mapping[str, Func],
    missingkey: str = "default",
    limits: Limits = DEFAULT_LIMITS,
    escaper: Escaper | None = None,
) -> str:
    """Run template `name` of `trees` on `data`; raises TemplateError as Go's Execute would fail."""
    st = _State(trees, funcs, missingkey, limits, escaper)
    tree = trees.get(name)
    if tree is None:
        raise TemplateError(f"template: no template {_q(name)} associated with template {_q(name)}")
    st.tree = tree
    st.vars = [("$", data)]
    try:
        st.walk(data, tree.root)
    except RecursionError:
        raise TemplateError(f"template: {name}: evaluation nested too deeply") from None
    except (_Break, _Continue):  # pragma: no cover - the parser confines them to range
        raise TemplateError(f"template: {name}: break or continue outside range") from None
    return "".join(st.out)

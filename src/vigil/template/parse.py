"""The parser of Go's text/template syntax: tokens in, a tree of nodes per template name out.

It follows Go's grammar and its parse-time checks, because Prometheus and promtool reject rules at
load time on exactly these: functions must be known when the text is parsed (`function "x" not
defined`), variables must be declared before use and go out of scope at `{{end}}`, `{{break}}`
and `{{continue}}` only inside `{{range}}`, `{{define}}` only at the top level. `{{block}}` is a
definition plus a call, as in Go.

Each node keeps its position (character offset) so the evaluator can say where an error happened
as Go does (`template: name:line:col: executing "name" at <node>: ...`); `str(node)` prints the node
back in Go's form for that message. Nesting is bounded (`max_depth`) so hostile text cannot
exhaust the Python stack.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from vigil.template.lex import Kind, LexError, Token, lex, repr_go

__all__ = [
    "ActionNode",
    "BoolNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "FieldNode",
    "IdentifierNode",
    "IfNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "ParseError",
    "PipeNode",
    "RangeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "VariableNode",
    "WithNode",
    "parse_trees",
]


class ParseError(Exception):
    """A syntax error; `str()` is Go's message without the `template: name:line:` prefix."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class TextNode(Node):
    text: str

    def __str__(self) -> str:
        return repr_go(self.text)


@dataclass(slots=True)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(slots=True)
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(slots=True)
class VariableNode(Node):
    ident: list[str]  # "$x" then field names

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass(slots=True)
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass(slots=True)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(slots=True)
class FieldNode(Node):
    ident: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


@dataclass(slots=True)
class ChainNode(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass(slots=True)
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(slots=True)
class NumberNode(Node):
    text: str
    value: int | float

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class StringNode(Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(slots=True)
class CommandNode(Node):
    args: list[Node]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(slots=True)
class PipeNode(Node):
    line: int
    is_assign: bool
    decl: list[VariableNode]
    cmds: list[CommandNode]

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass(slots=True)
class ActionNode(Node):
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(slots=True)
class _Branch(Node):
    line: int
    pipe: PipeNode
    list: ListNode
    else_list: ListNode | None

    def _str(self, word: str) -> str:
        s = "{{" + word + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


@dataclass(slots=True)
class IfNode(_Branch):
    def __str__(self) -> str:
        return self._str("if")


@dataclass(slots=True)
class WithNode(_Branch):
    def __str__(self) -> str:
        return self._str("with")


@dataclass(slots=True)
class RangeNode(_Branch):
    def __str__(self) -> str:
        return self._str("range")


@dataclass(slots=True)
class BreakNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(slots=True)
class ContinueNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(slots=True)
class TemplateNode(Node):
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        if self.pipe is None:
            return "{{template " + repr_go(self.name) + "}}"
        return "{{template " + repr_go(self.name) + " " + str(self.pipe) + "}}"


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote(quoted: str, line: int) -> str:
    """Go's strconv.Unquote for "..." strings and '...' chars (the quote must be escaped inside)."""
    q = quoted[0]
    if q == "`":
        return quoted[1:-1].replace("\r", "")
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            if ch == q:
                raise ParseError(f"invalid syntax in {quoted}", line)
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= n:
            raise ParseError("invalid syntax", line)
        e = body[i]
        i += 1
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
        elif e == q:
            out.append(q)
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ParseError("invalid syntax", line)
            cp = int(digits, 16)
            i += width
            if e == "x":
                # \xNN is a byte: collect a run of them and decode as UTF-8 (Go strings are bytes).
                raw = bytearray([cp])
                while body.startswith("\\x", i) and len(body) >= i + 4:
                    raw.append(int(body[i + 2 : i + 4], 16))
                    i += 4
                out.append(raw.decode("utf-8", "replace"))
            else:
                if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise ParseError("invalid syntax", line)
                out.append(chr(cp))
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise ParseError("invalid syntax", line)
            out.append(bytes([int(digits, 8)]).decode("utf-8", "replace"))
            i += 2
        else:
            raise ParseError("invalid syntax", line)
    return "".join(out)


def parse_number(text: str, line: int) -> int | float:
    """A Go number constant: an int if it is one (`1`, `0x1F`, `0o17`, `017`, `'a'`), else a float64."""
    if text.startswith("'"):
        s = unquote(text, line)
        if len(s) != 1:
            raise ParseError(f"malformed character constant: {text}", line)
        return ord(s)
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    body = t.lstrip("+-")
    if body.endswith("i"):
        raise ParseError(f"complex constants are not supported: {text}", line)
    low = body.lower()
    try:
        if low.startswith(("0x", "0o", "0b")):
            if low.startswith("0x") and ("." in low or "p" in low):
                return sign * float.fromhex(body)
            return sign * int(body, 0)
        if "." in body or "e" in low:
            return sign * float(body)
        if len(body) > 1 and body.startswith("0"):
            if any(c in "89" for c in body):
                raise ParseError(f"integer overflow: {repr_go(text)}", line)  # Go's wording
            return sign * int(body, 8)
        return sign * int(body, 10)
    except ValueError:
        raise ParseError(f"illegal number syntax: {repr_go(text)}", line) from None


BUILTIN_NAMES = frozenset(
    {
        "and", "or", "not", "len", "index", "slice", "print", "printf", "println",
        "eq", "ne", "lt", "le", "gt", "ge", "html", "js", "urlquery", "call",
    }
)  # fmt: skip


class _Parser:
    def __init__(self, text: str, funcs: Container[str], max_depth: int) -> None:
        try:
            self.toks = lex(text)
        except LexError as e:
            raise ParseError(e.message, e.line) from None
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.max_depth = max_depth
        self.defs: dict[str, ListNode] = {}

    # -- tokens --
    def peek(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind is not Kind.EOF:
            self.i += 1
        return t

    def backup(self) -> None:
        self.i -= 1

    def next_non_space(self) -> Token:
        t = self.next()
        while t.kind is Kind.SPACE:
            t = self.next()
        return t

    def peek_non_space(self) -> Token:
        t = self.next_non_space()
        if t.kind is not Kind.EOF:  # next() does not move past EOF, so there is nothing to undo
            self.backup()
        return t

    def fail(self, msg: str, tok: Token | None = None) -> ParseError:
        return ParseError(msg, (tok or self.toks[max(self.i - 1, 0)]).line)

    def expect(self, kind: Kind, context: str) -> Token:
        t = self.next_non_space()
        if t.kind is not kind:
            raise self.fail(f"unexpected {t.describe()} in {context}", t)
        return t

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.fail(f"template nesting exceeds the limit of {self.max_depth}", tok)

    # -- structure --
    def parse_top(self) -> ListNode:
        root = ListNode(0)
        while self.peek().kind is not Kind.EOF:
            t = self.peek()
            if t.kind is Kind.LEFT:
                save = self.i
                self.next()
                kw = self.next_non_space()
                if kw.kind is Kind.KEYWORD and kw.text == "define":
                    self.parse_definition(kw)
                    continue
                self.i = save
            node, _ = self.text_or_action()
            if isinstance(node, _End):
                raise self.fail(f"unexpected {node.word}", node.tok)
            root.nodes.append(node)
        return root

    def parse_definition(self, kw: Token) -> None:
        name_tok = self.next_non_space()
        if name_tok.kind not in (Kind.STRING, Kind.RAW):
            raise self.fail(f"unexpected {name_tok.describe()} in define clause", name_tok)
        name = unquote(name_tok.text, name_tok.line)
        self.expect(Kind.RIGHT, "define clause")
        saved = self.vars
        self.vars = ["$"]
        body, end = self.item_list(kw)
        self.vars = saved
        if end.word != "{{end}}":
            raise self.fail(f"unexpected {end.word} in definition", end.tok)
        self.add_def(name, body)

    def add_def(self, name: str, body: ListNode) -> None:
        # As Go: within one text a name is defined once, though an empty definition may repeat a
        # name and never replaces a non-empty one (across texts, Template.parse lets later win).
        old = self.defs.get(name)
        if old is not None and not _is_empty(old):
            if _is_empty(body):
                return
            raise self.fail(f"template: multiple definition of template {repr_go(name)}")
        self.defs[name] = body

    def item_list(self, opener: Token) -> tuple[ListNode, _End]:
        """Nodes up to {{end}} or {{else}} (which is returned, not consumed beyond its delimiter)."""
        lst = ListNode(opener.pos)
        while True:
            if self.peek().kind is Kind.EOF:
                raise self.fail("unexpected EOF", self.peek())
            node, _ = self.text_or_action()
            if isinstance(node, _End):
                return lst, node
            lst.nodes.append(node)

    def text_or_action(self) -> tuple[Node | _End, None]:
        t = self.next()
        if t.kind is Kind.TEXT:
            return TextNode(t.pos, t.text), None
        if t.kind is Kind.LEFT:
            return self.action(t), None
        raise self.fail(f"unexpected {t.describe()}", t)

    def action(self, left: Token) -> Node | _End:
        t = self.next_non_space()
        if t.kind is Kind.KEYWORD:
            w = t.text
            if w == "end":
                self.expect(Kind.RIGHT, "end")
                return _End("{{end}}", t, None)
            if w == "else":
                return self.else_(t)
            if w in ("if", "with", "range"):
                return self.control(w, t)
            if w == "block":
                return self.block(t)
            if w == "template":
                return self.template(t)
            if w in ("break", "continue"):
                self.expect(Kind.RIGHT, "{{" + w + "}}")
                if self.range_depth == 0:
                    raise self.fail(f"{{{{{w}}}}} outside {{{{range}}}}", t)
                return BreakNode(t.pos, t.line) if w == "break" else ContinueNode(t.pos, t.line)
        self.backup()
        return ActionNode(left.pos, t.line, self.pipeline("command", Kind.RIGHT))

    def else_(self, t: Token) -> _End:
        nxt = self.peek_non_space()
        if nxt.kind is Kind.KEYWORD and nxt.text in ("if", "with"):
            # {{else if}} / {{else with}}: the rest of the action opens a nested branch.
            return _End("{{else}}", t, nxt.text)
        self.expect(Kind.RIGHT, "else")
        return _End("{{else}}", t, None)

    def control(self, word: str, t: Token) -> Node:
        self.enter(t)
        saved = len(self.vars)
        if word == "range":
            self.range_depth += 1
        pipe = self.pipeline(word, Kind.RIGHT)
        body, end = self.item_list(t)
        if word == "range":
            self.range_depth -= 1
        else_list: ListNode | None = None
        if end.word == "{{else}}":
            if end.chain is not None:
                if end.chain != word:  # {{else if}} only in an if, {{else with}} only in a with
                    raise self.fail(f"unexpected <{end.chain}> in input", end.tok)
                self.next_non_space()  # the `if` / `with` keyword
                # The nested branch's variables are scoped like ours: they end at the shared {{end}}.
                nested = self.control(end.chain, end.tok)
                else_list = ListNode(nested.pos, [nested])
            else:
                else_list, end2 = self.item_list(end.tok)
                if end2.word != "{{end}}":
                    raise self.fail(f"expected end; found {end2.word}", end2.tok)
        del self.vars[saved:]
        self.depth -= 1
        cls = {"if": IfNode, "with": WithNode, "range": RangeNode}[word]
        return cls(t.pos, t.line, pipe, body, else_list)

    def block(self, t: Token) -> Node:
        name_tok = self.next_non_space()
        if name_tok.kind not in (Kind.STRING, Kind.RAW):
            raise self.fail(f"unexpected {name_tok.describe()} in block clause", name_tok)
        name = unquote(name_tok.text, name_tok.line)
        pipe = self.pipeline("block clause", Kind.RIGHT)
        saved_vars, saved_range = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        self.enter(t)
        body, end = self.item_list(t)
        self.depth -= 1
        self.vars, self.range_depth = saved_vars, saved_range
        if end.word != "{{end}}":
            raise self.fail(f"unexpected {end.word} in block clause", end.tok)
        self.add_def(name, body)
        return TemplateNode(name_tok.pos, t.line, name, pipe)

    def template(self, t: Token) -> Node:
        name_tok = self.next_non_space()
        if name_tok.kind not in (Kind.STRING, Kind.RAW):
            raise self.fail(f"unexpected {name_tok.describe()} in template clause", name_tok)
        name = unquote(name_tok.text, name_tok.line)
        pipe: PipeNode | None = None
        if self.next_non_space().kind is not Kind.RIGHT:
            self.backup()
            pipe = self.pipeline("template clause", Kind.RIGHT)
        return TemplateNode(name_tok.pos, t.line, name, pipe)

    # -- pipelines --
    def pipeline(self, context: str, end: Kind) -> PipeNode:
        start = self.peek_non_space()
        pipe = PipeNode(start.pos, start.line, False, [], [])
        # Declarations: `$x :=`, `$x =`, and in range `$i, $e :=`.
        save = self.i
        v = self.next_non_space()
        if v.kind is Kind.VARIABLE:
            op = self.next()
            while op.kind is Kind.SPACE:
                op = self.next()
            if op.kind in (Kind.DECLARE, Kind.ASSIGN) or (op.kind is Kind.COMMA and context == "range"):
                pipe.is_assign = op.kind is Kind.ASSIGN
                var = VariableNode(v.pos, [v.text])
                pipe.decl.append(var)
                if op.kind is Kind.COMMA:
                    v2 = self.next_non_space()
                    if v2.kind is not Kind.VARIABLE:
                        raise self.fail(f"missing range variable: {v2.describe()}", v2)
                    op2 = self.next_non_space()
                    if op2.kind not in (Kind.DECLARE, Kind.ASSIGN):
                        raise self.fail(f"too many declarations in {context}", op2)
                    pipe.is_assign = op2.kind is Kind.ASSIGN
                    pipe.decl.append(VariableNode(v2.pos, [v2.text]))
                for d in pipe.decl:
                    # `$x = ...` of an undeclared $x parses; Go fails it when it runs.
                    if not pipe.is_assign:
                        self.vars.append(d.ident[0])  # in scope from here on, as in Go
            elif op.kind is Kind.COMMA:
                raise self.fail(f"too many declarations in {context}", op)
            else:
                self.i = save
        else:
            self.i = save
        while True:
            t = self.next_non_space()
            if t.kind is end:
                break
            if t.kind in (Kind.PIPE,) and pipe.cmds:
                continue
            if t.kind not in _OPERAND_START and not (t.kind is Kind.KEYWORD and t.text == "nil"):
                raise self.fail(f"unexpected {t.describe()} in {_operand_context(context)}", t)
            self.backup()
            pipe.cmds.append(self.command(end))
            nxt = self.peek()
            if nxt.kind is end:
                self.next()
                break
            if nxt.kind is not Kind.PIPE:
                raise self.fail(f"unexpected {nxt.describe()} in {_operand_context(context)}", nxt)
        if not pipe.cmds:
            raise self.fail(f"missing value for {context}", t)
        for i, c in enumerate(pipe.cmds):
            first = c.args[0]
            if i > 0 and isinstance(first, BoolNode | NumberNode | StringNode | NilNode | DotNode):
                raise self.fail(f"non executable command in pipeline stage {i + 1}", t)
        return pipe

    def command(self, end: Kind) -> CommandNode:
        cmd = CommandNode(self.peek().pos, [])
        while True:
            self.peek_non_space()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            t = self.next()
            if t.kind is Kind.SPACE:
                continue
            if t.kind in (end, Kind.PIPE, Kind.RPAREN, Kind.RIGHT):
                self.backup()
                break
            raise self.fail(f"unexpected {t.describe()} in operand", t)
        if not cmd.args:
            raise self.fail("empty command", self.peek())
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind is Kind.FIELD:
            fields: list[str] = []
            pos = self.peek().pos  # Go places a chained node at its first appended field
            while self.peek().kind is Kind.FIELD:
                fields.append(self.next().text[1:])
            if isinstance(node, FieldNode):
                return FieldNode(pos, node.ident + fields)
            if isinstance(node, VariableNode):
                return VariableNode(pos, node.ident + fields)
            if isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
                raise self.fail(f"unexpected . after term {repr_go(str(node))}")
            return ChainNode(pos, node, fields)
        return node

    def term(self) -> Node | None:
        t = self.next_non_space()
        k = t.kind
        if k is Kind.IDENT:
            if t.text not in BUILTIN_NAMES and t.text not in self.funcs:
                raise self.fail(f"function {repr_go(t.text)} not defined", t)
            return IdentifierNode(t.pos, t.text)
        if k is Kind.DOT:
            return DotNode(t.pos)
        if k is Kind.KEYWORD and t.text == "nil":
            return NilNode(t.pos)
        if k is Kind.VARIABLE:
            if t.text not in self.vars:
                raise self.fail(f"undefined variable {repr_go(t.text)}", t)
            return VariableNode(t.pos, [t.text])
        if k is Kind.FIELD:
            return FieldNode(t.pos, [t.text[1:]])
        if k is Kind.BOOL:
            return BoolNode(t.pos, t.text == "true")
        if k in (Kind.NUMBER, Kind.CHAR):
            return NumberNode(t.pos, t.text, parse_number(t.text, t.line))
        if k is Kind.LPAREN:
            self.enter(t)
            pipe = self.pipeline("parenthesized pipeline", Kind.RPAREN)
            self.depth -= 1
            return pipe
        if k in (Kind.STRING, Kind.RAW):
            return StringNode(t.pos, t.text, unquote(t.text, t.line))
        self.backup()
        return None


_OPERAND_START = frozenset(
    {Kind.BOOL, Kind.CHAR, Kind.DOT, Kind.FIELD, Kind.IDENT, Kind.NUMBER, Kind.RAW, Kind.STRING,
     Kind.VARIABLE, Kind.LPAREN}
)  # fmt: skip


def _operand_context(context: str) -> str:
    return "command" if context == "command" else context


@dataclass(slots=True)
class _End:
    word: str  # "{{end}}" or "{{else}}"
    tok: Token
    chain: str | None  # "if"/"with" for {{else if}} / {{else with}}


def _is_empty(node: ListNode) -> bool:
    return all(isinstance(n, TextNode) and not n.text.strip() for n in node.nodes)


def parse_trees(
    text: str, funcs: Container[str], *, max_depth: int = 100
) -> tuple[ListNode, dict[str, ListNode]]:
    """Parse `text`: its main body and the templates it defines (`define` / `block`).

    `funcs` holds the names of the functions the text may call besides Go's builtins. Raises
    ParseError with Go's message and the line.
    """
    p = _Parser(text, funcs, max_depth)
    root = p.parse_top()
    return root, p.defs

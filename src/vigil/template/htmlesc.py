"""html/template-style contextual autoescaping for HTML notification bodies (Alertmanager's email HTML).

Go's html/template escapes each `{{ }}` value by where it lands in the HTML: element text, an
attribute value (quoted or not), a URL attribute (`href`, `src`, ...: unsafe schemes become
`#ZgotmplZ`, the URL is %-normalised, after `?` values are query-escaped), an event handler or
`<script>` (JavaScript values and strings), `style`/`<style>` (CSS, filtered), `<title>`/`<textarea>`
(RCDATA). HTML comments in the template text are dropped. Values of type `HTML` (`safeHtml`) pass
unescaped in element text, `URL` (`safeUrl`) skips the scheme filter.

Go decides contexts when it parses (and rejects templates whose branches end in different
contexts); this escaper follows the context at run time from the template text actually emitted,
which gives the same output for templates Go accepts. CSS values are filtered as Go 1.20.4+
does (`<` and `>` rejected too; older Go, as in amtool 0.25, let them through).

Not covered: Go's parse-time errors for ambiguous contexts, `srcset`, JS regexp and
template-literal contexts, CSS strings and URLs inside CSS (values there are filtered to a safe
subset or replaced by `ZgotmplZ`), `<template>` elements, attribute-name values (filtered).
"""

from __future__ import annotations

import json
import re
from typing import Any

from vigil.template.exec import RawText
from vigil.template.fmt import HTML, NO_VALUE, sprint

__all__ = ["URL", "HtmlEscaper"]

FAILSAFE = "ZgotmplZ"


class URL(str):
    """html/template's URL type: a URL trusted not to need the scheme filter (`safeUrl`)."""

    __slots__ = ()


_HTML_TABLE = {
    "\0": "\ufffd",
    '"': "&#34;",
    "&": "&amp;",
    "'": "&#39;",
    "+": "&#43;",
    "<": "&lt;",
    ">": "&gt;",
}
_NOSPACE_TABLE = {
    **_HTML_TABLE,
    "\0": "&#xfffd;", "\t": "&#9;", "\n": "&#10;", "\v": "&#11;", "\f": "&#12;", "\r": "&#13;",
    " ": "&#32;", "=": "&#61;", "`": "&#96;",
}  # fmt: skip
_JS_STR_TABLE = {
    "\0": "\\u0000", "\t": "\\t", "\n": "\\n", "\v": "\\u000b", "\f": "\\f", "\r": "\\r",
    '"': "\\u0022", "&": "\\u0026", "'": "\\u0027", "+": "\\u002b", "/": "\\/", "<": "\\u003c",
    ">": "\\u003e", "\\": "\\\\", "`": "\\u0060", "\u2028": "\\u2028", "\u2029": "\\u2029",
}  # fmt: skip
_URL_ATTRS = frozenset(
    {"action", "archive", "background", "cite", "classid", "codebase", "data", "formaction", "href",
     "icon", "longdesc", "manifest", "poster", "profile", "src", "usemap", "xmlns"}
)  # fmt: skip
# `<` and `>` since Go 1.20.4 (CVE-2023-24539); amtool 0.25 was built with an older Go.
_CSS_UNSAFE = frozenset("\0\"'()/;@[\\]`{}<>")


def _css_value_ok(s: str) -> bool:
    """html/template's cssValueFilter: no quotes, brackets, `/`, `;`, `@`, `\\`, `--`, or the
    `expression`/`mozbinding` keywords."""
    if any(c in _CSS_UNSAFE for c in s) or "--" in s:
        return False
    low = s.lower()
    return "expression" not in low and "mozbinding" not in low


_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9:-]*")


def _replace(s: str, table: dict[str, str]) -> str:
    return "".join(table.get(c, c) if c in table or ord(c) >= 0x20 else c for c in s)


def _strip_tags(s: str) -> str:
    return re.sub(r"<[^>]*>", "", s)


def _stringify(v: Any) -> tuple[str, type | None]:
    if v is None or v is NO_VALUE:
        return "", None  # html/template skips untyped nil operands
    if isinstance(v, HTML | URL):
        return str.__str__(v), type(v)
    if isinstance(v, str):
        return str.__str__(v), None
    return sprint([v]), None


def _url_process(s: str, norm: bool) -> str:
    out: list[str] = []
    for b in s.encode("utf-8", "surrogatepass"):
        c = chr(b)
        if (c.isascii() and (c.isalnum() or c in "-._~")) or (norm and c in "!#$%&*+,/:;=?@[]"):
            out.append(c)
        else:
            out.append(f"%{b:02x}")  # lower-case hex, as html/template writes it
    return "".join(out)


def _url_filter(s: str) -> bool:
    """True if `s` is a relative URL or has a safe scheme (http, https, mailto)."""
    i = s.find(":")
    if i >= 0 and "/" not in s[:i]:
        return s[:i].lower() in ("http", "https", "mailto")
    return True


def _js_ident_part(c: str) -> bool:
    return c.isalnum() or c in "_$"


def _js_val(v: Any) -> str:
    if v is None or v is NO_VALUE:
        return " null "
    if isinstance(v, str):
        v = str.__str__(v)
    try:
        s = json.dumps(_jsonable(v), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        return f" /* {str(e).replace('*/', '* /')} */null "
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if s and (_js_ident_part(s[0]) or _js_ident_part(s[-1])):
        s = " " + s + " "
    return s


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


class HtmlEscaper:
    """The contextual escaper of one execution; the evaluator passes it every text and value."""

    def __init__(self) -> None:
        self.state = "text"  # text tag attrname afterattr beforeval attr comment rcdata script style
        self.tag = ""
        self.closing = False
        self.attr = ""
        self.delim = ""  # the attribute value quote, "" for unquoted
        self.url_part = "start"  # start, path, query
        self.js_quote = ""  # inside a JS string literal: its quote
        self.pending = ""  # template text not yet decided (a partial tag or comment opener)

    # -- values --
    def __call__(self, v: Any) -> str:
        if isinstance(v, RawText):
            return self.text(str.__str__(v))
        return self.value(v)

    def value(self, v: Any) -> str:
        out = self.flush()
        if self.state == "beforeval":  # `href={{.}}`: an unquoted attribute value starts here
            self.state, self.delim, self.url_part, self.js_quote = "attr", "", "start", ""
        st = self.state
        if st == "comment":
            return out
        if st in ("text", "rcdata"):
            s, t = _stringify(v)
            if t is HTML and st == "text":
                return out + s
            return out + _replace(s, _HTML_TABLE)  # RCDATA escapes even trusted HTML
        if st in ("tag", "attrname", "afterattr"):
            s, _ = _stringify(v)
            ok = bool(re.fullmatch(r"[A-Za-z0-9_\-]+", s))
            return out + (s if ok else FAILSAFE)
        if st in ("script",) or (st == "attr" and self.attr_kind() == "js"):
            if self.js_quote:
                s, _ = _stringify(v)
                return out + self.attr_escape(_replace(s, _JS_STR_TABLE))
            return out + self.attr_escape(_js_val(v))
        if st == "style" or (st == "attr" and self.attr_kind() == "css"):
            s, _ = _stringify(v)
            return out + (self.attr_escape(s) if _css_value_ok(s) else FAILSAFE)
        # An attribute value.
        s, t = _stringify(v)
        if self.attr_kind() == "url":
            if self.url_part == "start":
                if t is not URL and not _url_filter(s):
                    s = "#" + FAILSAFE
                s = _url_process(s, norm=True)
                self.url_part = "query" if "?" in s or "#" in s else "path"
            elif self.url_part == "path":
                s = _url_process(s, norm=True)
                if "?" in s or "#" in s:
                    self.url_part = "query"
            else:
                s = _url_process(s, norm=False)
            return out + self.attr_escape(s)
        if t is HTML:
            s = _strip_tags(s)
        return out + self.attr_escape(s)

    def attr_escape(self, s: str) -> str:
        if self.state == "attr":
            if self.delim:
                return _replace(s, _HTML_TABLE)
            return _replace(s, _NOSPACE_TABLE)
        return s

    def attr_kind(self) -> str:
        a = self.attr.lower()
        if a.startswith("on"):
            return "js"
        if a == "style":
            return "css"
        if a in _URL_ATTRS or a.endswith(("url", "uri")) or (a.startswith("data-") and a[5:] in _URL_ATTRS):
            return "url"
        return "plain"

    # -- template text: track the context, drop comments --
    def flush(self) -> str:
        s, self.pending = self.pending, ""
        return s

    def text(self, s: str) -> str:
        s = self.pending + s
        self.pending = ""
        out: list[str] = []
        i = 0
        n = len(s)
        while i < n:
            st = self.state
            c = s[i]
            if st == "text":
                if c == "<":
                    if s.startswith("<!--", i):
                        self.state = "comment"
                        i += 4
                        continue
                    if i + 1 >= n or (s.startswith("<!-", i) and i + 3 >= n) or s[i + 1 :] == "!":
                        self.pending = s[i:]  # decided by the next text
                        break
                    m = _TAG_NAME.match(s, i + 2 if s[i + 1] == "/" else i + 1)
                    if m is not None:
                        self.closing = s[i + 1] == "/"
                        self.tag = m.group().lower()
                        self.state = "tag"
                        out.append(s[i : m.end()])
                        i = m.end()
                        continue
                out.append(c)
                i += 1
            elif st == "comment":
                end = s.find("-->", i)
                if end < 0:
                    self.pending = s[max(i, n - 2) :] if s.endswith(("-", "--")) else ""
                    break
                self.state = "text"
                i = end + 3
            elif st in ("tag", "attrname", "beforeval"):
                if c == ">":
                    out.append(c)
                    i += 1
                    self.end_tag()
                elif c.isspace():
                    out.append(c)
                    i += 1
                    if st == "attrname":
                        self.state = "afterattr"
                elif c == "=" and st == "attrname":
                    out.append(c)
                    i += 1
                    self.state = "beforeval"
                elif st == "beforeval":
                    self.state = "attr"
                    self.url_part = "start"
                    self.js_quote = ""
                    if c in "\"'":
                        self.delim = c
                        out.append(c)
                        i += 1
                    else:
                        self.delim = ""
                else:
                    m = re.compile(r"[^\s=>/]+").match(s, i)
                    if m is None:
                        out.append(c)
                        i += 1
                        continue
                    self.attr = m.group()
                    self.state = "attrname"
                    out.append(m.group())
                    i = m.end()
            elif st == "afterattr":
                if c.isspace():
                    out.append(c)
                    i += 1
                elif c == "=":
                    out.append(c)
                    i += 1
                    self.state = "beforeval"
                else:
                    self.state = "tag"
            elif st == "attr":
                if (self.delim and c == self.delim) or (not self.delim and (c.isspace() or c == ">")):
                    self.state = "tag"
                    if self.delim:
                        out.append(c)
                        i += 1
                    continue
                self.track_inner(c)
                out.append(c)
                i += 1
            elif st in ("script", "style", "rcdata"):
                close = "</" + self.tag
                if s[i:].lower().startswith(close) and (st != "script" or not self.js_quote):
                    self.state = "text"
                    continue
                if st == "script":
                    self.track_js(c)
                out.append(c)
                i += 1
            else:  # pragma: no cover
                out.append(c)
                i += 1
        return "".join(out)

    def track_inner(self, c: str) -> None:
        kind = self.attr_kind()
        if kind == "url" and c in "?#":
            self.url_part = "query"
        elif kind == "url" and self.url_part == "start":
            self.url_part = "path"
        elif kind == "js":
            self.track_js(c)

    def track_js(self, c: str) -> None:
        if self.js_quote:
            if c == self.js_quote:
                self.js_quote = ""
        elif c in "\"'`":
            self.js_quote = c

    def end_tag(self) -> None:
        self.state = "text"
        if not self.closing:
            if self.tag == "script":
                self.state, self.js_quote = "script", ""
            elif self.tag == "style":
                self.state = "style"
            elif self.tag in ("textarea", "title"):
                self.state = "rcdata"

"""A small evaluator for the subset of Go ``text/template`` that our Modelfile TEMPLATEs use.

Ollama renders a model's TEMPLATE with Go's text/template. Before we write one, we render it here on
a probe conversation and compare the text with what the model's own Jinja chat template produces,
so a TEMPLATE is only emitted when it reproduces the training format exactly.

Supported: text; ``{{- ... -}}`` trimming; ``{{/* comments */}}``; ``if / else if / else / end``;
``range [$i, $x :=] pipeline [else] end``; ``$x := ...`` and ``$x = ...``; operands ``.``, ``.A.B``,
``$``, ``$.A``, ``$x``, ``$x.A``, string/raw-string/int/bool literals and ``( ... )``; functions
``eq ne lt le gt ge and or not len slice index``. Data are dicts (fields by key) and lists.
Anything else raises ``TemplateError``: an emitted template must stay inside what is verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+)|(?P<decl>:=)|(?P<eq>=)
    |(?P<comma>,)|(?P<lp>\()|(?P<rp>\))|(?P<pipe>\|)|(?P<var>\$\w*(?:\.\w+)*)|(?P<field>(?:\.\w+)+|\.)
    |(?P<ident>\w+))""", re.X)
_GO_SPACE = " \t\r\n"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


class TemplateError(ValueError):
    """The template uses something outside the supported subset, or is malformed."""


# ---- parsing ---------------------------------------------------------------------------------------
@dataclass
class _Node:
    kind: str                                   # text | output | if | range | assign
    text: str = ""
    expr: list = field(default_factory=list)    # parsed pipeline
    branches: list = field(default_factory=list)  # if: [(expr, body)]; range: [(expr, body)]
    else_body: list | None = None
    names: list[str] = field(default_factory=list)  # range/assign variables
    declare: bool = True


def _split(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", inner) items with Go's trim markers applied."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if trim_next:
            text = text.lstrip(_GO_SPACE)
        if match.group(1):
            text = text.rstrip(_GO_SPACE)
        if text:
            items.append(("text", text))
        inner = match.group(2).strip()
        if not (inner.startswith("/*") and inner.endswith("*/")):
            items.append(("action", inner))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = template[pos:]
    if trim_next:
        tail = tail.lstrip(_GO_SPACE)
    if tail:
        items.append(("text", tail))
    if "{{" in "".join(t for k, t in items if k == "text"):
        raise TemplateError("unbalanced {{ in template")
    return items


def _tokens(source: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    source = source.rstrip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"cannot parse {source[pos:]!r}")
        out.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return out


def _parse_expr(tokens: list[tuple[str, str]]) -> list:
    """A pipeline without '|': a command = operand or function call; returns a nested list AST."""
    args, i = [], 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "lp":
            depth, j = 1, i + 1
            while depth:
                if j >= len(tokens):
                    raise TemplateError("unbalanced parenthesis")
                depth += {"lp": 1, "rp": -1}.get(tokens[j][0], 0)
                j += 1
            args.append(("call", _parse_expr(tokens[i + 1:j - 1])))
            i = j
            continue
        if kind == "pipe":
            raise TemplateError("pipelines with '|' are not supported")
        if kind not in ("str", "raw", "num", "var", "field", "ident"):
            raise TemplateError(f"unexpected {value!r}")
        args.append((kind, value))
        i += 1
    return args


def parse(template: str) -> list[_Node]:
    """Parse a template into a node list (raises TemplateError outside the subset)."""
    items = _split(template)
    nodes, pos = _parse_list(items, 0, top=True)
    return nodes


def _parse_list(items, pos: int, top: bool = False) -> tuple[list[_Node], int]:
    body: list[_Node] = []
    while pos < len(items):
        kind, value = items[pos]
        if kind == "text":
            body.append(_Node("text", text=value))
            pos += 1
            continue
        word = value.split(None, 1)[0] if value else ""
        if word in ("end", "else"):
            if top:
                raise TemplateError(f"unexpected {{{{ {value} }}}}")
            return body, pos
        if word == "if":
            node, pos = _parse_if(items, pos)
        elif word == "range":
            node, pos = _parse_range(items, pos)
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise TemplateError(f"'{word}' is not supported")
        else:
            node, pos = _parse_simple(value), pos + 1
        body.append(node)
    if not top:
        raise TemplateError("missing {{ end }}")
    return body, pos


def _parse_simple(value: str) -> _Node:
    tokens = _tokens(value)
    if len(tokens) >= 2 and tokens[0][0] == "var" and tokens[1][0] in ("decl", "eq"):
        return _Node("assign", expr=_parse_expr(tokens[2:]), names=[tokens[0][1]], declare=tokens[1][0] == "decl")
    return _Node("output", expr=_parse_expr(tokens))


def _parse_if(items, pos: int) -> tuple[_Node, int]:
    node = _Node("if")
    condition = _parse_expr(_tokens(items[pos][1][2:]))
    while True:
        body, pos = _parse_list(items, pos + 1)
        node.branches.append((condition, body))
        action = items[pos][1]
        if action == "end":
            return node, pos + 1
        rest = action[4:].strip()
        if rest.startswith("if "):
            condition = _parse_expr(_tokens(rest[3:]))
            continue
        if rest:
            raise TemplateError(f"unsupported {{{{ {action} }}}}")
        node.else_body, pos = _parse_list(items, pos + 1)
        if items[pos][1] != "end":
            raise TemplateError("{{ else }} must be followed by {{ end }}")
        return node, pos + 1


def _parse_range(items, pos: int) -> tuple[_Node, int]:
    tokens = _tokens(items[pos][1][5:])
    node = _Node("range")
    if any(kind == "decl" for kind, _ in tokens):
        at = next(i for i, (kind, _) in enumerate(tokens) if kind == "decl")
        node.names = [value for kind, value in tokens[:at] if kind == "var"]
        tokens = tokens[at + 1:]
    body, pos = _parse_list(items, pos + 1)
    node.branches.append((_parse_expr(tokens), body))
    if items[pos][1] == "else":
        node.else_body, pos = _parse_list(items, pos + 1)
    if items[pos][1] != "end":
        raise TemplateError("range without {{ end }}")
    return node, pos + 1


# ---- evaluation ------------------------------------------------------------------------------------
def _truth(value: Any) -> bool:
    return not (value is None or value is False or value == 0 and not isinstance(value, str)
                or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0))


def _field(value: Any, names: list[str]) -> Any:
    for name in names:
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f"undefined variable {name}")

    def set(self, name: str, value: Any) -> None:
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f"assignment to undeclared variable {name}")


def _eval_arg(arg, dot: Any, scope: _Scope) -> Any:
    kind, value = arg
    if kind == "str":
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value[1:-1])
    if kind == "raw":
        return value[1:-1]
    if kind == "num":
        return int(value)
    if kind == "field":
        return dot if value == "." else _field(dot, value[1:].split("."))
    if kind == "var":
        head, _, rest = value.partition(".")
        return _field(scope.get(head), rest.split(".")) if rest else scope.get(head)
    if kind == "call":
        return _eval_expr(value, dot, scope)
    if kind == "ident" and value in ("true", "false"):
        return value == "true"
    raise TemplateError(f"unexpected {value!r}")


def _compare(op: str, a: Any, b: Any) -> bool:
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def _eval_expr(expr: list, dot: Any, scope: _Scope) -> Any:
    if not expr:
        raise TemplateError("empty command")
    head = expr[0]
    if head[0] != "ident" or head[1] in ("true", "false"):
        if len(expr) != 1:
            raise TemplateError("arguments after a non-function")
        return _eval_arg(head, dot, scope)
    name, args = head[1], expr[1:]
    if name == "and":  # short-circuit like Go >= 1.18
        value = None
        for arg in args:
            value = _eval_arg(arg, dot, scope)
            if not _truth(value):
                return value
        return value
    if name == "or":
        value = None
        for arg in args:
            value = _eval_arg(arg, dot, scope)
            if _truth(value):
                return value
        return value
    values = [_eval_arg(arg, dot, scope) for arg in args]
    if name == "not":
        return not _truth(values[0])
    if name == "eq":
        return any(values[0] == other for other in values[1:])
    if name == "ne":
        return values[0] != values[1]
    if name in ("lt", "le", "gt", "ge"):
        return _compare(name, values[0], values[1])
    if name == "len":
        return len(values[0] or [])
    if name == "slice":
        return values[0][values[1]:values[2]] if len(values) > 2 else values[0][values[1]:]
    if name == "index":
        return values[0][values[1]]
    raise TemplateError(f"function {name!r} is not supported")


def _print(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _run(nodes: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "output":
            out.append(_print(_eval_expr(node.expr, dot, scope)))
        elif node.kind == "assign":
            value = _eval_expr(node.expr, dot, scope)
            if node.declare:
                scope.frames[-1][node.names[0]] = value
            else:
                scope.set(node.names[0], value)
        elif node.kind == "if":
            _run_if(node, dot, scope, out)
        elif node.kind == "range":
            _run_range(node, dot, scope, out)


def _run_if(node: _Node, dot: Any, scope: _Scope, out: list[str]) -> None:
    for condition, body in node.branches:
        if _truth(_eval_expr(condition, dot, scope)):
            _run_block(body, dot, scope, out)
            return
    if node.else_body is not None:
        _run_block(node.else_body, dot, scope, out)


def _run_range(node: _Node, dot: Any, scope: _Scope, out: list[str]) -> None:
    expr, body = node.branches[0]
    items = _eval_expr(expr, dot, scope) or []
    if not items and node.else_body is not None:
        _run_block(node.else_body, dot, scope, out)
    for index, item in enumerate(items):
        scope.frames.append({})
        if len(node.names) == 2:
            scope.frames[-1].update({node.names[0]: index, node.names[1]: item})
        elif len(node.names) == 1:
            scope.frames[-1][node.names[0]] = item
        _run(body, item, scope, out)
        scope.frames.pop()


def _run_block(body: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    scope.frames.append({})
    _run(body, dot, scope, out)
    scope.frames.pop()


def render(template: str, data: dict[str, Any]) -> str:
    """Render ``template`` with ``data`` as Go's text/template would (within the subset)."""
    out: list[str] = []
    _run(parse(template), data, _Scope(data), out)
    return "".join(out)

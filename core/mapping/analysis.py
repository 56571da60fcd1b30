"""Compile-time checks of a parsed template: refused tags and names, what paths it reads.

Runs before Jinja compiles anything, so an escape attempt is refused with the field's label and
never reaches the sandbox; :func:`references` lists the ``trigger.``/``steps.`` paths a field
reads, for ``validate`` to check against the producing schemas.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, NoReturn

from jinja2 import nodes

from ..errors import TemplateError, TemplateSecurityError
from .environment import GLOBALS, SandboxEnvironment

_BLOCKED_TAGS: dict[type[nodes.Node], str] = {
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Block: "{% block %}",
    nodes.EvalContextModifier: "{% autoescape %}",
}
_ATTRIBUTE_FILTERS = {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum",
                      "min", "max", "unique", "dictsort"}



def const_key(node: nodes.Node) -> str | int | None:
    if isinstance(node, nodes.Const) and type(node.value) in (str, int):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        if type(node.node.value) is int:
            return -node.node.value  # type: ignore[no-any-return]
    return None


def expr_text(node: nodes.Node) -> str | None:
    """Source-like text of a plain variable path (``trigger.contact['e-mail']``), else None."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = expr_text(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem):
        base, key = expr_text(node.node), const_key(node.arg)
        return f"{base}[{key!r}]" if base and key is not None else None
    return None


def check_security(tree: nodes.Template, label: str) -> None:
    """Refuse, before compiling, every construct that reaches for Python internals."""

    def refuse(what: str, why: str) -> NoReturn:
        raise TemplateSecurityError(
            f"{label}: {what} is not allowed: {why}",
            hint="templates read data; they cannot reach Python internals")

    for node in tree.find_all(nodes.Node):
        for kind, tag in _BLOCKED_TAGS.items():
            if isinstance(node, kind):
                refuse(tag, "recipe templates cannot load other templates or change escaping")
        if isinstance(node, nodes.Name):
            if node.name.startswith("_"):
                refuse(repr(node.name), "names starting with '_' are reserved")
            if node.name == "self":
                refuse("'self'", "the template object is not available")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("__"):
            refuse(repr(node.attr), "attribute names starting with '__' are Python internals")
        elif isinstance(node, nodes.Getitem):
            key = const_key(node.arg)
            if isinstance(key, str) and key.startswith("__"):
                refuse(repr(key), "keys starting with '__' are Python internals")
        elif isinstance(node, nodes.Filter | nodes.Test) and node.name.startswith("_"):
            refuse(repr(node.name), "names starting with '_' are reserved")
        if isinstance(node, nodes.Filter) and node.name in _ATTRIBUTE_FILTERS:
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    if any(part.startswith("__") for part in arg.value.split(".")):
                        refuse(repr(arg.value), "attribute names starting with '__' are "
                               "Python internals")


def check_names(tree: nodes.Template, env: SandboxEnvironment, label: str) -> None:
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        table = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in table:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            close = difflib.get_close_matches(node.name, list(table), n=1)
            raise TemplateError(f"{label}: unknown {kind} {node.name!r}",
                                hint=f"did you mean {close[0]!r}?" if close else None)


def local_names(tree: nodes.Node) -> set[str]:
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names.update(m.name for m in tree.find_all(nodes.Macro))
    if any(True for _ in tree.find_all(nodes.For)):
        names.add("loop")
    if any(True for _ in tree.find_all(nodes.CallBlock)):
        names.add("caller")
    return names


def references(tree: nodes.Node, field: tuple[str | int, ...]) -> list[Reference]:
    """Every context path the template reads, cut at the first non-constant subscript."""
    local = local_names(tree)
    found: list[Reference] = []

    def chain(node: nodes.Node) -> None:
        path: list[str | int] = []
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            if isinstance(node, nodes.Getattr):
                path.append(node.attr)
            else:
                key = const_key(node.arg)
                if key is None:
                    visit(node.arg)
                    path = []
                else:
                    path.append(key)
            node = node.node
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name not in local and node.name not in GLOBALS:
                ref = Reference(node.name, tuple(reversed(path)), field)
                if ref not in found:
                    found.append(ref)
        else:
            visit(node)

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
            chain(node)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            chain(node.node.node)  # a method call reads its object, not a key named like it
            for child in node.iter_child_nodes(exclude=("node",)):
                visit(child)
        else:
            for child in node.iter_child_nodes():
                visit(child)

    visit(tree)
    return found


def single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression when the template is one ``{{ expr }}`` with only whitespace around."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [n for n in tree.body[0].nodes
             if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        return parts[0]  # type: ignore[no-any-return]
    return None


def builds_containers(expr: nodes.Node) -> bool:
    kinds = (nodes.List, nodes.Tuple, nodes.Dict, nodes.Call, nodes.Filter)
    return isinstance(expr, kinds) or any(True for _ in expr.find_all(kinds))


# ------------------------------------------------------------------------ output assembly


@dataclass(frozen=True)
class Reference:
    """A variable path a template reads, e.g. ``trigger.contact.email``."""

    root: str
    path: tuple[str | int, ...]
    field: tuple[str | int, ...]

    def __str__(self) -> str:
        return path_label(self.root, self.path)


def path_label(where: str, path: tuple[Any, ...]) -> str:
    out = where
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out

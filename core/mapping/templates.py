"""The mapping engine: recipe fields mapped with sandboxed Jinja templates.

A step's whole ``with:`` value (any nesting of dicts, lists and scalars whose strings may hold
templates) compiles once into one :class:`CompiledMapping`. Every templated string becomes one
statement of a single generated Jinja template that stores the field's value in a slot; a small
generated Python function then assembles fresh output objects from literals and slots. A string
that is exactly one ``{{ expression }}`` keeps the expression's native value; any other template
renders to text; strings without ``{{``/``{%`` are literals.

Templates run in Jinja's immutable sandbox with strict undefined values. Names starting with
``__`` and other routes to Python internals are refused before compiling, and the sandbox
refuses what slips through at run time. Error messages name the field and the problem, never a
value from the context.
"""

from __future__ import annotations

import difflib
import math
from collections import deque
from collections.abc import Callable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from types import MappingProxyType
from typing import Any, NoReturn

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.exceptions import TemplateSyntaxError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, modifies_known_mutable
from jinja2.utils import Cycler, Joiner, Namespace, missing, pass_context
from markupsafe import Markup

from ..default_plugins.filters import FILTERS, FilterError, to_json
from ..errors import TemplateError, TemplateSecurityError

__all__ = [
    "CompiledExpression",
    "CompiledMapping",
    "Reference",
    "TemplateEngine",
    "TemplateField",
    "is_template",
]

_EMIT = "splice emit"  # internal filter names contain a space: no template text can name them
_EMIT_DEEP = "splice emit deep"
_EMIT_TEXT = "splice emit text"
_TEXT = "splice text"
_GLOBALS = ("range", "dict", "namespace")
_MAX_REPEAT = 1_000_000
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


def is_template(value: str) -> bool:
    """True when the string holds Jinja syntax (``{{`` or ``{%``) rather than literal text."""
    return "{{" in value or "{%" in value


@dataclass(frozen=True)
class TemplateField:
    """One templated string of a mapping: where it sits, its text, and whether it is native."""

    path: tuple[str | int, ...]
    source: str
    is_expression: bool


@dataclass(frozen=True)
class Reference:
    """A variable path a template reads, e.g. ``trigger.contact.email``."""

    root: str
    path: tuple[str | int, ...]
    field: tuple[str | int, ...]

    def __str__(self) -> str:
        return _path_label(self.root, self.path)


# ------------------------------------------------------------------------ environment


class _MissingValue(UndefinedError):
    """Raised when a strict undefined value is used; keeps what was looked up, not the value."""

    def __init__(self, obj: Any, name: Any, hint: str | None) -> None:
        super().__init__("undefined value")
        self.obj_missing = obj is missing
        self.obj_type = "" if obj is missing else type(obj).__name__
        self.obj_is_none = obj is None
        self.name = name
        self.hint = hint


class _UnsafeAccess(SecurityError):
    """Raised as soon as a template touches an attribute the sandbox refuses."""

    def __init__(self, obj: Any, attribute: str) -> None:
        super().__init__("unsafe attribute access")
        self.obj_type = type(obj).__name__
        self.attribute = attribute
        self.mutates = modifies_known_mutable(obj, attribute)


class _NotData(TypeError):
    """A native result that is not data (a function, a loop object ...)."""


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


class _Undefined(StrictUndefined):
    """``StrictUndefined`` whose error records the failed lookup for our own message."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _MissingValue(self._undefined_obj, self._undefined_name, self._undefined_hint)


def _route_undefined_errors() -> None:
    """Point every operation that fails on an undefined value at our own error."""
    for name, value in {**vars(Undefined), **vars(StrictUndefined)}.items():
        if value is Undefined._fail_with_undefined_error:
            setattr(_Undefined, name, _Undefined._fail_with_undefined_error)


_route_undefined_errors()


def _finalize(value: Any) -> Any:
    """How values print inside text: JSON-style null/booleans, ISO dates."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, date | time):
        return _iso(value)
    if isinstance(value, dict | list):
        return to_json(value)
    return value


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, tuned for JSON data: keys win over methods, unsafe access raises at once."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise _UnsafeAccess(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > _MAX_REPEAT:
                        raise SecurityError("repetition result is too large")
        elif isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 4096:
            raise SecurityError("power result is too large")
        return super().call_binop(context, operator, left, right)


class _RenderContext(Context):
    """A Jinja context built cheaply per record; ``slots`` collects the field values."""

    def __init__(self, environment: _Environment, parent: dict[str, Any],
                 eval_ctx: EvalContext) -> None:  # noqa: D107 - skips Context.__init__ on purpose
        self.parent = parent
        self.vars = {}
        self.environment = environment
        self.eval_ctx = eval_ctx  # shared: templates cannot change it ({% autoescape %} refused)
        self.exported_vars = set()
        self.name = None
        self.globals_keys = set()
        self.blocks = {}
        self.slots: list[Any] = []


# ------------------------------------------------------------------------ slot emitters

_PLAIN = frozenset({str, int, float, bool, type(None), dict, list})
_NOT_DATA = (Macro, Namespace, LoopContext, Cycler, Joiner, Context)


def _iso(value: date | time) -> str:
    if isinstance(value, datetime) and value.utcoffset() == UTC.utcoffset(None):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _normalize(value: Any) -> Any:
    """Turn a native template result into JSON-like data, or fail on non-data objects."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, date | time):
        return _iso(value)
    if isinstance(value, _NOT_DATA) or callable(value):
        kind = "a function" if callable(value) else f"{_a(type(value).__name__)} object"
        raise _NotData(f"the expression evaluates to {kind}, not to data")
    if isinstance(value, tuple | range | set | frozenset | Iterator | KeysView | ValuesView):
        return list(value)
    return value


def _deep_normalize(value: Any, depth: int = 0) -> Any:
    """:func:`_normalize` through containers a template built (they may hide undefined values)."""
    if depth > 100:
        raise _NotData("the value is nested too deeply")
    if type(value) not in _PLAIN:
        value = _normalize(value)
    if isinstance(value, dict):
        return {_deep_normalize(k, depth + 1): _deep_normalize(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_normalize(v, depth + 1) for v in value]
    return value


@pass_context
def _emit(context: _RenderContext, value: Any) -> str:
    context.slots.append(value if type(value) in _PLAIN else _normalize(value))
    return ""


@pass_context
def _emit_deep(context: _RenderContext, value: Any) -> str:
    context.slots.append(_deep_normalize(value))
    return ""


@pass_context
def _emit_text(context: _RenderContext, value: str) -> str:
    context.slots.append(str(value))
    return ""


def _text(value: Any) -> str:
    return str(_finalize(value))


# ------------------------------------------------------------------------ static analysis


def _path_label(where: str, path: tuple[Any, ...]) -> str:
    out = where
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _const_key(node: nodes.Node) -> str | int | None:
    if isinstance(node, nodes.Const) and type(node.value) in (str, int):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        if type(node.node.value) is int:
            return -node.node.value  # type: ignore[no-any-return]
    return None


def _expr_text(node: nodes.Node) -> str | None:
    """Source-like text of a plain variable path (``trigger.contact['e-mail']``), else None."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _expr_text(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem):
        base, key = _expr_text(node.node), _const_key(node.arg)
        return f"{base}[{key!r}]" if base and key is not None else None
    return None


def _check_security(tree: nodes.Template, label: str) -> None:
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
            key = _const_key(node.arg)
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


def _check_names(tree: nodes.Template, env: _Environment, label: str) -> None:
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        table = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in table:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            close = difflib.get_close_matches(node.name, list(table), n=1)
            raise TemplateError(f"{label}: unknown {kind} {node.name!r}",
                                hint=f"did you mean {close[0]!r}?" if close else None)


def _local_names(tree: nodes.Node) -> set[str]:
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names.update(m.name for m in tree.find_all(nodes.Macro))
    if any(True for _ in tree.find_all(nodes.For)):
        names.add("loop")
    if any(True for _ in tree.find_all(nodes.CallBlock)):
        names.add("caller")
    return names


def _references(tree: nodes.Node, field: tuple[str | int, ...]) -> list[Reference]:
    """Every context path the template reads, cut at the first non-constant subscript."""
    local = _local_names(tree)
    found: list[Reference] = []

    def chain(node: nodes.Node) -> None:
        path: list[str | int] = []
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            if isinstance(node, nodes.Getattr):
                path.append(node.attr)
            else:
                key = _const_key(node.arg)
                if key is None:
                    visit(node.arg)
                    path = []
                else:
                    path.append(key)
            node = node.node
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name not in local and node.name not in _GLOBALS:
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


def _is_single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression when the template is one ``{{ expr }}`` with only whitespace around."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [n for n in tree.body[0].nodes
             if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        return parts[0]  # type: ignore[no-any-return]
    return None


def _builds_containers(expr: nodes.Node) -> bool:
    kinds = (nodes.List, nodes.Tuple, nodes.Dict, nodes.Call, nodes.Filter)
    return isinstance(expr, kinds) or any(True for _ in expr.find_all(kinds))


# ------------------------------------------------------------------------ output assembly


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


_LITERAL_TYPES = (str, int, bool, type(None))


def _literal_code(value: Any, consts: list[Any]) -> str:
    if type(value) in _LITERAL_TYPES or (type(value) is float and math.isfinite(value)):
        return repr(value)
    consts.append(value)
    return f"c[{len(consts) - 1}]"


def _code(skeleton: Any, consts: list[Any]) -> str:
    if isinstance(skeleton, _Slot):
        return f"s[{skeleton.index}]"
    if isinstance(skeleton, dict):
        items = ", ".join(f"{_literal_code(k, consts)}: {_code(v, consts)}"
                          for k, v in skeleton.items())
        return "{" + items + "}"
    if isinstance(skeleton, list):
        return "[" + ", ".join(_code(v, consts) for v in skeleton) + "]"
    if isinstance(skeleton, tuple):
        return "(" + "".join(_code(v, consts) + ", " for v in skeleton) + ")"
    if isinstance(skeleton, str):
        return repr(str(skeleton))
    return _literal_code(skeleton, consts)


def _materialize(skeleton: Any, slots: list[Any]) -> Any:
    if isinstance(skeleton, _Slot):
        return slots[skeleton.index]
    if isinstance(skeleton, dict):
        return {k: _materialize(v, slots) for k, v in skeleton.items()}
    if isinstance(skeleton, list | tuple):
        return type(skeleton)(_materialize(v, slots) for v in skeleton)
    return skeleton


def _builder(skeleton: Any) -> Callable[[list[Any]], Any]:
    """A function ``slots -> fresh output`` generated from the mapping's shape (our code only)."""
    consts: list[Any] = []
    try:
        source = f"def build(s):\n    return {_code(skeleton, consts)}\n"
        namespace: dict[str, Any] = {"__builtins__": {}, "c": tuple(consts)}
        exec(compile(source, "<splice mapping>", "exec"), namespace)  # noqa: S102
    except (RecursionError, SyntaxError, MemoryError):
        return lambda slots: _materialize(skeleton, slots)
    return namespace["build"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ compiled objects


class CompiledMapping:
    """A compiled ``with:`` mapping: call it with a context to get a fresh mapped value."""

    def __init__(self, engine: TemplateEngine, mapping: Any, where: str,
                 *, text_only: bool = False) -> None:
        self.where = where
        self.fields: list[TemplateField] = []
        self._engine = engine
        self._trees: list[nodes.Template] = []
        self._refs: list[Reference] = []
        try:
            skeleton = self._skeleton(mapping, (), text_only)
        except RecursionError:
            raise TemplateError(f"{where}: the mapping is nested too deeply") from None
        self._build = _builder(skeleton)
        self._uses_now = any(ref.root == "now" for ref in self._refs)
        self._uses_globals = any(n.name in _GLOBALS and n.ctx == "load"
                                 for tree in self._trees for n in tree.find_all(nodes.Name))
        self._eval_ctx = EvalContext(engine.environment)
        self._template = self._compile() if self.fields else None
        self._root = self._template.root_render_func if self._template else None

    def label(self, path: tuple[str | int, ...]) -> str:
        """The field path as shown in messages, e.g. ``with.tags[0]``."""
        return _path_label(self.where, path)

    def references(self) -> list[Reference]:
        """Every variable path the mapping reads, with the field it is read in."""
        return list(self._refs)

    def __call__(self, context: Mapping[str, Any]) -> Any:
        if self._root is None:
            return self._build([])
        if self._uses_globals:
            parent = {**self._engine.globals, **context}
        else:  # Jinja never writes to the parent mapping, so the caller's dict is used as is
            parent = context if type(context) is dict else dict(context)
        if self._uses_now and "now" not in parent:
            parent = {**parent, "now": datetime.now(UTC)}
        ctx = _RenderContext(self._engine.environment, parent, self._eval_ctx)
        slots = ctx.slots
        try:
            deque(self._root(ctx), 0)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a TemplateError
            error = self._runtime_error(exc, len(slots), context)
        else:
            return self._build(slots)
        raise error  # outside the handler: the original (which may quote data) is not chained

    def __repr__(self) -> str:
        return f"<CompiledMapping {self.where} fields={len(self.fields)}>"

    # -- compiling

    def _skeleton(self, value: Any, path: tuple[str | int, ...], text_only: bool) -> Any:
        if isinstance(value, str):
            return self._add_field(value, path, text_only) if is_template(value) else value
        if isinstance(value, Mapping):
            return {k: self._skeleton(v, (*path, k), text_only) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [self._skeleton(v, (*path, i), text_only) for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        return value

    def _add_field(self, source: str, path: tuple[str | int, ...], text_only: bool) -> _Slot:
        label = self.label(path)
        tree = self._engine.parse(source, label)
        expr = None if text_only else _is_single_expression(tree)
        self.fields.append(TemplateField(path, source, expr is not None))
        self._trees.append(tree)
        self._refs.extend(_references(tree, path))
        return _Slot(len(self.fields) - 1)

    def _compile(self) -> Template:
        body: list[nodes.Node] = []
        for field, tree in zip(self.fields, self._trees, strict=True):
            body.append(_field_statement(field, tree))
        template = nodes.Template(body, lineno=1)
        template.set_environment(self._engine.environment)
        try:
            compiled = self._engine.environment.from_string(template)
        except JinjaTemplateError as exc:  # locate the field by compiling each one alone
            for field, tree in zip(self.fields, self._trees, strict=True):
                try:
                    self._engine.environment.from_string(tree)
                except JinjaTemplateError as inner:
                    raise _compile_error(self.label(field.path), inner) from None
            raise _compile_error(self.where, exc) from None
        return compiled

    # -- run-time errors

    def _runtime_error(self, exc: Exception, index: int, context: Mapping[str, Any]
                       ) -> TemplateError:
        if index >= len(self.fields):  # cannot happen; keep the message honest anyway
            return TemplateError(f"{self.where}: the mapping failed ({type(exc).__name__})")
        field, tree = self.fields[index], self._trees[index]
        label = self.label(field.path) + self._line_suffix(exc, field)
        if isinstance(exc, _MissingValue):
            return TemplateError(f"{label}: {_describe_missing(exc, tree, field.source)}",
                                 hint=_missing_hint(exc, context))
        if isinstance(exc, _UnsafeAccess):
            shown = f" {exc.attribute!r}" if exc.attribute in field.source else ""
            if exc.mutates:
                return TemplateSecurityError(
                    f"{label}: calling{shown} would modify data; templates are read-only")
            return TemplateSecurityError(
                f"{label}: access to the internal attribute{shown} of {_a(exc.obj_type)} value "
                "is not allowed", hint="templates read data; they cannot reach Python internals")
        if isinstance(exc, SecurityError):
            return TemplateSecurityError(f"{label}: refused by the sandbox: "
                                         f"{_redacted(str(exc), context)}")
        if isinstance(exc, FilterError | _NotData):
            return TemplateError(f"{label}: {exc}")
        if isinstance(exc, UndefinedError):
            return TemplateError(f"{label}: uses an undefined value")
        return TemplateError(f"{label}: {type(exc).__name__}: {_redacted(str(exc), context)}")

    def _line_suffix(self, exc: Exception, field: TemplateField) -> str:
        if "\n" not in field.source.strip():
            return ""
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if self._template and tb.tb_frame.f_code.co_filename == "<template>":
                line = self._template.get_corresponding_lineno(tb.tb_lineno)
            tb = tb.tb_next
        return f" (line {line})" if line else ""


def _filter(node: nodes.Expr | None, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None)


def _field_statement(field: TemplateField, tree: nodes.Template) -> nodes.Node:
    """The statement that evaluates one field and stores its value in the next slot."""
    if field.is_expression:
        expr = _is_single_expression(tree)
        assert expr is not None
        return nodes.ExprStmt(_filter(expr, _EMIT_DEEP if _builds_containers(expr) else _EMIT))
    if len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output) and (
            "\n" not in field.source.strip()):
        # one line of text with {{ }} holes: one join expression, no output buffer
        parts: list[nodes.Expr] = [
            nodes.Const(n.data) if isinstance(n, nodes.TemplateData) else _filter(n, _TEXT)
            for n in tree.body[0].nodes]
        return nodes.ExprStmt(_filter(nodes.Concat(parts), _EMIT_TEXT))
    return nodes.FilterBlock(tree.body, _filter(None, _EMIT_TEXT))


class CompiledExpression:
    """One compiled expression (``when:``, ``for_each:``, trigger keys) returning a native value."""

    def __init__(self, mapping: CompiledMapping, source: str) -> None:
        self.source = source
        self.where = mapping.where
        self._mapping = mapping

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self._mapping(context)

    def references(self) -> list[Reference]:
        """Every variable path the expression reads."""
        return self._mapping.references()

    def __repr__(self) -> str:
        return f"<CompiledExpression {self.where}>"


# ------------------------------------------------------------------------ messages


def _compile_error(label: str, exc: JinjaTemplateError) -> TemplateError:
    line = getattr(exc, "lineno", None)
    message = getattr(exc, "message", None) or str(exc)
    where = f" (line {line})" if line else ""
    return TemplateError(f"{label}{where}: {message}")


def _describe_missing(exc: _MissingValue, tree: nodes.Template, source: str) -> str:
    if exc.obj_missing:
        if isinstance(exc.name, str) and exc.name:
            return f"{exc.name!r} is undefined"
        return "uses an undefined value"
    key = exc.name
    if not isinstance(key, str | int) or str(key) not in source:
        return f"a key computed at run time is missing from {_a(exc.obj_type or 'value')}"
    holders: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        found = node.attr if isinstance(node, nodes.Getattr) else _const_key(node.arg)
        if found == key and type(found) is type(key):
            text = _expr_text(node.node) or "the value"
            if text not in holders:
                holders.append(text)
    holder = " or ".join(holders) if holders else "the value"
    what = f"element {key}" if isinstance(key, int) else f"attribute {key!r}"
    if exc.obj_is_none:
        return f"{holder} is null, so it has no {what}"
    if exc.obj_type == "dict" or (exc.obj_type == "list" and isinstance(key, int)):
        return f"{holder} has no {what}"
    return f"{holder} is {_a(exc.obj_type)}, which has no {what}"


def _missing_hint(exc: _MissingValue, context: Mapping[str, Any]) -> str | None:
    if not exc.obj_missing:
        return None
    names = sorted(str(k) for k in context)
    close = difflib.get_close_matches(str(exc.name), names, n=1)
    known = f"available names: {', '.join(names)}" if names else "the context is empty"
    return f"did you mean {close[0]!r}? {known}" if close else known


def _redacted(message: str, context: Mapping[str, Any]) -> str:
    """The message, unless it quotes anything from the context (which may hold secrets)."""
    hidden = "(details hidden: the error message quotes data from the context)"
    budget = 50_000
    stack: list[Any] = [context]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            return hidden
        if isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(value)
        elif isinstance(value, str | int | float | date) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= 3 and text in message:
                return hidden
    return message[:300]


# ------------------------------------------------------------------------ the engine


class TemplateEngine:
    """Compiles recipe templates in one sandboxed Jinja environment shared by a run."""

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        env = _Environment(undefined=_Undefined, autoescape=False, keep_trailing_newline=True,
                           finalize=_finalize)
        env.filters.update(FILTERS if filters is None else filters)
        env.filters.update({_EMIT: _emit, _EMIT_DEEP: _emit_deep, _EMIT_TEXT: _emit_text,
                            _TEXT: _text})
        self.environment = env
        self.globals = MappingProxyType({k: env.globals[k] for k in _GLOBALS})
        env.globals = dict(self.globals)
        self._cache: dict[tuple[str, str, str], CompiledMapping] = {}

    @property
    def filters(self) -> Mapping[str, Callable[..., Any]]:
        """Every filter templates may use (Jinja's built-ins plus the registered ones)."""
        return MappingProxyType({k: v for k, v in self.environment.filters.items()
                                 if " " not in k})

    def parse(self, source: str, label: str) -> nodes.Template:
        """Parse and statically check one template string; errors name ``label``."""
        try:
            tree = self.environment.parse(source)
        except TemplateSyntaxError as exc:
            raise _compile_error(label, exc) from None
        _check_security(tree, label)
        _check_names(tree, self.environment, label)
        return tree

    def compile_mapping(self, mapping: Any, *, where: str = "with") -> CompiledMapping:
        """Compile a whole mapping (any JSON-like value) into one callable."""
        return CompiledMapping(self, mapping, where)

    def compile_expression(self, source: str, *, where: str) -> CompiledExpression:
        """Compile ``"{{ expr }}"`` or a bare ``expr`` into a callable returning its value."""
        key = ("expr", source, where)
        if key not in self._cache:
            text = source.strip()
            if not is_template(text):
                text = "{{ " + self._bare_expression(text, where) + " }}"
            compiled = CompiledMapping(self, text, where)
            if not compiled.fields or not compiled.fields[0].is_expression:
                raise TemplateError(f"{where}: expected one expression such as "
                                    "'{{ trigger.total > 100 }}', not text with several parts")
            self._remember(key, compiled)
        return CompiledExpression(self._cache[key], source)

    def render_string(self, source: str, context: Mapping[str, Any], *, where: str) -> str:
        """Render a template to text (a literal string comes back unchanged)."""
        if not is_template(source):
            return source
        key = ("text", source, where)
        compiled = self._cache.get(key) or self._remember(
            key, CompiledMapping(self, source, where, text_only=True))
        return compiled(context)  # type: ignore[no-any-return]

    def _bare_expression(self, text: str, where: str) -> str:
        try:
            parser = Parser(self.environment, text, state="variable")
            parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError("unexpected text after the expression",
                                          parser.stream.current.lineno)
        except TemplateSyntaxError as exc:
            raise _compile_error(where, exc) from None
        return text

    def _remember(self, key: tuple[str, str, str], compiled: CompiledMapping) -> CompiledMapping:
        if len(self._cache) >= 1024:
            self._cache.clear()
        self._cache[key] = compiled
        return compiled

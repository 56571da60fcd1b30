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
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import FilterArgumentError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.sandbox import SecurityError

from ..errors import TemplateError, TemplateSecurityError
from .analysis import (
    Reference,
    builds_containers,
    check_names,
    check_security,
    const_key,
    expr_text,
    path_label,
    references,
    single_expression,
)
from .bounds import (
    MAX_SOURCE_ENV,
    MAX_TOTAL_ENV,
    MIN_TEMPLATE_COST,
    Bounds,
    CountedLoop,
    TemplateLimitError,
    install,
    start,
)
from .codegen import LOOP, count_loops, needs_budget
from .environment import (
    EMIT,
    EMIT_DEEP,
    EMIT_TEXT,
    GLOBALS,
    TEXT,
    MissingValue,
    NotData,
    RenderContext,
    SandboxEnvironment,
    UnsafeAccess,
    ValueUndefined,
    article,
    emit,
    emit_deep,
    emit_text,
    finalize,
    text_of,
)
from .filter_guards import guard_filters
from .filters import FILTERS, FilterError

__all__ = [
    "CompiledExpression",
    "CompiledMapping",
    "Reference",
    "TemplateEngine",
    "TemplateField",
    "is_template",
]



def is_template(value: str) -> bool:
    """True when the string holds Jinja syntax (``{{`` or ``{%``) rather than literal text."""
    return "{{" in value or "{%" in value


@dataclass(frozen=True)
class TemplateField:
    """One templated string of a mapping: where it sits, its text, and whether it is native."""

    path: tuple[str | int, ...]
    source: str
    is_expression: bool


# ------------------------------------------------------------------------ environment


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
            self._build = _builder(skeleton)
            self._uses_now = any(ref.root == "now" for ref in self._refs)
            self._uses_globals = any(n.name in GLOBALS and n.ctx == "load"
                                     for tree in self._trees for n in tree.find_all(nodes.Name))
            self._eval_ctx = EvalContext(engine.environment)
            self._bounds = engine.environment.bounds
            self._needs_budget = any(needs_budget(tree) for tree in self._trees)
            self._template = self._compile() if self.fields else None
        except (RecursionError, MemoryError, SyntaxError):  # SyntaxError: Python's nesting limits
            raise TemplateError(f"{where}: the mapping is nested too deeply") from None
        self._root = self._template.root_render_func if self._template else None

    def label(self, path: tuple[str | int, ...]) -> str:
        """The field path as shown in messages, e.g. ``with.tags[0]``."""
        return path_label(self.where, path)

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
        ctx = RenderContext(self._engine.environment, parent, self._eval_ctx)
        slots = ctx.slots
        previous = start(self._bounds) if self._needs_budget else None
        try:
            deque(self._root(ctx), 0)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a TemplateError
            error = self._runtime_error(exc, len(slots), context)
        else:
            return self._build(slots)
        finally:
            if self._needs_budget:
                install(previous)
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
        expr = None if text_only else single_expression(tree)
        self.fields.append(TemplateField(path, source, expr is not None))
        self._trees.append(tree)
        self._refs.extend(references(tree, path))
        return _Slot(len(self.fields) - 1)

    def _compile(self) -> Template:
        body: list[nodes.Node] = []
        for field, tree in zip(self.fields, self._trees, strict=True):
            count_loops(tree)
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
        if isinstance(exc, MissingValue):
            return TemplateError(f"{label}: {_describe_missing(exc, tree, field.source)}",
                                 hint=_missing_hint(exc, context))
        if isinstance(exc, UnsafeAccess):
            shown = f" {exc.attribute!r}" if exc.attribute in field.source else ""
            if exc.mutates:
                return TemplateSecurityError(
                    f"{label}: calling{shown} would modify data; templates are read-only")
            return TemplateSecurityError(
                f"{label}: access to the internal attribute{shown} of "
                f"{article(exc.obj_type)} value is not allowed",
                hint="templates read data; they cannot reach Python internals")
        if isinstance(exc, SecurityError):
            return TemplateSecurityError(f"{label}: refused by the sandbox: "
                                         f"{_redacted(str(exc), context)}")
        if isinstance(exc, TemplateLimitError):
            return TemplateError(f"{label}: {exc}", hint="templates map data; see the bounds in "
                                                         "docs/templates.md")
        if isinstance(exc, FilterError | NotData | FilterArgumentError):
            return TemplateError(f"{label}: {exc}")
        if isinstance(exc, UndefinedError):
            return TemplateError(f"{label}: uses an undefined value")
        if isinstance(exc, RecursionError):
            return TemplateError(f"{label}: the template recursed too deeply")
        if isinstance(exc, MemoryError):
            return TemplateError(f"{label}: the template ran out of memory")
        return TemplateError(f"{label}: {_safe_message(exc)}")

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
        expr = single_expression(tree)
        assert expr is not None
        return nodes.ExprStmt(_filter(expr, EMIT_DEEP if builds_containers(expr) else EMIT))
    if len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output) and (
            "\n" not in field.source.strip()):
        # one line of text with {{ }} holes: one join expression, no output buffer
        parts: list[nodes.Expr] = [
            nodes.Const(n.data) if isinstance(n, nodes.TemplateData) else _filter(n, TEXT)
            for n in tree.body[0].nodes]
        return nodes.ExprStmt(_filter(nodes.Concat(parts), EMIT_TEXT))
    return nodes.FilterBlock(tree.body, _filter(None, EMIT_TEXT))


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


def _describe_missing(exc: MissingValue, tree: nodes.Template, source: str) -> str:
    if exc.obj_missing:
        if isinstance(exc.name, str) and exc.name:
            return f"{exc.name!r} is undefined"
        return "uses an undefined value"
    key = exc.name
    if not isinstance(key, str | int) or str(key) not in source:
        return f"a key computed at run time is missing from {article(exc.obj_type or 'value')}"
    holders: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        found = node.attr if isinstance(node, nodes.Getattr) else const_key(node.arg)
        if found == key and type(found) is type(key):
            text = expr_text(node.node) or "the value"
            if text not in holders:
                holders.append(text)
    holder = " or ".join(holders) if holders else "the value"
    what = f"element {key}" if isinstance(key, int) else f"attribute {key!r}"
    if exc.obj_is_none:
        return f"{holder} is null, so it has no {what}"
    if exc.obj_type == "dict" or (exc.obj_type == "list" and isinstance(key, int)):
        return f"{holder} has no {what}"
    return f"{holder} is {article(exc.obj_type)}, which has no {what}"


def _missing_hint(exc: MissingValue, context: Mapping[str, Any]) -> str | None:
    if not exc.obj_missing:
        return None
    names = sorted(str(k) for k in context)
    close = difflib.get_close_matches(str(exc.name), names, n=1)
    known = f"available names: {', '.join(names)}" if names else "the context is empty"
    return f"did you mean {close[0]!r}? {known}" if close else known


_SAFE_MESSAGES = re.compile("|".join([
    r"unsupported operand type\(s\) for [^:]{1,5}: '\w+' and '\w+'",
    r"can only concatenate \w+ \(not \"\w+\"\) to \w+",
    r"'\w+' object is not (?:iterable|callable|subscriptable|an iterator)",
    r"object of type '\w+' has no len\(\)",
    r"'[<>=!]{1,2}' not supported between instances of '\w+' and '\w+'",
    r"(?:integer |float )?(?:division|modulo)(?: or modulo)? by zero",
    r"can't multiply sequence by non-int of type '\w+'",
    r"bad operand type for (?:unary [-+~]|abs\(\)): '\w+'",
    r"Object of type \w+ is not JSON serializable",
    r"sequence item \d+: expected str instance, \w+ found",
    r"(?:list|tuple|string) index out of range",
    r"unhashable type: '\w+'",
    r"math range error|(?:int|float) too large to convert to float|Result too large",
    r"cannot convert float (?:infinity|NaN) to integer",
    r"Exceeds the limit \(\d+ digits\) for integer string conversion[\w ,:;()]*",
    r"not (?:enough|all) arguments (?:for|converted during) (?:format string|string formatting)",
    r"\w+\(\) (?:takes|got|missing) [\w ,'()]*",
]))


def _safe_message(exc: Exception) -> str:
    """What went wrong, without any value: the exception's message only when it is one of
    Python's messages that name types, never data; else just the kind of error."""
    kind = type(exc).__name__
    message = str(exc)
    if len(message) <= 200 and _SAFE_MESSAGES.fullmatch(message):
        return f"{kind}: {message}"
    return f"{kind} (details hidden: error messages may quote data, which may be secret)"


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

    def __init__(self, filters: Mapping[str, Callable[..., Any]] | None = None,
                 bounds: Bounds | None = None) -> None:
        env = SandboxEnvironment(undefined=ValueUndefined, autoescape=False,
                                 keep_trailing_newline=True, finalize=finalize, optimized=False)
        env.bounds = bounds or Bounds.from_env()
        table = {**env.filters, **(FILTERS if filters is None else filters)}
        env.filters = guard_filters(table, env.bounds)
        env.filters.update({EMIT: emit, EMIT_DEEP: emit_deep, EMIT_TEXT: emit_text,
                            TEXT: text_of, LOOP: CountedLoop})
        self.environment = env
        self.globals = MappingProxyType({k: env.globals[k] for k in GLOBALS})
        env.globals = dict(self.globals)
        self._cache: dict[tuple[str, str, str], CompiledMapping] = {}
        self._compiled = 0  # characters of distinct template sources parsed (bounded)
        self._sources: set[str] = set()

    @property
    def filters(self) -> Mapping[str, Callable[..., Any]]:
        """Every filter templates may use (Jinja's built-ins plus the registered ones)."""
        return MappingProxyType({k: v for k, v in self.environment.filters.items()
                                 if " " not in k})

    def parse(self, source: str, label: str) -> nodes.Template:
        """Parse and statically check one template string; errors name ``label``.

        Compiling costs time, so templates are bounded too: one template's length, and what
        this engine compiles in all (see :mod:`splice.mapping.bounds`)."""
        bounds = self.environment.bounds
        if len(source) > bounds.max_source:
            raise TemplateError(f"{label}: the template is longer than {bounds.max_source:,} "
                                f"characters (limit: {MAX_SOURCE_ENV})")
        if source not in self._sources:  # the same text compiled again costs nothing new
            self._sources.add(source)
            self._compiled += max(len(source), MIN_TEMPLATE_COST)
        if self._compiled > bounds.max_total:
            raise TemplateError(f"{label}: the templates are longer than {bounds.max_total:,} "
                                f"characters in all (limit: {MAX_TOTAL_ENV})")
        try:
            tree = self.environment.parse(source)
        except TemplateSyntaxError as exc:
            raise _compile_error(label, exc) from None
        except RecursionError:
            raise TemplateError(f"{label}: the template is nested too deeply") from None
        check_security(tree, label)
        check_names(tree, self.environment, label)
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

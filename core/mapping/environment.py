"""The sandboxed Jinja runtime that mapping templates run in.

An immutable sandbox with strict undefined values; attribute access and operators are checked at
run time, and only data (strings, numbers, booleans, null, lists and objects of them) may leave
a template: the ``splice emit`` filters normalise what a field produces and refuse anything else,
and :func:`finalize` refuses to write a function, macro or other Python object as text.

Every value a template builds is bounded where it is built (:mod:`splice.mapping.bounds`): calls,
operators, ``~``, ``str.format`` and output go through the checks below; filters are wrapped by
:mod:`splice.mapping.filter_guards`; loops and calls spend the render's step budget.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, NoReturn

from jinja2 import StrictUndefined
from jinja2.exceptions import UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    SecurityError,
    modifies_known_mutable,
)
from jinja2.utils import missing, pass_context, pass_environment
from markupsafe import Markup

from .bounds import (
    NUMBERS,
    Bounds,
    NotData,
    TemplateLimitError,
    check_binop,
    check_format_spec,
    check_method,
    check_result,
    concat,
    current,
    json_size,
    kind_of,
    percent,
    require_data,
    tick,
)
from .codegen import BoundedCodeGenerator
from .filters import to_json

EMIT = "splice emit"  # internal filter names contain a space: no template text can name them
EMIT_DEEP = "splice emit deep"
EMIT_TEXT = "splice emit text"
TEXT = "splice text"
GLOBALS = ("range", "dict", "namespace")
_CHECKED_OWNERS = (str, bytes, int)

__all__ = ["NotData", "TemplateLimitError"]


class MissingValue(UndefinedError):
    """Raised when a strict undefined value is used; keeps what was looked up, not the value."""

    def __init__(self, obj: Any, name: Any, hint: str | None) -> None:
        super().__init__("undefined value")
        self.obj_missing = obj is missing
        self.obj_type = "" if obj is missing else type(obj).__name__
        self.obj_is_none = obj is None
        self.name = name
        self.hint = hint


class UnsafeAccess(SecurityError):
    """Raised as soon as a template touches an attribute the sandbox refuses."""

    def __init__(self, obj: Any, attribute: str) -> None:
        super().__init__("unsafe attribute access")
        self.obj_type = type(obj).__name__
        self.attribute = attribute
        self.mutates = modifies_known_mutable(obj, attribute)


def article(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


class ValueUndefined(StrictUndefined):
    """``StrictUndefined`` whose error records the failed lookup for our own message."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise MissingValue(self._undefined_obj, self._undefined_name, self._undefined_hint)


def route_undefined_errors() -> None:
    """Point every operation that fails on an undefined value at our own error."""
    for name, value in {**vars(Undefined), **vars(StrictUndefined)}.items():
        if value is Undefined._fail_with_undefined_error:
            setattr(ValueUndefined, name, ValueUndefined._fail_with_undefined_error)


route_undefined_errors()


@pass_environment
def finalize(env: SandboxEnvironment, value: Any) -> Any:
    """How values print inside text: JSON-style null/booleans, ISO dates, JSON for lists and
    objects; anything that is not data (a function, a macro, a namespace ...) is refused."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if kind is int or kind is float or kind is Decimal or kind is Markup:
        return value
    if isinstance(value, date | time):
        return iso(value)
    if isinstance(value, Undefined):
        return value  # strict: printing it raises its own error
    if isinstance(value, dict | list | tuple):
        require_data(value, env.bounds, "the value written as text", undefined_ok=False)
        if json_size(value, env.bounds.max_value) > env.bounds.max_value:
            raise env.bounds.too_long("the value written as text")
        return to_json(value)
    require_data(value, env.bounds, "the value written as text")
    return value


class BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, with widths and precisions bounded and data-only fields."""

    def __init__(self, env: SandboxEnvironment) -> None:
        super().__init__(env)
        self.bounds = env.bounds

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec, self.bounds)
        require_data(value, self.bounds, "a value given to format")
        return check_result(super().format_field(value, format_spec), self.bounds,
                            "a formatted value")

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        require_data(value, self.bounds, "a value given to format")
        return super().convert_field(value, conversion)


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, tuned for JSON data: keys win over methods, unsafe access raises at once,
    every operator, call, concatenation and output is bounded (see :mod:`.bounds`)."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = BoundedCodeGenerator
    bounds = Bounds()

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise UnsafeAccess(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if type(left) in NUMBERS and type(right) in NUMBERS:  # arithmetic: only ints can grow
            if operator == "**" or operator == "*":
                check_binop(operator, left, right, self.bounds)
            result = self.binop_table[operator](left, right)
            if type(result) is int and result.bit_length() > self.bounds.max_int_bits:
                raise self.bounds.too_big_int()
            return result
        if operator == "%" and isinstance(left, str | bytes):
            return percent(left, right, self.bounds)
        check_binop(operator, left, right, self.bounds)
        return check_result(self.binop_table[operator](left, right), self.bounds)

    def call(__self, __context: Context, __obj: Any, *args: Any,  # noqa: N805
             **kwargs: Any) -> Any:
        tick()
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{kind_of(__obj)} that is not safely callable")
        owner = getattr(__obj, "__self__", None)
        if owner is not None and type(owner) in _CHECKED_OWNERS or isinstance(owner, str):
            check_method(getattr(__obj, "__name__", ""), owner, args, kwargs, __self.bounds)
        return check_result(__context.call(__obj, *args, **kwargs), __self.bounds)

    def wrap_str_format(self, value: Any) -> Any:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        formatter = BoundedFormatter(self)
        f_self, is_format_map = value.__self__, value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str(formatter.vformat(str(f_self), args, kwargs))

        return bounded

    def splice_slice(self, obj: Any, part: slice) -> Any:
        """``x[a:b]``: a slice builds a new string or list, which counts as built."""
        return check_result(obj[part], self.bounds)

    def splice_concat(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b``: bounded, data only."""
        return concat(parts, self.bounds)

    def splice_out(self, pieces: tuple[str, ...]) -> tuple[str, ...]:
        """What one output statement writes: counted against the render's budget."""
        budget = current()
        if budget is not None:
            budget.output += sum(map(len, pieces))
            if budget.output > budget.max_output:
                budget.emit(0)  # raises
        return pieces


class RenderContext(Context):
    """A Jinja context built cheaply per record; ``slots`` collects the field values."""

    def __init__(self, environment: SandboxEnvironment, parent: dict[str, Any],
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

PLAIN = frozenset({str, int, float, bool, type(None), dict, list})
_SEQUENCES = (tuple, range, set, frozenset, Iterator, KeysView, ValuesView, ItemsView)


def iso(value: date | time) -> str:
    if isinstance(value, datetime) and value.utcoffset() == UTC.utcoffset(None):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def normalize(value: Any, bounds: Bounds) -> Any:
    """Turn a native template result into JSON-like data, or fail on non-data objects."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if type(value) in PLAIN:
        return value
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, date | time):
        return iso(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, _SEQUENCES) and not callable(value):
        items = []
        for item in value:
            items.append(item)
            if len(items) > bounds.max_value:
                raise bounds.too_long("the list")
        return items
    if isinstance(value, str | int | float | dict | list):
        return value
    raise NotData(f"the expression evaluates to {kind_of(value)}, not to data")


def deep_normalize(value: Any, bounds: Bounds, depth: int = 0) -> Any:
    """:func:`normalize` through containers a template built (they may hide undefined values)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if depth == 0 and json_size(value, bounds.max_request) > bounds.max_request:
        raise TemplateLimitError(f"the value would be larger than {bounds.max_request:,} "
                                 "bytes as JSON (limit: SPLICE_MAX_REQUEST_BYTES)")
    if depth > 100:
        raise NotData("the value is nested too deeply")
    if type(value) not in PLAIN:
        value = normalize(value, bounds)
    if isinstance(value, dict):
        return {deep_normalize(k, bounds, depth + 1): deep_normalize(v, bounds, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [deep_normalize(v, bounds, depth + 1) for v in value]
    return value


def _bounds(context: RenderContext) -> Bounds:
    return context.environment.bounds  # type: ignore[attr-defined, no-any-return]


@pass_context
def emit(context: RenderContext, value: Any) -> str:
    context.slots.append(value if type(value) in PLAIN else normalize(value, _bounds(context)))
    return ""


@pass_context
def emit_deep(context: RenderContext, value: Any) -> str:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        context.slots.append(value)  # a scalar was bounded where it was built
    else:
        context.slots.append(deep_normalize(value, _bounds(context)))
    return ""


@pass_context
def emit_text(context: RenderContext, value: str) -> str:
    text = str(value)
    if len(text) > _bounds(context).max_value:
        raise _bounds(context).too_long("the text")
    context.slots.append(text)
    return ""


@pass_environment
def text_of(env: SandboxEnvironment, value: Any) -> str:
    return str(finalize(env, value))


# ------------------------------------------------------------------------ static analysis



"""The sandboxed Jinja runtime that mapping templates run in.

An immutable sandbox with strict undefined values; attribute access and operators are checked at
run time, and only data (strings, numbers, booleans, null, lists and objects of them) may leave
a template: the ``splice emit`` filters normalise what a field produces and refuse anything else.
"""

from __future__ import annotations

from collections.abc import Iterator, KeysView, ValuesView
from datetime import UTC, date, datetime, time
from typing import Any, NoReturn

from jinja2 import StrictUndefined
from jinja2.exceptions import UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, modifies_known_mutable
from jinja2.utils import Cycler, Joiner, Namespace, missing, pass_context
from markupsafe import Markup

from .filters import to_json

EMIT = "splice emit"  # internal filter names contain a space: no template text can name them
EMIT_DEEP = "splice emit deep"
EMIT_TEXT = "splice emit text"
TEXT = "splice text"
GLOBALS = ("range", "dict", "namespace")
MAX_REPEAT = 1_000_000



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


class NotData(TypeError):
    """A native result that is not data (a function, a loop object ...)."""


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


def finalize(value: Any) -> Any:
    """How values print inside text: JSON-style null/booleans, ISO dates."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, date | time):
        return iso(value)
    if isinstance(value, dict | list):
        return to_json(value)
    return value


class SandboxEnvironment(ImmutableSandboxedEnvironment):
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
        raise UnsafeAccess(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_REPEAT:
                        raise SecurityError("repetition result is too large")
        elif isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 4096:
            raise SecurityError("power result is too large")
        return super().call_binop(context, operator, left, right)


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
NOT_DATA_TYPES = (Macro, Namespace, LoopContext, Cycler, Joiner, Context)


def iso(value: date | time) -> str:
    if isinstance(value, datetime) and value.utcoffset() == UTC.utcoffset(None):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def normalize(value: Any) -> Any:
    """Turn a native template result into JSON-like data, or fail on non-data objects."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, date | time):
        return iso(value)
    if isinstance(value, NOT_DATA_TYPES) or callable(value):
        kind = "a function" if callable(value) else f"{article(type(value).__name__)} object"
        raise NotData(f"the expression evaluates to {kind}, not to data")
    if isinstance(value, tuple | range | set | frozenset | Iterator | KeysView | ValuesView):
        return list(value)
    return value


def deep_normalize(value: Any, depth: int = 0) -> Any:
    """:func:`normalize` through containers a template built (they may hide undefined values)."""
    if depth > 100:
        raise NotData("the value is nested too deeply")
    if type(value) not in PLAIN:
        value = normalize(value)
    if isinstance(value, dict):
        return {deep_normalize(k, depth + 1): deep_normalize(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [deep_normalize(v, depth + 1) for v in value]
    return value


@pass_context
def emit(context: RenderContext, value: Any) -> str:
    context.slots.append(value if type(value) in PLAIN else normalize(value))
    return ""


@pass_context
def emit_deep(context: RenderContext, value: Any) -> str:
    context.slots.append(deep_normalize(value))
    return ""


@pass_context
def emit_text(context: RenderContext, value: str) -> str:
    context.slots.append(str(value))
    return ""


def text_of(value: Any) -> str:
    return str(finalize(value))


# ------------------------------------------------------------------------ static analysis



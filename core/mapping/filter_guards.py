"""Every filter a template can name, wrapped so that it stays inside the runtime's bounds.

``guard_filters(table, bounds)`` returns the table with each filter wrapped: its value and
arguments must be data (a function, macro, namespace or other Python object never reaches a
filter that would turn it into text: that is how reprs leaked), lazy sequences (``map``,
``select`` ...) are read into lists first, filters that could amplify estimate their result
and refuse before building it, and every result is checked against the bounds. Filters that
take lazy sequences or undefined values on purpose (``default``, ``list``, ``map``, ``select``,
``first``, ``length`` ...) skip the data check. ``join``, ``format``, ``sum``, ``batch``,
``slice``, ``tojson`` and ``json`` are replaced by bounded versions with the same behaviour.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.filters import make_attrgetter
from jinja2.utils import pass_environment, pass_eval_context

from .bounds import (
    COUNTED,
    SCALARS,
    Bounds,
    TemplateLimitError,
    built,
    check_result,
    current,
    json_size,
    percent,
    replace_size,
    require_data,
    to_text,
)

# Filters that accept lazy sequences, undefined values or objects on purpose.
LAZY_OK = frozenset({
    "attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items", "join",
    "last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse",
    "select", "selectattr", "slice", "sort", "sum", "unique", "coalesce", "pluck", "json",
    "tojson",
})
_LAZY = (Iterator, KeysView, ValuesView)


def _materialize(value: Any, bounds: Bounds) -> Any:
    """A lazy sequence read into a list (at most the bound's number of items)."""
    if isinstance(value, _LAZY) or type(value).__name__ == "dict_items":
        items = list(itertools.islice(iter(value), bounds.max_value + 1))
        if len(items) > bounds.max_value:
            raise bounds.too_long("a list")
        return items
    return value


def _pass_arg(func: Callable[..., Any]) -> int:
    """How many leading arguments Jinja passes before the value (context, environment...)."""
    return 1 if getattr(func, "jinja_pass_arg", None) is not None else 0


def guard(name: str, func: Callable[..., Any], bounds: Bounds,
          pre: Callable[..., None] | None = None) -> Callable[..., Any]:
    """``func`` wrapped with the data check (unless ``name`` is in LAZY_OK), an optional
    size estimate ``pre(value, *args, **kwargs)`` and the result check."""
    skip = _pass_arg(func)
    data_only = name not in LAZY_OK
    max_value = bounds.max_value

    if skip == 0 and data_only:
        @functools.wraps(func)
        def plain(value: Any, *args: Any, **kwargs: Any) -> Any:
            if type(value) not in SCALARS:
                value = _materialize(value, bounds)
                require_data(value, bounds, f"the value given to |{name}", undefined_ok=False)
            if args or kwargs:
                for arg in (*args, *kwargs.values()):
                    if type(arg) not in SCALARS:
                        require_data(arg, bounds, f"an argument of |{name}", undefined_ok=False)
            if pre is not None:
                pre(value, *args, **kwargs)
            result = func(value, *args, **kwargs)
            if type(result) is str:
                if len(result) >= COUNTED:  # only long results cost memory and time
                    if len(result) > max_value:
                        raise bounds.too_long(f"the result of |{name}")
                    built(len(result))
                    _clock()
                return result
            _clock()
            return check_result(result, bounds, f"the result of |{name}")
        return plain

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if data_only and len(args) > skip:
            value = _materialize(args[skip], bounds)
            args = (*args[:skip], value, *args[skip + 1:])
            for arg in (*args[skip:], *kwargs.values()):
                require_data(arg, bounds, f"a value given to |{name}", undefined_ok=False)
        if pre is not None and len(args) > skip:
            pre(*args[skip:], **kwargs)
        result = func(*args, **kwargs)
        _clock()
        return check_result(result, bounds, f"the result of |{name}")
    return wrapped


def _clock() -> None:
    budget = current()
    if budget is not None:
        budget.clock()


# ---------------------------------------------------------------------------- estimates


def _width_check(bounds: Bounds, what: str) -> Callable[..., None]:
    def pre(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
        width = kwargs.get("width", width)
        if type(width) is int and width > bounds.max_value:
            raise bounds.too_long(f"the result of |{what}")
    return pre


def _indent_check(bounds: Bounds) -> Callable[..., None]:
    def pre(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
        width = kwargs.get("width", width)
        size = len(width) if isinstance(width, str) else width if type(width) is int else 0
        text = value if isinstance(value, str) else ""
        if len(text) + (text.count("\n") + 1) * size > bounds.max_value:
            raise bounds.too_long("the result of |indent")
    return pre


def _replace_check(bounds: Bounds) -> Callable[..., None]:
    def pre(value: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
        replace_size(value if isinstance(value, str) else str(value), old, new,
                     count if count is not None else -1, bounds)
    return pre


def _wordwrap_check(bounds: Bounds) -> Callable[..., None]:
    def pre(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
            *args: Any, **kwargs: Any) -> None:
        wrap = kwargs.get("wrapstring", wrapstring)
        width = kwargs.get("width", width)
        text = value if isinstance(value, str) else ""
        lines = len(text) // max(width if type(width) is int else 1, 1) + text.count("\n") + 1
        if len(text) + lines * len(wrap if isinstance(wrap, str) else "\n") > bounds.max_value:
            raise bounds.too_long("the result of |wordwrap")
    return pre


def _truncate_check(bounds: Bounds) -> Callable[..., None]:
    def pre(value: Any, *args: Any, **kwargs: Any) -> None:
        end = kwargs.get("end", args[2] if len(args) > 2 else "")
        if isinstance(end, str) and len(end) > bounds.max_value:
            raise bounds.too_long("the result of |truncate")
    return pre


# ---------------------------------------------------------------------------- replacements


def _bounded_join(bounds: Bounds) -> Callable[..., str]:
    @pass_eval_context
    def join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> str:
        items = _materialize(value, bounds)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        separator = to_text(d, bounds)
        texts: list[str] = []
        total = 0
        for item in items:
            text = to_text(item, bounds)
            total += len(text) + len(separator)
            if total > bounds.max_value + len(separator):
                raise bounds.too_long("the result of |join")
            texts.append(text)
        return separator.join(texts)
    return join


def _bounded_format(bounds: Bounds) -> Callable[..., str]:
    def format(value: Any, *args: Any, **kwargs: Any) -> str:  # noqa: A001
        if args and kwargs:
            raise TemplateLimitError("|format takes positional or keyword arguments, not both")
        return percent(to_text(value, bounds), kwargs or args, bounds)  # type: ignore[no-any-return]
    return format


def _bounded_sum(bounds: Bounds) -> Callable[..., Any]:
    @pass_environment
    def sum_(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        items = _materialize(iterable, bounds)
        if isinstance(items, str):
            raise TypeError("|sum needs a list of numbers or lists, not a string")
        if attribute is not None:
            items = list(map(make_attrgetter(environment, attribute), items))
        if isinstance(start, list | tuple):
            size = len(start) + sum(len(i) for i in items if isinstance(i, list | tuple))
            if size > bounds.max_value:
                raise bounds.too_long("the result of |sum")
        total = start
        for item in items:
            total = total + item
            check_result(total, bounds, "the result of |sum")
        return total
    return sum_


def _count_check(bounds: Bounds, what: str) -> Callable[..., None]:
    def pre(value: Any, *args: Any, **kwargs: Any) -> None:
        count = args[0] if args else kwargs.get("linecount" if what == "batch" else "slices")
        if type(count) is int and count > bounds.max_value:
            raise bounds.too_long(f"the result of |{what}")
    return pre


def _bounded_json(func: Callable[..., Any], bounds: Bounds, name: str) -> Callable[..., Any]:
    skip = _pass_arg(func)

    @functools.wraps(func)
    def to_json(*args: Any, **kwargs: Any) -> Any:
        value = _materialize(args[skip], bounds) if len(args) > skip else None
        args = (*args[:skip], value, *args[skip + 1:])
        indent = kwargs.get("indent", args[skip + 1] if len(args) > skip + 1 else None)
        require_data(value, bounds, f"the value given to |{name}", undefined_ok=False)
        width = indent if type(indent) is int else len(indent) if isinstance(indent, str) else 0
        if width > 64:
            raise TemplateLimitError(f"|{name}: an indent of more than 64 is not supported")
        if json_size(value, bounds.max_value, indent=width) > bounds.max_value:
            raise bounds.too_long(f"the result of |{name}")
        return check_result(func(*args, **kwargs), bounds, f"the result of |{name}")
    return to_json


def guard_filters(table: Mapping[str, Callable[..., Any]], bounds: Bounds
                  ) -> dict[str, Callable[..., Any]]:
    """Every filter of ``table`` wrapped (see the module docstring)."""
    pre: dict[str, Callable[..., None]] = {
        "center": _width_check(bounds, "center"),
        "indent": _indent_check(bounds),
        "replace": _replace_check(bounds),
        "wordwrap": _wordwrap_check(bounds),
        "truncate": _truncate_check(bounds),
        "batch": _count_check(bounds, "batch"),
        "slice": _count_check(bounds, "slice"),
    }
    replaced: dict[str, Callable[..., Any]] = {
        "join": _bounded_join(bounds), "format": _bounded_format(bounds),
        "sum": _bounded_sum(bounds)}
    out: dict[str, Callable[..., Any]] = {}
    for name, func in table.items():
        if name in ("tojson", "json"):
            out[name] = _bounded_json(func, bounds, name)
            continue
        if name in replaced and func is JINJA_FILTERS.get(name):
            func = replaced[name]
        out[name] = guard(name, func, bounds, pre.get(name))
    return out

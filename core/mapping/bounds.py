"""Bounds of the template runtime: how big a value may grow, how long a render may run.

Every string, list and number a template builds is checked where it is built, inside the
sandbox, before the next operation can amplify it; the operations that could allocate a huge
value first estimate its size and refuse (``center``, ``indent``, ``format``, ``%``, ``~``,
``*``, ``+``, ``**``, ``join``, ``replace``, ``wordwrap``, ``str.format`` widths ...). A render
also has a step budget (loop iterations and calls) and a wall-clock cap. Defaults, and the
environment variables that override them:

``SPLICE_TEMPLATE_MAX_VALUE``    characters of a string / items of a list, 1,000,000
``SPLICE_TEMPLATE_MAX_INT_BITS`` bits of an integer, 14,000 (about 4,200 digits: Python refuses
                                 to write integers of more than 4,300 digits as text or JSON)
``SPLICE_TEMPLATE_MAX_STEPS``    loop iterations + calls per render, 100,000
``SPLICE_TEMPLATE_TIMEOUT``      seconds per render, 1.0
``SPLICE_TEMPLATE_MAX_BUILT``    characters (and list items) of the strings and lists one render
                                 builds, counting every result of 256 or more, 20,000,000: many
                                 values each within bounds cannot add up to gigabytes
``SPLICE_MAX_REQUEST_BYTES``     estimated JSON size of one request, 10,000,000
``SPLICE_TEMPLATE_MAX_SOURCE``   characters of one template, 20,000
``SPLICE_TEMPLATE_MAX_TOTAL``    characters of all the templates one engine (one recipe and
                                 the operations it calls) compiles, 100,000; each template
                                 counts as at least 50, so at most 2,000 templates

Crossing a bound raises :class:`TemplateLimitError`, whose message names the bound and never a
value. Only data leaves a template: :func:`require_data` refuses functions, methods, macros,
namespaces, loop objects and other Python objects wherever a value would become text.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections.abc import Iterator, KeysView, ValuesView
from dataclasses import dataclass
from datetime import date
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from jinja2.runtime import Undefined
from markupsafe import Markup

MAX_VALUE_ENV = "SPLICE_TEMPLATE_MAX_VALUE"
MAX_INT_BITS_ENV = "SPLICE_TEMPLATE_MAX_INT_BITS"
MAX_STEPS_ENV = "SPLICE_TEMPLATE_MAX_STEPS"
TIMEOUT_ENV = "SPLICE_TEMPLATE_TIMEOUT"
MAX_BUILT_ENV = "SPLICE_TEMPLATE_MAX_BUILT"
COUNTED = 256  # results at least this long count against what a render builds
MAX_REQUEST_ENV = "SPLICE_MAX_REQUEST_BYTES"
MAX_SOURCE_ENV = "SPLICE_TEMPLATE_MAX_SOURCE"
MAX_TOTAL_ENV = "SPLICE_TEMPLATE_MAX_TOTAL"
MIN_TEMPLATE_COST = 50


class TemplateLimitError(Exception):
    """A bound of the template runtime was crossed; the message names it, never a value."""


class NotData(TypeError):
    """A native result that is not data (a function, a loop object ...)."""


def _env_number(name: str, default: float) -> float:
    return _number(os.environ.get(name), default)


def _number(raw: str | None, default: float) -> float:
    try:
        value = float((raw or "").strip().replace("_", ""))
    except ValueError:
        return default
    return value if math.isfinite(value) and value > 0 else default


@dataclass(frozen=True)
class Bounds:
    """The limits of one template engine (see the module docstring for the variables)."""

    max_value: int = 1_000_000
    max_int_bits: int = 14_000
    max_steps: int = 100_000
    timeout: float = 1.0
    max_request: int = 10_000_000
    max_source: int = 20_000
    max_total: int = 100_000
    max_built: int = 20_000_000

    @classmethod
    def from_env(cls) -> Bounds:
        base = cls()
        return cls(int(_env_number(MAX_VALUE_ENV, base.max_value)),
                   int(_env_number(MAX_INT_BITS_ENV, base.max_int_bits)),
                   int(_env_number(MAX_STEPS_ENV, base.max_steps)),
                   _env_number(TIMEOUT_ENV, base.timeout),
                   int(_env_number(MAX_REQUEST_ENV, base.max_request)),
                   int(_env_number(MAX_SOURCE_ENV, base.max_source)),
                   int(_env_number(MAX_TOTAL_ENV, base.max_total)),
                   int(_env_number(MAX_BUILT_ENV, base.max_built)))

    # -- messages (what was crossed and how to raise it; never the value)

    def too_long(self, what: str = "a value") -> TemplateLimitError:
        return TemplateLimitError(f"{what} would be longer than {self.max_value:,} characters "
                                  f"or items (limit: {MAX_VALUE_ENV})")

    def too_big_int(self) -> TemplateLimitError:
        return TemplateLimitError(f"a number would have more than {self.max_int_bits:,} bits "
                                  f"(limit: {MAX_INT_BITS_ENV})")


def max_request_bytes() -> int:
    """``SPLICE_MAX_REQUEST_BYTES`` (the variable is read for every request)."""
    return _request_limit(os.environ.get(MAX_REQUEST_ENV))


@functools.lru_cache(maxsize=8)
def _request_limit(raw: str | None) -> int:
    return int(_number(raw, Bounds.max_request))


# ---------------------------------------------------------------------------- the budget

class _Local(threading.local):
    budget: Budget | None = None


_local = _Local()


class Budget:
    """Steps and time left to one render; installed per thread by :func:`running`."""

    __slots__ = ("bounds", "built", "deadline", "max_output", "output", "steps")

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.max_output = bounds.max_request
        self.steps = bounds.max_steps
        self.output = 0
        self.built = 0
        self.deadline = time.monotonic() + bounds.timeout

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0 or not self.steps & 63:
            self.check()

    def check(self) -> None:
        """After a step was spent: past the budget raises; every 64 steps reads the clock."""
        if self.steps < 0:
            raise TemplateLimitError(
                f"the template ran more than {self.bounds.max_steps:,} loop iterations and "
                f"calls (limit: {MAX_STEPS_ENV})")
        self.clock()

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the template ran longer than {self.bounds.timeout:g} s "
                                     f"(limit: {TIMEOUT_ENV})")

    def build(self, size: int) -> None:
        """A value of ``size`` characters or items was built (results of 256 or more count)."""
        self.built += size
        if self.built > self.bounds.max_built:
            raise TemplateLimitError(
                f"the template built more than {self.bounds.max_built:,} characters in all "
                f"(limit: {MAX_BUILT_ENV})")

    def emit(self, size: int) -> None:
        self.output += size
        if self.output > self.max_output:
            raise TemplateLimitError(
                f"the template wrote more than {self.bounds.max_request:,} characters "
                f"(limit: {MAX_REQUEST_ENV})")


def current() -> Budget | None:
    """The budget of the render running on this thread, if any."""
    return _local.budget


def start(bounds: Bounds) -> Budget | None:
    """A fresh budget for a render on this thread; returns the one it replaces."""
    local = _local
    previous = local.budget
    local.budget = Budget(bounds)
    return previous


def install(budget: Budget | None) -> Budget | None:
    """Make ``budget`` current on this thread; returns the one it replaces."""
    previous = _local.budget
    _local.budget = budget
    return previous


def built(size: int) -> None:
    """Count a built value of ``size`` (>= :data:`COUNTED`) against the current render."""
    budget = _local.budget
    if budget is not None:
        budget.build(size)


def tick() -> None:
    """One step of the current render (a loop iteration or a call)."""
    budget = _local.budget
    if budget is not None:
        budget.step()


class CountedLoop:
    """An iterable whose iteration costs one step each (wraps every ``{% for %}``)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self) -> Iterator[Any]:
        budget = _local.budget
        if budget is None:
            yield from self._inner
            return
        for item in self._inner:
            budget.steps -= 1
            if budget.steps < 0 or not budget.steps & 63:
                budget.check()  # raises past the budget, reads the clock every 64 steps
            yield item


# ---------------------------------------------------------------------------- data only

SCALARS = frozenset({str, int, float, bool, type(None), Decimal, Markup})
_CONTAINERS = (list, tuple, dict, set, frozenset)
_DATES = (Undefined, date, clock_time)


def kind_of(value: Any) -> str:
    """What a non-data value is, in words (never its repr)."""
    from jinja2.runtime import LoopContext, Macro
    from jinja2.utils import Cycler, Joiner, Namespace

    if isinstance(value, Macro):
        return "a macro"
    if isinstance(value, type):
        return "a class"
    if isinstance(value, Namespace):
        return "a namespace object"
    if isinstance(value, LoopContext):
        return "the loop object"
    if isinstance(value, Cycler | Joiner):
        return f"a {type(value).__name__.lower()} object"
    if callable(value):
        return "a function or method"
    if isinstance(value, range):
        return "a range (use |list)"
    if isinstance(value, Iterator | KeysView | ValuesView) or type(value).__name__ in (
            "dict_items", "generator"):
        return "a lazy sequence (use |list)"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} object"


def require_data(value: Any, bounds: Bounds, what: str = "the value", *,
                 undefined_ok: bool = True) -> None:
    """Refuse ``value`` unless it is data: text, numbers, booleans, null, dates, and lists or
    mappings of them, and unless it would fit the bounds once written as text (shared items
    count each time they appear). An undefined value raises its own error, unless
    ``undefined_ok`` (then using it later does)."""
    if type(value) in SCALARS:
        return
    budget = bounds.max_value
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            budget -= len(item)
        elif kind in SCALARS:
            budget -= 4 if kind is not int else item.bit_length() // 3 + 1
        elif isinstance(item, _DATES):
            if not undefined_ok and isinstance(item, Undefined):
                item._fail_with_undefined_error()
            budget -= 24
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
            budget -= 2 * len(item)
        elif isinstance(item, _CONTAINERS):
            stack.extend(item)
            budget -= len(item)
        else:
            raise NotData(f"{what} is {kind_of(item)}, not data")
        if budget < 0:
            raise bounds.too_long(what)


def check_result(value: Any, bounds: Bounds, what: str = "a value") -> Any:
    """``value``, unless it is a string, list or number past the bounds."""
    kind = type(value)
    if kind is str or kind is list or kind is tuple or kind is dict or kind is bytes:
        size = len(value)
        if size >= COUNTED:
            if size > bounds.max_value:
                raise bounds.too_long(what)
            built(size)
    elif kind is int:
        if value.bit_length() > bounds.max_int_bits:
            raise bounds.too_big_int()
    elif isinstance(value, str | bytes | list | tuple | dict):
        if len(value) > bounds.max_value:
            raise bounds.too_long(what)
        if len(value) >= COUNTED:
            built(len(value))
    return value


def json_size(value: Any, limit: int, *, indent: int = 0) -> int:
    """An estimate (from above, for text) of the JSON size of ``value``; stops past ``limit``.

    Shared references count each time they appear, as they would once serialised."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            total += len(item) + 2
        elif kind is dict:
            total += 2 + len(item) * (4 + indent * depth)
            for key, sub in item.items():
                total += len(key) + 2 if type(key) is str else 24
                stack.append((sub, depth + 1))
        elif kind is list or kind is tuple:
            total += 2 + len(item) * (2 + indent * depth)
            stack.extend((sub, depth + 1) for sub in item)
        elif kind is int:
            total += item.bit_length() // 3 + 2
        elif isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            stack.append((dict(item), depth))
        elif isinstance(item, list | tuple | set | frozenset | range):
            stack.append((list(item), depth))
        else:
            total += 32
        if total > limit:
            return total
    return total


# ---------------------------------------------------------------------------- text


def to_text(value: Any, bounds: Bounds) -> str:
    """``str(value)`` for data, within the bounds (reprs of objects are refused)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        if value.bit_length() > bounds.max_int_bits:
            raise bounds.too_big_int()
        return str(value)
    if kind is float or kind is bool or value is None or kind is Decimal:
        return str(value)
    if isinstance(value, Undefined):
        return str(value)  # strict: raises its own error
    require_data(value, bounds)
    if isinstance(value, _CONTAINERS) and json_size(value, bounds.max_value) > bounds.max_value:
        raise bounds.too_long()
    if type(value) is int and value.bit_length() > bounds.max_int_bits:
        raise bounds.too_big_int()
    return check_result(str(value), bounds)


def concat(parts: tuple[Any, ...], bounds: Bounds) -> str:
    """The ``~`` operator: every part as text, the result within the bounds."""
    texts = []
    size = 0
    for part in parts:
        if type(part) is not str:
            part = to_text(part, bounds)
        size += len(part)
        texts.append(part)
    if size >= COUNTED:
        if size > bounds.max_value:
            raise bounds.too_long("a string joined with ~")
        built(size)
    return "".join(texts)


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def check_format_spec(spec: str, bounds: Bounds) -> None:
    """Refuse widths and precisions that would build a string past the bounds."""
    for number in re.findall(r"\d+", spec):
        if len(number) > 9 or int(number) > bounds.max_value:
            raise bounds.too_long("a formatted value")


def percent(template: Any, args: Any, bounds: Bounds) -> Any:
    """``template % args`` (``%`` and ``|format``), with widths and arguments checked."""
    if not isinstance(template, str | bytes):
        return template % args
    text = template if isinstance(template, str) else template.decode("latin-1")
    for match in _PERCENT.finditer(text):
        if "*" in (match.group(1), match.group(2)):
            raise TemplateLimitError("a '*' width or precision is not supported in "
                                     "format strings")
        check_format_spec(match.group(0), bounds)
    require_data(args, bounds, "a value formatted with %")
    size = json_size(args, bounds.max_value) if not isinstance(args, str) else len(args)
    if size + len(template) > bounds.max_value:
        raise bounds.too_long("a formatted value")
    return check_result(template % args, bounds, "a formatted value")


# ---------------------------------------------------------------------------- operators


_SIZED = (str, bytes, list, tuple)
NUMBERS = frozenset({int, float, bool})


def _sized(value: Any) -> bool:
    return isinstance(value, _SIZED)


def check_binop(operator: str, left: Any, right: Any, bounds: Bounds) -> None:
    """Refuse an arithmetic operation whose result would cross the bounds."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if _sized(seq) and type(times) is int and len(seq) * times > bounds.max_value:
                raise bounds.too_long("a repeated value")
        if type(left) is int and type(right) is int and \
                left.bit_length() + right.bit_length() > bounds.max_int_bits:
            raise bounds.too_big_int()
    elif operator == "**":
        if type(left) is int and type(right) is int and abs(left) > 1 and right > 0 and \
                left.bit_length() * right > bounds.max_int_bits:
            raise bounds.too_big_int()
    elif operator == "+":
        if _sized(left) and _sized(right) and len(left) + len(right) > bounds.max_value:
            raise bounds.too_long("a value built with +")


# ---------------------------------------------------------------------------- methods


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def check_method(name: str, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 bounds: Bounds) -> None:
    """Estimate what a string, bytes or int method would build and refuse it past the bounds."""
    limit = bounds.max_value
    if isinstance(owner, int):
        if name == "to_bytes":
            length = _int_arg(args, kwargs, 0, "length")
            if type(length) is int and length > limit:
                raise bounds.too_long("a value built by to_bytes")
        return
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int_arg(args, kwargs, 0, "width")
        if type(width) is int and width > limit:
            raise bounds.too_long(f"a value built by {name}")
    elif name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize")
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        if type(size) is int and len(owner) + tabs * size > limit:
            raise bounds.too_long("a value built by expandtabs")
    elif name == "replace" and len(args) >= 2:
        replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else -1, bounds)
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            total = sum(len(i) for i in items if isinstance(i, str | bytes))
            if total + len(owner) * max(len(items) - 1, 0) > limit:
                raise bounds.too_long("a value built by join")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(owner) * longest > limit:
            raise bounds.too_long("a value built by translate")


def replace_size(text: Any, old: Any, new: Any, count: Any, bounds: Bounds) -> None:
    if not isinstance(text, str | bytes) or not isinstance(new, str | bytes) or \
            not isinstance(old, str | bytes):
        return
    hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if type(count) is int and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > bounds.max_value:
        raise bounds.too_long("a value built by replace")

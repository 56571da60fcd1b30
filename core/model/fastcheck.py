"""A compiled fast path for JSON Schema validation of the common keyword subset.

jsonschema walks a schema for every instance (40-90 µs for a six-field object); a write
validates every input and every response. ``compile_check`` turns a schema into nested
closures that answer one question quickly: *is this instance certainly valid?* ``True`` is
only returned when jsonschema (Draft 2020-12 with its format checker) would accept the
instance too; ``False`` means "invalid, or not sure", and the caller then runs jsonschema,
which stays the authority and writes the messages.

Supported: ``type``, ``properties``, ``required``, ``additionalProperties``, ``items`` (one
schema), ``enum``/``const`` of strings, lengths, counts, numeric bounds, ``pattern``,
``format`` (through jsonschema's own format checker), ``anyOf``, ``allOf``. A schema using any
other assertion keyword (``$ref``, ``oneOf``, ``not``, ``if``, ``patternProperties``...)
gets no fast path where that keyword sits. Keywords jsonschema ignores are ignored here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["compile_check"]

Check = Callable[[Any], bool]

# Assertion and applicator keywords of Draft 2020-12 that this module does not implement.
_UNSUPPORTED = frozenset({
    "$ref", "$dynamicRef", "oneOf", "not", "if", "then", "else", "dependentSchemas",
    "dependentRequired", "prefixItems", "contains", "maxContains", "minContains",
    "patternProperties", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    "multipleOf", "uniqueItems", "dependencies",
})

_FORMATS = Draft202012Validator.FORMAT_CHECKER


def _never(_value: Any) -> bool:
    return False


def _always(_value: Any) -> bool:
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


_TYPES: dict[str, Check] = {
    "object": _is_dict,
    "array": _is_list,
    "string": _is_str,
    # jsonschema also takes 1.0 as an integer: such values go the slow way
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_check(schema: Any) -> Check | None:
    """A fast "certainly valid" test for ``schema``, or None when the whole schema is
    outside the supported subset."""
    check = _compile(schema)
    return None if check is _never else check


def _compile(schema: Any) -> Check:
    if schema is True or schema == {}:
        return _always
    if not isinstance(schema, dict) or _UNSUPPORTED.intersection(schema):
        return _never
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not all(isinstance(n, str) and n in _TYPES for n in names):
            return _never
        tests = [_TYPES[n] for n in names]
        checks.append(tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests))
    for keyword in ("enum", "const"):
        if keyword in schema:
            allowed = schema[keyword] if keyword == "enum" else [schema[keyword]]
            if not isinstance(allowed, list):
                return _never
            strings = frozenset(a for a in allowed if isinstance(a, str))
            checks.append(lambda v, s=strings: isinstance(v, str) and v in s)  # type: ignore
    if "format" in schema:
        fmt = schema["format"]
        checks.append(lambda v: _FORMATS.conforms(v, fmt))
    checks.extend(_bounds(schema))
    if "pattern" in schema:
        try:
            regex = re.compile(schema["pattern"])
        except (re.error, TypeError):
            return _never
        checks.append(lambda v: not isinstance(v, str) or regex.search(v) is not None)
    obj = _object_check(schema)
    if obj is not None:
        checks.append(obj)
    if "items" in schema:
        item = _compile(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(i) for i in v))
    for keyword, combine in (("anyOf", any), ("allOf", all)):
        if keyword in schema:
            if not isinstance(schema[keyword], list):
                return _never
            subs = [_compile(s) for s in schema[keyword]]
            checks.append(lambda v, subs=subs, combine=combine: combine(  # type: ignore
                s(v) for s in subs))
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def every(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return every


def _itself(value: Any) -> Any:
    return value


# keyword: (the values it applies to, what is measured, whether the limit is a lower bound)
_BOUNDS: dict[str, tuple[Check, Callable[[Any], Any], bool]] = {
    "minLength": (_is_str, len, True), "maxLength": (_is_str, len, False),
    "minItems": (_is_list, len, True), "maxItems": (_is_list, len, False),
    "minProperties": (_is_dict, len, True), "maxProperties": (_is_dict, len, False),
    "minimum": (_is_number, _itself, True), "maximum": (_is_number, _itself, False),
}


def _bounds(schema: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    for keyword, (applies, measure, lower) in _BOUNDS.items():
        if keyword in schema:
            limit = schema[keyword]
            if lower:
                out.append(lambda v, a=applies, m=measure, n=limit:  # type: ignore[misc]
                           not a(v) or m(v) >= n)
            else:
                out.append(lambda v, a=applies, m=measure, n=limit:  # type: ignore[misc]
                           not a(v) or m(v) <= n)
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"]
        out.append(lambda v: not _is_number(v) or v > low)
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"]
        out.append(lambda v: not _is_number(v) or v < high)
    return out


def _object_check(schema: dict[str, Any]) -> Check | None:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, dict) or not isinstance(required, list):
        return _never
    if not props and not required and extra is True:
        return None
    compiled = {name: _compile(sub) for name, sub in props.items()}
    other = _compile(extra)
    need = tuple(required)

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in need:
            if name not in value:
                return False
        for name, item in value.items():
            sub = compiled.get(name)
            if sub is None:
                if not other(item):
                    return False
            elif not sub(item):
                return False
        return True

    return check

"""JSON Schema helpers: bundled schemas, readable error messages, schema walking.

Messages are written for people, and never quote the checked value (it may be user data):
``missing required key 'use'``, ``unknown key 'sepps' (did you mean 'steps'?)``,
``expected an integer, got a string``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache, cached_property
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
              int: "an integer", float: "a number", type(None): "null"}


def type_name(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


@cache
def bundled_schema(name: str) -> dict[str, Any]:
    """One of splice's own schemas (``connector`` or ``recipe``)."""
    text = resources.files("splice").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def bundled_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(bundled_schema(name))


@cache
def bundled_checker(name: str) -> Checker:
    """A Checker (fast path first) for one of splice's own schemas."""
    return Checker(bundled_schema(name))


@cache
def _meta_checker() -> Checker:
    return Checker(Draft202012Validator.META_SCHEMA)


def schema_error(schema: Any) -> SchemaError | None:
    """Why ``schema`` is not a valid Draft 2020-12 JSON Schema (jsonschema's
    ``check_schema``, its error), None when it is; valid schemas take the fast path."""
    if _meta_checker().is_valid(schema):
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc
    return None


def validator_for(schema: dict[str, Any] | bool) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


class Checker:
    """A schema's validator with a compiled fast path (jsonschema-rs, ``splice.model.fastpath``):
    ``errors`` answers a valid instance without jsonschema and explains an invalid one with it
    (jsonschema is built on first need)."""

    def __init__(self, schema: dict[str, Any] | bool) -> None:
        from .fastpath import compile_fast_path

        self.schema = schema
        self._fast = compile_fast_path(schema)

    @cached_property
    def validator(self) -> Draft202012Validator:
        """jsonschema's validator: the authority, and the messages."""
        return validator_for(self.schema)

    def is_valid(self, instance: Any) -> bool:
        """Whether jsonschema accepts ``instance`` (the fast path first)."""
        if self._fast is not None and self._fast(instance):
            return True
        return bool(self.validator.is_valid(instance))

    def errors(self, instance: Any) -> list[tuple[tuple[str | int, ...], str, bool]]:
        """Readable problems of ``instance`` (see ``iter_errors``); empty when valid."""
        if self._fast is not None and self._fast(instance):
            return []
        return list(iter_errors(self.validator, instance))


def did_you_mean(word: str, options: Any) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _plural_type(t: Any) -> str:
    names = {"object": "an object", "array": "a list", "string": "a string",
             "integer": "an integer", "number": "a number", "boolean": "a boolean",
             "null": "null"}
    if isinstance(t, list):
        return " or ".join(names.get(str(x), str(x)) for x in t)
    return names.get(t, str(t))


def describe(error: ValidationError) -> tuple[tuple[str | int, ...], str, bool]:
    """(path, message, points_at_key) for one error, written for people."""
    path = tuple(error.absolute_path)
    v, schema, inst = error.validator, error.schema, error.instance
    if v == "required":
        missing = [r for r in error.validator_value if isinstance(inst, dict) and r not in inst]
        name = missing[0] if missing else "?"
        return path, f"missing required key '{name}'", False
    if v == "additionalProperties" and isinstance(inst, dict):
        known = list(schema.get("properties", {}))
        extra = [k for k in inst if k not in known
                 and not any(re.search(p, k) for p in schema.get("patternProperties", {}))]
        key = extra[0] if extra else "?"
        hint = did_you_mean(key, known) or (f"; allowed keys: {', '.join(known)}" if known else "")
        return (*path, key), f"unknown key '{key}'{hint}", True
    if v == "propertyNames" and isinstance(inst, dict):
        return path, "a key does not match " \
                     f"{schema.get('propertyNames', {}).get('pattern', 'the naming rule')}", False
    if v == "type":
        return path, f"expected {_plural_type(error.validator_value)}, got {type_name(inst)}", False
    if v == "enum":
        opts = error.validator_value
        hint = did_you_mean(inst, opts) if isinstance(inst, str) else ""
        return path, f"must be one of: {', '.join(map(str, opts))}{hint}", False
    if v == "const":
        return path, f"must be {json.dumps(error.validator_value)}", False
    if v == "pattern":
        desc = schema.get("description")
        return path, f"does not match the pattern {error.validator_value}" + \
            (f" ({desc})" if desc else ""), False
    if v in ("minLength", "maxLength"):
        return path, f"length must be {'at least' if v == 'minLength' else 'at most'} " \
                     f"{error.validator_value}", False
    if v in ("minItems", "maxItems"):
        return path, f"must have {'at least' if v == 'minItems' else 'at most'} " \
                     f"{error.validator_value} item(s)", False
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
                 "exclusiveMaximum": "<"}
        return path, f"must be {words[v]} {error.validator_value}", False
    if v == "format":
        return path, f"must be a valid {error.validator_value}", False
    if v == "minProperties":
        return path, f"must have at least {error.validator_value} entr(y/ies)", False
    if v in ("oneOf", "anyOf") and error.context:
        best = min(error.context, key=lambda e: (len(e.absolute_path) * -1, e.validator == "type"))
        sub_path, msg, at_key = describe(best)
        return sub_path, msg, at_key
    if v == "uniqueItems":
        return path, "items must be unique", False
    return path, f"fails the '{v}' rule", False


def iter_errors(validator: Draft202012Validator, instance: Any) -> Iterator[
        tuple[tuple[str | int, ...], str, bool]]:
    """Readable errors in document order, most specific first, without duplicates."""
    seen: set[tuple[Any, str]] = set()
    errors = sorted(validator.iter_errors(instance),
                    key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        if err.validator in ("if", "then", "allOf") and err.context:
            for sub in err.context:
                item = describe(sub)
                if (item[0], item[1]) not in seen:
                    seen.add((item[0], item[1]))
                    yield item
            continue
        item = describe(err)
        if (item[0], item[1]) not in seen:
            seen.add((item[0], item[1]))
            yield item


def subschema(schema: Any, path: tuple[str | int, ...], *, strict: bool = False) -> Any:
    """The schema describing the value at ``path`` inside an instance of ``schema``.

    Returns ``None`` when the path cannot exist (an unknown property of a closed object), and
    ``True`` (anything goes) when the schema does not say. ``strict`` treats an object that
    lists its properties as closed unless ``additionalProperties`` is a schema: that is how
    typos in ``trigger.<field>`` are caught, since API outputs list what they return.
    """
    node = schema
    for part in path:
        node = _step(node, part, strict)
        if node is None:
            return None
    return node


def _step(node: Any, part: str | int, strict: bool = False) -> Any:
    if node is True or node is None or not isinstance(node, dict):
        return True if node is not None else None
    for combo in ("allOf", "anyOf", "oneOf"):
        if combo in node:
            found = [_step(s, part, strict) for s in node[combo]]
            found = [f for f in found if f is not None]
            own = {k: v for k, v in node.items() if k != combo}
            if own:
                found.append(_step(own, part, strict))
                found = [f for f in found if f is not None]
            if not found:
                return None
            concrete = [f for f in found if f is not True]
            return concrete[0] if concrete else True
    types = node.get("type")
    types = types if isinstance(types, list) else [types] if types else []
    if isinstance(part, int) or (isinstance(part, str) and part.isdigit() and "array" in types
                                 and "object" not in types):
        if types and "array" not in types:
            return None
        items = node.get("items", True)
        return items if items is not None else True
    props = node.get("properties", {})
    if part in props:
        return props[part]
    for pattern, sub in node.get("patternProperties", {}).items():
        if re.search(pattern, part):
            return sub
    if types and "object" not in types:
        return None
    extra = node.get("additionalProperties", True)
    if extra is False or (strict and props and not isinstance(extra, dict)):
        return None
    return extra if isinstance(extra, dict) else True


def property_names(schema: Any) -> list[str]:
    """Known property names of an object schema (through allOf/anyOf/oneOf)."""
    if not isinstance(schema, dict):
        return []
    names = list(schema.get("properties", {}))
    for combo in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combo, []):
            names += [n for n in property_names(sub) if n not in names]
    return names

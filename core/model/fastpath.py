"""The fast path for "is this instance valid?": jsonschema-rs, held to jsonschema's verdicts.

jsonschema walks a schema in Python for every instance (40-90 µs for a six-field object; a
write validates every input and every response). ``compile_fast_path(schema)`` builds a
jsonschema-rs validator (Rust; ~0.6 µs for the same object, checks below included) that
answers one question: *is this instance certainly valid?* ``True`` is only returned when
jsonschema (Draft 2020-12 with its format checker) accepts the instance too; ``False`` means
"invalid, or not sure", and the caller then runs jsonschema, which stays the authority and
writes the messages.

jsonschema-rs implements the same draft; where its semantics differ from jsonschema's, the
difference is taken out before it can say "valid":

- ``pattern``: ECMA regular expressions there, Python's ``re`` here (``\\D``, ``\\s`` and
  ``\\b`` match different characters). Each ``pattern`` is checked by a keyword written in
  Python with ``re.search``, as jsonschema does.
- ``format``: each format jsonschema's ``FORMAT_CHECKER`` knows is checked by that checker
  (called from Rust); a format it does not know asserts nothing in jsonschema, and is dropped
  from the schema (inside the draft's meta-schemas, which jsonschema-rs holds itself, such a
  format gets a check that passes everything).
- ``multipleOf``: jsonschema's own float arithmetic, through a one-keyword jsonschema check.
- Instances: jsonschema-rs reads a tuple as an array, a ``Decimal`` or an ``Enum`` as a number
  and a non-finite float as null, where jsonschema does not. Only instances made of ``dict``
  (string keys), ``list``, ``str``, ``int``, ``bool``, ``None`` and finite ``float`` (exact
  types) take the fast path; anything else goes to jsonschema.

No fast path (``None``) when jsonschema-rs is not installed, cannot compile the schema, or the
schema uses ``patternProperties`` with a regular expression whose meaning may differ, or
declares a ``$schema`` other than Draft 2020-12. ``tests/test_fastpath.py`` checks agreement
with jsonschema on every shipped schema with generated instances, formats included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["compile_fast_path", "is_plain_json"]

Check = Callable[[Any], bool]

_FORMATS = Draft202012Validator.FORMAT_CHECKER
_DRAFT_2020_12 = {"https://json-schema.org/draft/2020-12/schema",
                  "https://json-schema.org/draft/2020-12/schema#"}
_LEAVES = frozenset({str, int, bool, type(None)})

# Keywords whose value is a map of name -> schema (the names are not keywords), and keywords
# whose value is data (never rewritten). Every other object or list is walked as schemas, so a
# ``$ref`` into any part of the document sees the rewritten form.
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions",
                  "dependentSchemas"})
_DATA = frozenset({"const", "enum", "default", "examples", "required", "dependentRequired"})
# A $ref to a document jsonschema-rs resolves itself (a draft's meta-schema, by URI).
_EXTERNAL_REF = re.compile(r"'\$(?:dynamic)?[rR]ef': '(?!#)")
# Regex syntax whose meaning differs between Python's re and ECMA 262 (or that one lacks).
_NOT_PORTABLE = re.compile(r"\\[DWSsbBAZzGpPNhHvVRXKQE]|\{,|\(\?(?![:=!]|<[=!])")


def is_plain_json(value: Any) -> bool:
    """Whether ``value`` is made of exact JSON types only (finite floats, string keys)."""
    kind = type(value)
    if kind in _LEAVES:
        return True
    if kind is float:
        return value - value == 0.0  # False for inf and nan
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _LEAVES and not is_plain_json(item)):
                return False
        return True
    if kind is list:
        for item in value:
            if type(item) not in _LEAVES and not is_plain_json(item):
                return False
        return True
    return False


class _PythonPattern:
    """``pattern`` with Python's ``re.search``, exactly as jsonschema checks it."""

    def __init__(self, parent_schema: Any, value: Any, schema_path: Any) -> None:
        self.search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and self.search(instance) is None:
            raise ValueError("does not match the pattern")


class _PythonMultipleOf:
    """``multipleOf`` with jsonschema's own arithmetic (floats are compared its way)."""

    def __init__(self, parent_schema: Any, value: Any, schema_path: Any) -> None:
        self.is_valid = Draft202012Validator({"multipleOf": value}).is_valid

    def validate(self, instance: Any) -> None:
        if not self.is_valid(instance):
            raise ValueError("not a multiple")


_KEYWORDS = {"x-splice-pattern": _PythonPattern, "x-splice-multipleOf": _PythonMultipleOf}


class _Unsupported(Exception):
    """The schema is outside what the fast path can mirror exactly."""


def _rewrite(schema: Any) -> Any:
    """A copy of ``schema`` for jsonschema-rs with jsonschema's semantics (module docstring)."""
    if isinstance(schema, list):
        return [_rewrite(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            out["x-splice-pattern"] = value
        elif key == "multipleOf":
            out["x-splice-multipleOf"] = value
        elif key == "format" and isinstance(value, str):
            if value in _FORMATS.checkers:
                out[key] = value
            # else: jsonschema asserts nothing for a format it does not know
        elif key in _DATA:
            out[key] = value
        elif key in _MAP and isinstance(value, dict):
            if key == "patternProperties" and any(
                    _NOT_PORTABLE.search(str(name)) for name in value):
                raise _Unsupported(key)
            out[key] = {name: _rewrite(v) for name, v in value.items()}
        else:
            out[key] = _rewrite(value)
    return out


# Formats jsonschema-rs checks on its own; those jsonschema does not check pass anything.
_ALL_FORMATS = frozenset(_FORMATS.checkers) | {
    "date", "date-time", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uri-template",
    "json-pointer", "relative-json-pointer", "regex", "uuid"}


def _anything(_value: Any) -> bool:
    return True


def _format_check(name: str) -> Check:
    def conforms(value: Any) -> bool:
        return _FORMATS.conforms(value, name)
    return conforms


def _no_remote_refs(uri: str) -> Any:
    raise ValueError(f"not fetched: {uri}")  # jsonschema does not fetch them either


def compile_fast_path(schema: Any) -> Check | None:
    """A "certainly valid" test for ``schema``, or None (see the module docstring)."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - a platform without a wheel
        return None
    declared = schema.get("$schema") if isinstance(schema, dict) else None
    if declared is not None and declared not in _DRAFT_2020_12:
        return None
    try:
        rewritten = _rewrite(schema)
        text = repr(rewritten)
        options: dict[str, Any] = {"retriever": _no_remote_refs, "validate_formats": False}
        if "'format'" in text or "$schema" in text or _EXTERNAL_REF.search(text):
            # Every format jsonschema checks, checked by jsonschema: also where jsonschema-rs
            # reads a schema it did not get from us (a draft's meta-schemas, by URI). Only
            # then: format callbacks slow every validation down a little.
            options.update(validate_formats=True, ignore_unknown_formats=True,
                           formats={name: _format_check(name) if name in _FORMATS.checkers
                                    else _anything for name in _ALL_FORMATS})
        used = {name: kind for name, kind in _KEYWORDS.items() if repr(name) in text}
        if used:  # custom keywords slow every validation down, even where unused
            options["keywords"] = used
        validator = jsonschema_rs.Draft202012Validator(rewritten, **options)
    except (_Unsupported, ValueError, TypeError, re.error, jsonschema_rs.ValidationError):
        return None
    except Exception:  # noqa: BLE001 - any other refusal of the schema: no fast path
        return None
    is_valid = validator.is_valid

    def check(instance: Any) -> bool:
        if not is_plain_json(instance):
            return False
        try:
            return bool(is_valid(instance))
        except Exception:  # noqa: BLE001 - a value jsonschema-rs cannot read: not sure
            return False

    return check

"""Request validation for the HighLevel sandbox: exactly the official specs' rules.

Contract:

* The rules are ``sandbox_requests.yaml``: per manifest operation, the versions the official
  specs define it for (``2021-07-28`` and, where ``apps/v3`` has the same method and path,
  ``v3``), and for each version its query parameters and request body (media type, required,
  JSON schema), taken from the spec files with prose removed and known spec defects corrected
  (tests/ghl_spec.py generates the file; tests/test_ghl_contract.py checks it is current).
* :meth:`Rules.check_query` and :meth:`Rules.check_body` return class-validator style
  messages (what HighLevel's NestJS API puts in a 422 ``message`` list), empty when the
  request is one the spec allows. Nothing the spec leaves free is refused: query values typed
  ``string`` may be any text; only ``boolean`` ones must read ``true`` or ``false``.
* Rules stated only in prose (the v3 password policy) are the handlers' business, not this
  module's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

RULES_FILE = Path(__file__).with_name("sandbox_requests.yaml")
V2, V3 = "2021-07-28", "v3"
JSON_MEDIA, MULTIPART = "application/json", "multipart/form-data"

_FORMATS = FormatChecker(formats=())
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:?\d\d)?")


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or _DATE_TIME.fullmatch(value) is not None


_TYPE_WORDS = {"string": "a string", "number": "a number conforming to the specified constraints",
               "integer": "an integer number", "boolean": "a boolean value",
               "array": "an array", "object": "an object", "null": "null"}


def _where(error: ValidationError) -> tuple[str, bool]:
    """The dotted field name of an error and whether it is an array element."""
    parts = list(error.absolute_path)
    each = bool(parts) and isinstance(parts[-1], int)
    if each:
        parts = parts[:-1]
    return ".".join(str(p) for p in parts), each


def _message(error: ValidationError) -> list[str]:
    name, each = _where(error)
    subject = f"each value in {name}" if each else name or "request body"
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        have = error.instance if isinstance(error.instance, dict) else {}
        prefix = f"{name}." if name and not each else ""
        return [f"{prefix}{field} should not be empty" for field in expected
                if field not in have]
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types if t != "null")
        return [f"{subject} must be {words}"]
    if kind == "enum":
        return [f"{subject} must be one of the following values: "
                + ", ".join(str(v) for v in expected)]
    if kind == "minItems":
        return [f"{subject} must contain at least {expected} elements"]
    if kind == "maxItems":
        return [f"{subject} must contain no more than {expected} elements"]
    if kind == "format" and expected == "date-time":
        return [f"{subject} must be a valid ISO 8601 date string"]
    if kind == "maxLength":
        return [f"{subject} must be shorter than or equal to {expected} characters"]
    if kind == "minLength":
        return [f"{subject} must be longer than or equal to {expected} characters"]
    return [f"{subject}: {error.message}"]


class Rules:
    """The request rules of every operation, by manifest operation id."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.table = table
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}

    def versions(self, op_id: str) -> tuple[str, ...]:
        return tuple(self.table[op_id]["versions"])

    def spec(self, op_id: str, version: str) -> dict[str, Any]:
        return self.table[op_id]["versions"][version]  # type: ignore[no-any-return]

    def body(self, op_id: str, version: str) -> dict[str, Any] | None:
        return self.spec(op_id, version)["body"]  # type: ignore[no-any-return]

    def check_query(self, op_id: str, version: str, query: Mapping[str, str]) -> list[str]:
        problems: list[str] = []
        for name, param in self.spec(op_id, version)["query"].items():
            value = query.get(name)
            if value is None:
                if param["required"]:
                    problems.append(f"{name} should not be empty")
                continue
            schema = param["schema"]
            if schema.get("type") == "boolean" and value not in ("true", "false"):
                problems.append(f"{name} must be a boolean value")
            elif "enum" in schema and value not in [str(v) for v in schema["enum"]]:
                problems.append(f"{name} must be one of the following values: "
                                + ", ".join(str(v) for v in schema["enum"]))
        return problems

    def check_body(self, op_id: str, version: str, body: Any) -> list[str]:
        """Problems with ``body`` (already parsed; multipart as ``{name: text}``)."""
        key = (op_id, version)
        if key not in self._validators:
            spec = self.body(op_id, version)
            schema = spec["schema"] if spec else {}
            self._validators[key] = Draft202012Validator(schema, format_checker=_FORMATS)
        errors = sorted(self._validators[key].iter_errors(body),
                        key=lambda e: [str(p) for p in e.absolute_path])
        problems: list[str] = []
        for error in errors:
            for message in _message(error):
                if message not in problems:
                    problems.append(message)
        return problems


@cache
def rules() -> Rules:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(RULES_FILE.read_text("utf-8"), Loader=loader)
    return Rules(data["operations"])

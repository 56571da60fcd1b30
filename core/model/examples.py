"""An example value for a JSON Schema: inputs for conformance calls, starting samples.

:func:`example` prefers what the schema itself shows (``examples``, ``example``,
``default``, ``const``, the first ``enum`` value), then builds a value from the type,
honouring ``format``, ``minimum``/``maximum``, ``minLength``, ``minItems`` and the required
properties of objects. The result is meant to be checked against the schema by the caller;
a ``pattern`` is not solved.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 10

_FORMATS = {
    "date-time": "2026-05-01T09:30:00Z",
    "date": "2026-05-01",
    "time": "09:30:00",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "3f2b8c1e-5d4a-4b7e-9c21-0a1b2c3d4e5f",
    "ipv4": "192.0.2.1",
    "hostname": "example.com",
}


def example(schema: Any, *, required_only: bool = False, depth: int = 0) -> Any:
    """A value for ``schema``; ``required_only`` fills only required object properties."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None if schema is False else {}
    for key in ("examples",):
        values = schema.get(key)
        if isinstance(values, list) and values:
            return values[0]
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            if isinstance(branch, dict):
                merged.setdefault("properties", {}).update(branch.get("properties") or {})
                merged["required"] = list(merged.get("required") or []) + \
                    list(branch.get("required") or [])
                for k, v in branch.items():
                    merged.setdefault(k, v)
        return example(merged, required_only=required_only, depth=depth + 1)
    for combo in ("oneOf", "anyOf"):
        branches = [b for b in schema.get(combo) or [] if isinstance(b, dict)
                    and b.get("type") != "null"]
        if branches:
            return example(branches[0], required_only=required_only, depth=depth + 1)
    types = schema.get("type")
    names = types if isinstance(types, list) else [types] if types else []
    kind = next((t for t in names if t != "null"), None)
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        elif names == ["null"]:
            return None
        else:
            return {}  # the schema allows anything: an empty object says the least
    return _by_type(kind, schema, required_only, depth)


def _by_type(kind: str, schema: dict[str, Any], required_only: bool, depth: int) -> Any:
    if kind == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {name: example(sub, required_only=required_only, depth=depth + 1)
                for name, sub in props.items() if not required_only or name in required}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        item = example(schema.get("items", {}), required_only=required_only, depth=depth + 1)
        return [item for _ in range(count)]
    if kind == "string":
        text = _FORMATS.get(str(schema.get("format")), "example")
        minimum = int(schema.get("minLength") or 0)
        if len(text) < minimum:
            text = text + "x" * (minimum - len(text))
        maximum = schema.get("maxLength")
        return text[:int(maximum)] if isinstance(maximum, int) and maximum > 0 else text
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value: float = 1 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None

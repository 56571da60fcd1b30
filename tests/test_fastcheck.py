"""The validation fast path never accepts what jsonschema rejects, and is used for the
schemas real connectors declare."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from splice.model.fastcheck import compile_check
from splice.model.schema import Checker, validator_for

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = [ROOT / "connectors/ghl_users/manifest.yaml",
             ROOT / "connectors/invoice2go/manifest.yaml",
             ROOT / "tests/fixtures/fakecrm.yaml", ROOT / "bench/connector.yaml"]


def _schemas() -> list[tuple[str, Any, list[Any]]]:
    out = []
    for path in MANIFESTS:
        doc = yaml.safe_load(path.read_text())
        for name, op in doc["operations"].items():
            samples = [op["sample"]] if "sample" in op else []
            out.append((f"{path.parent.name}.{name}.input", op.get("input", True), []))
            out.append((f"{path.parent.name}.{name}.output", op.get("output", True), samples))
    return out


SCHEMAS = _schemas()
SCALARS: list[Any] = [None, True, False, 0, 1, -3, 1.0, 2.5, "", "x", "2026-11-26T10:00:00Z",
                      "2026-11-26", "a@b.co", "not an email", "https://x.test/a", [], {}]


def generate(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value shaped like ``schema`` (often valid, sometimes not)."""
    if not isinstance(schema, dict) or depth > 6 or rng.random() < 0.08:
        return rng.choice(SCALARS)
    for combo in ("anyOf", "oneOf", "allOf"):
        if combo in schema and schema[combo]:
            return generate(rng.choice(schema[combo]), rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"] + ([rng.choice(SCALARS)] if rng.random() < .2 else []))
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    kind = rng.choice(kind) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out = {k: generate(v, rng, depth + 1) for k, v in props.items()
               if k in schema.get("required", []) or rng.random() < 0.7}
        if rng.random() < 0.1:
            out["unexpected"] = 1
        return out
    if kind == "array":
        return [generate(schema.get("items", True), rng, depth + 1)
                for _ in range(rng.randint(0, 3))]
    if kind == "string":
        if "format" in schema:
            return rng.choice(["2026-11-26T10:00:00Z", "2026-11-26", "a@b.co", "nope",
                               "https://x.test/a", "10:00:00Z"])
        return rng.choice(["", "abc", "x" * 300, "Ünïcödé"])
    if kind == "integer":
        return rng.choice([0, 1, -1, 10**6, True, 1.0, 1.5])
    if kind == "number":
        return rng.choice([0, 0.5, -2.25, 1e9, False, "1"])
    if kind == "boolean":
        return rng.choice([True, False, 0, 1])
    return rng.choice(SCALARS)


@pytest.mark.parametrize("name,schema,samples", SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_fast_path_never_accepts_an_invalid_instance(name, schema, samples):
    fast = compile_check(schema)
    validator = validator_for(schema)
    rng = random.Random(name)
    for instance in [*samples, *(generate(schema, rng) for _ in range(150))]:
        if fast is not None and fast(instance):
            assert validator.is_valid(instance), (name, instance)


def test_fast_path_covers_the_shipped_connectors():
    """Most declared schemas are in the subset, and valid samples take the fast path."""
    compiled = [compile_check(schema) for _name, schema, _ in SCHEMAS]
    assert sum(c is not None for c in compiled) >= 0.9 * len(SCHEMAS)
    accepted = [compile_check(schema)(sample)  # type: ignore[misc]
                for _n, schema, samples in SCHEMAS for sample in samples
                if compile_check(schema) is not None]
    assert accepted and all(accepted)


CASES = [  # schema, instance, jsonschema verdict; the fast path must not say True when False
    ({"type": "integer"}, True, False),
    ({"type": "integer"}, 1.0, True),
    ({"type": "number"}, False, False),
    ({"enum": [1, 2]}, True, False),
    ({"enum": ["a"]}, "a", True),
    ({"const": "a"}, "b", False),
    ({"type": "string", "format": "email"}, "nope", False),
    ({"type": "string", "format": "date"}, "2026-13-45", False),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"b": 1}, False),
    ({"type": "object", "required": ["a"]}, {}, False),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, {"a": 1}, False),
    ({"type": "array", "items": {"type": "string"}}, ["a", 2], False),
    ({"type": "string", "minLength": 2}, "é", False),
    ({"type": "string", "pattern": "^a"}, "ba", False),
    ({"minimum": 0}, -1, False),
    ({"exclusiveMaximum": 5}, 5, False),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 3, False),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, None, True),
    ({"type": ["string", "null"]}, None, True),
    ({"maxItems": 1}, [1, 2], False),
]


@pytest.mark.parametrize("schema,instance,valid", CASES)
def test_fast_path_agrees_on_tricky_values(schema, instance, valid):
    assert validator_for(schema).is_valid(instance) is valid
    fast = compile_check(schema)
    assert fast is not None
    if not valid:
        assert fast(instance) is False
    checker = Checker(schema)
    assert (checker.errors(instance) == []) is valid


@pytest.mark.parametrize("schema", [
    {"$ref": "#/$defs/x", "$defs": {"x": {}}}, {"oneOf": [{}]}, {"not": {}},
    {"patternProperties": {"a": {}}}, {"uniqueItems": True}, {"if": {}, "then": {}},
])
def test_unsupported_keywords_take_the_jsonschema_path(schema):
    assert compile_check(schema) is None

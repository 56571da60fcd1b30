"""The jsonschema-rs fast path agrees with jsonschema: on every schema splice ships (operation
inputs and outputs of every connector, the manifest and recipe meta-schemas) and generated
instances, formats and patterns included, it says "valid" exactly when jsonschema does, and
it never says so for a value jsonschema rejects."""

from __future__ import annotations

import decimal
import enum
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from splice.model.fastpath import compile_fast_path, is_plain_json
from splice.model.schema import Checker, bundled_schema, validator_for

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = [ROOT / "connectors/ghl_users/manifest.yaml",
             ROOT / "connectors/invoice2go/manifest.yaml",
             ROOT / "tests/fixtures/fakecrm.yaml", ROOT / "bench/connector.yaml"]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + [ROOT / "bench/recipe.yaml"]


def _schemas() -> list[tuple[str, Any, list[Any]]]:
    out = []
    for path in MANIFESTS:
        doc = yaml.safe_load(path.read_text())
        for name, op in doc["operations"].items():
            samples = [op["sample"]] if "sample" in op else []
            out.append((f"{path.parent.name}.{name}.input", op.get("input", True), []))
            out.append((f"{path.parent.name}.{name}.output", op.get("output", True), samples))
        for name, trig in (doc.get("triggers") or {}).items():
            if "output" in trig:
                out.append((f"{path.parent.name}.{name}.trigger", trig["output"], []))
    manifests = [yaml.safe_load(p.read_text()) for p in MANIFESTS]
    out.append(("connector.schema", bundled_schema("connector"), manifests))
    # every declared schema, as an instance of the meta-schema (manifest checks use it), and
    # schemas jsonschema rejects: a Python-invalid regex, an ECMA-only one, bad keyword types
    declared = [schema for _name, schema, _samples in out[:-1]]
    broken = [{"type": "strin"}, {"pattern": "("}, {"pattern": "(?<n>a)"}, {"minLength": -1},
              {"required": "a"}, {"properties": {"a": {"type": 3}}}, {"items": [1]},
              {"$ref": 3}, {"enum": []}, {"format": 3}, {"pattern": "(?P<n>a)"}]
    out.append(("draft-2020-12 meta-schema", Draft202012Validator.META_SCHEMA,
                declared + broken))
    out.append(("recipe.schema", bundled_schema("recipe"),
                [yaml.safe_load(p.read_text()) for p in RECIPES]))
    return out


SCHEMAS = _schemas()
FORMAT_STRINGS = {
    "date-time": ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+01:00", "2026-11-26 10:00",
                  "garbage", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z"],
    "date": ["2026-11-26", "2026-02-29", "2024-02-29", "2026-1-1", "26-11-2026", "２０２６-01-01"],
    "time": ["10:00:00Z", "25:00:00Z", "10:00"],
    "email": ["a@b.co", "a@b", "no-at-sign", "@", "ü@ex.com", "a b@c.d"],
    "uuid": ["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
             "3f2504e04f8911d39a0c0305e82c3301", "not-a-uuid",
             "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}"],
    "ipv4": ["127.0.0.1", "01.1.1.1", "256.1.1.1", "1.1.1"],
    "ipv6": ["::1", "fe80::1%eth0", "12345::", "::ffff:1.2.3.4"],
    "uri": ["https://x.test/a", "not a uri", "x:"],
    "regex": ["^a+$", "(?<n>a)", "(?P<n>a)", "[", "\\p{L}"],
    "hostname": ["example.com", "-bad-.com", "a" * 70 + ".com"],
}
ODD_STRINGS = ["", "abc", "x" * 300, "Ünïcödé", "٣٤", "abc\n", " ", "\u00a0", "\x1c", "a,b",
               "ABC", "123", "12a", "é" * 41, "https://x.test/", "http://localhost:8080/",
               "http://127.0.0.1/x"]


class Colour(enum.Enum):
    RED = 1


class Flag(int):
    pass


SCALARS: list[Any] = [None, True, False, 0, 1, -3, 1.0, 2.5, 10**20, -(2**70), "", "x",
                      [], {}, (), (1, "a"), decimal.Decimal("1"), Colour.RED, Flag(3),
                      math.nan, math.inf, {1: "int key"}]


def generate(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value shaped like ``schema`` (often valid, sometimes not, sometimes not JSON)."""
    if not isinstance(schema, dict) or depth > 6 or rng.random() < 0.06:
        return rng.choice(SCALARS)
    if "$ref" in schema and rng.random() < 0.5:
        return rng.choice(SCALARS)
    for combo in ("anyOf", "oneOf", "allOf"):
        if combo in schema and schema[combo]:
            return generate(rng.choice(schema[combo]), rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"] + ([rng.choice(SCALARS)] if rng.random() < .2 else []))
    if "const" in schema:
        return schema["const"] if rng.random() < 0.9 else rng.choice(SCALARS)
    kind = schema.get("type")
    kind = rng.choice(kind) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out = {k: generate(v, rng, depth + 1) for k, v in props.items()
               if k in schema.get("required", []) or rng.random() < 0.7}
        if rng.random() < 0.1:
            out[rng.choice(["unexpected", "x-extra", "2"])] = rng.choice(SCALARS)
        if rng.random() < 0.03:
            return tuple(out.items())
        return out
    if kind == "array":
        items = [generate(schema.get("items", True), rng, depth + 1)
                 for _ in range(rng.randint(0, 3))]
        return tuple(items) if rng.random() < 0.05 else items
    if kind == "string" or "pattern" in schema or "format" in schema:
        if "format" in schema and rng.random() < 0.8:
            return rng.choice(FORMAT_STRINGS.get(schema["format"], ODD_STRINGS))
        return rng.choice(ODD_STRINGS + FORMAT_STRINGS["date-time"])
    if kind == "integer":
        return rng.choice([0, 1, -1, 10**6, 2**63, -(2**64), True, 1.0, 1.5, Flag(2),
                           decimal.Decimal("1")])
    if kind == "number":
        return rng.choice([0, 0.5, -2.25, 1e9, 1e308, False, "1", math.inf, math.nan,
                           decimal.Decimal("0.5")])
    if kind == "boolean":
        return rng.choice([True, False, 0, 1])
    return rng.choice(SCALARS)


def _mutations(doc: Any, rng: random.Random) -> list[Any]:
    """Small damage to a real document: a key dropped, a value swapped for a scalar."""
    out = []
    for _ in range(30):
        copy = json.loads(json.dumps(doc))
        node = copy
        for _depth in range(rng.randint(1, 4)):
            if isinstance(node, dict) and node:
                key = rng.choice(list(node))
                if rng.random() < 0.3:
                    node[key] = rng.choice(SCALARS[:14] + ODD_STRINGS)
                    break
                if not isinstance(node[key], (dict, list)):
                    del node[key]
                    break
                node = node[key]
            elif isinstance(node, list) and node:
                node = rng.choice(node)
        out.append(copy)
    return out


@pytest.mark.parametrize("name,schema,samples", SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_fast_path_agrees_with_jsonschema(name: str, schema: Any, samples: list[Any]) -> None:
    fast = compile_fast_path(schema)
    assert fast is not None, f"{name}: no fast path"
    validator = validator_for(schema)
    rng = random.Random(name)
    instances = [*samples, *(generate(schema, rng) for _ in range(300))]
    for sample in rng.sample(samples, min(len(samples), 8)):  # bounded: jsonschema is slow
        instances += _mutations(sample, rng)
    valid = 0
    for instance in instances:
        verdict = validator.is_valid(instance)
        said = fast(instance)
        if said:
            assert verdict, (name, instance)  # never "valid" for what jsonschema rejects
        if is_plain_json(instance):
            assert said == verdict, (name, instance)  # and exactly jsonschema on JSON values
        valid += verdict
    for sample in samples:
        if validator.is_valid(sample):
            assert fast(sample), (name, "a shipped sample must take the fast path")
    assert 0 < len(instances)


CASES = [  # schema, instance, jsonschema's verdict
    ({"type": "integer"}, True, False),
    ({"type": "integer"}, 1.0, True),
    ({"type": "integer"}, decimal.Decimal("1"), False),  # jsonschema-rs alone: valid
    ({"type": "integer"}, Colour.RED, False),  # jsonschema-rs alone: valid (its value)
    ({"type": "number"}, False, False),
    ({"type": "number"}, math.nan, True),
    ({"maximum": 5}, math.inf, False),  # jsonschema-rs alone reads inf as null: valid
    ({"type": "array"}, (1, 2), False),  # jsonschema-rs alone: a tuple is an array
    ({"type": "object"}, {1: "a"}, True),
    ({"enum": [1, 2]}, True, False),
    ({"enum": ["a"]}, "a", True),
    ({"const": "a"}, "b", False),
    ({"type": "string", "format": "email"}, "nope", False),
    ({"type": "string", "format": "date"}, "2026-13-45", False),
    ({"type": "string", "format": "date-time"}, "garbage", True),  # unchecked by jsonschema
    ({"type": "string", "format": "regex"}, "(?<n>a)", False),  # ECMA syntax, not Python's
    ({"type": "string", "format": "binary"}, "anything", True),  # unknown format
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"b": 1},
     False),
    ({"type": "object", "required": ["a"]}, {}, False),
    ({"type": "array", "items": {"type": "string"}}, ["a", 2], False),
    ({"type": "string", "minLength": 2}, "é", False),
    ({"type": "string", "pattern": "^a"}, "ba", False),
    ({"type": "string", "pattern": "^\\D+$"}, "٣", False),  # ECMA's \D would match it
    ({"type": "string", "pattern": "^[^,\\s]+$"}, "\x1c", False),  # Python's \s has \x1c
    ({"type": "string", "pattern": "^a$"}, "a\n", True),  # Python's $ before a final \n
    ({"multipleOf": 0.01}, 0.07, False),  # jsonschema's float arithmetic
    ({"multipleOf": 2}, 4, True),
    ({"minimum": 0}, -1, False),
    ({"exclusiveMaximum": 5}, 5, False),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 3, False),
    ({"oneOf": [{"type": "string"}, {"maxLength": 3}]}, "ab", False),
    ({"$ref": "#/$defs/x", "$defs": {"x": {"type": "string", "pattern": "^\\d+$"}}}, "١٢",
     True),  # Python's \d matches Arabic-Indic digits; through a $ref
    ({"type": ["string", "null"]}, None, True),
    ({"maxItems": 1}, [1, 2], False),
    ({"uniqueItems": True}, [1, True], True),
    ({"uniqueItems": True}, [{"a": 1}, {"a": 1.0}], False),
    ({"properties": {"pattern": {"type": "string"}}}, {"pattern": 1}, False),
]


@pytest.mark.parametrize("schema,instance,valid", CASES)
def test_fast_path_agrees_on_tricky_values(schema: Any, instance: Any, valid: bool) -> None:
    assert validator_for(schema).is_valid(instance) is valid
    fast = compile_fast_path(schema)
    assert fast is not None
    assert fast(instance) is (valid and is_plain_json(instance))
    assert (Checker(schema).errors(instance) == []) is valid


@pytest.mark.parametrize("schema", [
    {"patternProperties": {"^\\w+$": {}}, "$schema": "x"},
    {"patternProperties": {"^\\S+$": {"type": "string"}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"},
    {"$ref": "https://example.com/remote.json"},
    {"type": "string", "pattern": "(?P<n>a"},
])
def test_schemas_it_cannot_mirror_get_no_fast_path(schema: Any) -> None:
    assert compile_fast_path(schema) is None
    Checker(schema)  # still usable: jsonschema alone


def test_plain_json() -> None:
    assert is_plain_json({"a": [1, 2.5, "x", None, True, {"b": []}]})
    for value in ((1,), {"a": (1,)}, [math.inf], {1: 2}, decimal.Decimal(1), Colour.RED,
                  Flag(1), [{"a": {math.nan}}]):
        assert not is_plain_json(value), value

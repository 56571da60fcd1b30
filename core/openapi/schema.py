"""OpenAPI schema plumbing for the importer: ``$ref`` resolution and schema conversion.

:class:`RefResolver` follows local and relative-file ``$ref``s (with a fallback for specs that
point one folder too high, a known HighLevel defect). :class:`SchemaConverter` rewrites
OpenAPI 3.0 Schema Objects as self-contained JSON Schema 2020-12: ``$ref``s inlined (recursion
cut with a ``$comment``), ``nullable`` turned into type unions, boolean ``exclusiveMinimum``
turned into numbers, ``example`` into ``examples``, non-JSON-Schema keywords dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from ..errors import InputError

__all__ = ["MAX_REF_DEPTH", "RefResolver", "SchemaConverter", "parse_document"]

MAX_REF_DEPTH = 8
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RefResolver:
    """Resolves local and relative-file ``$ref``s; callable as ``resolver(ref, base=None)``."""

    def __init__(self, root: Path, document: Any) -> None:
        self.root = root.resolve()
        self._docs: dict[Path, Any] = {self.root: document}
        self.fallbacks: dict[str, str] = {}

    def __call__(self, ref: str, base: Path | None = None) -> Any:
        return self.locate(ref, base)[0]

    def locate(self, ref: str, base: Path | None = None) -> tuple[Any, Path]:
        """Return the node a ``$ref`` points at and the file that holds it."""
        base = base or self.root
        file_part, _, fragment = ref.partition("#")
        if "://" in file_part:
            raise InputError(
                f"cannot resolve $ref {ref!r} in {base.name}: remote refs are not supported"
            )
        doc_path = self._find(file_part, base, ref) if file_part else base
        node = self._document(doc_path, ref)
        for token in [t for t in fragment.split("/") if t] if fragment else []:
            key = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise InputError(
                    f"cannot resolve $ref {ref!r} in {base.name}: "
                    f"{key!r} not found in {doc_path.name}"
                )
        return node, doc_path

    def _find(self, file_part: str, base: Path, ref: str) -> Path:
        direct = (base.parent / file_part).resolve()
        if direct.is_file():
            return direct
        # Known defect (HighLevel apps/v3): "../common/x.json" means "./common/x.json".
        rel = file_part
        while rel.startswith("../"):
            rel = rel[3:]
            candidate = (base.parent / rel).resolve()
            if candidate.is_file():
                self.fallbacks[f"{base.name}: {file_part}"] = str(candidate)
                return candidate
        raise InputError(
            f"cannot resolve $ref {ref!r} in {base.name}: file {file_part!r} not found"
        )

    def _document(self, path: Path, ref: str) -> Any:
        if path not in self._docs:
            try:
                self._docs[path] = parse_document(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                message = f"cannot resolve $ref {ref!r}: {path.name} is unreadable ({exc})"
                raise InputError(message) from None
        return self._docs[path]


def parse_document(path: Path) -> Any:
    """A JSON or YAML file (by suffix) as Python data."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        return yaml.load(text, Loader=_LOADER)
    return json.loads(text)


# --------------------------------------------------------------------------- schema conversion

_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum")
_FLAGS = ("uniqueItems", "readOnly", "writeOnly", "deprecated")
_ANY = ("default", "const", "format", "contentMediaType", "contentEncoding")


class SchemaConverter:
    """Rewrites OpenAPI 3.0 Schema Objects as self-contained JSON Schema 2020-12."""

    def __init__(self, resolver: RefResolver, descriptions: bool, warnings: dict[str, None]):
        self.resolver = resolver
        self.descriptions = descriptions
        self.warnings = warnings
        self._cache: dict[str, Any] = {}
        self._cuts: list[str] = []  # refs where a recursion or depth cut happened

    def convert(self, node: Any, doc: Path) -> Any:
        return self._convert(node, doc, ())

    def warn(self, message: str) -> None:
        self.warnings[message] = None

    def _convert(self, node: Any, doc: Path, stack: tuple[str, ...]) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            return {}
        if "$ref" in node:
            return self._ref(node, doc, stack)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "patternProperties"):
                if isinstance(value, dict):
                    out[key] = {n: self._convert(v, doc, stack) for n, v in value.items()}
            elif key in ("allOf", "anyOf", "oneOf"):
                if isinstance(value, list) and value:
                    out[key] = [self._convert(v, doc, stack) for v in value]
            elif key in ("not", "additionalProperties"):
                out[key] = self._convert(value, doc, stack)
            elif key == "items" and isinstance(value, list):
                out["prefixItems"] = [self._convert(v, doc, stack) for v in value]
            elif key == "items":
                out["items"] = self._convert(value, doc, stack)
            else:
                self._keyword(out, key, value)
        _finish(out, node)
        if len(out) == 1 and len(out.get("allOf", ())) == 1:
            return out["allOf"][0]  # NestJS wraps every $ref in a one-item allOf
        return out

    def _keyword(self, out: dict[str, Any], key: str, value: Any) -> None:
        if key == "type":
            out.update(self._type(value))
        elif key == "enum":
            if isinstance(value, list):
                out["enum"] = value
        elif key == "required":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["required"] = list(dict.fromkeys(value))
        elif key in _COUNTS:
            if _is_number(value) and value >= 0 and float(value).is_integer():
                out[key] = int(value)
        elif key in _NUMBERS:
            if _is_number(value):
                out[key] = value
        elif key == "multipleOf":
            if _is_number(value) and value > 0:
                out[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if _is_number(value):
                out[key] = value
            elif value is True:
                out[key] = True  # resolved against minimum/maximum in _finish
        elif key in _FLAGS:
            if isinstance(value, bool):
                out[key] = value
        elif key == "pattern":
            if isinstance(value, str) and _compiles(value):
                out[key] = value
            else:
                self.warn(f"dropped a pattern Python cannot compile: {value!r}")
        elif key == "example":
            out.setdefault("examples", [value])
        elif key == "examples":
            if isinstance(value, list):
                out["examples"] = value
        elif key in ("title", "description"):
            if self.descriptions and isinstance(value, str):
                out[key] = value
        elif key in _ANY:
            if key != "format" or isinstance(value, str):
                out[key] = value
        elif key == "nullable":
            pass  # handled in _finish
        # everything else (discriminator, xml, externalDocs, x-*) is not JSON Schema: dropped

    def _type(self, value: Any) -> dict[str, Any]:
        if value == "file":
            return {"type": "string", "format": "binary"}
        if isinstance(value, str) and value in _TYPES:
            return {"type": value}
        if isinstance(value, list):
            kept = [v for v in dict.fromkeys(value) if v in _TYPES]
            if kept:
                return {"type": kept if len(kept) > 1 else kept[0]}
        self.warn(f"dropped an invalid schema type: {value!r}")
        return {}

    def _ref(self, node: dict, doc: Path, stack: tuple[str, ...]) -> Any:
        ref = node["$ref"]
        if not isinstance(ref, str):
            return {}
        target, target_doc = self.resolver.locate(ref, doc)
        key = f"{target_doc}#{ref.partition('#')[2]}"
        name = ref.rsplit("/", 1)[-1]
        if key in stack:
            self._cuts.append(key)
            return {"$comment": f"recursive reference to {name} not expanded"}
        if len(stack) >= MAX_REF_DEPTH:
            self._cuts.append("")
            return {"$comment": f"{name} not expanded (nesting too deep)"}
        result = self._cache.get(key)
        if result is None:
            mark = len(self._cuts)
            result = self._convert(target, target_doc, (*stack, key))
            # Cache only what does not depend on the path taken to get here.
            pending = [cut for cut in self._cuts[mark:] if cut != key]
            if not pending:
                self._cache[key] = result
            self._cuts[mark:] = pending  # cuts at outer refs make the outer ones uncacheable
        return _nullable(result) if node.get("nullable") is True else result


def _finish(out: dict[str, Any], node: dict) -> None:
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            if bound in out:
                out[exclusive] = out.pop(bound)
            else:
                del out[exclusive]
    if node.get("nullable") is True:
        nullable = _nullable(dict(out))
        out.clear()
        out.update(nullable)


def _nullable(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    if isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    elif kind != "null":
        out["type"] = [kind, "null"]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True

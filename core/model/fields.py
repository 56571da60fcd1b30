"""The fields of a JSON Schema as a tree people read: ``splice connectors show CONNECTOR.OP``.

:func:`fields` walks an object schema into :class:`Field` nodes (name, type, required, enum,
description, children), merging ``allOf``/``anyOf``/``oneOf`` branches and descending into
array items (written ``name[]``). It never fails on an odd schema: what it cannot say is shown
as type ``any``. Depth is bounded, so a recursive schema cannot loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 8


@dataclass
class Field:
    """One property: ``path`` is dotted from the root (``media[].url``)."""

    name: str
    path: str
    type: str
    required: bool = False
    enum: list[Any] | None = None
    description: str = ""
    example: Any = None
    children: list[Field] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": self.path, "type": self.type,
                               "required": self.required}
        if self.enum is not None:
            out["enum"] = self.enum
        if self.description:
            out["description"] = self.description
        if self.example is not None:
            out["example"] = self.example
        if self.children:
            out["fields"] = [c.to_json() for c in self.children]
        return out

    def walk(self, depth: int = 0) -> list[tuple[int, Field]]:
        """This field and its descendants, depth first, with their depth."""
        out = [(depth, self)]
        for child in self.children:
            out += child.walk(depth + 1)
        return out


def _merged(schema: Any) -> dict[str, Any]:
    """One dict with the properties and required names of every combined branch."""
    if not isinstance(schema, dict):
        return {}
    merged: dict[str, Any] = {k: v for k, v in schema.items()
                              if k not in ("allOf", "anyOf", "oneOf")}
    props = dict(schema.get("properties") or {})
    required = list(schema.get("required") or [])
    for combo in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(combo) or []:
            sub = _merged(branch)
            for name, value in (sub.get("properties") or {}).items():
                props.setdefault(name, value)
            if combo == "allOf":
                required += [r for r in sub.get("required") or [] if r not in required]
            for key in ("type", "items", "description", "title", "enum", "format"):
                if key in sub and key not in merged:
                    merged[key] = sub[key]
    if props:
        merged["properties"] = props
    merged["required"] = required
    return merged


def type_label(schema: Any) -> str:
    """``string``, ``string (date-time)``, ``integer | null``, ``array<object>``, ``any``."""
    node = _merged(schema)
    types = node.get("type")
    names = types if isinstance(types, list) else [types] if types else []
    if not names:
        if "properties" in node:
            names = ["object"]
        elif "items" in node:
            names = ["array"]
        elif "const" in node:
            names = [type(node["const"]).__name__.replace("str", "string")]
        elif "enum" in node:
            names = ["string"] if all(isinstance(e, str) for e in node["enum"]) else ["any"]
        else:
            return "any"
    out = []
    for name in names:
        if name == "array":
            items = node.get("items")
            out.append(f"array<{type_label(items)}>" if isinstance(items, dict) else "array")
        else:
            out.append(str(name))
    label = " | ".join(out)
    if node.get("format"):
        label += f" ({node['format']})"
    return label


def _describe(node: dict[str, Any]) -> str:
    text = node.get("description") or node.get("title") or ""
    return " ".join(str(text).split())


def _example(node: dict[str, Any]) -> Any:
    examples = node.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    return node.get("example")


def fields(schema: Any, prefix: str = "", depth: int = 0) -> list[Field]:
    """The properties of an object schema (or of an array's items) as a tree."""
    node = _merged(schema)
    if depth >= MAX_DEPTH:
        return []
    if "properties" not in node and isinstance(node.get("items"), dict):
        return fields(node["items"], prefix + "[]", depth + 1)
    required = set(node.get("required") or [])
    out: list[Field] = []
    for name, sub in (node.get("properties") or {}).items():
        subnode = _merged(sub)
        path = f"{prefix}.{name}" if prefix else name
        enum = subnode.get("enum")
        if enum is None and "const" in subnode:
            enum = [subnode["const"]]
        item = Field(name=name, path=path, type=type_label(sub), required=name in required,
                     enum=list(enum) if isinstance(enum, list) else None,
                     description=_describe(subnode), example=_example(subnode))
        if "properties" in subnode or any(k in subnode for k in ("allOf", "anyOf", "oneOf")):
            item.children = fields(subnode, path, depth + 1)
        elif isinstance(subnode.get("items"), dict):
            items = _merged(subnode["items"])
            if "properties" in items:
                item.name = f"{name}[]"
                item.children = fields(items, f"{path}[]", depth + 1)
            elif isinstance(items.get("enum"), list):
                item.enum = list(items["enum"])
        out.append(item)
    return out

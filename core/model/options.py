"""Dynamic options: where an input field's choices come from (a client id, a tag id).

``options: {client_id: {from: list_clients, value: id, label: name}}`` on an operation says
that the records of the list operation ``list_clients`` are the choices of ``client_id``
(their ``id``, shown by ``name``). A field without a declaration is inferred from its name:
``client_id``/``clientId``/``tagIds`` look for ``list_clients``/``list_tags`` (a list
operation whose records have ``id`` or ``_id``). :func:`option_sources` gives them all;
:func:`check_options` locates declaration mistakes when the manifest loads. The values
themselves are fetched with the connection by :mod:`splice.builder.options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from .documents import Document
from .schema import did_you_mean, property_names, subschema

LABEL_FIELDS = ("name", "tag", "title", "label", "displayName", "email", "key", "url")
_ID_SUFFIX = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9]*?)(?:_ids?|Ids?)$")


@dataclass(frozen=True)
class OptionSource:
    """The list operation whose records are a field's choices."""

    operation: str
    value: str = "id"
    label: str = "name"
    with_: dict[str, Any] = field(default_factory=dict)
    declared: bool = True


def _record_props(op: dict[str, Any]) -> list[str]:
    records = op.get("records")
    if records is None:
        return []
    node = op.get("output") if records == "." else subschema(op.get("output"),
                                                               tuple(records.split(".")))
    if isinstance(node, dict) and (node.get("type") == "array" or "items" in node):
        node = node.get("items")
    return property_names(node)


def infer_source(name: str, ops: dict[str, Any]) -> OptionSource | None:
    """``client_id`` -> ``list_clients`` (records with an id and something to show)."""
    m = _ID_SUFFIX.match(name)
    if not m:
        return None
    base = re.sub(r"(?<!^)(?=[A-Z])", "_", m.group("base")).lower()
    for candidate in (f"list_{base}s", f"list_{base}es", f"list_{base}"):
        op = ops.get(candidate)
        if not isinstance(op, dict) or "records" not in op:
            continue
        props = _record_props(op)
        value = "id" if "id" in props else "_id" if "_id" in props else None
        if value is None:
            continue
        label = next((p for p in LABEL_FIELDS if p in props), value)
        return OptionSource(candidate, value, label, declared=False)
    return None


def option_sources(op: dict[str, Any], ops: dict[str, Any]) -> dict[str, OptionSource]:
    """input field -> source, declared ones first, then the inferred ones."""
    out: dict[str, OptionSource] = {}
    for name, spec in (op.get("options") or {}).items():
        out[name] = OptionSource(spec["from"], spec.get("value", "id"),
                                 spec.get("label", "name"), dict(spec.get("with") or {}))
    for name in property_names(op.get("input")):
        if name not in out:
            found = infer_source(name, ops)
            if found is not None:
                out[name] = found
    return out


def check_options(doc: Document, op_id: str, ops: dict[str, Any]) -> list[Problem]:
    """Declared ``options``: the field is an input, ``from`` names a list operation."""
    problems = []
    op = ops[op_id]
    inputs = property_names(op.get("input"))
    for name, spec in (op.get("options") or {}).items():
        base = ("operations", op_id, "options", name)
        if name not in inputs:
            problems.append(doc.problem(base, f"'{name}' is not an input of '{op_id}'"
                                              f"{did_you_mean(name, inputs)}"))
        source = ops.get(spec["from"])
        if source is None:
            problems.append(doc.problem((*base, "from"), f"unknown operation '{spec['from']}'"
                                                         f"{did_you_mean(spec['from'], ops)}"))
        elif "records" not in source:
            problems.append(doc.problem((*base, "from"), f"'{spec['from']}' is not a list "
                                                         "operation (it declares no `records`)"))
    return problems

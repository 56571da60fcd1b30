"""What a step may map from: the trigger's record, earlier steps' outputs, ``item``, vars.

:func:`available_fields` lists, for step ``index`` of a recipe, every path a template there
can read, each with its type, built from the same schemas ``splice validate`` checks
templates against (the trigger's output schema, each earlier step's output schema, the
``for_each`` items). Objects are walked to a bounded depth; a list is offered whole and
through its first element (``steps.clients.records[0].name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..mapping.templates import TemplateEngine
from ..model.fields import type_label
from ..model.manifest import Connector
from ..model.schema import property_names, subschema
from ..run.plan import PURE_REF, step_output_schema

MAX_DEPTH = 4
MAX_FIELDS = 400


@dataclass(frozen=True)
class FieldChoice:
    """One readable path: ``trigger.tag`` (a ``string``)."""

    path: str
    type: str
    group: str                        # trigger | steps.<id> | item | recipe

    @property
    def template(self) -> str:
        return "{{ " + self.path + " }}"


def _walk(schema: Any, path: str, group: str, out: list[FieldChoice], depth: int = 0) -> None:
    if len(out) >= MAX_FIELDS:
        return
    if depth:
        out.append(FieldChoice(path, type_label(schema), group))
    if depth >= MAX_DEPTH or not isinstance(schema, dict):
        return
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "array" in kinds or "items" in schema:
        if depth:
            _walk(schema.get("items", True), f"{path}[0]", group, out, depth + 1)
        return
    for name in property_names(schema):
        child = subschema(schema, (name,))
        shown = f"{path}.{name}" if name.isidentifier() else f"{path}[{name!r}]"
        _walk(child, shown, group, out, depth + 1)


def _connector(registry: Any, use: Any) -> Connector | None:
    if not isinstance(use, str) or "." not in use:
        return None
    try:
        return registry.connector(use.split(".", 1)[0])  # type: ignore[no-any-return]
    except ConfigError:
        return None


def trigger_schema(registry: Any, data: dict[str, Any]) -> Any:
    """The output schema of the recipe's (first) trigger, True when unknown."""
    trig = data.get("trigger") or (data.get("triggers") or [None])[0]
    use = str(trig.get("use")) if isinstance(trig, dict) else ""
    connector = _connector(registry, use)
    if connector is None or use.split(".", 1)[1] not in connector.triggers:
        return True
    return connector.trigger_output(connector.triggers[use.split(".", 1)[1]])


def step_schema(registry: Any, step: Any) -> Any:
    """What ``steps.<id>`` holds after ``step`` ran (for_each: a list of those)."""
    use = str(step.get("use")) if isinstance(step, dict) else ""
    connector = _connector(registry, use)
    if connector is None or use.split(".", 1)[1] not in connector.operations:
        return True
    out = step_output_schema(connector.operations[use.split(".", 1)[1]])
    return {"type": "array", "items": out} if step.get("for_each") else out


def available_fields(registry: Any, data: dict[str, Any], index: int) -> list[FieldChoice]:
    """Every path step ``index`` may read, trigger first, then earlier steps, item, vars."""
    out: list[FieldChoice] = []
    _walk(trigger_schema(registry, data), "trigger", "trigger", out)
    steps = data.get("steps") or []
    scope: dict[str, Any] = {"trigger": trigger_schema(registry, data), "steps": {
        "type": "object", "properties": {}}}
    for earlier in steps[:index]:
        if isinstance(earlier, dict) and isinstance(earlier.get("id"), str):
            schema = step_schema(registry, earlier)
            scope["steps"]["properties"][earlier["id"]] = schema
            _walk(schema, f"steps.{earlier['id']}", f"steps.{earlier['id']}", out)
    step = steps[index] if 0 <= index < len(steps) else {}
    for_each = step.get("for_each") if isinstance(step, dict) else None
    if isinstance(for_each, str):
        _walk(_item_schema(for_each, scope, registry), "item", "item", out)
    _walk({"type": "object", "properties": {
        "name": {"type": "string"},
        "vars": {"type": "object", "properties": {
            k: {"type": "string"} if isinstance(v, str) else True
            for k, v in (data.get("vars") or {}).items()}}}},
        "recipe", "recipe", out)
    return out


def _item_schema(source: str, scope: dict[str, Any], registry: Any) -> Any:
    """The schema of ``item`` when ``for_each`` is a plain reference to a list (an
    expression that transforms the list says nothing about its items, as in validate)."""
    if not PURE_REF.match(source.strip()):
        return True
    try:
        compiled = TemplateEngine(registry.filters).compile_expression(source, where="for_each")
    except Exception:  # noqa: BLE001 - the check endpoint reports it; no choices meanwhile
        return True
    refs = compiled.references()
    if len(refs) != 1 or refs[0].root not in scope:
        return True
    node = subschema(scope[refs[0].root], refs[0].path)
    return node.get("items", True) if isinstance(node, dict) else True

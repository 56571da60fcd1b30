"""The builder page's form, to and from a recipe's data.

The builder edits a recipe as one HTML form: ``name``, ``description``, ``vars`` (YAML),
``trigger.use``/``.connection``/``.every`` and one ``trigger.with.FIELD`` input per input of
the trigger's operation, and per step ``steps.N.id``,
``.use``, ``.connection``, ``.when``, ``.for_each`` and one ``steps.N.with.FIELD`` input per
action input. A text value stays text unless it was shown as JSON (``steps.N.kind.FIELD`` is
``json``) or the input's schema takes no text, where it is read as YAML (``[a, b]``, ``5``,
``true``); a value starting with ``{{`` is always a template. ``base`` carries the keys the
form does not show (``vars`` order, ``retry``, ``id``, ``triggers``, a step's ``concurrency``)
so :func:`form_to_data` of :func:`data_to_form` gives the recipe back unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import InputError
from ..model.fields import type_label
from ..model.schema import property_names, subschema

MAX_STEPS = 50
TEXT_TYPES = {"string"}


@dataclass
class InputRow:
    """One action input as the form shows it."""

    name: str
    value: str
    kind: str                          # text | json
    type: str
    required: bool = False
    default: bool = False              # filled from the connection when left empty
    description: str = ""
    options_from: str | None = None    # the list operation its choices come from


@dataclass
class StepForm:
    index: int
    data: dict[str, Any]
    inputs: list[InputRow] = field(default_factory=list)
    fields: list[Any] = field(default_factory=list)   # builder.fields.FieldChoice


MAX_FORM_BYTES = 1 << 20


async def read_form(request: Any) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form (what browsers and htmx send);
    a repeated name keeps its last value."""
    from urllib.parse import parse_qsl

    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InputError(f"the form is larger than {MAX_FORM_BYTES:,} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=10_000))


def shown(value: Any) -> tuple[str, str]:
    """(text, kind) of a value in a text input."""
    if isinstance(value, str):
        return value, "text"
    return json.dumps(value, ensure_ascii=False), "json"


def _types(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if isinstance(kind, str) else set()


def parse_value(text: str, kind: str, schema: Any) -> Any:
    """A form value back to recipe data (see the module docstring)."""
    stripped = text.strip()
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            pass
    if stripped.startswith(("{{", "{%")):
        return text
    types = _types(schema)
    wants_data = (types and not types & TEXT_TYPES) or (
        stripped[:1] in ("[", "{") and "array" in types | {"array"} and not types <= TEXT_TYPES)
    if wants_data:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def _yaml_block(text: str, what: str) -> Any:
    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{what}: not valid YAML ({getattr(exc, 'problem', None) or exc})") \
            from None


def yaml_text(value: Any) -> str:
    if value in (None, {}, []):
        return ""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


def operation_of(registry: Any, use: Any) -> Any:
    """The action ``use`` names, or None."""
    if not isinstance(use, str) or "." not in use:
        return None
    cid, op_id = use.split(".", 1)
    connector = registry.get(cid)
    return None if connector is None else connector.operations.get(op_id)


def trigger_operation(registry: Any, use: Any) -> Any:
    """The operation a polling trigger ``use`` calls (its ``with`` is that input), or None."""
    if not isinstance(use, str) or "." not in use:
        return None
    cid, tid = use.split(".", 1)
    connector = registry.get(cid)
    trigger = connector.triggers.get(tid) if connector is not None else None
    if trigger is None or not trigger.operation:
        return None
    return connector.operations.get(trigger.operation)


def input_rows(registry: Any, step: dict[str, Any]) -> list[InputRow]:
    """Every input of the step's action (and any mapped key it does not know), in order."""
    return rows_for(registry, operation_of(registry, step.get("use")), step.get("with"))


def trigger_rows(registry: Any, trig: dict[str, Any]) -> list[InputRow]:
    """The trigger operation's inputs (its ``with``), in order."""
    op = trigger_operation(registry, trig.get("use"))
    rows = rows_for(registry, op, trig.get("with"))
    if op is not None:
        connector = registry.get(op.connector_id)
        trigger = connector.triggers[str(trig.get("use")).split(".", 1)[1]]
        for row in rows:  # the trigger's own defaults fill these too
            if row.name in trigger.defaults:
                row.default, row.options_from = True, None
    return rows


def rows_for(registry: Any, op: Any, raw: Any) -> list[InputRow]:
    mapping: dict[str, Any] = raw if isinstance(raw, dict) else {}
    rows = []
    names = property_names(op.input) if op is not None else []
    options: dict[str, Any] = {}
    if op is not None:
        connector = registry.get(op.connector_id)
        options = connector.input_options(op.id) if connector is not None else {}
    required = set(op.input.get("required", [])) if op is not None and \
        isinstance(op.input, dict) else set()
    for name in [*names, *[k for k in mapping if k not in names]]:
        schema = subschema(op.input, (name,)) if op is not None else True
        text, kind = shown(mapping[name]) if name in mapping else ("", "text")
        source = options.get(name)
        rows.append(InputRow(
            name=name, value=text, kind=kind, type=type_label(schema),
            required=name in required, default=op is not None and name in op.defaults,
            description=str((schema or {}).get("description", "")) if isinstance(schema, dict)
            else "",
            options_from=None if source is None or (op is not None and name in op.defaults)
            else f"{op.connector_id}.{source.operation}" if op is not None else None))
    return rows


def data_to_form(data: dict[str, Any]) -> dict[str, str]:
    """The form fields showing ``data`` (used by tests: what a browser would post)."""
    out: dict[str, str] = {"base": json.dumps(data, ensure_ascii=False),
                           "name": str(data.get("name", "")),
                           "description": str(data.get("description", "")),
                           "vars": yaml_text(data.get("vars"))}
    trig = _trigger_of(data)
    out.update({"trigger.use": str(trig.get("use", "")),
                "trigger.connection": str(trig.get("connection", "") or ""),
                "trigger.every": "" if trig.get("every") is None else str(trig["every"])})
    for name, value in (trig.get("with") or {}).items():
        text, kind = shown(value)
        out[f"trigger.with.{name}"] = text
        out[f"trigger.kind.{name}"] = kind
    steps = data.get("steps") or []
    out["steps"] = str(len(steps))
    for i, step in enumerate(steps):
        for key in ("id", "use", "connection", "when", "for_each"):
            out[f"steps.{i}.{key}"] = str(step.get(key) or "")
        for name, value in (step.get("with") or {}).items():
            text, kind = shown(value)
            out[f"steps.{i}.with.{name}"] = text
            out[f"steps.{i}.kind.{name}"] = kind
    return out


def _trigger_of(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data.get("trigger"), dict):
        return dict(data["trigger"])
    triggers = data.get("triggers")
    if isinstance(triggers, list) and triggers and isinstance(triggers[0], dict):
        return dict(triggers[0])
    return {}


class _Form:
    """A posted form with browsers' ``\r\n`` line ends read as ``\n``."""

    def __init__(self, form: Any) -> None:
        self.form = form

    def get(self, name: str, default: Any = None) -> Any:
        value = self.form.get(name, default)
        return value.replace("\r\n", "\n") if isinstance(value, str) else value

    def keys(self) -> list[str]:
        return list(self.form.keys())


def form_to_data(registry: Any, posted: Any) -> dict[str, Any]:
    """Recipe data from the posted form (``form.get(name)``), keeping what ``base`` holds
    that the form does not show. Empty optional inputs are left out."""
    form = _Form(posted)
    try:
        base = json.loads(form.get("base") or "{}")
    except ValueError:
        base = {}
    data: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    data["name"] = form.get("name", "")
    description = form.get("description", "")
    _set(data, "description", description.strip() and description)
    _set(data, "vars", _yaml_block(form.get("vars", ""), "vars"))
    trig = _trigger_of(data)
    trig["use"] = form.get("trigger.use", "")
    for key in ("connection", "every"):
        _set(trig, key, (form.get(f"trigger.{key}") or "").strip() or None)
    _set(trig, "with", _mapping(form, "trigger.with.", "trigger.kind.",
                                trigger_operation(registry, trig["use"])))
    if isinstance(data.get("triggers"), list) and "trigger" not in data:
        data["triggers"] = [trig, *data["triggers"][1:]]
    else:
        data["trigger"] = trig
    base_steps = base.get("steps") if isinstance(base.get("steps"), list) else []
    try:
        count = min(int(form.get("steps") or 0), MAX_STEPS)
    except ValueError:
        count = 0
    steps = []
    for i in range(count):
        old = base_steps[i] if i < len(base_steps) and isinstance(base_steps[i], dict) else {}
        steps.append(_step(registry, form, i, old))
    data["steps"] = steps
    return _ordered(data)


def _step(registry: Any, form: Any, i: int, old: dict[str, Any]) -> dict[str, Any]:
    step = dict(old)
    for key in ("id", "use", "connection", "when", "for_each"):
        value = form.get(f"steps.{i}.{key}")
        if value is None:
            continue
        _set(step, key, value if value.strip() else None)
    mapping = _mapping(form, f"steps.{i}.with.", f"steps.{i}.kind.",
                       operation_of(registry, step.get("use")))
    _set(step, "with", mapping)
    order = ("id", "use", "connection", "when", "for_each")
    return {**{k: step[k] for k in order if k in step},
            **{k: v for k, v in step.items() if k not in order}}


def _mapping(form: Any, prefix: str, kinds: str, op: Any) -> dict[str, Any] | None:
    """The ``with`` mapping of the inputs named ``PREFIX<field>`` (empty ones left out)."""
    mapping: dict[str, Any] = {}
    for name in [k for k in form.keys() if k.startswith(prefix)]:
        text = form.get(name)
        field_name = name[len(prefix):]
        if text is None or not text.strip():
            continue
        schema = subschema(op.input, (field_name,)) if op is not None else True
        mapping[field_name] = parse_value(text, form.get(f"{kinds}{field_name}") or "text",
                                          schema)
    return mapping or None


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == "":
        target.pop(key, None)
    else:
        target[key] = value


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    order = ("name", "id", "description", "vars", "trigger", "triggers", "steps", "retry")
    return {**{k: data[k] for k in order if k in data},
            **{k: v for k, v in data.items() if k not in order}}

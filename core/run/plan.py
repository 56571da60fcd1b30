"""Turn a recipe into a checked, compiled plan (what ``splice validate`` reports).

Checks, each reported at the recipe's ``file:line:column``: connectors, triggers and actions
exist; connections exist, belong to the right connector and hold every scope the recipe needs;
every template compiles and is safe; every ``trigger.<path>`` / ``steps.<id>.<path>`` a
template reads exists in the producing schema; literal values and simple references fit the
action's input schema; required inputs are mapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..connections.endpoints import disabled_in, refusal
from ..errors import DocumentError, Problem, TemplateError
from ..mapping.templates import CompiledExpression, CompiledMapping, TemplateEngine, is_template
from ..model.documents import Document
from ..model.manifest import Connector, Operation, Trigger
from ..model.recipe import Recipe, StepSpec, TriggerSpec
from ..model.schema import did_you_mean, iter_errors, property_names, subschema, validator_for
from ..plugins import Registry
from .record_keys import FieldGetter, record_key_function

ROOTS = {"trigger", "steps", "item", "loop", "recipe", "now", "connection"}
PURE_REF = re.compile(
    r"^\s*\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\]|\['[^']*'\])*)\s*\}\}\s*$")


@dataclass
class StepPlan:
    spec: StepSpec
    connector: Connector
    operation: Operation
    mapping: CompiledMapping
    defaults: CompiledMapping
    when: CompiledExpression | None = None
    for_each: CompiledExpression | None = None

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def connection(self) -> str | None:
        return self.spec.connection


@dataclass
class Source:
    """One trigger of a recipe compiled: where its events come from and how they are keyed.
    A recipe with ``triggers:`` has several; their events share the primary trigger's state."""

    spec: TriggerSpec
    connector: Connector
    trigger: Trigger
    key: CompiledExpression | FieldGetter | None
    version: CompiledExpression | FieldGetter | None
    filter: CompiledExpression | None

    @property
    def connection(self) -> str | None:
        return self.spec.connection

    @property
    def is_webhook(self) -> bool:
        return self.trigger.type == "webhook"


@dataclass
class Plan:
    recipe: Recipe
    connector: Connector
    trigger: Trigger
    trigger_input: CompiledMapping
    trigger_defaults: CompiledMapping
    key: CompiledExpression | FieldGetter | None
    version: CompiledExpression | FieldGetter | None
    filter: CompiledExpression | None
    steps: list[StepPlan] = field(default_factory=list)
    required_scopes: dict[str, set[str]] = field(default_factory=dict)  # connection -> scopes
    sources: list[Source] = field(default_factory=list)  # every trigger, the primary first

    @property
    def polls(self) -> bool:
        """Whether the primary trigger is polled (not webhook-only)."""
        return self.trigger.type != "webhook"

    @property
    def webhooks(self) -> list[Source]:
        """The webhook triggers of the recipe."""
        return [s for s in self.sources if s.is_webhook]

    def refused(self, disabled: Mapping[str, set[str]]) -> str | None:
        """Why the plan may not run now (an endpoint it uses was disabled since it was
        built: connection -> disabled ids), or None."""
        uses = [(s.connection, s.connector, s.trigger.id) for s in self.sources] + \
            [(s.connection, s.connector, s.operation.id) for s in self.steps]
        for name, connector, endpoint in uses:
            blocked = disabled_in(connector, endpoint, disabled.get(name or "", ()))
            if name and blocked:
                return refusal(connector, name, endpoint, blocked)
        return None

    @property
    def operation(self) -> Operation | None:
        if self.trigger.operation:
            return self.connector.operations[self.trigger.operation]
        return None

    @cached_property
    def record_key(self) -> Callable[[Any], str | None]:
        """The dedupe key of one polled record, None to skip it: the trigger's filter, then
        its key, then ``key@version`` when it declares a version."""
        return record_key_function(self.key, self.version, self.filter)


@dataclass
class _Checker:
    recipe: Recipe
    registry: Registry
    template_engine: TemplateEngine
    connections: Mapping[str, Any] | None
    disabled: Mapping[str, set[str]] | None = None  # connection -> disabled endpoint ids
    problems: list[Problem] = field(default_factory=list)
    needs: dict[str, set[str]] = field(default_factory=dict)  # connection -> scopes used

    @property
    def doc(self) -> Document:
        return self.recipe.doc

    def add(self, path: tuple[str | int, ...], message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    # -- compile helpers --------------------------------------------------------------------
    def mapping(self, value: Any, path: tuple[str | int, ...]) -> CompiledMapping | None:
        try:
            return self.template_engine.compile_mapping(value, where=_dotted(path))
        except TemplateError as exc:
            self.add(*split_label(exc.message, path))
            return None

    def expression(self, source: str | None, path: tuple[str | int, ...]
                   ) -> CompiledExpression | None:
        if source is None:
            return None
        try:
            return self.template_engine.compile_expression(source, where=_dotted(path))
        except TemplateError as exc:
            self.add(*split_label(exc.message, path))
            return None

    # -- checks -----------------------------------------------------------------------------
    def connector(self, use: str, path: tuple[str | int, ...]) -> Connector | None:
        cid = use.split(".", 1)[0]
        connector = self.registry.get(cid)  # only the manifests a recipe uses are checked
        if connector is None:
            installed = self.registry.ids
            if cid in installed:
                self.add(path, f"connector '{cid}' is installed but its manifest is not valid "
                               "(see the warning above); `splice plugins` shows why")
                return None
            self.add(path, f"unknown connector '{cid}'{did_you_mean(cid, installed)}; "
                           "`splice connectors list` shows what is installed")
            return None
        return connector

    def connection(self, name: str | None, connector: Connector, path: tuple[str | int, ...],
                   scopes: list[str], endpoint: str | None = None) -> None:
        """The step's connection exists, is for this connector, has the scopes and may use
        ``endpoint`` (not disabled)."""
        if name is None:
            if connector.auth_type != "none":
                self.add(path[:-1], f"missing required key 'connection' (connector "
                                    f"'{connector.id}' needs credentials)")
            return
        self.needs.setdefault(name, set()).update(scopes)
        if self.connections is None:
            return
        record = self.connections.get(name)
        if record is None:
            known = [n for n, r in self.connections.items() if r.connector == connector.id]
            self.add(path, f"connection '{name}' does not exist{did_you_mean(name, known)}; "
                           f"create it with `splice connect {connector.id} --name {name}`"
                           if connector.auth_type == "oauth2" else
                           f"connection '{name}' does not exist{did_you_mean(name, known)}; "
                           f"create it with `splice connections add {name} "
                           f"--connector {connector.id}`")
            return
        if record.connector != connector.id:
            self.add(path, f"connection '{name}' is for connector '{record.connector}', "
                           f"not '{connector.id}'")
            return
        blocked = disabled_in(connector, endpoint, self.disabled.get(name, ())) \
            if endpoint and self.disabled else None
        if blocked is not None:
            self.add(path, refusal(connector, name, endpoint or blocked, blocked))
        granted = record.config.get("scopes")
        if granted is None or connector.auth_type != "oauth2":
            return
        missing = [s for s in scopes if s not in granted]
        if missing:
            self.add(path, f"connection '{name}' lacks scope(s) {', '.join(missing)}; "
                           f"reconnect with `splice connect {connector.id} --name {name} "
                           f"--scopes \"{' '.join(sorted(set(granted) | set(missing)))}\"`")

    def references(self, compiled: CompiledMapping | CompiledExpression | None,
                   base: tuple[str | int, ...], scope: dict[str, Any]) -> None:
        """Every name a template reads must exist in the schema that produces it."""
        if compiled is None:
            return
        for ref in compiled.references():
            at = (*base, *ref.field) if ref.field else base
            if ref.root not in scope:
                if ref.root not in ROOTS:
                    self.add(at, f"unknown name '{ref.root}'{did_you_mean(ref.root, ROOTS)}; "
                                 f"templates can read {', '.join(sorted(scope))}")
                else:
                    self.add(at, f"'{ref.root}' is not available here")
                continue
            schema = scope[ref.root]
            self.check_path(ref.root, ref.path, schema, at)

    def check_path(self, root: str, path: tuple[str | int, ...], schema: Any,
                   at: tuple[str | int, ...], whose: str = "") -> None:
        node = schema
        for i, part in enumerate(path):
            nxt = subschema(node, (part,), strict=True)
            if nxt is None:
                shown = ".".join([root, *[str(p) for p in path[:i + 1]]])
                names = property_names(node)
                hint = did_you_mean(part, names) if isinstance(part, str) else ""
                if not hint and names:
                    hint = f" (available: {', '.join(names[:12])})"
                self.add(at, f"'{shown}' does not exist in the {_what(root)}{whose}{hint}")
                return
            node = nxt

    def literals(self, value: Any, schema: Any, base: tuple[str | int, ...],
                 scope: dict[str, Any], defaults: Mapping[str, Any]) -> None:
        """Check non-template values, required keys and pure references against ``schema``."""
        if not isinstance(schema, dict):
            return
        if isinstance(value, dict):
            for key in schema.get("required", []) if schema.get("type", "object") == "object" \
                    else []:
                if key not in value and key not in defaults:
                    self.add(base, f"missing required input '{key}'", key=True)
            for key, sub in value.items():
                child = subschema(schema, (key,))
                if child is None:
                    self.add((*base, key), f"unknown input '{key}'"
                             f"{did_you_mean(key, property_names(schema))}", key=True)
                    continue
                self._leaf(sub, child, (*base, key), scope)
        else:
            self._leaf(value, schema, base, scope)

    def _leaf(self, value: Any, schema: Any, path: tuple[str | int, ...],
              scope: dict[str, Any]) -> None:
        if isinstance(value, str) and is_template(value):
            m = PURE_REF.match(value)
            if m:
                self._ref_type(m.group(1), schema, path, scope)
            return
        if isinstance(value, dict):
            self.literals(value, schema, path, scope, {})
            return
        if isinstance(value, list):
            if any(isinstance(v, str) and is_template(v) for v in value) or any(
                    isinstance(v, (dict, list)) for v in value):
                item = subschema(schema, (0,))
                if item is None:
                    self.add(path, f"expected {_type_words(schema)}, got a list")
                    return
                for i, v in enumerate(value):
                    self._leaf(v, item, (*path, i), scope)
                return
        for sub_path, msg, _ in iter_errors(validator_for(schema), value):
            self.add((*path, *sub_path), msg)

    def _ref_type(self, ref: str, target: Any, path: tuple[str | int, ...],
                  scope: dict[str, Any]) -> None:
        parts = re.findall(r"[A-Za-z_]\w*|\[(\d+)\]|\['([^']*)'\]", ref)
        names = re.findall(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]", ref)
        flat: list[str | int] = []
        for a, b, c in names:
            flat.append(a or (int(b) if b else c))
        if not parts or flat[0] not in scope:
            return
        source = subschema(scope[flat[0]], tuple(flat[1:]))
        src_types, dst_types = _types(source), _types(target)
        if not src_types or not dst_types:
            return
        if "number" in dst_types:
            dst_types = dst_types | {"integer"}
        if not (src_types & dst_types) and not ("integer" in src_types and "number" in dst_types):
            self.add(path, f"type mismatch: '{ref}' is {_type_words(source)} but the input "
                           f"expects {_type_words(target)}; convert it in the template (e.g. "
                           f"`| int`, `| string`) or map another field")


def _types(schema: Any) -> set[str]:
    if not isinstance(schema, dict) or "type" not in schema:
        return set()
    t = schema["type"]
    return set(t) if isinstance(t, list) else {t}


def _type_words(schema: Any) -> str:
    t = sorted(_types(schema))
    return " or ".join(t) if t else "any value"


def _what(root: str) -> str:
    return {"trigger": "trigger's output schema", "steps": "earlier steps' outputs",
            "recipe": "recipe (name, vars)", "item": "for_each items",
            "connection": "connection's fields"}.get(root, root)


def _dotted(path: tuple[str | int, ...]) -> str:
    from ..model.documents import format_path
    return format_path(path)


_LABEL_TAIL = re.compile(r"^((?:\.[A-Za-z_]\w*|\[\d+\]|\['(?:[^'\\]|\\.)*'\])*)"
                         r"((?: \(line \d+\))?): (.*)$", re.S)
_LABEL_PART = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def split_label(message: str, base: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str]:
    """Split ``steps[0].with.email (line 1): what`` into the field path and the message."""
    prefix = _dotted(base)
    if not message.startswith(prefix):
        return base, message
    m = _LABEL_TAIL.match(message[len(prefix):])
    if not m:
        return base, message
    path: list[str | int] = list(base)
    for name, index, quoted in _LABEL_PART.findall(m.group(1)):
        path.append(name or (int(index) if index else quoted))
    line = m.group(2).strip()[1:-1] if m.group(2) else ""
    return tuple(path), m.group(3) + (f" (template {line})" if line else "")


def step_output_schema(op: Operation) -> Any:
    """What ``steps.<id>`` holds after a step ran ``op`` (once)."""
    if op.is_list:
        return {"type": "object", "properties": {
            "records": {"type": "array", "items": op.record_schema},
            "count": {"type": "integer"}}}
    return op.output


def connection_schema(connector: Connector) -> dict[str, Any]:
    fields = {"name": {"type": "string"}, "base_url": {"type": "string"}}
    for f in connector.auth.get("token_fields", []) or []:
        fields[f] = {}
    return {"type": "object", "properties": fields}


def build_plan(recipe: Recipe, registry: Registry, template_engine: TemplateEngine, *,
               connections: Mapping[str, Any] | None = None,
               disabled: Mapping[str, set[str]] | None = None) -> Plan:
    """Check ``recipe`` and compile it; raise :class:`DocumentError` listing every problem.

    In order: resolve the trigger and each step's action; check connections and scopes
    (``connections``, name -> stored connection, enables these checks; ``disabled``,
    name -> disabled endpoint ids, refuses those endpoints); compile every
    template; check the paths templates read and the types of literal values.
    """
    ck = _Checker(recipe, registry, template_engine, connections, disabled)
    resolved = _resolve_triggers(ck, recipe)
    connector, trigger = resolved[recipe.primary] if resolved else (None, None)
    base_scope = _base_scope(recipe)
    parts = _compile_trigger(ck, recipe, connector, trigger, base_scope) \
        if connector is not None and trigger is not None else None
    trigger_schema = connector.trigger_output(trigger) if connector and trigger else True
    step_schemas: dict[str, Any] = {}
    step_plans = [plan for step in recipe.steps if (plan := _plan_step(
        ck, step, {**base_scope, "trigger": trigger_schema}, step_schemas)) is not None]
    sources = _other_sources(ck, recipe, resolved, step_plans)
    if ck.problems:
        raise DocumentError(sorted(ck.problems, key=lambda p: (p.line, p.column)))
    assert connector is not None and trigger is not None and parts is not None
    primary = Source(recipe.triggers[recipe.primary], connector, trigger, parts["key"],
                     parts["version"], parts["filter"])
    return Plan(recipe=recipe, connector=connector, trigger=trigger, steps=step_plans,
                required_scopes=ck.needs, sources=[primary, *sources], **parts)


def _resolve_triggers(ck: _Checker, recipe: Recipe
                      ) -> list[tuple[Connector | None, Trigger | None]]:
    """Each trigger's connector and declaration (a problem says what exists instead); picks
    the primary trigger: the one polled, webhooks feed the same events."""
    resolved = [_resolve_trigger(ck, spec) for spec in recipe.triggers]
    polled = [i for i, (_c, t) in enumerate(resolved) if t is not None and t.type != "webhook"]
    if len(polled) > 1:
        ck.add((*recipe.triggers[polled[1]].path, "use"), "a recipe polls one trigger; "
               "the others of `triggers` must be webhook triggers")
    if polled:
        recipe.set_primary(polled[0])
    for spec, (_c, trigger) in zip(recipe.triggers, resolved, strict=True):
        if trigger is None or trigger.type != "webhook":
            continue
        for key, what in (("with", spec.with_), ("every", spec.every_given)):
            if what:
                ck.add((*spec.path, key), f"'{spec.use}' is a webhook trigger: it takes no "
                                          f"`{key}` (deliveries arrive at `splice serve`)",
                       key=True)
        if spec.connection is None:
            ck.add(spec.path, "missing required key 'connection' (webhook deliveries arrive "
                              "at the connection's URL, /hooks/CONNECTION)")
    return resolved


def _resolve_trigger(ck: _Checker, spec: TriggerSpec) -> tuple[Connector | None, Trigger | None]:
    trig_path = (*spec.path, "use")
    connector = ck.connector(spec.use, trig_path)
    if connector is None:
        return None, None
    tid = spec.trigger_id
    if tid not in connector.triggers:
        hint = did_you_mean(tid, connector.triggers)
        if tid in connector.operations:
            hint = f" ('{tid}' is an action; triggers: {', '.join(connector.triggers)})"
        ck.add(trig_path, f"connector '{connector.id}' has no trigger '{tid}'{hint}")
        return connector, None
    return connector, connector.triggers[tid]


def _other_sources(ck: _Checker, recipe: Recipe,
                   resolved: list[tuple[Connector | None, Trigger | None]],
                   steps: list[StepPlan]) -> list[Source]:
    """The triggers besides the primary: keys compiled, connections checked, and every
    ``trigger.<path>`` the steps read checked against their records too."""
    out = []
    for i, (spec, (connector, trigger)) in enumerate(zip(recipe.triggers, resolved,
                                                         strict=True)):
        if i == recipe.primary or connector is None or trigger is None:
            continue
        ck.connection(spec.connection, connector, (*spec.path, "connection"), trigger.scopes,
                      trigger.id)
        schema = connector.trigger_output(trigger)
        for step in steps:
            for part, compiled in (("when", step.when), ("for_each", step.for_each),
                                   ("with", step.mapping)):
                for ref in compiled.references() if compiled is not None else ():
                    if ref.root == "trigger":
                        at = ("steps", step.index, part, *ref.field)
                        ck.check_path("trigger", ref.path, schema, at,
                                      f" of {trigger.ref}")
        engine = ck.template_engine
        out.append(Source(spec, connector, trigger,
                          _record_expression(engine, trigger.key, f"{trigger.ref}.key"),
                          _record_expression(engine, trigger.version, f"{trigger.ref}.version"),
                          engine.compile_expression(trigger.filter,
                                                    where=f"{trigger.ref}.filter")
                          if trigger.filter else None))
    return out


def _base_scope(recipe: Recipe) -> dict[str, Any]:
    """What every template of the recipe may read: ``recipe`` and ``now``."""
    return {
        "recipe": {"type": "object", "properties": {
            "name": {"type": "string"}, "description": {"type": "string"},
            "vars": {"type": "object", "properties": {k: _schema_of(v) for k, v in
                                                      recipe.vars.items()},
                     "additionalProperties": False}}},
        "now": {"type": "string", "format": "date-time"}}


def _compile_trigger(ck: _Checker, recipe: Recipe, connector: Connector, trigger: Trigger,
                     base_scope: dict[str, Any]) -> dict[str, Any]:
    """The trigger's input, defaults, dedupe key, version and filter, compiled and checked."""
    template_engine = ck.template_engine
    op = connector.operations.get(trigger.operation) if trigger.operation else None
    cscope = {**base_scope, "connection": connection_schema(connector)}
    base = recipe.trigger_path
    trigger_input = ck.mapping(recipe.trigger_with, (*base, "with"))
    ck.references(trigger_input, (*base, "with"), cscope)
    defaults = {**(op.defaults if op else {}), **trigger.defaults}
    if op is not None:
        ck.literals(recipe.trigger_with, op.input, (*base, "with"), cscope, defaults)
    ck.connection(recipe.trigger_connection, connector, (*base, "connection"),
                  op.scopes if op else trigger.scopes, trigger.id)
    return {
        "trigger_input": trigger_input,
        "trigger_defaults": template_engine.compile_mapping(
            defaults, where=f"{trigger.ref}.defaults"),
        "key": _record_expression(template_engine, trigger.key, f"{trigger.ref}.key"),
        "version": _record_expression(template_engine, trigger.version, f"{trigger.ref}.version"),
        "filter": template_engine.compile_expression(trigger.filter, where=f"{trigger.ref}.filter")
        if trigger.filter else None,
    }


def _resolve_action(ck: _Checker, step: StepSpec, base: tuple[str | int, ...]
                    ) -> tuple[Connector | None, Operation | None]:
    sconn = ck.connector(step.use, (*base, "use"))
    if sconn is None:
        return None, None
    if step.action_id not in sconn.operations:
        hint = did_you_mean(step.action_id, sconn.operations)
        if step.action_id in sconn.triggers:
            hint = f" ('{step.action_id}' is a trigger, not an action)"
        ck.add((*base, "use"), f"connector '{sconn.id}' has no action '{step.action_id}'{hint}")
        return sconn, None
    return sconn, sconn.operations[step.action_id]


def _plan_step(ck: _Checker, step: StepSpec, scope: dict[str, Any],
               step_schemas: dict[str, Any]) -> StepPlan | None:
    """One step: resolve its action, compile ``when``/``for_each``/``with`` against what the
    step may read (earlier steps' outputs), check types and scopes. Adds the step's output
    schema to ``step_schemas`` for the steps after it."""
    base: tuple[str | int, ...] = ("steps", step.index)
    sconn, op = _resolve_action(ck, step, base)
    scope = {**scope, "steps": {"type": "object", "properties": dict(step_schemas),
                                "additionalProperties": False}}
    if sconn is not None:
        scope["connection"] = connection_schema(sconn)
    when = ck.expression(step.when, (*base, "when"))
    ck.references(when, (*base, "when"), scope)
    for_each = ck.expression(step.for_each, (*base, "for_each"))
    ck.references(for_each, (*base, "for_each"), scope)
    if for_each is not None:
        scope["item"] = _item_schema(for_each, scope)
        scope["loop"] = {"type": "object", "properties": {
            "index": {"type": "integer"}, "index0": {"type": "integer"},
            "first": {"type": "boolean"}, "last": {"type": "boolean"},
            "length": {"type": "integer"}}}
    mapping = ck.mapping(step.with_, (*base, "with"))
    ck.references(mapping, (*base, "with"), scope)
    if op is None or sconn is None:
        if step.id:
            step_schemas[step.id] = True
        return None
    ck.literals(step.with_, op.input, (*base, "with"), scope, op.defaults)
    ck.connection(step.connection, sconn, (*base, "connection"), op.scopes, op.id)
    if step.id:
        out = step_output_schema(op)
        step_schemas[step.id] = {"type": "array", "items": out} if for_each else out
    if mapping is None:
        return None
    return StepPlan(spec=step, connector=sconn, operation=op, mapping=mapping,
                    defaults=ck.template_engine.compile_mapping(
                        op.defaults, where=f"{op.ref}.defaults"),
                    when=when, for_each=for_each)


def _record_expression(template_engine: TemplateEngine, source: str | None, where: str
                       ) -> CompiledExpression | FieldGetter | None:
    if not source:
        return None
    compiled = template_engine.compile_expression(source, where=where)
    m = PURE_REF.match(source)
    if m and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", m.group(1)):
        root, *path = m.group(1).split(".")
        if root in ("record", "event"):
            return FieldGetter(compiled, root, tuple(path))
    return compiled


def _schema_of(value: Any) -> Any:
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _schema_of(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"type": "array"}
    return True


def _item_schema(for_each: CompiledExpression, scope: dict[str, Any]) -> Any:
    """Schema of ``item`` when for_each is a plain reference to a list (else: anything).

    An expression that transforms the list (``| map(attribute='records') | sum(start=[])``,
    ``| selectattr(...)``) changes what its items are, so nothing is assumed about them.
    """
    source = for_each.source.strip()
    if not (PURE_REF.match(source) or PURE_REF.match("{{ " + source + " }}")):
        return True
    refs = for_each.references()
    if len(refs) != 1 or refs[0].root not in scope:
        return True
    node = subschema(scope[refs[0].root], refs[0].path)
    if isinstance(node, dict) and "items" in node:
        return node["items"]
    return True

"""A rehearsal of one event's steps: each step rendered, validated, and sent only if asked.

Used by ``splice test`` (:mod:`splice.run.trial`) and by ``splice run --dry-run``. Every input
field is paired with the template it was mapped from and the value it got. Without ``send`` a
step's output is a placeholder (or the declared sample of a list operation) so later steps can
still be rendered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import SpliceError
from ..http.request import dig, extract_records
from ..model.manifest import MISSING, Operation
from ..secrets import redact_headers
from .steps import StepExecutor, for_each_items, loop_vars


@dataclass
class FieldRow:
    field: str
    source: str
    value: Any


@dataclass
class StepTrial:
    label: str
    action: str
    status: str                       # rendered | skipped | failed | sent
    request: dict[str, Any] | None = None
    fields: list[FieldRow] = field(default_factory=list)
    error: str | None = None
    output: Any = None
    input: Any = None                 # the validated input (defaults + mapping)
    body: Any = None                  # the JSON body sent (after the operation's body template)
    operation: Operation | None = None
    step: Any = None                  # the StepPlan



def trial_steps(runner: StepExecutor, event: Any, *, send: bool = False,
                max_items: int | None = None, send_reads: bool = False) -> list[StepTrial]:
    """Every step of the recipe for one event (``for_each`` steps: one entry per item, the
    first ``max_items``); stops at the first failure, which is the last entry. With
    ``send_reads`` (the builder's preview) GET steps are sent even when ``send`` is not:
    they change nothing and later steps then render with real data."""
    out: list[StepTrial] = []
    ctx: dict[str, Any] = {**runner.base_context(), "trigger": event, "steps": {}}
    for step in runner.plan.steps:
        op = step.operation
        sctx = {**ctx, "connection": runner.public_connection(step.connection, step.connector)}
        label = step.spec.label
        trial = StepTrial(label, op.ref, "rendered")
        try:
            if step.when is not None and not step.when(sctx):
                out.append(StepTrial(label, op.ref, "skipped"))
                ctx["steps"][step.spec.id or f"_{step.index}"] = None
                continue
            items = for_each_items(step, step.for_each(sctx)) if step.for_each is not None \
                else [None]
            outputs = []
            for i, item in enumerate((items or [])[:max_items]):
                ictx = sctx if step.for_each is None else {
                    **sctx, "item": item, "loop": loop_vars(i, len(items))}
                trial = StepTrial(label if step.for_each is None else f"{label}[{i}]",
                                  op.ref, "rendered")
                out.append(trial)
                outputs.append(_try_step(runner, step, ictx, trial,
                                         send or (send_reads and op.method == "GET")))
            ctx["steps"][step.spec.id or f"_{step.index}"] = \
                outputs if step.for_each is not None else (outputs[0] if outputs else None)
        except SpliceError as exc:
            if trial not in out:
                out.append(trial)
            trial.status, trial.error = "failed", str(exc)
            break
    return out


def _try_step(runner: StepExecutor, step: Any, ctx: dict[str, Any], trial: StepTrial,
              send: bool) -> Any:
    op = step.operation
    payload = runner.render_input(op, step.defaults, step.mapping, ctx,
                                  ("steps", step.index, "with"))
    for f in step.mapping.fields:
        trial.fields.append(FieldRow(".".join(map(str, f.path)), f.source,
                                     dig(payload, ".".join(map(str, f.path)))))
    key = None
    if op.writes:  # a test transaction is a write of its own: never a key a run used
        key = f"splice-test-{uuid.uuid4()}" if send else "<idempotency-key>"
    call = runner.prepare(op, step.connector, step.connection, payload, key)
    trial.request = {**call.describe(), "headers": redact_headers(call.headers)}
    trial.input, trial.operation, trial.step = payload, op, step
    trial.body = trial.request.get("json")
    if not send:
        return _sample_output(op, f"steps.{step.spec.id or step.index}")
    output = runner.send(runner.client(step.connection, step.connector), op, call, [])
    trial.status, trial.output = "sent", output
    return output


def _sample_output(op: Operation, label: str) -> Any:
    """What a step is assumed to return in a dry run (nothing was sent): placeholders
    shaped by the output schema, such as ``"<steps.note.id>"``; list steps use the declared
    sample records when there are some."""
    if op.is_list:
        records = extract_records(op, op.sample) if op.sample is not MISSING else []
        if not records:
            records = [placeholder(op.record_schema, f"{label}.records[0]")]
        return {"records": records, "count": len(records)}
    return placeholder(op.output, label)


def placeholder(schema: Any, label: str, depth: int = 0) -> Any:
    """A stand-in value for ``schema``; strings name where the real value would come from."""
    if not isinstance(schema, dict) or depth > 6:
        return f"<{label}>"
    types = schema.get("type")
    kind = types[0] if isinstance(types, list) and types else types
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "object" or (kind is None and "properties" in schema):
        return {k: placeholder(v, f"{label}.{k}", depth + 1)
                for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    return {"integer": 0, "number": 0, "boolean": False, "null": None}.get(
        kind or "", f"<{label}>")

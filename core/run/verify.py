"""Verified test transactions (``splice test --send --verify``, the dashboard's test page).

One event runs through every step for real (:func:`splice.run.trial.run_trial` with
``send``); then each write is read back through the get operation its manifest declares
(``verify:``, :class:`splice.model.readback.ReadBack`) and every field of the JSON body that
was sent is compared with what the API stored: ``equal``, ``differs`` or ``missing`` (the
stored record has no such field). Fields with secret-like names are masked in the result;
the comparison itself uses the real values. A write whose operation declares no read-back is
reported as ``unverified`` (it does not fail the check); a read-back that fails is ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import SpliceError, ValidationFailed
from ..http.request import dig
from ..secrets import MASK, redact_data, redact_headers
from .rehearsal import StepTrial
from .runner import Runner
from .steps import render_defaults
from .trial import TrialReport, run_trial

MAX_FIELDS = 500  # compared per record; the rest is reported as not compared


@dataclass
class FieldCheck:
    """One body field: the value sent next to the value stored."""

    field: str
    sent: Any
    stored: Any
    status: str                       # equal | differs | missing

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "sent": self.sent, "stored": self.stored,
                "status": self.status}


@dataclass
class ReadBackCheck:
    """The read-back of one write (one ``for_each`` item, one ``each`` record)."""

    step: str
    action: str
    status: str                       # equal | differs | unverified | failed
    verify: str | None = None         # the get operation's ref
    request: dict[str, Any] | None = None
    record: Any = None
    fields: list[FieldCheck] = field(default_factory=list)
    error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {"equal": 0, "differs": 0, "missing": 0}
        for f in self.fields:
            out[f.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "action": self.action, "status": self.status,
                "verify": self.verify, "request": self.request, "record": self.record,
                "error": self.error, "fields": [f.to_json() for f in self.fields]}


@dataclass
class VerifiedTrial:
    """A test transaction and the read-back of everything it wrote."""

    trial: TrialReport
    checks: list[ReadBackCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every step ran and every read-back field equals what was sent."""
        return self.trial.ok and all(c.status in ("equal", "unverified") for c in self.checks)

    @property
    def verdict(self) -> str:
        if not self.trial.ok:
            return "a step failed"
        if any(c.status == "failed" for c in self.checks):
            return "a read-back failed"
        if any(c.status == "differs" for c in self.checks):
            return "fields differ"
        if not any(c.status == "equal" for c in self.checks):
            return "nothing to verify"
        return "all fields equal"


def run_verified(runner: Runner, *, source: str = "auto", event_id: int | None = None
                 ) -> VerifiedTrial:
    """Send one event's steps for real, then read every write back and compare."""
    report = run_trial(runner, source=source, send=True, event_id=event_id)
    out = VerifiedTrial(report)
    for trial in report.steps:
        op = trial.operation
        if trial.status == "sent" and op is not None and op.writes \
                and (op.verify is not None or not op.is_list):  # a POST list is a read
            out.checks.extend(verify_step(runner, trial))
    return out


def verify_step(runner: Runner, trial: StepTrial) -> list[ReadBackCheck]:
    """Read back what one sent step wrote (one check per record it wrote)."""
    op = trial.operation
    assert op is not None
    spec = op.verify
    if spec is None:
        return [ReadBackCheck(trial.label, op.ref, "unverified",
                              error=f"{op.ref} declares no read-back (`verify:` in its "
                                    "manifest), so what it stored is not compared")]
    body = trial.body
    if spec.each:
        items = dig(body, spec.each)
        if not isinstance(items, list):
            return [ReadBackCheck(trial.label, op.ref, "failed", f"{op.connector_id}."
                                  f"{spec.operation}", error=f"the request body has no list "
                                                             f"at '{spec.each}'")]
        pairs: list[tuple[int | None, Any]] = list(enumerate(items))
    else:
        pairs = [(None, body)]
    checks = []
    for index, sent in pairs:
        label = trial.label if index is None else f"{trial.label} {spec.each}[{index}]"
        checks.append(_read_back(runner, trial, label, index, sent))
    return checks


def _read_back(runner: Runner, trial: StepTrial, label: str, index: int | None,
               sent: Any) -> ReadBackCheck:
    op, step = trial.operation, trial.step
    assert op is not None and op.verify is not None and step is not None
    spec = op.verify
    connector = step.connector
    get_op = connector.operations.get(spec.operation)
    check = ReadBackCheck(label, op.ref, "failed", f"{connector.id}.{spec.operation}")
    if get_op is None:
        check.error = f"connector '{connector.id}' has no operation '{spec.operation}'"
        return check
    if not isinstance(sent, dict):
        check.status = "unverified"
        check.error = "the request had no JSON object body to compare"
        return check
    engine = runner.template_engine()
    public = runner.public_connection(step.connection, connector)
    try:
        given = engine.compile_mapping(spec.with_, where=f"{op.ref}.verify.with")(
            {"input": trial.input, "output": trial.output, "index": index,
             "connection": public})
        payload = render_defaults(engine, get_op.defaults, {"connection": public,
                                                            "now": runner.now()})
        payload.update(given or {})
        errors = get_op.input_checker.errors(payload)
        if errors:
            raise ValidationFailed(f"{get_op.ref} input is not valid: " + "; ".join(
                f"{'.'.join(map(str, p)) or 'input'}: {m}" for p, m, _ in errors[:5]))
        call = runner.prepare(get_op, connector, step.connection, payload)
        check.request = {**call.describe(), "headers": redact_headers(call.headers)}
        response = runner.send(runner.client(step.connection, connector), get_op, call, [])
    except SpliceError as exc:
        check.error = str(exc)
        return check
    record = response if spec.record == "." else dig(response, spec.record)
    if not isinstance(record, dict):
        check.error = f"{get_op.ref} returned no record at '{spec.record}'"
        return check
    check.fields = compare(sent, record, spec.ignore)
    check.record = redact_data(record)
    check.status = "equal" if all(f.status == "equal" for f in check.fields) else "differs"
    return check


def compare(sent: dict[str, Any], stored: dict[str, Any], ignore: tuple[str, ...] = ()
            ) -> list[FieldCheck]:
    """Every leaf of ``sent`` (objects are walked, lists compared whole) next to the value at
    the same path of ``stored``."""
    out: list[FieldCheck] = []

    def walk(node: Any, there: Any, path: tuple[str, ...], present: bool) -> None:
        name = ".".join(path)
        if name in ignore or len(out) >= MAX_FIELDS:
            return
        if isinstance(node, dict) and node:
            for key, value in node.items():
                has = isinstance(there, dict) and key in there
                walk(value, there.get(key) if has else None, (*path, str(key)), has)
            return
        if not present:
            status = "missing"
        else:
            status = "equal" if _same(node, there) else "differs"
        secret = redact_data({path[-1]: node}) != {path[-1]: node} if path else False
        out.append(FieldCheck(name or ".", MASK if secret else node,
                              MASK if secret and present else there, status))

    walk(sent, stored, (), True)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)




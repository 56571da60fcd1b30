"""The test-call form: ``/connections/{name}/call/{op}``, generated from the operation's input
JSON Schema and sent through the same code as ``splice call``.

Each top-level input property becomes a field: an ``enum`` a select, a boolean a
true/false select, a number or integer a number input, an array or object a JSON text area,
anything else a text input; required properties (those the operation's defaults do not fill,
e.g. HighLevel's ``locationId`` from the connection) are marked. A POST parses the values by
type, checks them against the schema (:func:`splice.run.call.input_problems`) and shows each
problem at its field; only a valid input is sent (:func:`splice.run.call.send_operation`:
scopes and disabled endpoints are checked first). The answer is shown as formatted JSON with
secret-looking values and registered secrets masked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import SpliceError
from ..run.call import input_problems, send_operation
from ..secrets import REDACTOR, redact_data, redact_text
from .formdata import form_data

__all__ = ["FormField", "form_fields", "parse_form", "routes"]

PREFIX = "f."   # form field names: f.<property>
_REQUIRED = re.compile(r"missing required key '([^']+)'")


@dataclass
class FormField:
    """One input of the form."""

    name: str
    kind: str                       # text / number / integer / boolean / select / json
    required: bool = False
    enum: list[Any] = field(default_factory=list)
    description: str = ""
    placeholder: str = ""
    value: str = ""
    error: str = ""
    defaulted: bool = False          # the operation fills it when left empty

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def input_id(self) -> str:
        return "field-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.name)

    @property
    def options(self) -> list[tuple[str, str]]:
        """(value, label) of a select."""
        if self.kind == "boolean":
            return [("true", "true"), ("false", "false")]
        return [(json.dumps(v) if not isinstance(v, str) else v, str(v)) for v in self.enum]


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    types = kind if isinstance(kind, list) else [kind] if kind else []
    for combo in ("anyOf", "oneOf"):
        for branch in node.get(combo) or []:
            if isinstance(branch, dict):
                types += _types(branch)
    return [t for t in types if t != "null"]


def form_fields(op: Any) -> list[FormField]:
    """The form of ``op``'s input schema (top-level properties, in declared order)."""
    schema = op.input if isinstance(op.input, dict) else {}
    required = set(schema.get("required") or [])
    out = []
    for name, node in (schema.get("properties") or {}).items():
        node = node if isinstance(node, dict) else {}
        types = _types(node)
        enum = node.get("enum")
        if enum is None and isinstance(node.get("const"), (str, int, float, bool)):
            enum = [node["const"]]
        if isinstance(enum, list):
            kind = "select"
        elif types and types[0] in ("number", "integer", "boolean"):
            kind = types[0]
        elif types and types[0] in ("array", "object"):
            kind = "json"
        else:
            kind = "text"
        examples = node.get("examples")
        sample = examples[0] if isinstance(examples, list) and examples else \
            node.get("example", node.get("format", ""))
        placeholder = json.dumps(sample) if kind == "json" and sample != "" else str(sample)
        out.append(FormField(name, kind, name in required and name not in op.defaults,
                             [v for v in enum or [] if v is not None],
                             " ".join(str(node.get("description") or "").split()),
                             placeholder[:80], defaulted=name in op.defaults))
    return out


def parse_form(fields: list[FormField], form: Any) -> dict[str, Any]:
    """The payload the form describes; a value that does not parse gets its field's error.
    Empty fields are left out (the operation's defaults fill theirs)."""
    payload: dict[str, Any] = {}
    for f in fields:
        raw = str(form.get(f.input_name) or "")
        f.value = raw
        if raw.strip() == "":
            if f.required:
                f.error = "required"
            continue
        try:
            if f.kind == "integer":
                payload[f.name] = int(raw.strip())
            elif f.kind == "number":
                number = float(raw.strip())
                payload[f.name] = int(number) if number.is_integer() else number
            elif f.kind == "boolean":
                payload[f.name] = {"true": True, "false": False}[raw.strip()]
            elif f.kind == "select":
                payload[f.name] = next((v for v in f.enum if (
                    v if isinstance(v, str) else json.dumps(v)) == raw), raw)
            elif f.kind == "json":
                payload[f.name] = json.loads(raw)
            else:
                payload[f.name] = raw
        except (ValueError, KeyError):
            f.error = {"integer": "expected a whole number", "number": "expected a number",
                       "boolean": "choose true or false",
                       "json": "expected JSON, e.g. [\"a\", \"b\"] or {\"k\": 1}"}.get(
                f.kind, "not a valid value")
    return payload


def _attach(fields: list[FormField], problems: list[tuple[tuple[str | int, ...], str]]
            ) -> list[str]:
    """Put each schema problem at its field; return those that belong to none."""
    by_name = {f.name: f for f in fields}
    loose = []
    for path, message in problems:
        match = _REQUIRED.search(message) if not path else None
        name = str(path[0]) if path else (match.group(1) if match else "")
        target = by_name.get(name)
        if target is None:
            loose.append(f"{'.'.join(map(str, path)) or 'input'}: {message}")
        elif not target.error:
            inner = ".".join(map(str, path[1:]))
            target.error = (f"{inner}: " if inner else "") + message
    return loose


def shown(data: Any) -> str:
    """An answer as indented JSON, secrets masked."""
    return redact_text(json.dumps(REDACTOR.redact_json(redact_data(data)), indent=2,
                                  default=str, ensure_ascii=False), 200_000)


def routes(dash: Any) -> list[BaseRoute]:
    def lookup(request: Request) -> tuple[Any, Any, Any]:
        name, op_id = request.path_params["name"], request.path_params["op"]
        record = dash.store.get_connection(name)
        connector = dash.registry.connectors.get(record.connector) if record else None
        op = connector.operations.get(op_id) if connector is not None else None
        return record, connector, op

    def page(request: Request, form: Any | None) -> Response:
        record, connector, op = lookup(request)
        if record is None or op is None:
            return dash.render(request, "connections/missing.html", {
                "name": f"{request.path_params['name']} / {request.path_params['op']}"},
                status=404)
        fields = form_fields(op)
        context: dict[str, Any] = {
            "name": record.name, "connector": connector, "op": op, "fields": fields,
            "action": "/connections/" + quote(record.name, safe="") + "/call/" +
                      quote(op.id, safe=""),
            "back": "/connections/" + quote(record.name, safe=""),
            "problems": [], "answer": None, "status": None, "error": None}
        if form is None:
            return dash.render(request, "connections/call.html", context)
        payload = parse_form(fields, form)
        status = 400
        context["problems"] = _attach(fields, input_problems(
            dash.registry, dash.store, op.ref, connection=record.name, payload=payload))
        if not any(f.error for f in fields) and not context["problems"]:
            try:
                answer = send_operation(dash.registry, dash.store, op.ref,
                                        connection=record.name, payload=payload, max_pages=1)
                context["answer"], context["status"] = shown(answer.data), answer.status
                status = 200
            except SpliceError as exc:
                context["error"] = redact_text(str(exc), 2000)
                status = 200 if exc.exit_code == 1 else 400
        return dash.render(request, "connections/call.html", context, status=status)

    def show(request: Request) -> Response:
        return page(request, None)

    async def send(request: Request) -> Response:
        form = await form_data(request)
        return await run_in_threadpool(page, request, form)

    return [Route("/connections/{name}/call/{op}", show, methods=["GET"]),
            Route("/connections/{name}/call/{op}", send, methods=["POST"])]

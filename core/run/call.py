"""``splice call``: one operation, by hand, with a stored connection.

Handy to look things up while writing a recipe (which social profiles does this location
have?) or to check a connection. The input is validated against the operation's input schema,
the connection's granted scopes are checked (as for a recipe) and a disabled endpoint is
refused, all before anything is sent; list operations follow every page.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..connections.client import connection_client, public_fields
from ..connections.endpoints import check_enabled
from ..connections.status import check_scopes, probe_operation
from ..errors import InputError, ValidationFailed
from ..http.request import prepare_call
from ..mapping.templates import TemplateEngine
from ..model.schema import subschema
from ..store.endpoints import disabled as disabled_endpoints
from .steps import render_defaults, rendered_parts

NON_STRING = {"integer", "number", "boolean", "array", "object", "null"}


def parse_assignments(pairs: list[str], schema: Any) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON-decoded only where the input schema wants a
    non-string type (so ``zip=00123`` stays the string "00123")."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--with expects KEY=VALUE, got {pair!r}")
        node = subschema(schema, (key,))
        types = node.get("type") if isinstance(node, dict) else None
        types = set(types if isinstance(types, list) else [types] if types else [])
        value: Any = raw
        if types and types <= NON_STRING:
            try:
                value = json.loads(raw)
            except ValueError:
                raise InputError(f"--with {key}: expected JSON for a {'/'.join(sorted(types))} "
                                 f"value, got {raw!r}") from None
        out[key] = value
    return out


@dataclass
class Answer:
    """What one call got: its JSON (every page's records for a list) and, for a single
    request, its HTTP status."""

    data: Any
    status: int | None = None


def call_operation(registry: Any, store: Any, ref: str, *, connection: str | None,
                   payload: dict[str, Any], max_pages: int | None = None) -> Any:
    """Call ``ref`` with ``connection`` and return its JSON (see :func:`send_operation`)."""
    return send_operation(registry, store, ref, connection=connection, payload=payload,
                          max_pages=max_pages).data


def _prepare(registry: Any, store: Any, ref: str, connection: str | None,
             payload: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any], Any,
                                               dict[str, Any]]:
    cid, _, op_id = ref.partition(".")
    connector = registry.connector(cid)
    op = connector.operation(op_id)
    record = store.require_connection(connection) if connection else None
    context = {"connection": public_fields(connector, record, connection),
               "now": datetime.now(UTC)}
    template_engine = TemplateEngine(registry.filters)
    merged = render_defaults(template_engine, op.defaults, context)
    merged.update(payload)
    return connector, op, record, context, template_engine, merged


def input_problems(registry: Any, store: Any, ref: str, *, connection: str | None,
                   payload: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) of each reason ``payload`` (with the operation's defaults, as
    :func:`send_operation` fills them) does not fit the input schema; nothing is sent."""
    _c, op, _r, _ctx, _e, merged = _prepare(registry, store, ref, connection, payload)
    return [(tuple(p), m) for p, m, _ in op.input_checker.errors(merged)]


def send_operation(registry: Any, store: Any, ref: str, *, connection: str | None,
                   payload: dict[str, Any], max_pages: int | None = None) -> Answer:
    """Render the operation's defaults, validate the input, check the connection's scopes,
    then send (a list operation: every page, or ``max_pages``)."""
    connector, op, record, context, template_engine, merged = _prepare(
        registry, store, ref, connection, payload)
    problems = [f"{'.'.join(map(str, p)) or 'input'}: {m}"
                for p, m, _ in op.input_checker.errors(merged)]
    if problems:
        raise ValidationFailed(f"{op.ref} input is not valid (nothing was sent):\n  " +
                               "\n  ".join(problems))
    check_scopes(connector, record, op)  # as a recipe would: before anything is sent
    check_enabled(store, connector, connection, op.id)
    parts = rendered_parts(
        op, {"input": merged, "connection": context["connection"]},
        lambda part, value: template_engine.compile_mapping(value, where=f"{op.ref}.{part}"))
    with connection_client(connector, record, store, registry) as client:
        call = prepare_call(op, connector, merged, base_url=client.base_url,
                            idempotency_key=f"splice-call-{uuid.uuid4()}" if op.writes else None,
                            **parts)
        if op.is_list:
            records: list[Any] = []
            for _body, page in client.pages(op, call, max_pages=max_pages):
                records.extend(page)
            return Answer({"records": records, "count": len(records)})
        result = client.send(op, call)
        return Answer(result.json(), result.response.status_code)


def probe_connection(registry: Any, store: Any, name: str) -> tuple[Any, Answer, str | None]:
    """``splice connections test``: (operation, answer, note) of one cheap read that the
    connection's scopes allow (:func:`splice.connections.status.probe_operation`)."""
    record = store.require_connection(name)
    connector = registry.connector(record.connector)
    op, note = probe_operation(connector, record, disabled_endpoints(store, name))
    fields = record.config.get("fields") or {}
    payload = {k: fields[k] for k in (op.input or {}).get("required", []) if k in fields}
    answer = send_operation(registry, store, op.ref, connection=name, payload=payload,
                            max_pages=1)
    return op, answer, note

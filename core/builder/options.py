"""Dynamic options: the real values an id input can take, read with the connection.

Where an action's input is an id (a client, an invoice, a tag), its manifest names the list
operation whose records are the choices (``options:``, else inferred from the field's name:
:meth:`splice.model.manifest.Connector.input_options`). :func:`field_options` calls that
operation with the step's connection (scopes checked, defaults from the connection, at most
``MAX_PAGES`` pages) and returns ``(value, label)`` pairs for a dropdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..run.call import send_operation

MAX_OPTIONS = 200
MAX_PAGES = 3


@dataclass(frozen=True)
class Option:
    value: Any
    label: str


def option_fields(registry: Any, use: str) -> dict[str, str]:
    """input field -> the list operation its choices come from, for action ``use``."""
    cid, _, op_id = use.partition(".")
    connector = registry.connector(cid)
    connector.operation(op_id)
    return {name: f"{cid}.{source.operation}"
            for name, source in connector.input_options(op_id).items()}


def field_options(registry: Any, store: Any, use: str, field: str,
                  connection: str | None) -> list[Option]:
    """The choices of input ``field`` of action ``use``, read with ``connection``."""
    cid, _, op_id = use.partition(".")
    connector = registry.connector(cid)
    connector.operation(op_id)
    source = connector.input_options(op_id).get(field)
    if source is None:
        raise ConfigError(f"'{use}' lists no choices for '{field}'",
                          hint="declare them in the manifest: options: {" + field +
                               ": {from: LIST_OPERATION, value: id, label: name}}")
    answer = send_operation(registry, store, f"{cid}.{source.operation}",
                            connection=connection, payload=dict(source.with_),
                            max_pages=MAX_PAGES)
    out: list[Option] = []
    seen: set[str] = set()
    for record in (answer.data or {}).get("records", []):
        if not isinstance(record, dict) or record.get(source.value) is None:
            continue
        value = record[source.value]
        key = repr(value)
        if key in seen:
            continue
        seen.add(key)
        label = record.get(source.label)
        out.append(Option(value, str(label) if label not in (None, "") else str(value)))
        if len(out) >= MAX_OPTIONS:
            break
    return out

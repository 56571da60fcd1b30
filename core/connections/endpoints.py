"""Which endpoints a connection may use: scopes granted vs needed, enabled or disabled.

An *endpoint* is one of the connector's operations or triggers, named by its id (the two
share one namespace within a connector). A connection's endpoints are all enabled until
``splice connections endpoints CONN --disable OP`` (or the dashboard's toggle) disables one;
the state lives in the ``disabled_endpoints`` table (:mod:`splice.store.endpoints`, imported
only where a function reads or writes it: plans import this module, and ``splice validate``
does not import SQLAlchemy).

A disabled endpoint is refused everywhere with the same words (:func:`refusal`):
``splice validate``/``run``/``test`` and serve's recipe loading (the plan's connection check,
``build_plan(disabled=...)``), a running recipe's steps and polls
(:func:`check_enabled`, before anything is sent), ``splice call`` and the dashboard's test
call, and the JSON API. A polled trigger uses its listing operation as well: disabling
``list_tags`` refuses ``tag_created`` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, InputError
from ..model.manifest import Connector
from ..model.schema import did_you_mean

__all__ = ["Endpoint", "check_enabled", "disabled_in", "endpoint_ids", "list_endpoints",
           "refusal", "resolve", "set_enabled"]


@dataclass
class Endpoint:
    """One operation or trigger as a connection sees it."""

    id: str
    ref: str
    kind: str                      # "operation" or "trigger"
    title: str
    method: str | None             # operations: GET/POST/...; triggers: None
    path: str | None
    trigger_type: str | None       # triggers: polling / webhook / event
    uses: str | None               # a polled trigger's listing operation
    scopes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)   # needed but not granted
    enabled: bool = True

    @property
    def allowed(self) -> bool:
        """The connection holds every scope it needs (unknown grants count as held)."""
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ref": self.ref, "kind": self.kind, "title": self.title,
                "method": self.method, "path": self.path, "trigger_type": self.trigger_type,
                "uses": self.uses, "scopes": self.scopes, "missing_scopes": self.missing,
                "scopes_granted": self.allowed, "enabled": self.enabled}


def _granted(connector: Connector, record: Any) -> list[str] | None:
    if record is None or connector.auth_type != "oauth2":
        return None
    granted = record.config.get("scopes")
    return None if granted is None else list(granted)


def list_endpoints(connector: Connector, record: Any, disabled: Iterable[str]
                   ) -> list[Endpoint]:
    """Every operation, then every trigger of ``connector`` for connection ``record``."""
    off = set(disabled)
    granted = _granted(connector, record)
    out: list[Endpoint] = []

    def missing(scopes: list[str]) -> list[str]:
        return [] if granted is None else [s for s in scopes if s not in granted]

    for op in connector.operations.values():
        out.append(Endpoint(op.id, op.ref, "operation", op.title, op.method, op.path, None,
                            None, list(op.scopes), missing(op.scopes), op.id not in off))
    for trig in connector.triggers.values():
        listing = connector.operations.get(trig.operation or "")
        scopes = list(listing.scopes) if listing is not None else list(trig.scopes)
        out.append(Endpoint(trig.id, trig.ref, "trigger", trig.title, None, None, trig.type,
                            trig.operation, scopes, missing(scopes), trig.id not in off))
    return out


def endpoint_ids(connector: Connector) -> list[str]:
    return [*connector.operations, *connector.triggers]


def resolve(connector: Connector, name: str) -> str:
    """An endpoint id from ``OP`` or ``CONNECTOR.OP``; an :class:`InputError` names the
    nearest when there is no such endpoint."""
    cid, dot, rest = name.partition(".")
    if dot and cid == connector.id:
        name = rest
    ids = endpoint_ids(connector)
    if name not in ids:
        raise InputError(f"connector '{connector.id}' has no operation or trigger "
                         f"'{name}'{did_you_mean(name, ids)}",
                         hint=f"`splice connectors show {connector.id}` lists them")
    return name


def used_by(connector: Connector, endpoint_id: str) -> list[str]:
    """What using ``endpoint_id`` sends through: itself, and a polled trigger's operation."""
    trig = connector.triggers.get(endpoint_id)
    if trig is not None and trig.operation:
        return [endpoint_id, trig.operation]
    return [endpoint_id]


def disabled_in(connector: Connector, endpoint_id: str, disabled: Iterable[str]) -> str | None:
    """The disabled endpoint (itself, or the operation a trigger polls) that refuses
    ``endpoint_id``, or None when it may be used."""
    off = set(disabled)
    return next((e for e in used_by(connector, endpoint_id) if e in off), None)


def refusal(connector: Connector, connection: str, endpoint_id: str, blocked: str) -> str:
    """The message every refusal uses: connection, endpoint, how to enable it."""
    via = "" if blocked == endpoint_id else \
        f" (trigger {connector.id}.{endpoint_id} polls it)"
    return (f"endpoint {connector.id}.{blocked} is disabled for connection "
            f"'{connection}'{via}; enable it with `splice connections endpoints {connection} "
            f"--enable {blocked}` or on the dashboard's Connected apps page")


def check_enabled(store: Any, connector: Connector, connection: str | None,
                  endpoint_id: str, disabled: Iterable[str] | None = None) -> None:
    """Raise :class:`ConfigError` (nothing sent) when ``connection`` may not use
    ``endpoint_id``; ``disabled`` saves the lookup when the caller has it."""
    if connection is None:
        return
    if disabled is None:
        from ..store.endpoints import disabled as stored

        disabled = stored(store, connection)
    blocked = disabled_in(connector, endpoint_id, disabled)
    if blocked is not None:
        raise ConfigError(refusal(connector, connection, endpoint_id, blocked))


def set_enabled(store: Any, connector: Connector, record: Any, name: str,
                enabled: bool) -> tuple[str, bool]:
    """Enable or disable endpoint ``name`` (``OP`` or ``CONNECTOR.OP``) of connection
    ``record``; (endpoint id, whether it changed)."""
    if record.connector != connector.id:
        raise ConfigError(f"connection '{record.name}' is for connector '{record.connector}', "
                          f"not '{connector.id}'")
    from ..store import endpoints as table

    endpoint_id = resolve(connector, name)
    return endpoint_id, table.set_enabled(store, record.name, endpoint_id, enabled)

"""From an inbox row to the recipes it concerns: event type, connection match, record, key.

A delivery for connection C with event type T goes to every enabled recipe with a webhook
trigger on C whose ``events`` list T, when the event concerns C (``match_connection``: the
fields both the event and C's token fields have must be equal). The trigger's ``record``
path picks the record out of the event; ``key``/``version``/``filter`` give its dedupe key,
so the recipe runs it once whichever path (this webhook, a retry of it, or the polling
safety net) brought it first. A trigger with ``revokes_connection`` (HighLevel's
AppUninstall) marks C revoked and emits its ``reauth_required`` connection event, whether or
not a recipe listens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..connections.oauth import REAUTH
from ..errors import SpliceError
from ..model.manifest import Trigger
from ..store.connection_events import emit_connection_event
from ..store.inbox import InboxRow
from .plan import Source

log = logging.getLogger("splice.serve.webhooks")


@dataclass
class Routed:
    """One delivery's record for one recipe."""

    row_id: int
    key: str
    record: Any


@dataclass
class RouteIndex:
    """(connection, event type) -> [(recipe id, source)], built from the enabled plans."""

    routes: dict[tuple[str, str], list[tuple[str, Source]]]

    @classmethod
    def build(cls, recipes: Iterable[Any]) -> RouteIndex:
        routes: dict[tuple[str, str], list[tuple[str, Source]]] = {}
        for loaded in recipes:
            for source in loaded.plan.webhooks:
                for event in source.trigger.events:
                    routes.setdefault((source.connection or "", event), []).append(
                        (loaded.id, source))
        return cls(routes)

    def connections(self) -> set[str]:
        return {conn for conn, _event in self.routes}


def concerns(trigger: Trigger, event: Any, record: Any) -> bool:
    """``match_connection``: every listed field the event and the connection both have must
    be equal (fields come from the connection's token fields)."""
    fields = (record.config.get("fields") or {}) if record is not None else {}
    for name in trigger.match_connection:
        theirs = event.get(name) if isinstance(event, dict) else None
        if theirs is not None and fields.get(name) is not None and \
                str(theirs) != str(fields[name]):
            return False
    return True


def record_of(trigger: Trigger, event: Any) -> Any:
    node = event
    for part in trigger.record_path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def source_key(source: Source, event: Any, record: Any) -> str | None:
    """The dedupe key of a delivered record (None: filtered out)."""
    ctx = {"record": record, "event": event}
    if source.filter is not None and not source.filter(ctx):
        return None
    if source.key is None:
        return None
    key = str(source.key(ctx))
    if source.version is not None:
        key = f"{key}@{source.version(ctx)}"
    return key


def route(rows: list[InboxRow], index: RouteIndex, store: Any, registry: Any
          ) -> tuple[dict[str, list[Routed]], dict[int, int], dict[int, str]]:
    """Per recipe, the records to run; per row, how many recipe items it became; rows that
    are finished already (no recipe listens, filtered, malformed) with their outcome."""
    per_recipe: dict[str, list[Routed]] = {}
    counts: dict[int, int] = {}
    finished: dict[int, str] = {}
    connections: dict[str, Any] = {}
    for row in rows:
        if row.connection not in connections:
            connections[row.connection] = store.get_connection(row.connection)
        record = connections[row.connection]
        try:
            event = json.loads(row.body)
        except ValueError:
            finished[row.id] = "malformed body"
            continue
        notes = _effects(row, event, record, store, registry)
        targets = index.routes.get((row.connection, row.event_type or ""), [])
        for recipe, source in targets:
            if not concerns(source.trigger, event, record):
                notes.append(f"{recipe}: not for this connection")
                continue
            item = record_of(source.trigger, event)
            try:
                key = source_key(source, event, item)
            except SpliceError as exc:
                notes.append(f"{recipe}: no key ({exc})")
                continue
            if key is None:
                notes.append(f"{recipe}: filtered out")
                continue
            per_recipe.setdefault(recipe, []).append(Routed(row.id, key, item))
            counts[row.id] = counts.get(row.id, 0) + 1
        if row.id not in counts:
            finished[row.id] = "; ".join(notes) or "no enabled recipe listens"
    return per_recipe, counts, finished


def _effects(row: InboxRow, event: Any, record: Any, store: Any, registry: Any) -> list[str]:
    """Engine effects of an event (a connection revoked), whatever the recipes."""
    notes: list[str] = []
    connector = registry.connectors.get(record.connector) if record is not None else None
    if connector is None:
        return notes
    for trigger in connector.triggers.values():
        if trigger.revokes_connection and row.event_type in trigger.events and \
                concerns(trigger, event, record):
            if record.status != REAUTH:
                revoke_connection(store, record, f"{row.event_type}: the app was uninstalled")
            notes.append("connection revoked")
    return notes


def revoke_connection(store: Any, record: Any, reason: str) -> None:
    """Drop the tokens, mark the connection ``reauth_required``, emit the event."""
    from datetime import UTC, datetime

    store.update_tokens(record.name, {"access_token": None, "refresh_token": None},
                        {"status": REAUTH, "last_error": reason, "expires_at": None,
                         "reauth_since": datetime.now(UTC).isoformat(timespec="seconds")})
    emit_connection_event(store, "reauth_required", record.name,
                          {"connector": record.connector, "reason": reason})
    log.warning("connection '%s' revoked: %s", record.name, reason,
                extra={"connection": record.name})

"""Connection events: ``token_refreshed``, ``token_expiring``, ``reauth_required``.

The engine records them in an append-only table; the built-in ``splice`` connector exposes each
as an ``event`` trigger (``splice.reauth_required`` ...) so a recipe can tell people before
access breaks. Event data never holds a token.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import UTCDateTime, metadata, now

log = logging.getLogger("splice.events")

EVENT_TYPES = ("token_refreshed", "token_expiring", "reauth_required")

connection_events = sa.Table(
    "connection_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String, nullable=False),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("connector", sa.String, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def create_table(conn: Connection) -> None:
    """Migration 2: the connection events table."""
    connection_events.create(conn, checkfirst=True)


def emit_connection_event(store: Any, event: str, connection: str, data: dict[str, Any]) -> None:
    """Record a connection event for ``splice.<event>`` triggers and log it."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown connection event {event!r}")
    level = logging.INFO if event == "token_refreshed" else logging.WARNING
    log.log(level, "connection '%s': %s", connection, event.replace("_", " "))
    clean = {k: v for k, v in data.items() if k in ("connector", "expires_at", "reason")}
    with store._write() as conn:
        conn.execute(connection_events.insert().values(
            event=event, connection=connection, connector=str(data.get("connector", "")),
            data=clean, created_at=now()))


def list_connection_events(store: Any, *, events: list[str] | None = None, after: int = 0,
                           limit: int = 1000) -> list[dict[str, Any]]:
    """Events with id > ``after``, oldest first, shaped like the trigger output schema."""
    query = sa.select(connection_events).where(connection_events.c.id > after)
    if events:
        query = query.where(connection_events.c.event.in_(events))
    with store._read() as conn:
        rows = conn.execute(query.order_by(connection_events.c.id).limit(limit)).all()
    return [{"id": r.id, "event": r.event, "connection": r.connection,
             "connector": r.connector, "created_at": r.created_at.isoformat(),
             "expires_at": r.data.get("expires_at"), "reason": r.data.get("reason")}
            for r in rows]

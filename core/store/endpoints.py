"""Endpoints a connection may not use: the ``disabled_endpoints`` table (migration 7).

One row per (connection, endpoint id) that was disabled with ``splice connections endpoints
CONN --disable OP`` or the dashboard's toggle; an endpoint without a row is enabled. The id is
an operation's or a trigger's id (they share one namespace within a connector). What a
disabled endpoint refuses, and the words used, live in :mod:`splice.connections.endpoints`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .tables import dialect_insert, disabled_endpoints, now

__all__ = ["disabled", "disabled_by_connection", "forget_connection", "set_enabled"]


def disabled(store: Any, connection: str) -> set[str]:
    """The endpoint ids disabled for ``connection``."""
    table = disabled_endpoints
    with store._read() as conn:
        rows = conn.execute(sa.select(table.c.operation).where(
            table.c.connection == connection)).all()
    return {r[0] for r in rows}


def disabled_by_connection(store: Any) -> dict[str, set[str]]:
    """Every connection's disabled endpoint ids (connections without any are absent)."""
    table = disabled_endpoints
    out: dict[str, set[str]] = {}
    with store._read() as conn:
        for name, op in conn.execute(sa.select(table.c.connection, table.c.operation)):
            out.setdefault(name, set()).add(op)
    return out


def set_enabled(store: Any, connection: str, operation: str, enabled: bool) -> bool:
    """Enable (delete the row) or disable (insert it) one endpoint; True when it changed."""
    table = disabled_endpoints
    with store._write() as conn:
        if enabled:
            done = conn.execute(table.delete().where(table.c.connection == connection,
                                                     table.c.operation == operation))
            return bool(done.rowcount)
        added = conn.execute(dialect_insert(conn, table).values(
            connection=connection, operation=operation, disabled_at=now()
        ).on_conflict_do_nothing(index_elements=["connection", "operation"])
            .returning(table.c.operation)).first()
        return added is not None


def forget_connection(store: Any, connection: str) -> int:
    """Drop every row of ``connection`` (it was removed); how many there were."""
    table = disabled_endpoints
    with store._write() as conn:
        done = conn.execute(table.delete().where(table.c.connection == connection))
    return int(done.rowcount or 0)

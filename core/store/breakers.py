"""Circuit-breaker state per connection, kept between runs.

The breaker itself lives in :mod:`splice.http.breaker` (it counts consecutive 5xx and network
failures of one connection's requests); this table remembers where a run left it, so that the
next run starts *half-open* (one probe request) instead of hammering an API that was down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .tables import UTCDateTime, dialect_insert, metadata, now

__all__ = ["BreakerState", "circuit_breakers", "load_breaker", "save_breaker"]

circuit_breakers = sa.Table(
    "circuit_breakers", metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # closed | open
    sa.Column("failures", sa.Integer, nullable=False),  # consecutive 5xx/network failures
    sa.Column("opened_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class BreakerState:
    """Where a connection's breaker was left."""

    connection: str
    state: str
    failures: int
    opened_at: datetime | None
    last_error: str | None


def load_breaker(store: Any, connection: str) -> BreakerState | None:
    """The saved state of ``connection``'s breaker, if any."""
    with store._read() as conn:
        row = conn.execute(sa.select(circuit_breakers).where(
            circuit_breakers.c.connection == connection)).first()
    if row is None:
        return None
    m = row._mapping
    return BreakerState(m["connection"], m["state"], m["failures"], m["opened_at"],
                        m["last_error"])


def save_breaker(store: Any, connection: str, *, state: str, failures: int,
                 opened_at: datetime | None, last_error: str | None) -> None:
    """Remember ``connection``'s breaker for the next run."""
    values = {"state": state, "failures": failures, "opened_at": opened_at,
              "last_error": last_error, "updated_at": now()}
    with store._write() as conn:
        conn.execute(dialect_insert(conn, circuit_breakers).values(
            connection=connection, **values).on_conflict_do_update(
            index_elements=["connection"], set_=values))

"""Counts for the dashboard's overview: events by status and dead letters, in two queries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .tables import EVENT_STATUSES, dead_letters, events

__all__ = ["event_counts"]


def event_counts(store: Any) -> dict[str, int]:
    """``{status: count}`` for every event status, plus ``dead_letters``."""
    with store._read() as conn:
        rows = conn.execute(sa.select(events.c.status, sa.func.count())
                            .group_by(events.c.status)).all()
        dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar()
    counts = dict.fromkeys(EVENT_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    counts["dead_letters"] = int(dead or 0)
    return counts

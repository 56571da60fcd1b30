"""Read-only views of the ledger for the JSON API and the dashboard: events by recipe and
status, an event with its step results. Secrets were redacted when the rows were written."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .ledger import EventRecord, StepResult
from .tables import EVENT_STATUSES, events, step_results


def list_events(store: Any, *, recipe: str | None = None, status: str | None = None,
                limit: int = 50, before: int | None = None) -> list[EventRecord]:
    """Newest first; ``before``: only ids below it (paging)."""
    query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
    if recipe is not None:
        query = query.where(events.c.recipe == recipe)
    if status is not None:
        if status not in EVENT_STATUSES:
            raise ValueError(f"unknown event status {status!r}")
        query = query.where(events.c.status == status)
    if before is not None:
        query = query.where(events.c.id < before)
    with store._read() as conn:
        return [EventRecord(**row._mapping) for row in conn.execute(query)]


def event_steps(store: Any, event_id: int) -> list[StepResult]:
    """An event's step results in order."""
    with store._read() as conn:
        rows = conn.execute(sa.select(step_results).where(step_results.c.event_id == event_id)
                            .order_by(step_results.c.step_index, step_results.c.item_index))
        return [StepResult(**row._mapping) for row in rows]

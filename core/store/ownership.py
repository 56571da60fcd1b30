"""Which recipe owns a trigger's state (seen records, cursor, events, dead letters).

State is keyed by the recipe's id (:mod:`splice.model.recipe`: its ``id:``, else one derived
from the file's path). ``trigger_state.source`` remembers the file that last ran the state, so
a second file with the same id is noticed (:func:`claim_source`). Older splice keyed state by
the recipe's ``name:``; the first run under the new id adopts that state (:func:`adopt_state`),
so an upgrade neither refires nor forgets anything.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .tables import dead_letters, events, seen, seen_scope, trigger_state

__all__ = ["adopt_state", "claim_source"]


def claim_source(store: Any, recipe: str, trigger: str, source: str) -> str | None:
    """Record that the recipe file ``source`` runs this state; returns the other file that
    ran it last, if another one did."""
    with store._write() as conn:
        before = conn.execute(sa.select(trigger_state.c.source).where(
            trigger_state.c.recipe == recipe, trigger_state.c.trigger == trigger)).first()
        if before is not None and before.source != source:
            conn.execute(trigger_state.update().where(
                trigger_state.c.recipe == recipe, trigger_state.c.trigger == trigger,
            ).values(source=source))
    if before is None or before.source in (None, source):
        return None
    return str(before.source)


def adopt_state(store: Any, old: str, new: str, trigger: str) -> bool:
    """Move the state kept under recipe key ``old`` to ``new`` when ``new`` has none yet
    (one transaction); True if there was something to move."""
    if old == new:
        return False
    with store._write() as conn:
        def has(recipe: str) -> bool:
            return conn.execute(sa.select(trigger_state.c.recipe).where(
                trigger_state.c.recipe == recipe,
                trigger_state.c.trigger == trigger)).first() is not None

        if has(new) or not has(old):
            return False
        for table in (trigger_state, events):
            conn.execute(table.update().where(table.c.recipe == old,
                                              table.c.trigger == trigger).values(recipe=new))
        conn.execute(seen.update().where(seen.c.scope == seen_scope(old, trigger))
                     .values(scope=seen_scope(new, trigger)))  # seen keys: under new's scope
        moved = sa.select(events.c.id).where(events.c.recipe == new,
                                             events.c.trigger == trigger)
        conn.execute(dead_letters.update().where(dead_letters.c.event_id.in_(moved))
                     .values(recipe=new))
    return True

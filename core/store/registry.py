"""The recipe registry: which recipes ``splice serve`` runs, and what it last made of each.

A registered recipe is keyed by its recipe id (the ``id:`` it declares, else one derived
from its file's path: the key of its state); commands find it by id or by name.

``splice recipes add FILE`` records the file's path and the text of the version that passed
``validate``; serve re-reads the file when it changes and, when the new text is valid, stores
it as the running version; when it is not, the old text keeps running and ``status`` says
``invalid`` with the new version's ``file:line:col`` problems. ``generation`` grows with every
change a running serve must notice (enable, disable, new version, run-now), so it can poll the
registry with one cheap query. The scheduler keeps its per-recipe state here too: when the
next poll is due (``next_poll_at``, shared by every serve process on the database) and how many
events each path (webhook or poll) delivered first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import UTCDateTime, metadata, now

REGISTRY_STATUSES = ("ok", "invalid", "missing")

registered_recipes = sa.Table(
    "registered_recipes", metadata,
    sa.Column("id", sa.String, primary_key=True),       # the recipe id (its state's key)
    sa.Column("name", sa.String, nullable=False),
    sa.Column("path", sa.String, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("source", sa.Text, nullable=False),        # the running (last valid) version
    sa.Column("source_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("problems", sa.Text),                      # why the file's newest text is refused
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("run_requested_at", UTCDateTime),
    sa.Column("next_poll_at", UTCDateTime),
    sa.Column("last_poll_at", UTCDateTime),
    sa.Column("last_poll_status", sa.String(16)),
    sa.Column("last_run_id", sa.String(36)),
    sa.Column("webhook_first", sa.Integer, nullable=False, default=0),
    sa.Column("poll_first", sa.Integer, nullable=False, default=0),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


def create_table(conn: Connection) -> None:
    """Part of the serve migration: the registry table."""
    registered_recipes.create(conn, checkfirst=True)


@dataclass(frozen=True)
class RegisteredRecipe:
    """One row of the registry."""

    id: str
    name: str
    path: str
    enabled: bool
    source: str
    source_hash: str
    status: str
    problems: str | None
    generation: int
    run_requested_at: datetime | None
    next_poll_at: datetime | None
    last_poll_at: datetime | None
    last_poll_status: str | None
    last_run_id: str | None
    webhook_first: int
    poll_first: int
    added_at: datetime
    updated_at: datetime


def _row(row: Any) -> RegisteredRecipe:
    return RegisteredRecipe(**row._mapping)


def register(store: Any, recipe_id: str, name: str, path: str, source: str, source_hash: str,
             *, enabled: bool = True) -> bool:
    """Add or replace a recipe (a valid version); True when it was new."""
    stamp = now()
    with store._write() as conn:
        found = conn.execute(sa.select(registered_recipes.c.generation)
                             .where(registered_recipes.c.id == recipe_id)).first()
        values = {"name": name, "path": path, "enabled": enabled, "source": source,
                  "source_hash": source_hash, "status": "ok", "problems": None,
                  "updated_at": stamp}
        if found is None:
            conn.execute(registered_recipes.insert().values(
                id=recipe_id, generation=1, webhook_first=0, poll_first=0, added_at=stamp,
                **values))
            return True
        conn.execute(registered_recipes.update().where(registered_recipes.c.id == recipe_id)
                     .values(generation=found.generation + 1, **values))
        return False


def get(store: Any, recipe_id: str) -> RegisteredRecipe | None:
    with store._read() as conn:
        row = conn.execute(sa.select(registered_recipes)
                           .where(registered_recipes.c.id == recipe_id)).first()
    return None if row is None else _row(row)


def find(store: Any, wanted: str) -> list[RegisteredRecipe]:
    """Recipes whose id or name is ``wanted`` (an id wins)."""
    rows = list_all(store)
    by_id = [r for r in rows if r.id == wanted]
    return by_id or [r for r in rows if r.name == wanted]


def list_all(store: Any) -> list[RegisteredRecipe]:
    with store._read() as conn:
        rows = conn.execute(sa.select(registered_recipes)
                            .order_by(registered_recipes.c.name, registered_recipes.c.id)).all()
    return [_row(r) for r in rows]


def generations(store: Any) -> dict[str, int]:
    """id -> generation: what a running serve compares to notice changes."""
    with store._read() as conn:
        return {r.id: int(r.generation) for r in conn.execute(sa.select(
            registered_recipes.c.id, registered_recipes.c.generation))}


def update(store: Any, recipe_id: str, *, bump: bool = True, **values: Any) -> bool:
    """Set columns of one recipe (and bump its generation); False if it is not registered."""
    stmt = registered_recipes.update().where(registered_recipes.c.id == recipe_id)
    values["updated_at"] = now()
    if bump:
        values["generation"] = registered_recipes.c.generation + 1
    with store._write() as conn:
        return conn.execute(stmt.values(**values)).rowcount == 1


def remove(store: Any, recipe_id: str) -> bool:
    with store._write() as conn:
        return conn.execute(registered_recipes.delete()
                            .where(registered_recipes.c.id == recipe_id)).rowcount == 1


def claim_poll(store: Any, recipe_id: str, due: datetime | None, next_due: datetime) -> bool:
    """Take the poll that was due at ``due``: move ``next_poll_at`` to ``next_due`` only if it
    still says ``due`` (compare-and-set), so of several serve processes sharing the database
    exactly one polls each interval. Missed intervals coalesce: ``next_due`` is computed from
    now, not from ``due``."""
    column = registered_recipes.c.next_poll_at
    match = column.is_(None) if due is None else column == due
    with store._write() as conn:
        done = conn.execute(registered_recipes.update().where(
            registered_recipes.c.id == recipe_id, match).values(next_poll_at=next_due))
        return done.rowcount == 1


def poll_schedule(store: Any) -> dict[str, datetime | None]:
    """id -> next_poll_at for every enabled recipe."""
    with store._read() as conn:
        return {r.id: r.next_poll_at for r in conn.execute(sa.select(
            registered_recipes.c.id, registered_recipes.c.next_poll_at).where(
            registered_recipes.c.enabled.is_(True)))}


def record_poll(store: Any, recipe_id: str, *, status: str, run_id: str | None, new_events: int,
                started_at: datetime) -> None:
    """What a poll did (no generation bump: nothing a serve must reload)."""
    with store._write() as conn:
        conn.execute(registered_recipes.update().where(registered_recipes.c.id == recipe_id)
                     .values(last_poll_at=started_at, last_poll_status=status,
                             last_run_id=run_id,
                             poll_first=registered_recipes.c.poll_first + new_events))


def add_webhook_first(store: Any, recipe_id: str, count: int) -> None:
    if count:
        with store._write() as conn:
            conn.execute(registered_recipes.update()
                         .where(registered_recipes.c.id == recipe_id)
                         .values(webhook_first=registered_recipes.c.webhook_first + count))


def take_run_request(store: Any, recipe_id: str) -> bool:
    """Clear a pending run-now request; True if there was one (and this caller took it)."""
    with store._write() as conn:
        done = conn.execute(registered_recipes.update().where(
            registered_recipes.c.id == recipe_id,
            registered_recipes.c.run_requested_at.is_not(None)).values(run_requested_at=None))
        return done.rowcount == 1

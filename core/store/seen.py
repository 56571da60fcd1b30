"""A trigger's seen keys: which records it already knows (dedupe), in the ``seen`` table.

``filter_unseen`` answers which keys of a page are new; ``add_seen`` remembers keys;
``seed_page`` remembers a whole polled page together with the trigger's page checkpoint in
one transaction (a first poll, which fires nothing); ``seen_count`` is for status displays.
Keys are stored in ``storage_key`` form under the trigger's ``seen_scope``
(:mod:`splice.store.tables`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .bulk import chunks
from .tables import json_dumps, now, prebuilt, seen, seen_scope, sqlite_time, storage_key

__all__ = ["SeenKeysMixin"]

_CHUNK = 500  # bound parameters per IN (...) query; SQLite allows 32766, old builds 999
_SEEN_CHUNK = 400  # keys per INSERT (SQLite before 3.32 binds at most 999 values)
_SAVE_CHECKPOINT = (
    'INSERT INTO trigger_state (recipe, "trigger", initialized, checkpoint, updated_at) '
    "VALUES (?, ?, 0, ?, ?) ON CONFLICT (recipe, \"trigger\") DO UPDATE SET "
    "checkpoint = excluded.checkpoint, updated_at = excluded.updated_at")


@functools.lru_cache(maxsize=64)
def _insert_seen_sql(count: int, qmark: bool) -> str:
    """One INSERT of ``count`` seen keys. On SQLite the scope is bound once (``?1``) and the
    keys after it; elsewhere every row binds its scope."""
    rows = [f"(?{i}, ?1)" for i in range(2, count + 2)] if qmark else ["(%s, %s)"] * count
    return (f"INSERT INTO seen (key, scope) VALUES {', '.join(rows)} "
            "ON CONFLICT (key, scope) DO NOTHING")


def _insert_seen(execute: Callable[[str, Any], Any], qmark: bool, recipe: str, trigger: str,
                 keys: Iterable[str]) -> int:
    """Insert ``keys`` (stored form, duplicates dropped) as seen; returns how many were new.

    A multi-row INSERT per 400 keys: on SQLite a third of the cost of ``executemany`` over the
    same rows (which binds and steps a statement per row), measured in bench/NOTES.md.
    """
    scope = seen_scope(recipe, trigger)
    stored = list(dict.fromkeys(map(storage_key, keys)))
    added = 0
    for chunk in chunks(stored, _SEEN_CHUNK):
        if qmark:
            params: tuple[Any, ...] = (scope, *chunk)
        else:
            params = tuple(value for key in chunk for value in (key, scope))
        added += max(execute(_insert_seen_sql(len(chunk), qmark), params).rowcount, 0)
    return added


class SeenKeysMixin:
    """Seen-key methods of ``splice.store.database.Store`` (which provides the transactions)."""

    engine: Engine

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _ambient(self) -> Connection | None:
        raise NotImplementedError

    def write_gate(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def batch(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def set_checkpoint(self, recipe: str, trigger: str, checkpoint: dict[str, Any] | None
                       ) -> None:
        raise NotImplementedError

    def filter_unseen(self, recipe: str, trigger: str, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` not seen before (one indexed query per 500 keys)."""
        by_stored = {storage_key(key): key for key in keys}
        if not by_stored:
            return set()
        seen_now: set[str] = set()
        scope = seen_scope(recipe, trigger)
        with self._read() as conn:
            stmt = prebuilt(conn, "seen_in", lambda c: sa.select(seen.c.key).where(
                seen.c.scope == sa.bindparam("b_scope"),
                seen.c.key.in_(sa.bindparam("b_keys", expanding=True))))
            for chunk in chunks(list(by_stored), _CHUNK):
                seen_now.update(conn.execute(stmt, {"b_scope": scope, "b_keys": chunk}
                                             ).scalars())
        return {key for stored, key in by_stored.items() if stored not in seen_now}

    def add_seen(self, recipe: str, trigger: str, keys: Iterable[str]) -> int:
        """Remember ``keys`` as seen; keys already there are left alone. Returns how many
        were new."""
        with self._write() as conn:
            return self._add_seen(conn, recipe, trigger, keys)

    def _add_seen(self, conn: Connection, recipe: str, trigger: str, keys: Iterable[str]) -> int:
        # The hottest write of a poll: plain driver-level statements (no per-row SQLAlchemy
        # parameter processing). SQLite and PostgreSQL both accept this ON CONFLICT form.
        return _insert_seen(conn.exec_driver_sql, conn.dialect.paramstyle == "qmark",
                            recipe, trigger, keys)

    def seed_page(self, recipe: str, trigger: str, keys: Iterable[str],
                  checkpoint: dict[str, Any] | None) -> int:
        """Remember a polled page's ``keys`` and save the trigger's page ``checkpoint``, in
        ONE transaction; returns how many keys were new.

        On SQLite this is the cheapest form there is: a pooled driver connection, ``BEGIN
        IMMEDIATE``, one multi-row INSERT of the keys, one checkpoint upsert,
        ``COMMIT`` (no SQLAlchemy statement on the way: this runs once per page of a first
        poll). Elsewhere, or inside ``batch()``, it is ``add_seen`` + ``set_checkpoint``.
        """
        if self.engine.dialect.name != "sqlite" or self._ambient() is not None:
            with self.batch():
                added = self.add_seen(recipe, trigger, keys)
                self.set_checkpoint(recipe, trigger, checkpoint)
            return added
        state = (recipe, trigger, None if checkpoint is None else json_dumps(checkpoint),
                 sqlite_time(now()))
        raw = self.engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            with self.write_gate():
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    added = _insert_seen(cursor.execute, True, recipe, trigger, keys)
                    cursor.execute(_SAVE_CHECKPOINT, state)
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
        finally:
            raw.close()
        return added

    def seen_count(self, recipe: str, trigger: str) -> int:
        """How many keys the trigger has seen (a table scan: for status displays)."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(seen).where(
                seen.c.scope == seen_scope(recipe, trigger))).scalar_one())

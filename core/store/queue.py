"""The event queue: claims, the retry schedule and dead letters.

An event is sent for only by the run that *claimed* it (``events.run_id``), and every claim is
one atomic statement, so two processes never both claim one event, on SQLite or PostgreSQL:

- a new record is claimed by inserting its event row (``pending``) with ``INSERT ... ON
  CONFLICT DO NOTHING RETURNING``: only the rows this statement inserted are this run's;
- a pending event a dead run left (its run holds no live lease), and a failed event that is
  due, are claimed with one ``UPDATE ... WHERE <still in that state> RETURNING`` (a
  compare-and-swap on the row: the first claim makes the row the claimer's).

A failed event carries ``next_attempt_at`` (set by the run from the recipe's ``retry:``
policy) and its ``error_class``; the next run claims it once it is due. An event given up on
is ``dead`` and listed in ``dead_letters`` with its last error, until it is requeued.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..secrets import REDACTOR
from .bulk import execute_rows
from .leases import leases
from .ledger import DeadLetter, EventRecord
from .tables import (
    dead_letters,
    dialect_insert,
    events,
    json_dumps,
    now,
    sqlite_time,
    storage_key,
)

__all__ = ["QueueMixin"]

_CHUNK = 500


class QueueMixin:
    """Claim, schedule and dead-letter methods of ``splice.store.database.Store``."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _add_seen(self, conn: Connection, recipe: str, trigger: str, keys: Any) -> int:
        raise NotImplementedError

    # ----------------------------------------------------------------- claims

    def claim_new_events(self, recipe: str, trigger: str, run_id: str,
                         records: list[tuple[str, Any]]) -> dict[str, int]:
        """Claim the events of ``(key, payload)`` records for ``run_id``: in ONE transaction,
        insert each as ``pending`` unless its key has a row, and mark every key seen.
        Returns ``{key: event id}`` of the events this call inserted (the run's to send);
        a key left out belongs to an event someone else claimed."""
        if not records:
            return {}
        by_stored = {storage_key(key): (key, payload) for key, payload in records}
        stamp = now()
        rows = [{"recipe": recipe, "trigger": trigger, "key": stored, "payload": payload,
                 "status": "pending", "attempts": 0, "run_id": run_id, "created_at": stamp,
                 "updated_at": stamp} for stored, (_key, payload) in by_stored.items()]
        claimed: dict[str, int] = {}
        with self._write() as conn:
            if conn.dialect.name == "sqlite":
                claimed = _claim_sqlite(conn, by_stored, rows)
                self._add_seen(conn, recipe, trigger, [key for key, _ in by_stored.values()])
                return claimed
            stmt = dialect_insert(conn, events).on_conflict_do_nothing(
                index_elements=["recipe", "trigger", "key"]).returning(events.c.key, events.c.id)
            for start in range(0, len(rows), _CHUNK):
                for stored, event_id in conn.execute(stmt, rows[start:start + _CHUNK]):
                    claimed[by_stored[stored][0]] = int(event_id)
            self._add_seen(conn, recipe, trigger, [key for key, _ in by_stored.values()])
        return claimed

    def claim_pending(self, recipe: str, trigger: str, run_id: str) -> list[EventRecord]:
        """Take over the pending events of the trigger that runs which no longer live claimed
        and left (they crashed or stopped): one ``UPDATE``; oldest first. A run lives while
        it holds an unexpired lease (``splice.store.leases``) with its id as the holder; the
        events it claimed are not taken from it."""
        stamp = now()
        live = sa.select(leases.c.holder).where(leases.c.expires_at > stamp)
        with self._write() as conn:
            rows = conn.execute(events.update().where(
                events.c.recipe == recipe, events.c.trigger == trigger,
                events.c.status == "pending",
                sa.or_(events.c.run_id.is_(None),
                       sa.and_(events.c.run_id != run_id, events.c.run_id.not_in(live))),
            ).values(run_id=run_id, updated_at=stamp).returning(*events.c)).all()
        return sorted((EventRecord(**_event_fields(r)) for r in rows), key=lambda e: e.id)

    def claim_failed(self, recipe: str, trigger: str, run_id: str, *, due: bool = True,
                     ids: Iterable[int] | None = None, limit: int | None = None
                     ) -> list[EventRecord]:
        """Claim failed events of the trigger (``pending`` again, owned by ``run_id``):
        those due (``next_attempt_at`` reached or unset) unless ``due=False``, only ``ids``
        if given, at most ``limit``, oldest first."""
        wanted = [events.c.recipe == recipe, events.c.trigger == trigger,
                  events.c.status == "failed"]
        stamp = now()
        if due:
            wanted.append(sa.or_(events.c.next_attempt_at.is_(None),
                                 events.c.next_attempt_at <= stamp))
        if ids is not None:
            wanted.append(events.c.id.in_(list(ids)))
        if limit is not None:
            first = sa.select(events.c.id).where(*wanted).order_by(events.c.id).limit(limit)
            wanted.append(events.c.id.in_(first.scalar_subquery()))
        with self._write() as conn:
            rows = conn.execute(events.update().where(*wanted).values(
                status="pending", run_id=run_id, updated_at=stamp).returning(*events.c)).all()
        return sorted((EventRecord(**_event_fields(r)) for r in rows), key=lambda e: e.id)

    def claim_events(self, recipe: str, trigger: str, run_id: str, ids: Iterable[int], *,
                     due: bool = True) -> list[EventRecord]:
        """Claim stored events by id for ``run_id`` (a worker's run, :mod:`splice.worker`):
        each one ``pending`` whose run no longer lives (or that has none), or ``failed`` and
        due (any failed one with ``due=False``). One ``UPDATE ... RETURNING``: of two
        workers given the same event, one gets it."""
        wanted = list(ids)
        if not wanted:
            return []
        stamp = now()
        live = sa.select(leases.c.holder).where(leases.c.expires_at > stamp)
        orphaned = sa.and_(events.c.status == "pending",
                           sa.or_(events.c.run_id.is_(None), events.c.run_id.not_in(live)))
        failed = sa.and_(events.c.status == "failed",
                         sa.or_(events.c.next_attempt_at.is_(None),
                                events.c.next_attempt_at <= stamp)) if due else \
            events.c.status == "failed"
        with self._write() as conn:
            rows = conn.execute(events.update().where(
                events.c.recipe == recipe, events.c.trigger == trigger,
                events.c.id.in_(wanted), sa.or_(orphaned, failed),
            ).values(status="pending", run_id=run_id, updated_at=stamp)
                .returning(*events.c)).all()
        return sorted((EventRecord(**_event_fields(r)) for r in rows), key=lambda e: e.id)

    def event_states(self, recipe: str, trigger: str, keys: Iterable[str]
                     ) -> dict[str, tuple[int, str]]:
        """``{key: (event id, status)}`` of the trigger's events with these keys."""
        by_stored = {storage_key(k): k for k in keys}
        out: dict[str, tuple[int, str]] = {}
        stored = list(by_stored)
        with self._read() as conn:
            for start in range(0, len(stored), _CHUNK):
                for key, event_id, status in conn.execute(
                        sa.select(events.c.key, events.c.id, events.c.status).where(
                            events.c.recipe == recipe, events.c.trigger == trigger,
                            events.c.key.in_(stored[start:start + _CHUNK]))):
                    out[by_stored[key]] = (int(event_id), str(status))
        return out

    def runnable_events(self, idle: float = 0.0, limit: int = 1000
                        ) -> list[tuple[str, str, int]]:
        """``(recipe, trigger, id)`` of events a worker should run now, oldest first: pending
        ones whose run no longer lives (it crashed, or a poll stored them) and untouched for
        ``idle`` seconds, and failed ones that are due (the reconciler of
        :mod:`splice.serve.dispatch` enqueues them)."""
        stamp = now()
        live = sa.select(leases.c.holder).where(leases.c.expires_at > stamp)
        query = sa.select(events.c.recipe, events.c.trigger, events.c.id).where(sa.or_(
            sa.and_(events.c.status == "pending",
                    events.c.updated_at <= stamp - timedelta(seconds=idle),
                    sa.or_(events.c.run_id.is_(None), events.c.run_id.not_in(live))),
            sa.and_(events.c.status == "failed",
                    sa.or_(events.c.next_attempt_at.is_(None),
                           events.c.next_attempt_at <= stamp)),
        )).order_by(events.c.id).limit(limit)
        with self._read() as conn:
            return [(str(r), str(t), int(i)) for r, t, i in conn.execute(query)]

    def count_events(self, recipe: str, trigger: str, status: str,
                     run_id: str | None = None) -> int:
        """How many events of the trigger have ``status`` (claimed by ``run_id`` if given)."""
        query = sa.select(sa.func.count()).select_from(events).where(
            events.c.recipe == recipe, events.c.trigger == trigger, events.c.status == status)
        if run_id is not None:
            query = query.where(events.c.run_id == run_id)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def next_retry(self, recipe: str, trigger: str) -> tuple[int, datetime | None]:
        """How many failed events wait for a retry, and when the first is due."""
        with self._read() as conn:
            count, first = conn.execute(sa.select(
                sa.func.count(), sa.func.min(events.c.next_attempt_at)).where(
                events.c.recipe == recipe, events.c.trigger == trigger,
                events.c.status == "failed")).one()
        return int(count), first

    # ----------------------------------------------------------------- dead letters

    def _write_dead_letters(self, conn: Connection, event_ids: list[int],
                            stamp: datetime) -> None:
        """List ``dead`` events in ``dead_letters`` with their last error (same transaction)."""
        rows = conn.execute(sa.select(events.c.id, events.c.recipe, events.c.attempts,
                                      events.c.last_error, events.c.error_class)
                            .where(events.c.id.in_(event_ids))).all()
        for row in rows:
            values = {"recipe": row.recipe, "reason": row.last_error, "attempts": row.attempts,
                      "error_class": row.error_class, "created_at": stamp}
            conn.execute(dialect_insert(conn, dead_letters).values(
                event_id=row.id, **values).on_conflict_do_update(
                index_elements=["event_id"], set_=values))

    def dead_letter(self, event_id: int, reason: str | None = None,
                    error_class: str | None = None) -> None:
        """Give up on an event: mark it ``dead`` and list it in ``dead_letters``."""
        stamp = now()
        with self._write() as conn:
            values: dict[str, Any] = {"status": "dead", "updated_at": stamp,
                                      "next_attempt_at": None}
            if reason is not None:
                values["last_error"] = REDACTOR.redact(reason)
            if error_class is not None:
                values["error_class"] = error_class
            done = conn.execute(events.update().where(events.c.id == event_id).values(**values))
            if done.rowcount != 1:
                raise KeyError(f"no event with id {event_id}")
            self._write_dead_letters(conn, [event_id], stamp)

    def dead_letters(self, recipe: str | None = None, ids: Iterable[int] | None = None
                     ) -> list[DeadLetter]:
        """Dead-lettered events, oldest first (with their keys and triggers)."""
        query = sa.select(dead_letters, events.c.key, events.c.trigger).join(
            events, events.c.id == dead_letters.c.event_id).order_by(
            dead_letters.c.created_at, dead_letters.c.event_id)
        if recipe is not None:
            query = query.where(dead_letters.c.recipe == recipe)
        if ids is not None:
            query = query.where(dead_letters.c.event_id.in_(list(ids)))
        with self._read() as conn:
            return [DeadLetter(**row._mapping) for row in conn.execute(query)]

    def requeue_dead_letter(self, event_id: int) -> bool:
        """Put a dead event back as ``failed``, due now, with zero attempts; False if it was
        not dead."""
        return bool(self.requeue_dead([event_id]))

    def requeue_dead(self, ids: Iterable[int] | None = None, recipe: str | None = None
                     ) -> list[int]:
        """Requeue dead events (all, those of ``recipe``, or ``ids``); returns their ids.
        The next run of their recipe claims them like any failed event that is due."""
        query = sa.select(dead_letters.c.event_id)
        if ids is not None:
            query = query.where(dead_letters.c.event_id.in_(list(ids)))
        if recipe is not None:
            query = query.where(dead_letters.c.recipe == recipe)
        stamp = now()
        with self._write() as conn:
            found = list(conn.execute(query).scalars())
            if not found:
                return []
            conn.execute(dead_letters.delete().where(dead_letters.c.event_id.in_(found)))
            conn.execute(events.update().where(events.c.id.in_(found),
                                               events.c.status == "dead").values(
                status="failed", attempts=0, next_attempt_at=stamp, updated_at=stamp))
        return found


def _claim_sqlite(conn: Connection, by_stored: dict[str, tuple[str, Any]],
                  rows: list[dict[str, Any]]) -> dict[str, int]:
    """``claim_new_events`` on SQLite, where the write transaction (``BEGIN IMMEDIATE``)
    holds the database's write lock: nobody else inserts between the read of the keys that
    exist and the insert of the others, which are numbered here and inserted with multi-row
    driver statements (the hot path of a poll: no per-row SQLAlchemy processing)."""
    recipe, trigger = rows[0]["recipe"], rows[0]["trigger"]
    keys = list(by_stored)
    existing: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        existing.update(conn.exec_driver_sql(
            "SELECT key FROM events WHERE recipe = ? AND trigger = ? AND key IN "
            f"({', '.join('?' for _ in chunk)})", (recipe, trigger, *chunk)).scalars())
    fresh = [row for row in rows if row["key"] not in existing]
    if not fresh:
        return {}
    top = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM events").scalar_one())
    when = sqlite_time(fresh[0]["created_at"])
    execute_rows(
        conn.exec_driver_sql,
        "INSERT INTO events (id, recipe, trigger, key, payload, status, attempts, run_id, "
        "created_at, updated_at)", "",
        [(top + n, recipe, trigger, row["key"], json_dumps(row["payload"]), "pending", 0,
          row["run_id"], when, when) for n, row in enumerate(fresh, start=1)])
    return {by_stored[row["key"]][0]: top + n for n, row in enumerate(fresh, start=1)}


def _event_fields(row: Any) -> dict[str, Any]:
    return {name: row._mapping[name] for name in EventRecord.__dataclass_fields__}


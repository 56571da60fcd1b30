"""The run ledger: runs, events, step results and idempotency keys.

Delivery model: an event is *claimed* (its row inserted as ``pending`` with the claiming run's
id, see :mod:`splice.store.queue`) before any step runs; each step's result is saved per
``(event, step_index, item_index)`` so a retry skips what already succeeded; a write action
reserves its idempotency key *before* the request and completes it after, so a crash in
between resends with the same key instead of writing twice.

A run records into :mod:`splice.store.journal`, which writes here in groups
(``write_group``): event statuses (with the retry schedule and error class of failed ones,
and the dead letters of events given up on), step results and idempotency keys in ONE
transaction. A key done before any row of it was written (the common case: an event this run
claimed and finished within one group) gets no ``idempotency_keys`` row: its succeeded step
result holds it. The table keeps reserved keys and the keys of events resumed or retried.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..secrets import REDACTOR, redact_headers
from .group_sql import PreparedGroup, key_rows, redact_text, sqlite_group, step_row
from .tables import (
    NO_ITEM,
    RUN_COUNTERS,
    RUN_MODES,
    RUN_STATUSES,
    UTCDateTime,
    dialect_insert,
    events,
    idempotency_keys,
    json_dumps,
    now,
    prebuilt,
    runs,
    step_results,
    storage_key,
)

__all__ = [
    "DeadLetter",
    "EventRecord",
    "LedgerMixin",
    "MISSING_CHECKPOINT",
    "PendingEvent",
    "redact_step",
    "RunRecord",
    "StepResult",
]

@dataclass(frozen=True)
class EventRecord:
    """One trigger event (a record that fired once for its key+version)."""

    id: int
    recipe: str
    trigger: str
    key: str
    payload: Any
    status: str
    attempts: int
    last_error: str | None
    run_id: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    error_class: str | None = None


@dataclass(frozen=True)
class StepResult:
    """The outcome of one step (or one for_each item of a step) for one event."""

    id: int
    event_id: int
    run_id: str | None
    step_index: int
    item_index: int
    step_id: str | None
    status: str
    idempotency_key: str | None
    request: Any
    output: Any
    error: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RunRecord:
    """One ``splice run``; ``get_run`` also fills ``events`` and ``step_results``."""

    id: str
    recipe: str
    recipe_path: str | None
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    events_seen: int
    events_new: int
    events_failed: int
    requests_made: int
    error: str | None
    events: tuple[EventRecord, ...] = ()
    step_results: tuple[StepResult, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, None while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class _Missing:
    def __repr__(self) -> str:
        return "MISSING_CHECKPOINT"


MISSING_CHECKPOINT: Any = _Missing()  # write_group: leave the trigger's checkpoint alone


@dataclass(eq=False)
class PendingEvent:
    """An event as a run holds it until its group is written (``splice.journal``): the
    event row's status plus the step results and idempotency keys written with it."""

    key: str
    payload: Any
    run_id: str | None
    id: int | None = None  # None until the group that inserts it is written
    status: str = "pending"
    error: str | None = None
    attempts: int = 0  # to add to the row's count (one per succeeded or failed outcome)
    changed: bool = True
    steps: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    unlogged: set[Any] = field(default_factory=set)  # steps and keys not in the run log yet
    payload_json: str | None = None  # the payload's JSON text, once serialized
    next_attempt_at: datetime | None = None  # failed: when a later run retries it
    error_class: str | None = None  # failed or dead: see splice.run.retry
    fresh: bool = False  # claimed new by this run: no step results to look up
    prior_attempts: int = 0  # attempts the row had when this run claimed it
    keyed: bool = True  # the ledger may hold rows of its keys (False: a fresh claim's
    #                     keys were never written, so a key done now needs no row)

    def ledger_keys(self) -> list[tuple[str, int, int, str]]:
        """The idempotency-key rows to write: ``(key, step, item, status)``. A key done
        before any row of it was written is left out: its succeeded step result holds it
        (``LedgerMixin.event_idempotency_keys``), one random-order index insert less."""
        return [(key, step, item, status) for key, (step, item, status) in self.keys.items()
                if self.keyed or status != "done"]

    def written(self) -> None:
        """Its group was committed: nothing is pending any more."""
        if any(status != "done" for _step, _item, status in self.keys.values()):
            self.keyed = True
        self.steps.clear()
        self.keys.clear()
        self.unlogged.clear()
        self.changed = False
        self.attempts = 0


@dataclass(frozen=True)
class DeadLetter:
    """An event the engine gave up on."""

    event_id: int
    recipe: str
    reason: str | None
    attempts: int
    created_at: datetime
    error_class: str | None = None
    key: str | None = None       # the event's key (record id and version)
    trigger: str | None = None


def _upsert_step(conn: Connection) -> Any:
    unique = ("event_id", "step_index", "item_index")
    stmt = dialect_insert(conn, step_results)
    return stmt.on_conflict_do_update(
        index_elements=list(unique),
        set_={c.name: stmt.excluded[c.name] for c in step_results.columns
              if c.name not in unique and c.name != "id"})


def _upsert_key(conn: Connection) -> Any:
    """Insert or update an idempotency key; a key already ``done`` stays done."""
    stmt = dialect_insert(conn, idempotency_keys)
    done = idempotency_keys.c.status == "done"
    return stmt.on_conflict_do_update(index_elements=["key"], set_={
        "status": sa.case((done, idempotency_keys.c.status), else_=stmt.excluded.status),
        "completed_at": sa.case((done, idempotency_keys.c.completed_at),
                                else_=stmt.excluded.completed_at)})


def _event_status_stmt(conn: Connection) -> Any:
    return prebuilt(conn, "event_status", lambda c: events.update().where(
        events.c.id == sa.bindparam("b_id")).values(
            status=sa.bindparam("b_status"), last_error=sa.bindparam("b_error"),
            updated_at=sa.bindparam("b_now"),
            attempts=events.c.attempts + sa.bindparam("b_inc"),
            next_attempt_at=sa.bindparam("b_next", type_=UTCDateTime),
            error_class=sa.bindparam("b_class", type_=sa.String),
            run_id=sa.func.coalesce(sa.bindparam("b_run", type_=sa.String), events.c.run_id)))


def redact_step(values: Mapping[str, Any]) -> dict[str, Any]:
    """Step-result values with request headers, known secrets and error texts redacted;
    ``request_json`` and ``output_json`` hold their JSON text (serialized once: the text is
    what is searched for secrets, logged and stored)."""
    clean = dict(values)
    request = clean.get("request")
    if isinstance(request, Mapping) and isinstance(request.get("headers"), Mapping):
        clean["request"] = {**request, "headers": redact_headers(request["headers"])}
    for name in ("request", "output"):
        value = clean.get(name)
        text = None if value is None else json_dumps(value)
        if text is not None and not REDACTOR.absent_from_json(text):
            clean[name] = value = REDACTOR.redact_json(value)
            text = json_dumps(value)
        clean[f"{name}_json"] = text
    if clean.get("error") is not None:
        clean["error"] = redact_text(clean["error"])
    return clean


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


# --------------------------------------------------------------------------- methods


class LedgerMixin:
    """Ledger methods of ``splice.state.Store`` (which provides the transactions)."""

    engine: Engine

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def batch(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _add_seen(self, conn: Connection, recipe: str, trigger: str, keys: Any) -> int:
        raise NotImplementedError

    def _upsert_trigger(self, conn: Connection, recipe: str, trigger: str,
                        **values: Any) -> None:
        raise NotImplementedError

    def _write_dead_letters(self, conn: Connection, event_ids: list[int],
                            stamp: datetime) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- runs

    def start_run(self, recipe: str, *, mode: str = "once", recipe_path: str | None = None,
                  run_id: str | None = None) -> str:
        """Record a new run (status ``running``) and return its id."""
        run_id = run_id or str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(runs.insert().values(
                id=run_id, recipe=recipe, recipe_path=recipe_path,
                mode=_choice(mode, RUN_MODES, "run mode"), status="running", started_at=now(),
                **dict.fromkeys(RUN_COUNTERS, 0)))
        return run_id

    def finish_run(self, run_id: str, *, status: str | None = None, error: str | None = None,
                   **counts: int) -> None:
        """Close a run with its final counters. Default status: failed if any event failed."""
        for name in counts:
            _choice(name, RUN_COUNTERS, "counter")
        if status is None:
            status = "failed" if error or counts.get("events_failed") else "succeeded"
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                status=_choice(status, RUN_STATUSES, "run status"), finished_at=now(),
                error=redact_text(error), **{k: int(v) for k, v in counts.items()}))

    def list_runs(self, limit: int = 20, recipe: str | None = None) -> list[RunRecord]:
        """The most recent runs first."""
        query = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if recipe is not None:
            query = query.where(runs.c.recipe == recipe)
        with self._read() as conn:
            return [RunRecord(**row._mapping) for row in conn.execute(query)]

    def get_run(self, run_id: str) -> RunRecord | None:
        """One run with the events and step results it touched; a unique id prefix works too."""
        with self._read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
            if row is None and len(run_id) >= 4:
                like = run_id.replace("%", "").replace("_", "") + "%"
                found = conn.execute(sa.select(runs).where(runs.c.id.like(like)).limit(2)).all()
                row = found[0] if len(found) == 1 else None
            if row is None:
                return None
            rid = row.id
            touched = sa.select(step_results.c.event_id).where(step_results.c.run_id == rid)
            event_rows = conn.execute(sa.select(events).where(
                sa.or_(events.c.run_id == rid, events.c.id.in_(touched))).order_by(events.c.id))
            step_rows = conn.execute(sa.select(step_results).where(step_results.c.run_id == rid)
                                     .order_by(step_results.c.event_id, step_results.c.step_index,
                                               step_results.c.item_index))
            return RunRecord(**row._mapping,
                             events=tuple(EventRecord(**r._mapping) for r in event_rows),
                             step_results=tuple(StepResult(**r._mapping) for r in step_rows))

    # ----------------------------------------------------------------- events

    def prepare_group(self, group: list[PendingEvent]) -> PreparedGroup | None:
        """The statements of ``write_group`` for ``group``, built now (on the thread that
        recorded it: a committer thread then only waits on SQLite, which releases the GIL,
        instead of holding the GIL the sending thread needs); None where they are built in
        the transaction (PostgreSQL, events without a row yet)."""
        if self.engine.dialect.name != "sqlite" or any(p.id is None for p in group):
            return None
        stamp = now()
        return PreparedGroup(stamp, sqlite_group(group, {id(p): p.id for p in group},
                                                  stamp, {}))

    def write_group(self, recipe: str, trigger: str, group: list[PendingEvent],
                    checkpoint: Any = MISSING_CHECKPOINT,
                    prepared: PreparedGroup | None = None) -> None:
        """Write what a run recorded for ``group`` (and the trigger's page ``checkpoint``) in
        ONE transaction: new events with their seen keys, step results, idempotency keys and
        event statuses. Ids of new events are set on them once the commit succeeded.

        This is the run's group commit (see ``splice.journal``): a few statements for the
        whole group instead of several transactions an event. On SQLite they are multi-row
        driver statements built before the write lock is taken, so the transaction holds the
        lock only while SQLite works (the run's next page claim waits for it).
        """
        assigned: dict[int, int] = {}
        sqlite = self.engine.dialect.name == "sqlite"
        prepared = prepared or self.prepare_group(group)  # claimed events: the hot path
        stamp = prepared.stamp if prepared is not None else now()
        with self._write() as conn:
            new = [p for p in group if p.id is None]
            if new:
                assigned = self._insert_events(conn, recipe, trigger, new, stamp)
            ids = {id(p): assigned.get(id(p), p.id) for p in group}
            if sqlite:
                for sql, params in (prepared.statements if prepared is not None else
                                    sqlite_group(group, ids, stamp, assigned)):
                    conn.exec_driver_sql(sql, params)
            else:
                self._write_rows(conn, group, ids, stamp, assigned)
            dead = [i for p in group if p.changed and p.status == "dead"
                    and (i := ids[id(p)]) is not None]
            if dead:
                self._write_dead_letters(conn, dead, stamp)
            if checkpoint is not MISSING_CHECKPOINT:
                self._upsert_trigger(conn, recipe, trigger, checkpoint=checkpoint)
        for p in group:
            if id(p) in assigned:
                p.id = assigned[id(p)]
            p.written()

    def _write_rows(self, conn: Connection, group: list[PendingEvent],
                    ids: dict[int, int | None], stamp: datetime, inserted: dict[int, int]
                    ) -> None:
        """Event statuses, idempotency keys and step results through SQLAlchemy (not SQLite)."""
        changed = [p for p in group if p.changed and id(p) not in inserted]
        if changed:
            conn.execute(_event_status_stmt(conn), [
                {"b_id": ids[id(p)], "b_status": p.status, "b_error": redact_text(p.error),
                 "b_now": stamp, "b_inc": p.attempts, "b_run": p.run_id,
                 "b_next": p.next_attempt_at, "b_class": p.error_class} for p in changed])
        keys = key_rows(group, ids, stamp)
        if keys:
            conn.execute(prebuilt(conn, "upsert_keys", _upsert_key), keys)
        steps = [step_row(ids[id(p)], step, item, values, stamp)
                 for p in group for (step, item), values in p.steps.items()]
        if steps:
            conn.execute(prebuilt(conn, "upsert_step", _upsert_step), steps)

    def _insert_events(self, conn: Connection, recipe: str, trigger: str,
                       new: list[PendingEvent], stamp: datetime) -> dict[int, int]:
        """Insert ``new`` events (with their final status) and their seen keys; returns
        ``{id(pending): event id}``. An event some other process recorded meanwhile keeps its
        row and gets this run's status as an update.

        Runs claim their events before sending (``splice.store.queue``), so this only inserts
        what a journal recorded without a claim (a run log written by an older splice)."""
        by_key = {storage_key(p.key): p for p in new}
        rows = [{"recipe": recipe, "trigger": trigger, "key": key,
                 "payload": p.payload, "status": p.status, "attempts": p.attempts,
                 "last_error": redact_text(p.error), "run_id": p.run_id,
                 "created_at": stamp, "updated_at": stamp,
                 "next_attempt_at": p.next_attempt_at, "error_class": p.error_class}
                for key, p in by_key.items()]
        # ON CONFLICT DO NOTHING: a row another process inserted meanwhile is not an error
        # (a read-then-insert raised IntegrityError on PostgreSQL).
        inserted: dict[str, int] = {}
        stmt = prebuilt(conn, "insert_events_returning", lambda c: dialect_insert(c, events)
                        .on_conflict_do_nothing(index_elements=["recipe", "trigger", "key"])
                        .returning(events.c.key, events.c.id))
        for start in range(0, len(rows), 500):
            inserted.update(conn.execute(stmt, rows[start:start + 500]).all())
        assigned = {id(by_key[key]): int(event_id) for key, event_id in inserted.items()}
        others = [key for key in by_key if key not in inserted]
        if others:  # rare: recorded by another process; treat as a status update
            for start in range(0, len(others), 500):
                found = conn.execute(prebuilt(conn, "event_ids", lambda c: sa.select(
                    events.c.key, events.c.id).where(
                    events.c.recipe == sa.bindparam("b_recipe"),
                    events.c.trigger == sa.bindparam("b_trigger"),
                    events.c.key.in_(sa.bindparam("b_keys", expanding=True)))),
                    {"b_recipe": recipe, "b_trigger": trigger,
                     "b_keys": others[start:start + 500]}).all()
                for key, event_id in found:
                    by_key[key].id = event_id
        self._add_seen(conn, recipe, trigger, [p.key for p in new])
        return assigned

    def get_event(self, event_id: int) -> EventRecord | None:
        """One event by id."""
        with self._read() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
        return None if row is None else EventRecord(**row._mapping)

    def _events_with(self, status: str, recipe: str | None, limit: int | None) -> list[EventRecord]:
        query = sa.select(events).where(events.c.status == status).order_by(events.c.id)
        if recipe is not None:
            query = query.where(events.c.recipe == recipe)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [EventRecord(**row._mapping) for row in conn.execute(query)]

    def failed_events(self, recipe: str | None = None, limit: int | None = None
                      ) -> list[EventRecord]:
        """Failed (not dead-lettered) events, oldest first: what a retry replays."""
        return self._events_with("failed", recipe, limit)

    def pending_events(self, recipe: str | None = None, limit: int | None = None
                       ) -> list[EventRecord]:
        """Events recorded but not processed yet (e.g. a webhook inbox, or a crashed run)."""
        return self._events_with("pending", recipe, limit)

    # ----------------------------------------------------------------- step results

    def get_step_result(self, event_id: int, step_index: int, item_index: int = NO_ITEM
                        ) -> StepResult | None:
        """The saved result of one step (and for_each item) of an event."""
        with self._read() as conn:
            row = conn.execute(prebuilt(conn, "get_step", lambda c: sa.select(step_results).where(
                step_results.c.event_id == sa.bindparam("b_event"),
                step_results.c.step_index == sa.bindparam("b_step"),
                step_results.c.item_index == sa.bindparam("b_item"))),
                {"b_event": event_id, "b_step": step_index, "b_item": item_index}).first()
        return None if row is None else StepResult(**row._mapping)

    def event_idempotency_keys(self, event_id: int) -> dict[str, tuple[int, int, str]]:
        """The idempotency keys an event's steps were sent with: ``{key: (step, item,
        status)}``; the key of a succeeded step result is done."""
        with self._read() as conn:
            rows = conn.execute(sa.select(
                idempotency_keys.c.key, idempotency_keys.c.step_index,
                idempotency_keys.c.item_index, idempotency_keys.c.status).where(
                idempotency_keys.c.event_id == event_id)).all()
            done = conn.execute(sa.select(
                step_results.c.idempotency_key, step_results.c.step_index,
                step_results.c.item_index).where(
                step_results.c.event_id == event_id, step_results.c.status == "succeeded",
                step_results.c.idempotency_key.is_not(None))).all()
        out = {r.key: (r.step_index, r.item_index, r.status) for r in rows}
        out.update((r.idempotency_key, (r.step_index, r.item_index, "done")) for r in done)
        return out

    def idempotency_key_status(self, key: str) -> str | None:
        """``reserved``, ``done`` or None for an unknown key (a diagnostic: a key done
        without a row of its own is found by scanning the step results)."""
        with self._read() as conn:
            status = conn.execute(sa.select(idempotency_keys.c.status)
                                  .where(idempotency_keys.c.key == key)).scalar()
            if status != "done" and conn.execute(sa.select(step_results.c.id).where(
                    step_results.c.idempotency_key == key,
                    step_results.c.status == "succeeded").limit(1)).first() is not None:
                return "done"
        return status


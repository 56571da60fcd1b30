"""Read-only views of the ledger for the JSON API and the dashboard.

Events by recipe and status, an event with its step results, runs filtered and paged by
keyset (``(started_at, id)``: a page costs the same at run 10 as at run 10,000), dead letters
paged, what recent polls of a recipe cost (the budget planner's measurements) and the
requests a recipe's step sent (the charts' data). Secrets were redacted when the rows were
written. Every read is bounded by a ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from .ledger import DeadLetter, EventRecord, RunRecord, StepResult
from .tables import (
    EVENT_STATUSES,
    RUN_STATUSES,
    UTCDateTime,
    dead_letters,
    events,
    runs,
    step_results,
)

POLL_MODES = ("once", "watch", "serve")  # the run modes that poll a trigger


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


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first; ``after`` is the keyset of the next page (None: last)."""

    runs: list[RunRecord]
    after: str | None


def _keyset(text: str | None) -> tuple[datetime, str] | None:
    """``after`` as ``<started_at ISO>|<run id>``; None when absent or malformed."""
    if not text or "|" not in text:
        return None
    stamp, _, run_id = text.partition("|")
    try:
        return datetime.fromisoformat(stamp), run_id
    except ValueError:
        return None


def runs_page(store: Any, *, recipe: str | None = None, status: str | None = None,
              limit: int = 50, after: str | None = None) -> RunPage:
    """Runs newest first, filtered by recipe id and status, ``limit`` a page.

    Keyset paging on ``(started_at, id)`` over the ``runs(started_at)`` and
    ``runs(recipe, started_at)`` indexes: no OFFSET, so every page is as fast as the first.
    """
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit + 1)
    if recipe is not None:
        query = query.where(runs.c.recipe == recipe)
    if status is not None:
        query = query.where(runs.c.status == status)
    key = _keyset(after)
    if key is not None:
        stamp = sa.bindparam("k_stamp", key[0], type_=UTCDateTime)
        query = query.where(sa.or_(runs.c.started_at < stamp,
                                   sa.and_(runs.c.started_at == stamp, runs.c.id < key[1])))
    with store._read() as conn:
        found = [RunRecord(**row._mapping) for row in conn.execute(query)]
    more = len(found) > limit
    found = found[:limit]
    last = found[-1] if more and found else None
    return RunPage(found, f"{last.started_at.isoformat()}|{last.id}" if last else None)


LIVE_HORIZON = timedelta(hours=1)  # a run older than this is not followed live


def runs_since(store: Any, since: datetime, limit: int = 200) -> list[RunRecord]:
    """Runs started or finished at or after ``since``, or still going (the live feed's query
    each tick). Only runs started within :data:`LIVE_HORIZON` before ``since`` are looked at,
    so the query reads a range of the ``runs(started_at)`` index, not the whole table."""
    stamp = sa.bindparam("since", since, type_=UTCDateTime)
    query = sa.select(runs).where(
        runs.c.started_at >= sa.bindparam("horizon", since - LIVE_HORIZON, type_=UTCDateTime),
        sa.or_(runs.c.started_at >= stamp, runs.c.finished_at >= stamp,
               runs.c.status == "running")).order_by(runs.c.started_at.desc()).limit(limit)
    with store._read() as conn:
        return [RunRecord(**row._mapping) for row in conn.execute(query)]


def events_since(store: Any, since: datetime, run_ids: list[str],
                 limit: int = 200) -> list[EventRecord]:
    """Events of ``run_ids`` created or changed at or after ``since``, newest change first
    (the live feed: an event changes within the run that claims it; ``events(run_id)``)."""
    if not run_ids:
        return []
    query = sa.select(events).where(
        events.c.run_id.in_(run_ids),
        events.c.updated_at >= sa.bindparam("since", since, type_=UTCDateTime)).order_by(
        events.c.updated_at.desc()).limit(limit)
    with store._read() as conn:
        return [EventRecord(**row._mapping) for row in conn.execute(query)]


def run_events(store: Any, run_id: str) -> tuple[list[EventRecord], dict[int, list[StepResult]]]:
    """The events a run claimed or touched and their step results, grouped by event."""
    record = store.get_run(run_id)
    if record is None:
        return [], {}
    steps: dict[int, list[StepResult]] = {}
    for s in record.step_results:
        steps.setdefault(s.event_id, []).append(s)
    return list(record.events), steps


def dead_letter_page(store: Any, *, recipe: str | None = None, limit: int = 50,
                     before: int | None = None) -> list[DeadLetter]:
    """Dead letters newest first (by event id), ``before``: event ids below it (paging)."""
    query = sa.select(dead_letters, events.c.key, events.c.trigger).join(
        events, events.c.id == dead_letters.c.event_id).order_by(
        dead_letters.c.event_id.desc()).limit(limit)
    if recipe is not None:
        query = query.where(dead_letters.c.recipe == recipe)
    if before is not None:
        query = query.where(dead_letters.c.event_id < before)
    with store._read() as conn:
        return [DeadLetter(**row._mapping) for row in conn.execute(query)]


def dead_letter_of(store: Any, event_id: int) -> DeadLetter | None:
    found = store.dead_letters(ids=[event_id])
    return found[0] if found else None


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class PollCost:
    """What one finished poll of a recipe cost: all requests, the events it brought, and the
    step results it wrote per step index (skipped steps not counted: nothing was sent)."""

    run_id: str
    requests: int
    events_new: int
    events_seen: int
    step_calls: dict[int, int]
    events_stepped: int  # events with at least one step result in this run


def poll_costs(store: Any, recipe: str, limit: int = 20) -> list[PollCost]:
    """The last ``limit`` finished polls of ``recipe`` (its name: what runs record) with
    their costs, newest first."""
    query = sa.select(runs.c.id, runs.c.requests_made, runs.c.events_new,
                      runs.c.events_seen).where(
        runs.c.recipe == recipe, runs.c.mode.in_(POLL_MODES),
        runs.c.status != "running").order_by(runs.c.started_at.desc()).limit(limit)
    with store._read() as conn:
        found = conn.execute(query).all()
        ids = [r.id for r in found]
        calls: dict[str, dict[int, int]] = {}
        stepped: dict[str, int] = {}
        if ids:
            rows = conn.execute(sa.select(
                step_results.c.run_id, step_results.c.step_index, sa.func.count(),
                sa.func.count(sa.distinct(step_results.c.event_id))).where(
                step_results.c.run_id.in_(ids), step_results.c.status != "skipped").group_by(
                step_results.c.run_id, step_results.c.step_index)).all()
            for run_id, index, count, distinct in rows:
                calls.setdefault(run_id, {})[int(index)] = int(count)
                stepped[run_id] = max(stepped.get(run_id, 0), int(distinct))
    return [PollCost(r.id, int(r.requests_made), int(r.events_new), int(r.events_seen),
                     calls.get(r.id, {}), stepped.get(r.id, 0)) for r in found]


@dataclass(frozen=True)
class SentStep:
    """A succeeded step's request body as stored (redacted), for charts; ``record``: the
    event's trigger record when asked for."""

    event_id: int
    item_index: int
    body: Any
    finished_at: datetime | None
    record: Any = None


def _json(value: Any) -> Any:
    """A JSON column read as its raw text (SQLite) or as the driver decoded it (PostgreSQL)."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


def sent_steps(store: Any, recipe: str, step_index: int, limit: int = 500,
               with_record: bool = False) -> list[SentStep]:
    """The request bodies (``json``, else ``form``) the step ``step_index`` of ``recipe`` (its
    id) sent successfully, newest events first, at most ``limit`` results.

    JSON columns are read as text and decoded with orjson (several times faster than the
    column type's decoding: a chart reads hundreds of them)."""
    newest = sa.select(events.c.id).where(events.c.recipe == recipe).order_by(
        events.c.id.desc()).limit(limit).subquery()
    query = sa.select(step_results.c.event_id, step_results.c.item_index,
                      sa.type_coerce(step_results.c.request, sa.Text).label("request"),
                      step_results.c.finished_at).where(
        step_results.c.event_id.in_(sa.select(newest.c.id)),
        step_results.c.step_index == step_index,
        step_results.c.status == "succeeded").order_by(
        step_results.c.event_id.desc(), step_results.c.item_index).limit(limit)
    with store._read() as conn:
        rows = conn.execute(query).all()
        records: dict[int, Any] = {}
        if with_record and rows:  # one trigger record per event, not one per step result
            ids = sorted({int(r.event_id) for r in rows})
            records = {int(i): _json(p) for i, p in conn.execute(sa.select(
                events.c.id, sa.type_coerce(events.c.payload, sa.Text)).where(
                events.c.id.in_(ids)))}
    out = []
    for row in rows:
        request = _json(row.request)
        request = request if isinstance(request, dict) else {}
        body = request.get("json", request.get("form"))
        out.append(SentStep(int(row.event_id), int(row.item_index), body, row.finished_at,
                            records.get(int(row.event_id))))
    return out

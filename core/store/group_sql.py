"""A group commit's rows as SQLite statements (``LedgerMixin.write_group``'s hot path).

Rows are converted the way SQLAlchemy's bind processing stores them in SQLite (JSON as text,
UTC timestamps as naive text) and written with multi-row driver statements
(:mod:`splice.store.bulk`); :class:`PreparedGroup` lets the thread that recorded a group
build them, so the committer thread only waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..secrets import REDACTOR
from .bulk import UPDATE_FROM, row_statements
from .tables import (
    Encoded,
    JSONColumn,
    UTCDateTime,
    idempotency_keys,
    sqlite_json,
    sqlite_time,
    step_results,
)


def redact_text(text: str | None) -> str | None:
    return None if text is None else REDACTOR.redact(str(text))


def step_row(event_id: int | None, step_index: int, item_index: int,
              values: Mapping[str, Any], stamp: datetime, encoded: bool = False
              ) -> dict[str, Any]:
    """A step_results row from values already passed through ``redact_step``; ``encoded``:
    JSON columns as their ``Encoded`` text (SQLite)."""
    request, output = values.get("request"), values.get("output")
    if encoded:
        text = values.get("request_json")
        request = Encoded(text) if text is not None else request
        text = values.get("output_json")
        output = Encoded(text) if text is not None else output
    return {
        "event_id": event_id, "step_index": step_index, "item_index": item_index,
        "step_id": values.get("step_id"), "run_id": values.get("run_id"),
        "status": values["status"], "idempotency_key": values.get("idempotency_key"),
        "request": request, "output": output,
        "error": values.get("error"), "attempts": values.get("attempts", 1),
        "started_at": values.get("started_at"), "finished_at": values.get("finished_at") or stamp,
    }


def key_rows(group: list[Any], ids: dict[int, int | None], stamp: datetime
             ) -> list[dict[str, Any]]:
    """The idempotency_keys rows of ``group`` (``ledger.PendingEvent.ledger_keys``)."""
    return [{"key": key, "event_id": ids[id(p)], "step_index": step, "item_index": item,
             "status": status, "created_at": stamp,
             "completed_at": stamp if status == "done" else None}
            for p in group for key, step, item, status in p.ledger_keys()]


def _quoted(name: str) -> str:
    return f'"{name}"'


def _sqlite_rows(table: sa.Table, names: list[str], rows: list[dict[str, Any]]
                 ) -> list[tuple[Any, ...]]:
    """Rows as the SQLite columns store them (what SQLAlchemy's bind processing does)."""
    times: dict[datetime, str | None] = {}  # a group's rows share one timestamp

    def when(value: datetime | None) -> str | None:
        if value is None:
            return None
        if value not in times:
            times[value] = sqlite_time(value)
        return times[value]

    converters = [when if isinstance(table.c[n].type, UTCDateTime) else
                  sqlite_json if isinstance(table.c[n].type, (sa.JSON, JSONColumn)) else None
                  for n in names]
    special = [(i, c) for i, c in enumerate(converters) if c is not None]
    out = []
    for row in rows:
        values = [row[n] for n in names]
        for i, convert in special:
            values[i] = convert(values[i])
        out.append(tuple(values))
    return out


Statements = list[tuple[str, Any]]  # (SQL, parameters) for ``exec_driver_sql``


@dataclass(frozen=True)
class PreparedGroup:
    """A group commit's SQLite statements, built ahead (``LedgerMixin.prepare_group``)."""

    stamp: datetime
    statements: Statements


def sqlite_group(group: list[Any], ids: dict[int, int | None], stamp: datetime,
                  inserted: dict[int, int]) -> Statements:
    """A group commit's statements on SQLite (``group``: ``ledger.PendingEvent`` objects),
    built before the write lock is taken: event statuses, idempotency keys, step results
    (events just ``inserted`` have their status)."""
    when = sqlite_time(stamp)
    statuses = [(ids[id(p)], p.status, redact_text(p.error), p.attempts,
                 sqlite_time(p.next_attempt_at), p.error_class,
                 None if p.fresh else p.run_id)  # a fresh claim's row holds its run already
                for p in group if p.changed and id(p) not in inserted]
    keys = key_rows(group, ids, stamp)
    steps = [step_row(ids[id(p)], step, item, values, stamp, True)
             for p in group for (step, item), values in p.steps.items()]
    return [*_status_statements(statuses, when), *_upsert_statements(keys, steps)]


def _upsert_statements(keys: list[dict[str, Any]], steps: list[dict[str, Any]]) -> Statements:
    """``_upsert_key`` and ``_upsert_step`` for SQLite at the driver level."""
    out: Statements = []
    for table, rows, unique, update in (
            (idempotency_keys, keys, ("key",), {
                "status": "CASE WHEN status = 'done' THEN status ELSE excluded.status END",
                "completed_at": "CASE WHEN status = 'done' THEN completed_at "
                                "ELSE excluded.completed_at END"}),
            (step_results, steps, ("event_id", "step_index", "item_index"), None)):
        if not rows:
            continue
        names = list(rows[0])
        sets = update or {n: f"excluded.{_quoted(n)}" for n in names
                          if n not in unique and n != "id"}
        out += row_statements(
            f"INSERT INTO {table.name} ({', '.join(_quoted(n) for n in names)})",
            f"ON CONFLICT ({', '.join(_quoted(n) for n in unique)}) DO UPDATE SET "
            + ", ".join(f"{_quoted(n)} = {expr}" for n, expr in sets.items()),
            _sqlite_rows(table, names, rows))
    return out


def _status_statements(rows: list[tuple[Any, ...]], when: str | None) -> Statements:
    """Event statuses on SQLite: one ``UPDATE ... FROM (VALUES ...)`` per chunk (rows are
    ``(id, status, last_error, attempts added, next_attempt_at, error_class, run_id)``; a
    run_id of None keeps the row's)."""
    if not rows:
        return []
    if not UPDATE_FROM or len({row[0] for row in rows}) < len(rows):
        # SQLite before 3.33, or one event twice (applied in order): a statement a row
        return [("UPDATE events SET status = ?, last_error = ?, updated_at = ?, "
                 "attempts = attempts + ?, next_attempt_at = ?, error_class = ?, "
                 "run_id = coalesce(?, run_id) WHERE id = ?",
                 [(*row[1:3], when, *row[3:], row[0]) for row in rows])]
    update = ("UPDATE events SET status = v.column2, last_error = v.column3, updated_at = ?1, "
              "attempts = events.attempts + v.column4, next_attempt_at = v.column5, "
              "error_class = v.column6")
    same_run = [row[:6] for row in rows if row[6] is None]  # run_id not in SET: its index
    other = [row for row in rows if row[6] is not None]     # is left alone (~25% cheaper)
    return [*row_statements(f"{update} FROM (", ") AS v WHERE events.id = v.column1",
                            same_run, first=(when,)),
            *row_statements(f"{update}, run_id = v.column7 FROM (",
                            ") AS v WHERE events.id = v.column1", other, first=(when,))]

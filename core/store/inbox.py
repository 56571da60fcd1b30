"""The durable webhook inbox, and the serve processes that share it.

A verified delivery is inserted here, in a committed transaction, *before* ``splice serve``
answers 2xx; processing is asynchronous. ``(connection, delivery_id)`` is unique, so a
delivery retried by the sender (same id) is recognised and not stored again. Rows go
``new`` -> ``done``; a serve process claims ``new`` rows by writing its instance id in
``owner`` (atomically: SQLite's write lock, PostgreSQL's ``FOR UPDATE SKIP LOCKED``). A row
whose owner is no longer alive (its heartbeat in ``serve_instances`` went stale, or it was
removed as dead) is claimed again: a crash after the 2xx loses nothing. Done rows are kept for
``retention`` (delivery ids are remembered that long) and then pruned.

With a broker (``SPLICE_BROKER_URL``) rows are not claimed by serve: :func:`to_enqueue` hands
out the ids of new rows never sent to the broker, or sent longer than a timeout ago and still
not done (``enqueued_at``), so a lost broker message is sent again; a worker finishes the row.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import RowId, UTCDateTime, dialect_insert, metadata, now, sqlite_time

INBOX_STATUSES = ("new", "done")
HEARTBEAT_STALE = timedelta(seconds=15)

inbox = sa.Table(
    "inbox", metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("delivery_id", sa.String, nullable=False),
    sa.Column("event_type", sa.String),
    sa.Column("body", sa.Text, nullable=False),   # the raw JSON text as delivered
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(64)),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("processed_at", UTCDateTime),
    sa.Column("outcome", sa.Text),                 # what processing made of it (no payload)
    sa.Column("enqueued_at", UTCDateTime),         # last sent to the broker (worker mode)
    sa.UniqueConstraint("connection", "delivery_id"),
    sa.Index(None, "status", "id"),
)

serve_instances = sa.Table(
    "serve_instances", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("url", sa.String),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)


def create_tables(conn: Connection) -> None:
    """Part of the serve migration: the inbox and the serve instances."""
    inbox.create(conn, checkfirst=True)
    serve_instances.create(conn, checkfirst=True)


@dataclass(frozen=True)
class Delivery:
    """A verified delivery to store; ``outcome`` set: nothing will process it (no enabled
    recipe listens), so it is stored ``done`` (its id still counts for duplicates)."""

    connection: str
    delivery_id: str
    event_type: str | None
    body: str
    outcome: str | None = None

    @property
    def status(self) -> str:
        return "new" if self.outcome is None else "done"


@dataclass(frozen=True)
class InboxRow:
    id: int
    connection: str
    delivery_id: str
    event_type: str | None
    body: str
    received_at: datetime


# --------------------------------------------------------------------------- ingest


def store_deliveries(store: Any, deliveries: list[Delivery]) -> list[bool]:
    """Insert deliveries in ONE transaction; per delivery: True when new (to process, or
    stored done), False for a duplicate id. Committed when this returns (the caller may then
    answer 2xx)."""
    stamp = now()
    out: list[bool] = []
    with store._write() as conn:
        stmt = dialect_insert(conn, inbox).on_conflict_do_nothing(
            index_elements=["connection", "delivery_id"]).returning(inbox.c.id)
        for d in deliveries:
            done = conn.execute(stmt, {"connection": d.connection, "delivery_id": d.delivery_id,
                                       "event_type": d.event_type, "body": d.body,
                                       "status": d.status, "outcome": d.outcome,
                                       "received_at": stamp,
                                       "processed_at": None if d.outcome is None else stamp})
            out.append(done.first() is not None)  # a row back: inserted (rowcount is -1 on PG)
    return out


class DeliveryWriter:
    """``store_deliveries`` for one writing thread, on a connection it keeps open.

    On a SQLite file the inserts go straight through the driver (``BEGIN IMMEDIATE``, one
    ``INSERT ... ON CONFLICT DO NOTHING`` a delivery, ``COMMIT``): a transaction through the
    engine costs more than the deliveries in it. Other databases use :func:`store_deliveries`.
    Use it from one thread only.
    """

    _SQL = ("INSERT INTO inbox (connection, delivery_id, event_type, body, status, outcome, "
            "received_at, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (connection, delivery_id) DO NOTHING")

    def __init__(self, store: Any) -> None:
        self.store = store
        self._raw: Any = None
        self._direct = store.engine.dialect.name == "sqlite" and not store.single_connection

    def write(self, deliveries: list[Delivery]) -> list[bool]:
        if not self._direct:
            return store_deliveries(self.store, deliveries)
        if self._raw is None:
            self._raw = self.store.engine.raw_connection()
            # WAL checkpoints (an fsync) run on the other connections' commits and on
            # ``checkpoint``, never inside an acknowledgement
            self._raw.cursor().execute("PRAGMA wal_autocheckpoint = 0")
        cursor = self._raw.cursor()
        stamp = sqlite_time(now())
        try:
            with self.store.write_gate():
                cursor.execute("BEGIN IMMEDIATE")
                out = []
                for d in deliveries:
                    cursor.execute(self._SQL, (d.connection, d.delivery_id, d.event_type,
                                               d.body, d.status, d.outcome, stamp,
                                               None if d.outcome is None else stamp))
                    out.append(cursor.rowcount == 1)
                cursor.execute("COMMIT")
            return out
        except BaseException:
            try:
                cursor.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - not in a transaction any more
                pass
            self.close()  # a fresh connection next time
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass


def checkpoint(store: Any) -> None:
    """Copy SQLite's write-ahead log into the database file (``PASSIVE``: never waits)."""
    if store.engine.dialect.name == "sqlite" and not store.single_connection:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def depth(store: Any) -> int:
    """How many deliveries wait to be processed."""
    with store._read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbox)
                                .where(inbox.c.status == "new")).scalar_one())


# --------------------------------------------------------------------------- processing


def claim(store: Any, owner: str, limit: int = 200) -> list[InboxRow]:
    """Claim up to ``limit`` new rows nobody alive holds, oldest first."""
    cutoff = now() - HEARTBEAT_STALE
    alive = sa.select(serve_instances.c.id).where(serve_instances.c.heartbeat_at > cutoff)
    free = sa.or_(inbox.c.owner.is_(None), inbox.c.owner.not_in(alive))
    with store._write() as conn:
        query = sa.select(inbox.c.id).where(inbox.c.status == "new", free) \
            .order_by(inbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(conn.execute(query).scalars())
        if not ids:
            return []
        conn.execute(inbox.update().where(inbox.c.id.in_(ids)).values(owner=owner))
        rows = conn.execute(sa.select(inbox.c.id, inbox.c.connection, inbox.c.delivery_id,
                                      inbox.c.event_type, inbox.c.body, inbox.c.received_at)
                            .where(inbox.c.id.in_(ids)).order_by(inbox.c.id)).all()
    return [InboxRow(**r._mapping) for r in rows]


def to_enqueue(store: Any, stale: timedelta, limit: int = 500) -> tuple[list[int], int]:
    """Ids of new rows to send to the broker: never sent, or sent more than ``stale`` ago
    and still not done; their ``enqueued_at`` is set now (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL: two serve processes do not both take a row). Returns (ids, how many of them
    were sent before: the reconciler's re-sends)."""
    stamp = now()
    with store._write() as conn:
        query = sa.select(inbox.c.id, inbox.c.enqueued_at).where(
            inbox.c.status == "new", sa.or_(inbox.c.enqueued_at.is_(None),
                                            inbox.c.enqueued_at < stamp - stale)
        ).order_by(inbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        ids = [int(r.id) for r in rows]
        if ids:
            conn.execute(inbox.update().where(inbox.c.id.in_(ids)).values(enqueued_at=stamp))
    return ids, sum(1 for r in rows if r.enqueued_at is not None)


def unqueue(store: Any, ids: list[int]) -> None:
    """Rows the broker did not take: sent again on the next turn, not after the timeout."""
    if ids:
        with store._write() as conn:
            conn.execute(inbox.update().where(inbox.c.id.in_(ids), inbox.c.status == "new")
                         .values(enqueued_at=None))


def new_rows(store: Any, ids: list[int]) -> list[InboxRow]:
    """The rows of ``ids`` still ``new`` (a worker's: done ones need nothing more)."""
    if not ids:
        return []
    with store._read() as conn:
        rows = conn.execute(sa.select(inbox.c.id, inbox.c.connection, inbox.c.delivery_id,
                                      inbox.c.event_type, inbox.c.body, inbox.c.received_at)
                            .where(inbox.c.id.in_(ids), inbox.c.status == "new")
                            .order_by(inbox.c.id)).all()
    return [InboxRow(**r._mapping) for r in rows]


def finish(store: Any, outcomes: dict[int, str]) -> None:
    """Mark rows done with a short outcome each (``event 12``, ``duplicate key`` ...)."""
    if not outcomes:
        return
    stamp = now()
    with store._write() as conn:
        conn.execute(inbox.update().where(inbox.c.id == sa.bindparam("b_id")).values(
            status="done", processed_at=stamp, outcome=sa.bindparam("b_outcome")),
            [{"b_id": k, "b_outcome": v[:500]} for k, v in outcomes.items()])


def release(store: Any, owner: str, ids: list[int]) -> None:
    """Give claimed rows back (shutting down before processing them)."""
    if ids:
        with store._write() as conn:
            conn.execute(inbox.update().where(inbox.c.id.in_(ids), inbox.c.owner == owner,
                                              inbox.c.status == "new").values(owner=None))


def prune(store: Any, retention: timedelta) -> int:
    """Delete done rows processed longer than ``retention`` ago."""
    with store._write() as conn:
        return int(conn.execute(inbox.delete().where(
            inbox.c.status == "done", inbox.c.processed_at < now() - retention)).rowcount)


def recent(store: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest deliveries without their bodies (for the API)."""
    with store._read() as conn:
        rows = conn.execute(sa.select(inbox.c.id, inbox.c.connection, inbox.c.delivery_id,
                                      inbox.c.event_type, inbox.c.status, inbox.c.received_at,
                                      inbox.c.processed_at, inbox.c.outcome)
                            .order_by(inbox.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


# --------------------------------------------------------------------------- instances


def start_instance(store: Any, instance_id: str, url: str | None) -> None:
    """Register this serve process; same-host instances whose process is gone are removed
    (so the rows they had claimed are free at once)."""
    host = socket.gethostname()
    stamp = now()
    with store._write() as conn:
        for row in conn.execute(sa.select(serve_instances.c.id, serve_instances.c.pid)
                                .where(serve_instances.c.host == host)).all():
            if not _pid_alive(int(row.pid)):
                conn.execute(serve_instances.delete().where(serve_instances.c.id == row.id))
        conn.execute(serve_instances.insert().values(
            id=instance_id, host=host, pid=os.getpid(), url=url, started_at=stamp,
            heartbeat_at=stamp))


def heartbeat(store: Any, instance_id: str) -> None:
    with store._write() as conn:
        conn.execute(serve_instances.update().where(serve_instances.c.id == instance_id)
                     .values(heartbeat_at=now()))


def stop_instance(store: Any, instance_id: str) -> None:
    with store._write() as conn:
        conn.execute(inbox.update().where(inbox.c.owner == instance_id,
                                          inbox.c.status == "new").values(owner=None))
        conn.execute(serve_instances.delete().where(serve_instances.c.id == instance_id))


def live_instances(store: Any) -> list[dict[str, Any]]:
    """Serve processes with a fresh heartbeat, oldest first (the first one leads)."""
    cutoff = now() - HEARTBEAT_STALE
    with store._read() as conn:
        rows = conn.execute(sa.select(serve_instances).where(
            serve_instances.c.heartbeat_at > cutoff).order_by(serve_instances.c.started_at,
                                                              serve_instances.c.id)).all()
    return [dict(r._mapping) for r in rows]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

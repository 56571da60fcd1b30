"""The SQLAlchemy engine of the state database: SQLite settings, or PostgreSQL.

SQLite: WAL, ``synchronous=NORMAL`` (``set_synchronous`` raises it to ``FULL`` around a
transaction that must survive a power cut), the busy timeout of
:func:`splice.store.settings.busy_timeout`, foreign keys on, and ``BEGIN IMMEDIATE`` for write
transactions (execution option ``splice_write``). An in-memory database is one shared
connection. PostgreSQL needs a driver (``pip install 'splice[postgres]'``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ..errors import ConfigError
from ..sqlite import enable_wal
from .faults import describe_location, storage_error
from .settings import busy_timeout
from .tables import json_dumps

__all__ = ["create_engine", "set_synchronous"]

def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout() * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("splice_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(url: str) -> Engine:
    """The engine for a ``sqlite:///`` or ``postgresql://`` URL (a SQLite file's folder is
    created)."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    common: dict[str, Any] = {"json_serializer": json_dumps}
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            engine = sa.create_engine(parsed, poolclass=StaticPool,
                                      connect_args={"check_same_thread": False}, **common)
        else:
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, describe_location(path=folder)) or exc from None
            engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout()},
                                      **common)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        try:
            engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=pool_size(),
                                      **common)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"no PostgreSQL driver installed ({exc.name})",
                              hint="pip install 'psycopg[binary]'") from None
        return engine
    raise ConfigError(f"unsupported database {backend!r} in {parsed.render_as_string()}",
                      hint="use a sqlite:/// or postgresql:// URL")


def pool_size() -> int:
    """PostgreSQL connections kept per process: ``$SPLICE_DATABASE_POOL_SIZE`` or 5 (more
    may open for a moment; ``splice worker`` sets it from its concurrency)."""
    raw = os.environ.get("SPLICE_DATABASE_POOL_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 5


def set_synchronous(conn: Connection, level: str) -> None:
    """Set SQLite's ``synchronous`` on the connection, outside any transaction (``FULL``:
    a commit fsyncs the WAL before it returns). Going back to ``NORMAL`` on a connection
    that broke meanwhile is skipped (the pool discards it)."""
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            f"PRAGMA synchronous = {level}")
    except sqlite3.Error:
        if level == "FULL":
            raise

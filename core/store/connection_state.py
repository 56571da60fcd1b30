"""The connections a recipe is checked against, read straight from the SQLite state file.

``splice validate`` needs every connection and the endpoints disabled per connection, nothing
else; opening the :class:`~splice.store.database.Store` for that imports SQLAlchemy (~150 ms,
a third of the command). :func:`read_connection_state` reads the same rows with the standard
library's ``sqlite3`` and decodes them as the store does (JSON ``config``, timezone-aware UTC
datetimes, the secret left encrypted until ``record.secret`` is read), but only when that is
certain to give what ``Store.open()`` followed by ``list_connections()`` and
``disabled_by_connection()`` would:

* the database is a plain ``sqlite:///PATH`` file (:func:`~splice.store.settings.sqlite_file`)
  that exists, already in WAL mode;
* its ``schema_version`` records exactly the versions of this splice's migrations
  (:data:`~splice.store.versions.SCHEMA_VERSIONS`): nothing to create, upgrade or refuse;
* every row has the types the store's columns decode (a value SQLAlchemy would choke on is
  left for the store to report).

Otherwise it returns None and the caller opens the store, which creates, migrates, refuses or
reports a storage fault exactly as before: a missing, behind, newer, locked, unreadable or
corrupt database, a PostgreSQL URL, all take that path (a busy one too, at once: the store
waits for it as it always did, so nothing waits twice). Nothing is written: the file is
opened read-write without create (``mode=rw``, so closing it cleans up the WAL files as the
store's connections do; a ``mode=ro`` connection leaves them behind) with ``query_only`` on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..secrets import SecretBox
from .records import ConnectionRecord
from .settings import database_url, sqlite_file
from .versions import SCHEMA_VERSIONS

__all__ = ["ConnectionState", "read_connection_state"]

_CONNECTIONS = ("SELECT name, connector, auth_type, base_url, config, secret, version, "
                "created_at, updated_at FROM connections ORDER BY name")
_DISABLED = "SELECT connection, operation FROM disabled_endpoints"


@dataclass(frozen=True)
class ConnectionState:
    """Every stored connection by name, and the endpoint ids disabled per connection
    (connections without any are absent)."""

    connections: dict[str, ConnectionRecord]
    disabled: dict[str, set[str]]


class _Unexpected(Exception):
    """A row the store would decode differently (or fail on): leave it to the store."""


class _LazyBox:
    """The secret box, loaded on first use as the store's is (a record read here decrypts
    its secret only when ``record.secret`` is read)."""

    def __init__(self) -> None:
        self._box: SecretBox | None = None
        self._lock = threading.Lock()

    def __call__(self) -> SecretBox:
        with self._lock:
            if self._box is None:
                self._box = SecretBox.from_env()
            return self._box


def read_connection_state(url: str | None = None) -> ConnectionState | None:
    """The connection state of the database at ``url`` (default: ``SPLICE_DATABASE_URL`` or
    the home's SQLite file) read without SQLAlchemy, or None when the caller must open the
    store instead (see the module docstring)."""
    path = sqlite_file(database_url(url))
    if path is None or not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=0,
                               isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        return _read(conn)
    except (sqlite3.Error, _Unexpected):
        return None
    finally:
        conn.close()


def _read(conn: sqlite3.Connection) -> ConnectionState | None:
    conn.execute("PRAGMA query_only = ON")
    mode = conn.execute("PRAGMA journal_mode").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        return None  # the store would switch it to WAL (a write): let it
    conn.execute("BEGIN")  # one snapshot for all three reads
    try:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        if sorted(versions) != list(SCHEMA_VERSIONS):
            return None  # to create, upgrade or refuse: the store's work
        box = _LazyBox()
        connections = {}
        for row in conn.execute(_CONNECTIONS):
            record = _record(row, box)
            connections[record.name] = record
        disabled: dict[str, set[str]] = {}
        for name, operation in conn.execute(_DISABLED):
            disabled.setdefault(name, set()).add(operation)
    finally:
        conn.execute("COMMIT")
    return ConnectionState(connections, disabled)


def _record(row: tuple[Any, ...], box: _LazyBox) -> ConnectionRecord:
    """One ``connections`` row decoded as SQLAlchemy decodes it for the store: text and
    integers as stored, ``config`` through ``json.loads``, datetimes through
    ``datetime.fromisoformat`` then made UTC-aware, the secret ciphertext untouched."""
    name, connector, auth_type, base_url, config, secret, version, created, updated = row
    if not isinstance(config, str) or not isinstance(version, int) or \
            not isinstance(created, str) or not isinstance(updated, str):
        raise _Unexpected
    try:
        return ConnectionRecord(
            name=name, connector=connector, auth_type=auth_type, base_url=base_url,
            config=dict(json.loads(config) or {}), version=version,
            created_at=_utc(datetime.fromisoformat(created)),
            updated_at=_utc(datetime.fromisoformat(updated)), _ciphertext=secret, _box=box)
    except (TypeError, ValueError):  # not JSON, not a mapping, not a datetime
        raise _Unexpected from None


def _utc(value: datetime) -> datetime:
    """What the store's ``UTCDateTime`` column gives for a stored datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

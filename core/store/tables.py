"""The state database's schema: every table, the column types they share, and JSON encoding.

One ``metadata`` for SQLite and PostgreSQL: connections, trigger state and seen keys (read and
written by :mod:`splice.store.database`), the run ledger's runs, events, step results,
idempotency keys and dead letters (:mod:`splice.store.ledger`, :mod:`splice.store.queue`),
connection events (:mod:`splice.store.connection_events`), leases
(:mod:`splice.store.leases`) and circuit breakers (:mod:`splice.store.breakers`). Migrations
live in :mod:`splice.store.migrations`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect

from ..errors import ConfigError

RUN_MODES = ("once", "watch", "dry_run", "retry", "test", "serve", "webhook")
RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")
RUN_COUNTERS = ("events_seen", "events_new", "events_failed", "requests_made")
EVENT_STATUSES = ("pending", "succeeded", "failed", "dead")
ERROR_CLASSES = ("auth", "scope", "budget", "validation", "client", "server", "network",
                 "config", "unknown")
STEP_STATUSES = ("succeeded", "failed", "skipped")
NO_ITEM = -1  # item_index of a step that is not inside for_each

_MAX_KEY_LENGTH = 512  # longer dedupe keys are stored as a digest (btree entries stay small)


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_ENCODE = json.JSONEncoder(default=_json_default, separators=(",", ":"),
                           ensure_ascii=False).encode  # built once: dumps(**kw) builds one a call


def json_dumps(value: Any) -> str:
    """How the state database stores JSON columns (compact, UTF-8, dates as ISO text).

    orjson writes it (3-5x faster); the standard library only where orjson cannot represent
    the value: non-string keys, integers beyond 64 bits, strings with lone surrogates. orjson
    writes a float that is not finite as ``null`` (``NaN`` is not JSON).
    """
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _ENCODE(value)


class Encoded(str):
    """A JSON value already serialized by ``json_dumps`` (stored as is on SQLite)."""


def sqlite_json(value: Any) -> str | None:
    if isinstance(value, Encoded):
        return str(value)
    return None if value is None else json_dumps(value)


def sqlite_time(value: datetime | None) -> str | None:
    """A UTCDateTime as SQLAlchemy stores it in SQLite (naive UTC text)."""
    if value is None:
        return None
    value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def storage_key(key: str) -> str:
    """The form of a dedupe key as stored: itself, or a sha256 digest when very long."""
    if len(key) <= _MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def seen_scope(recipe: str, trigger: str) -> int:
    """The ``seen.scope`` of a recipe's trigger: a signed 64-bit hash of both names (two
    triggers share a scope with probability ~2^-64 per pair)."""
    digest = hashlib.blake2b(f"{recipe}\x00{trigger}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --------------------------------------------------------------------------- schema types


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them as naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONColumn(sa.TypeDecorator[Any]):
    """JSON (``None`` stored as SQL NULL); JSONB on PostgreSQL. PostgreSQL's dialect module is
    imported only when a PostgreSQL database is used (it costs ~45 ms at every start)."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))


JSONType = JSONColumn()
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid alias

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("recipe", sa.String, nullable=False),
    sa.Column("recipe_path", sa.String),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    *(sa.Column(name, sa.Integer, nullable=False, default=0) for name in RUN_COUNTERS),
    sa.Column("error", sa.Text),
    sa.Index(None, "recipe", "started_at"),
    sa.Index(None, "started_at"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("recipe", sa.String, nullable=False),
    sa.Column("trigger", sa.String, nullable=False),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("payload", JSONType),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="SET NULL")),  # the claiming run
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),  # failed: when the next run retries it
    sa.Column("error_class", sa.String(16)),    # failed/dead: one of ERROR_CLASSES
    sa.UniqueConstraint("recipe", "trigger", "key"),
    sa.Index(None, "recipe", "status"),
    sa.Index(None, "run_id"),
)

step_results = sa.Table(
    "step_results", metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="SET NULL")),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("item_index", sa.Integer, nullable=False, default=NO_ITEM),
    sa.Column("step_id", sa.String),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String),
    sa.Column("request", JSONType),
    sa.Column("output", JSONType),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.UniqueConstraint("event_id", "step_index", "item_index"),
    sa.Index(None, "run_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("event_id", sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("item_index", sa.Integer, nullable=False, default=NO_ITEM),
    sa.Column("status", sa.String(16), nullable=False),  # reserved | done
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Index(None, "event_id"),
)

dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("event_id", sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("recipe", sa.String, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("error_class", sa.String(16)),
    sa.Index(None, "recipe"),
)


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT supporting ``on_conflict_do_nothing/update`` for the connection's dialect."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    raise ConfigError(f"unsupported database {name!r}: splice supports SQLite and PostgreSQL")


_PREBUILT: dict[tuple[str, str], Any] = {}


def prebuilt(conn: Connection, name: str, build: Any) -> Any:
    """A statement built once per dialect and reused with bound parameters.

    Building ``insert().values(...)`` on every call costs SQLAlchemy ~100 µs (construction and
    cache-key generation); executing a prebuilt statement with a parameter dict does not.
    """
    key = (name, conn.dialect.name)
    stmt = _PREBUILT.get(key)
    if stmt is None:
        stmt = _PREBUILT[key] = build(conn)
    return stmt


# --------------------------------------------------------------------------- records


connections = sa.Table(
    "connections", metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("connector", sa.String, nullable=False),
    sa.Column("auth_type", sa.String, nullable=False),
    sa.Column("base_url", sa.String),
    sa.Column("config", JSONType, nullable=False),
    sa.Column("secret", sa.LargeBinary),  # Fernet ciphertext of a JSON object
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

trigger_state = sa.Table(
    "trigger_state", metadata,
    sa.Column("recipe", sa.String, primary_key=True),
    sa.Column("trigger", sa.String, primary_key=True),
    sa.Column("initialized", sa.Boolean, nullable=False, default=False),
    sa.Column("cursor", sa.Text),
    sa.Column("checkpoint", JSONType),  # where an unfinished listing resumes (engine)
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String),  # the recipe file that last ran it (shared-id warning)
)

# One row per dedupe key a trigger has seen: the key and the trigger's scope (a 64-bit hash of
# recipe and trigger, ``seen_scope``), nothing else, in a table that is its own primary-key
# b-tree. The key is kept as text (``storage_key``): keys an API hands out in order (ids,
# ``id@updated_at``) then land next to each other, so a page of 100 keys dirties one or two
# b-tree pages; a hashed key would scatter them (measured: 3.7x the cost per key, bench/NOTES).
seen = sa.Table(
    "seen", metadata,
    # The key leads the primary key: PostgreSQL, before its first ANALYZE, would otherwise
    # match the scope in the index and filter every key of the trigger (O(n) a page).
    sa.Column("key", sa.String, nullable=False),
    sa.Column("scope", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("key", "scope"),
    sqlite_with_rowid=False,  # the primary key is the table: smaller and faster lookups
)

# Endpoints switched off per connection (the dashboard's toggles, ``splice connections
# endpoints``): a row means "this connection may not use this operation".
disabled_endpoints = sa.Table(
    "disabled_endpoints", metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("operation", sa.String, primary_key=True),
    sa.Column("disabled_at", UTCDateTime, nullable=False),
)

# One-time dashboard sign-in tokens (``splice serve --print-login``, ``splice login-link``):
# only a SHA-256 digest is kept; a token works once and until it expires.
login_tokens = sa.Table(
    "login_tokens", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

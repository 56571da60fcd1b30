"""Schema versions: each migration brings the state database one version forward.

A new database gets the current schema at once; an older one gets each pending entry of
``MIGRATIONS`` applied in order, in one transaction, under an advisory lock on PostgreSQL
(SQLite's write lock serialises it there), and the versions applied recorded in
``schema_version``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import ConfigError
from .breakers import circuit_breakers
from .connection_events import create_table as create_connection_events
from .inbox import create_tables as create_inbox_tables
from .inbox import inbox
from .leases import leases
from .registry import create_table as create_registry
from .tables import (
    dead_letters,
    disabled_endpoints,
    events,
    login_tokens,
    metadata,
    now,
    schema_version,
    seen,
    seen_scope,
    trigger_state,
)

_PG_MIGRATION_LOCK = 0x5311CE  # advisory lock id serialising concurrent migrations


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` brings a database from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial_schema(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _add_trigger_checkpoint(conn: Connection) -> None:
    _add_column(conn, trigger_state, "checkpoint")


def _add_column(conn: Connection, table: sa.Table, name: str) -> None:
    kind = table.c[name].type.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


def _delivery(conn: Connection) -> None:
    """Leases, the retry schedule and error class of events, circuit breakers, the recipe
    file of a trigger's state."""
    _add_column(conn, events, "next_attempt_at")
    _add_column(conn, events, "error_class")
    _add_column(conn, dead_letters, "error_class")
    _add_column(conn, trigger_state, "source")
    leases.create(conn, checkfirst=True)
    circuit_breakers.create(conn, checkfirst=True)


def _serve_tables(conn: Connection) -> None:
    create_registry(conn)
    create_inbox_tables(conn)


def _compact_seen_keys(conn: Connection) -> None:
    """``seen_keys`` (key, recipe, trigger, first_seen_at) becomes ``seen`` (key, scope): every
    key is copied under its trigger's scope, one INSERT ... SELECT per trigger. The
    ``first_seen_at`` stamps are not kept (nothing read them; they were a third of a row)."""
    old = sa.table("seen_keys", sa.column("key"), sa.column("recipe"), sa.column("trigger"))
    seen.create(conn, checkfirst=True)
    pairs = conn.execute(sa.select(old.c.recipe, old.c.trigger).distinct()).all()
    for recipe, trigger in pairs:
        conn.execute(seen.insert().from_select(
            ["key", "scope"],
            sa.select(old.c.key, sa.literal(seen_scope(recipe, trigger), sa.BigInteger))
            .where(old.c.recipe == recipe, old.c.trigger == trigger)))
    conn.execute(sa.text("DROP TABLE seen_keys"))


def _dashboard_tables(conn: Connection) -> None:
    disabled_endpoints.create(conn, checkfirst=True)
    login_tokens.create(conn, checkfirst=True)


def _inbox_enqueued_at(conn: Connection) -> None:
    """When each inbox row was last sent to the broker (``splice worker`` deployments); an
    inbox made by migration 5 of this release has the column already."""
    if "enqueued_at" not in {c["name"] for c in sa.inspect(conn).get_columns(inbox.name)}:
        _add_column(conn, inbox, "enqueued_at")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial_schema),
    Migration(2, "connection events", create_connection_events),
    Migration(3, "trigger page checkpoint", _add_trigger_checkpoint),
    Migration(4, "leases, retry schedule, circuit breakers", _delivery),
    Migration(5, "serve: recipe registry, webhook inbox, serve instances", _serve_tables),
    Migration(6, "compact seen keys", _compact_seen_keys),
    Migration(7, "dashboard: disabled endpoints, sign-in tokens", _dashboard_tables),
    Migration(8, "inbox: enqueued_at (workers)", _inbox_enqueued_at),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def _current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema; a no-op (one read) when it is current."""
    with engine.connect() as conn, conn.begin():
        if _current_version(conn) == SCHEMA_VERSION:
            return
    with engine.connect() as conn:
        conn.execution_options(splice_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"),
                             {"id": _PG_MIGRATION_LOCK})
            current = _current_version(conn)  # re-read under the lock
            if current > SCHEMA_VERSION:
                raise ConfigError(
                    f"the state database has schema version {current}, newer than this "
                    f"splice understands ({SCHEMA_VERSION})", hint="upgrade splice")
            if current == 0:
                metadata.create_all(conn, checkfirst=True)
                pending: Iterable[Migration] = MIGRATIONS  # current schema = all of them
            else:
                pending = [m for m in MIGRATIONS if m.version > current]
                for migration in pending:
                    migration.apply(conn)
            stamp = now()
            for migration in pending:
                conn.execute(schema_version.insert().values(
                    version=migration.version, description=migration.description,
                    applied_at=stamp))

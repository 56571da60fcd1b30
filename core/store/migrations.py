"""Schema versions: each migration brings the state database one version forward.

A new database gets the current schema at once; an older one gets each pending entry of
``MIGRATIONS`` applied in order, in one transaction, under an advisory lock on PostgreSQL
(SQLite's write lock serialises it there), and the versions applied recorded in
``schema_version`` (one row per migration).

Pending means "not recorded", not "above the highest recorded": migrations written on
several branches at once (each taking the next free number) still all run when the branches
meet, whatever order they landed in. Numbers must be unique and increasing
(:func:`check_migrations` runs at import) and equal to
:data:`~splice.store.versions.SCHEMA_VERSIONS` (checked at import too: readers that import
no SQLAlchemy tell a current database by those).

Who upgrades (:func:`migrate`): a SQLite database is upgraded when a process opens it (one
user, one machine: as it always was); a PostgreSQL database is created when empty, but one
that is behind is refused with "run `splice db upgrade`", so a fleet of workers never races a
migration or runs old code against a half-new schema (``SPLICE_DB_AUTO_UPGRADE=1`` upgrades
on open anyway, ``0`` refuses on SQLite too). :func:`schema_status` and :func:`upgrade` are
what ``splice db status`` and ``splice db upgrade`` run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
from .versions import SCHEMA_VERSIONS

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
AUTO_UPGRADE_ENV = "SPLICE_DB_AUTO_UPGRADE"


def check_migrations(migrations: Iterable[Migration]) -> None:
    """Numbers unique and increasing (two branches that took the same number fail here)."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or not versions or versions[0] < 1:
        raise RuntimeError(f"MIGRATIONS must have unique, increasing versions: {versions}")


check_migrations(MIGRATIONS)
if tuple(m.version for m in MIGRATIONS) != SCHEMA_VERSIONS:
    raise RuntimeError(f"MIGRATIONS has versions {[m.version for m in MIGRATIONS]} but "
                       f"store/versions.py SCHEMA_VERSIONS has {list(SCHEMA_VERSIONS)}: "
                       "add the new version to both")


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: the versions recorded, the migrations it still needs."""

    backend: str
    applied: tuple[int, ...]
    pending: tuple[Migration, ...]
    unknown: tuple[int, ...]  # recorded but not in MIGRATIONS: made by a newer splice

    @property
    def current(self) -> int:
        return max(self.applied, default=0)

    @property
    def latest(self) -> int:
        return MIGRATIONS[-1].version

    def as_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "current": self.current, "latest": self.latest,
                "applied": list(self.applied), "unknown": list(self.unknown),
                "pending": [{"version": m.version, "description": m.description}
                            for m in self.pending],
                "up_to_date": not self.pending and not self.unknown}


def _status(conn: Connection) -> SchemaStatus:
    applied: set[int] = set()
    if sa.inspect(conn).has_table(schema_version.name):
        applied = {int(v) for v in conn.execute(sa.select(schema_version.c.version)).scalars()}
    known = {m.version for m in MIGRATIONS}
    pending = tuple(m for m in MIGRATIONS if m.version not in applied) if applied else \
        tuple(MIGRATIONS)
    return SchemaStatus(conn.dialect.name, tuple(sorted(applied)), pending,
                        tuple(sorted(applied - known)))


def schema_status(engine: Engine) -> SchemaStatus:
    """The database's schema status (read only)."""
    with engine.connect() as conn, conn.begin():
        return _status(conn)


def auto_upgrade(backend: str) -> bool:
    """Whether opening a database that is behind upgrades it (see the module docstring)."""
    raw = os.environ.get(AUTO_UPGRADE_ENV, "").strip().lower()
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    return backend != "postgresql"


def _too_new(status: SchemaStatus) -> ConfigError:
    return ConfigError(
        f"the state database has schema version(s) {', '.join(map(str, status.unknown))}, "
        f"newer than this splice understands ({status.latest})", hint="upgrade splice")


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema on open; a no-op (one read) when it is current. A
    database that is behind and may not be upgraded on open raises ConfigError."""
    status = schema_status(engine)
    if status.unknown:
        raise _too_new(status)
    if not status.pending:
        return
    if status.applied and not auto_upgrade(status.backend):
        raise ConfigError(
            f"the state database has schema version {status.current}; this splice needs "
            f"{status.latest} ({len(status.pending)} migration(s) pending)",
            hint="stop the splice processes using it, then run `splice db upgrade` "
                 "(`splice db status` lists what it will do)")
    upgrade(engine)


def upgrade(engine: Engine) -> list[Migration]:
    """Apply every pending migration in one transaction (under an advisory lock on
    PostgreSQL); return those applied (none when another process just did)."""
    with engine.connect() as conn:
        conn.execution_options(splice_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"),
                             {"id": _PG_MIGRATION_LOCK})
            status = _status(conn)  # re-read under the lock
            if status.unknown:
                raise _too_new(status)
            pending: Iterable[Migration] = status.pending
            if not status.applied:
                metadata.create_all(conn, checkfirst=True)  # current schema = all of them
            else:
                for migration in status.pending:
                    migration.apply(conn)
            stamp = now()
            for migration in pending:
                conn.execute(schema_version.insert().values(
                    version=migration.version, description=migration.description,
                    applied_at=stamp))
            return list(pending)

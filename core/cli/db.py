"""``splice db ...``: the state database's schema version, and upgrading it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .common import console, esc, handle_errors


@contextmanager
def _engine() -> Iterator[Any]:
    """The state database's engine, without opening it as a Store (which would migrate)."""
    import sqlalchemy as sa

    from ..store.engine import create_engine
    from ..store.faults import describe_location, storage_error
    from ..store.settings import database_url

    engine = create_engine(database_url())
    try:
        yield engine
    except sa.exc.DBAPIError as exc:
        fault = storage_error(exc, describe_location(engine.url))
        if fault is None:
            raise
        raise fault from None
    finally:
        engine.dispose()


def _where(engine: Any) -> str:
    from ..store.faults import describe_location

    return describe_location(engine.url)


@click.group()
def db() -> None:
    """The state database: its schema version and migrations.

    \b
    SQLite (the default) is upgraded when splice opens it. PostgreSQL is not: a process that
    finds it behind refuses to start and says to run `splice db upgrade`, so workers never
    race a migration. Upgrade by stopping serve and workers, running `splice db upgrade`
    once, then starting the new version.
    """


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@handle_errors
def db_status(as_json: bool) -> None:
    """Show the schema version of the state database and the migrations it still needs
    (exit code 0 either way)."""
    from ..store.migrations import schema_status

    with _engine() as engine:
        status = schema_status(engine)
        where = _where(engine)
    if as_json:
        click.echo(json.dumps({"database": where, **status.as_json()}, indent=2))
        return
    out = console()
    out.print(f"database: {esc(where)} ({status.backend})")
    out.print(f"schema version: {status.current} (this splice: {status.latest})")
    if status.unknown:
        out.print(f"[red]made by a newer splice[/] (versions "
                  f"{', '.join(map(str, status.unknown))}): upgrade splice")
    elif not status.applied:
        out.print("empty: the first splice command creates the schema")
    elif status.pending:
        out.print(f"{len(status.pending)} migration(s) pending; run `splice db upgrade`:")
        for m in status.pending:
            out.print(f"  {m.version}  {esc(m.description)}")
    else:
        out.print("up to date")


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print what was applied as JSON.")
@handle_errors
def db_upgrade(as_json: bool) -> None:
    """Apply every pending migration (one transaction: all or nothing; on PostgreSQL under
    an advisory lock, so two upgrades at once apply each migration once)."""
    from ..store.migrations import schema_status, upgrade

    with _engine() as engine:
        applied = upgrade(engine)
        status = schema_status(engine)
        where = _where(engine)
    if as_json:
        click.echo(json.dumps({"database": where, "applied": [
            {"version": m.version, "description": m.description} for m in applied],
            "current": status.current}, indent=2))
        return
    out = console()
    if not applied:
        out.print(f"{esc(where)}: already at schema version {status.current}; nothing to do")
        return
    for m in applied:
        out.print(f"applied {m.version}  {esc(m.description)}")
    out.print(f"{esc(where)}: now at schema version {status.current}")

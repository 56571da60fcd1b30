"""``splice db status`` / ``splice db upgrade``: a database made by the previous release
(schema version 6, ``tests/fixtures/state_v6``: real rows in every table, made by real splice
commands) upgrades without loss, on SQLite and on PostgreSQL; PostgreSQL refuses to open
while it is behind; migrations from several branches all apply."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from splice.errors import ConfigError
from splice.store import migrations
from splice.store.database import Store
from splice.store.migrations import MIGRATIONS, Migration, check_migrations, schema_status

from . import pg
from .conftest import invoke

FIXTURE = Path(__file__).parent / "fixtures" / "state_v6"
FIXTURE_VERSION = 6
FIXTURE_TABLES = {"circuit_breakers", "connection_events", "connections", "dead_letters",
                  "events", "idempotency_keys", "inbox", "leases", "registered_recipes", "runs",
                  "schema_version", "seen", "serve_instances", "step_results", "trigger_state"}


def _add_note_column(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN upgrade_note VARCHAR"))


TEST_MIGRATION = Migration(900, "test: a column added to runs", _add_note_column)


@pytest.fixture
def one_more_migration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A migration this splice has and the fixture lacks (so the upgrade has work to do
    even before the next real one lands)."""
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, TEST_MIGRATION))
    yield


def snapshot(engine: sa.Engine) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Every row of every table, as (column, text of value) pairs."""
    rows: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for name, table in meta.tables.items():
            rows[name] = {tuple(sorted((k, repr(v)) for k, v in r._mapping.items()))
                          for r in conn.execute(sa.select(table))}
    return rows


def assert_nothing_lost(before: dict[str, set[Any]], after: dict[str, set[Any]]) -> None:
    assert FIXTURE_TABLES <= set(before)
    for table, rows in before.items():
        assert rows, f"the fixture has no rows in {table}"
        kept = {tuple(p for p in row if p[0] in dict(next(iter(rows)))) for row in after[table]}
        missing = rows - kept
        assert not missing, f"{table}: {len(missing)} row(s) lost, e.g. {sorted(missing)[0]}"


def sqlite_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copy(FIXTURE / "splice.db", tmp_path / "v6.db")
    monkeypatch.setenv("SPLICE_SECRET_KEY", (FIXTURE / "secret.key").read_text().strip())
    url = f"sqlite:///{tmp_path / 'v6.db'}"
    monkeypatch.setenv("SPLICE_DATABASE_URL", url)
    return url


def test_sqlite_fixture_upgrades_without_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              one_more_migration: None) -> None:
    url = sqlite_copy(tmp_path, monkeypatch)
    engine = sa.create_engine(url)
    before = snapshot(engine)
    status = json.loads(invoke("db", "status", "--json").output)
    assert status["current"] == FIXTURE_VERSION and not status["up_to_date"]
    assert [p["version"] for p in status["pending"]] == \
        [m.version for m in migrations.MIGRATIONS if m.version > FIXTURE_VERSION]
    result = invoke("db", "upgrade", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["current"] == migrations.MIGRATIONS[-1].version
    assert_nothing_lost(before, snapshot(engine))
    assert "up to date" in invoke("db", "status").output
    assert "nothing to do" in invoke("db", "upgrade").output
    engine.dispose()
    # and the upgraded state is what the commands read: runs, tokens decrypted, dead letters
    runs = json.loads(invoke("runs", "list", "--json", "--limit", "100").output)
    assert len(runs) == len(before["runs"])
    with Store.open() as store:
        assert {c.name for c in store.list_connections()} == {"my-highlevel", "my-invoice2go"}
        assert all(c.secret["refresh_token"] for c in store.list_connections())


def test_sqlite_upgrades_on_open_unless_told_not_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_more_migration: None) -> None:
    sqlite_copy(tmp_path, monkeypatch)
    monkeypatch.setenv("SPLICE_DB_AUTO_UPGRADE", "0")
    with pytest.raises(ConfigError, match="splice db upgrade"):
        Store.open()
    monkeypatch.delenv("SPLICE_DB_AUTO_UPGRADE")
    with Store.open() as store:  # one user, one machine: upgraded on open, as always
        assert store.schema_version == TEST_MIGRATION.version


def load_postgres_fixture(url: str) -> None:
    schema = sa.make_url(url).query["options"].partition("search_path=")[2]  # type: ignore
    sql = (FIXTURE / "postgres.sql").read_text().replace("splice_fixture_v6.", f"{schema}.")
    engine = sa.create_engine(sa.make_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def test_postgres_fixture_refuses_to_open_then_upgrades_without_loss(
        monkeypatch: pytest.MonkeyPatch, one_more_migration: None) -> None:
    with pg.schema_url() as url:
        load_postgres_fixture(url)
        monkeypatch.setenv("SPLICE_DATABASE_URL", url)
        monkeypatch.setenv("SPLICE_SECRET_KEY", (FIXTURE / "secret.key").read_text().strip())
        engine = sa.create_engine(url)
        before = snapshot(engine)
        assert schema_status(engine).current == FIXTURE_VERSION
        with pytest.raises(ConfigError, match="run `splice db upgrade`") as refused:
            Store.open()  # a worker started before the upgrade: refused, nothing changed
        assert "schema version 6" in str(refused.value)
        assert snapshot(engine) == before
        result = invoke("db", "upgrade")
        assert result.exit_code == 0 and "applied 900" in result.output, result.output
        assert_nothing_lost(before, snapshot(engine))
        with Store.open() as store:
            assert store.schema_version == TEST_MIGRATION.version
            assert all(c.secret["access_token"] for c in store.list_connections())
        engine.dispose()


def test_migrations_from_several_branches_all_apply(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that got 901 first (its branch merged first) still gets 900 afterwards:
    pending means "not recorded", not "above the highest"."""
    sqlite_copy(tmp_path, monkeypatch)
    applied: list[int] = []

    def step(version: int) -> Migration:
        return Migration(version, f"branch {version}", lambda conn: applied.append(version))

    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, step(901)))
    Store.open().close()
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, step(900), step(901)))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v6.db'}")
    assert [m.version for m in schema_status(engine).pending] == [900]
    Store.open().close()
    assert applied == [901, 900]
    assert schema_status(engine).pending == ()
    engine.dispose()
    with pytest.raises(RuntimeError, match="unique, increasing"):
        check_migrations((*MIGRATIONS, step(7), step(7)))

"""``splice validate`` reads connections straight from a current SQLite state file (no
SQLAlchemy): the same records the store gives, the store itself for anything else, and the
same command output either way."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from splice.cli import common
from splice.errors import StorageError
from splice.plugins import get_registry
from splice.secrets import SecretBox
from splice.store import connection_state
from splice.store.connection_state import read_connection_state
from splice.store.database import Store
from splice.store.endpoints import disabled_by_connection, set_enabled
from splice.store.settings import sqlite_file
from splice.store.versions import SCHEMA_VERSIONS

from .conftest import ROOT, invoke

RECIPE = ROOT / "recipes" / "ghl_tags_to_invoice2go.yaml"


def _connect(store: Store, name: str, connector: str, *, scopes: list[str] | None = None,
             secret: dict[str, str] | None = None) -> None:
    c = get_registry().connectors[connector]
    store.put_connection(name, connector=connector, auth_type=c.auth_type, base_url=c.base_url,
                         config={"scopes": c.scopes if scopes is None else scopes,
                                 "fields": {"locationId": "loc1", "account_id": "acc1"},
                                 "expires_at": 1767225600.5, "nested": [{"a": None}, "é"]},
                         secret=secret)


@pytest.fixture
def state(splice_home: Path) -> Iterator[Path]:
    """A current state file: three connections (one without a secret, one without a base
    URL), disabled endpoints on two; every store connection closed. Yields its path."""
    with Store.open() as store:
        _connect(store, "my-highlevel", "ghl_users",
                 secret={"access_token": "tok-ghl", "refresh_token": "ref-ghl"})
        _connect(store, "my-invoice2go", "invoice2go", secret={"access_token": "tok-i2g"})
        store.put_connection("plain", connector="fakecrm", auth_type="bearer", base_url=None,
                             config={})
        set_enabled(store, "my-invoice2go", "delete_client", False)
        set_enabled(store, "my-invoice2go", "list_payments", False)
        set_enabled(store, "plain", "create_note", False)
    yield splice_home / "splice.db"


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def test_the_same_records_as_the_store(state: Path) -> None:
    read = read_connection_state()
    assert read is not None
    with Store.open() as store:
        records = store.list_connections()
        disabled = disabled_by_connection(store)
    assert list(read.connections) == [r.name for r in records]
    assert list(read.connections.values()) == records  # every field but the secret
    for mine, theirs in zip(read.connections.values(), records, strict=True):
        assert mine.created_at == theirs.created_at and mine.updated_at == theirs.updated_at
        assert mine.created_at.tzinfo is not None
        assert mine.created_at.utcoffset() == theirs.created_at.utcoffset()
        assert mine.config == theirs.config
        assert mine.secret == theirs.secret  # decrypted the same, on access
    assert read.connections["my-highlevel"].secret["access_token"] == "tok-ghl"
    assert read.connections["plain"].secret == {}
    assert type(read.connections["my-highlevel"].config["expires_at"]) is float
    assert read.disabled == disabled == {"my-invoice2go": {"delete_client", "list_payments"},
                                         "plain": {"create_note"}}


def test_secrets_are_decrypted_only_when_read(state: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[SecretBox] = []
    real = SecretBox.from_env

    def counting() -> SecretBox:
        loaded.append(real())
        return loaded[-1]

    monkeypatch.setattr(SecretBox, "from_env", staticmethod(counting))
    read = read_connection_state()
    assert read is not None and loaded == []
    assert "tok-ghl" not in repr(read)
    assert read.connections["my-invoice2go"].secret == {"access_token": "tok-i2g"}
    assert read.connections["my-highlevel"].secret["refresh_token"] == "ref-ghl"
    assert len(loaded) == 1  # one box for every record, as a store has


def test_nothing_is_written(state: Path) -> None:
    before = state.read_bytes(), sorted(os.listdir(state.parent))
    assert read_connection_state() is not None
    assert (state.read_bytes(), sorted(os.listdir(state.parent))) == before  # no -wal/-shm


@pytest.mark.parametrize("change", [
    "DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)",
    "INSERT INTO schema_version VALUES (999, 'from a newer splice', '2030-01-01 00:00:00')",
    "DROP TABLE schema_version",
    "DROP TABLE disabled_endpoints",
    "PRAGMA journal_mode = DELETE",
    "UPDATE connections SET config = 'not json' WHERE name = 'plain'",
    "UPDATE connections SET config = '[1, 2]' WHERE name = 'plain'",
    "UPDATE connections SET created_at = 1700000000 WHERE name = 'plain'",
    "UPDATE connections SET updated_at = 'yesterday' WHERE name = 'plain'",
])
def test_anything_else_is_left_to_the_store(state: Path, change: str) -> None:
    _sql(state, change)
    assert read_connection_state() is None


def test_a_missing_file_is_left_to_the_store_and_not_created(splice_home: Path) -> None:
    assert read_connection_state() is None
    assert not (splice_home / "splice.db").exists()
    state = common.connection_state()  # the store creates it, as every command does
    assert state.connections == {} and (splice_home / "splice.db").exists()
    assert read_connection_state() is not None


@pytest.mark.parametrize("content", [b"", b"this is not a database" * 200])
def test_an_empty_or_corrupt_file_is_left_to_the_store(splice_home: Path,
                                                       content: bytes) -> None:
    splice_home.mkdir(parents=True, exist_ok=True)
    (splice_home / "splice.db").write_bytes(content)
    assert read_connection_state() is None


def test_a_locked_file_is_left_to_the_store_at_once(state: Path) -> None:
    holder = sqlite3.connect(state, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM disabled_endpoints WHERE connection = 'plain'")
        assert read_connection_state() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert read_connection_state() is not None


def test_other_databases_are_left_to_the_store(state: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", f"sqlite:///{state}?mode=ro",
                f"sqlite+pysqlite:///{state}", "postgresql://u@127.0.0.1:1/splice"):
        monkeypatch.setenv("SPLICE_DATABASE_URL", url)
        assert read_connection_state() is None, url
    monkeypatch.setenv("SPLICE_DATABASE_URL", f"sqlite:///{state}")
    assert read_connection_state() is not None


@pytest.mark.parametrize("url", ["sqlite:///rel/x.db", "sqlite:////abs/x.db",
                                 "sqlite:///a@b:c/x.db", "sqlite:///~/x.db",
                                 "sqlite:///x y.db", "sqlite:///./x.db"])
def test_the_file_is_the_one_sqlalchemy_opens(url: str) -> None:
    database = sa.make_url(url).database
    assert database is not None
    assert sqlite_file(url) == os.path.abspath(database)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:",
                                 "sqlite:///x.db?mode=ro", "sqlite:///x%20y.db",
                                 "sqlite+pysqlite:///x.db", "postgresql://u@h/db"])
def test_urls_not_read_directly(url: str) -> None:
    assert sqlite_file(url) is None


def test_the_versions_are_the_migrations() -> None:
    from splice.store.migrations import MIGRATIONS

    assert tuple(m.version for m in MIGRATIONS) == SCHEMA_VERSIONS


def _validate_both_ways(monkeypatch: pytest.MonkeyPatch, *args: str
                        ) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """``splice validate ARGS`` reading the file directly, then through the store."""
    used: list[object] = []

    def spy(url: str | None = None) -> object:
        used.append(read_connection_state(url))
        return used[-1]

    monkeypatch.setattr(connection_state, "read_connection_state", spy)
    direct = invoke("validate", *args)
    assert used and used[-1] is not None  # the file was read directly
    monkeypatch.setattr(connection_state, "read_connection_state", lambda url=None: None)
    stored = invoke("validate", *args)
    return ((direct.exit_code, direct.stdout, direct.stderr),
            (stored.exit_code, stored.stdout, stored.stderr))


def test_validate_says_the_same_either_way(state: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    direct, stored = _validate_both_ways(monkeypatch, str(RECIPE))
    assert direct == stored and direct[0] == 0
    with Store.open() as store:  # a missing scope, a disabled endpoint, a wrong connector
        _connect(store, "my-highlevel", "ghl_users", scopes=["locations/tags.readonly"])
        set_enabled(store, "my-invoice2go", "add_invoice_tags", False)
        store.put_connection("my-invoice2go", connector="fakecrm", auth_type="bearer")
    direct, stored = _validate_both_ways(monkeypatch, str(RECIPE))
    assert direct == stored and direct[0] == 2
    assert "lacks scope(s)" in direct[2] and "is for connector 'fakecrm'" in direct[2]
    with Store.open() as store:
        _connect(store, "my-invoice2go", "invoice2go")
    direct, stored = _validate_both_ways(monkeypatch, str(RECIPE))
    assert direct == stored and "is disabled for connection 'my-invoice2go'" in direct[2]


def test_validate_refuses_a_newer_database_as_before(state: Path) -> None:
    _sql(state, "INSERT INTO schema_version VALUES (999, 'newer', '2030-01-01 00:00:00')")
    result = invoke("validate", str(RECIPE))
    assert result.exit_code == 2
    assert "newer than this splice understands" in result.stderr


def test_validate_reports_a_corrupt_database_as_before(splice_home: Path) -> None:
    splice_home.mkdir(parents=True, exist_ok=True)
    (splice_home / "splice.db").write_bytes(b"this is not a database" * 200)
    with pytest.raises(StorageError) as raised:
        Store.open()
    result = invoke("validate", str(RECIPE))
    assert result.exit_code == raised.value.exit_code
    assert str(raised.value) in result.stderr


def _imported_modules(tmp_path: Path, *args: str) -> set[str]:
    """The modules ``splice ARGS`` imports, in a fresh interpreter (``-X importtime``)."""
    env = {**os.environ, "SPLICE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "splice", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}


def test_validate_does_not_import_sqlalchemy(state: Path, tmp_path: Path) -> None:
    """The SQLAlchemy import is a third of a cold ``splice validate``: it must not come back
    through a module-level import anywhere on the way."""
    modules = _imported_modules(tmp_path, "validate", str(RECIPE))
    assert "splice.store.connection_state" in modules and "splice.run.plan" in modules
    assert not {m for m in modules if m.split(".")[0] == "sqlalchemy"}
    assert not {m for m in _imported_modules(tmp_path, "validate", "--skip-connections",
                                             str(RECIPE)) if m.startswith("sqlalchemy")}
    # the check can fail: a database that is behind goes through the store (and SQLAlchemy)
    _sql(state, f"DELETE FROM schema_version WHERE version = {SCHEMA_VERSIONS[-1]}")
    assert "sqlalchemy" in _imported_modules(tmp_path, "validate", str(RECIPE))

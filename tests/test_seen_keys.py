"""Seen keys: the compact ``seen`` table, its migration from ``seen_keys``, and the page seed
that writes a page's keys and its checkpoint in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from splice.store.database import Store
from splice.store.migrations import SCHEMA_VERSION
from splice.store.tables import seen_scope, storage_key

from . import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SPLICE_HOME", str(tmp_path))
    if request.param == "postgresql":
        with pg.schema_url() as scoped:
            yield scoped
        return
    yield f"sqlite:///{tmp_path / 'state.db'}"


def _downgrade(url: str, version: int, rows: list[tuple[str, str, str]]) -> None:
    """Turn a current database into what schema ``version`` (3 or 5) looked like, with
    ``rows`` of (key, recipe, trigger) in its ``seen_keys`` table."""
    Store.open(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE seen")
        conn.exec_driver_sql(
            'CREATE TABLE seen_keys (recipe VARCHAR NOT NULL, "trigger" VARCHAR NOT NULL, '
            "key VARCHAR NOT NULL, first_seen_at TIMESTAMP NOT NULL DEFAULT "
            'CURRENT_TIMESTAMP, PRIMARY KEY (key, recipe, "trigger"))')
        conn.execute(sa.text('INSERT INTO seen_keys (key, recipe, "trigger") '
                             "VALUES (:k, :r, :t)"),
                     [{"k": k, "r": r, "t": t} for k, r, t in rows])
        for table in ("disabled_endpoints", "login_tokens"):  # migration 7 (dashboard)
            conn.exec_driver_sql(f"DROP TABLE {table}")
        if version < 5:  # no serve tables (migration 5)
            for table in ("registered_recipes", "inbox", "serve_instances"):
                conn.exec_driver_sql(f"DROP TABLE {table}")
        if version < 4:  # no leases, retry schedule or circuit breakers (migration 4)
            for column in ("next_attempt_at", "error_class"):
                conn.exec_driver_sql(f"ALTER TABLE events DROP COLUMN {column}")
            conn.exec_driver_sql("ALTER TABLE dead_letters DROP COLUMN error_class")
            conn.exec_driver_sql("ALTER TABLE trigger_state DROP COLUMN source")
            conn.exec_driver_sql("DROP TABLE leases")
            conn.exec_driver_sql("DROP TABLE circuit_breakers")
        conn.execute(sa.text("DELETE FROM schema_version WHERE version > :v"), {"v": version})
    engine.dispose()


@pytest.mark.parametrize("version", [3, 5])
def test_migration_keeps_every_seen_key(url: str, version: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert SCHEMA_VERSION == 8
    monkeypatch.setenv("SPLICE_DB_AUTO_UPGRADE", "1")  # PostgreSQL waits for `splice db upgrade`
    long_key = "x" * 2000
    rows = [(f"id-{i}@v1", "r", "t") for i in range(1500)]
    rows += [("id-0@v1", "r", "other"), (storage_key(long_key), "r2", "t")]
    _downgrade(url, version, rows)
    with Store.open(url) as store:
        assert store.schema_version == SCHEMA_VERSION
        keys = [f"id-{i}@v1" for i in range(1600)]
        assert store.filter_unseen("r", "t", keys) == set(keys[1500:])
        assert store.filter_unseen("r", "other", keys[:3]) == {"id-1@v1", "id-2@v1"}
        assert store.filter_unseen("r2", "t", [long_key, "new"]) == {"new"}
        assert store.seen_count("r", "t") == 1500
        assert not sa.inspect(store.engine).has_table("seen_keys")
        assert store.add_seen("r", "t", keys) == 100  # the migrated keys stay deduped
        run = store.start_run("r")  # migrations 4 and 5 are there too
        assert store.claim_new_events("r", "t", run, [("id-1@v1", {}), ("fresh", {})])
        assert store.filter_unseen("r", "t", ["fresh"]) == set()
        assert sa.inspect(store.engine).has_table("inbox")


def test_seed_page_writes_keys_and_checkpoint_together(url: str) -> None:
    with Store.open(url) as store:
        assert store.seed_page("r", "t", ["a", "b", "a"], {"next": {"offset": 2}}) == 2
        assert store.seed_page("r", "t", ["b", "c"], {"next": {"offset": 4}}) == 1
        assert store.get_checkpoint("r", "t") == {"next": {"offset": 4}}
        assert store.filter_unseen("r", "t", ["a", "b", "c", "d"]) == {"d"}
        assert not store.trigger_initialized("r", "t")  # seeding a page does not finish it
        assert store.seed_page("r", "t", [], None) == 0
        assert store.get_checkpoint("r", "t") is None
        with store.batch():  # inside a batch it joins the batch's transaction
            assert store.seed_page("r", "t", ["e"], {"next": 5}) == 1
        assert store.get_checkpoint("r", "t") == {"next": 5}


def test_a_failed_checkpoint_leaves_no_key_behind(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLICE_HOME", str(tmp_path))
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.seed_page("r", "t", ["a"], {"next": 1})
        with store.engine.begin() as conn:  # the checkpoint write fails after the keys
            conn.exec_driver_sql("CREATE TRIGGER boom BEFORE UPDATE ON trigger_state "
                                 "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        with pytest.raises(Exception, match="disk on fire"):
            store.seed_page("r", "t", ["b", "c"], {"next": 3})
        assert store.filter_unseen("r", "t", ["a", "b", "c"]) == {"b", "c"}
        assert store.get_checkpoint("r", "t") == {"next": 1}
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER boom")
        assert store.seed_page("r", "t", ["b", "c"], {"next": 3}) == 2  # connection reusable


def test_scopes_are_per_recipe_and_trigger() -> None:
    assert seen_scope("r", "t") == seen_scope("r", "t")
    assert len({seen_scope("r", "t"), seen_scope("r", "t2"), seen_scope("r2", "t"),
                seen_scope("rt", ""), seen_scope("", "rt")}) == 5
    assert all(-2**63 <= seen_scope(f"r{i}", "t") < 2**63 for i in range(100))


def test_record_keys_read_fields_like_the_templates() -> None:
    """The direct field read behind ``Plan.record_key`` gives the key the templates give."""
    from splice.errors import SpliceError
    from splice.mapping.templates import TemplateEngine
    from splice.run.record_keys import FieldGetter, record_key_function

    engine = TemplateEngine()

    def field(name: str) -> object:
        return engine.compile_expression(f"{{{{ record.{name} }}}}", where=name)

    def getter(name: str) -> FieldGetter:
        return FieldGetter(field(name), "record", (name,))  # type: ignore[arg-type]

    def templated(key: str, version: str | None) -> object:
        return record_key_function(field(key),  # type: ignore[arg-type]
                                   None if version is None else field(version),  # type: ignore
                                   None)

    records = [{"id": "a1", "v": "2026-01-01"}, {"id": 7, "v": 3}, {"id": 1.5, "v": True},
               {"id": False, "v": "x"}, {"id": "a", "v": None}, {"id": "é ✓", "v": ""}]
    for version in ("v", None):
        fast = record_key_function(getter("id"), getter(version) if version else None, None)
        slow = templated("id", version)
        assert fast is not slow
        for record in records:
            assert fast(record) == slow(record), record  # type: ignore[operator]
        with pytest.raises(SpliceError):  # a missing key is explained by the template
            fast({"other": 1})
    keep = engine.compile_expression("{{ record.id != 'skip' }}", where="filter")
    filtered = record_key_function(getter("id"), None, keep)
    assert filtered({"id": "skip"}) is None and filtered({"id": "keep"}) == "keep"

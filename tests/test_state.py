"""State store, secrets and redaction.

The store tests run on SQLite and on PostgreSQL (``tests/pg.py``: ``SPLICE_TEST_POSTGRES_URL``
or the default server at 127.0.0.1:5432; a schema of its own per test, dropped afterwards).
Without a server the PostgreSQL variants skip, saying how to start one; under ``CI=true`` they
fail.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import stat
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from splice.errors import ConfigError
from splice.secrets import (
    REDACTOR,
    RedactingFilter,
    Redactor,
    SecretBox,
    _load_or_create_key_file,
    redact_headers,
    resolve_secret_ref,
)
from splice.store.database import Store, schema_version
from splice.store.ledger import PendingEvent, redact_step
from splice.store.migrations import MIGRATIONS, SCHEMA_VERSION

from . import pg


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("SPLICE_HOME", str(path))
    monkeypatch.delenv("SPLICE_SECRET_KEY", raising=False)
    monkeypatch.delenv("SPLICE_DATABASE_URL", raising=False)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, home: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        with pg.schema_url() as url:
            opened = Store.open(url)
            yield opened
            opened.close()
        return
    opened = Store.open()
    yield opened
    opened.close()


def _connect(store: Store, name: str = "hl", **secret: str) -> None:
    store.put_connection(name, connector="ghl_users", auth_type="oauth2",
                         base_url="http://127.0.0.1:1", config={"scopes": ["users.readonly"]},
                         secret=secret or {"access_token": "at-000000", "refresh_token": "rt-0000"})


# --------------------------------------------------------------------------- secrets


def test_key_file_is_created_0600_and_reused(home: Path) -> None:
    box = SecretBox.from_env()
    key_file = home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    token = box.encrypt({"api_key": "k-123456"})
    assert SecretBox.from_env().decrypt(token) == {"api_key": "k-123456"}
    assert key_file.read_bytes() == content


def test_concurrent_key_file_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path, barrier, keys = tmp_path / "secret.key", threading.Barrier(8), []

    def create() -> None:
        barrier.wait()
        keys.append(_load_or_create_key_file(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert path.read_bytes().strip() == keys[0]


def test_env_key_is_honoured_and_passphrases_are_derived(home: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key = SecretBox.generate_key()
    monkeypatch.setenv("SPLICE_SECRET_KEY", key)
    token = SecretBox.from_env().encrypt({"a": "b"})
    assert SecretBox(key).decrypt(token) == {"a": "b"}
    assert not (home / "secret.key").exists()

    monkeypatch.setenv("SPLICE_SECRET_KEY", "a long passphrase, not a fernet key")
    token = SecretBox.from_env().encrypt({"a": "b"})
    assert SecretBox.from_env().decrypt(token) == {"a": "b"}
    with pytest.raises(ConfigError):
        SecretBox(key).decrypt(token)


def test_wrong_key_is_a_config_error_without_secrets(home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = SecretBox.generate_key(), SecretBox.generate_key()
    monkeypatch.setenv("SPLICE_SECRET_KEY", first)
    with Store.open() as store:
        _connect(store, access_token="at-SECRET-VALUE")
    monkeypatch.setenv("SPLICE_SECRET_KEY", second)
    with Store.open() as store:
        record = store.get_connection("hl")
        assert record is not None and record.config["scopes"] == ["users.readonly"]
        with pytest.raises(ConfigError, match="key changed") as info:
            _ = record.secret
    text = str(info.value)
    assert "at-SECRET-VALUE" not in text and first not in text and second not in text


def test_secrets_are_only_stored_encrypted(home: Path) -> None:
    with Store.open() as store:
        _connect(store, access_token="PLAINTEXT-ACCESS-TOKEN-1", refresh_token="PLAIN-REFRESH-2")
        store.update_tokens("hl", {"refresh_token": "PLAIN-ROTATED-3"}, {"expires_at": 1})
        record = store.get_connection("hl")
        assert record is not None
        assert record.secret["refresh_token"] == "PLAIN-ROTATED-3"
        assert "PLAIN" not in repr(record)
        with pytest.raises(ConfigError, match="looks like a secret"):
            store.put_connection("x", connector="c", auth_type="api_key",
                                 config={"api_key": "oops-inline"})
    raw = b"".join(p.read_bytes() for p in home.glob("splice.db*"))
    assert raw  # the database (and its WAL) exist
    for plain in (b"PLAINTEXT-ACCESS-TOKEN-1", b"PLAIN-REFRESH-2", b"PLAIN-ROTATED-3",
                  b"oops-inline"):
        assert plain not in raw


def test_secret_references(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPLICE_TEST_CLIENT_SECRET", "cs-from-env-123")
    assert resolve_secret_ref({"$env": "SPLICE_TEST_CLIENT_SECRET"}) == "cs-from-env-123"
    assert "cs-from-env-123" in REDACTOR
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("cs-from-file-456\n")
    assert resolve_secret_ref({"$file": str(secret_file)}) == "cs-from-file-456"
    assert resolve_secret_ref("plain-value") == "plain-value"
    assert resolve_secret_ref({"not": "a ref"}) == {"not": "a ref"}

    monkeypatch.setenv("SPLICE_TEST_EMPTY_NAME_ONLY", "value-never-shown")
    monkeypatch.delenv("SPLICE_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match="SPLICE_TEST_MISSING") as info:
        resolve_secret_ref({"$env": "SPLICE_TEST_MISSING"})
    assert "value-never-shown" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown secret reference"):
        resolve_secret_ref({"$vault": "x"})


# --------------------------------------------------------------------------- redaction


def test_redactor_masks_registered_secrets() -> None:
    redactor = Redactor(["s3cr3t-value", "short"])
    redactor.add("s3cr3t-value-longer")
    redactor.add("p@ss/word +1")
    text = ("a=s3cr3t-value b=s3cr3t-value-longer c=short "
            "u=?p=p%40ss%2Fword%20%2B1&q=p%40ss%2Fword+%2B1")
    assert redactor.redact(text) == "a=*** b=*** c=short u=?p=***&q=***"
    assert redactor.redact_json({"k": ["x s3cr3t-value"], "n": 1}) == {"k": ["x ***"], "n": 1}


def test_redact_json_finds_secrets_through_one_search_of_the_json_text() -> None:
    redactor = Redactor(["tok-ÄÖ-123456"])
    clean = {"a": ["nothing here"], "n": 1}
    assert redactor.redact_json(clean) is clean  # no copy when there is nothing to mask
    assert redactor.absent_from_json('{"a":"nothing here"}')
    assert not redactor.absent_from_json('{"a":"x tok-ÄÖ-123456"}')
    assert redactor.redact_json({"tok-ÄÖ-123456": ["x tok-ÄÖ-123456"]}) == {"***": ["x ***"]}
    quoted = Redactor(['pa"ss\\word-99'])  # JSON text escapes it: the walk is used instead
    assert not quoted.absent_from_json('{"a":"pa\\"ss"}')
    assert quoted.redact_json({"a": ['x pa"ss\\word-99']}) == {"a": ["x ***"]}


def test_redact_headers() -> None:
    REDACTOR.add("leaky-value-987")
    headers = {
        "Authorization": "Bearer abc.def.ghi", "Cookie": "sid=1", "Set-Cookie": "sid=2",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": "k", "X-Auth-Token": "t",
        "X-Client-Secret": "s", "Idempotency-Key": "evt-1-step-2", "Version": "2021-07-28",
        "X-Echo": "got leaky-value-987",
    }
    assert redact_headers(headers) == {
        "Authorization": "Bearer ***", "Cookie": "***", "Set-Cookie": "***",
        "Proxy-Authorization": "Basic ***", "X-Api-Key": "***", "X-Auth-Token": "***",
        "X-Client-Secret": "***", "Idempotency-Key": "evt-1-step-2", "Version": "2021-07-28",
        "X-Echo": "got ***",
    }


def test_redacting_filter_masks_message_args_and_traceback() -> None:
    redactor = Redactor(["tok-LOGGED-1234"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("splice.test_state.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s in args", "tok-LOGGED-1234")
        logger.warning("inline tok-LOGGED-1234 in msg")
        try:
            raise ValueError("failed with tok-LOGGED-1234")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "tok-LOGGED-1234" not in out
    assert "token *** in args" in out and "inline *** in msg" in out
    assert "ValueError: failed with ***" in out


# --------------------------------------------------------------------------- schema


def test_sqlite_pragmas(store: Store) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_migrations_are_idempotent(home: Path) -> None:
    Store.open().close()
    with Store.open() as store:
        assert store.schema_version == SCHEMA_VERSION
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(schema_version)).scalar() \
                == len(MIGRATIONS)
            conn.execute(schema_version.insert().values(
                version=SCHEMA_VERSION + 1, description="from the future",
                applied_at=sa.func.current_timestamp()))
            conn.commit()
    with pytest.raises(ConfigError, match="newer"):
        Store.open()


def test_concurrent_first_opens_create_the_schema_once(home: Path) -> None:
    barrier, errors = threading.Barrier(4), []

    def open_store() -> None:
        barrier.wait()
        try:
            Store.open().close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with Store.open() as store:
        assert store.schema_version == SCHEMA_VERSION


def test_database_url_from_environment(tmp_path: Path, home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPLICE_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}")
    with Store.open() as store:
        store.set_cursor("r", "t", "c")
    assert (tmp_path / "elsewhere" / "x.db").exists()
    assert not (home / "splice.db").exists()
    with pytest.raises(ConfigError, match="unsupported database"):
        Store.open("mysql://user:pw@localhost/db")
    with Store.open("sqlite://") as memory:
        assert memory.get_cursor("r", "t") is None


# --------------------------------------------------------------------------- triggers


def test_seen_keys_dedupe(store: Store) -> None:
    keys = [f"id-{i}@v1" for i in range(1200)]
    assert store.filter_unseen("r", "t", keys) == set(keys)
    store.add_seen("r", "t", keys[:700] + keys[:10])  # duplicates are ignored
    store.add_seen("r", "t", keys[:5])
    assert store.filter_unseen("r", "t", keys) == set(keys[700:])
    assert store.filter_unseen("r", "other", keys[:3]) == set(keys[:3])
    assert store.seen_count("r", "t") == 700
    long_key = "x" * 5000
    store.add_seen("r", "t", [long_key])
    assert store.filter_unseen("r", "t", [long_key, "fresh"]) == {"fresh"}
    assert store.filter_unseen("r", "t", []) == set()


def test_cursor_and_initialisation(store: Store) -> None:
    assert store.get_cursor("r", "t") is None and not store.trigger_initialized("r", "t")
    store.set_cursor("r", "t", "2024-05-01T00:00:00Z")
    assert not store.trigger_initialized("r", "t")
    store.mark_initialized("r", "t")
    assert store.trigger_initialized("r", "t")
    assert store.get_cursor("r", "t") == "2024-05-01T00:00:00Z"
    store.advance_trigger("r", "t", seen=["a", "b"], cursor="2024-06-01T00:00:00Z")
    assert store.get_cursor("r", "t") == "2024-06-01T00:00:00Z"
    assert store.filter_unseen("r", "t", ["a", "c"]) == {"c"}
    store.reset_trigger("r", "t")
    assert store.get_cursor("r", "t") is None and not store.trigger_initialized("r", "t")
    assert store.filter_unseen("r", "t", ["a"]) == {"a"}


# --------------------------------------------------------------------------- ledger


def _write_event(store: Store, recipe: str, trigger: str, key: str, payload: Any,
                 run_id: str | None, *, status: str = "pending", error: str | None = None,
                 steps: dict[tuple[int, int], dict[str, Any]] | None = None,
                 keys: dict[str, tuple[int, int, str]] | None = None,
                 event_id: int | None = None) -> int:
    """Record an event the way a run does: through the ledger's group write."""
    event = PendingEvent(key, payload, run_id, id=event_id, status=status, error=error,
                         attempts=0 if status == "pending" else 1)
    for where, values in (steps or {}).items():
        event.steps[where] = redact_step({"run_id": run_id, **values})
    event.keys.update(keys or {})
    store.write_group(recipe, trigger, [event])
    assert event.id is not None
    return event.id


def test_events_steps_and_runs_round_trip(store: Store) -> None:
    REDACTOR.add("at-ledger-secret-42")
    run_id = store.start_run("tag-invoices", mode="once", recipe_path="recipes/tag.yaml")
    event_id = _write_event(
        store, "tag-invoices", "tag_updated", "t1@v1", {"tag": "VIP", "n": 3}, run_id,
        status="failed", error="step tag failed", steps={
            (0, -1): {"status": "succeeded", "step_id": "invoices", "idempotency_key": "k-1",
                      "request": {"method": "GET", "url": "http://x/?token=at-ledger-secret-42",
                                  "headers": {"Authorization": "Bearer at-ledger-secret-42",
                                              "Version": "1"}},
                      "output": {"records": [{"id": "inv-1"}]}},
            (1, 0): {"status": "failed", "step_id": "tag", "error": "401 for at-ledger-secret-42",
                     "attempts": 3}})
    store.finish_run(run_id, events_seen=5, events_new=1, events_failed=1, requests_made=7)

    step = store.get_step_result(event_id, 0)
    assert step is not None and step.output == {"records": [{"id": "inv-1"}]}
    assert step.request["headers"] == {"Authorization": "Bearer ***", "Version": "1"}
    assert step.request["url"] == "http://x/?token=***"
    failed_step = store.get_step_result(event_id, 1, 0)
    assert failed_step is not None and failed_step.error == "401 for ***"
    assert failed_step.attempts == 3
    assert store.get_step_result(event_id, 1) is None

    event = store.get_event(event_id)
    assert event is not None and event.payload == {"tag": "VIP", "n": 3}
    assert (event.status, event.attempts, event.last_error) == ("failed", 1, "step tag failed")
    assert [e.id for e in store.failed_events("tag-invoices")] == [event_id]
    assert store.failed_events("another-recipe") == []

    run = store.get_run(run_id[:8])
    assert run is not None and run.id == run_id and run.status == "failed"
    assert (run.events_seen, run.events_new, run.events_failed, run.requests_made) == (5, 1, 1, 7)
    assert [e.id for e in run.events] == [event_id]
    assert [(s.step_index, s.item_index) for s in run.step_results] == [(0, -1), (1, 0)]
    assert run.duration is not None and run.duration >= 0

    retry_id = store.start_run("tag-invoices", mode="retry")
    _write_event(store, "tag-invoices", "tag_updated", "t1@v1", None, retry_id,
                 event_id=event_id, status="succeeded", steps={(1, 0): {"status": "succeeded"}})
    store.finish_run(retry_id, events_seen=1)
    assert [r.id for r in store.list_runs()] == [retry_id, run_id]
    assert store.list_runs(recipe="nope") == []
    assert store.failed_events() == []
    retry = store.get_run(retry_id)
    assert retry is not None and retry.status == "succeeded"
    assert [(s.step_index, s.status) for s in retry.step_results] == [(1, "succeeded")]
    again = store.get_event(event_id)
    assert again is not None and (again.status, again.attempts) == ("succeeded", 2)


def test_dead_letters(store: Store) -> None:
    event_id = _write_event(store, "r", "t", "k", {}, None, status="failed", error="boom")
    store.dead_letter(event_id)
    assert [(d.event_id, d.reason) for d in store.dead_letters()] == [(event_id, "boom")]
    assert store.failed_events() == []
    assert store.requeue_dead_letter(event_id) is True
    assert store.requeue_dead_letter(event_id) is False
    assert [e.id for e in store.failed_events()] == [event_id]


def test_idempotency_keys(store: Store) -> None:
    event_id = _write_event(store, "r", "t", "k", {}, None,
                            keys={"evt-1-step-2": (2, -1, "reserved")})
    # Reserved but never completed (the process died mid-request): the key stays reserved.
    assert store.idempotency_key_status("evt-1-step-2") == "reserved"
    _write_event(store, "r", "t", "k", {}, None, event_id=event_id,
                 keys={"evt-1-step-2": (2, -1, "done")})
    assert store.idempotency_key_status("evt-1-step-2") == "done"
    assert store.idempotency_key_status("unknown") is None


def test_seen_keys_scale_linearly(store: Store) -> None:
    # A poller pages 100 keys at a time; 20k keys must not slow down as the table grows
    # (bench: ~55k keys/s on SQLite for 100k keys). The bound is loose for busy CI machines.
    keys = [f"rec-{i}@2024-05-01T00:00:00Z" for i in range(20_000)]
    started = time.perf_counter()
    for i in range(0, len(keys), 100):
        page = keys[i:i + 100]
        store.add_seen("r", "t", store.filter_unseen("r", "t", page))
    elapsed = time.perf_counter() - started
    assert store.seen_count("r", "t") == len(keys)
    assert elapsed < 20, f"{len(keys) / elapsed:.0f} keys/s"


# --------------------------------------------------------------------------- connections


def test_connection_crud(store: Store) -> None:
    _connect(store, access_token="at-crud-123456")
    record = store.get_connection("hl")
    assert record is not None and record.version == 1 and record.scopes == ["users.readonly"]
    assert record.secret == {"access_token": "at-crud-123456"}
    assert "at-crud-123456" not in repr(record)
    _connect(store, access_token="at-crud-replaced")
    replaced = store.get_connection("hl")
    assert replaced is not None and replaced.version == 2
    assert replaced.created_at == record.created_at
    assert [c.name for c in store.list_connections()] == ["hl"]
    assert store.delete_connection("hl") is True and store.delete_connection("hl") is False
    assert store.get_connection("hl") is None
    with pytest.raises(ConfigError, match="no connection named"):
        store.require_connection("hl")
    with pytest.raises(ConfigError, match="invalid connection name"):
        _connect(store, name="bad name/")


def test_update_tokens_is_a_compare_and_swap(store: Store) -> None:
    _connect(store, access_token="at-old-000", refresh_token="rt-old-000")
    assert store.update_tokens("hl", {"access_token": "at-new-111", "refresh_token": "rt-new-111"},
                               {"expires_at": 100, "status": "valid"}, expected_version=1)
    assert not store.update_tokens("hl", {"access_token": "at-lost-222"}, {},
                                   expected_version=1)
    record = store.get_connection("hl")
    assert record is not None and record.version == 2
    assert record.secret == {"access_token": "at-new-111", "refresh_token": "rt-new-111"}
    assert record.config == {"scopes": ["users.readonly"], "expires_at": 100, "status": "valid"}
    assert store.update_tokens("hl", {"refresh_token": None}, {"status": "reauth_required"})
    record = store.get_connection("hl")
    assert record is not None and record.version == 3 and record.status == "reauth_required"
    assert record.secret == {"access_token": "at-new-111"}
    with pytest.raises(ConfigError):
        store.update_tokens("missing", {"a": "b"})


def _refresh_worker(url: str, key: str, barrier: object, results: object) -> None:
    os.environ["SPLICE_SECRET_KEY"] = key
    try:
        with Store.open(url) as store:
            barrier.wait(30)  # type: ignore[attr-defined]
            with store.locked_refresh("hl") as record:
                entered = time.time()
                time.sleep(0.3)
                rotated = store.update_tokens("hl", {"refresh_token": f"rt-{os.getpid()}"},
                                              {"last_refresh_at": entered},
                                              expected_version=record.version)
                left = time.time()
        results.put((entered, left, record.version, rotated))  # type: ignore[attr-defined]
    except Exception as exc:
        results.put((0.0, 0.0, -1, repr(exc)))  # type: ignore[attr-defined]


def test_locked_refresh_serialises_processes(store: Store,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key = SecretBox.generate_key()
    monkeypatch.setenv("SPLICE_SECRET_KEY", key)
    store = Store(store.engine)  # picks up the key set above
    _connect(store)
    url = store.engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_refresh_worker, args=(url, key, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    try:
        got = sorted(results.get(timeout=45) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    (enter1, exit1, version1, ok1), (enter2, exit2, version2, ok2) = got
    assert ok1 is True and ok2 is True, got
    assert exit1 <= enter2, "the two refreshes overlapped"
    assert (version1, version2) == (1, 2)  # the second saw the first one's rotation
    record = store.get_connection("hl")
    assert record is not None and record.version == 3
    assert record.config["last_refresh_at"] == enter2
    assert record.secret["refresh_token"] == f"rt-{procs[0].pid}" or \
        record.secret["refresh_token"] == f"rt-{procs[1].pid}"


def test_locked_refresh_commits_writes_even_when_the_block_fails(store: Store) -> None:
    _connect(store)
    with pytest.raises(RuntimeError, match="after rotation"):
        with store.locked_refresh("hl") as record:
            assert store.update_tokens("hl", {"refresh_token": "rt-rotated-9"},
                                       expected_version=record.version)
            raise RuntimeError("after rotation")
    rotated = store.get_connection("hl")
    assert rotated is not None and rotated.secret["refresh_token"] == "rt-rotated-9"
    with pytest.raises(ConfigError):
        with store.locked_refresh("missing"):
            pass


def test_threads_of_one_process_take_the_sqlite_write_lock_in_turn(home: Path) -> None:
    store = Store.open()
    inside, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with store.batch():  # a write transaction, held open
            store.mark_initialized("r", "t")
            with store.write_gate():  # the holder may enter again (nested writes join)
                pass
            inside.set()
            release.wait(10)
            order.append("holder committed")

    def writer() -> None:
        store.mark_initialized("r2", "t")
        order.append("writer wrote")

    threads = [threading.Thread(target=holder), threading.Thread(target=writer)]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()
    threads[1].join(0.3)
    assert threads[1].is_alive() and order == []  # waiting, not failing
    # ... at the gate (woken when the holder commits), not polling in SQLite's busy handler
    frame = sys._current_frames()[threads[1].ident]  # type: ignore[index]
    waiting_in = [f.f_code.co_name for f, _ in traceback.walk_stack(frame)]
    assert "write_gate" in waiting_in and "_sqlite_on_begin" not in waiting_in
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["holder committed", "writer wrote"]
    assert store.trigger_initialized("r", "t") and store.trigger_initialized("r2", "t")
    store.close()

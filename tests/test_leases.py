"""Leases, atomic event claims and the retry schedule in the state database, on SQLite and
PostgreSQL (each PostgreSQL test in a schema of its own, see ``tests/pg.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from splice.errors import LeaseLost
from splice.store.database import Store
from splice.store.leases import Lease, LeaseInfo, acquire, current_lease, try_acquire
from splice.store.migrations import SCHEMA_VERSION
from splice.store.tables import now

from . import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, splice_home: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with pg.schema_url() as scoped:
            yield scoped
        return
    yield f"sqlite:///{splice_home / 'splice.db'}"


def _race(n: int, work) -> list:  # type: ignore[no-untyped-def]
    """Run ``work(i)`` on ``n`` threads released together; their results."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    return results


def test_of_several_acquirers_at_once_exactly_one_holds_the_lease(url: str) -> None:
    stores = [Store.open(url) for _ in range(4)]
    try:
        got = _race(4, lambda i: try_acquire(stores[i], "trigger:r:t", ttl=30,
                                             detail=f"run {i}"))
        held = [g for g in got if isinstance(g, Lease)]
        assert len(held) == 1
        others = [g for g in got if isinstance(g, LeaseInfo)]
        assert len(others) == 3 and {o.holder for o in others} == {held[0].holder}
        assert "since" in others[0].describe() and "(pid " in others[0].describe()
        held[0].release()
        assert current_lease(stores[0], "trigger:r:t") is None
        assert isinstance(try_acquire(stores[1], "trigger:r:t", ttl=30), Lease)
    finally:
        for s in stores:
            s.close()


def test_an_expired_lease_is_taken_over_and_its_old_holder_knows(url: str) -> None:
    with Store.open(url) as a, Store.open(url) as b:
        first = try_acquire(a, "trigger:r:t", ttl=0.3)
        assert isinstance(first, Lease)
        assert isinstance(try_acquire(b, "trigger:r:t", ttl=0.3), LeaseInfo)
        time.sleep(0.35)  # no heartbeat: it expires
        second = try_acquire(b, "trigger:r:t", ttl=30)
        assert isinstance(second, Lease)
        assert first.lost
        with pytest.raises(LeaseLost, match="another process may have taken over"):
            first.check()
        assert first.renew() is False  # the row is the new holder's now
        first.release()  # does not remove the new holder's lease
        info = current_lease(a, "trigger:r:t")
        assert info is not None and info.holder == second.holder
        second.release()


def test_the_heartbeat_keeps_a_lease_past_its_ttl(url: str) -> None:
    with Store.open(url) as a, Store.open(url) as b:
        lease = try_acquire(a, "trigger:r:t", ttl=0.6)
        assert isinstance(lease, Lease)
        lease.start_heartbeat(0.1)
        time.sleep(1.0)
        assert isinstance(try_acquire(b, "trigger:r:t", ttl=0.6), LeaseInfo)
        assert not lease.lost
        lease.check()
        lease.release()
        waited = []
        got = acquire(b, "trigger:r:t", wait=True, ttl=5, on_wait=waited.append)
        assert isinstance(got, Lease) and waited == []
        got.release()


def test_wait_returns_once_the_holder_is_gone(url: str) -> None:
    with Store.open(url) as a, Store.open(url) as b:
        lease = try_acquire(a, "trigger:r:t", ttl=0.5)
        assert isinstance(lease, Lease)
        waited: list[LeaseInfo] = []
        started = time.monotonic()
        got = acquire(b, "trigger:r:t", wait=True, ttl=5, on_wait=waited.append, poll=0.05)
        assert isinstance(got, Lease) and len(waited) == 1
        assert 0.3 <= time.monotonic() - started < 5
        got.release()


def test_claims_of_new_events_are_atomic(url: str) -> None:
    """Four processes' worth of claims on one page at once: every event exactly once."""
    stores = [Store.open(url) for _ in range(4)]
    try:
        run_ids = [s.start_run("r") for s in stores]
        records = [(f"k{i}@v1", {"id": i}) for i in range(300)]
        got = _race(4, lambda i: stores[i].claim_new_events("r", "t", run_ids[i], records))
        claimed = [key for part in got for key in part]
        assert sorted(claimed) == sorted(k for k, _ in records)  # all, none twice
        assert stores[0].filter_unseen("r", "t", [k for k, _ in records]) == set()
        assert stores[0].count_events("r", "t", "pending") == 300
        assert stores[1].claim_new_events("r", "t", run_ids[1], records) == {}
    finally:
        for s in stores:
            s.close()


def test_pending_and_failed_events_are_claimed_once_by_compare_and_swap(url: str) -> None:
    stores = [Store.open(url) for _ in range(3)]
    try:
        first = stores[0].start_run("r")
        ids = stores[0].claim_new_events("r", "t", first, [(f"k{i}", {}) for i in range(50)])
        runs = [s.start_run("r") for s in stores]
        for i, s in enumerate(stores):  # each claimer lives: it holds a lease of its own
            assert isinstance(try_acquire(s, f"worker:{i}", holder=runs[i], ttl=60), Lease)
        got = _race(3, lambda i: stores[i].claim_pending("r", "t", runs[i]))
        assert sorted(e.id for part in got for e in part) == sorted(ids.values())
        assert stores[1].claim_pending("r", "t", runs[1]) == []  # a live run's: not taken
        with stores[0].engine.begin() as conn:  # half fail: due now, half due later
            from splice.store.tables import events

            conn.execute(events.update().where(events.c.id.in_(list(ids.values())[:25]))
                         .values(status="failed", next_attempt_at=now() - timedelta(seconds=1)))
            conn.execute(events.update().where(events.c.id.in_(list(ids.values())[25:]))
                         .values(status="failed", next_attempt_at=now() + timedelta(hours=1)))
        got = _race(3, lambda i: stores[i].claim_failed("r", "t", runs[i]))
        due = sorted(e.id for part in got for e in part)
        assert due == sorted(list(ids.values())[:25])
        assert stores[0].next_retry("r", "t")[0] == 25
        later = stores[0].claim_failed("r", "t", runs[0], due=False, limit=10)
        assert len(later) == 10 and all(e.status == "pending" for e in later)
    finally:
        for s in stores:
            s.close()


def test_dead_letters_carry_the_class_and_are_requeued_due_now(url: str) -> None:
    with Store.open(url) as store:
        run = store.start_run("r")
        ids = store.claim_new_events("r", "t", run, [("a@1", {}), ("b@1", {})])
        store.dead_letter(ids["a@1"], "HTTP 400: nope", error_class="client")
        (letter,) = store.dead_letters("r")
        assert (letter.key, letter.error_class, letter.reason) == ("a@1", "client",
                                                                   "HTTP 400: nope")
        assert store.requeue_dead(recipe="other") == []
        assert store.requeue_dead([ids["a@1"]]) == [ids["a@1"]]
        assert store.dead_letters() == []
        (again,) = store.claim_failed("r", "t", store.start_run("r"))
        assert again.id == ids["a@1"] and again.attempts == 0


def test_a_version_3_database_is_migrated(splice_home: Path) -> None:
    path = splice_home / "splice.db"
    Store.open().close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # what splice before leases left
        for column in ("next_attempt_at", "error_class"):
            conn.exec_driver_sql(f"ALTER TABLE events DROP COLUMN {column}")
        conn.exec_driver_sql("ALTER TABLE dead_letters DROP COLUMN error_class")
        conn.exec_driver_sql("ALTER TABLE trigger_state DROP COLUMN source")
        conn.exec_driver_sql("DROP TABLE leases")
        conn.exec_driver_sql("DROP TABLE circuit_breakers")
        for table in ("registered_recipes", "inbox", "serve_instances"):  # version 5 (serve)
            conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql("DROP TABLE seen")  # version 6 (compact seen keys)
        for table in ("disabled_endpoints", "login_tokens"):  # version 7 (dashboard)
            conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql(
            'CREATE TABLE seen_keys (recipe VARCHAR NOT NULL, "trigger" VARCHAR NOT NULL, '
            "key VARCHAR NOT NULL, first_seen_at TIMESTAMP NOT NULL DEFAULT "
            'CURRENT_TIMESTAMP, PRIMARY KEY (key, recipe, "trigger"))')
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version >= 4")
    engine.dispose()
    with Store.open() as store:
        assert store.schema_version == SCHEMA_VERSION == 8
        run = store.start_run("r")
        assert store.claim_new_events("r", "t", run, [("k", {})])
        assert isinstance(try_acquire(store, "x", ttl=1), Lease)


def test_token_writes_commit_with_synchronous_full(splice_home: Path) -> None:
    """A rotated refresh token is fsync'd before it is used: SQLite ``synchronous=FULL`` for
    the refresh transaction (2), ``NORMAL`` (1) for everything else."""
    seen: list[int] = []
    with Store.open() as store:
        store.put_connection("hl", connector="ghl_users", auth_type="oauth2",
                             config={}, secret={"refresh_token": "rt-1"})

        def on_commit(conn: sa.Connection) -> None:
            seen.append(conn.exec_driver_sql("PRAGMA synchronous").scalar())

        sa.event.listen(store.engine, "commit", on_commit)
        with store.locked_refresh("hl"):
            store.update_tokens("hl", {"refresh_token": "rt-2"})
        store.update_tokens("hl", {"refresh_token": "rt-3"})
        store.set_cursor("r", "t", "c")
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    assert seen == [2, 2, 1]

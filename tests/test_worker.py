"""Recipes on Celery workers: real PostgreSQL, a real Redis (one per test), real
``splice worker`` processes and ``splice serve`` with ``SPLICE_BROKER_URL``.

Writes are counted where they arrive: a fake CRM over loopback that records every POST of a
note with its source id and ``Idempotency-Key``. For the 1,000-event test it does not dedupe
by key (every arrival is a note), so a double send would show.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from splice.sandbox import free_port, serve
from splice.store.database import Store

from . import pg
from .conftest import _FakeCrmPlugin, register_test_plugin
from .fakeapi import TOKEN, create_app
from .redis_service import SpliceProcess, private_redis, worker
from .servekit import I2G_SECRET, ServeProcess, i2g_event, i2g_headers, wait_for
from .test_serve_process import POLLERS, WEBHOOK_RECIPE, slow
from .test_signatures import register_recipes


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """PostgreSQL (a schema of its own), a private Redis, the fake CRM with 20 ms writes and
    its connection, the Invoice2go webhook connection and recipe. Leases of a killed
    process expire after 3 s; unfinished work is sent again after 3 s."""
    with pg.schema_url() as url, private_redis(tmp_path / "redis") as redis_server:
        monkeypatch.setenv("SPLICE_DATABASE_URL", url)
        monkeypatch.setenv("SPLICE_BROKER_URL", redis_server.url)
        monkeypatch.setenv("SPLICE_LEASE_TTL", "3")
        register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
        crm = create_app()
        crm.state.honour_idempotency = False  # count every arrival
        procs: list[SpliceProcess | ServeProcess] = []
        with serve(slow(crm, 0.02)) as crm_url:
            store = Store.open()
            store.put_connection("crm", connector="fakecrm", auth_type="bearer",
                                 base_url=crm_url, config={"allow_private_network": True},
                                 secret={"token": TOKEN})
            try:
                yield {"store": store, "crm": crm, "tmp": tmp_path, "redis": redis_server,
                       "procs": procs}
            finally:
                for proc in procs:
                    proc.close()
                store.close()


def _webhooks(fleet: dict[str, Any], port: int) -> None:
    fleet["store"].put_connection(
        "my-invoice2go", connector="invoice2go", auth_type="oauth2",
        base_url="http://127.0.0.1:9",
        config={"webhook_subscription": {"id": "sub-1", "events": ["client.created"],
                                         "url": f"http://127.0.0.1:{port}/hooks/my-invoice2go"}},
        secret={"webhook_secret": I2G_SECRET})
    register_recipes(fleet["store"], fleet["tmp"], WEBHOOK_RECIPE)


def _start(fleet: dict[str, Any], workers: int, concurrency: int = 4, serves: int = 1,
           webhooks: bool = True) -> tuple[list[ServeProcess], list[SpliceProcess]]:
    """Serve processes and workers, started and ready (the webhook recipe registered
    first)."""
    tmp, procs = fleet["tmp"], fleet["procs"]
    ports = [free_port() for _ in range(serves)]
    if webhooks:
        _webhooks(fleet, ports[0])
    started_serves = []
    for i, port in enumerate(ports):
        s = ServeProcess(port, "--requeue-after", "3", log=tmp / f"serve{i}.log")
        procs.append(s)
        started_serves.append(s)
    started_workers = []
    for i in range(workers):
        w = worker("-c", str(concurrency), "-n", f"w{i}@%h", log=tmp / f"worker{i}.log")
        procs.append(w)
        started_workers.append(w)
    for s in started_serves:
        s.wait_ready(timeout=30)
    for w in started_workers:
        w.wait_ready("splice worker ready", timeout=40)
    return started_serves, started_workers


def _send(url: str, ids: list[str], threads: int = 4) -> dict[str, int]:
    def one(client: httpx.Client, cid: str) -> tuple[str, int]:
        event = i2g_event("client.created", {"id": cid, "name": f"Client {cid}"},
                          event_id=f"evt-{cid}")
        body = json.dumps(event).encode()
        for _ in range(20):  # a sender retries what was not acknowledged
            try:
                status = client.post(f"{url}/hooks/my-invoice2go", content=body,
                                     headers=i2g_headers(body, event)).status_code
            except httpx.HTTPError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        return cid, status

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(lambda cid: one(client, cid), ids))


def _arrivals(crm: Any) -> Counter[str]:
    return Counter(n["subject"] for n in crm.state.notes)


def _state(store: Store) -> dict[str, int]:
    """Events by status, and inbox rows by status (``inbox_new``, ``inbox_done``)."""
    with store._read() as conn:
        out = dict(conn.exec_driver_sql(
            "SELECT status, count(*) FROM events GROUP BY status").all())
        for status, n in conn.exec_driver_sql(
                "SELECT status, count(*) FROM inbox GROUP BY status").all():
            out[f"inbox_{status}"] = n
    return out


def _wait_done(store: Store, count: int, timeout: float) -> None:
    """Until ``count`` events succeeded and no inbox row waits (bounded; says where it
    stood)."""
    deadline = time.monotonic() + timeout
    while True:
        state = _state(store)
        if state.get("succeeded") == count and not state.get("inbox_new") and \
                set(state) <= {"succeeded", "inbox_done"}:
            return
        if time.monotonic() > deadline:
            with store._read() as conn:
                queued = conn.exec_driver_sql(
                    "SELECT min(enqueued_at), max(enqueued_at), now() FROM inbox "
                    "WHERE status = 'new'").all()
            raise AssertionError(f"not done after {timeout}s: {state}; new rows sent "
                                 f"between {queued}")
        time.sleep(0.25)


def test_1000_events_through_3_workers_each_action_once(fleet: dict[str, Any]) -> None:
    (proc,), _workers = _start(fleet, workers=3, concurrency=6)
    ids = [f"c{i:04d}" for i in range(1000)]
    answers = _send(proc.url, ids, threads=6)
    assert set(answers.values()) == {200}, Counter(answers.values())
    _wait_done(fleet["store"], 1000, timeout=60)
    time.sleep(0.5)  # a late double send would have arrived by now
    arrivals = _arrivals(fleet["crm"])
    assert set(arrivals) == {f"client {cid}" for cid in ids}
    assert set(arrivals.values()) == {1}, [k for k, v in arrivals.items() if v > 1][:5]
    with fleet["store"]._read() as conn:
        by_host = conn.exec_driver_sql(
            "SELECT count(DISTINCT r.id) FROM runs r WHERE r.mode = 'webhook'").scalar()
    assert by_host and by_host >= 100  # the work was spread over many worker runs
    metrics = httpx.get(f"{proc.url}/metrics").text
    sent = next(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith('splice_tasks_sent_total{task="deliver"}'))
    assert 1000 / 8 <= sent <= 1000  # up to 8 deliveries a message


def test_kill_9_one_worker_mid_run_still_once_each(fleet: dict[str, Any]) -> None:
    crm = fleet["crm"]
    crm.state.honour_idempotency = True  # as the real APIs do: a resent key applies once
    crm.state.delay = 0.05  # writes answer late: the killed worker has requests in flight
    (proc,), workers = _start(fleet, workers=2, concurrency=4)
    ids = [f"k{i:03d}" for i in range(200)]
    assert set(_send(proc.url, ids).values()) == {200}
    wait_for(lambda: len(crm.state.notes) >= 40, timeout=30)
    workers[0].kill9()
    assert len(crm.state.notes) < 200, "everything was done before the kill: nothing tested"
    _wait_done(fleet["store"], 200, timeout=45)
    time.sleep(0.5)
    applied = _arrivals(crm)
    assert set(applied) == {f"client {cid}" for cid in ids}  # nothing lost
    assert set(applied.values()) == {1}  # nothing applied twice
    assert len(crm.state.idem) == 200  # one key per action, whoever sent it
    posts = sum(1 for entry in crm.state.log if entry[0] == "POST")
    # only what the killed worker had in flight (4 threads) was sent again, same key
    assert 200 <= posts <= 204, posts
    assert "splice worker ready" in workers[1].output()


def test_redis_stopped_5s_mid_run_recovers_nothing_lost(fleet: dict[str, Any]) -> None:
    crm, redis_server = fleet["crm"], fleet["redis"]
    crm.state.delay = 0.02
    (proc,), _workers = _start(fleet, workers=2, concurrency=4)
    first = [f"r{i:03d}" for i in range(150)]
    assert set(_send(proc.url, first).values()) == {200}
    wait_for(lambda: len(crm.state.notes) >= 20, timeout=30)
    redis_server.stop()  # every queued message is gone with it
    during = [f"d{i:03d}" for i in range(50)]
    assert set(_send(proc.url, during).values()) == {200}  # serve still stores and answers
    time.sleep(5.0)
    redis_server.start()
    _wait_done(fleet["store"], 200, timeout=45)
    time.sleep(0.5)
    arrivals = _arrivals(crm)
    assert set(arrivals) == {f"client {cid}" for cid in first + during}
    assert set(arrivals.values()) == {1}, [k for k, v in arrivals.items() if v > 1][:5]
    metrics = httpx.get(f"{proc.url}/metrics").text
    assert "splice_broker_up 1.0" in metrics
    assert 'splice_requeued_total{kind="delivery"}' in metrics  # the reconciler re-sent


def test_two_schedulers_poll_each_recipe_once_per_interval(fleet: dict[str, Any]) -> None:
    store, crm = fleet["store"], fleet["crm"]
    register_recipes(store, fleet["tmp"], POLLERS)
    serves, _workers = _start(fleet, workers=2, concurrency=4, serves=2, webhooks=False)
    started = time.time()
    time.sleep(6.0)
    leaders = [httpx.get(f"{s.url}/metrics").text.count("splice_scheduler_leader 1.0")
               for s in serves]
    for s in serves:
        assert s.terminate()[0] == 0
    elapsed = time.time() - started
    assert sorted(leaders) == [0, 1], leaders  # one scheduler active, the other standing by
    with store._read() as conn:
        runs = conn.execute(sa.text("SELECT recipe, started_at, finished_at FROM runs "
                                    "WHERE mode = 'serve' ORDER BY started_at")).all()
    by_recipe: dict[str, list[tuple[datetime, datetime]]] = {}
    for recipe, start, end in runs:
        by_recipe.setdefault(recipe, []).append((start, end))
    assert sorted(by_recipe) == ["Poller 0", "Poller 1", "Poller 2"]
    for recipe, polls in by_recipe.items():
        gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(polls, polls[1:], strict=False)]
        # a poll starts when a worker takes its message, so starts drift by the queue's
        # latency; two polls for one interval would start together
        assert all(g >= 0.5 for g in gaps), (recipe, gaps)
        assert all(b[0] >= a[1] for a, b in zip(polls, polls[1:], strict=False)), recipe
        assert 3 <= len(polls) <= elapsed + 1, (recipe, len(polls))  # one per 1 s interval
    assert crm.state.notes == []  # the first poll of each remembered what exists


def test_worker_and_serve_say_clearly_when_the_broker_is_missing_or_away(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import invoke

    monkeypatch.delenv("SPLICE_BROKER_URL", raising=False)
    result = invoke("worker")
    assert result.exit_code == 2
    assert "SPLICE_BROKER_URL is not set" in result.output and "redis-server" in result.output
    monkeypatch.setenv("SPLICE_BROKER_URL", f"redis://:pw-secret-1@127.0.0.1:{free_port()}/0")
    for args in (["worker"], ["serve", "--port", str(free_port())]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "does not answer" in result.output
        assert "pw-secret-1" not in result.output  # the password is never shown
    monkeypatch.setenv("SPLICE_BROKER_URL", "amqp://guest@127.0.0.1//")
    result = invoke("worker")
    assert result.exit_code == 2 and "must be a redis:// URL" in result.output
    assert "--concurrency" in invoke("worker", "--help").output

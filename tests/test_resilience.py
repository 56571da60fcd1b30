"""Timeouts, retries and rate budgets against a loopback fault server (fake clock, no real
back-off sleeps except where a test says so)."""

from __future__ import annotations

import email.utils
import multiprocessing
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from splice.errors import HTTPError, SpliceError
from splice.http.client import ApiClient, Attempt, backoff
from splice.http.ratelimit import (
    BudgetExhausted,
    Window,
    budget_file,
    budget_key,
    limiter_for,
    normalize,
    parse_period,
    reset_shared_buckets,
)
from splice.http.request import prepare_call
from splice.model.manifest import Connector, load_manifest
from splice.sandbox import free_port, serve

from .faultserver import arrivals, create_app

T0 = 1_800_000_000.0


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def connector(**extra: Any) -> Connector:
    op_input = {"type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "value": {"type": "integer"}}}
    data: dict[str, Any] = {
        "id": "flaky", "name": "Flaky", "version": "1", "base_url": "https://flaky.invalid",
        "auth": {"type": "none"}, "idempotency": {"header": "Idempotency-Key"},
        "operations": {
            "fetch": {"method": "GET", "path": "/flaky/{name}", "input": op_input,
                      "output": {"type": "object"}},
            "fetch_quick": {"method": "GET", "path": "/flaky/{name}", "input": op_input,
                            "output": {"type": "object"}, "timeout": 0.2},
            "create": {"method": "POST", "path": "/flaky/{name}", "input": op_input,
                       "output": {"type": "object"}},
        },
        **extra,
    }
    return load_manifest(data)


@pytest.fixture(autouse=True)
def fresh_buckets() -> Iterator[None]:
    reset_shared_buckets()
    yield
    reset_shared_buckets()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, str]]:
    app = create_app()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def fault(server: tuple[Any, str]) -> Iterator[tuple[Any, str]]:
    app, url = server
    app.state.log.clear()
    app.state.scripts.clear()
    yield app, url


class Harness:
    """A client with a fake clock, recording every attempt the way --verbose sees it."""

    def __init__(self, base_url: str, conn: Connector | None = None, *,
                 limiter: Any = None, clock: FakeClock | None = None, **kwargs: Any) -> None:
        self.conn = conn or connector()
        self.clock = clock or FakeClock()
        self.seen: list[tuple[float, Attempt]] = []
        self.client = ApiClient(self.conn, base_url=base_url, sleep=self.clock.sleep,
                                clock=self.clock, limiter=limiter, on_request=self._hook,
                                **kwargs)

    def _hook(self, request: httpx.Request, response: httpx.Response | None,
              attempt: Attempt) -> None:
        self.seen.append((self.clock(), attempt))

    def call(self, op_id: str = "fetch", name: str = "x", key: str | None = None,
             **payload: Any) -> Any:
        op = self.conn.operation(op_id)
        call = prepare_call(op, self.conn, {"name": name, **payload},
                            base_url=self.client.base_url, idempotency_key=key)
        return self.client.send(op, call)


# --------------------------------------------------------------------------- retries


def test_429_retry_after_seconds_is_honoured_between_attempts(fault):
    app, url = fault
    app.state.scripts["a"] = [{"status": 429, "headers": {"Retry-After": "3"}},
                              {"status": 429, "headers": {"Retry-After": "2"}}]
    h = Harness(url)
    result = h.call(name="a")
    assert result.response.status_code == 200
    assert h.clock.sleeps == [3.0, 2.0]
    times = [t for t, _ in h.seen]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [3.0, 2.0]
    assert [a.status for a in result.attempts] == [429, 429, 200]
    assert [a.next_wait for a in result.attempts] == [3.0, 2.0, 0.0]
    assert result.attempts[1].waited == 3.0
    assert len(arrivals(app, "/flaky/a")) == 3


def test_retry_after_http_date_is_honoured(fault):
    app, url = fault
    when = email.utils.formatdate(T0 + 7, usegmt=True)
    app.state.scripts["d"] = [{"status": 503, "headers": {"Retry-After": when}}]
    h = Harness(url)
    assert h.call(name="d").response.status_code == 200
    assert h.clock.sleeps == [7.0]


def test_retry_after_longer_than_the_cap_stops_instead_of_waiting(fault):
    app, url = fault
    app.state.scripts["long"] = [{"status": 429, "headers": {"Retry-After": "3600"}}]
    h = Harness(url)
    with pytest.raises(BudgetExhausted) as info:
        h.call(name="long")
    assert "asked to wait 1 h" in str(info.value)
    assert info.value.exit_code == 1 and info.value.retry_after == 3600
    assert h.clock.sleeps == []
    assert len(arrivals(app, "/flaky/long")) == 1


def test_503_then_success_waits_a_jittered_backoff(fault):
    app, url = fault
    app.state.scripts["s"] = [{"status": 503}]
    h = Harness(url)
    result = h.call(name="s")
    assert result.json()["ok"] is True
    assert [a.status for a in result.attempts] == [503, 200]
    assert len(h.clock.sleeps) == 1 and 0.25 <= h.clock.sleeps[0] <= 0.5


def test_backoff_is_exponential_jittered_and_capped():
    assert backoff(1, rng=lambda lo, hi: lo) == 0.25
    assert backoff(1, rng=lambda lo, hi: hi) == 0.5
    assert backoff(3, rng=lambda lo, hi: hi) == 2.0
    assert backoff(30, rng=lambda lo, hi: hi) == 60.0
    assert 30.0 <= backoff(30) <= 60.0


def test_gives_up_after_max_attempts_with_the_last_status(fault):
    app, url = fault
    app.state.scripts["down"] = [{"status": 502}] * 10
    h = Harness(url)
    with pytest.raises(HTTPError) as info:
        h.call(name="down")
    assert info.value.status == 502
    assert len(arrivals(app, "/flaky/down")) == 4
    assert len(h.clock.sleeps) == 3
    assert h.clock.sleeps[0] < h.clock.sleeps[2]  # 0.25-0.5 s, then 1-2 s


def test_client_errors_are_not_retried(fault):
    app, url = fault
    app.state.scripts["bad"] = [{"status": 400, "json": {"message": "nope"}}]
    h = Harness(url)
    with pytest.raises(HTTPError, match="HTTP 400: nope"):
        h.call(name="bad")
    assert len(arrivals(app, "/flaky/bad")) == 1 and h.clock.sleeps == []


def test_connection_reset_mid_body_is_retried(fault):
    app, url = fault
    app.state.scripts["r"] = [{"reset": True}]
    h = Harness(url)
    result = h.call(name="r")
    assert result.json()["ok"] is True
    first = result.attempts[0]
    assert first.status is None and first.error in ("RemoteProtocolError", "ReadError")
    assert first.sent is True
    assert len(arrivals(app, "/flaky/r")) == 2


def test_read_timeout_from_the_connector_is_enforced_and_retried(fault):
    app, url = fault
    app.state.scripts["slow"] = [{"hang": 1.0}]
    h = Harness(url, connector(timeouts={"read": 0.2}))
    started = time.monotonic()
    result = h.call(name="slow")
    assert time.monotonic() - started < 0.9
    assert [a.error for a in result.attempts] == ["ReadTimeout", None]


def test_operation_timeout_overrides_the_connector_default(fault):
    app, url = fault
    app.state.scripts["slow2"] = [{"hang": 1.0}]
    h = Harness(url, max_attempts=1)  # connector default read timeout: 30 s
    started = time.monotonic()
    with pytest.raises(HTTPError, match="network error after 1 attempt.*ReadTimeout"):
        h.call("fetch_quick", name="slow2")
    assert time.monotonic() - started < 0.9


def test_default_timeouts_are_always_on():
    client = ApiClient(connector(), base_url="http://127.0.0.1:9")
    assert client.client.timeout == httpx.Timeout(connect=10.0, read=30.0, write=30.0,
                                                  pool=10.0)
    client.close()


def test_post_without_idempotency_key_is_not_retried_after_it_was_sent(fault):
    app, url = fault
    app.state.scripts["p"] = [{"status": 503}]
    app.state.scripts["p2"] = [{"reset": True}]
    h = Harness(url)
    with pytest.raises(HTTPError) as info:
        h.call("create", name="p", value=1)
    assert info.value.status == 503
    with pytest.raises(HTTPError, match="network error after 1 attempt") as info:
        h.call("create", name="p2", value=1)
    assert "may have reached the API" in str(info.value)
    assert len(arrivals(app, "/flaky/p")) == 1 and len(arrivals(app, "/flaky/p2")) == 1
    assert h.clock.sleeps == []


def test_post_with_idempotency_key_is_retried_with_the_same_key(fault):
    app, url = fault
    app.state.scripts["k"] = [{"status": 503}, {"reset": True}]
    h = Harness(url)
    assert h.call("create", name="k", key="key-1", value=1).json()["ok"] is True
    keys = [a.headers.get("idempotency-key") for a in arrivals(app, "/flaky/k")]
    assert keys == ["key-1"] * 3


def test_post_429_is_retried_because_the_api_did_not_process_it(fault):
    app, url = fault
    app.state.scripts["q"] = [{"status": 429, "headers": {"Retry-After": "1"}}]
    h = Harness(url)
    assert h.call("create", name="q", value=1).json()["ok"] is True
    assert len(arrivals(app, "/flaky/q")) == 2


def test_post_is_retried_when_the_connection_was_refused():
    h = Harness(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(HTTPError, match="network error after 4 attempt.*ConnectError"):
        h.call("create", value=1)
    assert [a.sent for _, a in h.seen] == [False] * 4
    assert len(h.clock.sleeps) == 3


def test_every_attempt_is_logged_by_verbose_and_counted_on_the_step(fakecrm, monkeypatch):
    from splice.store.database import Store

    from .conftest import FIXTURES, _FakeCrmPlugin, invoke, register_test_plugin

    monkeypatch.setenv("SPLICE_LOAD_PLUGINS", "")  # only the fake CRM (faster)
    register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")

    fakecrm.app.state.fail["/notes"] = {"status": 503, "count": 1}
    result = invoke("--verbose", "run", str(FIXTURES / "notes.yaml"), "--backfill")
    assert result.exit_code == 0, result.output
    assert "-> 503 (attempt 1" in result.output
    assert "-> 201 (attempt 2" in result.output
    store = Store.open()
    with store.engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT attempts FROM step_results WHERE step_index = 0 "
                                        "ORDER BY id")).scalars().all()
    store.close()
    assert attempts == [2] + [1] * 24


# --------------------------------------------------------------------------- rate budgets


def test_windows_parse_and_normalise():
    assert parse_period("10s") == 10 and parse_period("1d") == 86400
    assert parse_period("500ms") == 0.5 and parse_period(3) == 3.0
    ghl = normalize([Window(100, 10), Window(200_000, 86_400)])
    assert ghl == [[Window(100, 10), Window(200_000, 86_400)]]
    assert normalize([Window(100, 10), Window(50, 60)]) == [[Window(50, 60)]]
    assert normalize([Window(10, 1), Window(1000, 60)]) == [[Window(10, 1)]]


def test_budget_waits_before_sending(fault):
    app, url = fault
    clock = FakeClock()
    conn = connector(rate_limits=[{"limit": 3, "per": "1s"}])
    h = Harness(url, conn, clock=clock, limiter=limiter_for(conn, clock=clock, path=None))
    for _ in range(7):
        h.call(name="rl")
    times = [t for t, _ in h.seen]
    assert all(times[i + 3] - times[i] >= 1.0 for i in range(len(times) - 3))
    assert times[-1] - times[0] < 2.2  # waited, but no longer than needed
    assert [a.budget_wait > 0 for _, a in h.seen] == [False] * 3 + [True, False, False, True]


def test_daily_budget_stops_the_run_before_sending(fault):
    app, url = fault
    clock = FakeClock()
    conn = connector(rate_limits=[{"limit": 10, "per": "10s"}, {"limit": 2, "per": "1d"}])
    h = Harness(url, conn, clock=clock, limiter=limiter_for(conn, clock=clock, path=None))
    h.call(name="daily")
    h.call(name="daily")
    with pytest.raises(BudgetExhausted) as info:
        h.call(name="daily")
    message = str(info.value)
    assert "request budget of 2 per 1 d" in message and "allowed in 24 h" in message
    assert "continues where it stopped" in message
    assert isinstance(info.value, SpliceError) and info.value.exit_code == 1
    assert len(arrivals(app, "/flaky/daily")) == 2 and clock.sleeps == []


def test_budget_is_shared_by_connections_with_the_same_location():
    conn = connector(rate_limits=[{"limit": 1, "per": "1d", "key": "locationId"}])
    clock = FakeClock()

    def record(name: str, location: str) -> Any:
        return SimpleNamespace(name=name, config={"fields": {"locationId": location}})

    a = limiter_for(conn, record("a", "loc1"), clock=clock, path=None)
    b = limiter_for(conn, record("b", "loc1"), clock=clock, path=None)
    c = limiter_for(conn, record("c", "loc2"), clock=clock, path=None)
    assert a is not None and b is not None and c is not None
    a.acquire(clock.sleep)
    with pytest.raises(BudgetExhausted, match="flaky/locationId=loc1"):
        b.acquire(clock.sleep)
    c.acquire(clock.sleep)
    assert budget_key(conn, record("z", "loc9"), "connection") == "flaky/connection=z"
    no_field = SimpleNamespace(name="z", config={})
    assert budget_key(conn, no_field, "locationId") == "flaky/connection=z"


def test_remaining_header_below_our_budget_slows_down(fault):
    app, url = fault
    clock = FakeClock()
    conn = connector(rate_limits=[{"limit": 100, "per": "10s"}], rate_limit_headers={
        "remaining": "X-RateLimit-Remaining", "reset": "X-RateLimit-Reset"})
    h = Harness(url, conn, clock=clock, limiter=limiter_for(conn, clock=clock, path=None))
    app.state.scripts["hdr"] = [{"headers": {"X-RateLimit-Remaining": "1",
                                             "X-RateLimit-Reset": str(int(T0 + 4))}}]
    h.call(name="hdr")
    h.call(name="hdr")  # the one request the API still allows
    assert clock.sleeps == []
    h.call(name="hdr")  # waits for the API's reset although our budget had 97 left
    assert clock.sleeps == [4.0]


def test_daily_remaining_zero_header_stops(fault):
    app, url = fault
    clock = FakeClock()
    conn = connector(rate_limit_headers={"remaining": "X-RateLimit-Remaining",
                                         "daily_remaining": "X-RateLimit-Daily-Remaining"})
    h = Harness(url, conn, clock=clock, limiter=limiter_for(conn, clock=clock, path=None))
    app.state.scripts["day"] = [{"headers": {"X-RateLimit-Daily-Remaining": "0",
                                             "X-RateLimit-Remaining": "50"}}]
    h.call(name="day")
    with pytest.raises(BudgetExhausted, match="daily request budget used up"):
        h.call(name="day")
    assert len(arrivals(app, "/flaky/day")) == 1


def test_429_holds_the_budget_for_other_requests(fault):
    app, url = fault
    clock = FakeClock()
    conn = connector(rate_limits=[{"limit": 100, "per": "10s"}])
    limiter = limiter_for(conn, clock=clock, path=None)
    h = Harness(url, conn, clock=clock, limiter=limiter)
    app.state.scripts["h"] = [{"status": 429, "headers": {"Retry-After": "5"}}]
    h.call(name="h")
    assert clock.sleeps == [5.0]  # the back-off covered the hold: no second wait


def test_budget_file_sits_next_to_the_state_database(splice_home):
    from splice.store.database import Store

    store = Store.open()
    assert budget_file(store) == (splice_home / "ratelimits.db").resolve()
    store.close()
    pg = SimpleNamespace(engine=SimpleNamespace(url=sa.make_url("postgresql://u@db/splice")))
    assert budget_file(pg) is None  # PostgreSQL: per-process budgets
    assert budget_file(SimpleNamespace(engine=sa.create_engine("sqlite://"))) is None


def _budget_worker(base_url: str, db_path: str, n: int, start_at: float) -> None:
    conn = connector(rate_limits=[{"limit": 5, "per": "1s"}])
    limiter = limiter_for(conn, SimpleNamespace(name="shared", config={}), path=db_path)
    op = conn.operation("fetch")
    with ApiClient(conn, base_url=base_url, limiter=limiter) as client:
        call = prepare_call(op, conn, {"name": "mp"}, base_url=base_url)
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(n):
            client.send(op, call)


def test_budget_of_5_per_second_holds_across_two_processes(fault, tmp_path):
    app, url = fault
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # both children are up and importing by then
    procs = [ctx.Process(target=_budget_worker,
                         args=(url, str(tmp_path / "ratelimits.db"), 8, start_at))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=20)
    assert [p.exitcode for p in procs] == [0, 0]
    times = sorted(a.at for a in arrivals(app, "/flaky/mp"))
    assert len(times) == 16
    # any 0.9 s of server time (0.1 s slack for loopback jitter) saw at most 5 requests
    assert max(sum(1 for t in times if s <= t < s + 0.9) for s in times) <= 5
    assert times[-1] - times[0] >= 2.0  # 16 requests at 5/s cannot take less


def _budget_runner(fakecrm: Any, tmp_path: Any, limit: int) -> Any:
    """A Runner for the notes recipe whose fake CRM declares a daily budget of ``limit``."""
    from splice import hookimpl, plugins
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner

    from .conftest import FIXTURES, register_test_plugin

    manifest = tmp_path / f"fakecrm-{limit}.yaml"
    manifest.write_text((FIXTURES / "fakecrm.yaml").read_text() +
                        f"\nrate_limits: [{{limit: {limit}, per: 1d}}]\n")

    class Plugin:
        @hookimpl
        def register_connectors(self, register: Any) -> None:
            register(manifest)

    register_test_plugin(Plugin(), f"fakecrm-budget-{limit}")
    registry = plugins.get_registry()
    plan = build_plan(load_recipe(FIXTURES / "notes.yaml"), registry,
                      TemplateEngine(registry.filters),
                      connections={c.name: c for c in fakecrm.store.list_connections()})
    return Runner(plan, fakecrm.store, registry)


def test_daily_budget_stops_a_run_cleanly_and_the_next_run_resumes(fakecrm, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("SPLICE_LOAD_PLUGINS", "")
    # 6 requests a day: the first page, then note+tags for c1 and c2, then the note for c3
    first = _budget_runner(fakecrm, tmp_path, 6).run(backfill=True)
    assert not first.ok and first.events_failed == 0
    assert any("request budget of 6 per 1 d" in e for e in first.errors)
    assert len(fakecrm.posts()) == 5
    # the page's ten events were claimed; c0003 and the rest wait for the next run
    assert [e.key.split("@")[0] for e in fakecrm.store.pending_events()] == \
        [f"c{i:04d}" for i in range(3, 11)]
    second = _budget_runner(fakecrm, tmp_path, 1000).run(backfill=True)  # "the next day"
    assert second.ok, second.errors
    state = fakecrm.app.state
    assert len(state.notes) == 25
    assert all(len(tags) == 2 for tags in state.tags.values()) and len(state.tags) == 25

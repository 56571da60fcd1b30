"""The budget acceptance test on Celery: four ``splice worker`` processes (real Celery, a
private Redis as broker and budget store, PostgreSQL state) run the events of one webhook
recipe whose step reads one HighLevel location; the sandbox limits that location to 20
requests per 1 s and counts at most 20 arrivals in every 1-s window, and no event fails.

The connector is HighLevel's manifest with its budget set to the sandbox's 20 / 1 s (a copy
named ``ghl_budget``, loaded through ``SPLICE_CONNECTORS_PATH`` by every process).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from splice import plugins
from splice.plugins import get_registry
from splice.sandbox import free_port
from splice.store.database import Store
from splice_connectors.ghl_users import MANIFEST

from . import pg
from .budget_hammer import Arrivals, most_in_one_window
from .redis_service import SpliceProcess, private_redis, worker
from .servekit import I2G_SECRET, ServeProcess, wait_for
from .test_ghl_connector import Sandbox, open_connection
from .test_shared_budgets import LIMIT, WINDOW, sandbox
from .test_signatures import register_recipes
from .test_worker import _send, _state

EVENTS = 60
RECIPE = """
name: Client created, read the location's tags
trigger: {use: invoice2go.client_created_webhook, connection: my-invoice2go}
steps:
  - use: ghl_budget.list_tags
    connection: my-highlevel
"""

__all__ = ["sandbox"]  # the fixture, shared with test_shared_budgets


@pytest.fixture
def budget_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    data = yaml.safe_load(MANIFEST.read_text("utf-8"))
    data["id"] = "ghl_budget"
    data["rate_limits"] = [{"limit": LIMIT, "per": f"{int(WINDOW * 1000)}ms",
                            "key": "locationId"}]
    path = tmp_path / "ghl_budget.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("SPLICE_CONNECTORS_PATH", str(path))
    plugins.reset()
    yield
    plugins.reset()


def test_four_celery_workers_share_one_budget(
        sandbox: tuple[Sandbox, Arrivals], budget_connector: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sb, arrivals = sandbox
    procs: list[ServeProcess | SpliceProcess] = []
    with pg.schema_url() as url, private_redis(tmp_path / "redis") as redis_server:
        monkeypatch.setenv("SPLICE_DATABASE_URL", url)
        monkeypatch.setenv("SPLICE_BROKER_URL", redis_server.url)  # budgets there too
        monkeypatch.setenv("SPLICE_BUDGET_MARGIN", "0.3")  # see test_shared_budgets.hammer
        api = open_connection(sb, connector=get_registry().connector("ghl_budget"))
        api.store.close()
        store = Store.open()
        try:
            port = free_port()
            store.put_connection(
                "my-invoice2go", connector="invoice2go", auth_type="oauth2",
                base_url="http://127.0.0.1:9",
                config={"webhook_subscription": {
                    "id": "sub-1", "events": ["client.created"],
                    "url": f"http://127.0.0.1:{port}/hooks/my-invoice2go"}},
                secret={"webhook_secret": I2G_SECRET})
            register_recipes(store, tmp_path, {"tags.yaml": RECIPE})
            serve = ServeProcess(port, log=tmp_path / "serve.log")
            procs.append(serve)
            workers = [worker("-c", "4", "-n", f"b{i}@%h", log=tmp_path / f"worker{i}.log")
                       for i in range(4)]
            procs.extend(workers)
            serve.wait_ready(timeout=30)
            for w in workers:
                w.wait_ready("splice worker ready", timeout=60)
            sent = _send(serve.url, [f"cl-{i:03d}" for i in range(EVENTS)])
            assert set(sent.values()) == {200}, sent
            wait_for(lambda: _state(store).get("succeeded", 0) >= EVENTS, timeout=90,
                     every=0.5)
            state = _state(store)
            assert state.get("succeeded") == EVENTS and not state.get("failed") \
                and not state.get("dead"), state
        finally:
            for proc in procs:
                proc.close()
            store.close()
    times = sorted(t for t, _ in arrivals.seen)
    assert len(times) >= EVENTS
    assert most_in_one_window(times, WINDOW) <= LIMIT
    assert [s for _, s in arrivals.seen if s == 429] == []
    assert times[-1] - times[0] >= (EVENTS / LIMIT - 1) * WINDOW * 0.95

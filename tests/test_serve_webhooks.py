"""Webhooks end to end against the sandboxes: Invoice2go REST hooks (subscribe on enable,
unsubscribe on disable), a retried delivery (same id) processed once, a dropped delivery
caught by the polling safety net; HighLevel's AppUninstall revoking the connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from splice.plugins import get_registry
from splice.run.call import call_operation
from splice.run.demo import connect_to_sandbox
from splice.sandbox import SandboxConfig, serve
from splice.store import registry as reg
from splice.store.connection_events import list_connection_events
from splice.store.inbox import depth
from splice_connectors.ghl_users.sandbox import create_app as ghl_app
from splice_connectors.invoice2go.sandbox import create_app as i2g_app

from .servekit import running_service, wait_for
from .test_signatures import register_recipes

SAFETY_NET = {"clients.yaml": """
name: Invoice2go clients to CRM notes
triggers:
  - use: invoice2go.client_created_webhook
    connection: my-invoice2go
  - use: invoice2go.client_created
    connection: my-invoice2go
    every: 2s
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "client {{ trigger.id }}", body: "{{ trigger.name }}"}
"""}
NAME = "Invoice2go clients to CRM notes"


@pytest.fixture
def invoice2go(fakecrm: Any, tmp_path: Path) -> Iterator[tuple[Any, str, Any]]:
    """The Invoice2go sandbox (short retry delays), an OAuth connection to it, the recipe."""
    config = SandboxConfig(rate_limit=(100_000, 60.0),
                           extra={"webhook_retry_schedule": [0.2, 0.5, 1.0]})
    app = i2g_app(config)
    with serve(app) as url:
        connect_to_sandbox(get_registry().connector("invoice2go"), fakecrm.store,
                           name="my-invoice2go", base_url=url, config=config,
                           scopes=["clients:read", "clients:write", "webhooks:manage"])
        register_recipes(fakecrm.store, tmp_path, SAFETY_NET)
        yield fakecrm, url, app.state.sandbox
        app.state.sandbox.webhooks.sender.close()


def _row(store: Any) -> Any:
    (row,) = reg.find(store, NAME)
    return row


def _notes(fakecrm: Any, client_id: str) -> int:
    return sum(1 for n in fakecrm.app.state.notes if n["subject"] == f"client {client_id}")


def test_rest_hooks_retries_and_the_polling_safety_net(invoice2go: Any) -> None:
    fakecrm, url, sandbox = invoice2go
    store = fakecrm.store
    http = httpx.Client(base_url=url, timeout=10)

    def new_client(name: str) -> str:
        out = call_operation(get_registry(), store, "invoice2go.create_client",
                             connection="my-invoice2go", payload={"name": name})
        return str(out["data"]["id"])

    def subscriptions() -> list[dict[str, Any]]:
        return list(http.get("/__test__/state").json()["webhooks"])

    with running_service(store, get_registry()) as (service, serve_url):
        # enabling (here: serving an enabled recipe) subscribes its events with the serve URL
        subs = wait_for(subscriptions)
        assert [(s["url"], s["events"]) for s in subs] == \
            [(f"{serve_url}/hooks/my-invoice2go", ["client.created"])]
        record = store.get_connection("my-invoice2go")
        assert record.config["webhook_subscription"]["id"] == subs[0]["id"]
        assert record.secret["webhook_secret"].startswith("whsec_")  # stored encrypted
        rid = _row(store).id
        wait_for(lambda: store.trigger_initialized(rid, "invoice2go.client_created"))

        # a delivered webhook: processed once
        first = new_client("Webhook First")
        wait_for(lambda: _notes(fakecrm, first) == 1)

        # the sandbox retries a delivery (it did not see our 2xx): same id, processed once
        http.post("/__test__/webhooks-redeliver", json={"count": 1})
        twice = new_client("Delivered Twice")
        wait_for(lambda: sum(1 for a in http.get("/__test__/webhook-deliveries").json()
                             ["attempts"] if a["outcome"] == "delivered") >= 3)
        wait_for(lambda: depth(store) == 0)

        # a delivery lost on the way: the next poll (every 2s) brings the client
        http.post("/__test__/webhooks-drop", json={"count": 1})
        lost = new_client("Lost Delivery")
        wait_for(lambda: _notes(fakecrm, lost) == 1, timeout=15)
        attempts = http.get("/__test__/webhook-deliveries").json()["attempts"]
        assert [a["outcome"] for a in attempts] == ["delivered", "delivered", "delivered",
                                                    "dropped"]
        assert attempts[1]["delivery_id"] == attempts[2]["delivery_id"]  # the retry
        wait_for(lambda: _row(store).poll_first >= 1)
        for _ in range(2):  # later polls and deliveries change nothing
            service.scheduler.request_run(rid)
        wait_for(lambda: not service.scheduler.running)
        assert [_notes(fakecrm, c) for c in (first, twice, lost)] == [1, 1, 1]
        row = _row(store)  # which path brought each client first (a poll may win a race)
        assert row.webhook_first + row.poll_first == 3 and row.webhook_first >= 1
        metrics = httpx.get(f"{serve_url}/metrics").text
        assert 'splice_webhook_deliveries_rejected_total{reason="duplicate"} 1.0' in metrics
        # the Invoice2go sandbox reports its rate limit in headers: the budget left is shown
        assert 'splice_rate_budget_remaining{connection="my-invoice2go"}' in metrics

        # disabling unsubscribes
        reg.update(store, rid, enabled=False)
        wait_for(lambda: subscriptions() == [])
        wait_for(lambda: "webhook_subscription" not in
                 store.get_connection("my-invoice2go").config)  # written after the DELETE
        record = store.get_connection("my-invoice2go")
        assert "webhook_secret" not in record.secret


def test_app_uninstall_revokes_the_connection(fakecrm: Any) -> None:
    """HighLevel's AppUninstall (signed by the sandbox) marks the connection revoked and
    emits reauth_required; an uninstall for another location changes nothing."""
    config = SandboxConfig(rate_limit=(100_000, 60.0))
    app = ghl_app(config)
    store = fakecrm.store
    with serve(app) as url:
        http = httpx.Client(base_url=url, timeout=10)
        connect_to_sandbox(get_registry().connector("ghl_users"), store, name="my-highlevel",
                           base_url=url, config=config, scopes=["users.readonly"])
        key = http.get("/__test__/webhook-key").json()["ed25519"]
        store.update_tokens("my-highlevel", None, {"webhook_keys": {"ed25519": key}})
        with running_service(store, get_registry()) as (_service, serve_url):
            http.post("/__test__/webhook-url", json={"url": f"{serve_url}/hooks/my-highlevel"})
            http.post("/__test__/app-uninstall", json={"locationId": "someone-else"})
            http.post("/__test__/app-install", json={})
            wait_for(lambda: len([a for a in http.get("/__test__/webhook-deliveries").json()
                                  ["attempts"] if a["outcome"] == "delivered"]) == 2)
            wait_for(lambda: depth(store) == 0)
            assert store.get_connection("my-highlevel").status == "valid"
            http.post("/__test__/app-uninstall", json={})
            wait_for(lambda: store.get_connection("my-highlevel").status == "reauth_required")
        record = store.get_connection("my-highlevel")
        assert "access_token" not in record.secret and "refresh_token" not in record.secret
        events = list_connection_events(store, events=["reauth_required"])
        assert [(e["connection"], e["reason"]) for e in events] == \
            [("my-highlevel", "UNINSTALL: the app was uninstalled")]
        app.state.sandbox.webhooks.sender.close()


RETRYING = {"retrying.yaml": """
name: Clients to notes, retried
trigger: {use: invoice2go.client_created_webhook, connection: my-invoice2go}
retry: {attempts: 2, backoff: 1s..1s}
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "client {{ trigger.id }}", body: "{{ trigger.name }}"}
"""}


def test_due_retries_run_on_their_schedule_then_dead_letters(fakecrm: Any,
                                                             tmp_path: Path) -> None:
    """A webhook-only recipe (never polled): a failed event runs again when its back-off is
    due, and after its last attempt it is a dead letter."""
    from .servekit import I2G_SECRET, i2g_event, i2g_headers, post

    store = fakecrm.store
    store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                         base_url="http://127.0.0.1:9", config={},
                         secret={"webhook_secret": I2G_SECRET})
    register_recipes(store, tmp_path, RETRYING)
    fail = fakecrm.app.state.fail
    with running_service(store, get_registry()) as (service, url), \
            httpx.Client(timeout=10) as http:
        def deliver(cid: str) -> None:
            event = i2g_event("client.created", {"id": cid, "name": cid})
            assert post(http, f"{url}/hooks/my-invoice2go", event,
                        lambda b: i2g_headers(b, event)).status_code == 200

        fail["/notes"] = {"status": 409, "count": 1}  # the first try is refused (retryable)
        deliver("c-1")
        wait_for(lambda: [e.status for e in store.failed_events()] == ["failed"])
        failed_at = _event(store, "c-1").updated_at
        wait_for(lambda: _notes(fakecrm, "c-1") == 1, timeout=10)
        event = _event(store, "c-1")
        assert (event.status, event.attempts) == ("succeeded", 2)
        assert (event.updated_at - failed_at).total_seconds() >= 0.9  # after its back-off

        fail["/notes"] = {"status": 409, "count": None}  # refused for good
        deliver("c-2")
        wait_for(lambda: len(store.dead_letters()) == 1, timeout=10)
        assert [d.event_id for d in store.dead_letters()] == [_event(store, "c-2").id]
        assert _event(store, "c-2").attempts == 2 and _notes(fakecrm, "c-2") == 0
        metrics = http.get(f"{url}/metrics").text
        rid = next(iter(service.book.recipes))
        assert f'splice_events_total{{outcome="dead",recipe="{rid}"}} 1.0' in metrics


def _event(store: Any, cid: str) -> Any:
    from splice.store.queries import list_events

    (event,) = [e for e in list_events(store) if e.key == cid]
    return event


def test_two_services_on_postgresql_process_each_delivery_once(fakecrm: Any,
                                                               tmp_path: Path) -> None:
    """Two serve services on one PostgreSQL database, each receiving deliveries (some twice,
    to both): the inbox claims (SKIP LOCKED) and the recipe lease leave one write each."""
    from splice.store.database import Store

    from . import pg
    from .fakeapi import TOKEN
    from .servekit import I2G_SECRET, i2g_event, i2g_headers, post

    with pg.schema_url() as url:
        stores = [Store.open(url), Store.open(url)]
        store = stores[0]
        store.put_connection("crm", connector="fakecrm", auth_type="bearer",
                             base_url=fakecrm.base_url, config={"allow_private_network": True},
                             secret={"token": TOKEN})
        store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                             base_url="http://127.0.0.1:9", config={},
                             secret={"webhook_secret": I2G_SECRET})
        register_recipes(store, tmp_path, {"pg.yaml": RETRYING["retrying.yaml"]})
        try:
            with running_service(stores[0], get_registry()) as (_a, url_a), \
                    running_service(stores[1], get_registry()) as (_b, url_b), \
                    httpx.Client(timeout=10) as http:
                answers = []
                for i in range(20):
                    event = i2g_event("client.created", {"id": f"pg-{i}", "name": f"C{i}"})
                    targets = [url_a, url_b] if i % 4 == 0 else [(url_a, url_b)[i % 2]]
                    for target in targets:  # every 4th is delivered to both
                        answers.append(post(http, f"{target}/hooks/my-invoice2go", event,
                                            lambda b, e=event: i2g_headers(b, e)).json())
                assert sorted(a["status"] for a in answers).count("accepted") == 20
                assert sorted(a["status"] for a in answers).count("duplicate") == 5
                wait_for(lambda: len(fakecrm.app.state.notes) == 20, timeout=20)
                wait_for(lambda: depth(store) == 0)
            assert sorted(n["subject"] for n in fakecrm.app.state.notes) == \
                sorted(f"client pg-{i}" for i in range(20))
        finally:
            for each in stores:
                each.close()

"""The JSON API (bearer token, never a secret, checked against its OpenAPI document by
schemathesis), /healthz, /metrics and the structured logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from splice.plugins import get_registry
from splice.secrets import REDACTOR
from splice.serve.logs import setup_json_logging

from .conftest import TOKEN as CRM_TOKEN
from .servekit import I2G_SECRET, i2g_event, i2g_headers, post, running_service, wait_for
from .test_signatures import register_recipes

API_TOKEN = "test-api-token"
RECIPE = {"clients.yaml": """
name: Clients to notes
trigger: {use: invoice2go.client_created_webhook, connection: my-invoice2go}
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "client {{ trigger.id }}", body: "{{ trigger.name }}"}
"""}


@pytest.fixture
def api(fakecrm: Any, tmp_path: Path) -> Any:
    """serve with a recipe that has run once (a run, an event, its step results)."""
    store = fakecrm.store
    store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                         base_url="http://127.0.0.1:9", config={},
                         secret={"webhook_secret": I2G_SECRET})
    register_recipes(store, tmp_path, RECIPE)
    with running_service(store, get_registry()) as (service, url):
        event = i2g_event("client.created", {"id": "c-1", "name": "Acme"})
        with httpx.Client(timeout=10) as http:
            assert post(http, f"{url}/hooks/my-invoice2go", event,
                        lambda body: i2g_headers(body, event)).status_code == 200
        wait_for(lambda: len(fakecrm.app.state.notes) == 1)
        yield service, url


def test_api_answers_with_a_token_only_and_never_shows_a_secret(api: Any) -> None:
    _service, url = api
    http = httpx.Client(base_url=url, timeout=10)
    for path in ("/api/recipes", "/api/runs", "/api/events", "/api/connections",
                 "/api/connectors", "/api/dead-letters", "/api/deliveries"):
        assert http.get(path).status_code == 401
        assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/api/openapi.json").status_code == 200  # the description is public
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    (recipe,) = http.get("/api/recipes", headers=auth).json()
    assert recipe["name"] == "Clients to notes" and recipe["first_by_webhook"] == 1
    (event,) = http.get("/api/events", headers=auth).json()
    detail = http.get(f"/api/events/{event['id']}", headers=auth).json()
    assert detail["payload"] == {"id": "c-1", "name": "Acme"}
    assert [s["status"] for s in detail["steps"]] == ["succeeded"]
    assert detail["steps"][0]["request"]["method"] == "POST"
    everything = "".join(http.get(p, headers=auth).text for p in (
        "/api/connections", "/api/connections/crm", "/api/connections/my-invoice2go",
        f"/api/events/{event['id']}", f"/api/runs/{event['run_id']}", "/api/deliveries"))
    assert CRM_TOKEN not in everything and I2G_SECRET not in everything
    assert "/hooks/my-invoice2go" in everything  # the webhook URL to paste is shown
    disabled = http.post(f"/api/recipes/{recipe['id']}/disable", headers=auth).json()
    assert disabled["enabled"] is False
    assert http.post(f"/api/recipes/{recipe['id']}/run", headers=auth).status_code == 409


def test_the_api_matches_its_openapi_document(api: Any) -> None:
    """schemathesis generates requests for every operation (valid and edge-case parameters)
    and checks each answer: no server error, a documented status, the documented schema."""
    _service, url = api
    schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 20
    failures = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {API_TOKEN}"})

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_healthz_and_metrics(api: Any) -> None:
    service, url = api
    health = httpx.get(f"{url}/healthz").json()
    assert health == {"status": "ok", "database": "ok", "scheduler": "ok", "inbox_depth": 0,
                      "recipes": 1}
    metrics = httpx.get(f"{url}/metrics").text
    for line in ('splice_webhook_deliveries_accepted_total{connection="my-invoice2go"} 1.0',
                 "splice_inbox_depth 0.0", "splice_scheduler_alive 1.0",
                 "splice_webhook_ack_seconds_count 1.0"):
        assert line in metrics, line
    recipe_id = next(iter(service.book.recipes))
    assert f'splice_events_total{{outcome="processed",recipe="{recipe_id}"}} 1.0' in metrics
    service.scheduler.stopping = True  # the scheduler stops: the health check says so
    wait_for(lambda: not service.scheduler._thread.is_alive())
    service.scheduler.last_turn = 0.0
    answer = httpx.get(f"{url}/healthz")
    assert answer.status_code == 503 and answer.json()["scheduler"] == "stopped"


def test_logs_are_json_lines_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    handler = setup_json_logging()
    try:
        REDACTOR.add("sk-live-0123456789")
        log = logging.getLogger("splice.serve.test")
        log.warning("calling with sk-live-0123456789", extra={"connection": "crm",
                                                             "detail": "key sk-live-0123456789"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger("splice").removeHandler(handler)
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "splice.serve.test"
    assert record["message"] == "calling with ***" and record["detail"] == "key ***"
    assert record["connection"] == "crm" and record["ts"].endswith("Z")

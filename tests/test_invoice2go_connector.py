"""The Invoice2go connector driven through the engine against its sandbox, over loopback HTTP.

Every test connects with the real OAuth flow (``splice.connections.authorize.connect``: PKCE,
redirect listener, encrypted token storage) in its own SPLICE_HOME, then calls operations the
way the runner does: operation defaults rendered from the connection, input validated against
the manifest, body templates rendered, the request built by ``prepare_call`` and sent by the
connection's client (OAuth refresh, retries, pagination, error mapping).
"""

from __future__ import annotations

import json
import socketserver
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from splice import plugins
from splice.connections import authorize as splice_connect
from splice.connections.authorize import connect
from splice.connections.client import connection_client
from splice.errors import AuthError, HTTPError
from splice.http.client import ApiClient
from splice.http.request import dig, prepare_call
from splice.mapping.templates import TemplateEngine
from splice.model.manifest import MISSING, Connector, Operation
from splice.plugins import get_registry
from splice.sandbox import SandboxConfig, serve
from splice.store.database import Store
from splice_connectors.invoice2go import MANIFEST
from splice_connectors.invoice2go.sandbox import create_app

from .conftest import SharedTransport, invoke

ACCOUNT_ID = "24379237"
CLIENT_ID = "splice-tests"
CLIENT_SECRET = "i2g-test-client-secret"
CONTRACT_SCOPES = {"accounts:read", "clients:read", "clients:write", "invoices:read",
                   "invoices:write", "insights:read", "insights:write", "webhooks:manage"}
OPERATION_IDS = sorted(yaml.load(MANIFEST.read_text("utf-8"), Loader=yaml.CSafeLoader)
                       ["operations"])
_MANIFESTS: dict[tuple[str, str, str | None], Connector] = {}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def quick_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work around two engine slowdowns (reported to the lead; see also ``SharedTransport``).

    * Loading and checking a manifest takes seconds and every test starts from a fresh plugin
      registry: load only this plugin (the allow-list) and check its manifest once per module
      (the parsed connector is never mutated, so sharing it changes nothing else).
    * ``connect``'s loopback listener polls for shutdown every 0.5 s, so each connect waits
      ~0.5 s after the redirect arrived: poll every 20 ms instead.
    """
    monkeypatch.setenv("SPLICE_LOAD_PLUGINS", "invoice2go")
    monkeypatch.setattr(splice_connect._Listener, "serve_forever",
                        lambda self, poll_interval=0.5: HTTPServer.serve_forever(self, 0.02))
    load = plugins.load_manifest

    def load_once(source: Any, *, plugin: str = "", sandbox: str | None = None) -> Connector:
        if not isinstance(source, str | Path):
            return load(source, plugin=plugin, sandbox=sandbox)
        key = (str(source), plugin, sandbox)
        if key not in _MANIFESTS:
            _MANIFESTS[key] = load(source, plugin=plugin, sandbox=sandbox)
        return _MANIFESTS[key]

    monkeypatch.setattr(plugins, "load_manifest", load_once)
    plugins.reset()


@dataclass
class Sandbox:
    base_url: str
    http: httpx.Client
    transport: SharedTransport

    def state(self) -> dict[str, Any]:
        response = self.http.get("/__test__/state")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def control(self, action: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/__test__/{action}", json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def follow_consent(self, url: str) -> None:
        """The "browser": the sandbox auto-approves and redirects to splice's listener."""
        answer = self.http.get(url)
        assert answer.status_code == 302, answer.text
        self.http.get(answer.headers["location"])

    def invoices(self) -> dict[str, dict[str, Any]]:
        return {i["id"]: i for i in self.state()["invoices"] if i["account_id"] == ACCOUNT_ID}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the module; ``api`` resets its data and tokens before every test."""
    config = SandboxConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           rate_limit=(100_000, 60.0))
    transport = SharedTransport()
    with serve(create_app(config)) as base_url, \
            httpx.Client(base_url=base_url, transport=transport) as http:
        yield Sandbox(base_url, http, transport)
    transport.inner.close()


@dataclass
class Api:
    """Calls Invoice2go operations the way the runner's steps do."""

    sandbox: Sandbox
    store: Store
    connector: Connector
    templates: TemplateEngine
    name: str
    _client: ApiClient | None = field(default=None, repr=False)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            registry = get_registry()
            record = self.store.get_connection(self.name)
            self._client = connection_client(self.connector, record, self.store, registry,
                                             transport=self.sandbox.transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def op(self, op_id: str) -> Operation:
        return self.connector.operation(op_id)

    def connection_context(self) -> dict[str, Any]:
        record = self.store.get_connection(self.name)
        assert record is not None
        return {"name": self.name, "base_url": record.base_url,
                **(record.config.get("fields") or {})}

    def payload(self, op: Operation, given: dict[str, Any], *,
                validate: bool = True) -> dict[str, Any]:
        """Defaults merged under ``given``, then checked against the operation's input."""
        defaults = self.templates.compile_mapping(op.defaults, where=f"{op.ref}.defaults")
        merged = {**(defaults({"connection": self.connection_context()}) or {}), **given}
        if not validate:
            return merged
        problems = [e.message for e in op.input_validator.iter_errors(merged)]
        assert not problems, f"{op.ref} input rejected: {problems}"
        return merged

    def prepare(self, op: Operation, given: dict[str, Any], key: str | None = None, *,
                validate: bool = True) -> Any:
        payload = self.payload(op, given, validate=validate)
        parts: dict[str, Any] = {}
        if op.body is not MISSING:
            ctx = {"input": payload, "connection": self.connection_context()}
            parts["rendered_body"] = self.templates.compile_mapping(
                op.body, where=f"{op.ref}.body")(ctx)
        return prepare_call(op, self.connector, payload, base_url=self.client.base_url,
                            idempotency_key=key, **parts)

    def send(self, op: Operation | str, key: str | None = None, *, validate: bool = True,
             **given: Any) -> Any:
        """One request; the response body (None for 204)."""
        op = self.op(op) if isinstance(op, str) else op
        return self.client.send(op, self.prepare(op, given, key, validate=validate)).json()

    def pages(self, op: Operation | str, **given: Any) -> list[Any]:
        """Every page body of a list operation."""
        op = self.op(op) if isinstance(op, str) else op
        return [body for body, _ in self.client.pages(op, self.prepare(op, given))]

    def records(self, op: Operation | str, **given: Any) -> list[Any]:
        op = self.op(op) if isinstance(op, str) else op
        return [r for _, page in self.client.pages(op, self.prepare(op, given)) for r in page]


def open_api(sandbox: Sandbox, name: str, scopes: list[str] | None = None) -> Api:
    registry = get_registry()
    connector = registry.connector("invoice2go")
    store = Store.open()
    connect(connector, store, name=name, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            scopes=scopes if scopes is not None else connector.scopes,
            base_url=sandbox.base_url, open_url=sandbox.follow_consent, timeout=10,
            transport=sandbox.transport, config={"allow_private_network": True})
    return Api(sandbox, store, connector, TemplateEngine(registry.filters), name)


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[Api]:
    """A fresh sandbox (seed data, no tokens) and an OAuth connection 'i2g' with every scope."""
    sandbox.control("reset", tokens=True)
    client = open_api(sandbox, "i2g")
    yield client
    client.close()
    client.store.close()


# ------------------------------------------------------------------------------ helpers

LINE = {"code": "A10", "description": "Lawn service", "qty": 2, "unit_type": "labor_hours",
        "unit_price": 85, "applied_taxes": [{"name": "TAX", "rate": 8}]}


def seeded(api: Api, table: str, **match: Any) -> dict[str, Any]:
    """The first seeded record of the connected account with the given field values."""
    for record in api.sandbox.state()[table]:
        if record.get("account_id", ACCOUNT_ID) == ACCOUNT_ID and all(
                record.get(k) == v for k, v in match.items()):
            return record  # type: ignore[no-any-return]
    raise AssertionError(f"no seeded {table} record with {match}")


def new_client(api: Api, **fields: Any) -> dict[str, Any]:
    body = api.send("create_client", name=fields.pop("name", "Queen Industries"), **fields)
    return body["data"]  # type: ignore[no-any-return]


def new_invoice(api: Api, key: str | None = None, **fields: Any) -> dict[str, Any]:
    if "client_id" not in fields:
        fields.setdefault("name", "Walk-in customer")
    fields.setdefault("items", [LINE])
    return api.send("create_invoice", key, **fields)["data"]  # type: ignore[no-any-return]


def new_webhook(api: Api) -> dict[str, Any]:
    return api.send("create_webhook", url="https://hooks.example.com/i2g",  # type: ignore
                    events=["invoice.created", "invoice.paid"])["data"]


def metric(value: float, platform: str, **extra: Any) -> dict[str, Any]:
    return {"source": "ghl.social_planner", "key": "posts.published",
            "label": "Posts published", "value": value, "period_start": "2026-06-01",
            "period_end": "2026-06-30", "dimensions": {"platform": platform},
            "external_id": f"loc_9:2026-06:posts.published:{platform}", "tags": ["Social"],
            **extra}


# -------------------------------------------------- every operation: real call, valid output

PayloadFactory = Callable[[Api], dict[str, Any]]

PAYLOADS: dict[str, PayloadFactory] = {
    "list_accounts": lambda api: {},
    "get_account": lambda api: {},
    "list_clients": lambda api: {"tag": " VIP ", "updated_since": "2020-01-01T00:00:00Z"},
    "search_clients": lambda api: {"email": "LOIS@dailyplanet.example"},
    "get_client": lambda api: {"client_id": seeded(api, "clients")["id"]},
    "create_client": lambda api: {"name": "Queen Industries", "email": "oliver@queen.example",
                                  "payment_terms_days": 10, "tags": ["Archery"]},
    "update_client": lambda api: {"client_id": seeded(api, "clients")["id"],
                                  "notes": "Call before noon", "payment_terms_days": 21},
    "delete_client": lambda api: {"client_id": new_client(api)["id"]},
    "list_invoices": lambda api: {"document_status": ["sent", "partially_paid"],
                                  "document_date_from": "2026-01-01"},
    "get_invoice": lambda api: {"invoice_id": seeded(api, "invoices")["id"]},
    "create_invoice": lambda api: {"client_id": seeded(api, "clients")["id"],
                                   "items": [LINE, {**LINE, "description": "Hinges",
                                                    "unit_type": "parts", "qty": 3,
                                                    "unit_price": 12.99,
                                                    "discount_type": "percentage",
                                                    "discount_percentage": 10}],
                                   "discount_type": "amount", "discount_value": 5,
                                   "tags": ["New"]},
    "update_invoice": lambda api: {"invoice_id": seeded(api, "invoices",
                                                        document_status="unsent")["id"],
                                   "document_status": "sent", "comment": "Sent by splice"},
    "delete_invoice": lambda api: {"invoice_id": new_invoice(api)["id"]},
    "add_invoice_tags": lambda api: {"invoice_id": (inv := seeded(api, "invoices"))["id"],
                                     "current_tags": inv["tags"], "tags": ["Synced"]},
    "remove_invoice_tags": lambda api: {
        "invoice_id": (inv := seeded(api, "invoices", tags=["lawn-care", "repeat"]))["id"],
        "current_tags": inv["tags"], "tags": ["repeat"]},
    "list_tags": lambda api: {},
    "create_payment": lambda api: {"invoice_id": seeded(api, "invoices",
                                                        document_status="sent")["id"],
                                   "amount": 10, "method": "card"},
    "push_metrics": lambda api: {"metrics": [metric(12, "facebook"), metric(30, "tiktok")]},
    "list_metrics": lambda api: {"source": "ghl.social_planner", "period_from": "2026-04-15"},
    "get_metric": lambda api: {"metric_id": seeded(api, "metrics")["id"]},
    "delete_metric": lambda api: {"metric_id": seeded(api, "metrics")["id"]},
    "list_webhooks": lambda api: (new_webhook(api), {})[1],
    "create_webhook": lambda api: {"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                   "description": "local receiver"},
    "get_webhook": lambda api: {"webhook_id": new_webhook(api)["id"]},
    "update_webhook": lambda api: {"webhook_id": new_webhook(api)["id"], "active": False,
                                   "events": ["invoice.updated"]},
    "delete_webhook": lambda api: {"webhook_id": new_webhook(api)["id"]},
    "test_webhook": lambda api: {"webhook_id": new_webhook(api)["id"]},
    # curated actions over the same endpoints (issue 19: payments, metrics, tags)
    "add_client_tags": lambda api: {"client_id": (c := seeded(api, "clients"))["id"],
                                    "current_tags": c["tags"], "tags": ["Social"]},
    "remove_client_tags": lambda api: {
        "client_id": (c := new_client(api, tags=["keep", "drop"]))["id"],
        "current_tags": c["tags"], "tags": ["DROP"]},
    "list_unpaid_invoices": lambda api: {},
    "list_client_invoices": lambda api: {"client_id": seeded(api, "clients")["id"]},
    "set_invoice_due_date": lambda api: {"invoice_id": seeded(api, "invoices")["id"],
                                         "due_date": "2026-12-31"},
    "send_invoice": lambda api: {"invoice_id": seeded(api, "invoices",
                                                      document_status="unsent")["id"]},
    "void_invoice": lambda api: {"invoice_id": seeded(api, "invoices",
                                                      document_status="sent")["id"]},
    "list_invoice_payments": lambda api: {"invoice_id": seeded(api, "invoices",
                                                               document_status="fully_paid")["id"]},
    "record_cash_payment": lambda api: {"invoice_id": seeded(api, "invoices",
                                                             document_status="sent")["id"],
                                        "amount": 5, "transaction_id": "receipt-0042"},
    "push_metric": lambda api: {"metric": metric(7, "linkedin")},
    "list_metrics_of_source": lambda api: {"source": "ghl.social_planner"},
    "enable_webhook": lambda api: {"webhook_id": new_webhook(api)["id"]},
    "disable_webhook": lambda api: {"webhook_id": new_webhook(api)["id"]},
}


def test_every_operation_has_a_payload_factory() -> None:
    loaded = get_registry().connector("invoice2go")
    assert sorted(loaded.operations) == OPERATION_IDS == sorted(PAYLOADS)


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_operation_response_validates_against_its_output_schema(api: Api, op_id: str) -> None:
    op = api.op(op_id)
    given = PAYLOADS[op_id](api)
    if op.is_list:
        bodies = api.pages(op, **given)
        records = [r for body in bodies for r in dig(body, op.records)]
        assert records, f"{op_id} returned no records, so its schema check proves nothing"
    else:
        bodies = [api.send(op, f"every-op-{op_id}" if op.method == "POST" else None, **given)]
        if op.method == "DELETE":
            assert bodies == [None]
    for body in bodies:
        problems = [f"{list(e.absolute_path)}: {e.message}"
                    for e in op.output_validator.iter_errors(body)]
        assert not problems, f"{op_id}: response does not match the output schema: {problems}"


def test_webhook_test_call_is_accepted_and_queues_one_test_event(api: Api) -> None:
    hook = new_webhook(api)
    assert hook["secret"].startswith("whsec_")  # shown once, on creation
    assert api.send("get_webhook", webhook_id=hook["id"])["data"]["secret"] is None
    assert api.send("test_webhook", webhook_id=hook["id"]) is None  # 202, no body
    [queued] = api.sandbox.state()["outbox"]
    assert queued["webhook_id"] == hook["id"]
    assert queued["event"]["type"] == "webhook.test" and queued["event"]["data"] == {"object": {}}


# ------------------------------------------------------------------------------ pagination


def test_list_pages_through_every_record_once_in_stable_order(api: Api) -> None:
    op = api.op("list_invoices")
    small = replace(op, pagination={**(op.pagination or {}), "page_size": 7})
    bodies = api.pages(small)
    records = [r for body in bodies for r in body["data"]]
    expected = api.sandbox.invoices()
    assert len(bodies) == -(-len(expected) // 7) >= 3
    assert all(len(body["data"]) == 7 for body in bodies[:-1])
    assert [b["pagination"]["has_more"] for b in bodies] == [True] * (len(bodies) - 1) + [False]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    order = [(datetime.fromisoformat(r["updated_at"]), r["id"]) for r in records]
    assert order == sorted(order)


def test_filters_hold_on_every_page(api: Api) -> None:
    op = api.op("list_invoices")
    small = replace(op, pagination={**(op.pagination or {}), "page_size": 4})
    statuses = ["fully_paid", "void"]
    bodies = api.pages(small, document_status=statuses)
    records = [r for body in bodies for r in body["data"]]
    expected = {i for i, inv in api.sandbox.invoices().items()
                if inv["document_status"] in statuses}
    assert len(bodies) >= 3
    assert sorted(r["id"] for r in records) == sorted(expected)


# ------------------------------------------------------------------------------ idempotency


def test_invoice_created_twice_with_one_key_is_created_once(api: Api) -> None:
    before = len(api.sandbox.invoices())
    body = {"name": "Oliver Queen", "tags": ["Archery"], "items": [LINE]}
    first = new_invoice(api, "order-1001", **body)
    again = new_invoice(api, "order-1001", **body)
    assert again == first
    assert len(api.sandbox.invoices()) == before + 1
    other = new_invoice(api, "order-1002", **body)  # a new key is a new invoice
    assert other["id"] != first["id"]
    assert int(other["document_number"]) == int(first["document_number"]) + 1


def test_conflicting_body_with_a_used_key_is_a_clear_409(api: Api) -> None:
    new_invoice(api, "order-2001", name="Oliver Queen")
    count = len(api.sandbox.invoices())
    with pytest.raises(HTTPError) as caught:
        new_invoice(api, "order-2001", name="Roy Harper")
    error = caught.value
    assert error.status == 409 and not isinstance(error, AuthError)
    assert "invoice2go.create_invoice: HTTP 409" in str(error)
    assert "Idempotency-Key was used with a different request" in str(error)
    assert "idempotency conflict" in (error.hint or "")
    assert len(api.sandbox.invoices()) == count


# ------------------------------------------------------------------------------ scopes


def test_missing_scope_is_a_403_that_names_the_scope(api: Api) -> None:
    narrow = open_api(api.sandbox, "i2g-readonly", ["accounts:read", "clients:read"])
    try:
        record = narrow.store.get_connection("i2g-readonly")
        assert record is not None and record.scopes == ["accounts:read", "clients:read"]
        assert narrow.send("get_account")["data"]["id"] == ACCOUNT_ID
        assert narrow.records("list_tags")  # the API also accepts clients:read here
        count = len(api.sandbox.invoices())
        with pytest.raises(AuthError) as caught:
            new_invoice(narrow, "order-3001")
        assert caught.value.status == 403
        assert "missing scope 'invoices:write'" in str(caught.value)
        assert "splice connect invoice2go --name i2g-readonly --scopes \"accounts:read " \
            "clients:read invoices:write\"" in (caught.value.hint or "")  # keeps what it has
        assert len(api.sandbox.invoices()) == count
    finally:
        narrow.close()
        narrow.store.close()


# ------------------------------------------------------------------------------ tags


def test_tags_are_trimmed_lowercased_and_deduplicated(api: Api) -> None:
    client = new_client(api, name="Daily Bugle", tags=["  Press ", "press", "NYC", "nyc  "])
    assert client["tags"] == ["press", "nyc"]
    changed = api.send("update_client", client_id=client["id"], tags=["NYC", " Tabloid"])
    assert changed["data"]["tags"] == ["nyc", "tabloid"]
    invoice = new_invoice(api, client_id=client["id"], tags=[" Lawn-Care", "LAWN-CARE", "Rush"])
    assert invoice["tags"] == ["lawn-care", "rush"]
    assert invoice["name"] == "Daily Bugle"  # copied from the client
    found = api.records("list_clients", tag="  TABLOID ")
    assert [c["id"] for c in found] == [client["id"]]
    counts = {t["name"]: t for t in api.records("list_tags")}
    assert counts["tabloid"] == {"name": "tabloid", "client_count": 1, "invoice_count": 0}
    assert counts["rush"]["invoice_count"] == 1


def test_tag_rules_are_checked_before_sending_and_by_the_api(api: Api) -> None:
    op = api.op("create_client")
    for bad in (["a,b"], ["   "], ["x" * 51]):
        payload = {"account_id": ACCOUNT_ID, "name": "Bad tags", "tags": bad}
        assert list(op.input_validator.iter_errors(payload)), bad
    with pytest.raises(HTTPError) as caught:  # bypass the input check: the API refuses it too
        api.send(op, validate=False, name="Bad tags", tags=["ok", "a,b"])
    assert caught.value.status == 422
    assert "tags[1]: must not contain a comma" in str(caught.value)


def test_add_and_remove_invoice_tags_keep_the_other_tags(api: Api) -> None:
    invoice = seeded(api, "invoices", tags=["lawn-care", "repeat"])
    added = api.send("add_invoice_tags", invoice_id=invoice["id"],
                     current_tags=invoice["tags"], tags=[" Urgent", "LAWN-CARE"])["data"]
    assert added["tags"] == ["lawn-care", "repeat", "urgent"]
    removed = api.send("remove_invoice_tags", invoice_id=invoice["id"],
                       current_tags=added["tags"], tags=["Repeat ", "absent"])["data"]
    assert removed["tags"] == ["lawn-care", "urgent"]
    stored = api.sandbox.invoices()[invoice["id"]]
    assert stored["tags"] == ["lawn-care", "urgent"]
    unchanged = ("items", "total_amount", "document_status", "payments", "client_id")
    assert {k: stored[k] for k in unchanged} == {k: invoice[k] for k in unchanged}


# ------------------------------------------------------------------------------ metrics


def test_metrics_batch_is_pushed_then_updated_in_place(api: Api) -> None:
    batch = [metric(12, "facebook"), metric(30, "tiktok"),
             metric(4, "facebook", key="posts.failed", label="Posts failed", external_id=None)]
    first = api.send("push_metrics", metrics=batch)
    assert first["meta"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert [m["tags"] for m in first["data"]] == [["social"]] * 3
    batch[0] = metric(15, "facebook")
    second = api.send("push_metrics", metrics=batch)
    assert second["meta"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert [m["id"] for m in second["data"]] == [m["id"] for m in first["data"]]
    assert second["data"][0]["value"] == 15
    assert second["data"][1]["updated_at"] == first["data"][1]["updated_at"]
    listed = api.records("list_metrics", source="ghl.social_planner", period_from="2026-06-01")
    assert sorted((m["key"], m["dimensions"]["platform"], m["value"]) for m in listed) == [
        ("posts.failed", "facebook", 4), ("posts.published", "facebook", 15),
        ("posts.published", "tiktok", 30)]


# ------------------------------------------------------------------------------ OAuth refresh


def test_expired_token_is_refreshed_once_and_the_rotation_is_persisted(api: Api) -> None:
    assert api.send("get_account")["data"]["id"] == ACCOUNT_ID
    before = api.store.get_connection("i2g")
    assert before is not None
    api.sandbox.control("expire-tokens")
    result = api.client.send(api.op("get_account"), api.prepare(api.op("get_account"), {}))
    assert result.response.status_code == 200 and len(result.attempts) == 1
    after = api.store.get_connection("i2g")
    assert after is not None
    assert after.secret["refresh_token"] != before.secret["refresh_token"]
    assert after.secret["access_token"] != before.secret["access_token"]
    reuse = api.sandbox.http.post("/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": before.secret["refresh_token"]})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # A new process reads the rotated token from the store and can refresh again with it.
    api.sandbox.control("expire-tokens")
    fresh = Api(api.sandbox, api.store, api.connector, api.templates, "i2g")
    try:
        assert fresh.send("list_accounts")["data"][0]["id"] == ACCOUNT_ID
    finally:
        fresh.close()
    final = api.store.get_connection("i2g")
    assert final is not None and final.status == "valid"
    assert final.secret["refresh_token"] != after.secret["refresh_token"]


# ------------------------------------------------------------------------------ recipes and CLI

RECIPE = """\
name: Mark invoices of repeat customers
trigger:
  use: invoice2go.invoice_updated
  connection: i2g
  with: {tag: repeat}
steps:
  - use: invoice2go.add_invoice_tags
    connection: i2g
    when: "{{ 'loyal' not in trigger.tags }}"
    with:
      invoice_id: "{{ trigger.id }}"
      current_tags: "{{ trigger.tags }}"
      tags: [Loyal]
"""


def test_recipe_tags_changed_invoices_and_a_second_run_sends_nothing(
        api: Api, tmp_path: Path) -> None:
    recipe = tmp_path / "loyal.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    before = api.sandbox.invoices()
    repeat = {i for i, inv in before.items() if "repeat" in inv["tags"]}
    assert repeat

    first = invoke("run", str(recipe), "--backfill", "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["events_new"] == report["events_succeeded"] == len(repeat)
    assert report["requests_made"] == len(repeat) + 1  # one poll page, one PATCH each
    after = api.sandbox.invoices()
    for invoice_id, invoice in after.items():
        if invoice_id in repeat:
            assert invoice["tags"] == [*before[invoice_id]["tags"], "loyal"]
        else:
            assert invoice == before[invoice_id]

    second = invoke("run", str(recipe), "--json")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["events_failed"] == 0 and not again["errors"]
    assert again["requests_made"] == 1  # the poll; every step was skipped by `when`
    assert api.sandbox.invoices() == after
    third = json.loads(invoke("run", str(recipe), "--json").stdout)
    assert third["events_new"] == 0 and third["requests_made"] == 1


def test_connectors_show_lists_operations_triggers_and_scopes() -> None:
    text = invoke("connectors", "show", "invoice2go")
    assert text.exit_code == 0, text.output
    for name in [*OPERATION_IDS, "invoice_created", "invoice_updated", "client_created",
                 "invoice_paid_webhook", *CONTRACT_SCOPES]:
        assert name in text.stdout, name
    result = invoke("connectors", "show", "invoice2go", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown["scopes"]) == CONTRACT_SCOPES
    assert sorted(o["id"] for o in shown["operations"]) == OPERATION_IDS
    assert all(o["scopes"] and set(o["scopes"]) <= CONTRACT_SCOPES for o in shown["operations"])
    triggers = {t["id"]: t for t in shown["triggers"]}
    for polled in ("invoice_created", "invoice_updated", "client_created"):
        assert triggers[polled]["type"] == "polling"
    assert triggers["invoice_updated"]["scopes"] == ["invoices:read"]
    assert triggers["client_created"]["scopes"] == ["clients:read"]
    assert triggers["invoice_paid_webhook"] == {**triggers["invoice_paid_webhook"],
                                                "type": "webhook", "events": ["invoice.paid"]}


# ------------------------------------------------------------------------------ engine issues


def test_connect_returns_promptly_after_the_redirect(sandbox: Sandbox,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splice_connect._Listener, "serve_forever",
                        socketserver.BaseServer.serve_forever)
    sandbox.control("reset", tokens=True)
    started = time.monotonic()
    api = open_api(sandbox, "timed")
    elapsed = time.monotonic() - started
    api.store.close()
    assert elapsed < 0.3, f"connect took {elapsed:.2f}s"


# ------------------------------------------------------------------------------ new triggers

TRIGGER_RECIPE = """\
name: i2g {trigger} check
trigger:
  use: invoice2go.{trigger}
  connection: i2g
  with: {trigger_with}
steps:
  - use: invoice2go.list_tags
    connection: i2g
"""


def _unsent(api: Api) -> dict[str, Any]:
    return seeded(api, "invoices", document_status="unsent")


def _sent(api: Api) -> dict[str, Any]:
    return seeded(api, "invoices", document_status="sent")


# trigger: (its `with`, the change that must fire it once)
CHANGES: dict[str, tuple[dict[str, Any], Callable[[Api], Any]]] = {
    "invoice_sent": ({}, lambda api: api.send("send_invoice", invoice_id=_unsent(api)["id"])),
    "invoice_partially_paid": ({}, lambda api: api.send(
        "record_cash_payment", "pp-1", invoice_id=_sent(api)["id"], amount=1)),
    "invoice_voided": ({}, lambda api: api.send("void_invoice", invoice_id=_sent(api)["id"])),
    "payment_received": ({}, lambda api: api.send(
        "create_payment", "pay-1", invoice_id=_sent(api)["id"], amount=2, method="card")),
    "metric_pushed": ({}, lambda api: api.send("push_metric", "m-1",
                                               metric=metric(3, "youtube"))),
    "metric_updated": ({}, lambda api: api.send(
        "push_metric", "m-2", metric={**metric(99, "facebook"),
                                      "external_id": seeded(api, "metrics")["external_id"],
                                      "source": seeded(api, "metrics")["source"]})),
    "client_tagged": ({"tag": "social"}, lambda api: api.send(
        "add_client_tags", client_id=(c := seeded(api, "clients"))["id"],
        current_tags=c["tags"], tags=["Social"])),
    "invoice_tagged": ({"tag": "social"}, lambda api: api.send(
        "add_invoice_tags", invoice_id=(i := _unsent(api))["id"], current_tags=i["tags"],
        tags=["Social"])),
    "tag_created": ({}, lambda api: api.send(
        "add_client_tags", client_id=(c := seeded(api, "clients"))["id"],
        current_tags=c["tags"], tags=["brand-new-tag"])),
}


def test_every_new_polling_trigger_has_a_change() -> None:
    polling = {t for t, trig in get_registry().connector("invoice2go").triggers.items()
               if trig.type == "polling"}
    assert set(CHANGES) == polling - {"invoice_created", "invoice_updated", "invoice_paid",
                                      "client_created", "client_updated"}


@pytest.mark.parametrize("trigger", sorted(CHANGES))
def test_new_polling_trigger_fires_once_per_change(api: Api, trigger: str,
                                                   tmp_path: Path) -> None:
    trigger_with, change = CHANGES[trigger]
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(TRIGGER_RECIPE.format(trigger=trigger,
                                            trigger_with=json.dumps(trigger_with)))
    seed = json.loads(invoke("run", str(recipe), "--json").stdout)
    assert seed["events_new"] == 0 and not seed["errors"], seed
    change(api)
    fired = json.loads(invoke("run", str(recipe), "--json").stdout)
    assert fired["events_new"] == fired["events_succeeded"] == 1, fired
    again = json.loads(invoke("run", str(recipe), "--json").stdout)
    assert again["events_new"] == 0, again


def test_splice_call_renders_the_operation_body_template(api: Api) -> None:
    """`splice call` builds the body from the manifest's template, as a recipe step does."""
    result = invoke("call", "invoice2go.push_metric", "-c", "i2g", "--input",
                    json.dumps({"metric": metric(5, "pinterest")}))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 1
    pushed = [m for m in api.sandbox.state()["metrics"]
              if m["external_id"] == "loc_9:2026-06:posts.published:pinterest"]
    assert [m["value"] for m in pushed] == [5]

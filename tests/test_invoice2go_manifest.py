"""The Invoice2go manifest against the meta-schema and the assumed contract (CONTRACT.md)."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from splice.mapping.templates import TemplateEngine
from splice.model.manifest import load_manifest

MANIFEST_FILE = files("splice_connectors.invoice2go") / "manifest.yaml"
MANIFEST: dict[str, Any] = yaml.safe_load(MANIFEST_FILE.read_text(encoding="utf-8"))
README = (files("splice_connectors.invoice2go") / "README.md").read_text(encoding="utf-8")
META_SCHEMA = json.loads(
    (files("splice") / "schemas" / "connector.schema.json").read_text(encoding="utf-8")
)
OPERATIONS: dict[str, dict[str, Any]] = MANIFEST["operations"]
TRIGGERS: dict[str, dict[str, Any]] = MANIFEST["triggers"]

# CONTRACT.md §6 (endpoint summary), one row per method. GET /tags accepts invoices:read OR
# clients:read; the manifest asks for invoices:read and names the alternative.
A = "/v1/accounts/{account_id}"
CONTRACT_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/accounts"): "accounts:read",
    ("GET", A): "accounts:read",
    ("GET", f"{A}/clients"): "clients:read",
    ("POST", f"{A}/clients"): "clients:write",
    ("GET", f"{A}/clients/{{client_id}}"): "clients:read",
    ("PATCH", f"{A}/clients/{{client_id}}"): "clients:write",
    ("DELETE", f"{A}/clients/{{client_id}}"): "clients:write",
    ("GET", f"{A}/invoices"): "invoices:read",
    ("POST", f"{A}/invoices"): "invoices:write",
    ("GET", f"{A}/invoices/{{invoice_id}}"): "invoices:read",
    ("PATCH", f"{A}/invoices/{{invoice_id}}"): "invoices:write",
    ("DELETE", f"{A}/invoices/{{invoice_id}}"): "invoices:write",
    ("POST", f"{A}/invoices/{{invoice_id}}/payments"): "invoices:write",
    ("GET", f"{A}/tags"): "invoices:read",
    ("GET", f"{A}/insights/metrics"): "insights:read",
    ("POST", f"{A}/insights/metrics"): "insights:write",
    ("GET", f"{A}/insights/metrics/{{metric_id}}"): "insights:read",
    ("DELETE", f"{A}/insights/metrics/{{metric_id}}"): "insights:write",
    ("GET", f"{A}/webhooks"): "webhooks:manage",
    ("POST", f"{A}/webhooks"): "webhooks:manage",
    ("GET", f"{A}/webhooks/{{webhook_id}}"): "webhooks:manage",
    ("PATCH", f"{A}/webhooks/{{webhook_id}}"): "webhooks:manage",
    ("DELETE", f"{A}/webhooks/{{webhook_id}}"): "webhooks:manage",
    ("POST", f"{A}/webhooks/{{webhook_id}}/test"): "webhooks:manage",
}
CONTRACT_EVENTS = {
    "client.created", "client.updated", "client.deleted", "invoice.created", "invoice.updated",
    "invoice.sent", "invoice.partially_paid", "invoice.paid", "invoice.voided",
    "invoice.deleted", "payment.created",
}
CURSOR_PAGINATION = {
    "type": "cursor", "cursor_param": "cursor", "cursor_path": "pagination.next_cursor",
    "has_more_path": "pagination.has_more", "limit_param": "limit", "page_size": 100,
}
ACCOUNT_DEFAULT = "{{ connection.account_id }}"

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    """jsonschema checks date-time only with an extra package; RFC 3339 needs a zone."""
    if not isinstance(value, str):
        return True
    return "T" in value.upper() and datetime.fromisoformat(value).tzinfo is not None


TEMPLATES = TemplateEngine()


def validator(schema: Any) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=FORMATS)


def path_params(path: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", path))


def dig(body: Any, dotted: str) -> Any:
    if dotted == ".":
        return body
    for part in dotted.split("."):
        body = body[part]
    return body


def record_schema(op: dict[str, Any]) -> dict[str, Any]:
    """Schema of one record of a list operation (the `records` path walked through `output`)."""
    schema = op["output"]
    for part in op["records"].split("."):
        schema = schema["properties"][part]
    return schema["items"] if schema.get("type") == "array" else schema


def render(template: Any, **context: Any) -> Any:
    """Render a manifest template (or a structure of them) the way the engine does."""
    return TEMPLATES.compile_mapping(template, where="test")(context)


def schemas() -> list[tuple[str, Any]]:
    found = []
    for op_id, op in OPERATIONS.items():
        found += [(f"{op_id}.input", op["input"]), (f"{op_id}.output", op["output"])]
    found += [(f"{t_id}.output", t["output"]) for t_id, t in TRIGGERS.items() if "output" in t]
    return found


# ---------------------------------------------------------------- the manifest as a whole


def test_manifest_validates_against_meta_schema() -> None:
    Draft202012Validator.check_schema(META_SCHEMA)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft202012Validator(META_SCHEMA).iter_errors(MANIFEST)
    ]
    assert errors == []


def test_splice_loads_the_manifest() -> None:
    """The engine's own loader (duplicate keys refused, cross-checks) accepts the file."""
    connector = load_manifest(str(MANIFEST_FILE))
    assert set(connector.operations) == set(OPERATIONS)
    assert set(connector.triggers) == set(TRIGGERS)


@pytest.mark.parametrize(("where", "schema"), schemas(), ids=[w for w, _ in schemas()])
def test_every_schema_is_valid_json_schema(where: str, schema: Any) -> None:
    Draft202012Validator.check_schema(schema)


def test_connection_facts_follow_the_contract() -> None:
    assert MANIFEST["id"] == "invoice2go"
    assert MANIFEST["base_url"] == "https://api.invoice2go.example"
    auth = MANIFEST["auth"]
    # Relative OAuth URLs follow the connection's base URL, so a sandbox serves them too.
    assert (auth["authorize_url"], auth["token_url"], auth["revoke_url"]) == (
        "/oauth/authorize", "/oauth/token", "/oauth/revoke",
    )
    assert auth["rotating_refresh_tokens"] is True and auth["pkce"] is True
    assert auth["token_fields"] == ["account_id"]
    assert set(auth["scopes"]) == set(CONTRACT_SCOPES.values()) | {"clients:read"}
    assert MANIFEST["rate_limits"] == [{"limit": 120, "per": "60s", "key": "connection"}]
    assert MANIFEST["test_operation"] in OPERATIONS


# ---------------------------------------------------------------- operations


def test_every_contract_endpoint_has_an_operation() -> None:
    covered = {(op["method"], op["path"]) for op in OPERATIONS.values()}
    assert set(CONTRACT_SCOPES) - covered == set()


@pytest.mark.parametrize("op_id", OPERATIONS)
def test_operation_scopes_are_exactly_the_contracts(op_id: str) -> None:
    op = OPERATIONS[op_id]
    key = (op["method"], op["path"])
    assert key in CONTRACT_SCOPES, f"{op_id} calls an endpoint the contract does not have"
    assert op["scopes"] == [CONTRACT_SCOPES[key]]
    assert set(op["scopes"]) <= set(MANIFEST["auth"]["scopes"])


def test_tag_listing_names_its_alternative_scope() -> None:
    assert "clients:read" in OPERATIONS["list_tags"]["description"]


# curated actions that preset an input of the endpoint they call
PRESETS = {"list_unpaid_invoices": "document_status", "record_cash_payment": "method"}


@pytest.mark.parametrize("op_id", OPERATIONS)
def test_path_params_are_required_inputs(op_id: str) -> None:
    op = OPERATIONS[op_id]
    params = path_params(op["path"])
    assert params <= set(op["input"]["properties"])
    assert params <= set(op["input"].get("required", []))
    if "account_id" in params:
        assert op["defaults"]["account_id"] == ACCOUNT_DEFAULT
        # other defaults only where the operation is a preset of another (issue 19)
        assert set(op["defaults"]) == {"account_id"} or op_id in PRESETS, op_id


@pytest.mark.parametrize("op_id", OPERATIONS)
def test_every_input_property_is_sent(op_id: str) -> None:
    op = OPERATIONS[op_id]
    props = set(op["input"]["properties"])
    params = path_params(op["path"])
    query = set(op.get("query", []))
    assert query <= props - params, "query names must be non-path input properties"
    rest = props - params - query
    if "body" in op:
        referenced = set(re.findall(r"input\.(\w+)", json.dumps(op["body"])))
        assert referenced <= props
        assert rest <= referenced, f"{rest - referenced} are sent nowhere"
    elif op["method"] in ("GET", "DELETE") and "query" in op:
        assert rest == set(), f"{rest} are sent nowhere"


@pytest.mark.parametrize("op_id", [o for o in OPERATIONS if "records" in OPERATIONS[o]])
def test_list_operations_use_contract_pagination(op_id: str) -> None:
    op = OPERATIONS[op_id]
    if op["method"] == "GET" and op["records"] == "data":  # a list endpoint, not one record's
        assert op["pagination"] == CURSOR_PAGINATION
    assert record_schema(op)["type"] == "object"


def test_post_operations_carry_an_idempotency_key() -> None:
    assert MANIFEST["idempotency"]["header"] == "Idempotency-Key"
    methods = MANIFEST["idempotency"]["methods"]
    posts = [op_id for op_id, op in OPERATIONS.items() if op["method"] == "POST"]
    assert {"create_client", "create_invoice", "create_payment", "push_metrics"} <= set(posts)
    assert "POST" in methods


# ---------------------------------------------------------------- samples

SAMPLED = [o for o in OPERATIONS if "sample" in OPERATIONS[o]]


def test_required_samples_exist() -> None:
    required = {"list_invoices", "get_invoice", "list_clients", "push_metrics", "list_tags"}
    assert required <= set(SAMPLED)


@pytest.mark.parametrize("op_id", SAMPLED)
def test_sample_validates_against_output(op_id: str) -> None:
    op = OPERATIONS[op_id]
    errors = [e.message for e in validator(op["output"]).iter_errors(op["sample"])]
    assert errors == []
    if "records" in op:
        records = dig(op["sample"], op["records"])
        assert isinstance(records, list) and records


def test_output_enums_tolerate_values_added_later() -> None:
    """The contract lets the API add enum values; a new status must not fail a run."""
    body = copy.deepcopy(OPERATIONS["get_invoice"]["sample"])
    body["data"]["document_status"] = "disputed"
    body["data"]["extra_field"] = {"new": True}
    assert validator(OPERATIONS["get_invoice"]["output"]).is_valid(body)
    body["data"]["document_status"] = 7
    assert not validator(OPERATIONS["get_invoice"]["output"]).is_valid(body)


def test_sample_ids_and_times_use_contract_formats() -> None:
    bad = copy.deepcopy(OPERATIONS["get_invoice"]["sample"])
    bad["data"]["updated_at"] = "2026-05-01 10:05"
    assert not validator(OPERATIONS["get_invoice"]["output"]).is_valid(bad)
    bad["data"]["updated_at"] = "2026-05-01T10:05:00+02:00"
    bad["data"]["id"] = "not-a-uuid"
    assert not validator(OPERATIONS["get_invoice"]["output"]).is_valid(bad)


# ---------------------------------------------------------------- inputs a user would write


def is_valid_input(op_id: str, value: dict[str, Any]) -> bool:
    return validator(OPERATIONS[op_id]["input"]).is_valid({"account_id": "24379237", **value})


def test_input_typos_are_rejected_before_sending() -> None:
    assert is_valid_input("list_invoices", {"document_status": ["sent", "unsent"]})
    assert not is_valid_input("list_invoices", {"status": ["sent"]})
    assert not is_valid_input("list_invoices", {"document_status": ["paid"]})


def test_create_invoice_needs_a_client_or_a_name() -> None:
    line = {"description": "Lawn service", "qty": 4, "unit_price": 85}
    client = "5f0b2a0e-5c1e-4d3a-9a57-3f2d7d1c9b10"
    assert is_valid_input("create_invoice", {"client_id": client, "items": [line]})
    assert is_valid_input("create_invoice", {"name": "Daily Planet", "items": [line]})
    assert not is_valid_input("create_invoice", {"items": [line]})
    assert not is_valid_input("create_invoice", {"client_id": None, "items": [line]})
    assert not is_valid_input("create_invoice", {"name": "X", "items": []})
    assert not is_valid_input("create_invoice", {"name": "X", "items": [{**line, "qty": 0}]})
    assert not is_valid_input("create_invoice", {"name": "X", "document_status": "fully_paid",
                                                 "items": [line]})


def test_tags_with_commas_are_rejected() -> None:
    assert is_valid_input("create_client", {"name": "A", "tags": ["vip", "Lawn Care"]})
    assert not is_valid_input("create_client", {"name": "A", "tags": ["a,b"]})
    assert not is_valid_input("create_client", {"name": "A", "tags": ["   "]})


def test_currency_metrics_need_a_currency_code() -> None:
    metric = {"source": "ghl.social_planner", "key": "revenue", "value": 10.5,
              "period_start": "2026-05-01", "period_end": "2026-05-31"}
    assert is_valid_input("push_metrics", {"metrics": [metric]})
    assert not is_valid_input("push_metrics", {"metrics": [{**metric, "unit": "currency"}]})
    assert is_valid_input("push_metrics",
                          {"metrics": [{**metric, "unit": "currency", "currency_code": "USD"}]})
    assert not is_valid_input("push_metrics", {"metrics": [{**metric, "key": "Bad Key"}]})


def test_webhook_urls_must_be_https_or_loopback() -> None:
    events = ["invoice.paid"]
    assert is_valid_input("create_webhook", {"url": "https://hooks.example/x", "events": events})
    assert is_valid_input("create_webhook", {"url": "http://127.0.0.1:8123/hook", "events": events})
    assert not is_valid_input("create_webhook", {"url": "http://example.com/x", "events": events})
    assert not is_valid_input("create_webhook", {"url": "https://x.example", "events": ["nope"]})


# ---------------------------------------------------------------- tag operations


def tag_body(op_id: str, current: list[str], tags: list[str]) -> list[str]:
    body = render(OPERATIONS[op_id]["body"], input={"current_tags": current, "tags": tags})
    assert set(body) == {"tags"}
    return body["tags"]


def test_add_invoice_tags_keeps_existing_tags() -> None:
    assert tag_body("add_invoice_tags", ["lawn-care", "vip"], [" Social ", "VIP"]) == [
        "lawn-care", "vip", "social",
    ]
    assert tag_body("add_invoice_tags", [], ["new"]) == ["new"]


def test_remove_invoice_tags_keeps_the_others() -> None:
    assert tag_body("remove_invoice_tags", ["lawn-care", "vip", "social"], ["VIP "]) == [
        "lawn-care", "social",
    ]
    assert tag_body("remove_invoice_tags", ["vip"], ["absent"]) == ["vip"]


def test_tag_operations_patch_the_invoice() -> None:
    for op_id in ("add_invoice_tags", "remove_invoice_tags"):
        op = OPERATIONS[op_id]
        assert (op["method"], op["path"]) == ("PATCH", f"{A}/invoices/{{invoice_id}}")
        assert set(op["body"]) == {"tags"}
        assert "current_tags" in op["input"]["required"]


# ---------------------------------------------------------------- triggers

POLLING = [t for t in TRIGGERS if TRIGGERS[t]["type"] == "polling"]
WEBHOOK = [t for t in TRIGGERS if TRIGGERS[t]["type"] == "webhook"]


@pytest.mark.parametrize("t_id", POLLING)
def test_polling_trigger_fits_its_operation(t_id: str) -> None:
    trigger = TRIGGERS[t_id]
    op = OPERATIONS[trigger["operation"]]
    assert "records" in op and op["method"] == "GET"
    fields = record_schema(op)["properties"]
    if "updated_at" in fields:  # tags have no change time: polled whole
        cursor = trigger["cursor"]
        assert cursor["param"] in op["input"]["properties"]
        assert cursor["field"] in fields
    for name in ("key", "version", "filter"):
        if name in trigger:
            TEMPLATES.compile_expression(trigger[name], where=f"{t_id}.{name}")
            assert set(re.findall(r"record\.(\w+)", trigger[name])) <= set(fields)
    assert trigger["defaults"]["account_id"] == ACCOUNT_DEFAULT
    # The trigger's other defaults are valid input once the account id is rendered.
    assert validator(op["input"]).is_valid({**trigger["defaults"], "account_id": "24379237"})
    if "sample" in trigger:
        assert validator(record_schema(op)).is_valid(trigger["sample"])


def test_created_triggers_key_on_id_and_updated_triggers_add_a_version() -> None:
    for t_id in POLLING:
        if t_id == "tag_created":  # a tag is its name
            assert TRIGGERS[t_id]["key"] == "{{ record.name }}"
            continue
        assert TRIGGERS[t_id]["key"] == "{{ record.id }}"
        if t_id.endswith("_updated"):
            assert TRIGGERS[t_id]["version"] == "{{ record.updated_at }}"
        elif t_id == "payment_received":  # each payment fires once
            assert TRIGGERS[t_id]["version"] == "{{ record.payments | length }}"
        else:
            assert "version" not in TRIGGERS[t_id]
    assert {"invoice_created", "invoice_updated", "client_created"} <= set(POLLING)


def test_updated_triggers_skip_records_never_edited() -> None:
    sample = OPERATIONS["list_invoices"]["sample"]["data"][0]
    fresh = {**sample, "updated_at": sample["created_at"]}
    check = TRIGGERS["invoice_updated"]["filter"]
    assert render(check, record=sample) is True
    assert render(check, record=fresh) is False


def test_every_event_type_has_one_webhook_trigger() -> None:
    seen = [event for t_id in WEBHOOK for event in TRIGGERS[t_id]["events"]]
    assert sorted(seen) == sorted(CONTRACT_EVENTS)
    for t_id in WEBHOOK:
        (event,) = TRIGGERS[t_id]["events"]
        assert t_id == event.replace(".", "_") + "_webhook"


@pytest.mark.parametrize("t_id", WEBHOOK)
def test_webhook_trigger_declares_contract_signature(t_id: str) -> None:
    trigger = TRIGGERS[t_id]
    assert trigger["signature"] == {
        "scheme": "hmac_sha256", "header": "X-Webhook-Signature",
        "timestamp_header": "X-Webhook-Timestamp", "format": "v1={hex}",
        "message": "{timestamp}.{body}", "tolerance": 300,
    }
    assert trigger["delivery_id"] == {"header": "X-Webhook-Id"}
    assert trigger["event_type"] == {"header": "X-Webhook-Event"}
    assert trigger["record"] == "data.object"
    # keyed like the polling triggers (the record's id), so a recipe may name both
    assert trigger["key"] == ("{{ event.id }}" if t_id == "payment_created_webhook"
                              else "{{ record.id }}")
    polling = TRIGGERS.get(t_id.removesuffix("_webhook"))
    if polling is not None:
        assert (trigger["key"], trigger.get("version")) == (polling["key"],
                                                            polling.get("version"))
    assert trigger["output"]["properties"]["type"] == {"const": trigger["events"][0]}
    if "sample" in trigger:
        errors = [e.message for e in validator(trigger["output"]).iter_errors(trigger["sample"])]
        assert errors == []


def test_webhook_event_for_a_different_type_is_rejected() -> None:
    trigger = TRIGGERS["invoice_paid_webhook"]
    event = copy.deepcopy(trigger["sample"])
    assert validator(trigger["output"]).is_valid(event)
    event["type"] = "invoice.voided"
    with pytest.raises(jsonschema.ValidationError):
        validator(trigger["output"]).validate(event)


# ---------------------------------------------------------------- documentation


def test_readme_says_the_contract_is_assumed_and_lists_everything() -> None:
    head = README[:1500].lower()
    assert "no public api" in head and "assumed" in head
    missing = [name for name in [*OPERATIONS, *TRIGGERS] if f"`{name}`" not in README]
    assert missing == []
    for command in ("splice sandbox invoice2go", "splice connect invoice2go --name my-invoice2go"):
        assert command in README

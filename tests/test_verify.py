"""Verified test transactions: ``splice test --send --verify`` against the real sandboxes.

Both sandboxes run on loopback (real HTTP, real OAuth); every write a recipe sends is read
back through the get operation its manifest declares and compared field by field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splice.errors import DocumentError
from splice.model.manifest import load_manifest
from splice.model.recipe import load_recipe
from splice.plugins import get_registry
from splice.run.demo import CONNECTIONS, Sandboxes, ensure_connection
from splice.run.verify import compare
from splice.store.database import Store
from splice.store.queries import list_events

from .conftest import ROOT, invoke

RECIPES = ROOT / "recipes"
USERS = RECIPES / "ghl_users_to_invoice2go_clients.yaml"
STATS = RECIPES / "ghl_statistics_to_invoice2go_dashboard.yaml"


@pytest.fixture
def world() -> Iterator[tuple[Sandboxes, Store]]:
    """Both sandboxes (seed data) and the recipes' connections, holding every scope."""
    registry = get_registry()
    with Sandboxes(registry, None) as sandboxes:
        store = Store.open()
        for cid, name in CONNECTIONS.items():
            connector = sandboxes.connectors[cid]
            ensure_connection(store, connector, name, sandboxes, connector.scopes)
        yield sandboxes, store
        store.close()


def _verify(*args: str) -> tuple[int, dict[str, Any]]:
    result = invoke("test", *args, "--send", "--verify", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_created_client_is_read_back_and_every_field_is_equal(world: Any) -> None:
    sandboxes, _store = world
    code, report = _verify(str(USERS), "--sample")
    assert code == 0, report
    assert report["verified"] is True and report["verdict"] == "all fields equal"
    [check] = report["checks"]
    assert (check["step"], check["action"], check["verify"], check["status"]) == (
        "created", "invoice2go.create_client", "invoice2go.get_client", "equal")
    fields = {f["field"]: f for f in check["fields"]}
    assert set(fields) == {"name", "email", "phone", "notes", "tags"}
    assert fields["email"]["stored"] == "maya.lopez@example.com"
    assert all(f["status"] == "equal" for f in fields.values())
    assert check["request"]["method"] == "GET" and "/clients/" in check["request"]["url"]
    stored = [c for c in sandboxes.state("invoice2go")["clients"]
              if c["email"] == "maya.lopez@example.com"]
    assert len(stored) == 1  # the test transaction really wrote it, once


def test_a_value_the_api_changes_is_shown_as_differs_and_exits_1(world: Any,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "users.yaml"  # Invoice2go lower-cases tags: "HighLevel" is stored lower
    copy.write_text(USERS.read_text().replace("tags: [highlevel]", "tags: [HighLevel]", 1))
    code, report = _verify(str(copy), "--sample")
    assert code == 1
    assert report["verified"] is False and report["verdict"] == "fields differ"
    fields = {f["field"]: f for f in report["checks"][0]["fields"]}
    assert fields["tags"] == {"field": "tags", "sent": ["HighLevel"], "stored": ["highlevel"],
                              "status": "differs"}
    assert fields["name"]["status"] == "equal"


def test_the_diff_is_printed_as_a_table(world: Any, tmp_path: Path) -> None:
    copy = tmp_path / "users.yaml"
    copy.write_text(USERS.read_text().replace("tags: [highlevel]", "tags: [HighLevel]", 1))
    text = invoke("test", str(copy), "--sample", "--send", "--verify")
    assert text.exit_code == 1
    assert "created invoice2go.create_client -> invoice2go.get_client: differs" in text.stdout
    assert '["HighLevel"]' in text.stdout and '["highlevel"]' in text.stdout
    assert text.stdout.rstrip().endswith("fields differ")


def test_each_pushed_metric_is_read_back(world: Any) -> None:
    code, report = _verify(str(STATS), "--live")
    assert code == 0, report["checks"]
    checks = report["checks"]
    assert [c["step"] for c in checks] == [f"pushed[0] metrics[{i}]" for i in range(5)]
    assert {c["verify"] for c in checks} == {"invoice2go.get_metric"}
    assert all(c["status"] == "equal" for c in checks)
    keys = [next(f["stored"] for f in c["fields"] if f["field"] == "key") for c in checks]
    assert keys == ["posts.published", "impressions", "likes", "comments", "followers"]
    dims = [f for f in checks[0]["fields"] if f["field"].startswith("dimensions.")]
    assert [f["field"] for f in dims] == ["dimensions.location_id", "dimensions.weekday"]


def test_a_stored_event_is_tested_by_id(world: Any) -> None:
    _sandboxes, store = world
    ran = invoke("run", str(USERS), "--backfill")
    assert ran.exit_code == 0, ran.output
    [event, *_] = list_events(store, recipe=load_recipe(USERS).id)
    result = invoke("test", str(USERS), "--event", str(event.id), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == f"stored event {event.id}"
    assert data["event"]["id"] == (event.payload if isinstance(event.payload, dict)
                                   else json.loads(event.payload))["id"]
    missing = invoke("test", str(USERS), "--event", "999999")
    assert missing.exit_code != 0 and "has no event 999999" in missing.stderr


def test_verify_needs_send() -> None:
    result = invoke("test", str(USERS), "--verify")
    assert result.exit_code == 2
    assert "--verify reads back what the test transaction wrote; add --send" in result.output


def test_compare_walks_objects_and_masks_secrets() -> None:
    checks = compare({"name": "A", "address": {"city": "X", "zip": "00123"},
                      "password": "hunter2", "tags": ["a"], "gone": 1},
                     {"name": "A", "address": {"city": "Y", "zip": "00123"},
                      "password": "hunter2", "tags": ["a"]}, ignore=("tags",))
    assert [(c.field, c.status) for c in checks] == [
        ("name", "equal"), ("address.city", "differs"), ("address.zip", "equal"),
        ("password", "equal"), ("gone", "missing")]
    secret = next(c for c in checks if c.field == "password")
    assert secret.sent == "***" and secret.stored == "***"
    assert compare({"n": 1}, {"n": 1.0})[0].status == "equal"
    assert compare({"b": True}, {"b": 1})[0].status == "differs"
    assert compare({"s": "00123"}, {"s": 123})[0].status == "differs"


def _manifest(tmp_path: Path, verify: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(f"""\
id: shop
name: Shop
version: 0.1.0
base_url: https://shop.example
auth: {{type: none}}
operations:
  get_item:
    method: GET
    path: /items/{{item_id}}
    input: {{type: object, required: [item_id], properties: {{item_id: {{type: string}}}}}}
    output: {{type: object, properties: {{data: {{type: object}}}}}}
  delete_item:
    method: DELETE
    path: /items/{{item_id}}
    input: {{type: object, required: [item_id], properties: {{item_id: {{type: string}}}}}}
    output: {{type: "null"}}
  create_item:
    method: POST
    path: /items
    verify: {verify}
    input: {{type: object, properties: {{name: {{type: string}}}}}}
    output: {{type: object, properties: {{ok: {{type: boolean}}}}}}
""")
    return path


@pytest.mark.parametrize(("verify", "message"), [
    ("get_itme", "unknown operation 'get_itme' (did you mean 'get_item'?)"),
    ("delete_item", "'delete_item' is a DELETE operation; verify needs a read (GET)"),
    ("get_item", "cannot tell where the input 'item_id' of 'get_item' comes from"),
    ("{operation: get_item, with: {item_id: '{{ output.id }}', nope: 1}}",
     "'get_item' takes no input 'nope'"),
])
def test_verify_mistakes_are_located_in_the_manifest(tmp_path: Path, verify: str,
                                                     message: str) -> None:
    path = _manifest(tmp_path, verify)
    with pytest.raises(DocumentError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert problem.line == 20 and message in problem.message, problem
    assert problem.path.startswith("operations.create_item.verify")


def test_verify_resolves_inputs_and_record() -> None:
    registry = get_registry()
    i2g = registry.connector("invoice2go")
    assert i2g.operations["create_client"].verify.with_ == {"client_id": "{{ output.data.id }}"}
    assert i2g.operations["add_invoice_tags"].verify.with_ == {
        "invoice_id": "{{ input.invoice_id }}"}
    assert i2g.operations["add_invoice_tags"].verify.record == "data"
    ghl = registry.connector("ghl_users")
    assert ghl.operations["create_user"].verify.ignore == ("password",)
    writes = [op for c in (i2g, ghl) for op in c.operations.values()
              if op.method in ("POST", "PUT", "PATCH") and op.verify is not None]
    assert len(writes) >= 20

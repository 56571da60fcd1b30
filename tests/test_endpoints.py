"""Endpoint enable/disable per connection: `splice connections endpoints`, and a disabled
endpoint refused by validate, run, call, serve's recipe loading and a running plan.

The connections are real OAuth connections to the HighLevel and Invoice2go sandboxes on
loopback (the demo's own connect code); every command goes through the `splice` CLI.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import pg
from .conftest import invoke

HL, I2G = "my-highlevel", "my-invoice2go"
TAGS = "ghl_tags_to_invoice2go.yaml"       # polls ghl_users.tag_updated (list_tags)


@pytest.fixture
def sandboxes(splice_home: Path) -> Iterator[Any]:
    from splice.connections.status import needed_scopes
    from splice.plugins import get_registry
    from splice.run.demo import CONNECTIONS, Sandboxes, ensure_connection, recipes_dir
    from splice.store.database import Store

    registry = get_registry()
    paths = sorted(recipes_dir().glob("*.yaml"))
    with Sandboxes(registry, None) as boxes:
        store = Store.open()
        for cid, connector in boxes.connectors.items():
            ensure_connection(store, connector, CONNECTIONS[cid], boxes,
                              needed_scopes(connector, paths))
        store.close()
        yield boxes


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    from splice.run.demo import recipes_dir

    target = tmp_path / TAGS
    shutil.copy(recipes_dir() / TAGS, target)
    return target


def _endpoints(name: str) -> dict[str, Any]:
    listed = invoke("connections", "endpoints", name, "--json")
    assert listed.exit_code == 0, listed.output
    return {e["id"]: e for e in json.loads(listed.stdout)["endpoints"]}


def test_endpoints_lists_every_operation_and_trigger_with_scopes(sandboxes: Any) -> None:
    from splice.plugins import get_registry

    connector = get_registry().connector("ghl_users")
    rows = _endpoints(HL)
    assert set(rows) == set(connector.operations) | set(connector.triggers)
    assert all(r["enabled"] for r in rows.values())
    tags = rows["list_tags"]
    assert tags["kind"] == "operation" and tags["method"] == "GET"
    assert tags["scopes"] == connector.operations["list_tags"].scopes
    assert tags["scopes_granted"] is True and tags["missing_scopes"] == []
    assert rows["tag_updated"]["uses"] == "list_tags"
    # the demo connection holds only what the recipes need: something must be missing
    missing = [r for r in rows.values() if not r["scopes_granted"]]
    assert missing and all(r["missing_scopes"] for r in missing)
    table = invoke("connections", "endpoints", HL)
    assert table.exit_code == 0 and "list_tags" in table.stdout and "enabled" in table.stdout


def test_disable_refuses_validate_run_call_then_enable_restores(sandboxes: Any,
                                                               recipe: Path) -> None:
    assert invoke("validate", str(recipe)).exit_code == 0
    off = invoke("connections", "endpoints", HL, "--disable", "ghl_users.list_tags")
    assert off.exit_code == 0, off.output
    assert "ghl_users.list_tags disabled for connection 'my-highlevel'" in off.stdout
    assert _endpoints(HL)["list_tags"]["enabled"] is False
    listed = invoke("connections", "endpoints", HL, "--disabled")
    assert "list_tags" in listed.stdout and "DISABLED" in listed.stdout
    again = invoke("connections", "endpoints", HL, "--disable", "list_tags")
    assert "(it already was)" in again.stdout

    words = ("endpoint ghl_users.list_tags is disabled for connection 'my-highlevel' "
             "(trigger ghl_users.tag_updated polls it); enable it with `splice connections "
             "endpoints my-highlevel --enable list_tags`")
    checked = invoke("validate", str(recipe))
    assert checked.exit_code == 2
    assert f"{recipe}:36:" in checked.stderr and words in checked.stderr
    ran = invoke("run", str(recipe))
    assert ran.exit_code == 2 and words in ran.stderr
    called = invoke("call", "ghl_users.list_tags", "-c", HL)
    assert called.exit_code == 2, called.output
    assert ("endpoint ghl_users.list_tags is disabled for connection 'my-highlevel'; enable "
            "it with `splice connections endpoints my-highlevel --enable list_tags`"
            ) in called.stderr
    # another connection and another endpoint are not affected
    assert invoke("connections", "test", HL).exit_code == 0
    assert _endpoints(I2G)["list_clients"]["enabled"] is True

    on = invoke("connections", "endpoints", HL, "--enable", "list_tags")
    assert on.exit_code == 0 and "list_tags enabled" in on.stdout
    assert invoke("validate", str(recipe)).exit_code == 0
    assert invoke("call", "ghl_users.list_tags", "-c", HL).exit_code == 0


def test_a_disabled_action_is_refused_at_its_step(sandboxes: Any, recipe: Path) -> None:
    invoke("connections", "endpoints", I2G, "--disable", "add_invoice_tags")
    checked = invoke("validate", str(recipe))
    assert checked.exit_code == 2
    assert ("endpoint invoice2go.add_invoice_tags is disabled for connection "
            "'my-invoice2go'; enable it") in checked.stderr
    assert "polls it" not in checked.stderr


def test_bad_names_are_clear_errors(sandboxes: Any) -> None:
    unknown = invoke("connections", "endpoints", HL, "--disable", "list_tag")
    assert unknown.exit_code == 2
    assert "connector 'ghl_users' has no operation or trigger 'list_tag'" in unknown.stderr
    assert "list_tags" in unknown.stderr  # did you mean
    both = invoke("connections", "endpoints", HL, "--disable", "list_tags",
                  "--enable", "ghl_users.list_tags")
    assert both.exit_code == 2 and "both --enable and --disable" in both.stderr
    nobody = invoke("connections", "endpoints", "nobody")
    assert nobody.exit_code == 2 and "nobody" in nobody.stderr
    assert "Traceback" not in unknown.output + both.output + nobody.output


def test_a_running_plan_refuses_a_step_disabled_after_it_was_built(sandboxes: Any,
                                                                  recipe: Path) -> None:
    """serve keeps compiled plans: a step disabled later fails its event, nothing is sent."""
    from splice.cli.common import load_plan
    from splice.plugins import get_registry
    from splice.run.runner import Runner
    from splice.store.database import Store
    from splice.store.endpoints import set_enabled

    registry = get_registry()
    store = Store.open()
    try:
        plan = load_plan(str(recipe), registry, store)
        set_enabled(store, HL, "list_tags", False)
        runner = Runner(plan, store, registry)
        try:
            report = runner.run()
        finally:
            runner.close()
        assert not report.ok
        assert any("endpoint ghl_users.list_tags is disabled" in e for e in report.errors)
        assert runner.requests_made == 0
    finally:
        store.close()


def test_serve_recipe_loading_refuses_a_disabled_endpoint(sandboxes: Any, recipe: Path) -> None:
    from splice.errors import DocumentError
    from splice.plugins import get_registry
    from splice.serve.book import check_text
    from splice.store.database import Store
    from splice.store.endpoints import set_enabled

    store = Store.open()
    try:
        text = recipe.read_text()
        check_text(text, str(recipe), get_registry(), store)
        set_enabled(store, I2G, "list_invoices", False)
        with pytest.raises(DocumentError, match="invoice2go.list_invoices is disabled"):
            check_text(text, str(recipe), get_registry(), store)
    finally:
        store.close()


def test_remove_forgets_disabled_endpoints(sandboxes: Any) -> None:
    from splice.store.database import Store
    from splice.store.endpoints import disabled

    invoke("connections", "endpoints", HL, "--disable", "list_tags", "--disable", "get_tag_details")
    store = Store.open()
    try:
        assert disabled(store, HL) == {"list_tags", "get_tag_details"}
        assert invoke("connections", "remove", HL).exit_code == 0
        assert disabled(store, HL) == set()
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_round_trip(backend: str, tmp_path: Path) -> None:
    from splice.store.database import Store
    from splice.store.endpoints import (
        disabled,
        disabled_by_connection,
        forget_connection,
        set_enabled,
    )

    def check(store: Any) -> None:
        assert set_enabled(store, "a", "x", False) is True
        assert set_enabled(store, "a", "x", False) is False  # already disabled
        assert set_enabled(store, "a", "y", False) and set_enabled(store, "b", "x", False)
        assert disabled(store, "a") == {"x", "y"}
        assert disabled_by_connection(store) == {"a": {"x", "y"}, "b": {"x"}}
        assert set_enabled(store, "a", "x", True) is True
        assert set_enabled(store, "a", "x", True) is False
        assert disabled(store, "a") == {"y"}
        assert forget_connection(store, "a") == 1 and disabled(store, "a") == set()

    if backend == "sqlite":
        store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
        try:
            check(store)
        finally:
            store.close()
        return
    with pg.schema_url() as url:
        store = Store.open(url)
        try:
            check(store)
        finally:
            store.close()


def test_serve_loads_a_refused_recipe_again_once_the_endpoint_is_enabled(
        sandboxes: Any, recipe: Path) -> None:
    from splice.plugins import get_registry
    from splice.serve.book import RecipeBook, text_hash
    from splice.store import registry as reg
    from splice.store.database import Store
    from splice.store.endpoints import set_enabled

    store = Store.open()
    try:
        text = recipe.read_text()
        reg.register(store, "tags", "tags", str(recipe), text, text_hash(text))
        book = RecipeBook(store, get_registry())
        book.refresh()
        assert book.recipes["tags"].plan is not None
        set_enabled(store, HL, "get_tag_details", False)
        book = RecipeBook(store, get_registry())  # serve starts again: builds every plan
        book.refresh()
        loaded = book.recipes["tags"]
        assert loaded.plan is None and "ghl_users.get_tag_details is disabled" in \
            (loaded.problems or "")
        assert book.refresh() == []  # nothing changed: nothing reloaded
        set_enabled(store, HL, "get_tag_details", True)
        assert book.refresh() == ["tags"]
        assert book.recipes["tags"].plan is not None
    finally:
        store.close()

"""The recipes in recipes/: each validates, and each does its job against both sandboxes.

Connections are made through the real OAuth flow against the sandboxes (a script plays the
browser), recipes run through the engine over loopback HTTP, and every check reads the target
sandbox's data (``GET /__test__/state``), which is what a user would look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from splice.connections.client import connection_client
from splice.connections.status import needed_scopes
from splice.errors import AuthError
from splice.http.request import prepare_call
from splice.mapping.templates import TemplateEngine
from splice.model.recipe import load_recipe
from splice.plugins import get_registry
from splice.run.demo import CONNECTIONS, Sandboxes, connect_to_sandbox, ensure_connection
from splice.run.plan import build_plan
from splice.run.report import RunReport
from splice.run.runner import Runner
from splice.store.database import Store

from .conftest import ROOT, invoke

RECIPES = ROOT / "recipes"
ALL = sorted(RECIPES.glob("*.yaml"))
TAGS = RECIPES / "ghl_tags_to_invoice2go.yaml"
STATS = RECIPES / "ghl_statistics_to_invoice2go_dashboard.yaml"
USERS = RECIPES / "ghl_users_to_invoice2go_clients.yaml"
HEALTH = RECIPES / "connection_health.yaml"


@dataclass
class World:
    sandboxes: Sandboxes
    store: Store
    registry: Any

    def run(self, path: Path, *, backfill: bool = False,
            now: datetime | None = None) -> RunReport:
        plan = build_plan(load_recipe(path), self.registry,
                          TemplateEngine(self.registry.filters),
                          connections={c.name: c for c in self.store.list_connections()})
        kwargs: dict[str, Any] = {}
        if now is not None:
            kwargs["now"] = lambda: now
        runner = Runner(plan, self.store, self.registry, **kwargs)
        try:
            report = runner.run(mode="once", backfill=backfill)
        finally:
            runner.close()
        assert report.ok, report.errors
        return report

    def invoice2go(self) -> dict[str, Any]:
        return self.sandboxes.state("invoice2go")

    def highlevel(self) -> dict[str, Any]:
        return self.sandboxes.state("ghl_users")

    def call(self, connection: str, op_id: str, payload: dict[str, Any]) -> Any:
        record = self.store.require_connection(connection)
        connector = self.registry.connector(record.connector)
        op = connector.operations[op_id]
        client = connection_client(connector, record, self.store, self.registry)
        with client:
            call = prepare_call(op, connector, payload, base_url=client.base_url,
                                idempotency_key=f"test-{op_id}")
            return client.send(op, call).json()


@pytest.fixture
def world() -> Iterator[World]:
    """Both sandboxes (seed data, in memory) and the connections the recipes name."""
    registry = get_registry()
    with Sandboxes(registry, None) as sandboxes:
        store = Store.open()
        for cid, name in CONNECTIONS.items():
            connector = sandboxes.connectors[cid]
            ensure_connection(store, connector, name, sandboxes, needed_scopes(connector, ALL))
        yield World(sandboxes, store, registry)
        store.close()


# ---------------------------------------------------------------------------- validate


def test_every_recipe_validates_against_the_sandbox_connections(world: World) -> None:
    assert [p.name for p in ALL] == sorted(["connection_health.yaml",
                                            "ghl_statistics_to_invoice2go_dashboard.yaml",
                                            "ghl_tags_to_invoice2go.yaml",
                                            "ghl_users_to_invoice2go_clients.yaml",
                                            "ghl_users_to_invoice2go_clients_live.yaml"])
    result = invoke("validate", *map(str, ALL))
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok") == len(ALL)


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _problems(path: Path) -> list[str]:
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    return [line.removeprefix("error: ") for line in result.stderr.splitlines()
            if line.startswith("error: ")]


def test_a_misspelt_field_in_a_copied_recipe_is_named_with_its_line(
        world: World, tmp_path: Path) -> None:
    text = USERS.read_text().replace('email: "{{ trigger.email }}"',
                                     'email: "{{ trigger.emial }}"', 1)
    copy = tmp_path / "users.yaml"
    copy.write_text(text)
    line = _line_of(text, "trigger.emial")
    problems = _problems(copy)
    assert len(problems) == 1
    assert re.match(rf"^{re.escape(str(copy))}:{line}:\d+: steps\[0\]\.with\.email: "
                    r"'trigger\.emial' does not exist in the trigger's output schema "
                    r"\(did you mean 'email'\?\)", problems[0]), problems


def test_a_value_of_the_wrong_type_is_named_with_its_line(world: World,
                                                          tmp_path: Path) -> None:
    text = (USERS.read_text()
            .replace("tags: [highlevel]", "tags: highlevel", 1)
            .replace('name: "{{ trigger.name }}"', 'name: "{{ trigger.roles }}"', 1))
    copy = tmp_path / "users.yaml"
    copy.write_text(text)
    problems = _problems(copy)
    name_line, tags_line = _line_of(text, "trigger.roles"), _line_of(text, "tags: highlevel")
    assert any(p.startswith(f"{copy}:{name_line}:") and "steps[1].with.name: type mismatch: "
               "'trigger.roles' is object but the input expects string" in p
               for p in problems), problems
    assert any(p.startswith(f"{copy}:{tags_line}:") and
               "steps[1].with.tags: expected a list, got a string" in p
               for p in problems), problems


# ---------------------------------------------------------------------------- tags


def _tags_by_invoice(state: dict[str, Any]) -> dict[str, list[str]]:
    return {i["id"]: list(i["tags"]) for i in state["invoices"]}


def test_tag_recipe_tags_every_non_void_invoice_of_the_client_named_by_the_tag(
        world: World) -> None:
    first = world.run(TAGS)  # the first run remembers the 250 existing tags
    assert first.seeded == 250 and first.events_new == 0
    before = world.invoice2go()
    tags = {t["tag"]: t for t in world.highlevel()["world"]["tags"]}
    world.sandboxes.control("ghl_users", "PATCH", f"tags/{tags['Daily Planet']['_id']}",
                            {"tag": "Daily Planet"})
    world.sandboxes.control("ghl_users", "PATCH", f"tags/{tags['promo']['_id']}",
                            {"tag": "promo"})  # no client is named "promo"

    report = world.run(TAGS)

    assert report.events_new == 2
    after = world.invoice2go()
    client = next(c for c in after["clients"] if c["name"] == "Daily Planet")
    old, new = _tags_by_invoice(before), _tags_by_invoice(after)
    expected = {i["id"] for i in after["invoices"]
                if i["client_id"] == client["id"] and i["document_status"] != "void"}
    assert expected, "the seed gives Daily Planet invoices"
    changed = {i for i in new if new[i] != old[i]}
    assert changed == expected
    for invoice_id in expected:  # the tag is added and the invoice keeps its own tags
        assert new[invoice_id] == old[invoice_id] + ["social-daily-planet"]
    assert world.run(TAGS).events_new == 0
    assert _tags_by_invoice(world.invoice2go()) == new


def test_a_new_tag_with_a_client_name_tags_that_clients_invoices(world: World) -> None:
    world.run(TAGS)
    world.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
    world.run(TAGS)
    state = world.invoice2go()
    kord = next(c for c in state["clients"] if c["name"] == "Kord Industries")
    tagged = [i for i in state["invoices"] if "social-kord-industries" in i["tags"]]
    assert tagged and all(i["client_id"] == kord["id"] for i in tagged)


# ---------------------------------------------------------------------------- statistics


def _social_metrics(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in state["metrics"] if m["source"] == "ghl.social_planner"
            and m["external_id"] and m["external_id"].startswith("ghl:")]


def _with_days(path: Path, days: int, tmp_path: Path) -> Path:
    copy = tmp_path / path.name
    text = path.read_text()
    assert "  days: 1 " in text
    copy.write_text(text.replace("  days: 1 ", f"  days: {days} ")
                    .replace("name: HighLevel social statistics",
                             f"name: {days} days of HighLevel social statistics"))
    return copy


def test_statistics_recipe_pushes_yesterday_once_per_figure(world: World) -> None:
    world.run(STATS, backfill=True)
    metrics = _social_metrics(world.invoice2go())
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    figures = {"posts.published", "impressions", "likes", "comments", "followers"}
    assert {(m["period_start"], m["key"]) for m in metrics} == {(yesterday, k) for k in figures}
    location = "ve9EPM428h8vShlRW1KT"
    for m in metrics:
        assert m["period_end"] == m["period_start"]
        assert m["external_id"] == f"ghl:{location}:{m['period_start']}:{m['key']}"
        assert m["dimensions"]["location_id"] == location


def test_statistics_recipe_pushes_a_configured_range_idempotently(world: World,
                                                                  tmp_path: Path) -> None:
    world.run(STATS, backfill=True)
    first = {m["external_id"]: m for m in _social_metrics(world.invoice2go())}
    week = _with_days(STATS, 7, tmp_path)
    world.run(week, backfill=True)
    metrics = _social_metrics(world.invoice2go())
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(7, 0, -1)]
    assert len(metrics) == 35 and len({m["external_id"] for m in metrics}) == 35
    assert {m["period_start"] for m in metrics} == set(days)
    by_id = {m["external_id"]: m for m in metrics}
    for key, metric in first.items():  # yesterday's figures: the same metrics, not new ones
        assert by_id[key]["id"] == metric["id"] and by_id[key]["value"] == metric["value"]
    stats = world.call("my-highlevel", "get_statistics", {
        "locationId": "ve9EPM428h8vShlRW1KT",
        "profileIds": load_recipe(STATS).vars["profile_ids"]})["results"]
    by = {(m["period_start"], m["key"]): m["value"] for m in metrics}
    for i, day in enumerate(days):
        assert by[(day, "likes")] == stats["postPerformance"]["likes"][i]
        assert by[(day, "posts.published")] == sum(
            series[i] for series in stats["postPerformance"]["posts"].values())
        assert by[(day, "followers")] == sum(
            p["series"][i] for p in stats["platformTotals"]["followers"].values())


def test_statistics_of_the_next_day_add_one_day(world: World) -> None:
    world.run(STATS, backfill=True)
    first = {m["external_id"]: m for m in _social_metrics(world.invoice2go())}
    world.sandboxes.control("ghl_users", "POST", "advance-clock", {"seconds": 86400})

    report = world.run(STATS, now=datetime.now(UTC) + timedelta(days=1))

    assert report.events_new == 1
    second = {m["external_id"]: m for m in _social_metrics(world.invoice2go())}
    assert len(second) == 10  # yesterday's 5 and the new day's 5, no duplicates
    assert len(_social_metrics(world.invoice2go())) == 10
    assert set(first) < set(second)
    for key in first:  # the earlier day's figures stay one metric with the same id and value
        assert second[key]["id"] == first[key]["id"]
        assert second[key]["value"] == first[key]["value"]


# ---------------------------------------------------------------------------- users


def test_users_recipe_creates_missing_clients_and_updates_existing_ones(world: World) -> None:
    users = [u for u in world.highlevel()["world"]["users"]
             if "ve9EPM428h8vShlRW1KT" in u["roles"]["locationIds"]]
    known = users[0]
    world.call("my-invoice2go", "create_client", {
        "account_id": world.store.require_connection("my-invoice2go")
        .config["fields"]["account_id"],
        "name": "Old name", "email": known["email"].upper(), "tags": ["vip"]})
    clients_before = len(world.invoice2go()["clients"])

    report = world.run(USERS, backfill=True)

    assert report.events_new == len(users)
    clients = world.invoice2go()["clients"]
    assert len(clients) == clients_before + len(users) - 1
    for user in users:
        matching = [c for c in clients if (c["email"] or "").casefold() ==
                    user["email"].casefold()]
        assert len(matching) == 1, user["email"]
        assert matching[0]["name"] == user["name"]
        assert "highlevel" in matching[0]["tags"]
    updated = next(c for c in clients if c["email"].casefold() == known["email"].casefold())
    assert updated["tags"] == ["vip", "highlevel"]

    assert world.run(USERS).events_new == 0
    assert world.invoice2go()["clients"] == clients


# ---------------------------------------------------------------------------- health


def test_health_recipe_puts_a_reauth_warning_on_the_dashboard_once(world: World) -> None:
    assert world.run(HEALTH).events_seen == 0  # deployed while every connection works
    sandboxes = world.sandboxes
    connector = sandboxes.connectors["invoice2go"]
    connect_to_sandbox(connector, world.store, name="old-invoice2go",
                       base_url=sandboxes.urls["invoice2go"],
                       config=sandboxes.configs["invoice2go"], scopes=["accounts:read"])
    # The provider stops accepting its refresh token (e.g. the app was uninstalled).
    world.store.update_tokens("old-invoice2go", {"refresh_token": "revoked"},
                              {"expires_at": 0})
    with pytest.raises(AuthError, match="re-authorised"):
        world.call("old-invoice2go", "get_account", {"account_id": "24379237"})

    report = world.run(HEALTH)

    assert report.events_new == 1
    warnings = [m for m in world.invoice2go()["metrics"] if m["source"] == "splice"]
    assert len(warnings) == 1
    warning = warnings[0]
    assert warning["key"] == "connection.reauth_required"
    assert warning["value"] == 1
    assert warning["label"] == ("Reconnect old-invoice2go: splice connect invoice2go "
                                "--name old-invoice2go")
    assert warning["dimensions"] == {"connection": "old-invoice2go",
                                     "connector": "invoice2go"}
    assert warning["external_id"].startswith("splice:old-invoice2go:")
    assert world.run(HEALTH).events_new == 0
    assert len([m for m in world.invoice2go()["metrics"] if m["source"] == "splice"]) == 1

"""The budget planner (``splice.run.budget``) and ``splice validate --budget``: costs measured
from real runs of the seed recipes against both sandboxes (loopback HTTP), windows filled
against the manifests' declared budgets, and the suggestion sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splice.http.ratelimit import Window
from splice.model.recipe import load_recipe
from splice.run.budget import KeyBudget, RecipeCost, WindowUse, nice_interval, plan_budget, suggest
from splice.run.plan import build_plan
from splice.store.queries import poll_costs

from .conftest import invoke
from .test_recipes import STATS, TAGS, World, world  # noqa: F401 - the fixture

LOCATION = "ve9EPM428h8vShlRW1KT"


def _plan(w: World, path: Path) -> object:
    from splice.mapping.templates import TemplateEngine

    return build_plan(load_recipe(path), w.registry, TemplateEngine(w.registry.filters),
                      connections={c.name: c for c in w.store.list_connections()})


def test_costs_are_measured_from_the_last_polls_of_the_tag_recipe(world: World) -> None:  # noqa: F811
    first = world.run(TAGS)  # seeds the existing tags: pages only, no event
    world.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
    second = world.run(TAGS)  # one new tag: its steps run
    world.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Daily Planet"})
    third = world.run(TAGS)   # another one
    assert (first.events_new, second.events_new, third.events_new) == (0, 1, 1)
    state = world.invoice2go()

    def invoices(name: str) -> int:
        client = next(c for c in state["clients"] if c["name"] == name)
        return len([i for i in state["invoices"] if i["client_id"] == client["id"]
                    and i["document_status"] != "void"])

    kord, planet = invoices("Kord Industries"), invoices("Daily Planet")
    assert kord and planet

    plan = _plan(world, TAGS)
    recipe_id = plan.recipe.id  # type: ignore[attr-defined]
    polls = poll_costs(world.store, plan.recipe.name)  # type: ignore[attr-defined]
    assert [p.requests for p in polls] == [third.requests_made, second.requests_made,
                                           first.requests_made]
    result = plan_budget(world.store, world.registry, [(recipe_id, "tags", plan)])

    ghl = next(k for k in result.keys if k.connector == "ghl_users")
    i2g = next(k for k in result.keys if k.connector == "invoice2go")
    assert ghl.key == f"ghl_users/locationId={LOCATION}"  # HighLevel: per location
    assert i2g.key == "invoice2go/connection=my-invoice2go"
    (hl_cost,) = ghl.costs
    (i2g_cost,) = i2g.costs
    assert hl_cost.measured == i2g_cost.measured == 3
    # The trigger's pages are what no step result accounts for: every poll reads the same
    # pages of tags (the seeding poll, which ran no step, shows how many).
    pages = first.requests_made
    assert second.requests_made == pages + 3 + kord  # details, clients, invoices, tagged
    assert hl_cost.pages == pages
    assert hl_cost.events == pytest.approx(2 / 3)
    # Per event: get_tag_details on HighLevel; list_clients, one list_invoices (one client
    # named like the tag) and one add_invoice_tags per invoice on Invoice2go.
    assert hl_cost.step_calls == 1
    assert i2g_cost.step_calls == pytest.approx(2 + (kord + planet) / 2)
    assert hl_cost.per_poll == pytest.approx(pages + 2 / 3)
    assert i2g_cost.per_poll == pytest.approx(2 / 3 * (2 + (kord + planet) / 2))
    # Declared windows: 100 / 10 s and 200,000 / day per location; 120 / min per connection.
    windows = {str(w.window): w for w in ghl.windows}
    assert set(windows) == {"100 per 10 s", "200,000 per 1 d"}
    daily = windows["200,000 per 1 d"]
    assert daily.used == pytest.approx(hl_cost.per_poll * 96)  # every 15m: 96 polls a day
    assert windows["100 per 10 s"].used == pytest.approx(hl_cost.per_poll)  # one poll: burst
    assert ghl.suggestion.startswith(f"at every 15m this recipe uses {daily.percent:g}% "
                                     "of the daily budget")
    assert not result.over


def test_a_recipe_that_never_polled_is_estimated_from_its_plan(world: World) -> None:  # noqa: F811
    plan = _plan(world, STATS)
    result = plan_budget(world.store, world.registry, [("stats", "stats", plan)])
    costs = {c.connection: c for k in result.keys for c in k.costs}
    assert costs["my-highlevel"].measured == 0 and costs["my-highlevel"].source == "estimated"
    assert costs["my-highlevel"].per_poll == 1  # one page
    assert costs["my-invoice2go"].per_poll == 1  # one event x one push_metrics item


def _key(per_poll: float, every: float, *windows: Window) -> KeyBudget:
    cost = RecipeCost("r", "R", "c", every, per_poll, per_poll, 0, 0, 5)
    kb = KeyBudget("ghl_users/locationId=L", "ghl_users", ["c"], [cost])
    for w in windows:
        polls = w.seconds / every if every < w.seconds else 1.0
        kb.windows.append(WindowUse(w, per_poll * polls))
    return kb


def test_suggestion_when_over_the_daily_budget_names_an_interval_that_fits() -> None:
    kb = _key(150, 60, Window(100, 10), Window(200_000, 86400))
    # 150 requests x 1440 polls = 216,000 a day: 108%.
    text = suggest(kb)
    assert text.startswith("at every 1m this recipe uses 108% of the daily budget")
    assert "one poll needs 150 requests, more than the 100 per 10 s window allows" in text
    assert "over the daily budget (200,000 per 1 d): poll every 2m or less often" in text
    assert kb.over


def test_suggestion_under_the_target_says_the_share_only() -> None:
    kb = _key(10, 300, Window(100, 10), Window(200_000, 86400))
    assert suggest(kb) == "at every 5m this recipe uses 1.4% of the daily budget"
    assert not kb.over
    assert nice_interval(61) == "2m" and nice_interval(3600 * 5) == "6h"
    assert nice_interval(1.7) == "2s" and nice_interval(86400 * 3) == "7d"


def test_validate_budget_prints_the_same_numbers_as_the_planner(world: World) -> None:  # noqa: F811
    world.run(TAGS)
    world.run(TAGS)
    plan = _plan(world, TAGS)
    expected = plan_budget(world.store, world.registry,
                           [(plan.recipe.id, plan.recipe.name, plan)]).to_json()  # type: ignore[attr-defined]
    result = invoke("validate", "--budget", "--json", str(TAGS))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected
    human = invoke("validate", "--budget", str(TAGS))
    assert human.exit_code == 0, human.output
    assert f"budget ghl_users/locationId={LOCATION}" in human.stdout
    assert expected["budgets"][0]["suggestion"] in human.stdout

    # Without files: the enabled registered recipes (what the dashboard's /budget shows).
    assert invoke("recipes", "add", str(TAGS)).exit_code == 0
    registered = invoke("validate", "--budget", "--json")
    assert registered.exit_code == 0, registered.output
    assert json.loads(registered.stdout) == expected

    refused = invoke("validate", "--json", str(TAGS))
    assert refused.exit_code == 2 and "--json goes with --budget" in refused.stderr

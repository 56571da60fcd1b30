"""The budget planner: what the enabled recipes' polls cost against the declared request
budgets (``rate_limits`` in each manifest), per connection and rate-limit key.

For each polling recipe, the requests one poll costs on each connection it uses are

    trigger pages  +  events per poll  x  sum over steps of (items per event)

*measured* from its last finished polls in the ledger (``requests_made``, ``events_new`` and
the step results each run wrote; the requests no step result accounts for are the trigger's
pages), or *estimated* from the plan when it has not polled yet (one page, one event, one
item per step: what a quiet poll that finds one record costs). Requests are grouped by the
budget they draw from (``splice.http.ratelimit.budget_key``: HighLevel's budgets are per
``locationId``, so two connections to one location share them), and each declared window is
filled with ``requests per poll x polls in the window`` (a window shorter than the interval
holds one poll of each recipe: a burst). A suggestion sentence says how much of the longest
window the recipes use at their intervals, and which interval fits when they use more than
:data:`TARGET` of it.

``splice validate --budget`` and the dashboard's ``/budget`` page print this same model.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..http.ratelimit import Window, budget_key
from ..model.durations import DAY, human, parse_period
from ..store.queries import poll_costs

__all__ = ["TARGET", "BudgetPlan", "KeyBudget", "RecipeCost", "WindowUse", "every_text",
           "nice_interval", "plan_budget", "recipe_costs", "suggest"]

TARGET = 0.8  # suggest a longer interval when the recipes use more than this share of a window
RUNS_MEASURED = 20  # the last finished polls a recipe's cost is measured from

_NICE = [float(s) for s in (1, 2, 5, 10, 15, 20, 30)] + \
    [60.0 * m for m in (1, 2, 5, 10, 15, 20, 30)] + \
    [3600.0 * h for h in (1, 2, 3, 4, 6, 8, 12)] + [DAY * d for d in (1, 2, 7)]


@dataclass(frozen=True)
class RecipeCost:
    """What one poll of a recipe costs on one connection."""

    recipe: str
    name: str
    connection: str
    every: float | None      # seconds between polls; None: webhook-only (cost per event)
    per_poll: float          # requests on this connection per poll (or per event)
    pages: float             # trigger pages per poll (on the trigger's connection, else 0)
    events: float            # events a poll brings, on average
    step_calls: float        # step requests per event on this connection
    measured: int            # polls it was measured from; 0 = estimated from the plan

    @property
    def source(self) -> str:
        return f"measured over {self.measured} poll(s)" if self.measured else "estimated"


@dataclass(frozen=True)
class WindowUse:
    """One declared window of a budget, filled by the recipes."""

    window: Window
    used: float  # requests the recipes make in one such window

    @property
    def share(self) -> float:
        return self.used / self.window.limit if self.window.limit else 0.0

    @property
    def percent(self) -> float:
        return round(100.0 * self.share, 1)

    @property
    def name(self) -> str:
        return _window_name(self.window)


@dataclass
class KeyBudget:
    """The recipes drawing from one rate-limit key (e.g. ``ghl_users/locationId=...``)."""

    key: str
    connector: str
    connections: list[str]
    costs: list[RecipeCost] = field(default_factory=list)
    windows: list[WindowUse] = field(default_factory=list)
    suggestion: str = ""

    @property
    def over(self) -> bool:
        return any(w.share > 1.0 for w in self.windows if not _burst(w, self.costs))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "connector": self.connector, "connections": self.connections,
                "over": self.over, "suggestion": self.suggestion,
                "windows": [{"window": str(w.window), "limit": w.window.limit,
                             "seconds": w.window.seconds, "used": round(w.used, 2),
                             "percent": w.percent} for w in self.windows],
                "recipes": [{"recipe": c.recipe, "name": c.name, "connection": c.connection,
                             "every": c.every, "requests_per_poll": round(c.per_poll, 2),
                             "pages": round(c.pages, 2), "events_per_poll": round(c.events, 2),
                             "step_requests_per_event": round(c.step_calls, 2),
                             "source": c.source} for c in self.costs]}


@dataclass
class BudgetPlan:
    keys: list[KeyBudget]
    unlimited: list[RecipeCost]  # costs on connections whose connector declares no budget

    @property
    def over(self) -> bool:
        return any(k.over for k in self.keys)

    def to_json(self) -> dict[str, Any]:
        return {"over": self.over, "target_percent": round(TARGET * 100),
                "budgets": [k.to_json() for k in self.keys],
                "without_budget": [{"recipe": c.recipe, "connection": c.connection,
                                    "requests_per_poll": round(c.per_poll, 2)}
                                   for c in self.unlimited]}


def _window_name(w: Window) -> str:
    names = {DAY: "daily", 3600.0: "hourly", 60.0: "per-minute", 1.0: "per-second"}
    if w.seconds in names:
        return f"{names[w.seconds]} budget"
    if w.seconds < 60:
        return f"{w.seconds:g}-second budget"
    return f"{human(w.seconds)} budget"


def _burst(use: WindowUse, costs: list[RecipeCost]) -> bool:
    """A window shorter than every interval: it holds one poll (the limiter spreads it)."""
    return all(c.every is None or c.every >= use.window.seconds for c in costs)


def nice_interval(seconds: float) -> str:
    """The shortest usual interval at least ``seconds`` long, as a recipe writes it."""
    for nice in _NICE:
        if nice >= seconds:
            return every_text(nice)
    return every_text(math.ceil(seconds / DAY) * DAY)


def every_text(seconds: float) -> str:
    for unit, suffix in ((DAY, "d"), (3600.0, "h"), (60.0, "m")):
        if seconds >= unit and seconds % unit == 0:
            return f"{seconds / unit:g}{suffix}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- cost of a poll


def _connections_of(plan: Any) -> list[tuple[int | None, str | None]]:
    """(step index or None for the trigger, connection) for every part that sends."""
    out: list[tuple[int | None, str | None]] = []
    if plan.polls and plan.trigger.operation:
        out.append((None, plan.sources[0].connection if plan.sources else None))
    for step in plan.steps:
        out.append((step.index, step.connection))
    return out


def recipe_costs(store: Any, recipe_id: str, name: str, plan: Any) -> list[RecipeCost]:
    """The requests per poll ``plan`` costs on each connection it uses (measured from its last
    polls in ``store`` when there are any, else estimated)."""
    every = float(plan.recipe.every) if plan.polls else None
    polls = poll_costs(store, plan.recipe.name, RUNS_MEASURED) if store is not None else []
    trigger_conn = plan.sources[0].connection if plan.sources else None
    sends_trigger = plan.polls and bool(plan.trigger.operation)
    if polls:
        pages = statistics.median(
            max(0, p.requests - sum(p.step_calls.values())) for p in polls)
        events = statistics.fmean(p.events_new for p in polls)
        stepped = sum(p.events_stepped for p in polls)
        per_step = {s.index: (sum(p.step_calls.get(s.index, 0) for p in polls) / stepped
                              if stepped else 1.0) for s in plan.steps}
    else:
        pages, events = (1.0 if sends_trigger else 0.0), 1.0
        per_step = {s.index: 1.0 for s in plan.steps}
    if not sends_trigger:
        pages = 0.0
    by_conn: dict[str, list[float]] = {}  # connection -> [pages, step calls per event]
    if sends_trigger and trigger_conn:
        by_conn.setdefault(trigger_conn, [0.0, 0.0])[0] += pages
    for step in plan.steps:
        if step.connection:
            by_conn.setdefault(step.connection, [0.0, 0.0])[1] += per_step[step.index]
    return [RecipeCost(recipe_id, name, conn, every, p + events * calls if every else calls,
                       p, events, calls, len(polls))
            for conn, (p, calls) in by_conn.items()]


# --------------------------------------------------------------------------- the plan


def plan_budget(store: Any, registry: Any, recipes: Iterable[tuple[str, str, Any]]
                ) -> BudgetPlan:
    """The budget plan of ``recipes`` (``(id, name, plan)`` each, e.g. the enabled ones)."""
    keys: dict[str, KeyBudget] = {}
    windows: dict[str, set[Window]] = {}
    unlimited: list[RecipeCost] = []
    for recipe_id, name, plan in recipes:
        for cost in recipe_costs(store, recipe_id, name, plan):
            connector = _connector_of(plan, cost.connection)
            if connector is None or not connector.rate_limits:
                unlimited.append(cost)
                continue
            record = store.get_connection(cost.connection) if store is not None else None
            record = record or SimpleNamespace(name=cost.connection, config={})
            for spec in connector.rate_limits:
                key = budget_key(connector, record, spec.get("key"))
                kb = keys.setdefault(key, KeyBudget(key, connector.id, []))
                if cost.connection not in kb.connections:
                    kb.connections.append(cost.connection)
                if cost not in kb.costs:
                    kb.costs.append(cost)
                windows.setdefault(key, set()).add(
                    Window(int(spec["limit"]), parse_period(spec["per"])))
    for key, kb in keys.items():
        for w in sorted(windows[key], key=lambda w: w.seconds):
            used = sum(c.per_poll * (w.seconds / c.every if c.every < w.seconds else 1.0)
                       for c in kb.costs if c.every)
            kb.windows.append(WindowUse(w, used))
        kb.suggestion = suggest(kb)
    return BudgetPlan(sorted(keys.values(), key=lambda k: k.key), unlimited)


def _connector_of(plan: Any, connection: str) -> Any:
    for source in plan.sources:
        if source.connection == connection:
            return source.connector
    for step in plan.steps:
        if step.connection == connection:
            return step.connector
    return None


def _intervals(costs: list[RecipeCost]) -> str:
    everies = sorted({c.every for c in costs if c.every})
    if not everies:
        return "on their webhook events"
    if len(everies) == 1:
        return f"at every {every_text(everies[0])}"
    return "at their intervals (" + ", ".join(every_text(e) for e in everies) + ")"


def suggest(kb: KeyBudget) -> str:
    """One or two sentences about a key's budget (see the module docstring)."""
    polling = [c for c in kb.costs if c.every]
    if not polling:
        return ("these recipes run on webhook events only: each event costs "
                f"{sum(c.per_poll for c in kb.costs):g} request(s) of this budget")
    who = "this recipe uses" if len({c.recipe for c in polling}) == 1 else "these recipes use"
    longest = max(kb.windows, key=lambda w: w.window.seconds)
    text = f"{_intervals(polling)} {who} {_percent(longest.percent)} of the {longest.name}"
    if _burst(longest, polling):
        daily = sum(c.per_poll * DAY / c.every for c in polling if c.every)
        text += (" when they poll at the same moment" if who.startswith("these") else
                 " in one poll") + f" ({daily:,.0f} requests a day)"
    for use in kb.windows:
        if _burst(use, polling):
            if use.used > use.window.limit:
                wait = math.ceil(use.used / use.window.limit) * use.window.seconds
                text += (f"; one poll needs {use.used:.0f} requests, more than the "
                         f"{use.window} window allows: it is spread over about {human(wait)} "
                         "(nothing fails)")
            continue
        if use.share > TARGET:
            factor = use.share / TARGET
            slowest = max(c.every for c in polling if c.every)
            fits = nice_interval(slowest * factor) if len({c.every for c in polling}) == 1 \
                else f"{factor:.1f}x their intervals"
            verb = "over" if use.share > 1 else "near"
            text += (f"; that is {verb} the {use.name} ({use.window}): poll every {fits} "
                     f"or less often to stay under {TARGET:.0%}")
            break
    return text


def _percent(value: float) -> str:
    if value == 0:
        return "0%"
    if value < 0.1:
        return "less than 0.1%"
    return f"{value:g}%" if value < 10 else f"{value:.0f}%"

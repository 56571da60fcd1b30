"""The overview at ``/``: where things stand and the next step to take.

A person who has just signed in sees a checklist (connect both apps, build a recipe, run a
test transaction, go live) with the step they are on highlighted, then the state of their
connections, recipes, recent runs and failed events, each linking to its page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..connections.status import token_state
from ..store import overview
from ..store import registry as reg

__all__ = ["routes"]


def _steps(connections: int, recipes: list[Any], tested: bool) -> list[dict[str, Any]]:
    enabled = any(r.enabled for r in recipes)
    steps = [
        {"title": "Connect your apps", "href": "/connections",
         "text": "Sign in to HighLevel and Invoice2go so splice may read and write for you.",
         "done": connections >= 2},
        {"title": "Pick what should happen", "href": "/catalog",
         "text": "Browse the triggers and actions each app offers, with their fields.",
         "done": bool(recipes)},
        {"title": "Build a recipe", "href": "/recipes/new",
         "text": "Choose a trigger, the actions, and map fields from dropdowns.",
         "done": bool(recipes)},
        {"title": "Run a test transaction", "href": "/recipes",
         "text": "Send one record and read it back to check every field arrived.",
         "done": tested or enabled},
        {"title": "Go live", "href": "/recipes",
         "text": "Turn the recipe on; watch its runs here as they happen.", "done": enabled},
    ]
    current = next((i for i, s in enumerate(steps) if not s["done"]), None)
    for i, step in enumerate(steps):
        step["current"] = i == current
    return steps


def routes(dash: Any) -> list[BaseRoute]:
    def index(request: Request) -> Response:
        connections = []
        for record in dash.store.list_connections():
            state, words = token_state(record)
            connections.append({"name": record.name, "connector": record.connector,
                                "state": state, "words": words})
        recipes = reg.list_all(dash.store)
        runs = dash.store.list_runs(limit=8)
        counts = overview.event_counts(dash.store)
        tested = any(r.mode == "test" for r in runs)
        return dash.render(request, "home.html", {
            "steps": _steps(len(connections), recipes, tested),
            "connections": connections, "recipes": recipes, "runs": runs, "counts": counts})

    return [Route("/", index, methods=["GET"])]

"""Recipes in the dashboard: the list, one recipe, its verified test transaction, go live.

``/recipes`` lists the registered recipes (enabled, status, the ``file:line:col`` problems of
a refused version); ``/recipes/{id}`` shows one with its file; ``/recipes/{id}/test`` runs a
verified test transaction (:func:`splice.run.verify.run_verified`, the code behind ``splice
test --send --verify``) on one chosen event: each step's rendered input, request and response
side by side (redacted), then the read-back diff; it is recorded as a run of mode ``test``.
``POST /recipes/{id}/enable`` ("Go live") and ``/disable`` do what ``splice recipes
enable``/``disable`` do.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..builder.check import plan_text
from ..errors import SpliceError
from ..run.runner import Runner
from ..run.verify import VerifiedTrial, run_verified
from ..secrets import redact_data
from ..store import registry as reg
from ..store.queries import list_events
from .builder_form import read_form

__all__ = ["routes"]

RECENT_EVENTS = 20


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _events(store: Any, recipe_id: str) -> list[Any]:
    """The newest stored events of a recipe (to test one again)."""
    return list_events(store, recipe=recipe_id, limit=RECENT_EVENTS)


def test_transaction(dash: Any, row: Any, source: str, event_id: int | None
                     ) -> VerifiedTrial:
    """Run one verified test transaction of a registered recipe, recorded as a test run."""
    plan = plan_text(row.source, row.path, dash.registry, dash.store)
    run_id = dash.store.start_run(plan.recipe.id, mode="test", recipe_path=row.path)
    runner = Runner(plan, dash.store, dash.registry)
    error = None
    try:
        result = run_verified(runner, source=source, event_id=event_id)
        if not result.ok:
            error = result.verdict
        return result
    except SpliceError as exc:
        error = str(exc)
        raise
    finally:
        runner.close()
        dash.store.finish_run(run_id, status="failed" if error else "succeeded",
                              error=error, requests_made=runner.requests_made)


def routes(dash: Any) -> list[BaseRoute]:
    def _row(request: Request) -> Any:
        return reg.get(dash.store, request.path_params["rid"])

    def _missing(request: Request) -> Response:
        return dash.render(request, "recipes/missing.html",
                           {"rid": request.path_params["rid"]}, status=404)

    def index(request: Request) -> Response:
        return dash.render(request, "recipes/list.html",
                           {"recipes": reg.list_all(dash.store)})

    def detail(request: Request) -> Response:
        row = _row(request)
        if row is None:
            return _missing(request)
        return dash.render(request, "recipes/detail.html", {
            "r": row, "runs": dash.store.list_runs(limit=10, recipe=row.id)})

    def test_page(request: Request) -> Response:
        row = _row(request)
        if row is None:
            return _missing(request)
        return dash.render(request, "recipes/test.html", {
            "r": row, "events": _events(dash.store, row.id), "result": None,
            "problem": None, "chosen": "auto", "dumps": _dumps, "redact": redact_data})

    async def run_test(request: Request) -> Response:
        posted = await read_form(request)
        row = await run_in_threadpool(_row, request)
        if row is None:
            return _missing(request)
        chosen = str(posted.get("event") or "auto")
        source, event_id = chosen, None
        if chosen.isdigit():
            source, event_id = "auto", int(chosen)
        elif chosen not in ("auto", "live", "sample"):
            source = "auto"

        def run() -> tuple[Any, str | None]:
            try:
                return test_transaction(dash, row, source, event_id), None
            except SpliceError as exc:
                return None, str(exc)

        result, problem = await run_in_threadpool(run)
        return dash.render(request, "recipes/test.html", {
            "r": row, "events": await run_in_threadpool(_events, dash.store, row.id),
            "result": result, "problem": problem, "chosen": chosen, "dumps": _dumps,
            "redact": redact_data}, status=200 if problem is None else 400)

    def _set_enabled(enabled: bool) -> Any:
        def handler(request: Request) -> Response:
            row = _row(request)
            if row is None:
                return _missing(request)
            reg.update(dash.store, row.id, enabled=enabled)
            dash.flash(request, f"'{row.name}' is live: splice serve runs it now" if enabled
                       else f"'{row.name}' is disabled")
            return RedirectResponse(f"/recipes/{row.id}", status_code=303)
        return handler

    return [Route("/recipes", index, methods=["GET"]),
            Route("/recipes/{rid}", detail, methods=["GET"]),
            Route("/recipes/{rid}/test", test_page, methods=["GET"]),
            Route("/recipes/{rid}/test", run_test, methods=["POST"]),
            Route("/recipes/{rid}/enable", _set_enabled(True), methods=["POST"]),
            Route("/recipes/{rid}/disable", _set_enabled(False), methods=["POST"])]

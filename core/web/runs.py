"""Runs, events and dead letters in the dashboard, updated live.

- ``GET /runs``: runs newest first, filtered by recipe and status, 50 a page (keyset paging:
  ``?after=``); new runs and status changes appear without reloading (``/live/runs``).
- ``GET /runs/{id}``: a run (a unique id prefix works) with the events it claimed or touched.
- ``GET /events/{id}``: an event: its trigger record, each step's input (the request sent)
  and output, attempts, and its error with its class and what to do.
- ``POST /events/{id}/retry``: run a failed event again now (what ``POST /api/events/{id}/retry``
  does); a dead event is requeued first (``splice runs retry --dead ID``) and then run.
- ``GET /dead-letters`` and ``POST /dead-letters/{id}/requeue``: events splice gave up on,
  requeued with the store function ``splice runs retry --dead`` uses; the scheduler runs them.
- ``GET /live/runs``: the server-sent events stream (:mod:`splice.web.live`).

Everything shown was redacted when it was stored; templates escape it.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..run.retry import explain
from ..store import queries
from ..store import registry as reg
from ..store.tables import RUN_STATUSES
from .live import LiveFeed

__all__ = ["routes"]

PAGE = 50


MAX_SHOWN = 100_000  # characters of one JSON value a page shows


def pretty(value: Any) -> str:
    """A stored JSON value as indented text (escaped by the template), cut after
    :data:`MAX_SHOWN` characters (``splice runs show RUN --json`` prints all of it)."""
    if value is None:
        return ""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    if len(text) > MAX_SHOWN:
        return (text[:MAX_SHOWN] + f"\n... ({len(text) - MAX_SHOWN:,} more characters: "
                "`splice runs show RUN --json` prints everything)")
    return text


def _step_view(s: Any) -> dict[str, Any]:
    request = s.request if isinstance(s.request, dict) else {}
    body = {k: request[k] for k in ("query", "json", "form") if request.get(k) is not None}
    return {"step": s.step_id or str(s.step_index), "item": s.item_index,
            "status": s.status, "attempts": s.attempts, "method": request.get("method", ""),
            "url": request.get("url", ""), "input": pretty(body) if body else "",
            "output": pretty(s.output), "error": s.error, "finished_at": s.finished_at,
            "key": s.idempotency_key}


def _recipe_of(dash: Any, event: Any) -> Any:
    """The registered recipe of an event (events record the recipe id)."""
    return reg.get(dash.store, event.recipe)


def routes(dash: Any) -> list[BaseRoute]:
    def render_row(kind: str, record: Any) -> str:
        template = "runs/_run_row.html" if kind == "run" else "runs/_event_row.html"
        return dash.fragment(template, {"r": record, "e": record})

    feed = LiveFeed(dash.store, render_row)
    dash.live = feed
    closers = getattr(dash, "closers", None)
    if isinstance(closers, list):
        closers.append(feed.close)

    # -- runs -------------------------------------------------------------------------------
    def runs_list(request: Request) -> Response:
        recipe = request.query_params.get("recipe") or None
        status = request.query_params.get("status") or None
        if status not in (None, *RUN_STATUSES):
            status = None
        after = request.query_params.get("after") or None
        page = queries.runs_page(dash.store, recipe=recipe, status=status, limit=PAGE,
                                 after=after)
        names = sorted({r.name for r in reg.list_all(dash.store)} | ({recipe} if recipe else
                                                                     set()))
        return dash.render(request, "runs/list.html", {
            "runs": page.runs, "after": page.after, "recipe": recipe, "status": status,
            "first_page": after is None, "names": names, "statuses": RUN_STATUSES})

    def run_detail(request: Request) -> Response:
        record = dash.store.get_run(request.path_params["run_id"][:64])
        if record is None:
            return dash.render(request, "runs/missing.html", {"what": "run"}, status=404)
        failed = {e.id: explain(e.error_class, e.last_error) for e in record.events}
        counts: dict[int, int] = {}
        for s in record.step_results:
            counts[s.event_id] = counts.get(s.event_id, 0) + 1
        return dash.render(request, "runs/detail.html", {
            "run": record, "events": record.events, "errors": failed, "step_counts": counts,
            "error": record.error})

    # -- events -----------------------------------------------------------------------------
    def _event(request: Request) -> Any:
        try:
            event_id = int(request.path_params["event_id"])
        except ValueError:
            return None
        return dash.store.get_event(event_id) if 0 < event_id < 2 ** 62 else None

    def event_detail(request: Request) -> Response:
        event = _event(request)
        if event is None:
            return dash.render(request, "runs/missing.html", {"what": "event"}, status=404)
        message, fix = explain(event.error_class, event.last_error)
        steps = [_step_view(s) for s in queries.event_steps(dash.store, event.id)]
        recipe = _recipe_of(dash, event)
        return dash.render(request, "runs/event.html", {
            "event": event, "message": message, "fix": fix, "steps": steps,
            "payload": pretty(event.payload), "recipe": recipe,
            "dead": queries.dead_letter_of(dash.store, event.id) if event.status == "dead"
            else None,
            "can_retry": event.status in ("failed", "pending", "dead")})

    def event_retry(request: Request) -> Response:
        event = _event(request)
        if event is None:
            return dash.render(request, "runs/missing.html", {"what": "event"}, status=404)
        target = f"/events/{event.id}"
        if event.status not in ("failed", "pending", "dead"):
            dash.flash(request, f"Event {event.id} is {event.status}: only failed events are "
                                "retried.", "error")
            return RedirectResponse(target, status_code=303)
        if event.status == "dead":
            dash.store.requeue_dead_letter(event.id)
        if dash.service.scheduler.request_retry(event.recipe, event.id):
            dash.flash(request, f"Event {event.id} runs again now.")
        elif event.status == "dead":
            dash.flash(request, f"Event {event.id} was requeued: the next run of its recipe "
                                "sends it (its recipe is not enabled in this serve).")
        else:
            dash.flash(request, "Its recipe is not enabled in this serve: enable it, or run "
                                "`splice runs retry --recipe FILE --all`.", "error")
        return RedirectResponse(target, status_code=303)

    # -- dead letters -----------------------------------------------------------------------
    def dead_list(request: Request) -> Response:
        before = request.query_params.get("before")
        before_id = int(before) if before and before.isdigit() else None
        letters = queries.dead_letter_page(dash.store, limit=PAGE, before=before_id)
        rows = [{"d": d, "text": explain(d.error_class, d.reason)} for d in letters]
        return dash.render(request, "runs/dead.html", {
            "rows": rows, "next": letters[-1].event_id if len(letters) == PAGE else None})

    def dead_requeue(request: Request) -> Response:
        try:
            event_id = int(request.path_params["event_id"])
        except ValueError:
            event_id = 0
        if not (0 < event_id < 2 ** 62 and dash.store.requeue_dead_letter(event_id)):
            dash.flash(request, f"Event {event_id} is not a dead letter (any more).", "error")
            return RedirectResponse("/dead-letters", status_code=303)
        event = dash.store.get_event(event_id)
        ran = event is not None and dash.service.scheduler.request_retry(event.recipe,
                                                                         event_id)
        dash.flash(request, f"Event {event_id} was requeued" +
                   (": it runs now." if ran else ": the next run of its recipe sends it."))
        return RedirectResponse("/dead-letters", status_code=303)

    # -- live -------------------------------------------------------------------------------
    async def live_runs(request: Request) -> Response:
        if not feed.can_listen():
            return Response("too many listeners; try again", status_code=503,
                            headers={"Retry-After": "5"})
        return StreamingResponse(feed.stream(request.is_disconnected),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    return [Route("/runs", runs_list, methods=["GET"]),
            Route("/runs/{run_id}", run_detail, methods=["GET"]),
            Route("/events/{event_id}", event_detail, methods=["GET"]),
            Route("/events/{event_id}/retry", event_retry, methods=["POST"]),
            Route("/dead-letters", dead_list, methods=["GET"]),
            Route("/dead-letters/{event_id}/requeue", dead_requeue, methods=["POST"]),
            Route("/live/runs", live_runs, methods=["GET"])]


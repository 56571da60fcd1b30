"""The JSON API under ``/api`` (what the dashboard and scripts use), bearer-token protected.

Read: recipes (status, schedule, which path delivered events first), runs, events with their
step results, dead letters, recent webhook deliveries (never their bodies), connections (never
a secret), connectors and their operations. Act: enable/disable a recipe, run it now, retry an
event, requeue a dead letter. Every route but ``/api/openapi.json`` needs
``Authorization: Bearer TOKEN`` (the token ``splice serve`` prints and keeps 0600 in
``$SPLICE_HOME/serve.token``) or a signed-in dashboard session (whose POSTs carry its CSRF
token, see :mod:`splice.web.security`); the document at ``/api/openapi.json`` describes them
all.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..connections.status import token_state
from ..store import inbox, queries
from ..store import registry as reg
from ..store.tables import EVENT_STATUSES
from .openapi import document
from .subscriptions import SUBSCRIPTION_FIELD

Handler = Callable[[Request], Any]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _event(e: Any) -> dict[str, Any]:
    return {"id": e.id, "recipe": e.recipe, "trigger": e.trigger, "key": e.key,
            "status": e.status, "attempts": e.attempts, "last_error": e.last_error,
            "run_id": e.run_id, "created_at": _iso(e.created_at),
            "updated_at": _iso(e.updated_at)}


def _run(r: Any) -> dict[str, Any]:
    return {"id": r.id, "recipe": r.recipe, "mode": r.mode, "status": r.status,
            "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
            "events_seen": r.events_seen, "events_new": r.events_new,
            "events_failed": r.events_failed, "requests_made": r.requests_made,
            "error": r.error}


class Api:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.store = service.store

    # -- plumbing ---------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        r = self._route
        return [
            Route("/api/openapi.json", self.openapi, methods=["GET"]),
            r("/api/recipes", self.recipes),
            r("/api/recipes/{recipe_id}", self.recipe),
            r("/api/recipes/{recipe_id}/enable", self.enable, "POST"),
            r("/api/recipes/{recipe_id}/disable", self.disable, "POST"),
            r("/api/recipes/{recipe_id}/run", self.run_now, "POST"),
            r("/api/runs", self.runs),
            r("/api/runs/{run_id}", self.run),
            r("/api/events", self.events),
            r("/api/events/{event_id:int}", self.event),
            r("/api/events/{event_id:int}/retry", self.retry, "POST"),
            r("/api/dead-letters", self.dead_letters),
            r("/api/dead-letters/{event_id:int}/requeue", self.requeue, "POST"),
            r("/api/deliveries", self.deliveries),
            r("/api/connections", self.connections),
            r("/api/connections/{name}", self.connection),
            r("/api/connectors", self.connectors),
            r("/api/connectors/{connector_id}", self.connector),
        ]

    def _route(self, path: str, handler: Handler, method: str = "GET") -> Route:
        def endpoint(request: Request) -> Response:
            token = self.service.token
            given = request.headers.get("authorization", "")
            signed_in = request.scope.get("splice.signed_in") and not given
            if not signed_in and (not given.startswith("Bearer ") or not hmac.compare_digest(
                    given[7:].strip().encode(), token.encode())):
                return JSONResponse({"error": "a bearer token is required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                return JSONResponse(handler(request))
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
        return Route(path, endpoint, methods=[method])

    def openapi(self, request: Request) -> Response:
        return JSONResponse(document(self.service.config.url))

    # -- recipes ----------------------------------------------------------------------------
    def _recipe(self, row: Any) -> dict[str, Any]:
        loaded = self.service.book.recipes.get(row.id)
        plan = loaded.plan if loaded is not None else None
        return {"id": row.id, "name": row.name, "path": row.path, "enabled": row.enabled,
                "status": row.status, "problems": row.problems,
                "triggers": [s.trigger.ref for s in plan.sources] if plan else [],
                "polls": bool(plan and plan.polls),
                "every": float(plan.recipe.every) if plan and plan.polls else None,
                "next_poll_at": _iso(row.next_poll_at), "last_poll_at": _iso(row.last_poll_at),
                "last_poll_status": row.last_poll_status, "last_run_id": row.last_run_id,
                "first_by_webhook": row.webhook_first, "first_by_poll": row.poll_first}

    def _row(self, request: Request) -> Any:
        found = reg.find(self.store, request.path_params["recipe_id"])
        if len(found) != 1:
            raise ApiError(404, "no such recipe" if not found else
                           "several recipes have this name: use the id")
        return found[0]

    def recipes(self, request: Request) -> Any:
        return [self._recipe(r) for r in reg.list_all(self.store)]

    def recipe(self, request: Request) -> Any:
        return self._recipe(self._row(request))

    def _set_enabled(self, request: Request, enabled: bool) -> Any:
        row = self._row(request)
        reg.update(self.store, row.id, enabled=enabled)
        self.service.scheduler.notify()
        return self._recipe(reg.get(self.store, row.id))

    def enable(self, request: Request) -> Any:
        return self._set_enabled(request, True)

    def disable(self, request: Request) -> Any:
        return self._set_enabled(request, False)

    def run_now(self, request: Request) -> Any:
        row = self._row(request)
        if not row.enabled:
            raise ApiError(409, "the recipe is disabled")
        self.service.scheduler.request_run(row.id)
        return {"id": row.id, "requested": True}

    # -- runs and events --------------------------------------------------------------------
    def runs(self, request: Request) -> Any:
        limit = _int(request, "limit", 20, 1, 500)
        return [_run(r) for r in self.store.list_runs(
            limit=limit, recipe=request.query_params.get("recipe"))]

    def run(self, request: Request) -> Any:
        record = self.store.get_run(request.path_params["run_id"])
        if record is None:
            raise ApiError(404, "no such run")
        return {**_run(record), "events": [_event(e) for e in record.events],
                "steps": [self._step(s) for s in record.step_results]}

    @staticmethod
    def _step(s: Any) -> dict[str, Any]:
        return {"event_id": s.event_id, "step": s.step_id or str(s.step_index),
                "index": s.step_index, "item": s.item_index, "status": s.status,
                "attempts": s.attempts, "request": s.request, "output": s.output,
                "error": s.error}

    def events(self, request: Request) -> Any:
        status = request.query_params.get("status")
        if status is not None and status not in EVENT_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(EVENT_STATUSES)}")
        return [_event(e) for e in queries.list_events(
            self.store, recipe=request.query_params.get("recipe"), status=status,
            limit=_int(request, "limit", 50, 1, 500))]

    def _event_row(self, request: Request) -> Any:
        event_id = int(request.path_params["event_id"])
        record = self.store.get_event(event_id) if 0 < event_id < 2 ** 62 else None
        if record is None:
            raise ApiError(404, "no such event")
        return record

    def event(self, request: Request) -> Any:
        record = self._event_row(request)
        return {**_event(record), "payload": record.payload,
                "steps": [self._step(s) for s in queries.event_steps(self.store, record.id)]}

    def retry(self, request: Request) -> Any:
        record = self._event_row(request)
        if record.status not in ("failed", "pending"):
            raise ApiError(409, f"the event is {record.status}; only failed events are retried")
        if not self.service.scheduler.request_retry(record.recipe, record.id):
            raise ApiError(409, "its recipe is not enabled in this serve")
        return {"event_id": record.id, "requested": True}

    def dead_letters(self, request: Request) -> Any:
        return [{"event_id": d.event_id, "recipe": d.recipe, "reason": d.reason,
                 "attempts": d.attempts, "created_at": _iso(d.created_at)}
                for d in self.store.dead_letters(request.query_params.get("recipe"))]

    def requeue(self, request: Request) -> Any:
        event_id = int(request.path_params["event_id"])
        if not (0 < event_id < 2 ** 62 and self.store.requeue_dead_letter(event_id)):
            raise ApiError(404, "no such dead letter")
        return {"event_id": event_id, "requeued": True}

    def deliveries(self, request: Request) -> Any:
        rows = inbox.recent(self.store, _int(request, "limit", 50, 1, 500))
        return [{**r, "received_at": _iso(r["received_at"]),
                 "processed_at": _iso(r["processed_at"])} for r in rows]

    # -- connections and connectors ---------------------------------------------------------
    def _connection(self, record: Any) -> dict[str, Any]:
        state, words = token_state(record)
        sub = record.config.get(SUBSCRIPTION_FIELD) or None
        return {"name": record.name, "connector": record.connector, "auth": record.auth_type,
                "state": state, "status": words, "scopes": record.scopes,
                "base_url": record.base_url,
                "webhook_url": f"{self.service.config.url}/hooks/{record.name}",
                "subscription": {"id": sub.get("id"), "events": sub.get("events", [])}
                if sub else None}

    def connections(self, request: Request) -> Any:
        return [self._connection(r) for r in self.store.list_connections()]

    def connection(self, request: Request) -> Any:
        record = self.store.get_connection(request.path_params["name"])
        if record is None:
            raise ApiError(404, "no such connection")
        return self._connection(record)

    def _connector(self, c: Any, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": c.id, "name": c.name, "version": c.version,
                               "auth": c.auth_type, "operations": len(c.operations),
                               "triggers": [{"id": t.id, "type": t.type, "title": t.title,
                                             "events": t.events} for t in c.triggers.values()]}
        if full:
            out["operation_list"] = [{"id": o.id, "title": o.title, "method": o.method,
                                      "path": o.path, "scopes": o.scopes}
                                     for o in c.operations.values()]
        return out

    def connectors(self, request: Request) -> Any:
        return [self._connector(c, False)
                for c in self.service.registry.connectors.values()]

    def connector(self, request: Request) -> Any:
        c = self.service.registry.connectors.get(request.path_params["connector_id"])
        if c is None:
            raise ApiError(404, "no such connector")
        return self._connector(c, True)

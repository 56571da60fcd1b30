"""The OpenAPI 3.1 document of the JSON API (``GET /api/openapi.json``).

Written by hand next to :mod:`splice.serve.api` and checked against it by schemathesis in the
tests: every route, parameter, status and response shape is here.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_OSTR = {"type": ["string", "null"]}
_OTIME = {"type": ["string", "null"], "format": "date-time"}
_INT = {"type": "integer"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error=_STR),
    "Recipe": _obj(
        ["id", "name", "path", "enabled", "status", "triggers", "polls"],
        id=_STR, name=_STR, path=_STR, enabled={"type": "boolean"},
        status={"enum": ["ok", "invalid", "missing"]}, problems=_OSTR,
        triggers={"type": "array", "items": _STR}, polls={"type": "boolean"},
        every={"type": ["number", "null"]}, next_poll_at=_OTIME, last_poll_at=_OTIME,
        last_poll_status=_OSTR, last_run_id=_OSTR, first_by_webhook=_INT,
        first_by_poll=_INT),
    "Run": _obj(
        ["id", "recipe", "mode", "status", "started_at"],
        id=_STR, recipe=_STR, mode=_STR, status=_STR, started_at=_STR, finished_at=_OTIME,
        events_seen=_INT, events_new=_INT, events_failed=_INT, requests_made=_INT,
        error=_OSTR),
    "Event": _obj(
        ["id", "recipe", "trigger", "key", "status", "attempts"],
        id=_INT, recipe=_STR, trigger=_STR, key=_STR,
        status={"enum": ["pending", "succeeded", "failed", "dead"]}, attempts=_INT,
        last_error=_OSTR, run_id=_OSTR, created_at=_STR, updated_at=_STR),
    "Step": _obj(
        ["event_id", "step", "index", "item", "status", "attempts"],
        event_id=_INT, step=_STR, index=_INT, item=_INT, status=_STR, attempts=_INT,
        request={}, output={}, error=_OSTR),
    "DeadLetter": _obj(["event_id", "recipe", "attempts"], event_id=_INT, recipe=_STR,
                       reason=_OSTR, attempts=_INT, created_at=_STR),
    "Delivery": _obj(["id", "connection", "delivery_id", "status"], id=_INT, connection=_STR,
                     delivery_id=_STR, event_type=_OSTR, status=_STR, received_at=_OSTR,
                     processed_at=_OTIME, outcome=_OSTR),
    "Connection": _obj(
        ["name", "connector", "auth", "state", "scopes", "webhook_url"],
        name=_STR, connector=_STR, auth=_STR, state=_STR, status=_STR,
        scopes={"type": "array", "items": _STR}, base_url=_OSTR, webhook_url=_STR,
        subscription={"oneOf": [{"type": "null"}, _obj(
            ["id", "events"], id=_OSTR, events={"type": "array", "items": _STR})]}),
    "Connector": _obj(
        ["id", "name", "version", "auth", "operations", "triggers"],
        id=_STR, name=_STR, version=_STR, auth=_STR, operations=_INT,
        triggers={"type": "array", "items": _obj(
            ["id", "type"], id=_STR, type=_STR, title=_STR,
            events={"type": "array", "items": _STR})},
        operation_list={"type": "array", "items": _obj(
            ["id", "method", "path"], id=_STR, title=_STR, method=_STR, path=_STR,
            scopes={"type": "array", "items": _STR})}),
    "Requested": {"type": "object", "additionalProperties": True},
    "Endpoint": _obj(
        ["id", "ref", "kind", "scopes", "missing_scopes", "scopes_granted", "enabled"],
        id=_STR, ref=_STR, kind={"enum": ["operation", "trigger"]}, title=_STR,
        method=_OSTR, path=_OSTR, trigger_type=_OSTR, uses=_OSTR,
        scopes={"type": "array", "items": _STR},
        missing_scopes={"type": "array", "items": _STR},
        scopes_granted={"type": "boolean"}, enabled={"type": "boolean"}),
    "EndpointChange": _obj(["connection", "endpoint", "enabled", "changed"],
                           connection=_STR, endpoint=_STR, enabled={"type": "boolean"},
                           changed={"type": "boolean"}),
}
SCHEMAS["RunDetail"] = {"allOf": [_ref("Run"), _obj(
    ["events", "steps"], events=_list("Event"), steps=_list("Step"))]}
SCHEMAS["EventDetail"] = {"allOf": [_ref("Event"), _obj(
    ["steps"], payload={}, steps=_list("Step"))]}


def _json(schema: Any, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: Any, *, params: list[dict[str, Any]] | None = None,
        missing: bool = False, conflict: bool = False, bad: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(ok),
                                 "401": _json(_ref("Error"), "No or a wrong bearer token")}
    if missing:
        responses["404"] = _json(_ref("Error"), "Not found")
    if conflict:
        responses["409"] = _json(_ref("Error"), "Not possible in this state")
    if bad:
        responses["400"] = _json(_ref("Error"), "Bad query parameter")
    out: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        out["parameters"] = params
    return out


def _path(name: str, schema: Any = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _STR}


def _query(name: str, schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500})
RECIPE = _query("recipe", _STR)
NAME = _path("name")
RECIPE_ID = _path("recipe_id")
EVENT_ID = _path("event_id", {"type": "integer", "minimum": 1})


def document(server_url: str) -> dict[str, Any]:
    """The OpenAPI document, with ``server_url`` as its server."""
    paths = {
        "/api/recipes": {"get": _op("Registered recipes", _list("Recipe"))},
        "/api/recipes/{recipe_id}": {"get": _op("One recipe (by id, or by name when unique)",
                                                _ref("Recipe"), params=[RECIPE_ID],
                                           missing=True)},
        "/api/recipes/{recipe_id}/enable": {"post": _op(
            "Enable a recipe (409: it uses a disabled endpoint)", _ref("Recipe"),
            params=[RECIPE_ID], missing=True, conflict=True)},
        "/api/recipes/{recipe_id}/disable": {"post": _op(
            "Disable a recipe", _ref("Recipe"), params=[RECIPE_ID], missing=True)},
        "/api/recipes/{recipe_id}/run": {"post": _op(
            "Run a recipe now", _ref("Requested"), params=[RECIPE_ID], missing=True,
            conflict=True)},
        "/api/runs": {"get": _op("Recent runs", _list("Run"), params=[RECIPE, LIMIT],
                                 bad=True)},
        "/api/runs/{run_id}": {"get": _op("A run with its events and steps",
                                          _ref("RunDetail"), params=[_path("run_id")],
                                          missing=True)},
        "/api/events": {"get": _op("Events, newest first", _list("Event"), params=[
            RECIPE, _query("status", {"enum": ["pending", "succeeded", "failed", "dead"]}),
            LIMIT], bad=True)},
        "/api/events/{event_id}": {"get": _op("An event with its step results",
                                              _ref("EventDetail"), params=[EVENT_ID],
                                              missing=True)},
        "/api/events/{event_id}/retry": {"post": _op("Retry a failed event", _ref("Requested"),
                                                     params=[EVENT_ID], missing=True,
                                                     conflict=True)},
        "/api/dead-letters": {"get": _op("Dead letters", _list("DeadLetter"),
                                         params=[RECIPE])},
        "/api/dead-letters/{event_id}/requeue": {"post": _op(
            "Requeue a dead letter", _ref("Requested"), params=[EVENT_ID], missing=True)},
        "/api/deliveries": {"get": _op("Recent webhook deliveries (no bodies)",
                                       _list("Delivery"), params=[LIMIT], bad=True)},
        "/api/connections": {"get": _op("Connections (never a secret)",
                                        _list("Connection"))},
        "/api/connections/{name}": {"get": _op("One connection", _ref("Connection"),
                                               params=[NAME], missing=True)},
        "/api/connections/{name}/endpoints": {"get": _op(
            "The connection's endpoints: scopes granted or missing, enabled or not",
            _list("Endpoint"), params=[NAME], missing=True)},
        "/api/connections/{name}/endpoints/{endpoint}/enable": {"post": _op(
            "Enable an endpoint for the connection", _ref("EndpointChange"),
            params=[NAME, _path("endpoint")], missing=True)},
        "/api/connections/{name}/endpoints/{endpoint}/disable": {"post": _op(
            "Disable an endpoint for the connection", _ref("EndpointChange"),
            params=[NAME, _path("endpoint")], missing=True)},
        "/api/connectors": {"get": _op("Installed connectors", _list("Connector"))},
        "/api/connectors/{connector_id}": {"get": _op(
            "A connector with its operations", _ref("Connector"),
            params=[_path("connector_id")], missing=True)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "splice serve API", "version": "1",
                 "description": "Recipes, runs, events, connections and connectors of a "
                                "running `splice serve`."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }

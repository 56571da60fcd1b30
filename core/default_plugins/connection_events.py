"""The built-in ``splice`` connector: the engine's own connection events as triggers."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl

EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "connection", "connector", "created_at"],
    "properties": {
        "id": {"type": "integer", "description": "Increasing event number."},
        "event": {"type": "string",
                  "enum": ["token_refreshed", "token_expiring", "reauth_required"]},
        "connection": {"type": "string", "description": "Connection name."},
        "connector": {"type": "string", "description": "Connector id of the connection."},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["number", "null"],
                       "description": "Access token expiry (Unix seconds), when known."},
        "reason": {"type": ["string", "null"], "description": "Why re-auth is required."},
    },
}


def _trigger(event: str, title: str, description: str) -> dict[str, Any]:
    return {"type": "event", "title": title, "description": description, "events": [event],
            "key": "{{ event.id }}", "output": EVENT_SCHEMA,
            "sample": {"id": 1, "event": event, "connection": "my-highlevel",
                       "connector": "ghl_users", "created_at": "2026-05-01T10:00:00+00:00",
                       "expires_at": 1777716000.0, "reason": None}}


MANIFEST: dict[str, Any] = {
    "id": "splice",
    "name": "splice (engine events)",
    "version": "0.1.0",
    "description": "Events the engine emits about connections, so recipes can react before "
                   "access breaks.",
    "base_url": "http://127.0.0.1",
    "auth": {"type": "none"},
    "operations": {},
    "triggers": {
        "token_refreshed": _trigger("token_refreshed", "Token refreshed",
                                    "An OAuth connection got a new access token."),
        "token_expiring": _trigger("token_expiring", "Token expiring",
                                   "An OAuth connection's access token expires soon and could "
                                   "not be refreshed yet."),
        "reauth_required": _trigger("reauth_required", "Re-authorisation required",
                                    "An OAuth connection's refresh token was refused; a person "
                                    "must run `splice connect` again."),
    },
}


@hookimpl
def register_connectors(register: Any) -> None:
    register(MANIFEST)

"""Connection events (``token_refreshed``, ``token_expiring``, ``reauth_required``)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("splice.events")


def emit_connection_event(store: Any, event: str, connection: str, data: dict[str, Any]) -> None:
    """Record a connection event for ``splice.<event>`` triggers and log it."""
    log.warning("connection '%s': %s", connection, event.replace("_", " "))
    store.add_connection_event(event, connection, data)

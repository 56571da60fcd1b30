"""REST hooks: keep each connection subscribed to exactly the events its recipes need.

For connectors that declare ``webhook_subscription`` (Invoice2go: ``POST .../webhooks``),
the events wanted on a connection are those of the webhook triggers of its enabled recipes.
:func:`reconcile` compares them with the subscription recorded on the connection
(``config.webhook_subscription``: id, url, events) and creates, updates or deletes it through
the connector's declared operations. The secret the API returns is stored encrypted with the
connection's secrets (``webhook_secret``) and is what deliveries are verified with. Only one
serve process (the oldest live one) reconciles; ``splice recipes disable/remove`` run the
unsubscribing half themselves when no serve is running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from ..errors import HTTPError, SpliceError
from ..run.call import call_operation
from .keys import SECRET_FIELD

log = logging.getLogger("splice.serve.subscriptions")
SUBSCRIPTION_FIELD = "webhook_subscription"
FAILURE_BACKOFF = 30.0


def wanted_events(recipes: Iterable[Any]) -> dict[str, set[str]]:
    """connection -> event types the enabled recipes' webhook triggers need."""
    out: dict[str, set[str]] = {}
    for loaded in recipes:
        for source in loaded.plan.webhooks:
            if source.connector.webhook_subscription and source.connection:
                out.setdefault(source.connection, set()).update(source.trigger.events)
    return out


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def reconcile(store: Any, registry: Any, wanted: dict[str, set[str]], base_url: str | None,
              *, only_remove: bool = False, failed: dict[str, float] | None = None
              ) -> list[str]:
    """Bring every REST-hook connection's subscription in line with ``wanted``; returns what
    was done, one line each. ``only_remove``: unsubscribe what is no longer wanted, nothing
    else (no serve URL is known). ``failed``: connection -> when to try again after a failure
    (the caller keeps it between calls)."""
    _failed = failed if failed is not None else {}
    done: list[str] = []
    now = time.monotonic()
    for record in store.list_connections():
        connector = registry.connectors.get(record.connector)
        spec = connector.webhook_subscription if connector is not None else None
        if not spec or _failed.get(record.name, 0.0) > now:
            continue
        want = wanted.get(record.name, set())
        have = record.config.get(SUBSCRIPTION_FIELD)
        try:
            if not want:
                if have:
                    _delete(store, registry, connector, record, spec, have)
                    done.append(f"{record.name}: unsubscribed")
                continue
            if only_remove or base_url is None:
                continue
            url = f"{base_url}/hooks/{record.name}"
            if have and have.get("url") == url and set(have.get("events", [])) == want:
                continue
            if have and have.get("url") == url and spec.get("update"):
                _update(store, registry, connector, record, spec, have, sorted(want))
                done.append(f"{record.name}: subscription now {', '.join(sorted(want))}")
                continue
            if have:
                _delete(store, registry, connector, record, spec, have)
            _create(store, registry, connector, record, spec, url, sorted(want))
            done.append(f"{record.name}: subscribed to {', '.join(sorted(want))} at {url}")
        except SpliceError as exc:
            _failed[record.name] = now + FAILURE_BACKOFF
            log.error("connection '%s': webhook subscription failed: %s", record.name, exc,
                      extra={"connection": record.name})
    for line in done:
        log.info("%s", line)
    return done


def _call(registry: Any, store: Any, connector: Any, record: Any, op_id: str,
          payload: dict[str, Any]) -> Any:
    op = connector.operation(op_id)
    props = op.input.get("properties", {}) if isinstance(op.input, dict) else {}
    payload = {k: v for k, v in payload.items() if k in props}
    return call_operation(registry, store, f"{connector.id}.{op_id}", connection=record.name,
                          payload=payload)


def _create(store: Any, registry: Any, connector: Any, record: Any, spec: dict[str, str],
            url: str, events: list[str]) -> None:
    out = _call(registry, store, connector, record, spec["create"],
                {"url": url, "events": events, "description": "splice serve"})
    sub_id, secret = _dig(out, spec["id"]), _dig(out, spec["secret"])
    if not sub_id or not isinstance(secret, str) or not secret:
        raise SpliceError(f"{connector.id}.{spec['create']} returned no subscription id or "
                          "secret")
    store.update_tokens(record.name, {SECRET_FIELD: secret},
                        {SUBSCRIPTION_FIELD: {"id": str(sub_id), "url": url,
                                              "events": events}})


def _update(store: Any, registry: Any, connector: Any, record: Any, spec: dict[str, str],
            have: dict[str, Any], events: list[str]) -> None:
    _call(registry, store, connector, record, spec["update"],
          {spec.get("id_input", "id"): have["id"], "url": have["url"], "events": events})
    store.update_tokens(record.name, None, {SUBSCRIPTION_FIELD: {**have, "events": events}})


def _delete(store: Any, registry: Any, connector: Any, record: Any, spec: dict[str, str],
            have: dict[str, Any]) -> None:
    try:
        _call(registry, store, connector, record, spec["delete"],
              {spec.get("id_input", "id"): have["id"]})
    except HTTPError as exc:
        if exc.status != 404:  # already gone is what we wanted
            raise
    store.update_tokens(record.name, {SECRET_FIELD: None}, {SUBSCRIPTION_FIELD: None})

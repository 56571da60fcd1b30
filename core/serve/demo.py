"""``splice demo``'s webhook leg: ``splice serve`` receiving real signed HighLevel webhooks.

With both sandboxes up and the demo's connections made, the leg gives the HighLevel
connection the sandbox's Ed25519 public key (real connections use HighLevel's published key),
registers ``recipes/ghl_users_to_invoice2go_clients_live.yaml`` for the leg, starts serve on a
free loopback port and points the HighLevel sandbox's app webhook URL at it. Then a user is
created in the HighLevel sandbox, as a person would in its UI; the sandbox signs and posts
``UserCreate``; serve verifies it, stores it, acknowledges it and runs the recipe, and the user
appears in the Invoice2go sandbox as a client. The leg reports how long that took. On a second
demo run the user exists already and nothing is sent again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from ..errors import SpliceError
from ..run.demo import CONNECTIONS, LegResult, Sandboxes, recipes_dir
from ..sandbox.server import free_port
from ..store import registry as reg
from .app import Service
from .book import check_text, text_hash
from .config import ServeConfig
from .keys import PUBLIC_KEYS_FIELD
from .server import serve_in_thread

LIVE_RECIPE = "ghl_users_to_invoice2go_clients_live.yaml"
DEMO_USER = {"firstName": "Wanda", "lastName": "Webhook", "email": "wanda.webhook@example.com"}
TITLE = "Webhook leg (splice serve)"


def _client_of(sandboxes: Sandboxes, email: str) -> dict[str, Any] | None:
    clients = sandboxes.state("invoice2go").get("clients", [])
    return next((c for c in clients if (c.get("email") or "").casefold() == email), None)


def webhook_leg(sandboxes: Sandboxes, store: Any, registry: Any,
                out: Callable[[str], None], *, timeout: float = 10.0) -> LegResult:
    """Run the leg; see the module docstring."""
    out("running the webhook leg: splice serve + a user created in HighLevel ...")
    ghl = CONNECTIONS["ghl_users"]
    key = sandboxes.control("ghl_users", "GET", "webhook-key")["ed25519"]
    record = store.require_connection(ghl)
    keys = dict(record.config.get(PUBLIC_KEYS_FIELD) or {})
    if keys.get("ed25519") != key:
        store.update_tokens(ghl, None, {PUBLIC_KEYS_FIELD: {**keys, "ed25519": key}})
    email = DEMO_USER["email"]
    users = sandboxes.state("ghl_users")["world"]["users"]
    if any(u["email"].casefold() == email for u in users):
        client = _client_of(sandboxes, email)
        return LegResult(TITLE, [f"{DEMO_USER['firstName']} {DEMO_USER['lastName']} was "
                                 "created in HighLevel by an earlier demo and is "
                                 + ("an Invoice2go client already" if client else
                                    "NOT an Invoice2go client")
                                 + "; nothing sent"], ok=client is not None)
    path = recipes_dir() / LIVE_RECIPE
    text = path.read_text("utf-8")
    try:
        plan = check_text(text, str(path), registry, store)
    except SpliceError as exc:
        return LegResult(TITLE, [f"{LIVE_RECIPE}: {exc}"], ok=False)
    rid = plan.recipe.id
    added = reg.get(store, rid) is None
    if added:
        reg.register(store, rid, plan.recipe.name, str(path), text, text_hash(text))
    config = ServeConfig(port=free_port(), tick=0.05, reload_every=0.5)
    service = Service(store, registry, config, token=secrets.token_urlsafe(24))
    try:
        with serve_in_thread(service) as url:
            hook = f"{url}/hooks/{ghl}"
            sandboxes.control("ghl_users", "POST", "webhook-url", {"url": hook})
            started = time.monotonic()
            sandboxes.control("ghl_users", "POST", "users", DEMO_USER)
            client = None
            while client is None and time.monotonic() - started < timeout:
                time.sleep(0.05)
                client = _client_of(sandboxes, email)
            elapsed = time.monotonic() - started
            sandboxes.control("ghl_users", "POST", "webhook-url", {"url": None})
    finally:
        if added:
            reg.remove(store, rid)
    who = f"{DEMO_USER['firstName']} {DEMO_USER['lastName']} <{email}>"
    if client is None:
        return LegResult(TITLE, [f"created {who} in HighLevel; no Invoice2go client after "
                                 f"{timeout:.0f}s", f"serve was on {url}"], ok=False)
    return LegResult(TITLE, [
        f"serve on {url}; the HighLevel sandbox posts signed webhooks to {hook}",
        f"created {who} in HighLevel: UserCreate verified, stored, acknowledged,",
        f"and the Invoice2go client '{client['name']}' existed {elapsed:.2f}s later "
        f"({'within' if elapsed <= 1.0 else 'NOT within'} a second)",
        f"run it yourself: splice recipes add recipes/{LIVE_RECIPE} && splice serve"],
        ok=True)

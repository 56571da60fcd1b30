"""``splice connections webhook-url`` and ``webhook-key``: what to paste in a provider's
webhook settings, and the keys a connection verifies deliveries with."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, InputError
from .common import handle_errors, load_registry, open_store
from .connections import connections


def _webhook_triggers(registry: Any, record: Any) -> tuple[Any, list[Any]]:
    connector = registry.connector(record.connector)
    triggers = [t for t in connector.triggers.values() if t.type == "webhook"]
    if not triggers:
        raise ConfigError(f"connector '{connector.id}' declares no webhook triggers",
                          hint=f"its triggers are polled: `splice connectors show "
                               f"{connector.id}`")
    return connector, triggers


def _serve_url(store: Any) -> str | None:
    from ..store.inbox import live_instances

    live = live_instances(store)
    return str(live[0]["url"]) if live and live[0].get("url") else None


@connections.command("webhook-url")
@click.argument("name")
@click.option("--base-url", metavar="URL",
              help="The public URL of `splice serve` (default: a running serve's, else "
                   "http://127.0.0.1:8750).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def webhook_url(name: str, base_url: str | None, as_json: bool) -> None:
    """Print the URL a provider delivers NAME's webhooks to, with the events and scopes to
    tick in its settings (e.g. a HighLevel app's webhook settings)."""
    from ..serve.book import RecipeBook
    from ..serve.config import DEFAULT_PORT
    from ..serve.keys import connection_keys
    from ..signatures import SignatureSpec

    registry, store = load_registry(), open_store()
    record = store.require_connection(name)
    connector, triggers = _webhook_triggers(registry, record)
    base = (base_url or _serve_url(store) or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")
    book = RecipeBook(store, registry)
    book.refresh()
    used = {s.trigger.id for r in book.enabled() for s in r.plan.webhooks  # type: ignore[union-attr]
            if s.connection == name}
    chosen = [t for t in triggers if t.id in used] or triggers
    events = sorted({e for t in chosen for e in t.events})
    scopes = sorted({s for t in chosen for s in t.scopes})
    specs = [SignatureSpec.from_dict(t.signature) for t in triggers if t.signature]
    keys = connection_keys(record, specs, registry.signature_schemes)
    data = {"connection": name, "connector": connector.id, "url": f"{base}/hooks/{name}",
            "events": events, "scopes": scopes,
            "triggers": [t.ref for t in chosen], "used_by_recipes": bool(used),
            "subscribed_by_serve": bool(connector.webhook_subscription),
            "keys": {scheme: len(found) for scheme, found in keys.items()}}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Webhook URL for '{name}' ({connector.name}):")
    click.echo(f"  {data['url']}")
    if connector.webhook_subscription:
        click.echo("`splice serve` subscribes it by itself (REST hooks) for the events its "
                   "enabled recipes need: nothing to paste.")
    else:
        click.echo("Paste it in the provider's webhook settings and tick these events:")
        click.echo(f"  {', '.join(events)}")
        if scopes:
            click.echo(f"The app needs the scopes: {' '.join(scopes)}")
    if base_url is None and _serve_url(store) is None:
        click.echo(f"(no serve is running; {base} is its default address: providers need "
                   "your public URL, give it with --base-url)")
    if not any(keys.values()):
        click.echo("warning: no verification key is configured, so every delivery is refused; "
                   f"set one with `splice connections webhook-key {name} ...`", err=True)


@connections.command("webhook-key")
@click.argument("name")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="A PEM public key file the provider signs with (e.g. a sandbox's).")
@click.option("--scheme", help="The signature scheme the key is for (default: the "
                               "connector's first public-key scheme).")
@click.option("--secret-from-env", metavar="VAR",
              help="Read a shared signing secret (HMAC) from this environment variable.")
@click.option("--clear", is_flag=True, help="Remove the keys set here (manifest defaults stay).")
@handle_errors
def webhook_key(name: str, public_key: Path | None, scheme: str | None,
                secret_from_env: str | None, clear: bool) -> None:
    """Set the key NAME's webhook deliveries are verified with.

    A connection without a key refuses every delivery. REST-hook connections (Invoice2go)
    get theirs from `splice serve`'s subscription; a provider's published public key (the
    HighLevel one) is the manifest's default.
    """
    from ..serve.keys import PUBLIC_KEYS_FIELD, SECRET_FIELD
    from ..signatures import SignatureSpec

    if sum(bool(x) for x in (public_key, secret_from_env, clear)) != 1:
        raise InputError("give one of --public-key FILE, --secret-from-env VAR or --clear")
    registry, store = load_registry(), open_store()
    record = store.require_connection(name)
    connector, triggers = _webhook_triggers(registry, record)
    schemes = registry.signature_schemes
    blocks = [b for t in triggers if t.signature
              for b in SignatureSpec.from_dict(t.signature).chain()]
    if clear:
        store.update_tokens(name, {SECRET_FIELD: None}, {PUBLIC_KEYS_FIELD: None})
        click.echo(f"webhook keys of '{name}' removed")
        return
    if secret_from_env:
        value = os.environ.get(secret_from_env)
        if not value:
            raise ConfigError(f"environment variable {secret_from_env} is not set or empty")
        if not any(schemes[b.scheme].key_kind == "secret" for b in blocks if b.scheme in schemes):
            raise InputError(f"connector '{connector.id}' signs with public keys, not a secret")
        store.update_tokens(name, {SECRET_FIELD: value}, None)
        click.echo(f"webhook secret of '{name}' saved (encrypted)")
        return
    assert public_key is not None
    candidates = [b.scheme for b in blocks if b.scheme in schemes
                  and schemes[b.scheme].key_kind == "public_key"]
    chosen = scheme or (candidates[0] if candidates else None)
    if chosen is None or chosen not in candidates:
        raise InputError(f"connector '{connector.id}' has no public-key scheme "
                         f"'{chosen or '?'}'" + (f"; it uses {', '.join(candidates)}"
                                                 if candidates else ""))
    try:
        text = public_key.read_text("utf-8")
        schemes[chosen].load_key(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{public_key}: cannot read it ({type(exc).__name__})") from None
    except ValueError as exc:
        raise InputError(f"{public_key}: {exc}") from None
    keys = dict(record.config.get(PUBLIC_KEYS_FIELD) or {})
    store.update_tokens(name, None, {PUBLIC_KEYS_FIELD: {**keys, chosen: text}})
    click.echo(f"'{name}' verifies {chosen} signatures with the key in {public_key}")

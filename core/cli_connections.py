"""CLI commands for credentials and sandboxes: ``connect``, ``connections ...``, ``sandbox``."""

from __future__ import annotations

import json
import os
import time
import webbrowser
from pathlib import Path
from typing import Any

import click

from .cli import _console, _esc, _registry, _store, handle_errors
from .errors import ConfigError, InputError


def _status(record: Any) -> str:
    if record.status == "reauth_required":
        return "needs re-auth"
    expires_at = record.config.get("expires_at")
    if expires_at is None:
        return "valid"
    left = float(expires_at) - time.time()
    if left <= 0:
        return "expired (refreshes on next use)" if record.auth_type == "oauth2" else "expired"
    if left < 3600:
        return f"expiring in {int(left // 60)} min"
    return f"valid ({left / 3600:.0f} h left)"


def _public(record: Any) -> dict[str, Any]:
    return {"name": record.name, "connector": record.connector, "auth": record.auth_type,
            "status": _status(record), "scopes": record.scopes,
            "base_url": record.base_url, "fields": record.config.get("fields", {}),
            "last_refresh_at": record.config.get("last_refresh_at"),
            "last_error": record.config.get("last_error")}


def _secret_value(prompt: str, from_env: str | None) -> str:
    if from_env:
        value = os.environ.get(from_env)
        if not value:
            raise ConfigError(f"environment variable {from_env} is not set or empty")
        return value
    if not click.get_text_stream("stdin").isatty():
        value = click.get_text_stream("stdin").readline().strip()
    else:
        value = click.prompt(prompt, hide_input=True)
    if not value:
        raise InputError("no secret given")
    return value


@click.group()
def connections() -> None:
    """Stored connections (credentials are encrypted at rest and never shown)."""


@connections.command("add")
@click.argument("name")
@click.option("--connector", "connector_id", required=True, help="Connector id.")
@click.option("--from-env", metavar="VAR",
              help="Read the key/token from this environment variable (else a hidden prompt).")
@click.option("--base-url", help="Override the connector's base URL (e.g. a sandbox).")
@handle_errors
def connections_add(name: str, connector_id: str, from_env: str | None,
                    base_url: str | None) -> None:
    """Add an api_key, bearer or no-auth connection NAME.

    The secret is read from a hidden prompt, standard input or --from-env, never from a
    command-line argument (which would land in shell history). OAuth connectors use
    `splice connect` instead.
    """
    connector = _registry().connector(connector_id)
    kind = connector.auth_type
    if kind == "oauth2":
        raise InputError(f"connector '{connector_id}' uses OAuth",
                         hint=f"run `splice connect {connector_id} --name {name}`")
    secret: dict[str, Any] = {}
    if kind == "api_key":
        secret["api_key"] = _secret_value("API key", from_env)
    elif kind == "bearer":
        secret["token"] = _secret_value("Token", from_env)
    _store().put_connection(name, connector=connector_id, auth_type=kind, base_url=base_url,
                            config={}, secret=secret or None)
    click.echo(f"connection '{name}' saved ({connector_id}, {kind})")


@connections.command("list")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def connections_list(as_json: bool) -> None:
    """List connections with status and granted scopes (never secrets)."""
    rows = [_public(r) for r in _store().list_connections()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    table = Table("name", "connector", "auth", "status", "scopes", "base URL")
    for r in rows:
        table.add_row(r["name"], r["connector"], r["auth"], r["status"],
                      " ".join(r["scopes"]) or "-", r["base_url"] or "(connector default)")
    _console().print(table)


@connections.command("show")
@click.argument("name")
@handle_errors
def connections_show(name: str) -> None:
    """Show one connection (never its secrets)."""
    click.echo(json.dumps(_public(_store().require_connection(name)), indent=2, default=str))


@connections.command("remove")
@click.argument("name")
@handle_errors
def connections_remove(name: str) -> None:
    """Delete a connection and its stored credentials."""
    if not _store().delete_connection(name):
        raise ConfigError(f"no connection named '{name}'")
    click.echo(f"connection '{name}' removed")


@connections.command("test")
@click.argument("name")
@handle_errors
def connections_test(name: str) -> None:
    """Call the connector's cheap test operation with connection NAME."""
    from .engine import connection_client
    from .http import prepare_call

    store = _store()
    record = store.require_connection(name)
    registry = _registry()
    connector = registry.connector(record.connector)
    op_id = connector.test_operation
    if not op_id:
        raise ConfigError(f"connector '{connector.id}' declares no test_operation")
    op = connector.operations[op_id]
    fields = record.config.get("fields", {})
    payload = {k: fields[k] for k in (op.input or {}).get("required", []) if k in fields}
    client = connection_client(connector, record, store, registry)
    with client:
        call = prepare_call(op, connector, payload, base_url=client.base_url)
        result = client.send(op, call)
    click.echo(f"connection '{name}' works: {op.ref} answered HTTP "
               f"{result.response.status_code}")


@connections.command("refresh")
@click.argument("name")
@handle_errors
def connections_refresh(name: str) -> None:
    """Refresh an OAuth connection's access token now."""
    from .oauth import OAuth2Auth

    store = _store()
    record = store.require_connection(name)
    connector = _registry().connector(record.connector)
    if record.auth_type != "oauth2":
        raise InputError(f"connection '{name}' does not use OAuth")
    import httpx

    auth = OAuth2Auth(connector, record, store)
    flow = auth._refresh(record.secret.get("access_token"))
    with httpx.Client(timeout=30.0) as client:
        try:
            request = next(flow)
            while True:
                request = flow.send(client.send(request))
        except StopIteration:
            pass
    click.echo(f"connection '{name}' refreshed: {_status(store.require_connection(name))}")


@connections.command("revoke")
@click.argument("name")
@handle_errors
def connections_revoke(name: str) -> None:
    """Revoke an OAuth connection's refresh token at the provider and mark it for re-auth."""
    import httpx

    from .oauth import endpoint

    store = _store()
    record = store.require_connection(name)
    connector = _registry().connector(record.connector)
    revoke_url = connector.auth.get("revoke_url")
    if revoke_url:
        secret = record.secret
        base = record.base_url or connector.base_url
        data = {"token": secret.get("refresh_token", ""), "token_type_hint": "refresh_token",
                "client_id": record.config.get("client_id", ""),
                "client_secret": secret.get("client_secret", "")}
        with httpx.Client(timeout=30.0) as client:
            response = client.post(endpoint(revoke_url, base), data=data)
        if response.status_code >= 400:
            raise ConfigError(f"the provider refused the revocation (HTTP "
                              f"{response.status_code})")
    store.update_tokens(name, {"access_token": None, "refresh_token": None},
                        {"status": "reauth_required", "last_error": "revoked by user"})
    click.echo(f"connection '{name}' revoked" + ("" if revoke_url else
                                                 " locally (the connector has no revoke URL)"))


@click.command()
@click.argument("connector_id")
@click.option("--name", required=True, help="Name for the new connection.")
@click.option("--scopes", help="Space-separated scopes (default: what the recipes in "
                               "./recipes use, else every scope of the connector).")
@click.option("--port", type=int, default=0, help="Loopback port for the redirect (0: free).")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--base-url", help="Connect to another base URL (e.g. a sandbox).")
@click.option("--client-id-env", metavar="VAR", help="Env var holding the client id.")
@click.option("--client-secret-env", metavar="VAR", help="Env var holding the client secret.")
@handle_errors
def connect(connector_id: str, name: str, scopes: str | None, port: int, no_browser: bool,
            base_url: str | None, client_id_env: str | None,
            client_secret_env: str | None) -> None:
    """Connect an OAuth connector: consent in the browser, tokens stored encrypted.

    The client id and secret come from environment variables (--client-id-env /
    --client-secret-env, default SPLICE_<CONNECTOR>_CLIENT_ID / _CLIENT_SECRET) or a prompt,
    never from a command-line argument.
    """
    from .connect import connect as run_connect

    connector = _registry().connector(connector_id)
    prefix = f"SPLICE_{connector_id.upper()}"
    client_id = os.environ.get(client_id_env or f"{prefix}_CLIENT_ID") or \
        click.prompt("OAuth client id")
    secret_var = client_secret_env or f"{prefix}_CLIENT_SECRET"
    client_secret = os.environ.get(secret_var) or click.prompt("OAuth client secret",
                                                                hide_input=True)
    wanted = scopes.split() if scopes else default_scopes(connector)
    err = _console(stderr=True)

    def open_url(url: str) -> None:
        if no_browser or not webbrowser.open(url):
            err.print("Open this URL in a browser and approve access:")
            click.echo(url)
        else:
            err.print("A browser window opened; approve access there.")

    result = run_connect(connector, _store(), name=name, client_id=client_id,
                         client_secret=client_secret, scopes=wanted, base_url=base_url,
                         port=port, open_url=open_url)
    expiry = (time.strftime("%Y-%m-%d %H:%M", time.localtime(result.expires_at))
              if result.expires_at else "no expiry given")
    click.echo(f"connected '{name}' ({connector_id}); scopes: {' '.join(result.scopes)}; "
               f"access token expires {expiry}")
    missing = [s for s in wanted if s not in result.scopes]
    if missing:
        err.print(f"[yellow]warning[/]: not granted: {_esc(' '.join(missing))}")


def default_scopes(connector: Any, recipes_dir: Path = Path("recipes")) -> list[str]:
    """Scopes the project's recipes need from this connector, else all of its scopes."""
    from .recipe import load_recipe

    needed: list[str] = []
    for path in sorted(recipes_dir.glob("*.y*ml")) + sorted(recipes_dir.glob("*.json")):
        try:
            recipe = load_recipe(path)
        except Exception:  # noqa: BLE001 - a broken recipe is validate's business
            continue
        refs = [(recipe.trigger_connector_id, None)] + [(s.connector_id, s.action_id)
                                                         for s in recipe.steps]
        for cid, action in refs:
            if cid != connector.id:
                continue
            if action is None:
                trig = connector.triggers.get(recipe.trigger_id)
                action = trig.operation if trig else None
            op = connector.operations.get(action or "")
            for s in op.scopes if op else []:
                if s not in needed:
                    needed.append(s)
    return needed or connector.scopes


@click.command()
@click.argument("connector_id")
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (0: a free one).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the sandbox's data in this JSON file across restarts.")
@click.option("--manual-approve", is_flag=True, help="Show a consent page instead of "
                                                     "approving automatically.")
@handle_errors
def sandbox(connector_id: str, port: int, state_path: Path | None,
            manual_approve: bool) -> None:
    """Serve a connector's local sandbox API on 127.0.0.1 until Ctrl-C."""
    from .sandboxes import SandboxConfig, load_factory, serve

    connector = _registry().connector(connector_id)
    factory = load_factory(connector)
    config = SandboxConfig(state_path=state_path, auto_approve=not manual_approve)
    with serve(factory(config), port) as url:
        click.echo(f"{connector.name} sandbox on {url} (Ctrl-C stops)")
        click.echo(f"  OAuth client id: {config.client_id}  (secret: see `splice sandbox "
                   "--help`, docs/auth.md)")
        click.echo(f"  connect: SPLICE_{connector_id.upper()}_CLIENT_ID={config.client_id} "
                   f"splice connect {connector_id} --name my-{connector_id} --base-url {url}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("sandbox stopped")


def attach(cli: click.Group) -> None:
    cli.add_command(connections)
    cli.add_command(connect)
    cli.add_command(sandbox)

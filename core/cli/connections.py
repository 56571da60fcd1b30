"""CLI commands for credentials and sandboxes: ``connect``, ``connections ...``, ``sandbox``."""

from __future__ import annotations

import json
import os
import sys
import time
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, InputError
from .common import console, esc, handle_errors, load_registry, open_store
from .tables import Column, print_table

# splice.connections.client_credentials.KIND (not imported: it loads httpx and SQLAlchemy)
CLIENT_CREDENTIALS = "oauth2_client_credentials"
OPTION = "allow_private_network"  # splice.http.network.OPTION (not imported: it loads httpx)

# Token-request fields --token-param may not set: they carry the flow's own values or secrets.
_RESERVED_TOKEN_PARAMS = frozenset({"client_id", "client_secret", "code", "code_verifier",
                                    "grant_type", "redirect_uri", "refresh_token"})


def token_state(record: Any) -> tuple[str, str]:
    """``splice.connections.status.token_state``, imported on use (it pulls in OAuth and
    SQLAlchemy, which ``splice --help`` must not pay for)."""
    from ..connections.status import token_state as state

    return state(record)


def check_url(url: str, *, allowed: bool, what: str) -> None:
    """``splice.http.network.check_url``, imported on use (it loads httpx)."""
    from ..http.network import check_url as check

    check(url, allowed=allowed, what=what)


def default_scopes(connector: Any) -> list[str]:
    """``splice.connections.status.default_scopes``, imported on use."""
    from ..connections.status import default_scopes as scopes

    return scopes(connector)


def _iso(stamp: Any) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(float(stamp), UTC).isoformat(timespec="seconds")


def _public(record: Any) -> dict[str, Any]:
    """What `connections list/show` print: everything but the secret."""
    state, words = token_state(record)
    config = record.config
    out = {"name": record.name, "connector": record.connector, "auth": record.auth_type,
           "state": state, "status": words, "scopes": record.scopes,
           "base_url": record.base_url, "fields": config.get("fields", {}),
           "expires_at": _iso(config.get("expires_at")),
           "last_refresh_at": config.get("last_refresh_at"),
           "connected_at": config.get("connected_at"), "last_error": config.get("last_error")}
    for key in ("client_id", "token_params", "refresh_skew", "username", "client_id_ref",
                "client_secret_ref", "requested_scopes", OPTION):
        if config.get(key) is not None:
            out[key] = config[key]
    return out


def _secret_value(prompt: str, from_env: str | None) -> str:
    if from_env:
        value = os.environ.get(from_env)
        if not value:
            raise ConfigError(f"environment variable {from_env} is not set or empty")
        return value
    if not sys.stdin.isatty():
        value = sys.stdin.readline().strip()
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
              help="Read the key/token/password from this environment variable (else a "
                   "hidden prompt).")
@click.option("--base-url", help="Override the connector's base URL (e.g. a sandbox).")
@click.option("--username", help="basic auth: the user name (not secret; stored as is).")
@click.option("--client-id-env", metavar="VAR",
              help="oauth2_client_credentials: environment variable holding the client id "
                   "[default: SPLICE_<CONNECTOR>_CLIENT_ID].")
@click.option("--client-secret-env", metavar="VAR",
              help="oauth2_client_credentials: environment variable holding the client "
                   "secret [default: SPLICE_<CONNECTOR>_CLIENT_SECRET].")
@click.option("--client-secret-file", metavar="PATH",
              help="oauth2_client_credentials: read the client secret from this file instead.")
@click.option("--scopes", help="oauth2_client_credentials: space-separated scopes to ask for "
                               "(default: none named, the server's default).")
@click.option("--allow-private-network", is_flag=True,
              help="Let this connection reach loopback, link-local and private addresses "
                   "(a sandbox, a service on your own network); refused otherwise.")
@handle_errors
def connections_add(name: str, connector_id: str, from_env: str | None,
                    base_url: str | None, username: str | None, client_id_env: str | None,
                    client_secret_env: str | None, client_secret_file: str | None,
                    scopes: str | None, allow_private_network: bool) -> None:
    """Add a connection NAME for a connector that does not use the browser OAuth flow.

    \b
    bearer, api_key: the token or key is stored encrypted.
    basic: --username, and the password stored encrypted.
    oauth2_client_credentials: the connection keeps *references* to the client id and
      secret (environment variables or a file), fetches a token now and again whenever
      it expires; nothing secret is stored.
    other types (plugins): the secret is stored encrypted as `secret`.

    A secret is read from a hidden prompt, standard input or --from-env, never from a
    command-line argument (which would land in shell history). OAuth connectors use
    `splice connect` instead.
    """
    registry = load_registry()
    connector = registry.connector(connector_id)
    check_url(base_url or connector.base_url, allowed=allow_private_network,
              what="the base URL")
    token_url = connector.auth.get("token_url")
    if isinstance(token_url, str) and not token_url.startswith("/"):
        check_url(token_url, allowed=allow_private_network, what="the connector's token_url")
    kind = connector.auth_type
    if kind == "oauth2":
        raise InputError(f"connector '{connector_id}' uses OAuth",
                         hint=f"run `splice connect {connector_id} --name {name}`")
    if kind == CLIENT_CREDENTIALS:
        _add_client_credentials(name, connector, registry, base_url, client_id_env,
                                client_secret_env, client_secret_file, scopes,
                                allow_private_network)
        return
    secret: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if kind == "api_key":
        secret["api_key"] = _secret_value("API key", from_env)
    elif kind == "bearer":
        secret["token"] = _secret_value("Token", from_env)
    elif kind == "basic":
        if not username:
            raise InputError("basic auth needs --username")
        config["username"] = username
        secret["password"] = _secret_value("Password", from_env)
    elif kind != "none":
        secret["secret"] = _secret_value("Secret", from_env)
    open_store().put_connection(name, connector=connector_id, auth_type=kind, base_url=base_url,
                                config={**config, OPTION: True} if allow_private_network
                                else config, secret=secret or None)
    click.echo(f"connection '{name}' saved ({connector_id}, {kind})")


def _add_client_credentials(name: str, connector: Any, registry: Any, base_url: str | None,
                            id_env: str | None, secret_env: str | None,
                            secret_file: str | None, scopes: str | None,
                            allow_private_network: bool = False) -> None:
    import httpx

    from ..connections.client_credentials import ClientCredentialsAuth, default_refs

    refs = default_refs(connector.id)
    if id_env:
        refs["client_id_ref"] = {"$env": id_env}
    if secret_env and secret_file:
        raise InputError("use --client-secret-env or --client-secret-file, not both")
    if secret_env:
        refs["client_secret_ref"] = {"$env": secret_env}
    if secret_file:
        refs["client_secret_ref"] = {"$file": str(Path(secret_file).expanduser().resolve())}
    config: dict[str, Any] = dict(refs)
    if scopes:
        config["requested_scopes"] = scopes.split()
    if allow_private_network:
        config[OPTION] = True
    store = open_store()
    record = store.put_connection(name, connector=connector.id, auth_type=CLIENT_CREDENTIALS,
                                  base_url=base_url, config=config)
    auth = ClientCredentialsAuth(connector, record, store)
    with httpx.Client() as client:
        auth.fetch(client)
    _, words = token_state(store.require_connection(name))
    click.echo(f"connection '{name}' saved ({connector.id}, {CLIENT_CREDENTIALS}); "
               f"token fetched: {words}")


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (never secrets).")
@click.option("--tsv", is_flag=True, help="Tab-separated columns (for scripts).")
@handle_errors
def connections_list(as_json: bool, tsv: bool) -> None:
    """List connections: status (valid / expiring / needs re-auth), scopes, last refresh."""
    rows = [_public(r) for r in open_store().list_connections()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no connections; create one with `splice connect CONNECTOR --name NAME`")
        return
    overrides = any(r["base_url"] for r in rows)
    terminal = sys.stdout.isatty() and not tsv
    table = []
    for r in rows:
        scopes = r["scopes"]
        shown = " ".join(scopes) if not terminal or len(scopes) <= 1 else f"{len(scopes)}"
        refreshed = r["last_refresh_at"] or "-"
        table.append([r["name"], r["connector"], r["status"], shown or "-",
                      refreshed[5:16].replace("T", " ") if terminal else refreshed,
                      *([r["base_url"] or "(default)"] if overrides else [])])
    print_table([Column("name", fixed=True), Column("connector", fixed=True),
                 Column("status"), Column("scopes"), Column("refreshed", fixed=True),
                 *([Column("base URL")] if overrides else [])], table, tsv=tsv,
                caption="`splice connections show NAME` lists the scopes" if terminal else
                None)


@connections.command("show")
@click.argument("name")
@handle_errors
def connections_show(name: str) -> None:
    """Show one connection as JSON: status, scopes, token fields, expiry (never secrets)."""
    click.echo(json.dumps(_public(open_store().require_connection(name)), indent=2, default=str))


@connections.command("remove")
@click.argument("name")
@handle_errors
def connections_remove(name: str) -> None:
    """Delete a connection and its stored credentials.

    The provider still holds the grant: run `splice connections revoke NAME` first to end it.
    """
    from ..store.endpoints import forget_connection

    store = open_store()
    if not store.delete_connection(name):
        raise ConfigError(f"no connection named '{name}'")
    forget_connection(store, name)  # its disabled endpoints
    click.echo(f"connection '{name}' removed")


@connections.command("test")
@click.argument("name")
@handle_errors
def connections_test(name: str) -> None:
    """Call a cheap read with connection NAME: the connector's test operation, or another
    read its granted scopes allow (a missing scope is named with the command that adds it)."""
    from ..run.call import probe_connection

    store = open_store()
    op, answer, note = probe_connection(load_registry(), store, name)
    _, words = token_state(store.require_connection(name))
    got = f" HTTP {answer.status}" if answer.status else \
        f" with {answer.data['count']} record(s) on the first page"
    click.echo(f"connection '{name}' works: {op.ref} answered{got}; token {words}")
    if note:
        console(stderr=True).print(f"note: {esc(note)}; tested with {op.ref} instead")


def _oauth_record(name: str, *kinds: str) -> tuple[Any, Any, Any]:
    store = open_store()
    record = store.require_connection(name)
    if record.auth_type not in (kinds or ("oauth2",)):
        raise InputError(f"connection '{name}' does not use OAuth")
    return store, record, load_registry().connector(record.connector)


@connections.command("refresh")
@click.argument("name")
@handle_errors
def connections_refresh(name: str) -> None:
    """Refresh an OAuth connection's access token now (rotating its refresh token), or fetch
    a new client-credentials token."""
    import httpx

    from ..connections.client_credentials import ClientCredentialsAuth
    from ..connections.oauth import OAuth2Auth

    store, record, connector = _oauth_record(name, "oauth2", CLIENT_CREDENTIALS)
    with httpx.Client() as client:
        if record.auth_type == CLIENT_CREDENTIALS:
            ClientCredentialsAuth(connector, record, store).fetch(client)
        else:
            OAuth2Auth(connector, record, store).refresh(client)
    _, words = token_state(store.require_connection(name))
    click.echo(f"connection '{name}' refreshed: {words}")


@connections.command("revoke")
@click.argument("name")
@handle_errors
def connections_revoke(name: str) -> None:
    """Revoke an OAuth connection's grant at the provider and drop its tokens.

    The connection stays (status: needs re-auth) until `splice connect` renews it or
    `splice connections remove` deletes it.
    """
    from ..connections.oauth import revoke

    store, record, connector = _oauth_record(name)
    told = revoke(connector, record, store)
    click.echo(f"connection '{name}' revoked" + (
        "" if told else " locally (the connector declares no revoke URL: remove the app's "
                        "access in the provider's settings to end the grant there)"))


# ---------------------------------------------------------------------------- connect


def _client_credential(label: str, env_var: str, explicit: bool, stored: str | None) -> str:
    value = os.environ.get(env_var)
    if value:
        return value
    if explicit:
        raise ConfigError(f"environment variable {env_var} is not set or empty")
    if stored:
        return stored
    try:
        value = click.prompt(f"OAuth {label} (or set {env_var})",
                             hide_input=label == "client secret", err=True)
    except click.Abort:
        value = ""
    if not value or not value.strip():
        raise InputError(f"no OAuth {label} given", hint=f"set {env_var}")
    return str(value).strip()


def _token_params(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--token-param {pair!r}: use NAME=VALUE")
        if key in _RESERVED_TOKEN_PARAMS:
            raise InputError(f"--token-param cannot set {key}")
        out[key] = value
    return out


@click.command()
@click.argument("connector_id")
@click.option("--name", required=True, help="Name for the connection (reconnecting an existing "
                                            "name renews its tokens).")
@click.option("--scopes", help="Space-separated scopes (default: what the recipes in "
                               "./recipes use plus what the connection already has, else "
                               "every scope of the connector).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Loopback port for the redirect http://127.0.0.1:PORT/callback (0: a free "
                   "one). Use the port of the redirect URI registered for the app.")
@click.option("--no-browser", is_flag=True, help="Print the URL instead of opening a browser.")
@click.option("--base-url", help="Another server for the API and its OAuth endpoints (e.g. "
                                 "a sandbox); default: the connection's, else the connector's.")
@click.option("--client-id-env", metavar="VAR",
              help="Environment variable holding the client id "
                   "[default: SPLICE_<CONNECTOR>_CLIENT_ID].")
@click.option("--client-secret-env", metavar="VAR",
              help="Environment variable holding the client secret "
                   "[default: SPLICE_<CONNECTOR>_CLIENT_SECRET].")
@click.option("--token-param", "token_param", multiple=True, metavar="NAME=VALUE",
              help="Extra token-request field, kept for refreshes (HighLevel agency "
                   "installs: user_type=Company).")
@click.option("--refresh-skew", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Refresh this long before the access token expires [default: "
                   "$SPLICE_REFRESH_SKEW or 300].")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for the browser's answer.")
@click.option("--allow-private-network", is_flag=True,
              help="Let this connection reach loopback, link-local and private addresses "
                   "(a sandbox, a service on your own network); refused otherwise. Kept when "
                   "the connection is renewed.")
@handle_errors
def connect(connector_id: str, name: str, scopes: str | None, port: int, no_browser: bool,
            base_url: str | None, client_id_env: str | None, client_secret_env: str | None,
            token_param: tuple[str, ...], refresh_skew: float | None, timeout: float,
            allow_private_network: bool) -> None:
    """Connect an OAuth connector: consent in the browser, tokens stored encrypted.

    The client id and secret come from environment variables (--client-id-env /
    --client-secret-env, default SPLICE_<CONNECTOR>_CLIENT_ID / _CLIENT_SECRET), from the
    connection being renewed, or a prompt; never from a command-line argument, which would
    land in shell history and process lists. docs/auth.md walks through each provider.
    """
    from ..connections.authorize import connect as run_connect
    from ..connections.authorize import connect_target

    connector = load_registry().connector(connector_id)
    store = open_store()
    existing, base_url, allowed = connect_target(
        connector, store, name, base_url=base_url, allow_private_network=allow_private_network)
    old_secret = existing.secret if existing is not None else {}
    old_config = existing.config if existing is not None else {}
    prefix = f"SPLICE_{connector_id.upper()}"
    client_id = _client_credential("client id", client_id_env or f"{prefix}_CLIENT_ID",
                                   bool(client_id_env), old_config.get("client_id"))
    client_secret = _client_credential("client secret",
                                       client_secret_env or f"{prefix}_CLIENT_SECRET",
                                       bool(client_secret_env), old_secret.get("client_secret"))
    if scopes:
        wanted = scopes.split()
        unknown = [s for s in wanted if s not in connector.scopes]
        if unknown:
            console(stderr=True).print(
                f"[yellow]warning[/]: {connector_id} declares no scope "
                f"{esc(' '.join(unknown))}; asking for it anyway")
    else:
        wanted = default_scopes(connector)
        wanted += [s for s in (existing.scopes if existing else []) if s not in wanted]
    params = _token_params(token_param) or old_config.get("token_params")
    skew = refresh_skew if refresh_skew is not None else old_config.get("refresh_skew")
    err = console(stderr=True)

    def open_url(url: str) -> None:
        if no_browser or not webbrowser.open(url):
            err.print("Open this URL in a browser and approve access:")
            click.echo(url)
        else:
            err.print("A browser window opened; approve access there.")
        err.print("Waiting for the answer...")

    result = run_connect(connector, store, name=name, client_id=client_id,
                         client_secret=client_secret, scopes=wanted, base_url=base_url,
                         port=port, open_url=open_url, timeout=timeout, token_params=params,
                         config={"refresh_skew": skew, OPTION: True if allowed else None})
    expiry = (time.strftime("%Y-%m-%d %H:%M", time.localtime(result.expires_at))
              if result.expires_at else "no expiry given")
    click.echo(f"connected '{name}' ({connector_id}); scopes: {' '.join(result.scopes)}; "
               f"access token expires {expiry}")
    if result.fields:
        click.echo("  " + ", ".join(f"{k}: {v}" for k, v in result.fields.items()))
    missing = [s for s in wanted if s not in result.scopes]
    if missing:
        err.print(f"[yellow]warning[/]: not granted: {esc(' '.join(missing))}")


# ---------------------------------------------------------------------------- sandbox


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
    """Serve a connector's local sandbox API on 127.0.0.1 until Ctrl-C.

    Its OAuth client is fixed and public (id splice-demo, secret splice-demo-secret) and
    accepts any http://127.0.0.1:PORT/callback redirect URI.
    """
    from ..sandbox.server import SandboxConfig, load_factory, serve

    connector = load_registry().connector(connector_id)
    factory = load_factory(connector)
    config = SandboxConfig(state_path=state_path, auto_approve=not manual_approve)
    prefix = f"SPLICE_{connector_id.upper()}"
    with serve(factory(config), port) as url:
        click.echo(f"{connector.name} sandbox on {url} (Ctrl-C stops)")
        click.echo("  connect to it (sandbox credentials, not secret):")
        click.echo(f"    export {prefix}_CLIENT_ID={config.client_id} "
                   f"{prefix}_CLIENT_SECRET={config.client_secret}")
        click.echo(f"    splice connect {connector_id} --name my-{connector_id} --base-url {url} "
                   "--allow-private-network")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("sandbox stopped")


"""``splice connections endpoints CONN``: the operations and triggers a connection may use,
their scopes (granted or missing) and whether each is enabled; ``--enable/--disable OP``."""

from __future__ import annotations

import json

import click

from ..errors import InputError
from .common import handle_errors, load_registry, open_store
from .connections import connections
from .tables import Column, print_table


@connections.command("endpoints")
@click.argument("name")
@click.option("--enable", "enable", multiple=True, metavar="OP",
              help="Enable this operation or trigger (id, or CONNECTOR.ID); repeatable.")
@click.option("--disable", "disable", multiple=True, metavar="OP",
              help="Disable this operation or trigger; repeatable.")
@click.option("--disabled", "only_disabled", is_flag=True, help="List only disabled ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--tsv", is_flag=True, help="Tab-separated columns (for scripts).")
@handle_errors
def connections_endpoints(name: str, enable: tuple[str, ...], disable: tuple[str, ...],
                          only_disabled: bool, as_json: bool, tsv: bool) -> None:
    """List the endpoints (operations and triggers) connection NAME may use: the scopes
    each needs and whether the connection was granted them, and whether it is enabled.

    \b
    A disabled endpoint is refused before anything is sent: by `splice validate`, `run`,
    `test` and `call`, by `splice serve` (recipe loading, runs, the JSON API) and the
    dashboard, with a message naming the connection, the endpoint and this command.
    Disabling an operation also refuses the polled triggers that list with it.

    \b
      splice connections endpoints my-highlevel
      splice connections endpoints my-highlevel --disable list_tags
      splice connections endpoints my-highlevel --enable list_tags --json
    """
    from ..connections.endpoints import list_endpoints, resolve, set_enabled
    from ..store.endpoints import disabled

    store = open_store()
    record = store.require_connection(name)
    connector = load_registry().connector(record.connector)
    wanted = [(True, resolve(connector, op)) for op in enable] + \
        [(False, resolve(connector, op)) for op in disable]  # every name checked first
    both = {e for on, e in wanted if on} & {e for on, e in wanted if not on}
    if both:
        raise InputError(f"both --enable and --disable name {', '.join(sorted(both))}")
    changes = []
    for on, endpoint_id in wanted:
        _, changed = set_enabled(store, connector, record, endpoint_id, on)
        changes.append({"endpoint": endpoint_id, "enabled": on, "changed": changed})
    rows = list_endpoints(connector, record, disabled(store, name))
    if only_disabled:
        rows = [r for r in rows if not r.enabled]
    if as_json:
        click.echo(json.dumps({"connection": name, "connector": connector.id,
                               "changes": changes, "endpoints": [r.to_json() for r in rows]},
                              indent=2))
        return
    for change in changes:
        state = "enabled" if change["enabled"] else "disabled"
        was = "" if change["changed"] else " (it already was)"
        click.echo(f"{connector.id}.{change['endpoint']} {state} for connection '{name}'{was}")
    if changes:
        return  # `splice connections endpoints NAME` lists them all
    table = [[r.id, r.kind if r.kind == "operation" else f"trigger ({r.trigger_type})",
              f"{r.method} {r.path}" if r.method else (f"polls {r.uses}" if r.uses else "-"),
              " ".join(r.scopes) or "-",
              "granted" if r.allowed else "missing " + " ".join(r.missing),
              "enabled" if r.enabled else "DISABLED"] for r in rows]
    if not table:
        click.echo("no disabled endpoints" if only_disabled else "no endpoints")
        return
    print_table([Column("endpoint", fixed=True), Column("kind", fixed=True),
                 Column("request"), Column("scopes"), Column("granted"),
                 Column("state", fixed=True)], table, tsv=tsv)

"""``splice connectors ...``, ``call``, ``plugins``: what is installed, and calling it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .common import (
    console,
    esc,
    handle_errors,
    load_registry,
    open_store,
)
from .tables import Column, print_table


# ---------------------------------------------------------------------------- connectors
@click.group()
def connectors() -> None:
    """Installed connectors, their operations, triggers and scopes."""


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def connectors_list(as_json: bool) -> None:
    """List installed connectors."""
    registry = load_registry()
    rows = [{"id": c.id, "name": c.name, "version": c.version, "plugin": c.plugin,
             "auth": c.auth_type, "operations": len(c.operations), "triggers": len(c.triggers)}
            for c in sorted(registry.connectors.values(), key=lambda c: c.id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    keys = ("id", "name", "version", "plugin", "auth", "operations", "triggers")
    print_table([Column(k, fixed=k in ("version", "auth", "operations", "triggers"))
                 for k in keys], [[str(r[k]) for k in keys] for r in rows])
    actions = sum(r["operations"] for r in rows)
    triggers = sum(r["triggers"] for r in rows)
    click.echo(f"{len(rows)} connectors: {actions} actions and {triggers} triggers "
               f"({actions + triggers} in all)")


@connectors.command("show")
@click.argument("name", metavar="CONNECTOR[.OPERATION|.TRIGGER]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def connectors_show(name: str, as_json: bool) -> None:
    """Show a connector's operations, triggers and scopes, or one operation's or trigger's
    fields.

    \b
    splice connectors show ghl_users                  every operation and trigger
    splice connectors show ghl_users.create_post      input fields, output fields (a tree)
    splice connectors show invoice2go.invoice_paid    trigger input and record fields
    """
    connector_id, _, member = name.partition(".")
    connector = load_registry().connector(connector_id)
    if member:
        from .fields import show_member

        show_member(connector, member, as_json)
        return
    ops = [{"id": o.id, "method": o.method, "path": o.path, "scopes": o.scopes,
            "title": o.title, "list": o.is_list} for o in connector.operations.values()]
    trigs = [{"id": t.id, "type": t.type, "operation": t.operation, "title": t.title,
              "scopes": connector.operations[t.operation].scopes
              if t.operation in connector.operations else t.scopes, "events": t.events}
             for t in connector.triggers.values()]
    if as_json:
        click.echo(json.dumps({"id": connector.id, "name": connector.name,
                               "version": connector.version, "base_url": connector.base_url,
                               "auth": connector.auth_type, "scopes": connector.scopes,
                               "operations": ops, "triggers": trigs}, indent=2))
        return
    click.echo(f"{connector.name} ({connector.id} {connector.version}, plugin "
               f"{connector.plugin}) base URL {connector.base_url}, auth {connector.auth_type}")
    click.echo(f"\n{len(ops)} operations:")
    print_table([Column("operation"), Column("method", fixed=True), Column("path"),
                 Column("scopes")],
                [[o["id"], o["method"], o["path"], " ".join(o["scopes"]) or "-"] for o in ops])
    click.echo(f"\n{len(trigs)} triggers:")
    print_table([Column("trigger"), Column("type", fixed=True), Column("operation / events"),
                 Column("scopes")],
                [[t["id"], t["type"], t["operation"] or ", ".join(t["events"]),
                  " ".join(t["scopes"]) or "-"] for t in trigs])
    click.echo(f"\nfields of one: splice connectors show {connector.id}.OPERATION (or .TRIGGER)")


@connectors.command("import-openapi")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the manifest here (default: stdout).")
@click.option("--tag", "tags", multiple=True, help="Only operations with this OpenAPI tag.")
@click.option("--path", "paths", multiple=True, help="Only paths starting with this prefix.")
@click.option("--descriptions/--no-descriptions", default=False, show_default=True,
              help="Copy the spec's prose (off: titles are generated, write your own words).")
@handle_errors
def connectors_import_openapi(spec: Path, output: Path | None, tags: tuple[str, ...],
                              paths: tuple[str, ...], descriptions: bool) -> None:
    """Generate a connector manifest from an OpenAPI 3.0 SPEC."""
    from ..openapi.importer import run_import

    result = run_import(spec, output, list(tags), list(paths), descriptions)
    err = console(stderr=True)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/]: {esc(warning)}")
    err.print(f"{result.operation_count} operations imported"
              + (f", {len(result.skipped)} skipped" if result.skipped else "")
              + (f" -> {output}" if output else ""))



@click.command()
@click.argument("operation", metavar="CONNECTOR.OPERATION")
@click.option("--connection", "-c", help="Stored connection to call with.")
@click.option("--with", "-w", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An input value (repeatable). JSON where the input wants a number, "
                   "boolean, list or object.")
@click.option("--input", "input_json", metavar="JSON", help="The whole input as a JSON object.")
@click.option("--max-pages", type=click.IntRange(min=1), help="List operations: stop after N "
                                                              "pages.")
@handle_errors
def call(operation: str, connection: str | None, pairs: tuple[str, ...],
         input_json: str | None, max_pages: int | None) -> None:
    """Call one operation and print its JSON result (list operations: every page).

    \b
    Example:
      splice call ghl_users.list_social_accounts -c my-highlevel
      splice call invoice2go.list_invoices -c my-invoice2go -w 'document_status=["sent"]'
    """
    from ..errors import InputError
    from ..run.call import call_operation, parse_assignments

    registry = load_registry()
    cid, _, op_id = operation.partition(".")
    op = registry.connector(cid).operation(op_id)
    payload: dict[str, Any] = {}
    if input_json:
        try:
            payload = json.loads(input_json)
        except ValueError as exc:
            raise InputError(f"--input is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise InputError("--input must be a JSON object")
    payload.update(parse_assignments(list(pairs), op.input))
    result = call_operation(registry, open_store(), operation, connection=connection,
                            payload=payload, max_pages=max_pages)
    click.echo(json.dumps(result, indent=2, default=str))



# ---------------------------------------------------------------------------- plugins
@click.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def plugins(as_json: bool) -> None:
    """List loaded plugins, their versions and hooks (and any that failed to load)."""
    from ..plugins import plugin_infos

    registry = load_registry()
    registry.connectors  # noqa: B018 - every manifest checked: this lists their failures
    infos = plugin_infos()
    rows: list[dict[str, Any]] = [
        {"name": i.name, "version": i.version, "hooks": i.hooks, "default": i.default}
        for i in infos]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": [
            {"plugin": f.plugin, "reason": f.reason} for f in registry.failures]}, indent=2))
        return
    print_table([Column("plugin"), Column("version", fixed=True), Column("hooks")],
                [[r["name"] + (" (built-in)" if r["default"] else ""), r["version"] or "-",
                  ", ".join(r["hooks"])] for r in rows])



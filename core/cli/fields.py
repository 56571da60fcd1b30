"""``splice connectors show CONNECTOR.OPERATION`` (or ``.TRIGGER``): the fields to map.

Input fields (what a step's ``with:`` or a trigger's ``with:`` takes) are a table: name
(indented under its parent), type, required, allowed values, description. Output fields (what
``steps.<id>.…`` or ``trigger.…`` can read) are a tree. ``--json`` prints both as nested lists.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import ConfigError
from ..model.fields import Field, fields
from ..model.manifest import Connector
from ..model.schema import did_you_mean
from .common import console, esc


def _values(item: Field) -> str:
    if item.enum is not None:
        shown = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in item.enum[:12])
        return shown + (f" (+{len(item.enum) - 12})" if len(item.enum) > 12 else "")
    if item.example is not None:
        return f"e.g. {json.dumps(item.example, default=str)[:40]}"
    return ""


def _input_table(title: str, items: list[Field], defaults: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("field", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("required", no_wrap=True)
    table.add_column("values", overflow="fold", ratio=1)
    table.add_column("description", overflow="fold", ratio=2)
    for top in items:
        for depth, item in top.walk():
            values = _values(item)
            if depth == 0 and item.name in defaults:
                values = f"default {json.dumps(defaults[item.name], default=str)}"
            table.add_row("  " * depth + esc(item.name), esc(item.type),
                          "yes" if item.required else "", esc(values),
                          esc(item.description[:160]))
    return table


def _output_tree(title: str, items: list[Field]) -> Any:
    from rich.tree import Tree

    tree = Tree(title)

    def add(parent: Any, item: Field) -> None:
        label = f"[bold]{esc(item.name)}[/] [cyan]{esc(item.type)}[/]"
        if item.enum is not None:
            label += f" one of: {esc(_values(item))}"
        if item.description:
            label += f" [dim]{esc(item.description[:120])}[/]"
        node = parent.add(label)
        for child in item.children:
            add(node, child)

    for item in items:
        add(tree, item)
    if not items:
        tree.add("[dim](no fields declared)[/]")
    return tree


def describe_member(connector: Connector, member: str) -> dict[str, Any]:
    """What `show CONNECTOR.MEMBER --json` prints."""
    if member in connector.operations:
        op = connector.operations[member]
        out: dict[str, Any] = {
            "ref": op.ref, "kind": "operation", "title": op.title,
            "description": op.description, "method": op.method, "path": op.path,
            "scopes": op.scopes, "input": [f.to_json() for f in fields(op.input)]}
        if op.is_list:
            out["records"] = op.records
            out["record"] = [f.to_json() for f in fields(op.record_schema)]
        out["output"] = [f.to_json() for f in fields(op.output)]
        return out
    if member in connector.triggers:
        trigger = connector.triggers[member]
        polled = connector.operations.get(trigger.operation or "")
        return {"ref": trigger.ref, "kind": "trigger", "type": trigger.type,
                "title": trigger.title, "description": trigger.description,
                "operation": trigger.operation, "events": trigger.events,
                "key": trigger.key, "version": trigger.version,
                "scopes": polled.scopes if polled is not None else [],
                "input": [f.to_json() for f in fields(polled.input)]
                if polled is not None else [],
                "record": [f.to_json() for f in fields(connector.trigger_output(trigger))]}
    names = list(connector.operations) + list(connector.triggers)
    raise ConfigError(f"connector '{connector.id}' has no operation or trigger '{member}'"
                      f"{did_you_mean(member, names)}",
                      hint=f"`splice connectors show {connector.id}` lists them")


def show_member(connector: Connector, member: str, as_json: bool) -> None:
    data = describe_member(connector, member)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    con = console()
    head = f"[bold]{data['ref']}[/]"
    if data["kind"] == "operation":
        head += f" (action) {data['method']} {esc(data['path'])}"
    else:
        head += f" ({data['type']} trigger" + (f" on {data['operation']}" if data["operation"]
                                               else "") + ")"
    con.print(head)
    for key in ("title", "description"):
        if data.get(key):
            con.print(esc(str(data[key])))
    if data.get("scopes"):
        con.print(f"scopes: {esc(' '.join(data['scopes']))}")
    if data["kind"] == "trigger" and data.get("key"):
        con.print(f"dedupe key: {esc(data['key'])}"
                  + (f", version: {esc(data['version'])}" if data.get("version") else ""))
    if data["kind"] == "trigger" and data.get("events"):
        con.print(f"events: {esc(', '.join(data['events']))}")
    op = connector.operations.get(member if data["kind"] == "operation"
                                  else data.get("operation") or "")
    inputs = fields(op.input) if op is not None else []
    defaults = dict(op.defaults) if op is not None else {}
    if data["kind"] == "trigger":
        defaults.update(connector.triggers[member].defaults)
    con.print(_input_table("input (the `with:` of a step)" if data["kind"] == "operation"
                           else "input (the `with:` of the trigger)", inputs, defaults)
              if inputs else "input: none")
    if data["kind"] == "trigger":
        con.print(_output_tree("record fields (`trigger.…` in steps)",
                               fields(connector.trigger_output(connector.triggers[member]))))
    elif op is not None and op.is_list:
        con.print(_output_tree(f"each record at `{op.records}` "
                               "(`steps.<id>.records[…]`, or `item` in a for_each)",
                               fields(op.record_schema)))
    elif op is not None:
        con.print(_output_tree("output fields (`steps.<id>.…`)", fields(op.output)))

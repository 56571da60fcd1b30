"""``splice recipes ...``: the recipes ``splice serve`` runs (add, list, enable, disable,
remove, run-now)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, DocumentError, InputError
from .common import (
    EXIT_FAILED,
    handle_errors,
    load_registry,
    open_store,
    print_report,
)


@click.group()
def recipes() -> None:
    """Recipes registered for `splice serve` (stored in the state database)."""


def _require(store: Any, wanted: str) -> Any:
    """The registered recipe with this id, or this name when only one has it."""
    from ..model.schema import did_you_mean
    from ..store import registry as reg

    found = reg.find(store, wanted)
    if len(found) > 1:
        raise InputError(f"{len(found)} registered recipes are named '{wanted}'",
                         hint="give the id instead: " + ", ".join(r.id for r in found))
    if not found:
        known = [r.name for r in reg.list_all(store)] + [r.id for r in reg.list_all(store)]
        raise ConfigError(f"no registered recipe '{wanted}'{did_you_mean(wanted, known)}",
                          hint="`splice recipes list` shows them; `splice recipes add FILE` "
                               "registers one")
    return found[0]


def _serve_running(store: Any) -> bool:
    from ..store.inbox import live_instances

    return bool(live_instances(store))


def _unsubscribe_if_alone(store: Any, registry: Any) -> None:
    """With no serve running, drop REST-hook subscriptions no enabled recipe needs."""
    if _serve_running(store):
        return
    from ..serve.book import RecipeBook
    from ..serve.subscriptions import reconcile, wanted_events

    book = RecipeBook(store, registry)
    book.refresh()
    for line in reconcile(store, registry, wanted_events(book.enabled()), None,
                          only_remove=True):
        click.echo(line)


@recipes.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False,
                                                                  path_type=str))
@click.option("--disabled", is_flag=True, help="Register without enabling.")
@handle_errors
def recipes_add(files: tuple[str, ...], disabled: bool) -> None:
    """Register recipe FILES for `splice serve` (each is validated first).

    A registered recipe is known by its id (its `id:`, else one derived from the file's path)
    and by its name; adding a changed file again (or just saving it while serve runs)
    replaces the running version once it validates.
    """
    from ..serve.book import check_text, read_text, text_hash
    from ..store import registry as reg

    registry = load_registry()
    store = open_store()
    problems = []
    for file in files:
        path = str(Path(file).resolve())
        try:
            text = read_text(file)
            plan = check_text(text, path, registry, store)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        rid, name = plan.recipe.id, plan.recipe.name
        existing = reg.get(store, rid)
        if existing is not None and existing.path != path:
            raise InputError(f"{file}: a recipe with id '{rid}' is already registered from "
                             f"{existing.path}", hint="give one of them another `id:` (the id "
                                                      "keys a recipe's state)")
        enabled = not disabled if existing is None else existing.enabled
        reg.register(store, rid, name, path, text, text_hash(text), enabled=enabled)
        click.echo(f"{'updated' if existing else 'registered'} '{name}' (id {rid}) from "
                   f"{path} ({'enabled' if enabled else 'disabled'})")
        for source in plan.webhooks:
            click.echo(f"  webhook {source.trigger.ref}: deliveries to /hooks/"
                       f"{source.connection} (`splice connections webhook-url "
                       f"{source.connection}`)")
    if problems:
        raise DocumentError(problems)


@recipes.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--tsv", is_flag=True, help="Tab-separated columns (for scripts).")
@handle_errors
def recipes_list(as_json: bool, tsv: bool) -> None:
    """Registered recipes: enabled, status (ok / invalid / missing), schedule, and how many
    events each path (webhook, poll) delivered first."""
    from ..store import registry as reg

    rows = reg.list_all(open_store())
    data: list[dict[str, Any]] = [
        {"id": r.id, "name": r.name, "path": r.path, "enabled": r.enabled, "status": r.status,
         "problems": r.problems,
         "next_poll_at": r.next_poll_at.isoformat(timespec="seconds") if r.next_poll_at
         else None,
         "last_poll_at": r.last_poll_at.isoformat(timespec="seconds") if r.last_poll_at
         else None,
         "last_poll_status": r.last_poll_status,
         "first_by_webhook": r.webhook_first, "first_by_poll": r.poll_first}
        for r in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no registered recipes; add one with `splice recipes add FILE`")
        return
    from .tables import Column, print_table

    terminal = sys.stdout.isatty() and not tsv
    print_table([Column("name"), Column("id"), Column("on", fixed=True),
                 Column("status", fixed=True), Column("last poll", fixed=True),
                 Column("first: webhook/poll", fixed=True)],
                [[r["name"], r["id"], "yes" if r["enabled"] else "no", r["status"],
                  ((r["last_poll_at"] or "-").replace("T", " ")[:16] if terminal
                   else r["last_poll_at"] or "-"),
                  f"{r['first_by_webhook']}/{r['first_by_poll']}"] for r in data], tsv=tsv)
    for r in data:
        if r["problems"]:
            click.echo(f"{r['name']} ({r['status']}; the stored version keeps running):")
            for line in str(r["problems"]).splitlines():
                click.echo(f"  {line}")


def _set_enabled(name: str, enabled: bool) -> None:
    from ..store import registry as reg

    store = open_store()
    row = _require(store, name)
    reg.update(store, row.id, enabled=enabled)
    click.echo(f"'{row.name}' {'enabled' if enabled else 'disabled'}")
    if not enabled:
        _unsubscribe_if_alone(store, load_registry())


@recipes.command("enable")
@click.argument("name", metavar="RECIPE")
@handle_errors
def recipes_enable(name: str) -> None:
    """Enable a registered recipe (a running serve picks it up within a second)."""
    _set_enabled(name, True)


@recipes.command("disable")
@click.argument("name", metavar="RECIPE")
@handle_errors
def recipes_disable(name: str) -> None:
    """Disable a registered recipe (its webhook events are unsubscribed)."""
    _set_enabled(name, False)


@recipes.command("remove")
@click.argument("name", metavar="RECIPE")
@handle_errors
def recipes_remove(name: str) -> None:
    """Unregister a recipe. Its history (runs, events) stays in the ledger."""
    from ..store import registry as reg

    store = open_store()
    row = _require(store, name)
    reg.remove(store, row.id)
    click.echo(f"'{row.name}' removed")
    _unsubscribe_if_alone(store, load_registry())


@recipes.command("run-now")
@click.argument("name", metavar="RECIPE")
@handle_errors
def recipes_run_now(name: str) -> None:
    """Run a registered recipe now: a running serve does it within a second; with no serve
    running, it runs here once (like `splice run`)."""
    from datetime import UTC, datetime

    from ..store import registry as reg

    store = open_store()
    row = _require(store, name)
    if not row.enabled:
        raise InputError(f"'{row.name}' is disabled", hint=f"splice recipes enable {row.name}")
    if _serve_running(store):
        reg.update(store, row.id, run_requested_at=datetime.now(UTC))
        click.echo(f"'{row.name}': run requested; the running serve starts it within a second")
        return
    from ..run.runner import Runner
    from ..serve.book import check_text

    registry = load_registry()
    plan = check_text(row.source, row.path, registry, store)
    runner = Runner(plan, store, registry)
    try:
        report = runner.run(mode="once")
    finally:
        runner.close()
    print_report(report, False)
    if not report.ok:
        sys.exit(EXIT_FAILED)

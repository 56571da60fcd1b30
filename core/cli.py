"""The ``splice`` command line.

Exit codes: 0 ok, 1 a run or request failed, 2 bad input (recipe, manifest, option, config).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import DocumentError, SpliceError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(exc: SpliceError) -> None:
    err = _console(stderr=True)
    if isinstance(exc, DocumentError):
        for problem in exc.problems:
            err.print(f"[bold red]error[/]: {_esc(str(problem))}")
        err.print(f"{len(exc.problems)} problem(s) found")
    else:
        err.print(f"[bold red]error[/]: {_esc(str(exc))}")
    sys.exit(exc.exit_code)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn splice errors into a message and an exit code (never a traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpliceError as exc:
            _fail(exc)
    return wrapper


def _setup_logging(verbose: bool) -> None:
    from .secrets import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("splice")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False


def _registry() -> Any:
    from .plugins import get_registry

    registry = get_registry()
    _ = registry.connectors
    if registry.failures:
        err = _console(stderr=True)
        for failure in registry.failures:
            err.print(f"[yellow]warning[/]: {_esc(str(failure))}")
    return registry


def _store() -> Any:
    from .state import Store

    return Store.open()


def _engine(registry: Any) -> Any:
    from .templates import TemplateEngine

    return TemplateEngine(registry.filters)


class SpliceGroup(click.Group):
    """Loads plugin commands lazily, the first time a command is looked up."""

    _plugins_loaded = False

    def _load(self) -> None:
        if SpliceGroup._plugins_loaded:
            return
        SpliceGroup._plugins_loaded = True
        from .plugins import load_plugins, pm

        load_plugins()
        pm.hook.register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        if os.environ.get("SPLICE_NO_PLUGIN_COMMANDS") is None and "--help" not in sys.argv:
            self._load()
        return super().list_commands(ctx)


@click.group(cls=SpliceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="splice", prog_name="splice")
@click.option("-v", "--verbose", is_flag=True, help="Log HTTP requests (secrets redacted).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """splice: connect a trigger of one API to actions of another with a recipe file.

    \b
    Start here:
      splice demo                      run the main job against built-in sandboxes
      splice connectors list           what can be connected
      splice validate RECIPE.yaml      check a recipe without running it
      splice run RECIPE.yaml           poll the trigger once and run new events

    State lives in $SPLICE_HOME (or the platform data dir); SPLICE_DATABASE_URL selects
    another database. Exit codes: 0 ok, 1 a run failed, 2 bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    _setup_logging(verbose)


# ---------------------------------------------------------------------------- connectors
@cli.group()
def connectors() -> None:
    """Installed connectors, their operations, triggers and scopes."""


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def connectors_list(as_json: bool) -> None:
    """List installed connectors."""
    registry = _registry()
    rows = [{"id": c.id, "name": c.name, "version": c.version, "plugin": c.plugin,
             "auth": c.auth_type, "operations": len(c.operations), "triggers": len(c.triggers)}
            for c in sorted(registry.connectors.values(), key=lambda c: c.id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table("id", "name", "version", "plugin", "auth", "operations", "triggers")
    for r in rows:
        table.add_row(*[str(r[k]) for k in ("id", "name", "version", "plugin", "auth",
                                            "operations", "triggers")])
    _console().print(table)


@connectors.command("show")
@click.argument("connector_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def connectors_show(connector_id: str, as_json: bool) -> None:
    """Show a connector's operations, triggers and required scopes."""
    connector = _registry().connector(connector_id)
    ops = [{"id": o.id, "method": o.method, "path": o.path, "scopes": o.scopes,
            "title": o.title, "list": o.is_list} for o in connector.operations.values()]
    trigs = [{"id": t.id, "type": t.type, "operation": t.operation, "title": t.title,
              "scopes": connector.operations[t.operation].scopes
              if t.operation in connector.operations else [], "events": t.events}
             for t in connector.triggers.values()]
    if as_json:
        click.echo(json.dumps({"id": connector.id, "name": connector.name,
                               "version": connector.version, "base_url": connector.base_url,
                               "auth": connector.auth_type, "scopes": connector.scopes,
                               "operations": ops, "triggers": trigs}, indent=2))
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{_esc(connector.name)}[/] ({connector.id} {connector.version}, "
              f"plugin {connector.plugin}) base URL {connector.base_url}, auth "
              f"{connector.auth_type}")
    table = Table(title=f"{len(ops)} operations")
    for column in ("operation", "method", "path", "scopes"):
        table.add_column(column, overflow="fold")
    for o in ops:
        table.add_row(o["id"], o["method"], o["path"], " ".join(o["scopes"]) or "-")
    con.print(table)
    table = Table(title=f"{len(trigs)} triggers")
    for column in ("trigger", "type", "operation / events", "scopes"):
        table.add_column(column, overflow="fold")
    for t in trigs:
        table.add_row(t["id"], t["type"], t["operation"] or ", ".join(t["events"]),
                      " ".join(t["scopes"]) or "-")
    con.print(table)


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
    from .openapi import run_import

    result = run_import(spec, output, list(tags), list(paths), descriptions)
    err = _console(stderr=True)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/]: {_esc(warning)}")
    err.print(f"{result.operation_count} operations imported"
              + (f", {len(result.skipped)} skipped" if result.skipped else "")
              + (f" -> {output}" if output else ""))


# ---------------------------------------------------------------------------- validate / run
def _load_plan(path: str, registry: Any, store: Any | None) -> Any:
    from .plan import build_plan
    from .recipe import load_recipe

    recipe = load_recipe(path)
    connections = None
    if store is not None:
        connections = {c.name: c for c in store.list_connections()}
    return build_plan(recipe, registry, _engine(registry), connections=connections)


@cli.command()
@click.argument("recipes", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=str))
@click.option("--skip-connections", is_flag=True,
              help="Do not check connections and scopes (e.g. in CI without credentials).")
@handle_errors
def validate(recipes: tuple[str, ...], skip_connections: bool) -> None:
    """Check recipes without running them.

    Reports every problem as FILE:LINE:COLUMN: PATH: MESSAGE — unknown connectors, actions,
    connections or scopes, templates that do not compile, trigger fields that do not exist,
    values that do not fit the action's input.
    """
    registry = _registry()
    store = None if skip_connections else _store()
    problems = []
    for path in recipes:
        try:
            _load_plan(path, registry, store)
            click.echo(f"{path}: ok")
        except DocumentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DocumentError(problems)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--once", "mode", flag_value="once", default=True,
              help="Poll once and run new events (default).")
@click.option("--watch", "mode", flag_value="watch",
              help="Poll on the recipe's interval until Ctrl-C.")
@click.option("--dry-run", is_flag=True,
              help="Render and validate; print the requests that would be sent; send nothing "
                   "and change no state.")
@click.option("--backfill", is_flag=True,
              help="On the first run, fire on existing records instead of only remembering them.")
@click.option("--max-pages", type=click.IntRange(min=1), help="Stop polling after N pages.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, recipe: str, mode: str, dry_run: bool, backfill: bool,
        max_pages: int | None, as_json: bool) -> None:
    """Run RECIPE: poll its trigger, dedupe, and run the steps of every new event.

    The first run of a recipe remembers the records that already exist and fires on nothing
    (unless --backfill); later runs fire on new or changed records only. A failed event is
    kept and can be retried with `splice runs retry`.
    """
    from .engine import Runner

    registry = _registry()
    store = _store()
    plan = _load_plan(recipe, registry, store)
    verbose = ctx.obj.get("verbose", False)
    interactive = sys.stderr.isatty() and not as_json
    while True:
        runner = Runner(plan, store, registry, verbose=verbose)
        report = _with_progress(runner, interactive, plan, mode="dry_run" if dry_run else
                                ("watch" if mode == "watch" else "once"),
                                backfill=backfill, max_pages=max_pages)
        runner.close()
        _print_report(report, as_json)
        if mode != "watch" or dry_run:
            break
        try:
            _console(stderr=True).print(f"next poll in {plan.recipe.every:.0f}s (Ctrl-C stops)")
            time.sleep(plan.recipe.every)
        except KeyboardInterrupt:
            _console(stderr=True).print("stopped")
            break
        backfill = False
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _with_progress(runner: Any, interactive: bool, plan: Any, **kwargs: Any) -> Any:
    if not interactive:
        return runner.run(**kwargs)
    from rich.status import Status

    with Status(f"polling {plan.trigger.ref}...", console=_console(stderr=True)) as status:
        runner.progress = lambda message: status.update(f"polling {plan.trigger.ref}: "
                                                        f"{message}")
        return runner.run(**kwargs)


def _print_report(report: Any, as_json: bool) -> None:
    data = {"run_id": report.run_id, "recipe": report.recipe, "mode": report.mode,
            "events_seen": report.events_seen, "events_new": report.events_new,
            "events_succeeded": report.events_succeeded, "events_failed": report.events_failed,
            "seeded": report.seeded, "requests_made": report.requests_made,
            "errors": report.errors}
    if report.mode == "dry_run":
        data["requests"] = [{"event": c.event_key, "step": c.step, **c.request}
                            for c in report.calls]
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    con = _console()
    if report.mode == "dry_run":
        con.print(f"[bold]dry run[/]: {len(report.calls)} request(s) would be sent "
                  "(nothing was sent, no state changed)")
        for c in report.calls:
            con.print(f"\n[bold]{_esc(c.step)}[/] for event {_esc(c.event_key)}")
            con.print(_esc(json.dumps(c.request, indent=2, default=str)))
    if report.seeded:
        con.print(f"first run: remembered {report.seeded} existing record(s) without firing "
                  "(use --backfill to process them)")
    con.print(f"{report.recipe}: {report.events_seen} record(s) seen, {report.events_new} new, "
              f"{report.events_succeeded} succeeded, {report.events_failed} failed, "
              f"{report.requests_made} request(s)" +
              (f" [dim](run {report.run_id})[/]" if report.run_id else ""))
    err = _console(stderr=True)
    for e in report.errors:
        err.print(f"[bold red]error[/]: {_esc(e)}")
    if report.events_failed:
        err.print(f"retry failed events with: splice runs retry {report.run_id}")


@cli.command()
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
    from .call import call_operation, parse_assignments
    from .errors import InputError

    registry = _registry()
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
    result = call_operation(registry, _store(), operation, connection=connection,
                            payload=payload, max_pages=max_pages)
    click.echo(json.dumps(result, indent=2, default=str))


@cli.command()
@click.option("--keep", is_flag=True, help="Leave the sandboxes running for exploring "
                                           "(Ctrl-C stops them).")
@handle_errors
def demo(keep: bool) -> None:
    """Run the main job end to end on the built-in sandboxes, with no account anywhere.

    Starts the HighLevel and Invoice2go sandboxes on free loopback ports, connects to both
    through the real OAuth flow (approved automatically), runs every recipe in recipes/ and
    prints what happened. Run it again: it finds nothing new and sends nothing.
    """
    from .demo import run_demo

    summary = run_demo(keep=keep, out=click.echo)
    if not getattr(summary, "ok", True):
        sys.exit(EXIT_FAILED)


@cli.command("test")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--live", "source", flag_value="live",
              help="Use one real record fetched from the trigger.")
@click.option("--sample", "source", flag_value="sample",
              help="Use the connector's declared sample record.")
@click.option("--send", is_flag=True, help="Really send the requests (test transaction).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def test_recipe(recipe: str, source: str | None, send: bool, as_json: bool) -> None:
    """Try RECIPE on one event and show every request next to the fields it was mapped from.

    The event is one real record from the trigger (default when the connection works) or the
    connector's sample. Every step is rendered and checked against its action's input schema.
    Nothing is sent unless --send.
    """
    from .engine import Runner
    from .trial import run_trial

    registry = _registry()
    store = _store()
    plan = _load_plan(recipe, registry, store)
    runner = Runner(plan, store, registry)
    try:
        report = run_trial(runner, source=source or "auto", send=send)
    finally:
        runner.close()
    if as_json:
        click.echo(json.dumps({"recipe": report.recipe, "source": report.source,
                               "event": report.event, "ok": report.ok,
                               "steps": [{"step": s.label, "action": s.action,
                                          "status": s.status, "request": s.request,
                                          "error": s.error, "fields": [
                                              {"field": f.field, "from": f.source,
                                               "value": f.value} for f in s.fields]}
                                         for s in report.steps]}, indent=2, default=str))
    else:
        _print_trial(report, send)
    if not report.ok:
        sys.exit(EXIT_BAD_INPUT)


def _print_trial(report: Any, send: bool) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{_esc(report.recipe)}[/]: testing with one {report.source} event")
    con.print(_esc(json.dumps(report.event, indent=2, default=str)[:2000]))
    for s in report.steps:
        con.print(f"\n[bold]{_esc(s.label)}[/] {s.action}: {s.status}")
        if s.error:
            con.print(f"[red]{_esc(s.error)}[/]")
            continue
        if s.fields:
            table = Table("input field", "mapped from", "value")
            for f in s.fields:
                table.add_row(_esc(f.field), _esc(f.source),
                              _esc(json.dumps(f.value, default=str)))
            con.print(table)
        if s.request:
            con.print(_esc(f"{s.request['method']} {s.request['url']}"))
            body = s.request.get("json", s.request.get("form"))
            if body is not None:
                con.print(_esc(json.dumps(body, indent=2, default=str)))
    con.print("\n" + ("requests were sent" if send else
                      "nothing was sent (use --send for a real test transaction)"))


# ---------------------------------------------------------------------------- runs
@cli.group()
def runs() -> None:
    """Past runs, their events and step results; retry failed events."""


@runs.command("list")
@click.option("--recipe", help="Only runs of this recipe (by name).")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_list(recipe: str | None, limit: int, as_json: bool) -> None:
    """List recent runs."""
    records = _store().list_runs(limit=limit, recipe=recipe)
    rows = [{"id": r.id, "recipe": r.recipe, "mode": r.mode, "status": r.status,
             "started_at": r.started_at.isoformat(timespec="seconds"),
             "events_seen": r.events_seen, "events_new": r.events_new,
             "events_failed": r.events_failed, "requests": r.requests_made} for r in records]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(caption="a run id may be shortened to its first 8 characters")
    table.add_column("run", no_wrap=True)
    table.add_column("recipe", overflow="fold", min_width=20)
    for column in ("status", "started", "new/failed/seen", "requests"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        status = r["status"] if r["mode"] == "once" else f"{r['status']} ({r['mode']})"
        table.add_row(r["id"][:8], r["recipe"], status,
                      r["started_at"][5:16].replace("T", " "),
                      f"{r['events_new']}/{r['events_failed']}/{r['events_seen']}",
                      str(r["requests"]))
    _console().print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """Show a run with its events and step results."""
    from .errors import ConfigError

    record = _store().get_run(run_id)
    if record is None:
        raise ConfigError(f"no run '{run_id}'", hint="`splice runs list` shows recent runs")
    data = {"id": record.id, "recipe": record.recipe, "path": record.recipe_path,
            "mode": record.mode, "status": record.status, "error": record.error,
            "events": [{"id": e.id, "key": e.key, "status": e.status, "attempts": e.attempts,
                        "error": e.last_error} for e in record.events],
            "steps": [{"event": s.event_id, "step": s.step_id or s.step_index,
                       "item": s.item_index, "status": s.status, "attempts": s.attempts,
                       "request": s.request, "error": s.error} for s in record.step_results]}
    click.echo(json.dumps(data, indent=2, default=str) if as_json else
               _human_run(data))


def _human_run(data: dict[str, Any]) -> str:
    lines = [f"run {data['id']} of '{data['recipe']}' ({data['mode']}): {data['status']}"]
    if data["error"]:
        lines.append(f"  error: {data['error']}")
    for e in data["events"]:
        lines.append(f"  event {e['id']} {e['key']}: {e['status']} (attempts {e['attempts']})"
                     + (f" - {e['error']}" if e["error"] else ""))
    for s in data["steps"]:
        req = s["request"] or {}
        lines.append(f"    step {s['step']}" + (f"[{s['item']}]" if s["item"] >= 0 else "") +
                     f": {s['status']} {req.get('method', '')} {req.get('url', '')}" +
                     (f" - {s['error']}" if s["error"] else ""))
    return "\n".join(lines)


@runs.command("retry")
@click.argument("run_id", required=False)
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False),
              help="Recipe file (default: the one the run used).")
@click.option("--all", "all_failed", is_flag=True, help="Retry every failed event of the recipe.")
@click.pass_context
@handle_errors
def runs_retry(ctx: click.Context, run_id: str | None, recipe_path: str | None,
               all_failed: bool) -> None:
    """Retry the failed events of RUN_ID (steps that succeeded are not sent again)."""
    from .engine import Runner
    from .errors import ConfigError, InputError

    store = _store()
    record = None
    if run_id:
        record = store.get_run(run_id)
        if record is None:
            raise ConfigError(f"no run '{run_id}'", hint="`splice runs list` shows recent runs")
        recipe_path = recipe_path or record.recipe_path
    if not recipe_path:
        raise InputError("give a RUN_ID or --recipe")
    registry = _registry()
    plan = _load_plan(recipe_path, registry, store)
    failed = store.failed_events(plan.recipe.name)
    if record is not None and not all_failed:
        ids = {e.id for e in record.events}
        failed = [e for e in failed if e.id in ids]
    if not failed:
        click.echo("nothing to retry")
        return
    runner = Runner(plan, store, registry, verbose=ctx.obj.get("verbose", False))
    report = runner.retry(failed)
    runner.close()
    _print_report(report, False)
    if not report.ok:
        sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------------------- plugins
@cli.command()
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def plugins(as_json: bool) -> None:
    """List loaded plugins, their versions and hooks (and any that failed to load)."""
    from .plugins import plugin_infos

    registry = _registry()
    infos = plugin_infos()
    rows: list[dict[str, Any]] = [
        {"name": i.name, "version": i.version, "hooks": i.hooks, "default": i.default}
        for i in infos]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": [
            {"plugin": f.plugin, "reason": f.reason} for f in registry.failures]}, indent=2))
        return
    from rich.table import Table

    table = Table("plugin", "version", "hooks")
    for r in rows:
        table.add_row(r["name"] + (" (built-in)" if r["default"] else ""),
                      r["version"] or "-", ", ".join(r["hooks"]))
    _console().print(table)


def main() -> None:
    cli(prog_name="splice")


from . import cli_connections  # noqa: E402  (attaches connect, connections, sandbox)

cli_connections.attach(cli)

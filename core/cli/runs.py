"""``splice runs ...``: the run ledger, read and retried."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .common import (
    EXIT_FAILED,
    console,
    handle_errors,
    load_plan,
    load_registry,
    open_store,
    print_report,
)


# ---------------------------------------------------------------------------- runs
@click.group()
def runs() -> None:
    """Past runs, their events and step results; retry failed events."""


@runs.command("list")
@click.option("--recipe", help="Only runs of this recipe (by name).")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_list(recipe: str | None, limit: int, as_json: bool) -> None:
    """List recent runs."""
    records = open_store().list_runs(limit=limit, recipe=recipe)
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
    console().print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """Show a run with its events and step results."""
    from ..errors import ConfigError

    record = open_store().get_run(run_id)
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
    from ..errors import ConfigError, InputError
    from ..run.runner import Runner

    store = open_store()
    record = None
    if run_id:
        record = store.get_run(run_id)
        if record is None:
            raise ConfigError(f"no run '{run_id}'", hint="`splice runs list` shows recent runs")
        recipe_path = recipe_path or record.recipe_path
    if not recipe_path:
        raise InputError("give a RUN_ID or --recipe")
    registry = load_registry()
    plan = load_plan(recipe_path, registry, store)
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
    print_report(report, False)
    if not report.ok:
        sys.exit(EXIT_FAILED)



"""``splice runs ...``: the run ledger read, failed events retried, dead letters listed and
requeued."""

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
from .tables import Column, print_table


# ---------------------------------------------------------------------------- runs
@click.group()
def runs() -> None:
    """Past runs, their events and step results; retry failed events; dead letters."""


@runs.command("list")
@click.option("--recipe", help="Only runs of this recipe (by name).")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--tsv", is_flag=True, help="Tab-separated columns (for scripts).")
@handle_errors
def runs_list(recipe: str | None, limit: int, as_json: bool, tsv: bool) -> None:
    """List recent runs."""
    records = open_store().list_runs(limit=limit, recipe=recipe)
    rows = [{"id": r.id, "recipe": r.recipe, "mode": r.mode, "status": r.status,
             "started_at": r.started_at.isoformat(timespec="seconds"),
             "events_seen": r.events_seen, "events_new": r.events_new,
             "events_failed": r.events_failed, "requests": r.requests_made} for r in records]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    terminal = sys.stdout.isatty() and not tsv
    table = []
    for r in rows:
        status = r["status"] if r["mode"] == "once" else f"{r['status']} ({r['mode']})"
        table.append([r["id"][:8] if terminal else r["id"], r["recipe"], status,
                      r["started_at"][5:16].replace("T", " ") if terminal else r["started_at"],
                      f"{r['events_new']}/{r['events_failed']}/{r['events_seen']}",
                      str(r["requests"])])
    print_table([Column("run", fixed=True), Column("recipe"), Column("status"),
                 Column("started", fixed=True), Column("new/failed/seen", fixed=True),
                 Column("requests", fixed=True)], table, tsv=tsv,
                caption="a run id may be shortened to its first 8 characters"
                if terminal else None)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """Show a run: each event with its steps, their requests and outputs (secrets redacted)."""
    from ..errors import ConfigError

    record = open_store().get_run(run_id)
    if record is None:
        raise ConfigError(f"no run '{run_id}'", hint="`splice runs list` shows recent runs")
    steps: dict[int, list[dict[str, Any]]] = {}
    for s in record.step_results:
        steps.setdefault(s.event_id, []).append(
            {"step": s.step_id or s.step_index, "item": s.item_index, "status": s.status,
             "attempts": s.attempts, "request": s.request, "output": s.output,
             "error": s.error})
    data = {"id": record.id, "recipe": record.recipe, "path": record.recipe_path,
            "mode": record.mode, "status": record.status, "error": record.error,
            "started_at": record.started_at.isoformat(timespec="seconds"),
            "events": [{"id": e.id, "key": e.key, "status": e.status, "attempts": e.attempts,
                        "error": e.last_error, "error_class": e.error_class,
                        "next_attempt_at": e.next_attempt_at.isoformat(timespec="seconds")
                        if e.next_attempt_at else None,
                        "steps": steps.get(e.id, [])} for e in record.events]}
    if as_json:  # the flat step list as before, each naming its event
        data["steps"] = [{"event": event_id, **step} for event_id, group in steps.items()
                         for step in group]
    click.echo(json.dumps(data, indent=2, default=str) if as_json else _human_run(data))


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))


def _human_run(data: dict[str, Any]) -> str:
    lines = [f"run {data['id']} of '{data['recipe']}' ({data['mode']}, started "
             f"{data['started_at']}): {data['status']}"]
    if data["error"]:
        lines += [f"  error: {line}" for line in data["error"].splitlines()[:10]]
    for e in data["events"]:
        extra = f", {e['error_class']} error" if e["error_class"] else ""
        if e["next_attempt_at"] and e["status"] == "failed":
            extra += f", retried from {e['next_attempt_at']}"
        lines.append(f"  event {e['id']} {e['key']}: {e['status']} (attempts "
                     f"{e['attempts']}{extra})")
        if e["error"]:
            lines += [f"    error: {line}" for line in e["error"].splitlines()]
        for s in e["steps"]:
            req = s["request"] or {}
            item = f"[{s['item']}]" if s["item"] >= 0 else ""
            tries = f", {s['attempts']} attempts" if s["attempts"] > 1 else ""
            lines.append(f"    step {s['step']}{item}: {s['status']}{tries} "
                         f"{req.get('method', '')} {req.get('url', '')}".rstrip())
            for name in ("query", "json", "form"):
                if req.get(name) is not None:
                    lines.append(f"      input:  {_compact(req[name])}")
            if s["output"] is not None:
                lines.append(f"      output: {_compact(s['output'])}")
            if s["error"]:
                lines.append(f"      error:  {s['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- retries


@runs.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False),
              help="Recipe file (default: the one the run used).")
@click.option("--all", "all_failed", is_flag=True, help="Retry every failed event of the recipe.")
@click.option("--dead", is_flag=True,
              help="Requeue dead letters (all, or the event IDS given): the next `splice run` "
                   "of their recipe sends them.")
@click.option("--wait", is_flag=True, help="Wait while another run of the recipe holds it.")
@click.pass_context
@handle_errors
def runs_retry(ctx: click.Context, ids: tuple[str, ...], recipe_path: str | None,
               all_failed: bool, dead: bool, wait: bool) -> None:
    """Retry the failed events of run IDS[0] now (steps that succeeded are not sent again),
    or with --dead requeue dead letters (event IDS, or all of them)."""
    from ..errors import ConfigError, InputError
    from ..model.recipe import load_recipe
    from ..run.runner import Runner

    store = open_store()
    if dead:
        recipe_id = load_recipe(recipe_path).id if recipe_path else None
        event_ids = [_event_id(i) for i in ids] if ids else None
        requeued = store.requeue_dead(event_ids, recipe=recipe_id)
        if not requeued:
            raise ConfigError("no such dead letter" if ids else "there are no dead letters",
                              hint="`splice runs dead` lists them")
        click.echo(f"requeued {len(requeued)} dead letter(s) (event "
                   f"{', '.join(map(str, requeued))}): the next `splice run` of their recipe "
                   "sends them")
        return
    if len(ids) > 1:
        raise InputError("give one RUN_ID (or --dead with event ids)")
    record = None
    if ids:
        record = store.get_run(ids[0])
        if record is None:
            raise ConfigError(f"no run '{ids[0]}'", hint="`splice runs list` shows recent runs")
        recipe_path = recipe_path or record.recipe_path
    if not recipe_path:
        raise InputError("give a RUN_ID or --recipe")
    registry = load_registry()
    plan = load_plan(recipe_path, registry, store)
    failed = store.failed_events(plan.recipe.id)
    if record is not None and not all_failed:
        wanted = {e.id for e in record.events}
        failed = [e for e in failed if e.id in wanted]
    if not failed:
        click.echo("nothing to retry")
        return
    runner = Runner(plan, store, registry, verbose=ctx.obj.get("verbose", False))
    try:
        report = runner.retry([e.id for e in failed], wait=wait, on_wait=_waiting)
    finally:
        runner.close()
    print_report(report, False)
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _waiting(info: Any) -> None:
    console(stderr=True).print(f"waiting: the recipe is running ({info.describe()})")


def _event_id(text: str) -> int:
    from ..errors import InputError

    try:
        return int(text)
    except ValueError:
        raise InputError(f"{text!r} is not an event id",
                         hint="`splice runs dead` lists the ids of dead letters") from None


@runs.command("dead")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False),
              help="Only the dead letters of this recipe file.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--tsv", is_flag=True, help="Tab-separated columns (for scripts).")
@handle_errors
def runs_dead(recipe_path: str | None, as_json: bool, tsv: bool) -> None:
    """List dead letters: events splice gave up on, with their last error and its fix."""
    from ..model.recipe import load_recipe

    recipe_id = load_recipe(recipe_path).id if recipe_path else None
    letters = open_store().dead_letters(recipe_id)
    rows = [{"event": d.event_id, "recipe": d.recipe, "trigger": d.trigger, "key": d.key,
             "error_class": d.error_class, "attempts": d.attempts,
             "since": d.created_at.isoformat(timespec="seconds"), "reason": d.reason}
            for d in letters]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no dead letters")
        return
    print_table([Column("event", fixed=True), Column("recipe"), Column("key"),
                 Column("class", fixed=True), Column("tries", fixed=True), Column("error")],
                [[str(r["event"]), r["recipe"], r["key"] or "", r["error_class"] or "-",
                  str(r["attempts"]), (r["reason"] or "").replace("\n  ", " ")]
                 for r in rows], tsv=tsv)
    if not tsv:
        console(stderr=True).print(
            "requeue with: splice runs retry --dead [EVENT...] (the next `splice run` sends "
            "them)")

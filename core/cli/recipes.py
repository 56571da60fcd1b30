"""``splice validate``, ``run``, ``test`` and ``demo``: recipes checked, rehearsed and run."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..errors import DocumentError
from .common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    DryRunStream,
    connection_state,
    console,
    esc,
    handle_errors,
    load_plan,
    load_registry,
    open_store,
    print_report,
)


@click.command()
@click.argument("recipes", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("--skip-connections", is_flag=True,
              help="Do not check connections and scopes (e.g. in CI without credentials).")
@click.option("--budget", is_flag=True,
              help="Also print the request budget plan: per connection and rate-limit key, "
                   "the requests each recipe's polls cost (measured from its last runs, else "
                   "estimated) against the manifest's declared budgets, with a suggestion. "
                   "Without RECIPES: the enabled registered recipes (what `splice serve` runs, "
                   "the dashboard's /budget page).")
@click.option("--json", "as_json", is_flag=True, help="With --budget: the plan as JSON.")
@handle_errors
def validate(recipes: tuple[str, ...], skip_connections: bool, budget: bool,
             as_json: bool) -> None:
    """Check recipes without running them.

    Reports every problem as FILE:LINE:COLUMN: PATH: MESSAGE — unknown connectors, actions,
    connections or scopes, templates that do not compile, trigger fields that do not exist,
    values that do not fit the action's input.

    With --budget, prints what the recipes' polls cost against each API's declared request
    budgets (e.g. HighLevel's 100 per 10 s and 200,000 per day per location), and a longer
    interval when they use more than 80% of a window.
    """
    from ..errors import InputError

    if not recipes and not budget:
        raise InputError("give at least one RECIPE file (or --budget for the registered ones)")
    if as_json and not budget:
        raise InputError("--json goes with --budget")
    registry = load_registry()
    # --budget reads the run ledger too (the store); without it the connections are all
    # validate reads, straight from the state file when it is current
    store = open_store() if budget and not skip_connections else None
    state = None if skip_connections else connection_state(store)
    problems = []
    plans = []
    for path in recipes:
        try:
            plan = load_plan(path, registry, None, state=state)
            plans.append((plan.recipe.id, plan.recipe.name, plan))
            if not as_json:
                click.echo(f"{path}: ok")
        except DocumentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DocumentError(problems)
    if budget:
        _print_budget(registry, store if store is not None else open_store(), plans, as_json)


def _print_budget(registry: Any, store: Any, plans: list[Any], as_json: bool) -> None:
    from ..run.budget import every_text, plan_budget

    if not plans:
        from ..serve.book import RecipeBook

        book = RecipeBook(store, registry)
        book.refresh()
        plans = [(r.id, r.name, r.plan) for r in book.enabled() if r.plan is not None]
    result = plan_budget(store, registry, plans)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    if not result.keys:
        click.echo("budget: no recipe polls an API that declares a request budget")
    for kb in result.keys:
        click.echo(f"\nbudget {kb.key} (connection {', '.join(kb.connections)})")
        for w in kb.windows:
            click.echo(f"  {str(w.window):<18} {w.used:>10.1f} requests  {w.percent:>6g}%")
        for c in kb.costs:
            every = f"every {every_text(c.every)}" if c.every else "per webhook event"
            click.echo(f"  - {c.name} ({c.connection}): {c.per_poll:.1f} request(s) a poll, "
                       f"{every}; {c.pages:.1f} page(s) + {c.events:.1f} event(s) x "
                       f"{c.step_calls:.1f} step request(s); {c.source}")
        click.echo(f"  {kb.suggestion}")
    if result.over:
        console(stderr=True).print("[yellow]warning[/]: a request budget is over its limit")


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--once", "mode", flag_value="once", default=True,
              help="Poll once and run new events (default).")
@click.option("--watch", "mode", flag_value="watch",
              help="Poll on the recipe's interval until Ctrl-C.")
@click.option("--dry-run", is_flag=True,
              help="Render and validate; print each request that would be sent as it is "
                   "planned; send nothing and change no state.")
@click.option("--backfill", is_flag=True,
              help="On the first run, fire on existing records instead of only remembering them.")
@click.option("--reset", is_flag=True,
              help="Forget the trigger's seen records, cursor and event history first (with "
                   "--backfill: process every existing record again).")
@click.option("--wait", is_flag=True,
              help="If another run of the recipe is going on, wait for it instead of exiting.")
@click.option("--max-pages", type=click.IntRange(min=1),
              help="Read at most N pages of trigger records in this poll [default: the "
                   "trigger's max_pages, else 1000]; the next poll continues from there.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, recipe: str, mode: str, dry_run: bool, backfill: bool, reset: bool,
        wait: bool, max_pages: int | None, as_json: bool) -> None:
    """Run RECIPE: retry its failed events that are due, poll its trigger, dedupe, and run the
    steps of every new event.

    The first run of a recipe remembers the records that already exist and fires on nothing
    (unless --backfill); later runs fire on new or changed records only. A failed event is
    retried by a later run after a back-off, and dead-lettered after its last attempt (see
    `splice runs dead`). One run of a recipe at a time: a second one exits saying which run
    holds it (or waits, with --wait).
    """
    from ..run.runner import Runner

    registry = load_registry()
    store = open_store()
    plan = load_plan(recipe, registry, store)
    if not plan.polls:
        from ..errors import InputError

        raise InputError(f"{recipe}: '{plan.trigger.ref}' is a webhook trigger: its events "
                         "arrive at `splice serve`",
                         hint=f"splice recipes add {recipe} && splice serve")
    _check_state(store, plan, recipe, backfill=backfill, reset=reset, dry_run=dry_run)
    verbose = ctx.obj.get("verbose", False)
    interactive = sys.stderr.isatty() and not as_json
    while True:
        runner = Runner(plan, store, registry, verbose=verbose)
        stream = DryRunStream(as_json) if dry_run else None
        runner.on_call = stream
        try:
            report = _with_progress(runner, interactive, plan, mode="dry_run" if dry_run else
                                    ("watch" if mode == "watch" else "once"),
                                    backfill=backfill, max_pages=max_pages, wait=wait,
                                    on_wait=_waiting, reset=reset)
        finally:
            runner.close()
        print_report(report, as_json, stream)
        if mode != "watch" or dry_run:
            break
        try:
            console(stderr=True).print(f"next poll in {plan.recipe.every:.0f}s (Ctrl-C stops)")
            time.sleep(plan.recipe.every)
        except KeyboardInterrupt:
            console(stderr=True).print("stopped")
            break
        backfill = reset = False
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _waiting(info: Any) -> None:
    console(stderr=True).print(f"waiting: this recipe is already running ({info.describe()})")


def _check_state(store: Any, plan: Any, path: str, *, backfill: bool, reset: bool,
                 dry_run: bool) -> None:
    """--reset and --backfill against the state the trigger already has; warn when another
    recipe file shares this recipe's id."""
    from ..errors import InputError
    from ..store.ownership import claim_source

    recipe, trigger = plan.recipe.id, plan.trigger.ref
    if not dry_run:
        other = claim_source(store, recipe, trigger, plan.recipe.source)
        if other is not None:
            console(stderr=True).print(
                f"[yellow]warning[/]: {esc(path)} shares the recipe id '{esc(recipe)}' (and "
                f"its state: seen records, cursor, events) with {esc(other)}; give one of them "
                "its own `id:`")
    if reset:
        if dry_run:
            raise InputError("--reset changes state; it cannot be combined with --dry-run")
        return  # the run resets under the recipe's lease
    if backfill and store.trigger_initialized(recipe, trigger):
        seen = store.seen_count(recipe, trigger)
        raise InputError(
            f"--backfill only applies to a recipe's first run; '{plan.recipe.name}' already "
            f"has state ({seen} record(s) seen), so nothing would be backfilled",
            hint=f"to process every existing record again: splice run {path} --backfill "
                 "--reset (writes carry the same idempotency keys as before)")


def _with_progress(runner: Any, interactive: bool, plan: Any, **kwargs: Any) -> Any:
    if not interactive or kwargs.get("wait"):
        return runner.run(**kwargs)
    from rich.status import Status

    with Status(f"polling {plan.trigger.ref}...", console=console(stderr=True)) as status:
        runner.progress = lambda message: status.update(f"polling {plan.trigger.ref}: "
                                                        f"{message}")
        return runner.run(**kwargs)





@click.command()
@click.option("--keep", is_flag=True, help="Leave the sandboxes running for exploring "
                                           "(Ctrl-C stops them).")
@handle_errors
def demo(keep: bool) -> None:
    """Run the main job end to end on the built-in sandboxes, with no account anywhere.

    Starts the HighLevel and Invoice2go sandboxes on free loopback ports, connects to both
    through the real OAuth flow (approved automatically), starts `splice serve` and creates a
    HighLevel user whose signed webhook makes an Invoice2go client, runs every recipe in
    recipes/ and prints what happened. Run it again: it finds nothing new and sends nothing.
    """
    from ..run.demo import run_demo
    from ..serve.demo import webhook_leg

    summary = run_demo(keep=keep, out=click.echo, legs=(webhook_leg,))
    if not getattr(summary, "ok", True):
        sys.exit(EXIT_FAILED)


@click.command("test")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=str))
@click.option("--live", "source", flag_value="live",
              help="Use one real record fetched from the trigger.")
@click.option("--sample", "source", flag_value="sample",
              help="Use the connector's declared sample record.")
@click.option("--event", "event_id", type=int, metavar="ID",
              help="Use a stored event of this recipe (ids: `splice runs show RUN`).")
@click.option("--send", is_flag=True, help="Really send the requests (test transaction).")
@click.option("--verify", is_flag=True,
              help="With --send: read every written record back through the get operation "
                   "its connector declares and compare it field by field with what was "
                   "sent; exit 1 when a field differs or is missing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def test_recipe(recipe: str, source: str | None, event_id: int | None, send: bool,
                verify: bool, as_json: bool) -> None:
    """Try RECIPE on one event and show every request next to the fields it was mapped from.

    The event is one real record from the trigger (default when the connection works), the
    connector's sample (--sample) or a stored event (--event ID). Every step is rendered and
    checked against its action's input schema. Nothing is sent unless --send; --send --verify
    then reads back what each write stored and prints the differences (a verified test
    transaction).
    """
    from ..run.runner import Runner
    from ..run.trial import run_trial

    if verify and not send:
        raise click.UsageError("--verify reads back what the test transaction wrote; add "
                               "--send")
    if event_id is not None and source is not None:
        raise click.UsageError("give either --event, --live or --sample")
    registry = load_registry()
    store = open_store()
    plan = load_plan(recipe, registry, store)
    runner = Runner(plan, store, registry)
    checked = None
    try:
        if verify:
            from ..run.verify import run_verified

            checked = run_verified(runner, source=source or "auto", event_id=event_id)
            report = checked.trial
        else:
            report = run_trial(runner, source=source or "auto", send=send, event_id=event_id)
    finally:
        runner.close()
    if as_json:
        data = trial_json(report)
        if checked is not None:
            data.update(verified=checked.ok, verdict=checked.verdict,
                        checks=[c.to_json() for c in checked.checks])
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        _print_trial(report, send)
        if checked is not None:
            _print_checks(checked)
    if not report.ok:
        sys.exit(EXIT_BAD_INPUT)
    if checked is not None and not checked.ok:
        sys.exit(EXIT_FAILED)


def trial_json(report: Any) -> dict[str, Any]:
    """A test transaction as JSON (``splice test --json``): the event and each step's
    fields, request (headers redacted) and, when sent, the response."""
    from ..secrets import redact_data

    return {"recipe": report.recipe, "source": report.source, "event": report.event,
            "ok": report.ok,
            "steps": [{"step": s.label, "action": s.action, "status": s.status,
                       "request": s.request, "error": s.error,
                       "response": redact_data(s.output) if s.status == "sent" else None,
                       "fields": [{"field": f.field, "from": f.source, "value": f.value}
                                  for f in s.fields]}
                      for s in report.steps]}


def _print_checks(checked: Any) -> None:
    from rich.table import Table

    con = console()
    con.print("\n[bold]read back[/]")
    for c in checked.checks:
        con.print(f"\n[bold]{esc(c.step)}[/] {c.action} -> {esc(c.verify or '-')}: "
                  f"{c.status}")
        if c.error:
            con.print(f"[{'yellow' if c.status == 'unverified' else 'red'}]{esc(c.error)}[/]")
        if c.fields:
            table = Table("field", "sent", "stored", "")
            for f in c.fields:
                mark = {"equal": "[green]equal[/]", "differs": "[red]differs[/]",
                        "missing": "[red]missing[/]"}[f.status]
                table.add_row(esc(f.field), esc(json.dumps(f.sent, default=str)),
                              esc(json.dumps(f.stored, default=str)
                                  if f.status != "missing" else "-"), mark)
            con.print(table)
    con.print(f"\n{'[green]' if checked.ok else '[red]'}{checked.verdict}[/]")


def _print_trial(report: Any, send: bool) -> None:
    from rich.table import Table

    con = console()
    con.print(f"[bold]{esc(report.recipe)}[/]: testing with one {report.source} event")
    con.print(esc(json.dumps(report.event, indent=2, default=str)[:2000]))
    for s in report.steps:
        con.print(f"\n[bold]{esc(s.label)}[/] {s.action}: {s.status}")
        if s.error:
            con.print(f"[red]{esc(s.error)}[/]")
            continue
        if s.fields:
            table = Table("input field", "mapped from", "value")
            for f in s.fields:
                table.add_row(esc(f.field), esc(f.source),
                              esc(json.dumps(f.value, default=str)))
            con.print(table)
        if s.request:
            con.print(esc(f"{s.request['method']} {s.request['url']}"))
            body = s.request.get("json", s.request.get("form"))
            if body is not None:
                con.print(esc(json.dumps(body, indent=2, default=str)))
    con.print("\n" + ("requests were sent" if send else
                      "nothing was sent (use --send for a real test transaction)"))



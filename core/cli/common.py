"""What every command group shares: consoles, errors -> exit codes, the registry and store.

Exit codes: 0 ok, 1 a run or request failed, 2 bad input (recipe, manifest, option, config).
A storage fault (disk full, read-only home, locked or corrupt database) is one line naming
``$SPLICE_HOME`` or the database URL, exit 1 or 2 (:mod:`splice.store.faults`), even when it
surfaces outside the store as a raw ``OSError`` or driver error.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..errors import DocumentError, SpliceError

if TYPE_CHECKING:
    from ..store.connection_state import ConnectionState

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(exc: SpliceError) -> None:
    err = console(stderr=True)
    if isinstance(exc, DocumentError):
        for problem in exc.problems:
            err.print(f"[bold red]error[/]: {esc(str(problem))}")
        err.print(f"{len(exc.problems)} problem(s) found")
    else:
        err.print(f"[bold red]error[/]: {esc(str(exc))}")
    sys.exit(exc.exit_code)


def esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn splice errors into a message and an exit code (never a traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except SpliceError as exc:
            warn_failures()
            fail(exc)
        except Exception as exc:  # a storage fault outside the store: one line, no traceback
            from ..store.faults import storage_error

            fault = storage_error(exc)
            if fault is None:
                raise
            warn_failures()
            fail(fault)
        warn_failures()
        return result
    return wrapper


def setup_logging(verbose: bool) -> None:
    from ..secrets import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("splice")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False


_LOADED: list[Any] = []  # the registry, once a command loaded it
_WARNED: set[str] = set()


def load_registry() -> Any:
    """The plugin registry. Connector manifests are checked when a command first uses them
    (only those it touches); plugin failures are printed as warnings as they are found."""
    from ..plugins import get_registry

    registry = get_registry()
    if not _LOADED or _LOADED[0] is not registry:  # (tests rebuild the registry)
        _LOADED[:] = [registry]
        _WARNED.clear()
    warn_failures()
    return registry


def warn_failures() -> None:
    """Print, once each, the plugin failures found so far (a plugin that did not import, a
    manifest that did not pass its checks)."""
    for registry in _LOADED:
        for failure in registry.failures:
            text = str(failure)
            if text not in _WARNED:
                _WARNED.add(text)
                console(stderr=True).print(f"[yellow]warning[/]: {esc(text)}")


def open_store() -> Any:
    from ..store.database import Store

    return Store.open()


def template_engine(registry: Any) -> Any:
    from ..mapping.templates import TemplateEngine

    return TemplateEngine(registry.filters)




def connection_state(store: Any | None = None) -> ConnectionState:
    """Every connection and the endpoints disabled per connection: from ``store``; without one,
    from the SQLite state file when it is current (no SQLAlchemy import, nothing written),
    else from the store opened as :func:`open_store` does (creating, upgrading or refusing
    the database, or reporting its fault, as every command does)."""
    from ..store.connection_state import ConnectionState, read_connection_state

    if store is None:
        state = read_connection_state()
        if state is not None:
            return state
        store = open_store()
    from ..store.endpoints import disabled_by_connection

    return ConnectionState({c.name: c for c in store.list_connections()},
                           disabled_by_connection(store))


def load_plan(path: str, registry: Any, store: Any | None, *,
              state: ConnectionState | None = None) -> Any:
    """The checked plan of the recipe at ``path``; its connections are checked against
    ``state`` (a :func:`connection_state`), else the ``store``'s, else not at all."""
    from ..model.recipe import load_recipe
    from ..run.plan import build_plan

    recipe = load_recipe(path)
    if state is None and store is not None:
        state = connection_state(store)
    connections = None if state is None else state.connections
    disabled = None if state is None else state.disabled
    return build_plan(recipe, registry, template_engine(registry), connections=connections,
                      disabled=disabled)


class DryRunStream:
    """Prints each request of a ``--dry-run`` as soon as it is planned (a run over many
    events never holds them all); with ``--json`` the output is still one JSON object, its
    ``requests`` list first."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.count = 0

    def __call__(self, call: Any) -> None:
        request = {"event": call.event_key, "step": call.step, **call.request}
        if self.as_json:
            prefix = '{\n  "requests": [\n' if self.count == 0 else ",\n"
            text = json.dumps(request, indent=2, default=str).replace("\n", "\n    ")
            click.echo(f"{prefix}    {text}", nl=False)
        else:
            con = console()
            con.print(f"\n[bold]{esc(call.step)}[/] for event {esc(call.event_key)}")
            con.print(esc(json.dumps(call.request, indent=2, default=str)))
        self.count += 1


def print_report(report: Any, as_json: bool, stream: DryRunStream | None = None) -> None:
    data = {"run_id": report.run_id, "recipe": report.recipe, "mode": report.mode,
            "events_seen": report.events_seen, "events_new": report.events_new,
            "events_succeeded": report.events_succeeded, "events_failed": report.events_failed,
            "resumed": report.resumed, "retried": report.retried,
            "scheduled": report.scheduled, "dead": report.dead,
            "left_pending": report.left_pending, "waiting_retries": report.waiting_retries,
            "next_retry_at": report.next_retry_at.isoformat(timespec="seconds")
            if report.next_retry_at else None,
            "held_by": report.held_by,
            "seeded": report.seeded, "requests_made": report.requests_made,
            "errors": report.errors}
    if report.mode == "dry_run" and stream is None:
        data["requests"] = [{"event": c.event_key, "step": c.step, **c.request}
                            for c in report.calls]
    if as_json:
        if stream is not None:  # close the streamed list, then the rest of the object
            opened = '{\n  "requests": [' if stream.count == 0 else ""
            click.echo(f"{opened}\n  ],{json.dumps(data, indent=2, default=str)[1:]}")
            return
        click.echo(json.dumps(data, indent=2, default=str))
        return
    con = console()
    if report.held_by:
        con.print(f"{esc(report.recipe)}: already running ({esc(report.held_by)}); nothing "
                  "done (use --wait to wait for it)")
        return
    if report.mode == "dry_run":
        con.print(f"[bold]dry run[/]: {report.planned} request(s) would be sent "
                  "(nothing was sent, no state changed)")
        for c in report.calls:
            con.print(f"\n[bold]{esc(c.step)}[/] for event {esc(c.event_key)}")
            con.print(esc(json.dumps(c.request, indent=2, default=str)))
    if report.forgotten is not None:
        con.print(f"reset: forgot {report.forgotten} seen record(s), the cursor and the event "
                  "history")
    if report.seeded:
        con.print(f"first run: remembered {report.seeded} existing record(s) without firing "
                  "(use --backfill to process them)")
    if report.resumed or report.retried:
        con.print(f"finished {report.resumed} event(s) an earlier run left pending, retried "
                  f"{report.retried} failed event(s) that were due")
    con.print(f"{report.recipe}: {report.events_seen} record(s) seen, {report.events_new} new, "
              f"{report.events_succeeded} succeeded, {report.events_failed} failed, "
              f"{report.requests_made} request(s)" +
              (f" [dim](run {report.run_id})[/]" if report.run_id else ""))
    err = console(stderr=True)
    for e in report.errors:
        err.print(f"[bold red]error[/]: {esc(e)}")
    if report.left_pending:
        err.print(f"{report.left_pending} event(s) left pending: the next run resumes them")
    if report.dead:
        err.print(f"{report.dead} event(s) moved to the dead letters: `splice runs dead` lists "
                  "them, `splice runs retry --dead` requeues them")
    if report.waiting_retries and report.next_retry_at is not None:
        now = f"; to retry this run's now: splice runs retry {report.run_id}" \
            if report.scheduled else ""
        err.print(f"{report.waiting_retries} failed event(s) wait for a retry; the next is due "
                  f"{report.next_retry_at.strftime('%Y-%m-%d %H:%M:%S')} UTC (the first "
                  f"`splice run` from then retries it{now})")

"""What every command group shares: consoles, errors -> exit codes, the registry and store.

Exit codes: 0 ok, 1 a run or request failed, 2 bad input (recipe, manifest, option, config).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import DocumentError, SpliceError

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




def load_plan(path: str, registry: Any, store: Any | None) -> Any:
    from ..model.recipe import load_recipe
    from ..run.plan import build_plan

    recipe = load_recipe(path)
    connections = None
    if store is not None:
        connections = {c.name: c for c in store.list_connections()}
    return build_plan(recipe, registry, template_engine(registry), connections=connections)



def print_report(report: Any, as_json: bool) -> None:
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
    con = console()
    if report.mode == "dry_run":
        con.print(f"[bold]dry run[/]: {len(report.calls)} request(s) would be sent "
                  "(nothing was sent, no state changed)")
        for c in report.calls:
            con.print(f"\n[bold]{esc(c.step)}[/] for event {esc(c.event_key)}")
            con.print(esc(json.dumps(c.request, indent=2, default=str)))
    if report.seeded:
        con.print(f"first run: remembered {report.seeded} existing record(s) without firing "
                  "(use --backfill to process them)")
    con.print(f"{report.recipe}: {report.events_seen} record(s) seen, {report.events_new} new, "
              f"{report.events_succeeded} succeeded, {report.events_failed} failed, "
              f"{report.requests_made} request(s)" +
              (f" [dim](run {report.run_id})[/]" if report.run_id else ""))
    err = console(stderr=True)
    for e in report.errors:
        err.print(f"[bold red]error[/]: {esc(e)}")
    if report.events_failed:
        err.print(f"retry failed events with: splice runs retry {report.run_id}")

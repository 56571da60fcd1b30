"""The connector author's commands: ``splice connectors add|remove|check|new|coverage``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from .common import EXIT_BAD_INPUT, console, esc, handle_errors
from .connectors import connectors


def _manifest_files(path: Path) -> list[Path]:
    from ..plugins import MANIFEST_SUFFIXES

    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    return [path]


@connectors.command("add")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@handle_errors
def connectors_add(path: Path) -> None:
    """Load the manifest at PATH (a file, or every manifest in a directory) from now on,
    without packaging it. Kept in $SPLICE_HOME/connectors.json; SPLICE_CONNECTORS_PATH does
    the same for one shell."""
    from ..authoring.checks import check_file
    from ..plugins import added_paths, set_added_paths

    resolved = str(path.resolve())
    for file in _manifest_files(path):
        report = check_file(file)
        if report.errors:
            from ..errors import DocumentError

            raise DocumentError(report.errors)
    paths = added_paths()
    if resolved not in paths:
        set_added_paths([*paths, resolved])
    click.echo(f"added {resolved}; `splice connectors list` shows its connectors")


@connectors.command("remove")
@click.argument("path", type=click.Path(path_type=Path))
@handle_errors
def connectors_remove(path: Path) -> None:
    """Stop loading a manifest added with `splice connectors add`."""
    from ..plugins import added_paths, set_added_paths

    resolved = str(path.expanduser().resolve())
    paths = added_paths()
    if resolved not in paths:
        raise InputError(f"{resolved} was not added",
                         hint="`splice connectors list` shows where each connector comes from")
    set_added_paths([p for p in paths if p != resolved])
    click.echo(f"removed {resolved}")


@connectors.command("check")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path), metavar="PATH...")
@click.option("--strict", is_flag=True, help="Treat warnings (operations without a sample) "
                                             "as errors.")
@click.option("--add-samples", is_flag=True,
              help="First write a sample, generated from the output schema (and the examples "
                   "in it), into every operation that has none.")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@handle_errors
def connectors_check(paths: tuple[Path, ...], strict: bool, add_samples: bool,
                     as_json: bool) -> None:
    """Check connector manifests: every problem as FILE:LINE:COLUMN: PATH: MESSAGE.

    Beyond the meta-schema: path parameters, queries, samples against outputs (and that
    every operation has one), trigger keys, versions, filters and cursors against the
    record schema. Exit 2 when there are errors. --add-samples fills in missing samples
    (check them: they come from the schema's examples, not from the API).
    """
    from ..authoring.checks import check_file

    files = [f for p in paths for f in _manifest_files(p)]
    if add_samples:
        from ..authoring.samples import add_samples as write_samples

        for file in files:
            if not check_file(file).errors:
                added = write_samples(file)
                if added:
                    console(stderr=True).print(f"{file}: samples added to {len(added)} "
                                               f"operation(s): {esc(', '.join(added))}")
    reports = [check_file(f) for f in files]
    errors = [p for r in reports for p in r.errors]
    warnings = [p for r in reports for p in r.warnings]
    if strict:
        errors, warnings = errors + warnings, []
    if as_json:
        click.echo(json.dumps({"errors": [str(p) for p in errors],
                               "warnings": [str(p) for p in warnings],
                               "connectors": [r.connector.id for r in reports
                                              if r.connector is not None]}, indent=2))
    else:
        err = console(stderr=True)
        for problem in errors:
            err.print(f"[bold red]error[/]: {esc(str(problem))}")
        for problem in warnings:
            err.print(f"[yellow]warning[/]: {esc(str(problem))}")
        for report in reports:
            if report.connector is not None and not report.errors:
                c = report.connector
                click.echo(f"{report.path}: {c.id} ok: {len(c.operations)} operations, "
                           f"{len(c.triggers)} triggers"
                           + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
        if errors:
            err.print(f"{len(errors)} error(s), {len(warnings)} warning(s)")
    if errors:
        sys.exit(EXIT_BAD_INPUT)


@connectors.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the package [default: ./NAME].")
@handle_errors
def connectors_new(name: str, directory: Path | None) -> None:
    """Write a connector plugin package NAME: pyproject, module, manifest, sandbox and a
    conformance test that passes as written."""
    from ..authoring.scaffold import scaffold

    target = directory or Path(name)
    written = scaffold(name, target)
    for path in written:
        click.echo(f"  wrote {path}")
    click.echo(f"next: cd {target} && pip install -e . && pytest")


@connectors.command("coverage")
@click.argument("connector_id")
@click.option("--spec", "spec_dir", required=True,
              type=click.Path(exists=True, path_type=Path),
              help="An OpenAPI file or a directory of them (searched recursively).")
@click.option("--missing", is_flag=True, help="List only what the manifest lacks.")
@click.option("--all", "show_all", is_flag=True,
              help="Every spec file, not only those about the resources the manifest uses.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def connectors_coverage(connector_id: str, spec_dir: Path, missing: bool, show_all: bool,
                        as_json: bool) -> None:
    """Which operations of the official OpenAPI specs the connector's manifest has.

    Lists the operations of the spec files about the resources the manifest uses (--all:
    every file) with their scopes and the manifest operation that covers each, then the
    `splice connectors import-openapi` command that imports what is missing.
    """
    from ..authoring.coverage import coverage
    from .common import load_registry

    connector = load_registry().connector(connector_id)
    report = coverage(connector, spec_dir)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.table import Table

    shown = [r for r in report.rows if (show_all or r.related)
             and not (missing and r.operation)]
    related = [r for r in report.rows if r.related]
    table = Table(title=f"{connector.id}: {sum(1 for r in related if r.operation)} of "
                        f"{len(related)} operations of the related spec files",
                  title_justify="left")
    for column in ("spec", "method", "path", "scopes", "manifest"):
        table.add_column(column, overflow="fold")
    for row in shown:
        table.add_row(esc(row.spec), row.method, esc(row.path), esc(" ".join(row.scopes)),
                      row.operation or "[red]missing[/]")
    con = console()
    con.print(table)
    others = {r.spec for r in report.rows if not r.related}
    if others and not show_all:
        con.print(f"{len(others)} other spec files ({report.total - len(related)} operations) "
                  "are about other resources: --all lists them")
    for command in report.import_commands(related_only=not show_all):
        con.print(f"import the rest: {esc(command)}")
    extra: list[Any] = report.unmatched
    if extra:
        con.print(f"manifest operations in no spec: {esc(', '.join(extra))}")

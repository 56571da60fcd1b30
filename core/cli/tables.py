"""Tables for people and for pipes.

On a terminal a table fits the terminal's width (80 columns when it cannot tell): long values
such as ids and URLs are folded onto more lines, never cut, so whatever a person has to type
is there in full. When standard output is not a terminal (a pipe, a file, ``grep``) the table
is plain text: columns aligned with two spaces, one row a line, nothing cut or folded; with
``tsv`` the columns are separated by tabs. ``--json`` (in the commands) stays the format for
programs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

__all__ = ["Column", "print_table"]

DEFAULT_WIDTH = 80


@dataclass(frozen=True)
class Column:
    """A column: its header, and whether its values are short words (``fixed``: never
    folded) or long ones (folded on a terminal when the table is too wide)."""

    header: str
    fixed: bool = False
    style: str | None = None


def _plain(columns: Sequence[Column], rows: Sequence[Sequence[str]], tsv: bool) -> str:
    table = [[c.header for c in columns], *[[str(v) for v in row] for row in rows]]
    if tsv:
        return "\n".join("\t".join(v.replace("\t", " ") for v in row) for row in table)
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
                caption: str | None = None, tsv: bool = False, console: Any = None) -> None:
    """Print ``rows`` for a person (terminal) or a pipe (plain text or TSV)."""
    if console is None and (tsv or not sys.stdout.isatty()):
        click.echo(_plain(columns, rows, tsv))
        return
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console(highlight=False, soft_wrap=False)
        if console.width <= 0:  # pragma: no cover - unknown terminal
            console.width = DEFAULT_WIDTH
    table = Table(caption=caption, pad_edge=False, box=None, show_edge=False,
                  header_style="bold")
    for i, column in enumerate(columns):
        widest = max([len(column.header), *(len(str(row[i])) for row in rows)])
        table.add_column(column.header, overflow="fold", no_wrap=column.fixed,
                         style=column.style, min_width=widest if column.fixed else None)
    for row in rows:
        table.add_row(*(_escape(str(v)) for v in row))
    console.print(table)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

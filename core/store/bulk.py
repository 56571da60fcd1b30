"""Multi-row statements for SQLite's hot writes (a run's page claim and group commit).

``executemany`` binds and steps a statement once per row, and Python's ``sqlite3`` releases
and takes back the GIL around every step: a group of 100 events written that way is ~300
GIL hand-offs between the committer thread and the thread sending requests. One ``INSERT
... VALUES (...), (...)`` (or ``UPDATE ... FROM (VALUES ...)``) per chunk of rows is one step
(bench/NOTES.md, "Write").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: bound values per statement: SQLite 3.32+ allows 32,766, older builds 999
MAX_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: ``UPDATE ... FROM`` (SQLite 3.33+)
UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def values_sql(width: int, count: int) -> str:
    """``(?, ?), (?, ?)``: ``count`` rows of ``width`` parameters."""
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * count)


def row_statements(head: str, tail: str, rows: Sequence[tuple[Any, ...]],
                   first: tuple[Any, ...] = ()) -> list[tuple[str, tuple[Any, ...]]]:
    """``(head VALUES (...), (...) tail, params)`` over ``rows`` (tuples of one width): as few
    statements as the variable limit allows. ``first``: values bound before the rows' (as
    ``?1``, ``?2`` ... in ``head``)."""
    if not rows:
        return []
    width = len(rows[0])
    out = []
    for chunk in chunks(rows, max(1, (MAX_VARIABLES - len(first)) // width)):
        params = (*first, *(value for row in chunk for value in row))
        out.append((f"{head} VALUES {values_sql(width, len(chunk))} {tail}", params))
    return out


def execute_rows(execute: Callable[[str, tuple[Any, ...]], Any], head: str, tail: str,
                 rows: Sequence[tuple[Any, ...]]) -> int:
    """:func:`row_statements` executed; returns the rows changed (``rowcount``)."""
    return sum(max(execute(sql, params).rowcount, 0)
               for sql, params in row_statements(head, tail, rows))

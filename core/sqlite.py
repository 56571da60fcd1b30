"""SQLite settings shared by the state database and the rate-budget file."""

from __future__ import annotations

import sqlite3
import time
from typing import Any


def enable_wal(cursor: Any, attempts: int = 100, pause: float = 0.02) -> None:
    """Switch a database to WAL. Switching a new database needs it to itself, and SQLite
    answers "locked" at once (no busy wait) while another first connection holds it: retry
    briefly."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause)

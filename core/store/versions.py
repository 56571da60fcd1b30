"""The schema version each migration brings the state database to, in order.

A database is current when ``schema_version`` records exactly these. They are kept apart
from the migrations themselves so a reader that imports no SQLAlchemy
(:mod:`splice.store.connection_state`) can tell a current database from one that is behind;
:mod:`splice.store.migrations` refuses to import unless ``MIGRATIONS`` has exactly these
versions, so a new migration is added in both places or splice does not start.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSIONS"]

SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

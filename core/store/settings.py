"""The state database's settings from the environment: where it is (``SPLICE_DATABASE_URL``,
else the SQLite file in the splice home) and how long a transaction waits for another
process's lock (``SPLICE_DB_TIMEOUT``).

No SQLAlchemy here: :func:`sqlite_file` says which file a plain ``sqlite:///`` URL opens the
way SQLAlchemy's SQLite dialect does, so ``splice validate`` can read that file with the
standard library (:mod:`splice.store.connection_state`).
"""

from __future__ import annotations

import os

from ..secrets import home

__all__ = ["TIMEOUT_ENV", "URL_ENV", "busy_timeout", "database_url", "sqlite_file"]

URL_ENV = "SPLICE_DATABASE_URL"
TIMEOUT_ENV = "SPLICE_DB_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
_PLAIN_SQLITE = "sqlite:///"


def database_url(url: str | None = None) -> str:
    """``url``, else ``SPLICE_DATABASE_URL``, else ``sqlite:///<home>/splice.db``."""
    return url or os.environ.get(URL_ENV) or f"sqlite:///{home() / 'splice.db'}"


def sqlite_file(url: str) -> str | None:
    """The absolute path of the file a ``sqlite:///PATH`` URL opens, or None for any other
    URL: another backend or driver, an in-memory database, a query string (driver options,
    ``mode=...``) or percent-escapes. For the URLs it accepts this is the file SQLAlchemy
    opens: the path after ``sqlite:///`` as written, made absolute against the working
    directory."""
    if not url.startswith(_PLAIN_SQLITE):
        return None
    path = url[len(_PLAIN_SQLITE):]
    if path in ("", ":memory:") or any(c in path for c in "?%#"):
        return None
    return os.path.abspath(path)


def busy_timeout() -> float:
    """Seconds a write waits for another process's lock: ``$SPLICE_DB_TIMEOUT`` or 30."""
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT

"""The PostgreSQL the tests use: ``SPLICE_TEST_POSTGRES_URL``, else the project's default
server (``postgresql+psycopg://postgres@127.0.0.1:5432/test``) when it answers.

Each test gets a schema of its own (``search_path`` set in the URL), dropped afterwards, so
runs never see each other's tables. Without a server the tests skip and say how to start
one; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from .services import need

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START_HINT = ("start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
              "start` (trust auth, database `test`) or set SPLICE_TEST_POSTGRES_URL")


def base_url() -> str:
    return os.environ.get("SPLICE_TEST_POSTGRES_URL") or DEFAULT_URL


@functools.cache
def unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    url = sa.make_url(base_url())
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"PostgreSQL at {url.render_as_string(hide_password=True)} does not answer "
                f"({first[:120]}); {START_HINT}")
    finally:
        engine.dispose()
    return None


def require() -> None:
    """Skip (or, under CI=true, fail) the calling test when PostgreSQL is not available."""
    need(unavailable())


@contextmanager
def schema_url() -> Iterator[str]:
    """A database URL whose tables live in a new schema, dropped when the block ends."""
    require()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = sa.make_url(base_url())
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

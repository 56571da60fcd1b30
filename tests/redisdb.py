"""The Redis the tests use: ``SPLICE_TEST_REDIS_URL``, else the project's default server
(``redis://127.0.0.1:6379/0``) when it answers.

Each test gets a key prefix of its own (:func:`prefix`), and its keys are deleted afterwards,
so parallel runs never share a budget. Without a server the tests skip and say how to start
one; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from .services import need

DEFAULT_URL = "redis://127.0.0.1:6379/0"
START_HINT = ("start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
              "--appendonly no` or set SPLICE_TEST_REDIS_URL")


def url() -> str:
    return os.environ.get("SPLICE_TEST_REDIS_URL") or DEFAULT_URL


@functools.cache
def unavailable() -> str | None:
    """Why Redis cannot be used, or None when it answers."""
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (pip install -e '.[test]')"
    client = redis.Redis.from_url(url(), socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"Redis at {url()} does not answer ({type(exc).__name__}: {exc}); {START_HINT}"
    finally:
        client.close()
    return None


def require() -> None:
    """Skip (or, under CI=true, fail) the calling test when Redis is not available."""
    need(unavailable())


@contextmanager
def prefix() -> Iterator[str]:
    """A key prefix of this test's own (``splice-test-<hex>:``); its keys go at the end."""
    require()
    import redis

    name = f"splice-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield name
    finally:
        client = redis.Redis.from_url(url())
        try:
            keys = list(client.scan_iter(match=name + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

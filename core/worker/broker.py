"""The broker's address (``SPLICE_BROKER_URL``, ``redis://...``) and a check that it answers.

With no broker set, ``splice serve`` runs everything in its own process (the default). With
one, serve stores deliveries and sends them to the broker, and ``splice worker`` processes
run them. Only Redis is supported (``redis://`` or ``rediss://``).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import ConfigError

BROKER_ENV = "SPLICE_BROKER_URL"
START_HINT = ("start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
              "--save \"\" --appendonly no` and set SPLICE_BROKER_URL=redis://127.0.0.1:6379/0")


def broker_url(required: bool = False) -> str | None:
    """``$SPLICE_BROKER_URL`` checked for its form; None when unset (``required``: an
    error instead)."""
    raw = os.environ.get(BROKER_ENV, "").strip()
    if not raw:
        if required:
            raise ConfigError(f"{BROKER_ENV} is not set: workers need a Redis broker",
                              hint=START_HINT)
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"{BROKER_ENV} must be a redis:// URL (got scheme "
                          f"{parts.scheme or 'none'!r})",
                          hint="e.g. SPLICE_BROKER_URL=redis://127.0.0.1:6379/0")
    return raw


def describe(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port or 6379}"
    return f"{parts.scheme}://{host}{parts.path}"


def require_extra() -> None:
    """Celery and redis are an extra (``pip install 'splice[worker]'``): say so when absent."""
    for module in ("celery", "redis"):
        try:
            __import__(module)
        except ImportError:
            raise ConfigError(f"{module} is not installed: workers need the `worker` extra",
                              hint="pip install 'splice[worker]'") from None


def check_broker(url: str, timeout: float = 3.0) -> None:
    """Raise a :class:`ConfigError` saying so when the broker does not answer a PING (or
    the worker extra is not installed)."""
    require_extra()
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"the broker at {describe(url)} does not answer ({first[:120]})",
                          hint=START_HINT) from None
    finally:
        client.close()

"""Rate budgets shared by every process and host: in Redis, or in the PostgreSQL state database.

:func:`splice.http.ratelimit.limiter_for` picks where a connection's budgets live:

1. Redis, when ``SPLICE_REDIS_URL`` is set (or ``SPLICE_BROKER_URL`` is a ``redis://`` /
   ``rediss://`` URL): pyrate-limiter's ``RedisBucket`` (its Lua script counts every window
   and adds the request in one atomic step; splice's copy of the script counts slots stamped
   by a process whose clock is slightly ahead too), one sorted set per budget under the prefix
   ``SPLICE_REDIS_PREFIX`` (default ``splice:``);
2. else PostgreSQL, when the state database is PostgreSQL: pyrate-limiter's ``PostgresBucket``
   (one ``ratelimit___*`` table per budget in the state database's schema; the count-then-insert
   holds an ``EXCLUSIVE`` table lock, waited for rather than pyrate-limiter's ``NOWAIT``, so a
   busy budget queues instead of spinning);
3. else the SQLite budget file or memory (:mod:`splice.http.ratelimit`).

Besides the buckets each place keeps "blocked until" stamps: a 429 from the API (its
``Retry-After``) or a response saying the window is used up stops every process sending with
that budget key until then, not only the one that was told. Redis keeps them as keys that
expire by themselves; PostgreSQL in ``ratelimit___splice_blocks``.

Timestamps come from each process's clock: hosts sharing a budget need their clocks in sync
(NTP) to well within the shortest window.

Fail closed: when Redis or PostgreSQL cannot be reached, :class:`BudgetStoreDown` is raised
before anything is sent (the rate limiter turns it into ``BudgetExhausted``: the event stays
pending and the next run resumes it). Falling back to a per-process budget would let N
processes send N times the API's limit and earn a fleet-wide ban.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from pyrate_limiter import AbstractBucket, Rate, RateItem
from pyrate_limiter.buckets.postgres import PostgresBucket
from pyrate_limiter.buckets.redis_bucket import RedisBucket

from ..errors import ConfigError, HTTPError

log = logging.getLogger("splice.ratelimit")

REDIS_URL_ENV = "SPLICE_REDIS_URL"
BROKER_URL_ENV = "SPLICE_BROKER_URL"
PREFIX_ENV = "SPLICE_REDIS_PREFIX"
DEFAULT_PREFIX = "splice:"
DOWN_RETRY = 30.0  # seconds a run waits before trying again when the budget store is down

_BLOCK_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class BudgetStoreDown(HTTPError):
    """The shared rate budget (Redis or PostgreSQL) cannot be reached: nothing was sent."""

    def __init__(self, where: str, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        super().__init__(
            f"the shared rate budget in {where} cannot be reached ({type(exc).__name__}: "
            f"{first}); nothing was sent", status=503,
            hint="start it again (or fix the URL); splice never sends without the shared "
                 "budget, so other processes cannot push the API past its limit")


def redis_url() -> str | None:
    """``SPLICE_REDIS_URL``, else ``SPLICE_BROKER_URL`` when it is a Redis URL, else None."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    if url:
        return url
    broker = os.environ.get(BROKER_URL_ENV, "").strip()
    if broker.startswith(("redis://", "rediss://", "unix://")):
        return broker
    return None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def _hide_password(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy-style URL: show only the scheme
        return url.split("://", 1)[0] + "://..."


# --------------------------------------------------------------------------- Redis


class _RedisBucket(RedisBucket):
    """pyrate-limiter's Redis bucket, reloading its script after a Redis restart and
    reporting an unreachable Redis as :class:`BudgetStoreDown`."""

    owner: RedisBudgets

    def put(self, item: RateItem) -> bool:
        import redis

        for attempt in (1, 2):
            try:
                return bool(super().put(item))
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.script_hash = self.owner.call(
                    lambda: self.redis.script_load(_put_script()))
            except redis.exceptions.RedisError as exc:
                raise BudgetStoreDown(self.owner.where, exc) from None
        return False  # pragma: no cover

    def leak(self, current_timestamp: int | None = None) -> int:
        return int(self.owner.call(lambda: super(_RedisBucket, self).leak(current_timestamp)))


def _put_script() -> str:
    """pyrate-limiter's script, counting a window up to +inf instead of up to the caller's
    "now": with several processes, a slot taken by one whose clock reading is a little later
    must count too (counting to "now" let the 21st request of a 20 / s budget through)."""
    from pyrate_limiter.buckets.redis_bucket import LuaScript

    script = LuaScript.PUT_ITEM.replace("redis.call('ZCOUNT', bucket, window_start, now)",
                                        "redis.call('ZCOUNT', bucket, window_start, '+inf')")
    if script == LuaScript.PUT_ITEM:
        raise RuntimeError("pyrate-limiter's Redis script changed: review _put_script")
    return script


class RedisBudgets:
    """Budgets and blocks in one Redis, under ``prefix``."""

    shared = True

    def __init__(self, url: str, prefix: str | None = None) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError(f"{REDIS_URL_ENV} (or a redis:// {BROKER_URL_ENV}) is set but the "
                              "Redis client is not installed",
                              hint="pip install 'splice[redis]'") from None

        self.url = url
        self.prefix = prefix if prefix is not None else \
            os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)
        self.where = f"Redis at {_hide_password(url)}"
        self.client = redis.Redis.from_url(url, socket_timeout=3.0, socket_connect_timeout=3.0)
        self._block_sha: str | None = None

    def __repr__(self) -> str:
        return f"RedisBudgets({self.where!r}, prefix={self.prefix!r})"

    def call(self, fn: Any) -> Any:
        import redis

        try:
            return fn()
        except redis.exceptions.RedisError as exc:
            raise BudgetStoreDown(self.where, exc) from None

    def bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        key = f"{self.prefix}budget:{_digest(name)}"
        sha = self.call(lambda: self.client.script_load(_put_script()))
        bucket = _RedisBucket(rates, self.client, key, str(sha))
        bucket.owner = self
        return bucket

    def _block_key(self, key: str) -> str:
        return f"{self.prefix}block:{_digest(key)}"

    def block(self, keys: Iterable[str], until: float) -> None:
        import redis

        ttl_ms = max(1, int((until - time.time()) * 1000))
        for key in keys:
            args = (1, self._block_key(key), int(until * 1000), ttl_ms)
            try:
                if self._block_sha is None:
                    self._block_sha = str(self.client.script_load(_BLOCK_SCRIPT))
                self.client.evalsha(self._block_sha, *args)
            except redis.exceptions.NoScriptError:
                self._block_sha = None
                self.call(lambda a=args: self.client.eval(_BLOCK_SCRIPT, *a))
            except redis.exceptions.RedisError as exc:
                raise BudgetStoreDown(self.where, exc) from None

    def blocked_until(self, keys: list[str]) -> float:
        values = self.call(lambda: self.client.mget([self._block_key(k) for k in keys]))
        return max((int(v) / 1000.0 for v in values if v is not None), default=0.0)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- PostgreSQL


class _PostgresBucket(PostgresBucket):
    """pyrate-limiter's PostgreSQL bucket waiting for the table lock (``lock_timeout``)
    instead of failing at once, and reporting an unreachable server as BudgetStoreDown."""

    owner: PostgresBudgets

    def __init__(self, pool: Any, table: str, rates: list[Rate]) -> None:
        from psycopg import sql

        super().__init__(pool, table, rates)
        self._q_lock = sql.SQL("LOCK TABLE {table} IN EXCLUSIVE MODE").format(
            table=sql.Identifier(self._full_tbl))

    def put(self, item: RateItem) -> bool:
        return bool(self.owner.call(lambda: super(_PostgresBucket, self).put(item)))

    def leak(self, current_timestamp: int | None = None) -> int:
        return int(self.owner.call(
            lambda: super(_PostgresBucket, self).leak(current_timestamp)))


class PostgresBudgets:
    """Budgets and blocks in the PostgreSQL state database (a small pool of its own)."""

    shared = True

    def __init__(self, url: sa.URL) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigError("rate budgets on PostgreSQL need psycopg-pool",
                              hint="pip install 'splice[postgres]'") from None

        self.where = f"PostgreSQL at {url.render_as_string(hide_password=True)}"
        options = " ".join(filter(None, [str(url.query.get("options") or ""),
                                         "-c TimeZone=UTC", "-c lock_timeout=10s"]))
        from psycopg.conninfo import make_conninfo

        params = {k: v for k, v in url.query.items() if isinstance(v, str)}
        params.update({k: str(v) for k, v in (
            ("host", url.host), ("port", url.port), ("dbname", url.database),
            ("user", url.username), ("password", url.password)) if v})
        conninfo = make_conninfo(**{**params, "options": options})
        self.pool = self.call(lambda: ConnectionPool(conninfo, min_size=1, max_size=4,
                                                     timeout=10.0, open=True))
        self._ready = False

    def __repr__(self) -> str:
        return f"PostgresBudgets({self.where!r})"

    def call(self, fn: Any) -> Any:
        import psycopg
        import psycopg_pool

        try:
            return fn()
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise BudgetStoreDown(self.where, exc) from None

    def bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        bucket = self.call(lambda: _PostgresBucket(self.pool, "b" + _digest(name), rates))
        bucket.owner = self
        return bucket  # type: ignore[no-any-return]

    def _blocks_table(self, conn: Any) -> None:
        if self._ready:
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x5311CF,))
        conn.execute("CREATE TABLE IF NOT EXISTS ratelimit___splice_blocks "
                     "(key VARCHAR PRIMARY KEY, until_ms BIGINT NOT NULL)")
        self._ready = True

    def block(self, keys: Iterable[str], until: float) -> None:
        def write() -> None:
            with self.pool.connection() as conn:
                self._blocks_table(conn)
                for key in keys:
                    conn.execute(
                        "INSERT INTO ratelimit___splice_blocks (key, until_ms) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO UPDATE SET until_ms = GREATEST("
                        "ratelimit___splice_blocks.until_ms, EXCLUDED.until_ms)",
                        (_digest(key), int(until * 1000)))
        self.call(write)

    def blocked_until(self, keys: list[str]) -> float:
        def read() -> float:
            with self.pool.connection() as conn:
                self._blocks_table(conn)
                row = conn.execute("SELECT MAX(until_ms) FROM ratelimit___splice_blocks "
                                   "WHERE key = ANY(%s)", ([_digest(k) for k in keys],)
                                   ).fetchone()
            return (row[0] or 0) / 1000.0 if row else 0.0
        return float(self.call(read))

    def close(self) -> None:
        self.pool.close()


# --------------------------------------------------------------------------- choice

_lock = threading.Lock()
_open: dict[str, Any] = {}
_pid = os.getpid()


def shared_budgets(store: Any) -> RedisBudgets | PostgresBudgets | None:
    """Where this process's budgets are shared with other hosts: Redis (configured), the
    PostgreSQL state database, or None (the SQLite budget file or memory)."""
    global _pid
    url = redis_url()
    engine = getattr(store, "engine", None)
    pg = engine is not None and engine.url.get_backend_name() == "postgresql"
    if url is None and not pg:
        return None
    with _lock:
        if os.getpid() != _pid:  # forked: connections and pools are the parent's
            _open.clear()
            _pid = os.getpid()
        if url is not None:
            key = f"redis {url} {os.environ.get(PREFIX_ENV, DEFAULT_PREFIX)}"
            if key not in _open:
                _open[key] = RedisBudgets(url)
        else:
            assert engine is not None
            key = "pg " + engine.url.render_as_string(hide_password=False)
            if key not in _open:
                _open[key] = PostgresBudgets(engine.url)
        return _open[key]  # type: ignore[no-any-return]


def close_shared_budgets() -> None:
    """Close every shared budget connection of this process (tests)."""
    with _lock:
        for backend in _open.values():
            try:
                backend.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.debug("closing %r failed", backend, exc_info=True)
        _open.clear()

"""Request budgets declared by a manifest (``rate_limits``), enforced before every request.

Windows that share a key (the connection, or a connection field such as HighLevel's
``locationId``) form one budget, kept in a pyrate-limiter bucket. Where the buckets live
(:func:`limiter_for`): in Redis when one is configured, else in the PostgreSQL state database
(both shared by every process and host: :mod:`splice.http.shared_budgets`); else, with the
SQLite state store, in ``ratelimits.db`` next to ``splice.db``, so every splice process on the
machine draws from the same budget (each take is one ``BEGIN IMMEDIATE`` transaction); with an
in-memory store they are per process.

A 429 (its ``Retry-After``) or a response saying the window is used up blocks the budget's
keys until then for every process sharing the buckets (a "blocked until" stamp next to them),
not only for the one that was told.

The API has the last word: ``rate_limit_headers`` (remaining / reset / window / daily remaining)
are read from every response and, when the API reports less room than the buckets believe,
requests wait for the reported reset. A wait longer than ``max_wait`` (a used-up daily budget)
raises :class:`BudgetExhausted` before anything is sent, so a run stops cleanly and the next
run resumes where it stopped.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrate_limiter import AbstractBucket, InMemoryBucket, Rate, RateItem, SQLiteBucket
from pyrate_limiter.utils import validate_rate_list

from ..errors import ConfigError, HTTPError
from ..model.durations import DAY, human, parse_period
from ..sqlite import enable_wal
from .shared_budgets import DOWN_RETRY, BudgetStoreDown, close_shared_budgets, shared_budgets

log = logging.getLogger("splice.ratelimit")

MAX_BUDGET_WAIT = 120.0  # seconds; a longer wait stops the run instead of sleeping
BUDGET_FILE = "ratelimits.db"
MARGIN_ENV = "SPLICE_BUDGET_MARGIN"


class BudgetExhausted(HTTPError):
    """A request budget is used up for longer than a run should wait (e.g. a daily quota).

    Raised before the request is sent; ``retry_after`` is the wait in seconds.
    """

    def __init__(self, message: str, *, retry_after: float, hint: str | None = None) -> None:
        super().__init__(message, status=429, hint=hint or (
            "nothing was sent; run the recipe again after that time and it continues where "
            "it stopped"))
        self.retry_after = retry_after


@dataclass(frozen=True)
class Window:
    """One declared window: ``limit`` requests per ``seconds``."""

    limit: int
    seconds: float

    @property
    def rate(self) -> Rate:
        return Rate(self.limit, max(1, int(round(self.seconds * 1000))))

    def shared_rate(self) -> Rate:
        """The rate enforced in Redis or PostgreSQL: the window lengthened by a margin
        (``SPLICE_BUDGET_MARGIN`` seconds; default 10% of the window, at most 0.25 s) that
        absorbs the time between taking a slot and the request reaching the API, which
        differs from process to process and host to host."""
        raw = os.environ.get(MARGIN_ENV, "").strip()
        try:
            margin = float(raw) if raw else min(0.1 * self.seconds, 0.25)
        except ValueError:
            raise ConfigError(f"{MARGIN_ENV}={raw!r} is not a number of seconds") from None
        return Rate(self.limit, max(1, int(round((self.seconds + max(margin, 0.0)) * 1000))))

    def __str__(self) -> str:
        for unit, name in ((DAY, "d"), (3600.0, "h"), (60.0, "min"), (1.0, "s")):
            if self.seconds >= unit and self.seconds % unit == 0:
                return f"{self.limit:,} per {self.seconds / unit:g} {name}"
        return f"{self.limit:,} per {self.seconds * 1000:g} ms"


def _implied(short: Window, long: Window) -> bool:
    """Whether ``long`` can never bind given ``short`` (sliding windows)."""
    return long.limit >= math.ceil(long.seconds / short.seconds) * short.limit


def normalize(windows: Iterable[Window]) -> list[list[Window]]:
    """Drop windows another one implies, then split the rest into lists pyrate-limiter accepts
    (increasing interval and limit, non-increasing density); each list becomes one bucket."""
    ordered = sorted(set(windows), key=lambda w: (w.seconds, w.limit))
    kept: list[Window] = []
    for w in ordered:
        if any(_implied(k, w) for k in kept):
            continue  # a shorter window already keeps this one from ever binding
        kept = [k for k in kept if not (w.limit <= k.limit and w.seconds >= k.seconds)]
        kept.append(w)
    groups: list[list[Window]] = []
    for w in kept:
        for group in groups:
            if validate_rate_list([x.rate for x in [*group, w]]):
                group.append(w)
                break
        else:
            groups.append([w])
    return groups


# --------------------------------------------------------------------------- buckets


class _ImmediateLock:
    """Makes a bucket's count-then-insert one ``BEGIN IMMEDIATE`` transaction, so processes
    sharing the file can never both take the last slot (re-entrant within a thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.thread_lock = threading.RLock()
        self.depth = 0

    def __enter__(self) -> _ImmediateLock:
        self.thread_lock.acquire()
        if self.depth == 0:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.thread_lock.release()
                raise
        self.depth += 1
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.depth -= 1
        try:
            if self.depth == 0 and self.conn.in_transaction:
                if exc_type is None:
                    self.conn.commit()
                else:
                    self.conn.rollback()
        finally:
            self.thread_lock.release()

    # pyrate-limiter's Limiter protocol (unused by splice, present for completeness)
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.__enter__()
        return True

    def release(self) -> None:
        self.__exit__(None)


_shared_lock = threading.Lock()
_shared: dict[tuple[str, str], AbstractBucket] = {}
_shared_pid = os.getpid()
_connections: dict[str, tuple[sqlite3.Connection, _ImmediateLock]] = {}


def _sqlite_connection(path: Path) -> tuple[sqlite3.Connection, _ImmediateLock]:
    key = str(path)
    if key not in _connections:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(key, timeout=30, isolation_level=None, check_same_thread=False)
        enable_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        _connections[key] = (conn, _ImmediateLock(conn))
    return _connections[key]


def _bucket(path: Path | None, name: str, windows: list[Window],
            place: Any = None) -> AbstractBucket:
    """The process-wide bucket for ``name`` (in ``place`` when shared, else a SQLite table in
    ``path``, or in memory)."""
    global _shared_pid
    rates = [w.shared_rate() if place is not None else w.rate for w in windows]
    table = "budget_" + hashlib.sha256(name.encode()).hexdigest()[:24]
    with _shared_lock:
        if os.getpid() != _shared_pid:  # forked: never reuse the parent's SQLite handles
            _shared.clear()
            _connections.clear()
            _shared_pid = os.getpid()
        key = (repr(place) if place is not None else str(path) if path else ":memory:", table)
        bucket = _shared.get(key)
        if bucket is None or [(r.limit, r.interval) for r in bucket.rates] != \
                [(r.limit, r.interval) for r in rates]:
            if place is not None:
                bucket = place.bucket(name, rates)
            elif path is None:
                bucket = InMemoryBucket(rates)
            else:
                conn, lock = _sqlite_connection(path)
                with lock:
                    conn.execute(f"CREATE TABLE IF NOT EXISTS '{table}' "
                                 "(name VARCHAR, item_timestamp INTEGER)")
                    conn.execute(f"CREATE INDEX IF NOT EXISTS 'idx_{table}' "
                                 f"ON '{table}' (item_timestamp)")
                bucket = SQLiteBucket(rates, conn, table, lock=lock)
            _shared[key] = bucket
        return bucket


def reset_shared_buckets() -> None:
    """Forget every process-wide bucket and close the budget files (tests)."""
    with _shared_lock:
        _shared.clear()
        for conn, _lock in _connections.values():
            conn.close()
        _connections.clear()
        _memory_blocks.clear()
    close_shared_budgets()


_memory_blocks: dict[str, float] = {}


class LocalBlocks:
    """"Blocked until" stamps of budget keys in the SQLite budget file (``path``: a
    ``blocks`` table), or in this process's memory (None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _conn(self) -> tuple[sqlite3.Connection, _ImmediateLock]:
        assert self.path is not None
        conn, lock = _sqlite_connection(self.path)
        with lock:
            conn.execute("CREATE TABLE IF NOT EXISTS blocks (key VARCHAR PRIMARY KEY, "
                         "until REAL NOT NULL)")
        return conn, lock

    def block(self, keys: Iterable[str], until: float) -> None:
        if self.path is None:
            with _shared_lock:
                for key in keys:
                    _memory_blocks[key] = max(_memory_blocks.get(key, 0.0), until)
            return
        conn, lock = self._conn()
        with lock:
            for key in keys:
                conn.execute("INSERT INTO blocks (key, until) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET until = max(until, excluded.until)", (key, until))

    def blocked_until(self, keys: list[str]) -> float:
        if self.path is None:
            with _shared_lock:
                return max((_memory_blocks.get(k, 0.0) for k in keys), default=0.0)
        conn, lock = self._conn()
        with lock:
            marks = ",".join("?" * len(keys))
            row = conn.execute(f"SELECT max(until) FROM blocks WHERE key IN ({marks})",
                               keys).fetchone()
        return float(row[0] or 0.0) if row else 0.0


@dataclass
class Budget:
    """The windows that share one key, in one bucket."""

    key: str
    windows: list[Window]
    bucket_or_maker: AbstractBucket | Callable[[], AbstractBucket]
    takes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bucket(self) -> AbstractBucket:
        """The bucket, made on first use (a shared one connects to Redis or PostgreSQL)."""
        if not isinstance(self.bucket_or_maker, AbstractBucket):
            self.bucket_or_maker = self.bucket_or_maker()
        return self.bucket_or_maker

    def take(self, now_ms: int) -> float:
        """Take one slot: 0.0 when granted, else seconds until one frees up."""
        item = RateItem(self.key, now_ms)
        with self.lock:  # put() and waiting() share the bucket's last verdict
            if self.bucket.put(item):
                self.takes += 1
                if self.takes % 500 == 1:
                    self.bucket.leak(now_ms)
                return 0.0
            wait = self.bucket.waiting(item)
        assert isinstance(wait, int)
        return max(wait, 1) / 1000.0

    def failing(self) -> Window:
        failing = self.bucket.failing_rate
        for w, rate in zip(self.windows, self.bucket.rates, strict=False):
            if failing is not None and rate.interval == failing.interval:
                return w
        return self.windows[-1]


# --------------------------------------------------------------------------- API view


@dataclass
class _Reported:
    """What the API last said about one of its windows."""

    remaining: int
    until: float  # when that window frees up (epoch seconds)
    daily: bool
    exact: bool = True  # False: only the window's length was told, ``until`` is the worst case


def parse_reset(raw: str, now: float) -> float | None:
    """Absolute time from a reset header: delta seconds, Unix seconds, Unix ms or an HTTP date."""
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError):
            return None
    if value > 1e11:
        return value / 1000.0
    if value > 1e8:
        return value
    return now + max(0.0, value)


def _int(headers: Mapping[str, str], name: str | None) -> int | None:
    if not name:
        return None
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


class RateLimiter:
    """Budgets of one connection: ``acquire`` before each request, ``observe`` each response."""

    def __init__(self, budgets: list[Budget], *, label: str,
                 header_names: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time,
                 max_wait: float = MAX_BUDGET_WAIT, shared: bool = False,
                 blocks: Any = None) -> None:
        self.budgets = budgets
        self.blocks = blocks if blocks is not None else LocalBlocks(None)
        self.keys = sorted({b.key for b in budgets}) or [label]
        self.label = label
        self.header_names = dict(header_names or {})
        self.clock = clock
        self.max_wait = max_wait
        self.shared = shared
        self._lock = threading.Lock()
        self._reported: dict[str, _Reported] = {}
        self._hold_until = 0.0
        self._windows = sorted((w for b in budgets for w in b.windows), key=lambda w: w.seconds)

    def __repr__(self) -> str:
        where = repr(self.blocks) if not isinstance(self.blocks, LocalBlocks) else \
            "shared" if self.shared else "in-process"
        return f"RateLimiter({self.label!r}, {[str(w) for w in self._windows]}, {where})"

    def remaining(self) -> int | None:
        """Requests left in the API's current window, as its rate-limit headers last said
        (None: no header told, or the window has passed)."""
        with self._lock:
            rep = self._reported.get("window")
            return rep.remaining if rep is not None and rep.until > self.clock() else None

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until every budget has room and take one slot; return the seconds waited.

        Raises :class:`BudgetExhausted` (nothing taken from the API) when the wait would be
        longer than ``max_wait``.
        """
        try:
            return self._acquire(sleep)
        except BudgetStoreDown as exc:
            raise BudgetExhausted(f"{self.label}: {exc}", retry_after=DOWN_RETRY,
                                  hint=exc.hint) from None

    def _acquire(self, sleep: Callable[[float], None]) -> float:
        waited = 0.0
        pending = list(self.budgets)
        while True:
            now = self.clock()
            wait, why, soft = self._reported_wait(now)
            if wait <= 0:
                blocked = self.blocks.blocked_until(self.keys)
                if blocked > now:
                    wait, why = blocked - now, ("the API asked every process sharing this "
                                                "budget to wait (429 or window used up)")
            if wait <= 0 or soft:
                # A window the API says is full, without saying when it frees up: when our
                # own budget is full too, it knows when our oldest request ages out; when it
                # has room, the API counts more than we do: wait the whole window.
                soft_wait, soft_why = wait, why
                wait = 0.0
                while pending:
                    wait = pending[0].take(int(now * 1000))
                    if wait > 0:
                        why = (f"the request budget of {pending[0].failing()} "
                               f"({pending[0].key}) is used up")
                        break
                    pending.pop(0)
                if soft and wait > 0:
                    self._forget_window()
                elif soft:
                    wait, why = soft_wait, soft_why
            if wait <= 0:
                self._spend_reported()
                return waited
            if wait > self.max_wait:
                raise BudgetExhausted(
                    f"{self.label}: {why}; the next request is allowed in {human(wait)}",
                    retry_after=wait)
            log.info("%s: %s; waiting %.2fs", self.label, why, wait)
            sleep(wait)
            waited += wait

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the API answered 429 with ``Retry-After``), here and
        in every process sharing the budgets."""
        until = self.clock() + seconds
        with self._lock:
            self._hold_until = max(self._hold_until, until)
        self._block(until)

    def _block(self, until: float) -> None:
        try:
            self.blocks.block(self.keys, until)
        except BudgetStoreDown as exc:  # this process still holds; the next take says more
            log.warning("%s: %s", self.label, exc)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Tighten from the API's own count (``rate_limit_headers``)."""
        names = self.header_names
        if not names:
            return
        now = self.clock()
        remaining = _int(headers, names.get("remaining"))
        daily = _int(headers, names.get("daily_remaining"))
        until: float | None = None
        exact = False  # the API said when its window frees up (not only how long it is)
        with self._lock:
            if remaining is not None:
                if names.get("reset") and headers.get(names["reset"]):
                    until = parse_reset(headers[names["reset"]], now)
                    exact = until is not None
                if until is None:
                    window_ms = _int(headers, names.get("window_ms"))
                    short = [w for w in self._windows if w.seconds < DAY]
                    until = now + (window_ms / 1000.0 if window_ms else
                                   short[0].seconds if short else 60.0)
                self._reported["window"] = _Reported(remaining, until, daily=False,
                                                     exact=exact)
        if exact and remaining is not None and remaining <= 0 and until is not None and \
                until > now:
            self._block(until)  # the window is used up for every process, not only this one
        with self._lock:
            if daily is not None:
                self._reported["daily"] = _Reported(daily, now + DAY, daily=True)

    def _reported_wait(self, now: float) -> tuple[float, str, bool]:
        """(seconds to wait, why, whether that is only the worst case of a full window)."""
        with self._lock:
            if self._hold_until > now:
                return self._hold_until - now, "the API asked to wait (429)", False
            for name, rep in list(self._reported.items()):
                if rep.until <= now:
                    del self._reported[name]
                elif rep.remaining <= 0:
                    if rep.daily:
                        return max(rep.until - now, self.max_wait + 1), \
                            "the API reports its daily request budget used up", False
                    return rep.until - now, "the API reports its request window used up", \
                        not rep.exact
        return 0.0, "", False

    def _forget_window(self) -> None:
        with self._lock:
            self._reported.pop("window", None)

    def _spend_reported(self) -> None:
        with self._lock:
            for rep in self._reported.values():
                rep.remaining -= 1


# --------------------------------------------------------------------------- factory


def budget_file(store: Any) -> Path | None:
    """``ratelimits.db`` next to a SQLite state file; None for PostgreSQL or in-memory."""
    engine = getattr(store, "engine", None)
    if engine is None:
        return None
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or \
            url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser().resolve().parent / BUDGET_FILE


def budget_key(connector: Any, record: Any, key: str | None) -> str:
    """Who shares a budget: ``<connector>/connection=<name>`` or ``<connector>/<field>=<value>``
    (the field from the connection's token fields or config; the connection if it has none)."""
    name = getattr(record, "name", None) or "-"
    if key and key != "connection" and record is not None:
        config = record.config or {}
        value = (config.get("fields") or {}).get(key, config.get(key))
        if value is not None:
            return f"{connector.id}/{key}={value}"
        log.debug("%s: connection %s has no field %r; budget keyed by connection",
                  connector.id, name, key)
    return f"{connector.id}/connection={name}"


def limiter_for(connector: Any, record: Any = None, store: Any = None, *,
                clock: Callable[[], float] = time.time, max_wait: float = MAX_BUDGET_WAIT,
                path: Path | None | str = "auto") -> RateLimiter | None:
    """The limiter a connection's client uses (None when the manifest declares no budget).

    ``path="auto"`` puts the buckets in Redis (``SPLICE_REDIS_URL``), else in the PostgreSQL
    state database, else next to the store's SQLite file (all shared by processes; see
    :mod:`splice.http.shared_budgets`); ``path=None`` keeps them in this process.
    """
    if not connector.rate_limits and not connector.rate_limit_headers:
        return None
    place = shared_budgets(store) if path == "auto" else None
    where = budget_file(store) if path == "auto" and place is None else \
        (Path(path) if path and path != "auto" else None)
    by_key: dict[str, list[Window]] = {}
    for spec in connector.rate_limits:
        window = Window(int(spec["limit"]), parse_period(spec["per"]))
        by_key.setdefault(budget_key(connector, record, spec.get("key")), []).append(window)
    budgets = []
    for key, windows in by_key.items():
        for i, group in enumerate(normalize(windows)):
            name = key if i == 0 else f"{key}#{i}"
            if place is None:
                budgets.append(Budget(key, group, _bucket(where, name, group)))
            else:  # connects on the first request, where a failure is a clean stop
                budgets.append(Budget(key, group, functools.partial(
                    _bucket, None, name, group, place)))
    return RateLimiter(budgets, label=connector.id, header_names=connector.rate_limit_headers,
                       clock=clock, max_wait=max_wait,
                       shared=place is not None or where is not None,
                       blocks=place if place is not None else LocalBlocks(where))

"""Leases: one holder at a time for a named piece of work, across processes and hosts.

A lease is a row of the state database (``leases``): its name, the holder's id, host and pid,
when it was acquired, the last heartbeat and the expiry. :func:`try_acquire` takes a lease that
is free or expired in ONE statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired
RETURNING``), so of two processes trying at once, on SQLite or PostgreSQL, exactly one gets it;
the other learns who holds it and since when.

The holder renews the lease on a heartbeat thread (every ``ttl / 6`` seconds, at most 5 s). A
holder that stops renewing (killed, hung, its host down) keeps the lease at most ``ttl``
seconds after its last heartbeat; then the next :func:`try_acquire` takes it over. A holder
whose renewal finds the row taken (or that could not renew before its own expiry) has
``lost`` it: :meth:`Lease.check` raises :class:`~splice.errors.LeaseLost` and the holder must
stop before its next side effect.

Expiry is written and compared with the clock of the process that writes or reads it: hosts
sharing one PostgreSQL database need clocks in sync to well within the ttl (NTP does that).

``splice run`` holds :func:`trigger_lease` for the recipe's trigger while it runs;
``splice serve``'s scheduler and its workers take the same lease for the same work.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..errors import ConfigError, LeaseLost
from .tables import UTCDateTime, dialect_insert, metadata, now

__all__ = ["DEFAULT_TTL", "TTL_ENV", "Lease", "LeaseInfo", "acquire", "current_lease",
           "lease_ttl", "leases", "trigger_lease", "try_acquire"]

DEFAULT_TTL = 30.0
TTL_ENV = "SPLICE_LEASE_TTL"
MAX_HEARTBEAT = 5.0

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("host", sa.String),
    sa.Column("pid", sa.Integer),
    sa.Column("detail", sa.String),  # what the holder does, e.g. "run 1a2b3c4d"
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)


def lease_ttl() -> float:
    """Seconds a lease outlives its last heartbeat: ``$SPLICE_LEASE_TTL`` or 30."""
    raw = os.environ.get(TTL_ENV)
    if not raw:
        return DEFAULT_TTL
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigError(f"{TTL_ENV}={raw!r} is not a positive number of seconds")
    return value


def trigger_lease(recipe_id: str, trigger: str) -> str:
    """The lease name of one recipe's trigger (what one poll of it holds)."""
    return f"trigger:{recipe_id}:{trigger}"


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease."""

    name: str
    holder: str
    host: str | None
    pid: int | None
    detail: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def describe(self, at: datetime | None = None) -> str:
        """``run 1a2b3c4d (pid 42 on host web1) since 12:00:01 UTC, last heartbeat 2 s ago``."""
        at = at or now()
        who = self.detail or f"holder {self.holder[:8]}"
        beat = max(0.0, (at - self.heartbeat_at).total_seconds())
        return (f"{who} (pid {self.pid} on host {self.host}) since "
                f"{self.acquired_at.strftime('%Y-%m-%d %H:%M:%S')} UTC, last heartbeat "
                f"{beat:.0f} s ago")


def _info(row: Any) -> LeaseInfo:
    return LeaseInfo(**{c: row._mapping[c] for c in LeaseInfo.__dataclass_fields__})


class Lease:
    """A lease this process holds. Use as a context manager, or call :meth:`release`."""

    def __init__(self, store: Any, info: LeaseInfo, ttl: float,
                 clock: Callable[[], datetime] = now) -> None:
        self.store = store
        self.name = info.name
        self.holder = info.holder
        self.info = info
        self.ttl = ttl
        self.clock = clock
        self.expires_at = info.expires_at
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._private = bool(getattr(store, "single_connection", False))  # in-memory

    @property
    def lost(self) -> bool:
        """Whether another process may have taken the lease over (never, for an in-memory
        database: no other process can see it)."""
        if self._private:
            return False
        if not self._lost.is_set() and self.clock() >= self.expires_at:
            self._lost.set()  # the heartbeat could not renew in time
        return self._lost.is_set()

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is still held."""
        if self.lost:
            raise LeaseLost(f"lost the lease '{self.name}': it was not renewed for "
                            f"{self.ttl:.0f} s and another process may have taken over; "
                            "this run stops here",
                            hint="the next run finishes what this one left pending")

    def renew(self) -> bool:
        """Extend the lease by ``ttl`` from now; False (and ``lost``) if it is not ours."""
        stamp = self.clock()
        expires = stamp + timedelta(seconds=self.ttl)
        with self.store._write() as conn:
            done = conn.execute(leases.update().where(
                leases.c.name == self.name, leases.c.holder == self.holder,
            ).values(heartbeat_at=stamp, expires_at=expires))
        if done.rowcount != 1:
            self._lost.set()
            return False
        self.expires_at = expires
        return True

    def annotate(self, detail: str) -> None:
        """Say what the holder is doing (shown to whoever finds the lease taken)."""
        with self.store._write() as conn:
            conn.execute(leases.update().where(leases.c.name == self.name,
                                               leases.c.holder == self.holder)
                         .values(detail=detail))

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew on a daemon thread every ``interval`` s (default ``ttl / 6``, at most 5 s).

        Not for an in-memory database: nobody else can see it, and its one connection must
        not be shared with a second thread."""
        if self._thread is not None or self._private:
            return
        every = interval if interval is not None else min(MAX_HEARTBEAT, self.ttl / 6)
        self._thread = threading.Thread(target=self._beat, args=(max(every, 0.05),),
                                        name=f"splice-lease-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self.renew():
                    return
            except Exception:  # noqa: BLE001 - a busy database: try again until expiry
                if self.lost:
                    return

    def release(self) -> None:
        """Stop the heartbeat and give the lease up (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self.store._write() as conn:
            conn.execute(leases.delete().where(leases.c.name == self.name,
                                               leases.c.holder == self.holder))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def current_lease(store: Any, name: str) -> LeaseInfo | None:
    """The lease's row (it may have expired: compare ``expires_at`` with now)."""
    with store._read() as conn:
        row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
    return None if row is None else _info(row)


def try_acquire(store: Any, name: str, *, ttl: float | None = None, detail: str | None = None,
                holder: str | None = None, clock: Callable[[], datetime] = now
                ) -> Lease | LeaseInfo:
    """Take lease ``name`` if it is free or expired (one atomic statement): the held
    :class:`Lease`, or the :class:`LeaseInfo` of whoever holds it."""
    ttl = lease_ttl() if ttl is None else ttl
    holder = holder or uuid.uuid4().hex
    stamp = clock()
    mine = LeaseInfo(name, holder, socket.gethostname(), os.getpid(), detail, stamp, stamp,
                     stamp + timedelta(seconds=ttl))
    row = {f: getattr(mine, f) for f in LeaseInfo.__dataclass_fields__}
    while True:
        with store._write() as conn:
            stmt = dialect_insert(conn, leases).values(**row)
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={k: stmt.excluded[k] for k in row if k != "name"},
                where=sa.or_(leases.c.expires_at <= sa.bindparam("b_now", stamp,
                                                                 type_=UTCDateTime),
                             leases.c.holder == holder),
            ).returning(leases.c.holder)
            if conn.execute(stmt).scalar() == holder:
                return Lease(store, mine, ttl, clock)
            current = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
        if current is not None:  # else released meanwhile: try again
            return _info(current)


def acquire(store: Any, name: str, *, wait: bool = False, ttl: float | None = None,
            detail: str | None = None, holder: str | None = None,
            on_wait: Callable[[LeaseInfo], None] | None = None,
            poll: float = 1.0, sleep: Callable[[float], None] = time.sleep
            ) -> Lease | LeaseInfo:
    """:func:`try_acquire`; with ``wait``, until the lease is ours (``on_wait`` is told
    once who holds it)."""
    told = False
    holder = holder or uuid.uuid4().hex
    while True:
        got = try_acquire(store, name, ttl=ttl, detail=detail, holder=holder)
        if isinstance(got, Lease) or not wait:
            return got
        if not told and on_wait is not None:
            on_wait(got)
            told = True
        left = (got.expires_at - now()).total_seconds()
        sleep(min(poll, max(0.05, left)))

"""The dispatcher: ``splice serve``'s scheduler when a broker is set (``SPLICE_BROKER_URL``).

Serve then runs no recipe itself; ``splice worker`` processes do (:mod:`splice.worker`). One
thread, every ``tick`` (and at once when a delivery was stored):

- **deliveries**: new inbox rows never sent are sent to the broker (``splice.deliver``, up to
  ``ROWS_PER_MESSAGE`` rows a message: those stored together), in any serve process (rows
  are taken with ``FOR UPDATE SKIP LOCKED``); when the broker refuses they are sent again on
  the next turn;
- **the reconciler**: the inbox in the database is the source of truth. A row still not done
  ``requeue_after`` seconds after it was sent is sent again (a message lost with a Redis
  restart, a task that failed), and so are events left pending by a dead run (a killed worker)
  or failed and due for a retry (``splice.run_events``);
- **polls**: a polling recipe whose ``next_poll_at`` passed is claimed by compare-and-set and
  ``splice.poll`` sent.

The reconciler and the polls run only in the process holding the ``scheduler`` lease (one in
the fleet at a time, whichever serve took it; another takes it over within the lease's ttl
when it dies). Sending the same work twice is harmless: every task is idempotent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import SpliceError
from ..run.routing import RouteIndex
from ..store import inbox
from ..store import registry as reg
from ..store.leases import Lease, try_acquire
from ..worker.enqueue import Enqueuer
from .turns import TurnLoop

log = logging.getLogger("splice.serve.dispatch")
LEASE = "scheduler"
FIRST_POLL_WITHIN = 60.0
EVENTS_PER_MESSAGE = 20
ROWS_PER_MESSAGE = 8  # deliveries stored together go together (one run per recipe)


def _now() -> datetime:
    return datetime.now(UTC)


class Dispatcher(TurnLoop):
    """Stands in for :class:`~splice.serve.scheduler.Scheduler` in :class:`Service`."""

    thread_name = "splice-dispatch"

    def __init__(self, service: Any, enqueuer: Enqueuer | None = None) -> None:
        super().__init__(service)
        self.sender = enqueuer or Enqueuer(self.config.broker_url or "")
        self.index = RouteIndex({})
        self.lease: Lease | None = None
        self.broker_ok = True
        self._next_reconcile = 0.0
        self._run_now: set[str] = set()
        self._lock = threading.Lock()

    # -- lifecycle (as the Scheduler) -------------------------------------------------------
    @property
    def leading(self) -> bool:
        return self.lease is not None and not self.lease.lost

    def stop(self, grace: float) -> bool:
        self.stopping = True
        self.wake.set()
        self._thread.join(timeout=2.0 + grace)
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            self.lease = None
        self.sender.close()
        return True

    def due_retries(self) -> None:
        """Nothing to read: the reconciler sends failed events when they are due."""

    def take_run_requests(self, names: list[str]) -> None:
        for name in names:
            if reg.take_run_request(self.store, name):
                self.request_run(name)

    def request_run(self, name: str) -> None:
        with self._lock:
            self._run_now.add(name)
        self.wake.set()

    def request_retry(self, name: str, event_id: int) -> bool:
        loaded = self.service.book.recipes.get(name)
        if loaded is None or loaded.plan is None or not loaded.enabled:
            return False
        try:
            self.sender.run_events(name, [event_id], now=True)
        except SpliceError:
            return False
        return True

    # -- the loop ---------------------------------------------------------------------------
    def turn(self) -> None:
        now = time.monotonic()
        self.reload_due(now)
        self._send_deliveries()
        if not self._lead():
            return
        self._schedule_polls()
        if now >= self._next_reconcile:
            self._next_reconcile = now + max(0.5, self.config.requeue_after / 4)
            self._reconcile_events()

    def _lead(self) -> bool:
        """Hold the scheduler lease (take it when free or expired)."""
        if self.leading:
            return True
        got = try_acquire(self.store, LEASE, holder=self.service.instance_id,
                          detail=f"scheduler of {self.service.instance_id}")
        if isinstance(got, Lease):
            got.start_heartbeat()
            self.lease = got
            self.metrics.leader.set(1)
            log.info("this serve process schedules polls and reconciles the inbox")
            return True
        self.lease = None
        self.metrics.leader.set(0)
        return False

    def _sent(self, task: str, ok: bool) -> None:
        if ok != self.broker_ok:
            self.broker_ok = ok
            if ok:
                log.info("the broker takes tasks again")
            else:
                log.error("the broker does not take tasks; deliveries stay in the inbox and "
                          "are sent when it is back")
        self.metrics.broker_up.set(1 if ok else 0)
        if ok:
            self.metrics.sent.labels(task).inc()

    # -- deliveries and the reconciler -----------------------------------------------------
    def _send_deliveries(self) -> None:
        stale = timedelta(seconds=self.config.requeue_after)
        while not self.stopping:
            ids, resent = inbox.to_enqueue(self.store, stale)
            if not ids:
                return
            sent = 0
            try:
                for start in range(0, len(ids), ROWS_PER_MESSAGE):
                    self.sender.deliver(ids[start:start + ROWS_PER_MESSAGE])
                    sent = min(len(ids), start + ROWS_PER_MESSAGE)
            except SpliceError:
                inbox.unqueue(self.store, ids[sent:])
                self._sent("deliver", False)
                return
            finally:
                if resent:
                    self.metrics.requeued.labels("delivery").inc(min(resent, sent))
            self._sent("deliver", True)
            if len(ids) < 500:
                return

    def _reconcile_events(self) -> None:
        orphans = self.store.runnable_events(idle=self.config.requeue_after)
        per_recipe: dict[str, list[int]] = defaultdict(list)
        for recipe, _trigger, event_id in orphans:
            per_recipe[recipe].append(event_id)
        try:
            for recipe, ids in per_recipe.items():
                for start in range(0, len(ids), EVENTS_PER_MESSAGE):
                    self.sender.run_events(recipe, ids[start:start + EVENTS_PER_MESSAGE])
                self.metrics.requeued.labels("event").inc(len(ids))
        except SpliceError:
            self._sent("run_events", False)

    # -- polls ------------------------------------------------------------------------------
    def _schedule_polls(self) -> None:
        book = self.service.book
        polling = {r.id: r for r in book.enabled() if r.plan is not None and r.plan.polls}
        with self._lock:
            now_requests, self._run_now = self._run_now, set()
        if not polling:
            return
        schedule = reg.poll_schedule(self.store)
        now = _now()
        for name, loaded in polling.items():
            due = schedule.get(name, None)
            every = float(loaded.plan.recipe.every)
            if name in now_requests:
                self._send_poll(name, None)
                continue
            if due is not None and due > now:
                continue
            if due is None:
                first = random.uniform(0, min(every, FIRST_POLL_WITHIN))
                reg.claim_poll(self.store, name, None, now + timedelta(seconds=first))
                continue
            spread = random.uniform(0, self.config.jitter * every)
            if reg.claim_poll(self.store, name, due, now + timedelta(seconds=every + spread)):
                lag = max(0.0, (now - due).total_seconds())
                self.metrics.poll_lag.labels(name).set(lag)
                self.metrics.poll_lag_hist.observe(lag)
                self._send_poll(name, due)

    def _send_poll(self, name: str, due: datetime | None) -> None:
        try:
            self.sender.poll(name, due.isoformat() if due is not None else None)
            self._sent("poll", True)
        except SpliceError:
            self._sent("poll", False)  # the interval is skipped; the next one polls

"""The scheduler: what runs when, on a bounded pool of workers.

One thread decides; ``workers`` threads run recipe jobs. Every ``tick`` the scheduler:

- **polls**: a polling recipe whose ``next_poll_at`` (in the registry, shared by every serve
  process on the database) has passed is claimed by compare-and-set, and the new due time is
  now + interval + jitter (up to ``jitter`` x interval): missed intervals coalesce into one
  poll, and of several processes exactly one polls each interval. A recipe seen for the first
  time is first due within a minute (or its interval, if shorter), spread at random, so many
  recipes do not all poll at once;
- **webhooks**: claims new inbox rows, routes them (:mod:`splice.run.routing`) and queues
  each recipe's records;
- **retries**: a recipe whose failed events are due again (``next_attempt_at``, set by the
  engine's back-off) gets a run that resumes and retries them, on their schedule, whether or
  not its next poll is near (webhook-only recipes too);
- **run-now** requests from ``splice recipes run-now`` or the API;
- starts a job for every recipe with work that has no job running, while a worker is free.

A recipe has at most one job at a time (its deliveries, its retries, then its poll), and each
job runs under the recipe trigger's lease (:mod:`splice.store.leases`): never two runs of one
recipe at once, in this process or another one (a second serve, a ``splice run``); a job that
finds the lease taken leaves the work for later. A slow API holds only the workers running
its recipes. An inbox row is marked done once every recipe it was routed to has it in its
ledger; rows not finished when the process stops are claimed again by the next one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..run.routing import Routed, RouteIndex, route
from ..run.runner import Runner
from ..store import inbox
from ..store import registry as reg
from .turns import TurnLoop

log = logging.getLogger("splice.serve.scheduler")
MAX_QUEUED = 5000  # routed records waiting in memory before the inbox is claimed further
FIRST_POLL_WITHIN = 60.0  # seconds: a newly enabled recipe's first poll, spread over this


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Work:
    items: list[Routed] = field(default_factory=list)
    poll_due: datetime | None = None   # a claimed poll, due at this time
    poll: bool = False
    retries: list[int] = field(default_factory=list)   # event ids to run again (the API)
    sweep: bool = False                # resume pending and retry due events
    retry_at: datetime | None = None   # when the next failed event is due
    not_before: float = 0.0            # monotonic: wait (rate budget, lease) before a job


class Scheduler(TurnLoop):
    thread_name = "splice-scheduler"

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="splice-job")
        self.lock = threading.Lock()
        self.work: dict[str, _Work] = {}
        self.running: dict[str, Future[None]] = {}
        self.row_pending: dict[int, int] = {}
        self.row_notes: dict[int, list[str]] = {}
        self.index = RouteIndex({})

    # -- lifecycle --------------------------------------------------------------------------
    def stop(self, grace: float) -> bool:
        """Stop deciding, give queued rows back, let running jobs finish within ``grace``
        seconds. True when every job finished."""
        self.stopping = True
        self.wake.set()
        self._thread.join(timeout=2.0)
        with self.lock:
            queued = sorted({i.row_id for w in self.work.values() for i in w.items})
            for work in self.work.values():
                work.items.clear()
                work.poll = False
            futures = list(self.running.values())
        inbox.release(self.store, self.service.instance_id, queued)
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        for future in futures:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a job's own errors were logged by the job
                pass
        return all(f.done() for f in futures)

    # -- the loop ---------------------------------------------------------------------------
    def turn(self) -> None:
        """One pass: reload, polls, inbox, jobs."""
        self.reload_due(time.monotonic())
        self._schedule_polls()
        self._schedule_retries()
        self._take_inbox()
        self._start_jobs()

    # -- polls ------------------------------------------------------------------------------
    def _schedule_polls(self) -> None:
        book = self.service.book
        polling = {r.id: r for r in book.enabled() if r.plan is not None and r.plan.polls}
        if not polling:
            return
        schedule = reg.poll_schedule(self.store)
        now = _now()
        for name, loaded in polling.items():
            due = schedule.get(name, None)
            every = float(loaded.plan.recipe.every)
            with self.lock:
                work = self.work.setdefault(name, _Work())
                if work.poll or name in self.running:
                    continue  # one poll at a time: the next is claimed after this one
            if due is not None and due > now:
                continue
            spread = random.uniform(0, self.config.jitter * every)
            if due is None:  # first sight: poll within a minute (or an interval), spread out
                first = random.uniform(0, min(every, FIRST_POLL_WITHIN))
                reg.claim_poll(self.store, name, None, now + timedelta(seconds=first))
                continue
            if reg.claim_poll(self.store, name, due, now + timedelta(seconds=every + spread)):
                with self.lock:
                    work.poll, work.poll_due = True, due

    def _schedule_retries(self) -> None:
        now = _now()
        with self.lock:
            for work in self.work.values():
                if work.retry_at is not None and work.retry_at <= now:
                    work.retry_at, work.sweep = None, True

    def due_retries(self) -> None:
        """Read when each enabled recipe's next failed event is due (each reload)."""
        for loaded in self.service.book.enabled():
            _count, due = self.store.next_retry(loaded.plan.recipe.id, loaded.plan.trigger.ref)
            with self.lock:
                work = self.work.setdefault(loaded.id, _Work())
                work.retry_at = due

    def request_run(self, name: str) -> None:
        """Run ``name`` now (its poll, and its pending events)."""
        with self.lock:
            work = self.work.setdefault(name, _Work())
            work.poll, work.poll_due = True, None
        self.wake.set()

    def request_retry(self, name: str, event_id: int) -> bool:
        """Run one failed event of ``name`` again; False if the recipe is not running here."""
        loaded = self.service.book.recipes.get(name)
        if loaded is None or loaded.plan is None or not loaded.enabled:
            return False
        with self.lock:
            self.work.setdefault(name, _Work()).retries.append(event_id)
        self.wake.set()
        return True

    def take_run_requests(self, names: list[str]) -> None:
        for name in names:
            if reg.take_run_request(self.store, name):
                self.request_run(name)

    # -- inbox ------------------------------------------------------------------------------
    def _take_inbox(self) -> None:
        with self.lock:
            queued = sum(len(w.items) for w in self.work.values())
        if queued >= MAX_QUEUED:
            return
        rows = inbox.claim(self.store, self.service.instance_id, self.config.claim_batch)
        if not rows:
            return
        per_recipe, counts, finished = route(rows, self.index, self.store,
                                             self.service.registry)
        if finished:
            inbox.finish(self.store, finished)
            self.service.inbox_processed(len(finished))
        with self.lock:
            for row_id, count in counts.items():
                self.row_pending[row_id] = count
                self.row_notes[row_id] = []
            for name, items in per_recipe.items():
                self.work.setdefault(name, _Work()).items.extend(items)
        if len(rows) == self.config.claim_batch:
            self.wake.set()  # more may wait

    def _row_done(self, items: list[Routed], note: str) -> None:
        finished: dict[int, str] = {}
        with self.lock:
            for item in items:
                notes = self.row_notes.setdefault(item.row_id, [])
                notes.append(note)
                left = self.row_pending.get(item.row_id, 1) - 1
                if left <= 0:
                    self.row_pending.pop(item.row_id, None)
                    finished[item.row_id] = "; ".join(sorted(set(
                        self.row_notes.pop(item.row_id, []))))
                else:
                    self.row_pending[item.row_id] = left
        if finished:
            inbox.finish(self.store, finished)
            self.service.inbox_processed(len(finished))

    # -- jobs -------------------------------------------------------------------------------
    def _start_jobs(self) -> None:
        now = time.monotonic()
        with self.lock:
            for name, work in self.work.items():
                if self.stopping or len(self.running) >= self.config.workers:
                    return
                if name in self.running or now < work.not_before:
                    continue
                if not work.items and not work.poll and not work.retries and not work.sweep:
                    continue
                items, work.items = work.items, []
                retries, work.retries = work.retries, []
                sweep, work.sweep = work.sweep and not work.poll, False  # a poll sweeps too
                poll, due, work.poll, work.poll_due = work.poll, work.poll_due, False, None
                self.running[name] = self.pool.submit(self._job, name, items, poll, due,
                                                      retries, sweep)

    def _job(self, name: str, items: list[Routed], poll: bool, due: datetime | None,
             retries: list[int] | None = None, sweep: bool = False) -> None:
        try:
            loaded = self.service.book.recipes.get(name)
            if loaded is None or loaded.plan is None or not loaded.enabled:
                if items:
                    self._row_done(items, f"{name}: disabled")
                return
            if items or (sweep and not poll):
                self._deliver(loaded, items)
            if retries and not self.stopping:
                self._retry(loaded, retries)
            if poll and not self.stopping:
                self._poll(loaded, due)
        except Exception as exc:  # never lose the worker; the rows stay for a retry
            log.error("recipe '%s': job failed: %s: %s", name, type(exc).__name__, exc,
                      extra={"recipe": name})
            with self.lock:
                self.work.setdefault(name, _Work()).not_before = time.monotonic() + 5.0
                self.work[name].items[:0] = items
        finally:
            with self.lock:
                self.running.pop(name, None)
            self.wake.set()

    def _after(self, loaded: Any, report: Any, budgets: dict[str, int]) -> None:
        """Count a run's outcomes and its connections' rate budgets, note when its next
        retry is due, log its errors."""
        self.metrics.count_report(loaded.id, report)
        for connection, left in budgets.items():
            self.metrics.budget.labels(connection).set(left)
        if report.dead:
            self.metrics.events.labels(loaded.id, "dead").inc(report.dead)
        with self.lock:
            work = self.work.setdefault(loaded.id, _Work())
            work.retry_at = report.next_retry_at
            if report.held_by:  # another process runs this recipe now: look again soon
                work.not_before = time.monotonic() + 1.0
        for error in report.errors[:3]:
            log.warning("recipe '%s': %s", loaded.name, error, extra={"recipe": loaded.id})

    def _deliver(self, loaded: Any, items: list[Routed]) -> None:
        mode = "webhook" if items else "retry"
        runner = Runner(loaded.plan, self.store, self.service.registry)
        try:
            report, handled = runner.deliver([(i.key, i.record) for i in items], mode=mode)
            budgets = runner.rate_budgets()
        finally:
            runner.close()
        self._after(loaded, report, budgets)
        reg.add_webhook_first(self.store, loaded.id, report.events_new)
        done, rest = items[:handled], items[handled:]
        if rest:  # not claimed (the lease was taken, the database failed): again later
            with self.lock:
                work = self.work.setdefault(loaded.id, _Work())
                work.items[:0] = rest
                work.not_before = max(work.not_before, time.monotonic() + 1.0)
        self._row_done(done, f"{loaded.name}: run {str(report.run_id)[:8]}")

    def _retry(self, loaded: Any, event_ids: list[int]) -> None:
        runner = Runner(loaded.plan, self.store, self.service.registry)
        try:
            report = runner.retry(list(dict.fromkeys(event_ids)))
            budgets = runner.rate_budgets()
        finally:
            runner.close()
        self._after(loaded, report, budgets)

    def _poll(self, loaded: Any, due: datetime | None) -> None:
        started = _now()
        lag = None
        if due is not None:
            lag = max(0.0, (started - due).total_seconds())
            self.metrics.poll_lag.labels(loaded.id).set(lag)
            self.metrics.poll_lag_hist.observe(lag)
        runner = Runner(loaded.plan, self.store, self.service.registry)
        try:
            report = runner.run(mode="serve")
            budgets = runner.rate_budgets()
        finally:
            runner.close()
        self._after(loaded, report, budgets)
        if report.held_by:
            log.info("recipe '%s': not polled, %s holds it", loaded.name, report.held_by,
                     extra={"recipe": loaded.id})
            return
        status = "succeeded" if report.ok else "failed"
        self.metrics.polls.labels(loaded.id, status).inc()
        reg.record_poll(self.store, loaded.id, status=status, run_id=report.run_id,
                        new_events=report.events_new, started_at=started)
        log.info("recipe '%s' polled: %d new, %d failed", loaded.name, report.events_new,
                 report.events_failed, extra={"recipe": loaded.id, "run_id": report.run_id,
                                              "lag": None if lag is None else round(lag, 3),
                                              "due": due.isoformat() if due else None})

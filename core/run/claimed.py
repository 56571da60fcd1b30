"""Stored events run by one of many workers at once, each claimed in the ledger first.

``splice run`` and serve run a recipe under its trigger's lease: one run of a recipe at a time.
Workers (:mod:`splice.worker`) run many events of one recipe at once, on several processes
and hosts, so a :class:`ClaimedRun` does not take the trigger's lease. It holds a lease of its
own, ``run:<run id>`` (holder: the run id), for as long as it lives, and sends nothing for an
event it did not claim for that run id (:mod:`splice.store.queue`, one atomic statement a
claim):

- a delivered record (``keyed``) not seen before is claimed by inserting its event; one seen
  before whose event is pending and orphaned (its run's lease expired: the worker died), or
  failed and due, is claimed by a compare-and-set on the row and resumed with the same
  idempotency keys; one whose event a live run holds is counted ``busy`` (the caller tries
  again later) and one that is finished is left alone;
- stored events by id (``ids``: a poll's new events, the reconciler's orphans and retries)
  are claimed the same way.

Every event is committed to the ledger when it finishes (``commit_every=1``), and what a
killed worker on the same host logged but never committed is recovered first (the run
journal), so a redelivered task repeats at most the request that was in flight, with the same
``Idempotency-Key``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SpliceError, StorageError
from ..store.journal import Journal
from ..store.leases import Lease, try_acquire
from .report import RunReport
from .steps import StepExecutor


@dataclass
class ClaimedReport:
    """What one :class:`ClaimedRun` did. ``done``: the delivered keys that need nothing more
    from the caller (run here, or found seen or finished); ``busy``: keys whose event a live
    run holds (ask again later)."""

    report: RunReport
    busy: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    handled: int = 0  # events claimed and run, or found finished


class ClaimedRun(StepExecutor):
    """One worker run of a plan's stored events (no polling, no trigger lease)."""

    def run(self, *, keyed: Iterable[tuple[str, Any]] = (), ids: Iterable[int] = (),
            mode: str = "worker", due: bool = True) -> ClaimedReport:
        """Claim and run; ``due=False``: failed events in ``ids`` run even before their
        next attempt is due (a retry asked for)."""
        plan, store = self.plan, self.store
        recipe, trig = plan.recipe.id, plan.trigger.ref
        run_id = str(uuid.uuid4())
        out = ClaimedReport(RunReport(None, plan.recipe.name, mode))
        report = out.report
        got = try_acquire(store, f"run:{run_id}", holder=run_id,
                          detail=f"worker run {run_id[:8]}")
        assert isinstance(got, Lease)  # a name nobody else uses
        lease = got
        self.lease = lease
        lease.start_heartbeat()
        try:
            report.run_id = store.start_run(plan.recipe.name, recipe_path=plan.recipe.path,
                                            mode=mode, run_id=run_id)
            journal = Journal(store, recipe, trig, run_id, commit_every=1)
            self._journal = journal
            try:
                journal.recover()  # what a killed worker of this host logged: first
                self._run(out, dict(keyed), list(ids), due)
            except StorageError:
                raise
            except SpliceError as exc:  # credentials refused, budget, open circuit ...
                report.errors.append(str(exc))
            finally:
                self._journal = None
                try:
                    journal.commit(wait=True)
                finally:
                    journal.close()
            report.requests_made = self.requests_made
            self.save_breakers()
            store.finish_run(run_id, status="succeeded" if report.ok else "failed",
                             events_seen=report.events_seen, events_new=report.events_new,
                             events_failed=report.events_failed,
                             requests_made=report.requests_made,
                             error="\n".join(report.errors) or None)
        finally:
            self.lease = None
            try:
                lease.release()
            except StorageError:
                pass  # it expires by itself
        return out

    def _run(self, out: ClaimedReport, batch: dict[str, Any], ids: list[int],
             due: bool) -> None:
        store, report = self.store, out.report
        recipe, trig = self.plan.recipe.id, self.plan.trigger.ref
        journal = self._journal
        assert journal is not None and report.run_id is not None
        report.events_seen += len(batch) + len(ids)
        new: dict[str, int] = {}
        if batch:
            unseen = store.filter_unseen(recipe, trig, list(batch))
            new = store.claim_new_events(recipe, trig, report.run_id,
                                         [(k, r) for k, r in batch.items() if k in unseen])
            others = store.event_states(recipe, trig, [k for k in batch if k not in new])
            out.handled += len(batch) - len(others) - len(new)  # seen, never an event
            out.done.update(k for k in batch if k not in new and k not in others)
            by_id = {event_id: key for key, (event_id, _status) in others.items()}
            ids = [*ids, *by_id]
        else:
            by_id = {}
        resumed = store.claim_events(recipe, trig, report.run_id, ids, due=due) \
            if ids else []
        taken = {e.id for e in resumed}
        if by_id:
            states = {i: s for _k, (i, s) in store.event_states(
                recipe, trig, list(by_id.values())).items()}
            for event_id, key in by_id.items():
                if event_id in taken:
                    continue
                if states.get(event_id) == "pending":
                    out.busy.append(key)  # a live run holds it
                else:
                    out.handled += 1  # finished (succeeded, dead) or failed, not yet due
                    out.done.add(key)
        for key, event_id in new.items():
            report.events_new += 1
            self._one(journal.claimed_event(event_id, key, batch[key]), key, out)
        for event in resumed:
            report.resumed += 1
            self._one(journal.stored_event(event.id, event.key, event.payload,
                                           prior_attempts=event.attempts),
                      by_id.get(event.id, event.key), out)

    def _one(self, event: Any, key: str, out: ClaimedReport) -> None:
        assert self._journal is not None
        if self.process_event(event, out.report):
            out.report.events_succeeded += 1
        else:
            out.report.events_failed += 1
        out.handled += 1
        out.done.add(key)
        self._journal.commit_if_due()

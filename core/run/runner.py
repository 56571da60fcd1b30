"""The runner: one poll of a recipe's trigger, under its lease.

A run takes the lease of the recipe's trigger (:mod:`splice.store.leases`; another run of it
exits at once saying who holds it, or waits), then in order: recovers what a crashed run
logged, resumes the events a stopped or crashed run left pending, retries the failed events
that are due, and polls: each page's unseen records are claimed as events in one atomic
statement (:mod:`splice.store.queue`) and handed to the step executor. Nothing is sent for an
event the run did not claim.

Delivery: at-least-once for events (an event is retried until its steps succeed or it is
dead-lettered), effectively-once for writes (see :mod:`splice.run.steps`). What a run records
goes through ``splice.store.journal``: durable per event in a run log, written to the ledger
in group commits. The trigger's cursor only moves past records whose events succeeded.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

from ..errors import SpliceError, StorageError, ValidationFailed
from ..http.request import dig
from ..model.documents import format_path
from ..store.connection_events import list_connection_events
from ..store.journal import Journal
from ..store.leases import Lease, LeaseInfo, acquire, trigger_lease
from ..store.ledger import EventRecord
from ..store.ownership import adopt_state
from .rehearsal import trial_steps
from .report import RunReport, StepCall
from .steps import StepExecutor, render_defaults

log = logging.getLogger("splice.engine")


class Runner(StepExecutor):
    """Polls one plan's trigger and runs every new event's steps.

    Guards against data that loops: a poll reads at most ``--max-pages``, else the trigger's
    ``max_pages``, else the manifest's, else 1,000 pages (the next poll continues from the
    checkpoint); a page holding the same records as an earlier page of the same poll stops
    the poll with a warning (an API whose cursor changes while the records repeat).
    ``on_call``, when set, receives each request of a ``--dry-run`` as it is planned instead
    of the report holding them all.
    """

    on_call: Callable[[StepCall], None] | None = None
    #: set to a list: a poll only stores its new events (ids appended here) and runs no step;
    #: workers run them (``splice worker``). Pending and due events are not run either.
    produced: list[int] | None = None

    # -- polling ----------------------------------------------------------------------------
    def poll_pages(self, max_pages: int | None = None, checkpoint: dict[str, Any] | None = None
                   ) -> Iterator[tuple[list[Any], dict[str, Any] | None]]:
        """Pages of trigger records, each with the checkpoint that resumes after it (None
        after the last page); ``checkpoint`` continues a listing a previous run left."""
        plan = self.plan
        op = plan.operation
        if plan.trigger.type == "event":
            for records in self._connection_events():
                yield records, None
            return
        if op is None:
            return
        conn_name = plan.recipe.trigger_connection
        self.check_endpoint(conn_name, plan.connector, plan.trigger.id)
        context = {**self.base_context(),
                   "connection": self.public_connection(conn_name, plan.connector)}
        payload = render_defaults(self.template_engine(), {**op.defaults, **plan.trigger.defaults},
                                  context, plan.trigger_defaults)
        payload.update(plan.trigger_input(context) or {})
        cursor_spec = plan.trigger.cursor
        if cursor_spec and cursor_spec["param"] not in plan.recipe.trigger_with:
            cursor = self.store.get_cursor(plan.recipe.id, plan.trigger.ref)
            if cursor is not None:
                payload[cursor_spec["param"]] = cursor
        errors = op.input_checker.errors(payload)
        if errors:
            raise ValidationFailed("trigger input is not valid: " + "; ".join(
                f"{format_path(p)}: {m}" for p, m, _ in errors[:5]))
        client = self.client(conn_name, plan.connector)
        call = self.prepare(op, plan.connector, conn_name, payload)
        # a checkpoint only resumes the very same listing (same URL and query)
        scope = hashlib.sha256(repr((call.url, sorted(call.params.items()))).encode()
                               ).hexdigest()[:16]
        resume = checkpoint.get("next") if checkpoint and checkpoint.get("scope") == scope \
            else None
        for page in client.iter_pages(op, call, max_pages=max_pages, resume=resume):
            yield page.records, {"scope": scope, "next": page.next} if page.next else None

    def poll_records(self, max_pages: int | None = None) -> Iterator[list[Any]]:
        """Pages of trigger records (the trigger's operation, all pages, cursor applied)."""
        for records, _checkpoint in self.poll_pages(max_pages):
            yield records

    def _connection_events(self) -> Iterator[list[Any]]:
        """Records of an ``event`` trigger: the engine's own connection events."""

        recipe, trig = self.plan.recipe.id, self.plan.trigger.ref
        after = int(self.store.get_cursor(recipe, trig) or 0)
        while True:
            page = list_connection_events(self.store, events=self.plan.trigger.events,
                                          after=after)
            if not page:
                return
            yield page
            after = page[-1]["id"]

    def event_key(self, record: Any) -> str | None:
        return self.plan.record_key(record)

    def run(self, *, mode: str = "once", backfill: bool = False,
            max_pages: int | None = None, wait: bool = False,
            on_wait: Callable[[LeaseInfo], None] | None = None,
            reset: bool = False) -> RunReport:
        """One run: under the trigger's lease, recover, resume, retry what is due, poll.

        Per page: seed it (the first run remembers what exists without firing), or fire it
        (each unseen record is claimed as an event and run through the step executor); then
        advance the cursor past what succeeded. Another process holding the lease: nothing
        is done and ``report.held_by`` says who (``wait``: wait for it instead). A storage
        fault is raised (after the run is closed as far as the storage allows). ``reset``
        first forgets the trigger's seen records, cursor and events (under the lease).
        """
        plan = self.plan
        report = RunReport(None, plan.recipe.name, mode)
        if mode == "dry_run":
            try:
                self._poll(report, dry=True, backfill=backfill, max_pages=max_pages)
            except SpliceError as exc:
                report.errors.append(str(exc))
            self._finish(report)
            return report
        return self._under_lease(report, wait, on_wait, lambda: self._run_once(
            report, backfill=backfill, max_pages=max_pages, reset=reset))

    def _run_once(self, report: RunReport, *, backfill: bool, max_pages: int | None,
                  reset: bool) -> None:
        assert self._journal is not None
        self._adopt_named_state()
        self._journal.recover()  # what a crashed run finished but never committed
        if reset:
            report.forgotten = self.store.reset_trigger(self.plan.recipe.id,
                                                        self.plan.trigger.ref, events=True)
        if self.produced is None:
            self._resume_pending(report)
            self._retry_due(report)
        self._poll(report, dry=False, backfill=backfill, max_pages=max_pages)

    def _adopt_named_state(self) -> None:
        """State an older splice kept under the recipe's name moves to its id (the first
        run after the upgrade; what that splice's crashed run logged is recovered first)."""
        recipe, trig = self.plan.recipe, self.plan.trigger.ref
        if recipe.name == recipe.id or self.store.trigger_initialized(recipe.id, trig) or \
                not self.store.trigger_initialized(recipe.name, trig):
            return
        assert self._journal is not None
        Journal(self.store, recipe.name, trig, self._journal.run_id).recover()
        adopt_state(self.store, recipe.name, recipe.id, trig)

    def retry(self, event_ids: list[int] | None = None, *, wait: bool = False,
              on_wait: Callable[[LeaseInfo], None] | None = None) -> RunReport:
        """Re-run failed events now, due or not (``event_ids``, else every failed event of
        the trigger): succeeded steps are reused, failed ones re-sent with the same keys."""
        report = RunReport(None, self.plan.recipe.name, "retry")

        def body() -> None:
            assert self._journal is not None and report.run_id is not None
            self._journal.recover()
            claimed = self.store.claim_failed(self.plan.recipe.id, self.plan.trigger.ref,
                                              report.run_id, due=False, ids=event_ids)
            report.events_seen += len(claimed)
            report.retried += len(claimed)
            self._run_claimed(claimed, report)

        return self._under_lease(report, wait, on_wait, body)

    def _under_lease(self, report: RunReport, wait: bool,
                     on_wait: Callable[[LeaseInfo], None] | None,
                     body: Callable[[], None]) -> RunReport:
        """Take the lease, start the run and its journal, run ``body``, close everything."""
        plan, store = self.plan, self.store
        started = time.monotonic()
        run_id = str(uuid.uuid4())
        got = acquire(store, trigger_lease(plan.recipe.id, plan.trigger.ref), wait=wait,
                      detail=f"run {run_id[:8]}", holder=run_id, on_wait=on_wait)
        if isinstance(got, LeaseInfo):
            report.held_by = got.describe()
            return report
        lease: Lease = got
        self.lease = lease
        lease.start_heartbeat()
        try:
            report.run_id = store.start_run(plan.recipe.name, recipe_path=plan.recipe.path,
                                            mode=report.mode, run_id=run_id)
            self._journal = Journal(store, plan.recipe.id, plan.trigger.ref, run_id,
                                    commit_every=self.commit_every)
            try:
                body()
            except StorageError:
                self._abandon(report)
                raise
            except SpliceError as exc:
                report.errors.append(str(exc))
            except KeyboardInterrupt:
                report.errors.append("interrupted")
                self._finish(report, "interrupted")
                raise
            report.elapsed = time.monotonic() - started
            self._finish(report)
        finally:
            self.lease = None
            try:
                lease.release()
            except StorageError:
                pass  # the lease expires by itself
        return report

    def _poll(self, report: RunReport, *, dry: bool, backfill: bool,
              max_pages: int | None) -> None:
        poll = _Poll(self, dry=dry, backfill=backfill)
        for records, resume in self.poll_pages(max_pages=max_pages or self.plan.recipe.max_pages,
                                               checkpoint=poll.checkpoint):
            poll.pages += 1
            report.events_seen += len(records)
            self.progress(f"page {poll.pages}: {report.events_seen} records")
            keyed = [(k, r) for k, r in ((self.event_key(r), r) for r in records)
                     if k is not None]
            if poll.repeats(keyed):
                log.warning("%s: page %d holds only records already read in this poll "
                            "(the API repeats itself); stopped following pages",
                            self.plan.trigger.ref, poll.pages)
                break
            if poll.seeding:
                self._seed_page(poll, keyed, resume, report)
            else:
                self._fire_page(poll, keyed, resume, report)
        if not dry:
            self._advance_cursor(poll)

    def _seed_page(self, poll: _Poll, keyed: list[tuple[str, Any]], resume: Any,
                   report: RunReport) -> None:
        """Remember what exists without firing: one insert, counted."""
        store, recipe, trig = self.store, self.plan.recipe.id, self.plan.trigger.ref
        keys = [k for k, _ in keyed]
        if poll.dry:
            report.seeded += len(store.filter_unseen(recipe, trig, keys))
        else:
            report.seeded += store.seed_page(recipe, trig, keys, resume)
        if poll.cursor_field:
            for _k, record in keyed:
                poll.see(record)

    def _fire_page(self, poll: _Poll, keyed: list[tuple[str, Any]], resume: Any,
                   report: RunReport) -> None:
        """Every unseen record of the page is claimed as an event (one atomic insert for the
        page) and run through its steps; the page's events are committed with its checkpoint
        (the checkpoint only if all succeeded).

        The group of a page is committed after the NEXT page is claimed (or when the run
        ends). On SQLite both are ONE transaction (``Journal.page``); where a committer
        thread writes groups, a claim started while a group commit held the write lock
        waited for all of it."""
        journal = self._journal
        batch: dict[str, Any] = {}
        claimed: dict[str, int] = {}
        with journal.page() if journal is not None else nullcontext():
            busy = journal.in_flight() if journal is not None else frozenset()
            unseen = self.store.filter_unseen(self.plan.recipe.id, self.plan.trigger.ref,
                                              [k for k, _ in keyed]) - busy
            for k, r in keyed:
                if k in unseen and k not in batch:
                    batch[k] = r
            if journal is not None and batch:
                claimed = self.store.claim_new_events(
                    self.plan.recipe.id, self.plan.trigger.ref, journal.run_id,
                    list(batch.items()))
            if journal is not None:
                journal.commit()  # the previous page's group, with its checkpoint
        if journal is not None and self.produced is not None:  # stored, for the workers
            self.produced.extend(claimed.values())
            report.events_new += len(claimed)
            for _k, r in keyed:
                poll.see(r)
            journal.checkpoint(resume)
            journal.commit()
            return
        for k, r in keyed:
            if journal is not None and k not in claimed:
                poll.see(r)  # seen before, or claimed by another process: not ours to send
                continue
            if journal is None:
                if k not in batch:
                    poll.see(r)
                    continue
                report.events_new += 1
                self._dry_run_event(k, r, report)
                continue
            report.events_new += 1
            event = journal.claimed_event(claimed.pop(k), k, r)
            if self.process_event(event, report):
                report.events_succeeded += 1
                poll.see(r)
            else:
                report.events_failed += 1
                poll.blocked = True
            if claimed:  # (the page's last event waits for the next claim, see above)
                journal.commit_if_due()
        if journal is not None and not poll.blocked:
            journal.checkpoint(resume)  # committed with the page's group (see above)

    def _advance_cursor(self, poll: _Poll) -> None:
        """Mark the trigger initialized and move its cursor past what succeeded."""
        store, recipe, trig = self.store, self.plan.recipe.id, self.plan.trigger.ref
        if not poll.initialized:
            store.mark_initialized(recipe, trig)
        if poll.cursor is not None:
            old = store.get_cursor(recipe, trig)
            if old is None or _later(poll.cursor, old):
                store.set_cursor(recipe, trig, str(poll.cursor))

    def _finish(self, report: RunReport, status: str | None = None) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            try:
                journal.commit(wait=True)
            finally:
                journal.close()  # after a failed commit the run log stays for the next run
        report.requests_made = self.requests_made
        if report.run_id is None:
            return
        self.save_breakers()
        recipe, trig = self.plan.recipe.id, self.plan.trigger.ref
        report.left_pending = self.store.count_events(recipe, trig, "pending",
                                                      run_id=report.run_id)
        report.waiting_retries, report.next_retry_at = self.store.next_retry(recipe, trig)
        status = status or ("succeeded" if report.ok else "failed")
        self.store.finish_run(report.run_id, status=status, events_seen=report.events_seen,
                              events_new=report.events_new, events_failed=report.events_failed,
                              requests_made=report.requests_made,
                              error="\n".join(report.errors) or None)

    def _abandon(self, report: RunReport) -> None:
        """Close what a storage fault interrupted, as far as the storage still allows: the
        run log stays for the next run to recover."""
        journal, self._journal = self._journal, None
        if journal is not None:
            try:
                journal.commit(wait=True)
            except (SpliceError, OSError):
                pass
            finally:
                journal.close_quietly()
        report.requests_made = self.requests_made

    def _run_claimed(self, events: list[EventRecord], report: RunReport) -> None:
        """Run events this run claimed (resumed or retried)."""
        assert self._journal is not None
        for event in events:
            pending = self._journal.stored_event(event.id, event.key, event.payload,
                                                 prior_attempts=event.attempts)
            if self.process_event(pending, report):
                report.events_succeeded += 1
            else:
                report.events_failed += 1
            self._journal.commit_if_due()

    def _resume_pending(self, report: RunReport) -> None:
        """Events a stopped or crashed run left pending are finished first (same keys;
        steps that succeeded are not sent again)."""
        assert self._journal is not None
        claimed = self.store.claim_pending(self.plan.recipe.id, self.plan.trigger.ref,
                                           self._journal.run_id)
        report.resumed += len(claimed)
        self._run_claimed(claimed, report)

    def _retry_due(self, report: RunReport) -> None:
        """Failed events whose next attempt is due run before the poll."""
        assert self._journal is not None
        claimed = self.store.claim_failed(self.plan.recipe.id, self.plan.trigger.ref,
                                          self._journal.run_id, due=True)
        report.retried += len(claimed)
        self._run_claimed(claimed, report)

    def deliver(self, keyed: list[tuple[str, Any]], *, mode: str = "webhook"
                ) -> tuple[RunReport, int]:
        """Events that arrived without a poll (webhook deliveries, already keyed), under the
        trigger's lease: recover, resume, retry what is due, then claim each key not seen
        before as an event (one atomic insert, as a poll's page) and run its steps. Keys seen
        before (a poll or an earlier delivery brought them) are skipped. No cursor moves;
        ``deliver([])`` is a run that only resumes and retries.

        Returns the report and how many of ``keyed`` are handled: all of them once claimed
        (an event the run could not finish stays pending and the next run resumes it), none
        when another process holds the lease (``report.held_by``) or the claim failed."""
        report = RunReport(None, self.plan.recipe.name, mode)
        handled = [0]

        def body() -> None:
            journal, store = self._journal, self.store
            assert journal is not None and report.run_id is not None
            recipe, trig = self.plan.recipe.id, self.plan.trigger.ref
            journal.recover()
            self._resume_pending(report)
            self._retry_due(report)
            batch = dict(keyed)  # the same record twice in one batch fires once
            unseen = store.filter_unseen(recipe, trig, list(batch)) - journal.in_flight()
            claimed = store.claim_new_events(recipe, trig, journal.run_id,
                                             [(k, r) for k, r in batch.items() if k in unseen])
            handled[0] = len(keyed)
            report.events_seen += len(keyed)
            for key, record in batch.items():
                if key not in claimed:
                    continue
                report.events_new += 1
                event = journal.claimed_event(claimed[key], key, record)
                if self.process_event(event, report):
                    report.events_succeeded += 1
                else:
                    report.events_failed += 1
                journal.commit_if_due()

        self._under_lease(report, False, None, body)
        return report, handled[0]

    def _dry_run_event(self, key: str, record: Any, report: RunReport) -> None:
        """Render and validate every step; record the requests instead of sending them."""

        for step in trial_steps(self, record, send=False):
            if step.status == "failed":
                report.errors.append(f"event {key}: {step.label}: {step.error}")
                return
            if step.request is not None:
                report.planned += 1
                call = StepCall(key, step.label, step.request)
                if self.on_call is not None:
                    self.on_call(call)  # streamed: the report does not hold them all
                else:
                    report.calls.append(call)


class _Poll:
    """What one poll of the trigger tracks across its pages."""

    def __init__(self, runner: Runner, *, dry: bool, backfill: bool) -> None:
        plan, store = runner.plan, runner.store
        recipe, trig = plan.recipe.id, plan.trigger.ref
        self.dry = dry
        self.initialized = store.trigger_initialized(recipe, trig)
        self.seeding = not self.initialized and not backfill
        self.cursor_field = "id" if plan.trigger.type == "event" else \
            (plan.trigger.cursor or {}).get("field")
        self.cursor: Any = None
        self.blocked = False  # an event failed: the cursor stays before it
        self.pages = 0
        self.checkpoint = None if dry else store.get_checkpoint(recipe, trig)
        # the repeated-page guard: one fingerprint (the hash of its set of keys) a page read
        self.fingerprints: set[int] = set()

    def repeats(self, keyed: list[tuple[str, Any]]) -> bool:
        """Whether a (non-empty) page holds the same records as a page read earlier in this
        poll, in any order. A fingerprint a page, not every key: a poll of 1,000,000 records
        kept its keys in ~120 MB; a page that mixes records of several earlier pages is not
        caught here, the page limit bounds that poll."""
        if not keyed:
            return False
        fingerprint = hash(frozenset(k for k, _ in keyed))
        if fingerprint in self.fingerprints:
            return True
        self.fingerprints.add(fingerprint)
        return False

    def see(self, record: Any) -> None:
        """A record that is done with (seen before, seeded or succeeded) moves the cursor."""
        if not self.blocked or self.seeding:
            self.cursor = _max_cursor(self.cursor, record, self.cursor_field)



def _max_cursor(current: Any, record: Any, field_path: str | None) -> Any:
    if not field_path:
        return None
    value = dig(record, field_path)
    if value is None:
        return current
    return value if current is None or _later(value, current) else current


def _later(a: Any, b: Any) -> bool:
    """Cursor order: numeric when both are numbers, else text (ISO timestamps sort as text)."""
    try:
        return float(a) > float(b)
    except (TypeError, ValueError):
        return str(a) > str(b)

"""The runner: poll a trigger, dedupe, hand each new event to the step executor.

Delivery: at-least-once for events (an event stays retryable until all its steps succeed),
effectively-once for writes (see :mod:`splice.run.steps`). What a run records goes through
``splice.store.journal``: durable per event in a run log, written to the ledger in group
commits. The trigger's cursor only moves past records whose events succeeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from ..errors import SpliceError, ValidationFailed
from ..http.ratelimit import BudgetExhausted
from ..http.request import dig
from ..model.documents import format_path
from ..store.connection_events import list_connection_events
from ..store.journal import Journal
from .rehearsal import trial_steps
from .report import RunReport, StepCall
from .steps import StepExecutor, render_defaults


class Runner(StepExecutor):
    """Polls one plan's trigger and runs every new event's steps."""

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
        context = {**self.base_context(),
                   "connection": self.public_connection(conn_name, plan.connector)}
        payload = render_defaults(self.template_engine(), {**op.defaults, **plan.trigger.defaults},
                                  context, plan.trigger_defaults)
        payload.update(plan.trigger_input(context) or {})
        cursor_spec = plan.trigger.cursor
        if cursor_spec and cursor_spec["param"] not in plan.recipe.trigger_with:
            cursor = self.store.get_cursor(plan.recipe.name, plan.trigger.ref)
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

        recipe, trig = self.plan.recipe.name, self.plan.trigger.ref
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
            max_pages: int | None = None) -> RunReport:
        """One poll of the trigger and the steps of every new event.

        Per page: seed it (the first run remembers what exists without firing), or fire it
        (each unseen record becomes an event through the step executor); then advance the
        cursor past what succeeded.
        """
        plan, store = self.plan, self.store
        dry = mode == "dry_run"
        report = RunReport(None, plan.recipe.name, mode)
        if not dry:
            report.run_id = store.start_run(plan.recipe.name, recipe_path=plan.recipe.path,
                                            mode=mode)
            self._journal = Journal(store, plan.recipe.name, plan.trigger.ref, report.run_id,
                                    commit_every=self.commit_every)
        try:
            if self._journal is not None:
                self._journal.recover()  # what a crashed run finished but never committed
                self._resume_pending(report)
            poll = _Poll(self, dry=dry, backfill=backfill)
            for records, resume in self.poll_pages(max_pages=max_pages,
                                                   checkpoint=poll.checkpoint):
                poll.pages += 1
                report.events_seen += len(records)
                self.progress(f"page {poll.pages}: {report.events_seen} records")
                keyed = [(k, r) for k, r in ((self.event_key(r), r) for r in records)
                         if k is not None]
                if poll.seeding:
                    self._seed_page(poll, keyed, resume, report)
                else:
                    self._fire_page(poll, keyed, resume, report)
            if not dry:
                self._advance_cursor(poll)
        except SpliceError as exc:
            report.errors.append(str(exc))
        except KeyboardInterrupt:
            report.errors.append("interrupted")
            self._finish(report, "interrupted")
            raise
        self._finish(report)
        return report

    def _seed_page(self, poll: _Poll, keyed: list[tuple[str, Any]], resume: Any,
                   report: RunReport) -> None:
        """Remember what exists without firing: one insert, counted."""
        store, recipe, trig = self.store, self.plan.recipe.name, self.plan.trigger.ref
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
        """Every unseen record of the page becomes an event run through its steps; the page's
        events are committed with its checkpoint (the checkpoint only if all succeeded)."""
        journal = self._journal
        busy = journal.in_flight() if journal is not None else frozenset()
        unseen = self.store.filter_unseen(self.plan.recipe.name, self.plan.trigger.ref,
                                          [k for k, _ in keyed]) - busy
        batch: dict[str, Any] = {}
        for k, r in keyed:
            if k in unseen and k not in batch:
                batch[k] = r
        for k, r in keyed:
            if k not in batch:
                poll.see(r)
                continue
            report.events_new += 1
            if journal is None:
                self._dry_run_event(k, r, report)
                continue
            if self.process_event(journal.new_event(k, r), report):
                report.events_succeeded += 1
                poll.see(r)
            else:
                report.events_failed += 1
                poll.blocked = True
            journal.commit_if_due()
        if journal is not None:
            if not poll.blocked:
                journal.checkpoint(resume)
            journal.commit()

    def _advance_cursor(self, poll: _Poll) -> None:
        """Mark the trigger initialized and move its cursor past what succeeded."""
        store, recipe, trig = self.store, self.plan.recipe.name, self.plan.trigger.ref
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
        status = status or ("succeeded" if report.ok else "failed")
        self.store.finish_run(report.run_id, status=status, events_seen=report.events_seen,
                              events_new=report.events_new, events_failed=report.events_failed,
                              requests_made=report.requests_made,
                              error="\n".join(report.errors) or None)

    def _resume_pending(self, report: RunReport) -> None:
        """Events a crash left half-done are finished first (same keys, nothing re-sent)."""
        assert self._journal is not None
        for event in self.store.pending_events(self.plan.recipe.name):
            if self.process_event(self._journal.stored_event(event.id, event.key, event.payload),
                                  report):
                report.events_succeeded += 1
            else:
                report.events_failed += 1
            self._journal.commit_if_due()

    def retry(self, events: list[Any]) -> RunReport:
        """Re-run failed events: succeeded steps are reused, failed ones re-sent."""
        report = RunReport(None, self.plan.recipe.name, "retry")
        report.run_id = self.store.start_run(
            self.plan.recipe.name, recipe_path=self.plan.recipe.path, mode="retry")
        journal = self._journal = Journal(self.store, self.plan.recipe.name,
                                          self.plan.trigger.ref, report.run_id,
                                          commit_every=self.commit_every)
        try:
            journal.recover()
            for event in events:
                report.events_seen += 1
                if self.process_event(journal.stored_event(event.id, event.key, event.payload),
                                      report):
                    report.events_succeeded += 1
                else:
                    report.events_failed += 1
                journal.commit_if_due()
        except BudgetExhausted as exc:
            report.errors.append(str(exc))
        self._finish(report)
        return report

    def _dry_run_event(self, key: str, record: Any, report: RunReport) -> None:
        """Render and validate every step; record the requests instead of sending them."""

        for step in trial_steps(self, record, send=False):
            if step.status == "failed":
                report.errors.append(f"event {key}: {step.label}: {step.error}")
                return
            if step.request is not None:
                report.calls.append(StepCall(key, step.label, step.request))


class _Poll:
    """What one poll of the trigger tracks across its pages."""

    def __init__(self, runner: Runner, *, dry: bool, backfill: bool) -> None:
        plan, store = runner.plan, runner.store
        recipe, trig = plan.recipe.name, plan.trigger.ref
        self.dry = dry
        self.initialized = store.trigger_initialized(recipe, trig)
        self.seeding = not self.initialized and not backfill
        self.cursor_field = "id" if plan.trigger.type == "event" else \
            (plan.trigger.cursor or {}).get("field")
        self.cursor: Any = None
        self.blocked = False  # an event failed: the cursor stays before it
        self.pages = 0
        self.checkpoint = None if dry else store.get_checkpoint(recipe, trig)

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

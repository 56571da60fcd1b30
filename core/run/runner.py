"""The runner: poll a trigger, dedupe, run each new event's steps, record everything.

Delivery: at-least-once for events (an event stays retryable until all its steps succeed),
effectively-once for writes (each step's result and idempotency key are recorded per
event+step+item; a retried event reuses the results of steps that already succeeded and
re-sends a failed write with the same ``Idempotency-Key``). What a run records goes through
``splice.journal``: durable per event in a run log, written to the ledger in group commits.
The trigger's cursor only moves past records whose events succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import ConfigError, SpliceError, TemplateError, ValidationFailed
from ..http.client import ApiClient, Attempt, PreparedCall, prepare_call
from ..http.ratelimit import BudgetExhausted, limiter_for
from ..model.manifest import MISSING, Connector, Operation
from ..secrets import redact_headers
from ..store.database import Store
from ..store.journal import COMMIT_EVERY, Journal
from ..store.ledger import PendingEvent
from .plan import Plan, StepPlan

log = logging.getLogger("splice.engine")
KEY_SEP = "\x1f"


@dataclass
class StepCall:
    """A request the runner made or (in --dry-run) would make."""

    event_key: str
    step: str
    request: dict[str, Any]
    mapped_from: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    run_id: str | None
    recipe: str
    mode: str
    events_seen: int = 0
    events_new: int = 0
    events_succeeded: int = 0
    events_failed: int = 0
    seeded: int = 0
    requests_made: int = 0
    calls: list[StepCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.events_failed == 0 and not self.errors


def _now() -> datetime:
    return datetime.now(UTC)


def loop_vars(index0: int, length: int) -> dict[str, Any]:
    """``loop`` inside a ``for_each`` step."""
    return {"index": index0 + 1, "index0": index0, "first": index0 == 0,
            "last": index0 == length - 1, "length": length}


def idempotency_key(recipe: str, trigger: str, event_key: str, step: int, item: int) -> str:
    raw = KEY_SEP.join([recipe, trigger, event_key, str(step), str(item)])
    return "splice-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


class Runner:
    """Runs one plan against the state store."""

    def __init__(self, plan: Plan, store: Store, registry: Any, *,
                 transport: httpx.BaseTransport | None = None,
                 now: Callable[[], datetime] = _now, verbose: bool = False,
                 progress: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None,
                 commit_every: int = COMMIT_EVERY) -> None:
        self.plan = plan
        self.store = store
        self.registry = registry
        self.transport = transport
        self.now = now
        self.verbose = verbose
        self.progress = progress or (lambda message: None)
        self.sleep = sleep
        self._clients: dict[str, ApiClient] = {}
        self._engine: Any = None
        self._op_templates: dict[tuple[str, str], Any] = {}
        self.commit_every = commit_every
        self._journal: Journal | None = None
        self._connections: dict[str, Any] = {}

    # -- connections ------------------------------------------------------------------------
    def connection(self, name: str | None, connector: Connector) -> Any:
        if name is None:
            return None
        if name not in self._connections:
            record = self.store.get_connection(name)
            if record is None:
                raise ConfigError(f"connection '{name}' does not exist",
                                  hint=f"create it with `splice connect {connector.id} "
                                       f"--name {name}`")
            self._connections[name] = record
        return self._connections[name]

    def public_connection(self, name: str | None, connector: Connector) -> dict[str, Any]:
        return public_fields(connector, self.connection(name, connector), name)

    def client(self, name: str | None, connector: Connector) -> ApiClient:
        key = f"{name}\x00{connector.id}"
        if key not in self._clients:
            kwargs: dict[str, Any] = {"transport": self.transport, "on_request": self._trace}
            if self.sleep is not None:
                kwargs["sleep"] = self.sleep
            self._clients[key] = connection_client(connector, self.connection(name, connector),
                                                   self.store, self.registry, **kwargs)
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    @property
    def requests_made(self) -> int:
        return sum(c.requests_made for c in self._clients.values())

    def _trace(self, request: httpx.Request, response: httpx.Response | None,
               attempt: Attempt) -> None:
        if not self.verbose:
            return
        status = response.status_code if response is not None else attempt.error
        url = request.url.copy_with(query=None)
        waits = "".join(f", {label} {value:.1f}s" for label, value in (
            ("waited for the rate budget", attempt.budget_wait),
            ("retrying in", attempt.next_wait)) if value)
        log.info("HTTP %s %s -> %s (attempt %d, %.0f ms%s) headers=%s", request.method, url,
                 status, attempt.number, attempt.elapsed * 1000, waits,
                 redact_headers(dict(request.headers)))

    # -- templates --------------------------------------------------------------------------
    def base_context(self) -> dict[str, Any]:
        r = self.plan.recipe
        return {"recipe": {"name": r.name, "description": r.description, "vars": r.vars},
                "now": self.now()}

    def render_input(self, op: Operation, defaults: Any, mapping: Any, context: dict[str, Any],
                     base: tuple[str | int, ...]) -> dict[str, Any]:
        """Defaults + the step's mapping, validated against the action's input schema.

        A default that reads a connection field the connection does not have (say
        ``connection.locationId`` on an agency token) is left out rather than failing.
        Problems name the recipe's file:line:column.
        """
        merged = render_defaults(self.registry_engine(), op.defaults, context, defaults)
        merged.update(mapping(context) or {})
        errors = op.input_checker.errors(merged)
        if errors:
            doc = self.plan.recipe.doc
            parts = [str(doc.problem((*base, *p), m, key=at_key)) for p, m, at_key in errors[:10]]
            raise ValidationFailed(f"{op.ref} input is not valid (nothing was sent):\n  " +
                                   "\n  ".join(parts))
        return merged

    def prepare(self, op: Operation, connector: Connector, connection: str | None,
                payload: dict[str, Any], idem: str | None = None) -> PreparedCall:
        record = self.connection(connection, connector)
        base = record.base_url if record is not None and record.base_url else connector.base_url
        call = prepare_call(op, connector, payload, base_url=base, idempotency_key=idem,
                            **self._rendered_parts(op, payload, connection, connector))
        return call

    def _rendered_parts(self, op: Operation, payload: dict[str, Any], connection: str | None,
                        connector: Connector) -> dict[str, Any]:
        if not op.headers and not isinstance(op.query, dict) and op.body is MISSING:
            return {}
        ctx = {"input": payload, "connection": self.public_connection(connection, connector)}
        out: dict[str, Any] = {}
        if op.headers:
            out["rendered_headers"] = {k: str(v) for k, v in
                                       self._op_template(op, "headers", op.headers)(ctx).items()}
        if isinstance(op.query, dict):
            out["rendered_query"] = self._op_template(op, "query", op.query)(ctx)
        if op.body is not MISSING:
            out["rendered_body"] = self._op_template(op, "body", op.body)(ctx)
        return out

    def _op_template(self, op: Operation, part: str, value: Any) -> Any:
        """An operation's header/query/body template, compiled once per runner."""
        key = (op.ref, part)
        if key not in self._op_templates:
            self._op_templates[key] = self.registry_engine().compile_mapping(
                value, where=f"{op.ref}.{part}")
        return self._op_templates[key]

    def registry_engine(self) -> Any:
        if self._engine is None:
            from ..mapping.templates import TemplateEngine

            self._engine = TemplateEngine(self.registry.filters)
        return self._engine

    # -- polling ----------------------------------------------------------------------------
    def poll_pages(self, max_pages: int | None = None, checkpoint: dict[str, Any] | None = None
                   ) -> Iterator[tuple[list[Any], dict[str, Any] | None]]:
        """Pages of trigger records, each with the checkpoint that resumes after it (None
        after the last page); ``checkpoint`` continues a listing a previous run left."""
        plan = self.plan
        op = plan.operation
        if plan.trigger.type == "event":
            for records in self._engine_events():
                yield records, None
            return
        if op is None:
            return
        conn_name = plan.recipe.trigger_connection
        context = {**self.base_context(),
                   "connection": self.public_connection(conn_name, plan.connector)}
        payload = render_defaults(self.registry_engine(), {**op.defaults, **plan.trigger.defaults},
                                  context, plan.trigger_defaults)
        payload.update(plan.trigger_input(context) or {})
        cursor_spec = plan.trigger.cursor
        if cursor_spec and cursor_spec["param"] not in plan.recipe.trigger_with:
            cursor = self.store.get_cursor(plan.recipe.name, plan.trigger.ref)
            if cursor is not None:
                payload[cursor_spec["param"]] = cursor
        errors = op.input_checker.errors(payload)
        if errors:
            from ..model.documents import format_path
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

    def _engine_events(self) -> Iterator[list[Any]]:
        """Records of an ``event`` trigger: the engine's own connection events."""
        from ..store.connection_events import list_connection_events

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
        plan = self.plan
        ctx = {"record": record, "event": record}
        if plan.filter is not None and not plan.filter(ctx):
            return None
        key = str(plan.key(ctx)) if plan.key is not None else None
        if key is None:
            return None
        if plan.version is not None:
            key = f"{key}@{plan.version(ctx)}"
        return key

    def run(self, *, mode: str = "once", backfill: bool = False,
            max_pages: int | None = None) -> RunReport:
        """One poll of the trigger and the steps of every new event."""
        plan, store = self.plan, self.store
        recipe, trig = plan.recipe.name, plan.trigger.ref
        dry = mode == "dry_run"
        report = RunReport(None, recipe, mode)
        journal = None
        if not dry:
            report.run_id = store.start_run(
                recipe, recipe_path=plan.recipe.path, mode=mode)
            journal = self._journal = Journal(store, recipe, trig, report.run_id,
                                              commit_every=self.commit_every)
        try:
            if journal is not None:
                journal.recover()  # what a crashed run finished but never committed
                self._resume_pending(report)
            initialized = store.trigger_initialized(recipe, trig)
            seeding = not initialized and not backfill
            cursor_field = "id" if plan.trigger.type == "event" else \
                (plan.trigger.cursor or {}).get("field")
            cursor_value = None
            cursor_blocked = False
            page_no = 0
            checkpoint = None if dry else store.get_checkpoint(recipe, trig)
            for records, resume in self.poll_pages(max_pages=max_pages, checkpoint=checkpoint):
                page_no += 1
                report.events_seen += len(records)
                self.progress(f"page {page_no}: {report.events_seen} records")
                keyed = [(k, r) for k, r in ((self.event_key(r), r) for r in records)
                         if k is not None]
                if seeding:  # remember what exists without firing: one insert, counted
                    keys = [k for k, _ in keyed]
                    if dry:
                        report.seeded += len(store.filter_unseen(recipe, trig, keys))
                    else:
                        with store.batch():
                            report.seeded += store.add_seen(recipe, trig, keys)
                            store.set_checkpoint(recipe, trig, resume)
                    for _k, r in keyed:
                        cursor_value = _max_cursor(cursor_value, r, cursor_field)
                    continue
                busy = journal.in_flight() if journal is not None else frozenset()
                unseen = store.filter_unseen(recipe, trig, [k for k, _ in keyed]) - busy
                batch: dict[str, Any] = {}
                for k, r in keyed:
                    if k in unseen and k not in batch:
                        batch[k] = r
                for k, r in keyed:
                    if k not in batch:
                        if not cursor_blocked:
                            cursor_value = _max_cursor(cursor_value, r, cursor_field)
                        continue
                    report.events_new += 1
                    if journal is None:
                        self._dry_run_event(k, r, report)
                        continue
                    if self.process_event(journal.new_event(k, r), report):
                        report.events_succeeded += 1
                        if not cursor_blocked:
                            cursor_value = _max_cursor(cursor_value, r, cursor_field)
                    else:
                        report.events_failed += 1
                        cursor_blocked = True
                    journal.commit_if_due()
                if journal is not None:  # the page's events, with its checkpoint if all done
                    if not cursor_blocked:
                        journal.checkpoint(resume)
                    journal.commit()
            if not dry:
                if not initialized:
                    store.mark_initialized(recipe, trig)
                if cursor_value is not None:
                    old = store.get_cursor(recipe, trig)
                    if old is None or _later(cursor_value, old):
                        store.set_cursor(recipe, trig, str(cursor_value))
        except SpliceError as exc:
            report.errors.append(str(exc))
        except KeyboardInterrupt:
            report.errors.append("interrupted")
            self._finish(report, "interrupted")
            raise
        self._finish(report)
        return report

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

    # -- steps ------------------------------------------------------------------------------
    def process_event(self, event: PendingEvent, report: RunReport) -> bool:
        """Run every step for one event. A new event (no id yet) has no step results, so the
        ledger is only consulted for stored ones (resumed or retried)."""
        journal = self._journal
        assert journal is not None
        ctx: dict[str, Any] = {**self.base_context(), "trigger": event.payload, "steps": {}}
        try:
            for step in self.plan.steps:
                ctx["steps"][step.spec.id or f"_{step.index}"] = self._run_step(
                    step, event, ctx)
        except BudgetExhausted:
            raise  # nothing was sent: the event stays pending and the next run resumes it
        except SpliceError as exc:
            journal.finish(event, "failed", error=str(exc))
            report.errors.append(f"event {event.key}: {exc}")
            return False
        journal.finish(event, "succeeded")
        return True

    def _run_step(self, step: StepPlan, event: PendingEvent, ctx: dict[str, Any]) -> Any:
        journal = self._journal
        assert journal is not None
        ctx = {**ctx, "connection": self.public_connection(step.connection, step.connector)}
        if step.when is not None and not step.when(ctx):
            journal.step(event, step.index, step_id=step.spec.id, status="skipped", attempts=0)
            return None
        items: list[Any] = [None]
        if step.for_each is not None:
            value = step.for_each(ctx)
            if value is None:
                value = []
            if not isinstance(value, list):
                raise ValidationFailed(f"{step.spec.label}.for_each must give a list, got "
                                       f"{type(value).__name__}")
            items = value
        outputs: list[Any] = [None] * len(items)
        todo: list[tuple[int, int, dict[str, Any]]] = []
        for i, item in enumerate(items):
            item_index = i if step.for_each is not None else -1
            done = None if event.id is None else \
                self.store.get_step_result(event.id, step.index, item_index)
            if done is not None and done.status == "succeeded":
                outputs[i] = done.output
                continue
            item_ctx = ctx
            if step.for_each is not None:
                item_ctx = {**ctx, "item": item, "loop": loop_vars(i, len(items))}
            todo.append((i, item_index, item_ctx))
        workers = min(step.spec.concurrency, len(todo))
        if workers <= 1:
            for i, item_index, item_ctx in todo:
                outputs[i] = self._call(step, event, item_index, item_ctx)
        else:
            self._run_items(step, event, todo, outputs, workers)
        return outputs if step.for_each is not None else outputs[0]

    def _run_items(self, step: StepPlan, event: PendingEvent,
                   todo: list[tuple[int, int, dict[str, Any]]], outputs: list[Any],
                   workers: int) -> None:
        """Items of a ``concurrency: N`` step on N threads (one sync client shared; threads
        measured faster than httpx.AsyncClient here). Results keep the items' order; the first
        error is raised after every started item finished (each one's result is recorded)."""
        from concurrent.futures import ThreadPoolExecutor

        self.client(step.connection, step.connector)  # create the shared client up front
        error: SpliceError | None = None
        with ThreadPoolExecutor(workers, thread_name_prefix="splice-step") as pool:
            futures = [(i, pool.submit(self._call, step, event, item_index, item_ctx))
                       for i, item_index, item_ctx in todo]
            for i, future in futures:
                try:
                    outputs[i] = future.result()
                except SpliceError as exc:
                    error = error or exc
        if error is not None:
            raise error

    def _call(self, step: StepPlan, event: PendingEvent, item_index: int,
              ctx: dict[str, Any]) -> Any:
        """Render, validate, reserve the idempotency key, send, record."""
        journal, op = self._journal, step.operation
        assert journal is not None
        idem = idempotency_key(self.plan.recipe.name, self.plan.trigger.ref, event.key,
                               step.index, item_index)
        request: dict[str, Any] | None = None
        attempts: list[Attempt] = []
        try:
            payload = self.render_input(op, step.defaults, step.mapping, ctx,
                                        ("steps", step.index, "with"))
            call = self.prepare(op, step.connector, step.connection, payload, idem)
            request = call.describe()
            request["headers"] = call.headers  # redacted when recorded
            client = self.client(step.connection, step.connector)
            journal.reserve(event, idem, step.index, item_index)
            output = self._send(client, op, call, attempts)
        except BudgetExhausted:
            raise
        except SpliceError as exc:
            if len(attempts) > 1 and request is not None:
                request["attempts"] = [a.describe() for a in attempts]
            journal.step(event, step.index, item_index, step_id=step.spec.id, status="failed",
                         idempotency_key=idem, request=request, error=str(exc),
                         attempts=len(attempts))
            raise
        if len(attempts) > 1 and request is not None:  # what each try got and waited
            request["attempts"] = [a.describe() for a in attempts]
        journal.step(event, step.index, item_index, done_key=idem, step_id=step.spec.id,
                     status="succeeded", idempotency_key=idem, request=request, output=output,
                     attempts=len(attempts))
        return output

    def _send(self, client: ApiClient, op: Operation, call: PreparedCall,
              attempts: list[Attempt]) -> Any:
        if op.is_list:
            records: list[Any] = []
            for _body, page in client.pages(op, call):
                records.extend(page)
            return {"records": records, "count": len(records)}
        result = client.send(op, call)
        attempts.extend(result.attempts)
        body = result.json()
        problems = op.output_checker.errors(body) if body is not None else []
        if problems:
            log.warning("%s: response does not match the declared output schema (%s)",
                        op.ref, problems[0][1])
        return body

    def _dry_run_event(self, key: str, record: Any, report: RunReport) -> None:
        """Render and validate every step; record the requests instead of sending them."""
        from .trial import trial_steps

        for step in trial_steps(self, record, send=False):
            if step.status == "failed":
                report.errors.append(f"event {key}: {step.label}: {step.error}")
                return
            if step.request is not None:
                report.calls.append(StepCall(key, step.label, step.request))


def render_defaults(engine: Any, defaults: dict[str, Any], context: dict[str, Any],
                    compiled: Any = None) -> dict[str, Any]:
    """Operation/trigger defaults rendered for ``context``. A default that reads something
    the context lacks (``connection.locationId`` on an agency token) is left out."""
    if not defaults:
        return {}
    try:
        whole = compiled or engine.compile_mapping(defaults, where="defaults")
        return dict(whole(context) or {})
    except TemplateError:
        out: dict[str, Any] = {}
        for key, value in defaults.items():
            try:
                out.update(engine.compile_mapping({key: value}, where="defaults")(context))
            except TemplateError:
                continue
        return out


def public_fields(connector: Connector, record: Any, name: str | None = None
                  ) -> dict[str, Any]:
    """What templates see as ``connection``: its name, base URL and non-secret token fields."""
    base = record.base_url if record is not None and record.base_url else connector.base_url
    out: dict[str, Any] = {"name": record.name if record is not None else name,
                           "base_url": base}
    if record is not None:
        fields = record.config.get("fields") or {}
        for f in connector.auth.get("token_fields", []) or []:
            if f in fields:
                out[f] = fields[f]
    return out


def connection_client(connector: Connector, record: Any, store: Store, registry: Any,
                      **kwargs: Any) -> ApiClient:
    """An API client for ``connector`` using the stored connection ``record`` (may be None)."""
    base = record.base_url if record is not None and record.base_url else connector.base_url
    auth = None
    if connector.auth_type != "none":
        factory = registry.auth_types.get(connector.auth_type)
        if factory is None:
            raise ConfigError(f"no plugin provides auth type '{connector.auth_type}'")
        if record is None:
            raise ConfigError(f"connector '{connector.id}' needs a connection")
        if record.connector != connector.id:
            raise ConfigError(f"connection '{record.name}' is for '{record.connector}', "
                              f"not '{connector.id}'")
        auth = factory(connector, record, store)
    kwargs.setdefault("limiter", limiter_for(connector, record, store))
    return ApiClient(connector, base_url=base, auth=auth, **kwargs)


def _max_cursor(current: Any, record: Any, field_path: str | None) -> Any:
    if not field_path:
        return None
    from ..http.client import dig
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

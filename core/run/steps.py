"""One stored event through its steps: the unit that ``run``, a webhook inbox and a worker share.

:class:`StepExecutor` renders each step's mapping, validates it against the action's input
schema, reserves the idempotency key, sends, and records the result through the run journal.
A retried event reuses the results of steps that already succeeded and re-sends a failed write
with the same ``Idempotency-Key``. It never polls: :class:`~splice.run.runner.Runner` adds that.

It only runs events its caller claimed (``splice.store.queue``) and, with a ``lease``, checks
before each event that the lease is still held. A failed event is classified
(:mod:`splice.run.retry`): retried later after a back-off, or dead-lettered with the command
that fixes it. Each connection's client has a circuit breaker (:mod:`splice.http.breaker`)
whose state is loaded from and saved to the store (:meth:`StepExecutor.save_breakers`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ..connections.client import connection_client, public_fields
from ..connections.endpoints import check_enabled
from ..errors import (
    CircuitOpen,
    ConfigError,
    LeaseLost,
    OutcomeUnknown,
    SpliceError,
    StorageError,
    TemplateError,
    ValidationFailed,
)
from ..http.breaker import CircuitBreaker
from ..http.client import ApiClient, Attempt
from ..http.ratelimit import BudgetExhausted
from ..http.request import CallTemplate, PreparedCall
from ..mapping.templates import TemplateEngine
from ..model.manifest import MISSING, Connector, Operation
from ..secrets import redact_headers
from ..store.breakers import load_breaker, save_breaker
from ..store.database import Store
from ..store.endpoints import disabled as disabled_endpoints
from ..store.journal import COMMIT_EVERY, Journal
from ..store.leases import Lease
from ..store.ledger import PendingEvent
from .plan import Plan, StepPlan, split_label
from .report import RunReport
from .retry import classify, next_attempt_at

#: errors that stop the run without failing the event: nothing more is sent
STOPS = (BudgetExhausted, CircuitOpen, StorageError, LeaseLost)
_IN_FLIGHT = "\x00in_flight"  # context flag: this step's request was sent by a dead run

log = logging.getLogger("splice.run")
KEY_SEP = "\x1f"


def _now() -> datetime:
    return datetime.now(UTC)


def loop_vars(index0: int, length: int) -> dict[str, Any]:
    """``loop`` inside a ``for_each`` step."""
    return {"index": index0 + 1, "index0": index0, "first": index0 == 0,
            "last": index0 == length - 1, "length": length}


def idempotency_key(recipe: str, trigger: str, event_key: str, step: int, item: int) -> str:
    raw = KEY_SEP.join([recipe, trigger, event_key, str(step), str(item)])
    return "splice-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


class StepExecutor:
    """Runs stored events of one plan through their steps; knows nothing of polling."""

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
        self._template_engine: Any = None
        self._op_templates: dict[tuple[str, str], Any] = {}
        self._call_templates: dict[tuple[str, str], CallTemplate] = {}
        self.commit_every = commit_every
        self._journal: Journal | None = None
        self._connections: dict[str, Any] = {}
        self._public: dict[tuple[str | None, str], dict[str, Any]] = {}
        self._recipe_context: dict[str, Any] | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._disabled: dict[str, set[str]] = {}
        self.lease: Lease | None = None  # checked before each event when set

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

    def check_endpoint(self, name: str | None, connector: Connector, endpoint: str) -> None:
        """Refuse (nothing sent) an endpoint disabled for the connection; the disabled set
        is read once per executor, like the connection record."""
        if name is None:
            return
        if name not in self._disabled:
            self._disabled[name] = disabled_endpoints(self.store, name)
        check_enabled(self.store, connector, name, endpoint, self._disabled[name])

    def public_connection(self, name: str | None, connector: Connector) -> dict[str, Any]:
        key = (name, connector.id)  # per run, like the connection record it is read from
        if key not in self._public:
            self._public[key] = public_fields(connector, self.connection(name, connector), name)
        return self._public[key]

    def breaker(self, name: str | None, connector: Connector) -> CircuitBreaker:
        """The circuit breaker of a connection, as the last run left it."""
        key = name or f"connector:{connector.id}"
        if key not in self._breakers:
            saved = load_breaker(self.store, key)
            threshold = self.plan.recipe.retry.breaker
            self._breakers[key] = CircuitBreaker(key, threshold) if saved is None else \
                CircuitBreaker(key, threshold, state=saved.state, failures=saved.failures,
                               opened_at=saved.opened_at, last_error=saved.last_error)
        return self._breakers[key]

    def save_breakers(self) -> list[CircuitBreaker]:
        """Remember every breaker this executor used; returns the ones left open."""
        for breaker in self._breakers.values():
            save_breaker(self.store, breaker.name, state="open" if breaker.is_open else
                         "closed", failures=breaker.failures, opened_at=breaker.opened_at,
                         last_error=breaker.last_error)
        return [b for b in self._breakers.values() if b.is_open]

    def client(self, name: str | None, connector: Connector) -> ApiClient:
        key = f"{name}\x00{connector.id}"
        if key not in self._clients:
            kwargs: dict[str, Any] = {"transport": self.transport, "on_request": self._trace,
                                      "breaker": self.breaker(name, connector)}
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

    def rate_budgets(self) -> dict[str, int]:
        """connection -> requests left in its API's window, as the API last said."""
        out: dict[str, int] = {}
        for key, client in self._clients.items():
            left = client.limiter.remaining() if client.limiter is not None else None
            if left is not None:
                out[key.split("\x00", 1)[0]] = left
        return out

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
        if self._recipe_context is None:
            r = self.plan.recipe
            self._recipe_context = {"name": r.name, "description": r.description,
                                    "vars": r.vars}
        return {"recipe": self._recipe_context, "now": self.now()}

    def render_input(self, op: Operation, defaults: Any, mapping: Any, context: dict[str, Any],
                     base: tuple[str | int, ...]) -> dict[str, Any]:
        """Defaults + the step's mapping, validated against the action's input schema.

        A default that reads a connection field the connection does not have (say
        ``connection.locationId`` on an agency token) is left out rather than failing.
        Problems name the recipe's file:line:column.
        """
        merged = render_defaults(self.template_engine(), op.defaults, context, defaults)
        merged.update(self.located(mapping, context, base) or {})
        errors = op.input_checker.errors(merged)
        if errors:
            doc = self.plan.recipe.doc
            parts = [str(doc.problem((*base, *p), m, key=at_key)) for p, m, at_key in errors[:10]]
            raise ValidationFailed(f"{op.ref} input is not valid (nothing was sent):\n  " +
                                   "\n  ".join(parts))
        return merged

    def located(self, template: Any, context: dict[str, Any], base: tuple[str | int, ...]
                ) -> Any:
        """``template(context)``; a failure is reported at the recipe's file:line:column."""
        try:
            return template(context)
        except TemplateError as exc:
            path, message = split_label(exc.message, base)
            problem = self.plan.recipe.doc.problem(path, message)
            raise type(exc)(str(problem), hint=exc.hint) from None

    def prepare(self, op: Operation, connector: Connector, connection: str | None,
                payload: dict[str, Any], idem: str | None = None) -> PreparedCall:
        self.check_endpoint(connection, connector, op.id)
        record = self.connection(connection, connector)
        base = record.base_url if record is not None and record.base_url else connector.base_url
        key = (op.ref, base)
        template = self._call_templates.get(key)
        if template is None:
            template = self._call_templates[key] = CallTemplate(op, connector, base)
        return template.prepare(payload, idempotency_key=idem,
                                **self._rendered_parts(op, payload, connection, connector))

    def _rendered_parts(self, op: Operation, payload: dict[str, Any], connection: str | None,
                        connector: Connector) -> dict[str, Any]:
        if not op.headers and not isinstance(op.query, dict) and op.body is MISSING:
            return {}
        ctx = {"input": payload, "connection": self.public_connection(connection, connector)}
        return rendered_parts(op, ctx, lambda part, value: self._op_template(op, part, value))

    def _op_template(self, op: Operation, part: str, value: Any) -> Any:
        """An operation's header/query/body template, compiled once per runner."""
        key = (op.ref, part)
        if key not in self._op_templates:
            self._op_templates[key] = self.template_engine().compile_mapping(
                value, where=f"{op.ref}.{part}")
        return self._op_templates[key]

    def template_engine(self) -> Any:
        if self._template_engine is None:
            self._template_engine = TemplateEngine(self.registry.filters)
        return self._template_engine

    # -- steps ------------------------------------------------------------------------------
    def process_event(self, event: PendingEvent, report: RunReport) -> bool:
        """Run every step for one claimed event. A new event has no step results, so the
        ledger is only consulted for stored ones (resumed or retried).

        A failure is classified: retried by a later run (``next_attempt_at``), or dead at
        once or after the recipe's last attempt. An error that concerns every event (refused
        credentials, a missing connection) is raised after the event is recorded, and so are
        the ones that leave it pending (budget, open circuit, storage, lost lease)."""
        journal = self._journal
        assert journal is not None
        if self.lease is not None:
            self.lease.check()  # never a side effect after another process took over
        if event.id is not None and not event.fresh:  # resumed or retried: its keys so far
            for key, place in self.store.event_idempotency_keys(event.id).items():
                event.keys.setdefault(key, place)
        ctx: dict[str, Any] = {**self.base_context(), "trigger": event.payload, "steps": {}}
        try:
            for step in self.plan.steps:
                ctx["steps"][step.spec.id or f"_{step.index}"] = self._run_step(
                    step, event, ctx)
        except STOPS:
            raise  # nothing more was sent: the event stays pending and the next run resumes it
        except SpliceError as exc:
            self._failed(event, exc, report)
            return False
        journal.finish(event, "succeeded")
        return True

    def _failed(self, event: PendingEvent, exc: SpliceError, report: RunReport) -> None:
        """Record a failed attempt: retry later, or dead-letter with the fixing command."""
        assert self._journal is not None
        policy = self.plan.recipe.retry
        verdict = classify(exc, recipe_path=self.plan.recipe.path, event_id=event.id)
        attempt = event.prior_attempts + 1
        message = str(exc)
        if verdict.retryable and attempt < policy.attempts:
            when = next_attempt_at(policy, attempt, _now())
            self._journal.finish(event, "failed", error=message,
                                 error_class=verdict.error_class, next_attempt_at=when)
            report.errors.append(f"event {event.key}: {message}")
            report.scheduled += 1
        else:
            if verdict.fix:
                message += f"\n  fix: {verdict.fix}"
            self._journal.finish(event, "dead", error=message, error_class=verdict.error_class)
            report.errors.append(f"event {event.key} (dead letter {event.id}): {message}")
            report.dead += 1
        if verdict.stops_run:
            report.events_failed += 1
            raise exc

    def _run_step(self, step: StepPlan, event: PendingEvent, ctx: dict[str, Any]) -> Any:
        journal = self._journal
        assert journal is not None
        ctx = {**ctx, "connection": self.public_connection(step.connection, step.connector)}
        base = ("steps", step.index)
        if step.when is not None and not self.located(step.when, ctx, (*base, "when")):
            journal.step(event, step.index, step_id=step.spec.id, status="skipped", attempts=0)
            return None
        items: list[Any] = [None]
        if step.for_each is not None:
            items = for_each_items(step, self.located(step.for_each, ctx, (*base, "for_each")))
        outputs: list[Any] = [None] * len(items)
        todo: list[tuple[int, int, dict[str, Any]]] = []
        for i, item in enumerate(items):
            item_index = i if step.for_each is not None else -1
            done = None if event.id is None or event.fresh else \
                self.store.get_step_result(event.id, step.index, item_index)
            if done is not None and done.status == "succeeded":
                outputs[i] = done.output
                continue
            item_ctx = ctx
            if step.for_each is not None:
                item_ctx = {**ctx, "item": item, "loop": loop_vars(i, len(items))}
            if done is None and not event.fresh and \
                    self._sent_key(event, step.index, item_index) is not None:
                item_ctx = {**item_ctx, _IN_FLIGHT: True}  # sent before, never answered
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
        idem = self._sent_key(event, step.index, item_index) or idempotency_key(
            self.plan.recipe.id, self.plan.trigger.ref, event.key, step.index, item_index)
        request: dict[str, Any] | None = None
        attempts: list[Attempt] = []
        try:
            payload = self.render_input(op, step.defaults, step.mapping, ctx,
                                        ("steps", step.index, "with"))
            call = self.prepare(op, step.connector, step.connection, payload, idem)
            request = call.describe()
            request["headers"] = call.headers  # redacted when recorded
            client = self.client(step.connection, step.connector)
            unsafe = op.writes and not client.retries_writes(op, call)
            if ctx.get(_IN_FLIGHT) and unsafe:
                raise OutcomeUnknown(
                    f"{op.ref}: an earlier run died while this request was in flight, and the "
                    "API takes no idempotency key for it, so it may have been applied; it is "
                    "not sent again by itself")
            journal.reserve(event, idem, step.index, item_index, durable=unsafe)
            output = self.send(client, op, call, attempts)
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

    @staticmethod
    def _sent_key(event: PendingEvent, step_index: int, item_index: int) -> str | None:
        """The idempotency key an earlier attempt of this step used (kept across upgrades
        that changed how keys are made)."""
        for key, (step, item, _status) in event.keys.items():
            if step == step_index and item == item_index:
                return key
        return None

    def send(self, client: ApiClient, op: Operation, call: PreparedCall,
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


def for_each_items(step: StepPlan, value: Any) -> list[Any]:
    """The list a ``for_each`` gave, refused (failing the event before anything is sent) when
    it is not a list or longer than the step's ``max_items`` (default 10,000)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationFailed(f"{step.spec.label}.for_each must give a list, got "
                               f"{type(value).__name__}")
    if len(value) > step.spec.max_items:
        raise ValidationFailed(f"{step.spec.label}.for_each gave {len(value):,} items, more "
                               f"than the step's max_items ({step.spec.max_items:,}); nothing "
                               "was sent for this event",
                               hint="raise `max_items` on the step if the list is meant to be "
                                    "that long")
    return value


def rendered_parts(op: Operation, ctx: dict[str, Any],
                   compile_part: Callable[[str, Any], Any]) -> dict[str, Any]:
    """The keyword arguments of ``prepare_call`` for an operation's header, query and body
    templates, rendered with ``ctx`` (``input`` and ``connection``)."""
    out: dict[str, Any] = {}
    if op.headers:
        out["rendered_headers"] = {k: str(v) for k, v in
                                   compile_part("headers", op.headers)(ctx).items()}
    if isinstance(op.query, dict):
        out["rendered_query"] = compile_part("query", op.query)(ctx)
    if op.body is not MISSING:
        out["rendered_body"] = compile_part("body", op.body)(ctx)
    return out


def render_defaults(template_engine: Any, defaults: dict[str, Any], context: dict[str, Any],
                    compiled: Any = None) -> dict[str, Any]:
    """Operation/trigger defaults rendered for ``context``. A default that reads something
    the context lacks (``connection.locationId`` on an agency token) is left out."""
    if not defaults:
        return {}
    try:
        whole = compiled or template_engine.compile_mapping(defaults, where="defaults")
        return dict(whole(context) or {})
    except TemplateError:
        out: dict[str, Any] = {}
        for key, value in defaults.items():
            try:
                out.update(template_engine.compile_mapping({key: value}, where="defaults")(context))
            except TemplateError:
                continue
        return out

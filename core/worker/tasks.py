"""The worker's tasks; each one idempotent under redelivery.

- ``splice.deliver(row_ids)``: inbox rows routed to the recipes that listen (as serve routes
  them) and each recipe's records run by one :class:`~splice.run.claimed.ClaimedRun`; a row is
  marked done once every record of it is handled. A record whose event another live worker holds
  (the same message delivered twice) is tried again a little later; a row already done is
  acknowledged and nothing else happens.
- ``splice.run_events(recipe, ids, now)``: stored events by id (a poll's new events, the
  reconciler's orphans and due retries, a retry asked for from the API).
- ``splice.poll(recipe, due)``: one poll under the recipe trigger's lease (one poll of a recipe
  at a time across every worker; a poll held elsewhere is skipped). The poll only stores its
  new events; it sends one ``splice.run_events`` per event for the workers to run.

Each worker process keeps one store (``SPLICE_DATABASE_URL``), the plugin registry, and the
compiled plans of the registered recipes, rebuilt when the registry's generations change.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import SpliceError
from ..mapping.templates import TemplateEngine
from ..model.documents import parse_document
from ..model.recipe import recipe_from_document
from ..run.claimed import ClaimedRun
from ..run.plan import Plan, build_plan
from ..run.routing import RouteIndex, route
from ..run.runner import Runner
from ..store import inbox
from ..store import registry as reg
from .app import make_app
from .enqueue import DELIVER, POLL, RUN_EVENTS, Enqueuer

log = logging.getLogger("splice.worker")
RETRY_BUSY = 2.0  # seconds before a record another live worker holds is looked at again


@dataclass
class Recipe:
    """A registered recipe as this worker runs it."""

    id: str
    name: str
    enabled: bool
    plan: Plan | None
    source_hash: str


class Context:
    """What a worker process keeps between tasks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: Any = None
        self._registry: Any = None
        self._generations: dict[str, int] | None = None
        self._checked = 0.0
        self.recipes: dict[str, Recipe] = {}
        self.index = RouteIndex({})
        self.enqueuer: Enqueuer | None = None

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from ..store.database import Store

                self._store = Store.open()
            return self._store

    @property
    def registry(self) -> Any:
        with self._lock:
            if self._registry is None:
                from ..plugins import get_registry

                self._registry = get_registry()
            return self._registry

    def refresh(self, every: float = 0.5) -> None:
        """Reload recipes whose registry generation changed (at most every ``every`` s)."""
        store, registry = self.store, self.registry
        now = time.monotonic()
        with self._lock:
            if self._generations is not None and now - self._checked < every:
                return
            self._checked = now
            generations = reg.generations(store)
            if generations == self._generations:
                return
            recipes: dict[str, Recipe] = {}
            for row in reg.list_all(store):
                old = self.recipes.get(row.id)
                plan = old.plan if old is not None and old.source_hash == row.source_hash \
                    else _build(row, registry, store)
                recipes[row.id] = Recipe(row.id, row.name, row.enabled, plan, row.source_hash)
            self.recipes = recipes
            self.index = RouteIndex.build([r for r in recipes.values()
                                           if r.enabled and r.plan is not None])
            self._generations = generations

    def plan(self, recipe_id: str) -> Plan | None:
        self.refresh()
        loaded = self.recipes.get(recipe_id)
        return loaded.plan if loaded is not None and loaded.enabled else None


def _build(row: Any, registry: Any, store: Any) -> Plan | None:
    try:
        recipe = recipe_from_document(parse_document(row.source, row.path))
        connections = {c.name: c for c in store.list_connections()}
        return build_plan(recipe, registry, TemplateEngine(registry.filters),
                          connections=connections)
    except SpliceError as exc:
        log.error("recipe '%s': its stored version does not load: %s", row.name, exc,
                  extra={"recipe": row.id})
        return None


CONTEXT = Context()


# ------------------------------------------------------------------------------- the work


def deliver_rows(ctx: Context, row_ids: list[int]) -> list[int]:
    """Process inbox rows (one run per recipe for all of them); the ids of rows that are
    not finished because a live run holds one of their records (try them later)."""
    store, registry = ctx.store, ctx.registry
    rows = inbox.new_rows(store, row_ids)
    if not rows:
        return []
    ctx.refresh()
    per_recipe, _counts, finished = route(rows, ctx.index, store, registry)
    if finished:
        inbox.finish(store, finished)
    notes: dict[int, list[str]] = {}
    waiting: set[int] = set()
    for name, items in per_recipe.items():
        plan = ctx.plan(name)
        if plan is None:
            for item in items:
                notes.setdefault(item.row_id, []).append(f"{name}: disabled")
            continue
        runner = ClaimedRun(plan, store, registry)
        try:
            result = runner.run(keyed=[(i.key, i.record) for i in items], mode="webhook")
        finally:
            runner.close()
        report = result.report
        if report.events_new:
            reg.add_webhook_first(store, name, report.events_new)
        for error in report.errors[:3]:
            log.warning("recipe '%s': %s", plan.recipe.name, error, extra={"recipe": name})
        for item in items:
            if item.key in result.done:
                notes.setdefault(item.row_id, []).append(
                    f"{plan.recipe.name}: run {str(report.run_id)[:8]}")
            else:
                waiting.add(item.row_id)
    done = {row_id: "; ".join(sorted(set(n))) for row_id, n in notes.items()
            if row_id not in waiting and row_id not in finished}
    inbox.finish(store, done)
    return sorted(waiting)


def run_events(ctx: Context, recipe_id: str, ids: list[int], now: bool = False) -> int:
    """Run stored events of a recipe; how many this task ran or found finished."""
    plan = ctx.plan(recipe_id)
    if plan is None:
        return 0
    runner = ClaimedRun(plan, ctx.store, ctx.registry)
    try:
        result = runner.run(ids=ids, mode="worker", due=not now)
    finally:
        runner.close()
    for error in result.report.errors[:3]:
        log.warning("recipe '%s': %s", plan.recipe.name, error, extra={"recipe": recipe_id})
    return result.handled


def poll_recipe(ctx: Context, recipe_id: str, due: str | None) -> list[int]:
    """Poll once and send the new events to the workers; their ids."""
    plan = ctx.plan(recipe_id)
    if plan is None or not plan.polls:
        return []
    store = ctx.store
    started = datetime.now(UTC)
    runner = Runner(plan, store, ctx.registry)
    runner.produced = []
    try:
        report = runner.run(mode="serve")
    finally:
        runner.close()
    if report.held_by:
        log.info("recipe '%s': not polled, %s holds it", plan.recipe.name, report.held_by,
                 extra={"recipe": recipe_id})
        return []
    status = "succeeded" if report.ok else "failed"
    reg.record_poll(store, recipe_id, status=status, run_id=report.run_id,
                    new_events=report.events_new, started_at=started)
    produced = list(runner.produced)
    sender = ctx.enqueuer
    if sender is not None:
        for event_id in produced:  # one message each: spread over every worker thread
            try:
                sender.run_events(recipe_id, [event_id])
            except SpliceError:
                break  # the broker went away: the reconciler sends the rest later
    log.info("recipe '%s' polled: %d new", plan.recipe.name, report.events_new,
             extra={"recipe": recipe_id, "run_id": report.run_id, "due": due})
    return produced


# ------------------------------------------------------------------------------- Celery


def worker_app(url: str) -> Any:
    """The Celery app of a worker on the broker at ``url``, with the tasks."""
    app = make_app(url)
    register(app)
    return app


def register(app: Any) -> None:
    """Register the tasks on ``app`` (and say on stderr when the worker is ready)."""
    from celery.signals import worker_ready

    CONTEXT.enqueuer = Enqueuer(app.conf.broker_url, app=app)

    def ready(sender: Any = None, **_kw: Any) -> None:
        from .watch import BrokerWatch

        BrokerWatch(app.conf.broker_url, sender).start()
        log.info("splice worker ready")

    worker_ready.connect(ready, weak=False)

    @app.task(name=DELIVER, bind=True, acks_late=True, max_retries=None)
    def deliver(self: Any, row_ids: list[int]) -> None:
        waiting = deliver_rows(CONTEXT, [int(i) for i in row_ids])
        if waiting:  # a live run holds some of their records: look again soon
            raise self.retry(args=(waiting,), countdown=RETRY_BUSY)

    @app.task(name=RUN_EVENTS, acks_late=True)
    def run_events_task(recipe_id: str, ids: list[int], now: bool = False) -> None:
        run_events(CONTEXT, recipe_id, [int(i) for i in ids], bool(now))

    @app.task(name=POLL, acks_late=True)
    def poll(recipe_id: str, due: str | None = None) -> None:
        poll_recipe(CONTEXT, recipe_id, due)

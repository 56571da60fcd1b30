"""The serve process assembled: one :class:`Service` and its Starlette application.

``Service`` owns the parts (store, plugin registry, recipe book, inbox writer, receiver,
scheduler, metrics, API) and their lifecycle: ``start`` registers the instance, loads the
recipes and starts the scheduler; ``stop`` stops accepting deliveries, stops the scheduler
(running jobs get ``shutdown_grace`` seconds; unstarted work is given back to the inbox),
commits what the writer holds and deregisters. ``build_app`` returns the ASGI app whose
lifespan calls them:

- ``POST /hooks/{connection}``  webhook deliveries (:mod:`splice.serve.receiver`)
- ``GET /healthz``              200 when the database answers and the scheduler turns, else 503
- ``GET /metrics``              Prometheus text (:mod:`splice.serve.metrics`)
- ``/api/...``                  the JSON API (:mod:`splice.serve.api`)
- ``/`` and the other pages      the dashboard (:mod:`splice.web`), behind its sign-in gate
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..run.routing import RouteIndex
from ..store import inbox
from ..store import registry as reg
from ..web import Dashboard, WebGate
from ..web.session import Sessions, load_or_create_key
from .api import Api
from .book import RecipeBook
from .config import ServeConfig
from .dispatch import Dispatcher
from .ingest import InboxWriter
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .receiver import Receiver
from .scheduler import Scheduler
from .subscriptions import reconcile, wanted_events

log = logging.getLogger("splice.serve")
NOTIFY_EVERY = 0.02  # seconds: new deliveries wake the scheduler at most this often


class Service:
    def __init__(self, store: Any, registry: Any, config: ServeConfig, token: str) -> None:
        self.store = store
        self.registry = registry
        self.config = config
        self.token = token
        self.instance_id = f"serve-{uuid.uuid4().hex[:16]}"
        self.metrics = Metrics()
        self.book = RecipeBook(store, registry)
        self._depth = 0
        self._depth_lock = threading.Lock()
        self.writer = InboxWriter(store, on_stored=self._stored)
        self.receiver = Receiver(store, registry, self.writer, self.metrics, config,
                                 depth=lambda: self._depth, routed=self._routed)
        self.scheduler: Scheduler | Dispatcher = Dispatcher(self) if config.broker_url \
            else Scheduler(self)
        self.api = Api(self)
        self.dashboard = Dashboard(self)
        self.started = False
        self._last_prune = 0.0
        self._subscribed: dict[str, set[str]] | None = None
        self._subscription_failures: dict[str, float] = {}
        self._notified = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        inbox.start_instance(self.store, self.instance_id, self.config.url)
        self.reload()
        # What is loaded now (manifests, schemas, compiled plans) lives as long as the
        # process: keep it out of the cyclic collector's full passes, which would otherwise
        # pause acknowledgements for tens of milliseconds now and then.
        gc.collect()
        gc.freeze()
        self.scheduler.start()
        self.started = True
        log.info("serving %d enabled recipe(s) at %s", len(self.book.enabled()),
                 self.config.url, extra={"instance": self.instance_id})

    def stop(self) -> bool:
        """Graceful stop; True when every running job finished in time."""
        self.receiver.accepting = False
        self.dashboard.close()
        finished = self.scheduler.stop(self.config.shutdown_grace)
        self.writer.close()
        try:
            inbox.stop_instance(self.store, self.instance_id)
        except Exception as exc:  # noqa: BLE001 - the next start removes a dead instance
            log.warning("could not deregister: %s", type(exc).__name__)
        log.info("stopped" + ("" if finished else " (jobs still running were abandoned; "
                                                  "the next start resumes them)"))
        return finished

    # -- called by the scheduler each reload ------------------------------------------------
    def reload(self) -> None:
        now = time.monotonic()
        self.book.refresh()
        self.scheduler.index = RouteIndex.build(self.book.enabled())
        inbox.heartbeat(self.store, self.instance_id)
        inbox.checkpoint(self.store)
        self._refresh_depth()
        requested = [r.id for r in reg.list_all(self.store)
                     if r.enabled and r.run_requested_at is not None]
        self.scheduler.take_run_requests(requested)
        self.scheduler.due_retries()
        if self.leads():
            wanted = wanted_events(self.book.enabled())
            failures = self._subscription_failures
            if wanted != self._subscribed or any(t <= now for t in failures.values()):
                for name in [n for n, t in failures.items() if t <= now]:
                    del failures[name]
                reconcile(self.store, self.registry, wanted, self.config.url,
                          failed=failures)
                self._subscribed = wanted
                self.receiver.forget()
        if now - self._last_prune > 3600:
            self._last_prune = now
            inbox.prune(self.store, self.config.retention)

    def leads(self) -> bool:
        """Whether this is the oldest live serve process (it alone manages subscriptions)."""
        live = inbox.live_instances(self.store)
        return not live or live[0]["id"] == self.instance_id

    def _routed(self, connection: str, event_type: str) -> bool:
        """Whether an enabled recipe listens to ``event_type`` deliveries on ``connection``."""
        return (connection, event_type) in self.scheduler.index.routes

    # -- inbox depth ------------------------------------------------------------------------
    def _stored(self, count: int) -> None:
        with self._depth_lock:
            self._depth += count
            self.metrics.inbox_depth.set(self._depth)
        now = time.monotonic()
        if count and now - self._notified > NOTIFY_EVERY:  # wake the scheduler, not per row
            self._notified = now
            self.scheduler.notify()

    def inbox_processed(self, count: int) -> None:
        with self._depth_lock:
            self._depth = max(0, self._depth - count)
            self.metrics.inbox_depth.set(self._depth)

    def _refresh_depth(self) -> None:
        value = inbox.depth(self.store)
        with self._depth_lock:
            self._depth = value
            self.metrics.inbox_depth.set(value)

    # -- health -----------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            self.store.schema_version  # noqa: B018 - one query: the database answers
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["database"] = f"error: {type(exc).__name__}"
        checks["scheduler"] = "ok" if self.scheduler.alive else "stopped"
        checks["inbox_depth"] = self._depth
        checks["recipes"] = len(self.book.enabled())
        ok = checks["database"] == "ok" and checks["scheduler"] == "ok"
        return ok, checks


def build_app(service: Service) -> Starlette:
    """The ASGI application of ``service`` (its lifespan starts and stops it)."""

    async def healthz(request: Request) -> Response:
        ok, checks = service.health()
        return JSONResponse({"status": "ok" if ok else "unhealthy", **checks},
                            status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not service.started:
            service.start()
        yield
        service.stop()

    routes = [Route("/hooks/{connection}", service.receiver.handle, methods=["POST"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"]),
              *service.api.routes(),
              *service.dashboard.routes()]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    sessions = Sessions(load_or_create_key(), secure=service.config.url.startswith("https:"))
    app.add_middleware(WebGate, sessions=sessions)
    return app

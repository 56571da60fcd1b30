"""``POST /hooks/{connection}``: webhook deliveries verified, then stored, then acknowledged.

In order, each failing closed with a short reason and nothing stored: the body must be at
most ``max_body`` bytes (413); the connection must exist and its connector declare webhook
triggers (404); the inbox must have room (503 + ``Retry-After``); the signature must verify
with a key the connection has (401; no key configured refuses everything); the body must be a
JSON object (400); a signed timestamp must be inside the window (401); the delivery id must be
where the trigger says (400). An event type no trigger declares is acknowledged and dropped
(200 ``ignored``), as providers send every event of an app to one URL. Then the delivery is
committed to the inbox (:mod:`splice.serve.ingest`) and only then answered ``200 accepted``
(stored already done when no enabled recipe listens to its event: nothing to process, its
id still remembered); a delivery id received before is answered ``200 duplicate`` and stores
nothing. Rejections
are counted by reason and logged without the payload.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..signatures import Rejected, SignatureSpec, body_timestamp, verify_delivery
from ..store.inbox import Delivery
from .config import ServeConfig
from .ingest import InboxWriter
from .keys import connection_keys
from .metrics import Metrics

log = logging.getLogger("splice.serve.webhooks")
TARGET_TTL = 2.0  # seconds a connection's keys and triggers are cached
STATUS = {"unknown_connection": 404, "too_large": 413, "malformed_json": 400,
          "missing_delivery_id": 400, "inbox_full": 503}


@dataclass
class Target:
    """What the receiver needs to know about one connection (cached briefly)."""

    connection: str
    specs: list[SignatureSpec]
    keys: dict[str, list[Any]]
    event_types: list[dict[str, str]]     # where the event type may be
    delivery_ids: list[dict[str, str]]    # where the delivery id may be
    events: set[str] = field(default_factory=set)
    effects: set[str] = field(default_factory=set)  # events the engine acts on itself
    loaded_at: float = 0.0


def locate(where: dict[str, str], headers: Any, data: Any) -> str | None:
    """The value at a ``{header: X}`` or ``{path: a.b}`` location, as text."""
    if "header" in where:
        value = headers.get(where["header"].lower())
        return value.strip() if isinstance(value, str) and value.strip() else None
    node = data
    for part in where.get("path", "").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool) or node is None or isinstance(node, dict | list):
        return None
    text = str(node).strip()
    return text or None


class Receiver:
    def __init__(self, store: Any, registry: Any, writer: InboxWriter, metrics: Metrics,
                 config: ServeConfig, depth: Callable[[], int],
                 routed: Callable[[str, str], bool] = lambda connection, event: True) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self.metrics = metrics
        self.config = config
        self.depth = depth
        self.routed = routed
        self._targets: dict[str, Target | None] = {}
        self._loaded: dict[str, float] = {}
        self.accepting = True

    # -- targets ----------------------------------------------------------------------------
    def target(self, name: str) -> Target | None:
        now = time.monotonic()
        if name in self._targets and now - self._loaded.get(name, 0.0) < TARGET_TTL:
            return self._targets[name]
        target = self._load_target(name)
        if len(self._targets) > 1000:  # unknown names must not grow the cache without bound
            self._targets.clear()
            self._loaded.clear()
        self._targets[name], self._loaded[name] = target, now
        return target

    def _load_target(self, name: str) -> Target | None:
        if len(name) > 100:
            return None
        record = self.store.get_connection(name)
        if record is None:
            return None
        connector = self.registry.connectors.get(record.connector)
        triggers = [t for t in connector.triggers.values() if t.type == "webhook"] \
            if connector is not None else []
        if not triggers:
            return None
        specs: list[SignatureSpec] = []
        event_types: list[dict[str, str]] = []
        delivery_ids: list[dict[str, str]] = []
        for trig in triggers:
            if trig.signature:
                spec = SignatureSpec.from_dict(trig.signature)
                if spec not in specs:
                    specs.append(spec)
            for store_in, where in ((event_types, trig.event_type),
                                    (delivery_ids, trig.delivery_id)):
                if where and where not in store_in:
                    store_in.append(dict(where))
        keys = connection_keys(record, specs, self.registry.signature_schemes)
        events = {e for t in triggers for e in t.events}
        effects = {e for t in triggers if t.revokes_connection for e in t.events}
        return Target(name, specs, keys, event_types, delivery_ids, events, effects)

    def forget(self, name: str | None = None) -> None:
        """Drop cached targets (a connection's keys changed)."""
        if name is None:
            self._targets.clear()
        else:
            self._targets.pop(name, None)

    # -- the endpoint -----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._receive(request)
        finally:
            self.metrics.ack.observe(time.perf_counter() - started)
        return response

    def _reject(self, reason: str, detail: str, connection: str | None) -> Response:
        self.metrics.rejected.labels(reason).inc()
        log.warning("webhook delivery rejected: %s", detail,
                    extra={"connection": connection, "reason": reason})
        status = STATUS.get(reason, 401)
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse({"status": "rejected", "reason": reason, "detail": detail},
                            status_code=status, headers=headers)

    async def _receive(self, request: Request) -> Response:
        name = request.path_params["connection"]
        if not self.accepting:
            return self._reject("inbox_full", "shutting down", None)
        limit = self.config.max_body
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return self._reject("too_large", f"body over {limit} bytes", None)
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                return self._reject("too_large", f"body over {limit} bytes", None)
        body = bytes(chunks)
        target = self.target(name)
        if target is None:
            return self._reject("unknown_connection", "no connection with webhook triggers "
                                                      "by this name", None)
        if self.depth() >= self.config.inbox_max:
            return self._reject("inbox_full", "too many deliveries waiting; retry later", name)
        headers = dict(request.headers.items())  # names are lower-case
        now = time.time()
        try:
            verified = self._verify(target, body, headers, now)
            try:
                data = json.loads(body)
            except ValueError:
                raise Rejected("malformed_json", "the body is not JSON") from None
            if not isinstance(data, dict):
                raise Rejected("malformed_json", "the body is not a JSON object")
            body_timestamp(verified, data, now)
        except Rejected as exc:
            return self._reject(exc.reason, exc.detail, name)
        event_type = next((v for w in target.event_types
                           if (v := locate(w, headers, data)) is not None), None)
        if event_type not in target.events:
            self.metrics.rejected.labels("unknown_event").inc()
            return JSONResponse({"status": "ignored", "reason": "unknown_event"})
        delivery_id = next((v for w in target.delivery_ids
                            if (v := locate(w, headers, data)) is not None), None)
        if delivery_id is None or len(delivery_id) > 200:
            return self._reject("missing_delivery_id", "no usable delivery id", name)
        outcome = None if event_type in target.effects or self.routed(name, event_type) \
            else "no enabled recipe listens"
        try:
            new = await self.writer.submit(Delivery(name, delivery_id, event_type,
                                                    body.decode("utf-8"), outcome))
        except (RuntimeError, UnicodeDecodeError):
            return self._reject("inbox_full", "the delivery could not be stored; retry", name)
        if not new:
            self.metrics.rejected.labels("duplicate").inc()
            return JSONResponse({"status": "duplicate", "delivery_id": delivery_id})
        self.metrics.accepted.labels(name).inc()
        return JSONResponse({"status": "accepted", "delivery_id": delivery_id})

    def _verify(self, target: Target, body: bytes, headers: dict[str, str],
                now: float) -> SignatureSpec:
        first: Rejected | None = None
        for spec in target.specs:
            try:
                return verify_delivery(spec, self.registry.signature_schemes, target.keys,
                                       body, headers, now).spec
            except Rejected as exc:
                first = first or exc
        raise first or Rejected("no_key", "the connector declares no signature scheme")

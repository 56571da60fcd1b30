"""The Invoice2go sandbox's webhooks (CONTRACT.md section 5.7): events on every stored change,
delivered to the account's active subscriptions, signed and retried as the contract says.

Every write the API accepts is turned into events by comparing the object before and after
(``before``/``after`` wrap each handler): ``client.created|updated|deleted``,
``invoice.created|updated|deleted``, the status events (``invoice.sent``,
``invoice.partially_paid``, ``invoice.paid``, ``invoice.voided``, each with an
``invoice.updated``) and ``payment.created``; ``POST .../webhooks/{id}/test`` queues a
``webhook.test``. Each event goes to the store's ``outbox`` (kept with the sandbox's data) and
is POSTed to every matching active subscription with ``X-Webhook-Id`` (the event id, the same
on every retry), ``X-Webhook-Event``, ``X-Webhook-Timestamp`` and ``X-Webhook-Signature:
v1=<hex HMAC-SHA256 of "timestamp.body">``. Failed attempts are retried after the contract's
delays (``SandboxConfig.extra["webhook_retry_schedule"]`` shortens them for tests).

Test controls: ``GET /__test__/webhook-deliveries`` (every attempt),
``POST /__test__/webhooks-drop {"count"}`` (lose the next deliveries),
``POST /__test__/webhooks-redeliver {"count"}`` (send the next ones twice, same id).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from splice.sandbox import DEFAULT_SCHEDULE, WebhookSender

_PATH = re.compile(r"^/v1/accounts/[^/]+/(clients|invoices|webhooks)(?:/([^/]+))?(?:/(\w+))?/?$")
STATUS_EVENTS = {"sent": "invoice.sent", "partially_paid": "invoice.partially_paid",
                 "fully_paid": "invoice.paid", "void": "invoice.voided"}


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``v1=<hex>``: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the whole secret."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Invoice2goWebhooks:
    """Turns the sandbox's changes into signed deliveries."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        schedule = sandbox.config.extra.get("webhook_retry_schedule", DEFAULT_SCHEDULE)
        self.sender = WebhookSender(clock=sandbox.now, schedule=schedule)

    # -- around each write ------------------------------------------------------------------
    def before(self, call: Any) -> Any:
        """The object a PATCH, DELETE or payment will change, as it is now."""
        match = _PATH.match(call.request.url.path)
        if match is None or call.request.method not in ("PATCH", "DELETE", "POST"):
            return None
        kind, object_id, _sub = match.groups()
        table = {"clients": self.sandbox.store.clients,
                 "invoices": self.sandbox.store.invoices}.get(kind)
        found = table.get(object_id) if table is not None and object_id else None
        return copy.deepcopy(found)

    def after(self, call: Any, before: Any, reply: Any) -> None:
        """Queue the events of a write that succeeded, then send what the outbox holds."""
        match = _PATH.match(call.request.url.path)
        method = call.request.method
        if match is not None and 200 <= reply.status < 300 and method != "GET":
            kind, object_id, sub = match.groups()
            data = (reply.body or {}).get("data") if isinstance(reply.body, dict) else None
            for event_type, obj in self._events(kind, object_id, sub, method, before, data):
                self.emit(call.account_id, event_type, obj)
        self.flush()

    @staticmethod
    def _events(kind: str, object_id: str | None, sub: str | None, method: str,
                before: Any, data: Any) -> list[tuple[str, Any]]:
        if kind == "clients":
            if method == "POST" and object_id is None:
                return [("client.created", data)]
            if method == "PATCH" and before and data and \
                    data.get("updated_at") != before.get("updated_at"):
                return [("client.updated", data)]
            if method == "DELETE":
                return [("client.deleted", {"id": object_id, "deleted": True})]
            return []
        if kind != "invoices":
            return []
        if method == "POST" and object_id is None:
            return [("invoice.created", data)]
        if method == "DELETE" and sub is None:
            return [("invoice.deleted", {"id": object_id, "deleted": True})]
        out: list[tuple[str, Any]] = []
        if method == "POST" and sub == "payments":
            out.append(("payment.created", data))
        if before and data and data.get("updated_at") != before.get("updated_at"):
            out.append(("invoice.updated", data))
            status = data.get("document_status")
            if status != before.get("document_status") and status in STATUS_EVENTS:
                out.append((STATUS_EVENTS[status], data))
        return out

    # -- delivering -------------------------------------------------------------------------
    def emit(self, account_id: str, event_type: str, obj: Any) -> None:
        store = self.sandbox.store
        event = {"id": store.new_id(), "type": event_type, "created_at": store.stamp(),
                 "account_id": account_id, "api_version": "v1",
                 "data": {"object": copy.deepcopy(obj)}}
        for hook in store.of_account("webhooks", account_id):
            if hook["active"] and (event_type in hook["events"] or "*" in hook["events"]):
                store.outbox.append({"webhook_id": hook["id"], "event": event})

    def flush(self) -> None:
        """Hand every outbox entry not sent yet to the sender (test events included)."""
        store = self.sandbox.store
        for entry in store.outbox:
            if entry.get("sent"):
                continue
            entry["sent"] = True
            hook = store.webhooks.get(entry["webhook_id"])
            if hook is None or not hook["active"]:
                continue
            event = entry["event"]
            body = json.dumps(event, separators=(",", ":")).encode()
            secret = hook["secret"]

            def headers(payload: bytes, now: float, event: Any = event,
                        secret: str = secret) -> dict[str, str]:
                stamp = int(now)
                return {"Content-Type": "application/json", "X-Webhook-Id": event["id"],
                        "X-Webhook-Event": event["type"], "X-Webhook-Timestamp": str(stamp),
                        "X-Webhook-Signature": sign(secret, payload, stamp)}

            self.sender.send(hook["url"], event["id"], body, headers)
        if len(store.outbox) > 1000:  # keep the saved state small: the newest events only
            del store.outbox[:-500]

    # -- test controls ----------------------------------------------------------------------
    def routes(self) -> list[Route]:
        async def deliveries(request: Request) -> Response:
            return JSONResponse({"attempts": list(self.sender.attempts),
                                 "pending": self.sender.pending()})

        async def control(request: Request) -> Response:
            body = await request.json() if await request.body() else {}
            count = body.get("count", 1) if isinstance(body, dict) else None
            if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= 1000:
                return JSONResponse({"error": "count must be 1-1000"}, status_code=422)
            if request.url.path.endswith("drop"):
                self.sender.drop_next(count)
            else:
                self.sender.redeliver_next(count)
            return JSONResponse({"ok": True})

        return [Route("/__test__/webhook-deliveries", deliveries, methods=["GET"]),
                Route("/__test__/webhooks-drop", control, methods=["POST"]),
                Route("/__test__/webhooks-redeliver", control, methods=["POST"])]

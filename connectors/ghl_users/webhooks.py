"""The HighLevel sandbox's webhooks (NOTES.md section 7): signed deliveries to the app's URL.

A HighLevel app has one webhook URL (set in its Marketplace settings); the sandbox keeps it in
``SandboxConfig.extra["webhook_url"]`` or takes it from ``POST /__test__/webhook-url
{"url"}``. When a user is created (``POST /users/``) it delivers ``UserCreate``; the test
controls ``POST /__test__/users`` (a user made as in HighLevel's UI), ``POST
/__test__/app-install`` and ``/__test__/app-uninstall`` (``{"locationId"}``)
deliver ``INSTALL`` and ``UNINSTALL``. Each body carries ``webhookId`` and ``timestamp`` and
is signed over the raw bytes with Ed25519 (``x-ghl-signature``, base64), as HighLevel signs
with its own key: the sandbox's key pair is derived from its seed, and
``GET /__test__/webhook-key`` gives the public key a sandbox connection must carry (real
connections use HighLevel's published key, the manifest's default).

More controls: ``GET /__test__/webhook-deliveries``, ``POST /__test__/webhooks-drop`` and
``/__test__/webhooks-redeliver`` (``{"count"}``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from splice.sandbox import WebhookSender

from . import sandbox_data as data

RETRY_SCHEDULE = (60.0, 300.0, 1800.0)  # HighLevel documents none (UNCERTAIN); ours
APP_ID = "splice-sandbox-app"


class GhlWebhooks:
    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        extra = sandbox.config.extra
        seed = hashlib.sha256(f"splice-ghl-sandbox-webhooks-{sandbox.config.seed}".encode())
        self.key = Ed25519PrivateKey.from_private_bytes(seed.digest())
        self.url: str | None = extra.get("webhook_url")
        self.sender = WebhookSender(clock=sandbox.now,
                                    schedule=extra.get("webhook_retry_schedule",
                                                       RETRY_SCHEDULE))

    @property
    def public_key(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """Stamp, sign and send ``event`` to the app's webhook URL (if one is set)."""
        stamp = datetime.fromtimestamp(self.sandbox.now(), UTC)
        event = {**event, "webhookId": str(uuid.uuid4()),
                 "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        if self.url:
            body = json.dumps(event, separators=(",", ":")).encode()
            self.sender.send(self.url, event["webhookId"], body, self._headers)
        return event

    def _headers(self, body: bytes, now: float) -> dict[str, str]:
        return {"Content-Type": "application/json",
                "x-ghl-signature": base64.b64encode(self.key.sign(body)).decode()}

    def user_created(self, user: dict[str, Any]) -> None:
        """``UserCreate`` for a new user (HighLevel's documented shape)."""
        locations = list(user["roles"]["locationIds"])
        self.deliver({"type": "UserCreate",
                      "locationId": locations[0] if locations else None,
                      "companyId": user.get("_companyId", data.COMPANY_ID), "id": user["id"],
                      "firstName": user["firstName"], "lastName": user["lastName"],
                      "email": user["email"], "phone": user["phone"],
                      "extension": user.get("extension", ""), "role": user["roles"]["role"],
                      "permissions": dict(user["permissions"]), "locations": locations})

    # -- test controls ----------------------------------------------------------------------
    def routes(self) -> list[Route]:
        async def body_of(request: Request) -> dict[str, Any]:
            raw = await request.body()
            value = json.loads(raw) if raw else {}
            return value if isinstance(value, dict) else {}

        async def webhook_url(request: Request) -> Response:
            if request.method == "POST":
                url = (await body_of(request)).get("url")
                if url is not None and not isinstance(url, str):
                    return JSONResponse({"message": ["url must be a string"]}, status_code=422)
                self.url = url
            return JSONResponse({"url": self.url})

        async def webhook_key(request: Request) -> Response:
            return JSONResponse({"ed25519": self.public_key})

        async def deliveries(request: Request) -> Response:
            return JSONResponse({"attempts": list(self.sender.attempts),
                                 "pending": self.sender.pending()})

        async def control(request: Request) -> Response:
            count = (await body_of(request)).get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= 1000:
                return JSONResponse({"message": ["count must be 1-1000"]}, status_code=422)
            if request.url.path.endswith("drop"):
                self.sender.drop_next(count)
            else:
                self.sender.redeliver_next(count)
            return JSONResponse({"ok": True})

        async def app_event(request: Request) -> Response:
            location = (await body_of(request)).get("locationId", data.LOCATION_ID)
            kind = "INSTALL" if request.url.path.endswith("install") and \
                not request.url.path.endswith("uninstall") else "UNINSTALL"
            event: dict[str, Any] = {"type": kind, "appId": APP_ID, "locationId": location,
                                     "companyId": data.COMPANY_ID}
            if kind == "INSTALL":
                event.update({"userId": None, "companyName": data.COMPANY_NAME,
                              "isWhitelabelCompany": False})
            return JSONResponse(self.deliver(event))

        async def new_user(request: Request) -> Response:
            """A user created as a person would in HighLevel's UI (``UserCreate`` follows)."""
            body = await body_of(request)
            names = [body.get(k) for k in ("firstName", "lastName", "email")]
            if not all(isinstance(v, str) and v for v in names):
                return JSONResponse({"message": ["firstName, lastName and email are needed"]},
                                    status_code=422)
            if self.sandbox.world.email_taken(body["email"]):
                return JSONResponse({"message": "A user with this email already exists"},
                                    status_code=400)
            user = self.sandbox.world.create_user({
                "companyId": data.COMPANY_ID, "firstName": body["firstName"],
                "lastName": body["lastName"], "email": body["email"],
                "phone": body.get("phone", ""), "type": "account", "role": "user",
                "locationIds": [body.get("locationId", data.LOCATION_ID)]},
                self.sandbox.now_dt())
            self.sandbox.save()
            self.user_created(user)
            return JSONResponse(data.user_view(user, with_deleted=False), status_code=201)

        return [Route("/__test__/users", new_user, methods=["POST"]),
                Route("/__test__/webhook-url", webhook_url, methods=["GET", "POST"]),
                Route("/__test__/webhook-key", webhook_key, methods=["GET"]),
                Route("/__test__/webhook-deliveries", deliveries, methods=["GET"]),
                Route("/__test__/webhooks-drop", control, methods=["POST"]),
                Route("/__test__/webhooks-redeliver", control, methods=["POST"]),
                Route("/__test__/app-install", app_event, methods=["POST"]),
                Route("/__test__/app-uninstall", app_event, methods=["POST"])]

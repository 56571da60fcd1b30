"""A local emulator of the assumed Invoice2go API (``shared/reference/invoice2go/CONTRACT.md``).

``create_app(config)`` returns a Starlette app: the OAuth server (§2), the ``/v1`` resources
(§5.1–5.7; every change is delivered as signed webhooks to the subscriptions, see
``webhooks.py``), cursor pagination, idempotency
keys, rate limits and the §4 error shape. Everything is deterministic: seed data
(``sandbox_seed.py``) has fixed timestamps and ids come from a seeded generator.

Test-only controls live under ``/__test__/`` (connectors never call them): ``expire-tokens``,
``fail-next``, ``advance-clock``, ``state`` and ``reset``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import math
import os
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from splice.errors import ConfigError
from splice.sandbox import (
    AuthFailure,
    OAuthClient,
    OAuthFailure,
    OAuthServer,
    SandboxConfig,
    TokenInfo,
)

from .sandbox_data import (
    ACCOUNT_ID,
    ApiError,
    Store,
    iso,
    not_found,
    public_webhook,
    require_object,
    ts_key,
)
from .sandbox_seed import matches, no_filters, parse_filters, seed_store
from .webhooks import Invoice2goWebhooks

__all__ = ["SCOPES", "create_app"]

SCOPES = frozenset({"accounts:read", "clients:read", "clients:write", "invoices:read",
                    "invoices:write", "insights:read", "insights:write", "webhooks:manage"})
ACCESS_TTL = 3600
REFRESH_TTL = 60 * 86400
RATE_LIMIT = (120, 60.0)
TOKEN_RATE_LIMIT = (30, 60.0)
MAX_BODY = 1 << 20
CURSOR_TTL = 48 * 3600
STATE_VERSION = 1

Scopes = tuple[tuple[str, ...], ...]  # alternatives; each is a set of scopes needed together
Handler = Callable[["Call"], "Reply"]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One authorised ``/v1`` request."""

    request: Request
    token: TokenInfo
    account_id: str
    body: dict[str, Any]

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass
class Quota:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


class RollingLimiter:
    """``limit`` requests per rolling ``window`` seconds per key; refused calls do not count."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.hits: dict[Any, deque[float]] = defaultdict(deque)

    def hit(self, key: Any, now: float) -> Quota:
        hits = self.hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        oldest = hits[0] if hits else now
        wait = max(1, min(60, math.ceil(oldest + self.window - now)))
        return Quota(allowed, self.limit, self.limit - len(hits),
                     math.ceil(oldest + self.window), wait)


def _error_body(code: str, message: str, details: list[dict[str, str]], rid: str) -> dict:
    return {"error": {"code": code, "message": message, "details": details, "request_id": rid}}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _page_key(record: dict[str, Any]) -> list[Any]:
    return [ts_key(record["updated_at"]), record["id"]]


def _strip_account(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "account_id"}


class Sandbox:
    """State and request handling behind :func:`create_app`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.offset = 0.0
        self.requests = 0
        self.failures: deque[tuple[int, int | None, str]] = deque()
        self.state_path = Path(config.state_path) if config.state_path else None
        self.limiter = RollingLimiter(*(config.rate_limit or RATE_LIMIT))
        self.token_limiter = RollingLimiter(*config.extra.get("token_rate_limit",
                                                              TOKEN_RATE_LIMIT))
        self.cursor_key = hashlib.sha256(f"invoice2go-cursor-{config.seed}".encode()).digest()
        self.store = self._seeded_store()
        client = OAuthClient(config.client_id, config.client_secret, list(config.redirect_uris),
                             set(SCOPES))
        self.oauth = OAuthServer(clients=[client], clock=self.now,
                                 access_ttl=config.access_token_ttl or ACCESS_TTL,
                                 refresh_ttl=config.refresh_token_ttl or REFRESH_TTL,
                                 token_prefix="i2g")
        if self.state_path is not None and self.state_path.exists():
            self._load()
        self.webhooks = Invoice2goWebhooks(self)

    def now(self) -> float:
        return self.config.clock() + self.offset

    def _seeded_store(self) -> Store:
        store = Store(self.now, self.config.seed)
        seed_store(store)
        return store

    # -- persistence -----------------------------------------------------------------------

    def _load(self) -> None:
        assert self.state_path is not None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            self.store.load_json(data["store"])
            self.oauth.load_json(data["oauth"])
            self.offset = float(data.get("clock_offset", 0.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"Invoice2go sandbox state file {self.state_path} is unusable: "
                              f"{exc}", hint="delete it to start again from the seed data") from exc

    def save(self) -> None:
        """Write the state file atomically (temp file + ``os.replace``), if one is configured."""
        if self.state_path is None:
            return
        data = {"version": STATE_VERSION, "clock_offset": self.offset,
                "store": self.store.to_json(), "oauth": self.oauth.to_json()}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.state_path)

    # -- plumbing --------------------------------------------------------------------------

    def request_id(self) -> str:
        self.requests += 1
        return f"req_{self.requests:08d}"

    def respond(self, reply: Reply, rid: str) -> Response:
        headers = {**reply.headers, "X-Request-Id": rid}
        if reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    def error_reply(self, exc: ApiError, rid: str) -> Reply:
        return Reply(exc.status, _error_body(exc.code, exc.message, exc.details, rid),
                     dict(exc.headers))

    def _take_failure(self, target: str) -> None:
        if self.failures and self.failures[0][2] in (target, "all"):
            status, retry_after, _ = self.failures.popleft()
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if status == 429:
                raise ApiError(429, "rate_limited", "Too many requests; retry later.",
                               headers=headers)
            raise ApiError(503, "unavailable", "The service is temporarily unavailable.",
                           headers=headers)

    def _authorise(self, request: Request, alternatives: Scopes) -> TokenInfo:
        header = request.headers.get("authorization")
        for scopes in alternatives:
            try:
                return self.oauth.check(header, scopes)
            except AuthFailure as exc:
                if exc.kind == "invalid_token" or len(alternatives) == 1:
                    raise ApiError(exc.status, exc.kind, exc.description,
                                   headers={"WWW-Authenticate": exc.www_authenticate()}) from None
        wanted = " or ".join(" ".join(s) for s in alternatives)
        failure = AuthFailure("insufficient_scope", scope=" ".join(alternatives[0]),
                              description=f"This request needs scope {wanted}.")
        raise ApiError(403, failure.kind, failure.description,
                       headers={"WWW-Authenticate": failure.www_authenticate()})

    async def _json_body(self, request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            raise ApiError(413, "payload_too_large", "The request body is over 1 MiB.")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "payload_too_large", "The request body is over 1 MiB.")
        if not raw and "content-type" not in request.headers:
            return {}  # no body at all (e.g. POST .../webhooks/{id}/test)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type",
                           "Request bodies must be sent as Content-Type: application/json.")
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            raise ApiError(400, "bad_request", "The request body is not valid JSON.") from None
        return require_object(body)

    async def dispatch_v1(self, request: Request, methods: dict[str, tuple[Scopes, Handler]]
                          ) -> Response:
        rid, quota = self.request_id(), None
        method = "GET" if request.method == "HEAD" else request.method
        replayed = False
        try:
            self._take_failure("v1")
            scopes, handler = methods[method]
            token = self._authorise(request, scopes)
            account_id = str(token.subject.get("account_id"))
            quota = self.limiter.hit((token.client_id, account_id), self.now())
            if not quota.allowed:
                raise ApiError(429, "rate_limited",
                               f"Rate limit of {quota.limit} requests per "
                               f"{self.limiter.window:g} s exceeded.",
                               headers={"Retry-After": str(quota.retry_after)})
            path_account = request.path_params.get("account_id")
            if path_account is not None and path_account != account_id:
                raise not_found("Account")
            body = await self._json_body(request) if method in ("POST", "PATCH") else {}
            call = Call(request, token, account_id, body)
            key = request.headers.get("idempotency-key")
            if method == "POST" and key is not None:
                reply, replayed = self._idempotent(call, key, handler, rid)
            else:
                reply = self._run(call, handler, rid)
        except ApiError as exc:
            reply = self.error_reply(exc, rid)
        if quota is not None:
            reply.headers.update(quota.headers())
        if method != "GET" and not replayed and reply.status < 500:
            self.save()
        return self.respond(reply, rid)

    def _run(self, call: Call, handler: Handler, rid: str) -> Reply:
        before = self.webhooks.before(call)
        try:
            reply = handler(call)
        except ApiError as exc:
            return self.error_reply(exc, rid)
        self.webhooks.after(call, before, reply)
        return reply

    def _idempotent(self, call: Call, key: str, handler: Handler,
                    rid: str) -> tuple[Reply, bool]:
        if not 1 <= len(key) <= 255:
            raise ApiError(400, "bad_request", "Idempotency-Key must be 1 to 255 characters.")
        canonical = json.dumps([call.request.url.path, call.body], sort_keys=True)
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        seen = self.store.idempotent(call.account_id, key)
        if seen is not None:
            if seen["fingerprint"] != fingerprint:
                raise ApiError(409, "idempotency_conflict",
                               "This Idempotency-Key was used with a different request.")
            headers = {"Idempotent-Replayed": "true"}
            if seen.get("location"):
                headers["Location"] = seen["location"]
            return Reply(seen["status"], seen["body"], headers), True
        reply = self._run(call, handler, rid)
        if reply.status < 500 and reply.status != 429:
            self.store.remember(call.account_id, key, {
                "fingerprint": fingerprint, "status": reply.status, "body": reply.body,
                "location": reply.headers.get("Location")})
        return reply, False

    # -- pagination (§3.1) -----------------------------------------------------------------

    def _cursor(self, payload: dict[str, Any]) -> str:
        raw = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        text = raw.decode().rstrip("=")
        sig = hmac.new(self.cursor_key, text.encode(), hashlib.sha256).hexdigest()[:20]
        return f"{text}.{sig}"

    def _uncursor(self, cursor: str, kind: str, account_id: str) -> dict[str, Any]:
        bad = ApiError(400, "invalid_cursor", "The cursor is malformed or has expired.")
        text, _, sig = cursor.partition(".")
        expected = hmac.new(self.cursor_key, text.encode(), hashlib.sha256).hexdigest()[:20]
        if not hmac.compare_digest(sig, expected):
            raise bad
        try:
            payload = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except ValueError:
            raise bad from None
        if payload.get("k") != kind or payload.get("acc") != account_id or \
                payload.get("t", 0) + CURSOR_TTL < self.now():
            raise bad
        return payload

    def page(self, call: Call, kind: str, records: list[dict[str, Any]],
             filters_of: Callable[[Any], dict[str, Any]],
             key: Callable[[dict[str, Any]], list[Any]] = _page_key,
             render: Callable[[dict[str, Any]], Any] = lambda r: r) -> Reply:
        query = call.request.query_params
        limit_text = query.get("limit", "25")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise ApiError(400, "bad_request", "limit must be an integer from 1 to 100.",
                           [{"field": "limit", "issue": "must be an integer from 1 to 100"}])
        limit, after = int(limit_text), None
        if query.get("cursor"):
            cursor = self._uncursor(query["cursor"], kind, call.account_id)
            filters, after = cursor["f"], cursor["a"]
        else:
            filters = filters_of(query)
        rows = sorted((r for r in records if matches(kind, r, filters)), key=key)
        if after is not None:
            rows = [r for r in rows if key(r) > after]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = self._cursor({"k": kind, "acc": call.account_id, "f": filters,
                                    "a": key(rows[-1]), "t": self.now()}) if more else None
        return Reply(200, {"data": [render(r) for r in rows],
                           "pagination": {"next_cursor": next_cursor, "has_more": more}})

    # -- OAuth endpoints (§2) --------------------------------------------------------------

    def _oauth_reply(self, rid: str, body: dict[str, Any], status: int = 200,
                     headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(body, status_code=status, headers={
            **(headers or {}), "Cache-Control": "no-store", "Pragma": "no-cache",
            "X-Request-Id": rid})

    async def authorize_page(self, request: Request) -> Response:
        rid = self.request_id()
        params = dict(request.query_params)
        try:
            if any(len(request.query_params.getlist(k)) > 1 for k in params):
                raise OAuthFailure(400, "invalid_request", "A parameter is repeated.")
            error_redirect = self.oauth.validate_authorize(params)
        except OAuthFailure as exc:
            return self._oauth_reply(rid, exc.body(), exc.status)
        if error_redirect is not None:
            return RedirectResponse(error_redirect, 302, headers={"X-Request-Id": rid})
        if self.config.auto_approve:
            account = str(self.config.extra.get("account_id", ACCOUNT_ID))
            url = self.oauth.authorize(params, {"account_id": account})
            self.save()
            return RedirectResponse(url, 302, headers={"X-Request-Id": rid})
        return HTMLResponse(self._consent_html(params), headers={"X-Request-Id": rid,
                                                                  "Cache-Control": "no-store"})

    def _consent_html(self, params: dict[str, str]) -> str:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        options = "".join(f'<option value="{html.escape(a["id"])}">{html.escape(a["name"])}'
                          f"</option>" for a in self.store.accounts.values())
        scopes = html.escape(params.get("scope") or " ".join(sorted(SCOPES)))
        return ("<!doctype html><html><head><title>Invoice2go sandbox: authorize</title></head>"
                f"<body><h1>Authorize {html.escape(params.get('client_id', ''))}</h1>"
                f"<p>Requested access: <code>{scopes}</code></p>"
                f'<form method="post" action="/oauth/authorize">{hidden}'
                f'<label>Account <select name="account_id">{options}</select></label> '
                '<button name="approve" value="yes">Approve</button> '
                '<button name="approve" value="no">Deny</button></form></body></html>')

    async def authorize_decision(self, request: Request) -> Response:
        rid = self.request_id()
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                              keep_blank_values=True))
        approve, account = form.pop("approve", ""), form.pop("account_id", ACCOUNT_ID)
        try:
            if account not in self.store.accounts:
                raise OAuthFailure(400, "invalid_request", "Unknown account.")
            if approve == "yes":
                url = self.oauth.authorize(form, {"account_id": account})
            else:
                url = self.oauth.deny(form)
        except OAuthFailure as exc:
            return self._oauth_reply(rid, exc.body(), exc.status)
        self.save()
        return RedirectResponse(url, 302, headers={"X-Request-Id": rid})

    async def _oauth_form(self, request: Request) -> ImmutableMultiDict[str, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthFailure(400, "invalid_request",
                               "Send the request as application/x-www-form-urlencoded.")
        raw = (await request.body()).decode("utf-8", "replace")
        return ImmutableMultiDict(parse_qsl(raw, keep_blank_values=True))

    def _client_key(self, request: Request, form: ImmutableMultiDict[str, str]) -> str:
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                return base64.b64decode(header[6:].strip()).decode("utf-8").split(":", 1)[0]
            except ValueError:
                return "?"
        return form.get("client_id", "?")

    async def token(self, request: Request) -> Response:
        rid = self.request_id()
        try:
            self._take_failure("token")
            form = await self._oauth_form(request)
            quota = self.token_limiter.hit(self._client_key(request, form), self.now())
            if not quota.allowed:
                raise OAuthFailure(429, "rate_limited", "Too many token requests.",
                                   {"Retry-After": str(quota.retry_after)})
            body = self.oauth.token(form, request.headers.get("authorization"))
        except ApiError as exc:  # an injected failure
            return self._oauth_reply(rid, {"error": exc.code, "error_description": exc.message},
                                     exc.status, exc.headers)
        except OAuthFailure as exc:
            self.save()  # a replayed code revokes tokens
            return self._oauth_reply(rid, exc.body(), exc.status, exc.headers)
        self.save()
        return self._oauth_reply(rid, body)

    async def revoke(self, request: Request) -> Response:
        rid = self.request_id()
        try:
            form = await self._oauth_form(request)
            self.oauth.revoke(form, request.headers.get("authorization"))
        except OAuthFailure as exc:
            return self._oauth_reply(rid, exc.body(), exc.status, exc.headers)
        self.save()
        return self._oauth_reply(rid, {})

    # -- test controls ---------------------------------------------------------------------

    async def test_control(self, request: Request) -> Response:
        rid = self.request_id()
        action = request.path_params["action"]
        try:
            has_body = request.method == "POST" and bool(await request.body())
            body = await self._json_body(request) if has_body else {}
            result = self._control(request.method, action, body)
        except ApiError as exc:
            return self.respond(self.error_reply(exc, rid), rid)
        if request.method == "POST":
            self.save()
        return self.respond(Reply(200, result), rid)

    def _control(self, method: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if (method, action) == ("POST", "expire-tokens"):
            self.oauth.expire_access_tokens()
            return {"expired": True}
        if (method, action) == ("POST", "fail-next"):
            count, status = body.get("count", 1), body.get("status", 503)
            retry_after, target = body.get("retry_after"), body.get("target", "v1")
            if not (isinstance(count, int) and 1 <= count <= 1000 and status in (429, 503)
                    and target in ("v1", "token", "all")
                    and (retry_after is None or isinstance(retry_after, int))):
                raise ApiError(422, "validation_failed", "Bad fail-next request.")
            if status == 429 and retry_after is None:
                retry_after = 1
            self.failures.extend([(status, retry_after, target)] * count)
            return {"queued": len(self.failures)}
        if (method, action) == ("POST", "advance-clock"):
            seconds = body.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise ApiError(422, "validation_failed", "seconds must be a number >= 0.")
            self.offset += seconds
            return {"now": iso(self.now())}
        if (method, action) == ("GET", "state"):
            return self._dump()
        if (method, action) == ("POST", "reset"):
            self.store, self.offset = self._seeded_store(), 0.0
            self.failures.clear()
            self.limiter.hits.clear()
            self.token_limiter.hits.clear()
            if body.get("tokens"):
                self.oauth.load_json({})
            return {"reset": True}
        raise not_found("Test control")

    def _dump(self) -> dict[str, Any]:
        def ordered(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(table.values(), key=_page_key)
        return {"now": iso(self.now()), "accounts": list(self.store.accounts.values()),
                "clients": ordered(self.store.clients), "invoices": ordered(self.store.invoices),
                "metrics": ordered(self.store.metrics),
                "webhooks": [public_webhook(h) for h in ordered(self.store.webhooks)],
                "outbox": self.store.outbox,
                "tokens": self.oauth.stats(),
                "idempotency_keys": len(self.store.idempotency),
                "pending_failures": len(self.failures)}

    # -- resources (§5) --------------------------------------------------------------------

    def list_accounts(self, call: Call) -> Reply:
        return self.page(call, "accounts", [self.store.account(call.account_id)], no_filters)

    def get_account(self, call: Call) -> Reply:
        return Reply(200, {"data": self.store.account(call.account_id)})

    def _created(self, call: Call, record: dict[str, Any], render: Any = None) -> Reply:
        location = f"{str(call.request.url.replace(query='')).rstrip('/')}/{record['id']}"
        return Reply(201, {"data": render(record) if render else record},
                     {"Location": location})

    def list_clients(self, call: Call) -> Reply:
        return self.page(call, "clients", self.store.of_account("clients", call.account_id),
                         lambda q: parse_filters(q, text=("email",)))

    def create_client(self, call: Call) -> Reply:
        return self._created(call, self.store.create_client(call.account_id, call.body))

    def get_client(self, call: Call) -> Reply:
        return Reply(200, {"data": self.store.get_client(call.account_id,
                                                         call.param("client_id"))})

    def update_client(self, call: Call) -> Reply:
        return Reply(200, {"data": self.store.update_client(
            call.account_id, call.param("client_id"), call.body)})

    def delete_client(self, call: Call) -> Reply:
        self.store.delete_client(call.account_id, call.param("client_id"))
        return Reply(204)

    def list_invoices(self, call: Call) -> Reply:
        return self.page(call, "invoices", self.store.of_account("invoices", call.account_id),
                         lambda q: parse_filters(q, text=("client_id",), statuses=True,
                                            dates=("document_date_from", "document_date_to")))

    def create_invoice(self, call: Call) -> Reply:
        return self._created(call, self.store.create_invoice(call.account_id, call.body))

    def get_invoice(self, call: Call) -> Reply:
        return Reply(200, {"data": self.store.get_invoice(call.account_id,
                                                          call.param("invoice_id"))})

    def update_invoice(self, call: Call) -> Reply:
        return Reply(200, {"data": self.store.update_invoice(
            call.account_id, call.param("invoice_id"), call.body)})

    def delete_invoice(self, call: Call) -> Reply:
        self.store.delete_invoice(call.account_id, call.param("invoice_id"))
        return Reply(204)

    def add_payment(self, call: Call) -> Reply:
        invoice = self.store.add_payment(call.account_id, call.param("invoice_id"), call.body)
        location = str(call.request.url.replace(query="")).rsplit("/payments", 1)[0]
        return Reply(201, {"data": invoice}, {"Location": location})

    def list_tags(self, call: Call) -> Reply:
        return self.page(call, "tags", self.store.tags_in_use(call.account_id), no_filters,
                         key=lambda r: [r["name"]])

    def push_metrics(self, call: Call) -> Reply:
        data, meta = self.store.push_metrics(call.account_id, call.body)
        return Reply(200, {"data": [_strip_account(m) for m in data], "meta": meta})

    def list_metrics(self, call: Call) -> Reply:
        return self.page(call, "metrics", self.store.of_account("metrics", call.account_id),
                         lambda q: parse_filters(q, text=("source", "key", "client_id"),
                                            periods=("period_from", "period_to")),
                         render=_strip_account)

    def get_metric(self, call: Call) -> Reply:
        return Reply(200, {"data": _strip_account(
            self.store.get_metric(call.account_id, call.param("metric_id")))})

    def delete_metric(self, call: Call) -> Reply:
        self.store.delete_metric(call.account_id, call.param("metric_id"))
        return Reply(204)

    def list_webhooks(self, call: Call) -> Reply:
        return self.page(call, "webhooks", self.store.of_account("webhooks", call.account_id),
                         no_filters, render=public_webhook)

    def create_webhook(self, call: Call) -> Reply:
        hook = self.store.create_webhook(call.account_id, call.body)
        return self._created(call, hook, lambda h: public_webhook(h, with_secret=True))

    def get_webhook(self, call: Call) -> Reply:
        return Reply(200, {"data": public_webhook(
            self.store.get_webhook(call.account_id, call.param("webhook_id")))})

    def update_webhook(self, call: Call) -> Reply:
        return Reply(200, {"data": public_webhook(self.store.update_webhook(
            call.account_id, call.param("webhook_id"), call.body))})

    def delete_webhook(self, call: Call) -> Reply:
        self.store.delete_webhook(call.account_id, call.param("webhook_id"))
        return Reply(204)

    def test_webhook(self, call: Call) -> Reply:
        self.store.queue_test_event(call.account_id, call.param("webhook_id"))
        return Reply(202)

    # -- wiring ----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        def one(*scopes: str) -> Scopes:
            return (scopes,)

        acc = "/v1/accounts/{account_id}"
        table: list[tuple[str, dict[str, tuple[Scopes, Handler]]]] = [
            ("/v1/accounts", {"GET": (one("accounts:read"), self.list_accounts)}),
            (acc, {"GET": (one("accounts:read"), self.get_account)}),
            (f"{acc}/clients", {"GET": (one("clients:read"), self.list_clients),
                                "POST": (one("clients:write"), self.create_client)}),
            (f"{acc}/clients/{{client_id}}", {
                "GET": (one("clients:read"), self.get_client),
                "PATCH": (one("clients:write"), self.update_client),
                "DELETE": (one("clients:write"), self.delete_client)}),
            (f"{acc}/invoices", {"GET": (one("invoices:read"), self.list_invoices),
                                 "POST": (one("invoices:write"), self.create_invoice)}),
            (f"{acc}/invoices/{{invoice_id}}", {
                "GET": (one("invoices:read"), self.get_invoice),
                "PATCH": (one("invoices:write"), self.update_invoice),
                "DELETE": (one("invoices:write"), self.delete_invoice)}),
            (f"{acc}/invoices/{{invoice_id}}/payments",
             {"POST": (one("invoices:write"), self.add_payment)}),
            (f"{acc}/tags", {"GET": ((("invoices:read",), ("clients:read",)), self.list_tags)}),
            (f"{acc}/insights/metrics", {"GET": (one("insights:read"), self.list_metrics),
                                         "POST": (one("insights:write"), self.push_metrics)}),
            (f"{acc}/insights/metrics/{{metric_id}}", {
                "GET": (one("insights:read"), self.get_metric),
                "DELETE": (one("insights:write"), self.delete_metric)}),
            (f"{acc}/webhooks", {"GET": (one("webhooks:manage"), self.list_webhooks),
                                 "POST": (one("webhooks:manage"), self.create_webhook)}),
            (f"{acc}/webhooks/{{webhook_id}}", {
                "GET": (one("webhooks:manage"), self.get_webhook),
                "PATCH": (one("webhooks:manage"), self.update_webhook),
                "DELETE": (one("webhooks:manage"), self.delete_webhook)}),
            (f"{acc}/webhooks/{{webhook_id}}/test",
             {"POST": (one("webhooks:manage"), self.test_webhook)}),
        ]
        routes = [Route(path, self._endpoint(methods), methods=list(methods))
                  for path, methods in table]
        return routes + [
            Route("/oauth/authorize", self.authorize_page, methods=["GET"]),
            Route("/oauth/authorize", self.authorize_decision, methods=["POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
            *self.webhooks.routes(),
            Route("/__test__/{action}", self.test_control, methods=["GET", "POST"]),
        ]

    def _endpoint(self, methods: dict[str, tuple[Scopes, Handler]]
                  ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.dispatch_v1(request, methods)
        return endpoint

    async def http_error(self, request: Request, exc: Exception) -> Response:
        rid = self.request_id()
        status = getattr(exc, "status_code", 500)
        code, message = {404: ("not_found", "No such resource."),
                         405: ("method_not_allowed", "Method not allowed here.")}.get(
            status, ("internal_error", "Internal error."))
        headers = dict(getattr(exc, "headers", None) or {})
        return self.respond(Reply(status, _error_body(code, message, [], rid), headers), rid)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The Invoice2go sandbox as a Starlette app (serve it with ``splice.sandbox.server.serve``)."""
    sandbox = Sandbox(config or SandboxConfig())
    app = Starlette(routes=sandbox.routes(),
                    exception_handlers={HTTPException: sandbox.http_error,
                                        Exception: sandbox.http_error})
    app.state.sandbox = sandbox
    return app

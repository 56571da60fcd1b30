"""The gate in front of the whole serve application: sessions, sign-in, CSRF, headers.

Every request except webhook deliveries (``/hooks/*``, verified by their signatures) passes
here. Open without a session: ``/login``, ``/static/*``, ``/healthz``, ``/metrics`` and
``/api/openapi.json``; ``/api/*`` also answers a bearer token (the serve API token, checked
by the API itself). Everything else needs a signed-in session: a page request without one is
sent to ``/login`` (303), anything else gets 401.

A signed-in POST, PUT, PATCH or DELETE must carry the session's CSRF token, in the
``X-CSRF-Token`` header (htmx and the dashboard's scripts) or the ``csrf`` form field (plain
forms), else 403. Responses get a Content-Security-Policy without inline scripts or styles,
``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: no-referrer`` (sign-in links carry
a token) and ``Cache-Control: no-store`` (pages show connection data), static files excepted.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from .session import COOKIE, Sessions

__all__ = ["CSP", "OPEN_PATHS", "WebGate"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/login", "/healthz", "/metrics", "/api/openapi.json"})
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM = 1 << 20  # bytes of a form body read to find its CSRF field
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)


def _cookie(headers: Headers) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _wants_page(scope: Scope, headers: Headers) -> bool:
    return (scope["method"] in ("GET", "HEAD") and not scope["path"].startswith("/api/")
            and "hx-request" not in headers
            and not headers.get("accept", "").startswith("application/json"))


class WebGate:
    """ASGI middleware wrapping the serve application (see the module docstring)."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/hooks/"):
            await self.app(scope, receive, send)  # deliveries: signatures, not sessions
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        session = self.sessions.load(_cookie(headers))
        before = json.dumps(session, sort_keys=True)
        scope["session"] = session
        api = path.startswith("/api/")
        # A script with the bearer token: the API checks it; no session, so no CSRF either.
        signed_in = bool(session.get("user")) and not (api and "authorization" in headers)
        scope["splice.signed_in"] = signed_in
        static = path.startswith("/static/")
        if not (static or api or path in OPEN_PATHS) and not signed_in:
            await self._deny(scope, headers)(scope, receive, send)
            return
        if signed_in and scope["method"] in UNSAFE:
            receive, ok = await self._check_csrf(scope, headers, receive, session)
            if not ok:
                await self._send(PlainTextResponse(
                    "403 Forbidden: the form is out of date or was not sent by this dashboard "
                    "(missing or wrong CSRF token). Reload the page and try again.",
                    status_code=403), scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    out.setdefault(name, value)
                if static:
                    out.setdefault("cache-control", "public, max-age=3600")
                else:
                    out["cache-control"] = "no-store"
                    out.append("vary", "Cookie")
                current = scope.get("session") or {}
                if json.dumps(current, sort_keys=True) != before:
                    out.append("set-cookie", self.sessions.header(dict(current)))
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _send(self, response: Response, scope: Scope, receive: Receive,
                    send: Send) -> None:
        response.headers.update(dict(SECURITY_HEADERS))
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)

    def _deny(self, scope: Scope, headers: Headers) -> Callable[..., Awaitable[None]]:
        if _wants_page(scope, headers):
            target = scope["path"] + (("?" + scope["query_string"].decode("latin-1"))
                                      if scope.get("query_string") else "")
            response: Response = RedirectResponse(f"/login?next={quote(target, safe='')}",
                                                  status_code=303)
        else:
            response = JSONResponse({"error": "sign in first: open the link `splice "
                                              "login-link` prints"}, status_code=401)

        async def deny(scope: Scope, receive: Receive, send: Send) -> None:
            await self._send(response, scope, receive, send)
        return deny

    async def _check_csrf(self, scope: Scope, headers: Headers, receive: Receive,
                          session: dict[str, Any]) -> tuple[Receive, bool]:
        expected = str(session.get("csrf") or "")
        given = headers.get("x-csrf-token")
        if given is None and headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            body, receive = await _buffer(receive)
            if body is None:
                return receive, False
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10_000)
            given = next(iter(fields.get("csrf", [])), None)
        ok = bool(expected) and given is not None and hmac.compare_digest(
            given.encode(), expected.encode())
        return receive, ok


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None when over ``MAX_FORM``) and a receive that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return body, replay

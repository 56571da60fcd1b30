"""A small API that checks one auth kind per route, for the auth-kind tests.

``/oauth/token`` is an OAuth server (``splice.sandbox.OAuthServer``) granting client
credentials whose access tokens live ``access_ttl`` seconds (2 by default), so a ``--watch``
run crosses several expiries in a few seconds. ``/cc/...`` routes need one of those tokens;
``/key``, ``/query``, ``/basic``, ``/bearer`` and ``/hmac`` check a static credential in the
header, query parameter or signature the docs say each kind sends. Every request's auth
headers and query are recorded in ``app.state.seen``; ``app.state.items`` grows with
``add_item``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from splice.sandbox import AuthFailure, OAuthClient, OAuthFailure, OAuthServer

CLIENT_ID, CLIENT_SECRET = "machine-client", "machine-secret-5f1c9e"
API_KEY = "key-7d3a91c0b2e4"
USERNAME, PASSWORD = "alice", "pa:ss-wörd-0b9"
BEARER = "static-bearer-99d8e1"
HMAC_SECRET = "hmac-secret-3c2b1a"


def sign(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """The signature the test HMAC plugin sends and this API checks."""
    message = f"{timestamp}.{method}.{target}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def create_app(access_ttl: int = 2) -> Starlette:
    oauth = OAuthServer(clients=[OAuthClient(CLIENT_ID, CLIENT_SECRET, [],
                                             {"items.read", "items.write"},
                                             subject={"tenant": "t-1"})],
                        clock=time.time, access_ttl=access_ttl, refresh_ttl=None)

    def record(request: Request) -> None:
        request.app.state.seen.append({
            "path": request.url.path, "query": dict(request.query_params),
            **{h: request.headers[h] for h in ("authorization", "x-api-key", "x-signature",
                                               "x-timestamp") if h in request.headers}})

    def denied(message: str) -> Response:
        return JSONResponse({"message": message}, status_code=401)

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        try:
            body = oauth.token(form,
                               request.headers.get("authorization"))
        except OAuthFailure as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        return JSONResponse(body)

    def bearer_check(request: Request, scopes: list[str]) -> Response | None:
        record(request)
        try:
            oauth.check(request.headers.get("authorization"), scopes)
        except AuthFailure as exc:
            request.app.state.rejected += 1
            return JSONResponse({"message": exc.description}, status_code=exc.status,
                                headers={"WWW-Authenticate": exc.www_authenticate()})
        return None

    async def cc_whoami(request: Request) -> Response:
        return bearer_check(request, []) or JSONResponse({"ok": True, "kind": "cc"})

    async def cc_items(request: Request) -> Response:
        if (refused := bearer_check(request, ["items.read"])) is not None:
            return refused
        skip = int(request.query_params.get("skip", "0"))
        limit = int(request.query_params.get("limit", "50"))
        return JSONResponse({"items": request.app.state.items[skip:skip + limit]})

    async def cc_notes(request: Request) -> Response:
        if (refused := bearer_check(request, ["items.write"])) is not None:
            return refused
        body = await request.json()
        note = {"id": f"n{len(request.app.state.notes) + 1}", "text": body["text"]}
        request.app.state.notes.append(note)
        return JSONResponse(note, status_code=201)

    async def key(request: Request) -> Response:
        record(request)
        if request.headers.get("x-api-key") != API_KEY:
            return denied("bad api key")
        return JSONResponse({"ok": True, "kind": "key"})

    async def query(request: Request) -> Response:
        record(request)
        if request.query_params.get("api_key") != API_KEY:
            return denied("bad api key")
        return JSONResponse({"ok": True, "kind": "query"})

    async def basic(request: Request) -> Response:
        record(request)
        expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return denied("bad basic credentials")
        return JSONResponse({"ok": True, "kind": "basic"})

    async def bearer(request: Request) -> Response:
        record(request)
        if request.headers.get("authorization") != f"Bearer {BEARER}":
            return denied("bad bearer token")
        return JSONResponse({"ok": True, "kind": "bearer"})

    async def signed(request: Request) -> Response:
        record(request)
        stamp = request.headers.get("x-timestamp", "")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        expected = sign(HMAC_SECRET, stamp, request.method, target, await request.body())
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300 or not \
                hmac.compare_digest(request.headers.get("x-signature", ""), expected):
            return denied("bad signature")
        return JSONResponse({"ok": True, "kind": "hmac"})

    app = Starlette(routes=[
        Route("/oauth/token", token, methods=["POST"]),
        Route("/cc/whoami", cc_whoami), Route("/cc/items", cc_items),
        Route("/cc/notes", cc_notes, methods=["POST"]),
        Route("/key/whoami", key), Route("/query/whoami", query),
        Route("/basic/whoami", basic), Route("/bearer/whoami", bearer),
        Route("/hmac/whoami", signed),
    ])
    app.state.oauth = oauth
    app.state.items = []
    app.state.notes = []
    app.state.seen = []
    app.state.rejected = 0
    return app


def add_item(app: Any, name: str) -> None:
    items = app.state.items
    items.append({"id": f"i{len(items) + 1}", "name": name})

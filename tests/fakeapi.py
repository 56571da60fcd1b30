"""A small CRM-like API for engine tests, served over real loopback HTTP.

``GET /contacts`` pages with skip/limit; ``POST /notes`` and ``POST /contacts/{id}/tags`` are
the write actions. Every request is recorded in ``app.state.log``; ``app.state.fail`` makes
the next POSTs to a path fail with a status (``count: None``: until removed). Bearer token
``test-token`` is required. ``app.state.honour_idempotency = False`` makes ``/notes`` ignore
``Idempotency-Key`` (like an API that documents none); ``app.state.delay`` (seconds) holds
every write's answer after the write was applied; ``app.state.on_write`` (a function) is
called after each write is applied. ``app.state.rate_limit = (limit, seconds)`` limits every
authenticated request to ``limit`` per sliding window (refused ones do not count), answering
429 with ``Retry-After`` over it; ``app.state.arrivals`` then records ``(time.monotonic(),
admitted)`` of each (``False``: answered 429).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "test-token-0123456789"


def make_contacts(n: int) -> list[dict[str, Any]]:
    return [{"id": f"c{i:04d}", "name": f"Contact {i}", "email": f"c{i}@example.com",
             "zip": f"{i:05d}", "score": i % 7, "updated_at": f"2026-05-01T10:{i % 60:02d}:00Z"}
            for i in range(1, n + 1)]


def create_app(n_contacts: int = 25) -> Starlette:
    async def guard(request: Request) -> Response | None:
        request.app.state.log.append((request.method, request.url.path,
                                      dict(request.query_params),
                                      request.headers.get("idempotency-key")))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"message": "bad token"}, status_code=401)
        if request.app.state.rate_limit is not None:
            limit, window = request.app.state.rate_limit
            now, hits = time.monotonic(), request.app.state.hits
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                request.app.state.arrivals.append((now, False))
                wait = max(1, math.ceil(hits[0] + window - now))
                return JSONResponse({"message": "too many requests"}, status_code=429,
                                    headers={"Retry-After": str(wait)})
            hits.append(now)
            request.app.state.arrivals.append((now, True))
        fail = request.app.state.fail.get(request.url.path) or (
            request.app.state.fail.get("*") if request.method == "POST" else None)
        if fail and request.method == "POST":
            if fail["count"] is not None:
                fail["count"] -= 1
                if fail["count"] <= 0:
                    request.app.state.fail.pop(request.url.path, None)
                    request.app.state.fail.pop("*", None)
            return JSONResponse({"message": fail.get("message", "server is unhappy")},
                                status_code=fail["status"])
        return None

    async def contacts(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        skip = int(request.query_params.get("skip", "0"))
        limit = int(request.query_params.get("limit", "10"))
        rows = request.app.state.contacts
        return JSONResponse({"data": {"contacts": rows[skip:skip + limit], "total": len(rows)}})

    async def notes(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        body = await request.json()
        key = request.headers.get("idempotency-key")
        honour = request.app.state.honour_idempotency
        if honour and key and key in request.app.state.idem:
            return JSONResponse(request.app.state.idem[key], status_code=201)
        note = {"id": f"n{len(request.app.state.notes) + 1}", **body}
        request.app.state.notes.append(note)
        if key:
            request.app.state.idem[key] = note
        if request.app.state.on_write:
            request.app.state.on_write()
        if request.app.state.delay:
            await asyncio.sleep(request.app.state.delay)  # applied; the answer is late
        return JSONResponse(note, status_code=201)

    async def tags(request: Request) -> Response:
        if (denied := await guard(request)) is not None:
            return denied
        body = await request.json()
        cid = request.path_params["contact_id"]
        request.app.state.tags.setdefault(cid, []).extend(body["tags"])
        if request.app.state.on_write:
            request.app.state.on_write()
        if request.app.state.delay:
            await asyncio.sleep(request.app.state.delay)
        return JSONResponse({"contact_id": cid, "tags": request.app.state.tags[cid]})

    app = Starlette(routes=[
        Route("/contacts", contacts),
        Route("/notes", notes, methods=["POST"]),
        Route("/contacts/{contact_id}/tags", tags, methods=["POST"]),
    ])
    app.state.contacts = make_contacts(n_contacts)
    app.state.notes = []
    app.state.tags = {}
    app.state.idem = {}
    app.state.log = []
    app.state.fail = {}
    app.state.honour_idempotency = True
    app.state.delay = 0.0
    app.state.on_write = None
    app.state.rate_limit = None
    app.state.hits = deque()
    app.state.arrivals = []
    return app

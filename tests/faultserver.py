"""A loopback API that misbehaves on request: resilience and pagination tests drive it.

``create_app(n_records)`` returns a Starlette app (serve it with ``splice.sandbox.server.serve``):

* ``/flaky/{name}`` (any method) plays the script ``app.state.scripts[name]`` one action per
  request, then answers 200 ``{"ok": true, "arrival": n}``. Actions: ``{"status": 503,
  "headers": {...}}``, ``{"reset": True}`` (headers and half the body, then the connection is
  dropped), ``{"hang": 1.0}`` (answer only after that many seconds), ``{"headers": {...}}``
  (a 200 with those headers).
* ``/items/{kind}`` serves ``n_records`` records in pages: ``offset`` (skip/limit + total),
  ``page`` (page/per_page), ``cursor`` (cursor in the body + has_more), ``cursor_header``
  (``X-Next-Cursor``), ``next`` (relative next URL in the body), ``link`` (``Link`` header),
  ``stuck`` (always the same cursor), ``ignores_skip`` (always the first page), ``escape``
  (a next URL on another host).

Every request is appended to ``app.state.log`` as an :class:`Arrival` (server clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Arrival:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class _QuietIncomplete(logging.Filter):
    """Drop uvicorn's error line for the responses this server cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietIncomplete())


def make_records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:05d}", "name": f"Record {i}", "n": i} for i in range(1, n + 1)]


def _log(request: Request) -> int:
    log: list[Arrival] = request.app.state.log
    log.append(Arrival(time.time(), request.method, request.url.path,
                       dict(request.query_params), dict(request.headers)))
    return len(log)


class Flaky:
    """Raw ASGI endpoint (so it can drop a connection half-way through a body)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        arrival = _log(request)
        await request.body()
        script: list[dict[str, Any]] = request.app.state.scripts.get(
            scope["path_params"]["name"], [])
        action = script.pop(0) if script else {}
        if action.get("hang"):
            await asyncio.sleep(float(action["hang"]))
        if action.get("reset"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"partial": ',
                        "more_body": True})
            return  # uvicorn closes the connection: the client sees a truncated body
        status = int(action.get("status", 200))
        body = action.get("json", {"ok": status < 400, "arrival": arrival})
        response = JSONResponse(body, status_code=status, headers=action.get("headers"))
        await response(scope, receive, send)


def _page(request: Request, default_size: int = 10) -> tuple[list[dict[str, Any]], int, int]:
    records = request.app.state.records
    size = int(request.query_params.get("limit") or request.query_params.get("per_page")
               or default_size)
    return records, size, len(records)


async def items(request: Request) -> Response:
    _log(request)
    kind = request.path_params["kind"]
    q = request.query_params
    records, size, total = _page(request)
    base = str(request.url.path)
    if kind == "offset":
        skip = int(q.get("skip", "0"))
        return JSONResponse({"data": records[skip:skip + size], "total": total})
    if kind == "ignores_skip":
        return JSONResponse({"data": records[:size]})
    if kind == "page":
        page = int(q.get("page", "1"))
        return JSONResponse({"items": records[(page - 1) * size:page * size]})
    if kind in ("cursor", "cursor_header", "stuck"):
        start = 0 if kind == "stuck" else int(q.get("cursor") or q.get("after") or "0")
        chunk = records[start:start + size]
        nxt = start + len(chunk)
        more = nxt < total
        if kind == "stuck":
            return JSONResponse({"data": chunk, "next_cursor": "same", "has_more": True})
        if kind == "cursor_header":
            return JSONResponse({"data": chunk},
                                headers={"X-Next-Cursor": str(nxt)} if more else None)
        return JSONResponse({"data": chunk, "next_cursor": str(nxt) if more else None,
                             "has_more": more})
    if kind in ("next", "link", "escape"):
        start = int(q.get("from", "0"))
        chunk = records[start:start + size]
        nxt = start + len(chunk)
        url = f"{base}?from={nxt}&limit={size}" if nxt < total else None
        if kind == "escape":
            url = "http://evil.invalid/steal?from=10"
        if kind == "link":
            return JSONResponse({"data": chunk},
                                headers={"Link": f'<{url}>; rel="next"'} if url else None)
        return JSONResponse({"data": chunk, "links": {"next": url}})
    return JSONResponse({"error": f"unknown kind {kind}"}, status_code=404)


def create_app(n_records: int = 25) -> Starlette:
    app = Starlette(routes=[
        Route("/flaky/{name}", Flaky(), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/items/{kind}", items),
    ])
    app.state.log = []
    app.state.scripts = {}
    app.state.records = make_records(n_records)
    return app


def arrivals(app: Starlette, path: str) -> list[Arrival]:
    return [a for a in app.state.log if a.path == path]



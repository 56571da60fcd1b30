"""The benchmark API: a paginated record list and a POST sink, served by uvicorn on 127.0.0.1.

The server is as fast as uvicorn gets in one process (httptools for HTTP parsing, uvloop for
the event loop; both are in ``bench/requirements.txt``), so both sides of a comparison spend
their time in the client and not in the server.

``GET /d/{n}/records?skip=&limit=`` pages through ``n`` generated records of 15 fields
(``{"data": [...], "total": n}``); pages are rendered once and cached (up to ~120 MB) so the
server spends as little time as possible per request. ``POST /sink`` accepts a JSON object and
answers 201 with a small JSON body. ``GET /health`` answers once the server is up.

Run: ``python bench/api.py PORT [--lifetime SECONDS]``. The process exits after its lifetime
or as soon as its parent process goes away, so an interrupted benchmark leaves no server behind.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

FIELDS = 15
_CACHE_LIMIT = 120 * 1024 * 1024


def record(i: int) -> dict[str, Any]:
    """Record ``i`` (15 fields, ~400 bytes of JSON), the same on every run."""
    return {
        "id": f"rec-{i:07d}", "name": f"Customer {i}", "email": f"customer{i}@example.com",
        "phone": f"+1-555-{i % 10000:04d}", "company": f"Company {i % 997}",
        "city": ("Lisbon", "Austin", "Osaka", "Lagos", "Lima")[i % 5], "country": "XX",
        "zip": f"{i % 100000:05d}", "status": ("lead", "active", "churned")[i % 3],
        "score": i % 100, "amount": round(i * 1.37 % 10000, 2), "tags": ["a", f"t{i % 7}"],
        "created_at": f"2026-01-{1 + i % 28:02d}T10:00:00Z",
        "updated_at": f"2026-05-{1 + i % 28:02d}T{i % 24:02d}:00:00Z", "active": i % 2 == 0,
    }


class App:
    """A raw ASGI app (no framework routing in the hot path)."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, int, int], bytes] = {}
        self.cached = 0
        self.posts = 0

    def page(self, n: int, skip: int, limit: int) -> bytes:
        key = (n, skip, limit)
        body = self.pages.get(key)
        if body is None:
            rows = [record(i) for i in range(skip + 1, min(n, skip + limit) + 1)]
            body = json.dumps({"data": rows, "total": n}, separators=(",", ":")).encode()
            if self.cached + len(body) <= _CACHE_LIMIT:
                self.pages[key] = body
                self.cached += len(body)
        return body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        status, body = 404, b'{"error":"not found"}'
        if scope["method"] == "POST" and path == "/sink":
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
            self.posts += 1
            status, body = 201, b'{"id":%d,"received":true}' % self.posts
        elif path.startswith("/d/") and path.endswith("/records"):
            query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&")
                         if "=" in p)
            n = int(path.split("/")[2])
            status = 200
            body = self.page(n, int(query.get("skip", 0)), int(query.get("limit", 100)))
        elif path == "/health":
            status, body = 200, b'{"ok":true}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _watchdog(lifetime: float, parent: int) -> None:
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str]) -> None:
    import uvicorn

    port = int(argv[0])
    lifetime = float(argv[argv.index("--lifetime") + 1]) if "--lifetime" in argv else 1800.0
    threading.Thread(target=_watchdog, args=(lifetime, os.getppid()), daemon=True).start()
    uvicorn.run(App(), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off", loop="uvloop", http="httptools")


if __name__ == "__main__":
    main(sys.argv[1:])

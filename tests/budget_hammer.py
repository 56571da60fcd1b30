"""One OS process hammering a HighLevel location through a stored connection, as a recipe step
does (rendered defaults, the connection's API client, its rate budget, its retries).

Run by tests/test_shared_budgets.py and bench/budget.py (which also import :class:`Arrivals`,
the sandbox middleware that records when each request arrived)::

    python tests/budget_hammer.py CONNECTION COUNT LIMIT PER [START_AT]

The connector's declared budget is replaced by ``LIMIT`` per ``PER`` keyed by location (the
sandbox is configured with the same limit). Every request's status is printed as one JSON
line at the end: ``{"ok": n, "failed": [...], "statuses": {...}, "waited": seconds}``.
``START_AT`` (epoch seconds) lines the processes up. ``BUDGET_IN_PROCESS=1`` gives the
process a budget of its own (the benchmark's baseline).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any


class Arrivals:
    """ASGI middleware: when each API request reached the sandbox, and its status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/social-media-posting/"):
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.seen.append((arrived, int(message["status"])))
            await send(message)

        await self.app(scope, receive, record)



def most_in_one_window(times: list[float], window: float) -> int:
    """The most arrivals in any window of ``window`` seconds (sliding)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def main() -> None:
    from splice.connections.client import connection_client
    from splice.errors import SpliceError
    from splice.http.ratelimit import limiter_for
    from splice.http.request import prepare_call
    from splice.mapping.templates import TemplateEngine
    from splice.plugins import get_registry
    from splice.run.steps import render_defaults, rendered_parts
    from splice.store.database import Store

    name, count, limit, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    registry = get_registry()
    connector = dataclasses.replace(registry.connector("ghl_users"), rate_limits=[
        {"limit": limit, "per": per, "key": "locationId"}])
    store = Store.open()
    record = store.require_connection(name)
    statuses: collections.Counter[str] = collections.Counter()

    def seen(request: Any, response: Any, attempt: Any) -> None:
        statuses[str(response.status_code) if response is not None else "error"] += 1

    op = connector.operation("list_tags")
    fields = dict(record.config.get("fields") or {})
    context = {"connection": {"name": name, "base_url": record.base_url, **fields}}
    engine = TemplateEngine(registry.filters)
    payload = render_defaults(engine, op.defaults, context)
    parts = rendered_parts(op, {"input": payload, "connection": context["connection"]},
                           lambda part, value: engine.compile_mapping(value, where=part))
    ok, failed, waited = 0, [], 0.0
    extra: dict[str, Any] = {}
    if os.environ.get("BUDGET_IN_PROCESS"):  # bench baseline: a budget of this process's own
        extra["limiter"] = limiter_for(connector, record, store, path=None)
    with connection_client(connector, record, store, registry, on_request=seen,
                           **extra) as client:
        call = prepare_call(op, connector, payload, base_url=client.base_url, **parts)
        if start_at:
            time.sleep(max(0.0, start_at - time.time()))
        started = time.time()
        for _ in range(count):
            try:  # what a step result would hold: the answer, or the error raised
                result = client.send(op, call)
                ok += 1
                waited += sum(a.budget_wait for a in result.attempts)
            except SpliceError as exc:
                failed.append(f"{type(exc).__name__}: {exc}"[:300])
        elapsed = time.time() - started
    store.close()
    print(json.dumps({"ok": ok, "failed": failed, "statuses": dict(statuses),
                      "waited": waited, "started": started, "elapsed": elapsed}))


if __name__ == "__main__":
    main()

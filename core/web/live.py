"""Live updates of runs and events as server-sent events (``GET /live/runs``).

One :class:`LiveFeed` per dashboard: a single asyncio task reads what changed in the ledger
once per ``interval`` (``runs_since`` and ``events_since``: one database poll a tick, however
many browsers listen) and hands each change, rendered once, to every listener's bounded queue.
The task runs only while someone listens. A stream:

- starts with ``retry:`` (how soon the browser reconnects), then the messages of the last
  ``REPLAY`` seconds (what changed while the page loaded), then ``event: run`` /
  ``event: event`` messages whose data is JSON (``id``, ``recipe``, ``status``, ``run_id``
  and the server-rendered, escaped ``html`` of the row); the page upserts rows by id, so a
  message seen twice changes nothing;
- sends a ``: heartbeat`` comment every ``heartbeat`` seconds (proxies keep it open, a gone
  browser is noticed);
- is bounded: it ends after ``lifetime`` seconds (the browser reconnects on its own), when its
  queue overflows (a listener that cannot keep up reconnects instead of holding memory), when
  the browser goes away, and at once when the feed is closed (shutdown);
- refuses more than ``max_listeners`` at once (503: the browser retries).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from ..store.queries import events_since, runs_since
from ..store.tables import now

log = logging.getLogger("splice.web.live")

Render = Callable[[str, Any], str]  # (kind, record) -> the row's HTML
OVERLAP = timedelta(seconds=5)  # changes committed late (a long transaction) are still seen
REPLAY = 10.0  # seconds of recent messages a new listener gets first (rows are upserted by id)
_CLOSED = object()


def sse(event: str | None, data: str) -> bytes:
    """One server-sent event (``data`` may hold newlines: one ``data:`` line each)."""
    lines = [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


class LiveFeed:
    def __init__(self, store: Any, render: Render, *, interval: float = 1.0,
                 heartbeat: float = 15.0, lifetime: float = 300.0, max_listeners: int = 100,
                 queue_size: int = 200) -> None:
        self.store = store
        self.render = render
        self.interval = interval
        self.heartbeat = heartbeat
        self.lifetime = lifetime
        self.max_listeners = max_listeners
        self.queue_size = queue_size
        self.listeners: set[asyncio.Queue[Any]] = set()
        self.polls = 0  # database polls made (all listeners share them)
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._since: datetime | None = None
        self._known: dict[tuple[str, Any], tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, bytes]] = deque(maxlen=queue_size)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """End every stream now (shutdown); thread-safe."""
        self.closed = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._close_listeners)
        except RuntimeError:  # the loop stopped meanwhile
            pass

    def _close_listeners(self) -> None:
        for queue in list(self.listeners):
            _offer(queue, _CLOSED)
        if self._task is not None:
            self._task.cancel()

    # -- the one poller ---------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while self.listeners and not self.closed:
                try:
                    messages = await asyncio.to_thread(self._read)
                except Exception as exc:  # noqa: BLE001 - a database hiccup: try next tick
                    log.warning("live feed: %s", type(exc).__name__)
                    messages = []
                for queue in list(self.listeners):
                    for message in messages:
                        if not _offer(queue, message):
                            self.listeners.discard(queue)
                            _offer(queue, _CLOSED, force=True)
                            break
                await asyncio.sleep(self.interval)
        finally:
            self._task = None

    def _read(self) -> list[bytes]:
        """What changed since the last tick, as SSE messages (rendered once for everyone)."""
        with self._lock:
            started = now()
            since = (self._since or started) - OVERLAP
            self.polls += 1
            out = []
            changed_runs = runs_since(self.store, since)
            changed_events = events_since(self.store, since, [r.id for r in changed_runs])
            for kind, records in (("run", reversed(changed_runs)),
                                  ("event", reversed(changed_events))):
                r: Any
                for r in records:
                    sig = _signature(kind, r)
                    key = (kind, r.id)
                    if self._known.get(key) == sig:
                        continue
                    self._known[key] = sig
                    out.append(sse(kind, json.dumps({
                        "id": r.id, "recipe": r.recipe, "status": r.status,
                        "run_id": r.run_id if kind == "event" else r.id,
                        "html": self.render(kind, r)})))
            if len(self._known) > 5000:  # keep only what the overlap can still return
                keep = {("run", r.id) for r in changed_runs} | \
                    {("event", e.id) for e in changed_events}
                self._known = {k: v for k, v in self._known.items() if k in keep}
            self._since = started
            stamp = time.monotonic()
            self._recent.extend((stamp, m) for m in out)
            while self._recent and self._recent[0][0] < stamp - REPLAY:
                self._recent.popleft()
            return out

    # -- one listener -----------------------------------------------------------------------
    def can_listen(self) -> bool:
        return not self.closed and len(self.listeners) < self.max_listeners

    async def stream(self, disconnected: Callable[[], Any]) -> AsyncIterator[bytes]:
        """The byte stream of one listener; ``disconnected`` is ``request.is_disconnected``."""
        queue: asyncio.Queue[Any] = asyncio.Queue(self.queue_size)
        self._loop = asyncio.get_running_loop()
        self.listeners.add(queue)
        for _stamp, message in list(self._recent):  # what changed just before it listened
            _offer(queue, message)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        ends = time.monotonic() + self.lifetime
        try:
            yield f"retry: {int(self.interval * 2000)}\n\n".encode()
            while not self.closed and time.monotonic() < ends:
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=self.heartbeat)
                except TimeoutError:
                    if await disconnected():
                        return
                    yield b": heartbeat\n\n"
                    continue
                if message is _CLOSED:
                    return
                yield message
        finally:
            self.listeners.discard(queue)


def _offer(queue: asyncio.Queue[Any], message: Any, force: bool = False) -> bool:
    try:
        queue.put_nowait(message)
        return True
    except asyncio.QueueFull:
        if force:
            try:
                queue.get_nowait()
                queue.put_nowait(message)
            except (asyncio.QueueEmpty, asyncio.QueueFull):
                pass
        return False


def _signature(kind: str, r: Any) -> tuple[Any, ...]:
    if kind == "run":
        return (r.status, r.finished_at, r.events_new, r.events_failed)
    return (r.status, r.attempts, r.updated_at)

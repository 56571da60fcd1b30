"""The inbox writer: verified deliveries committed in groups, each answered after its commit.

Request handlers ``await writer.submit(delivery)``; one thread takes everything queued since
its last commit and inserts it in ONE transaction (``store.inbox.DeliveryWriter``), then
resolves each handler's future with "new" or "duplicate". Under load a commit covers many
deliveries, so the cost of durability is shared; no handler is answered before the
transaction holding its delivery committed. A failed commit fails every delivery in it (the
handlers answer 503 and the sender retries).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..store.inbox import Delivery, DeliveryWriter

log = logging.getLogger("splice.serve.ingest")
MAX_GROUP = 512
_STOP = object()


class InboxWriter:
    """One committing thread; ``submit`` from the event loop."""

    def __init__(self, store: Any, on_stored: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.on_stored = on_stored or (lambda count: None)
        self.commits = 0
        self._writer = DeliveryWriter(store)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="splice-inbox-writer",
                                        daemon=True)
        self._thread.start()

    async def submit(self, delivery: Delivery) -> bool:
        """Store ``delivery``; True when new, False for a duplicate id. Raises if the commit
        failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.put((delivery, future, loop))
        return await future

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._writer.close()
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                self._writer.close()
                return

    def _commit(self, group: list[Any]) -> None:
        try:
            results: list[bool] | BaseException = self._writer.write(
                [delivery for delivery, _f, _l in group])
            self.commits += 1
        except Exception as exc:  # the database refused: every handler answers 503
            log.error("inbox commit failed: %s", type(exc).__name__)
            results = exc
        by_loop: dict[Any, list[tuple[asyncio.Future[bool], Any]]] = {}
        for i, (_delivery, future, loop) in enumerate(group):
            outcome = results if isinstance(results, BaseException) else results[i]
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass
        if not isinstance(results, BaseException):
            self.on_stored(sum(1 for (d, _f, _l), new in zip(group, results, strict=True)
                               if new and d.outcome is None))


def _resolve(items: list[tuple[asyncio.Future[bool], Any]]) -> None:
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(RuntimeError("the inbox could not store the delivery"))
        else:
            future.set_result(bool(outcome))

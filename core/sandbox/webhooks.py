"""Real webhook deliveries from a sandbox: POSTed over loopback, signed, retried.

A connector's emulator builds a :class:`WebhookSender` and calls :meth:`WebhookSender.send`
with the delivery's URL, id and body and a ``sign(body, now) -> headers`` function of its own
(each attempt is signed afresh, as providers do). A background thread posts each delivery; a
non-2xx answer, a timeout or a refused connection is retried after each delay of
``schedule`` (seconds), with the same id. Test controls reproduce what goes wrong in the
field: :meth:`drop_next` loses the next N deliveries for good, :meth:`redeliver_next` sends
the next N twice (the sender did not see the 2xx and retried); :attr:`attempts` lists every
attempt.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["DEFAULT_SCHEDULE", "WebhookSender"]

#: retry delays of the Invoice2go contract: 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h
DEFAULT_SCHEDULE = (60.0, 300.0, 1800.0, 7200.0, 21600.0, 43200.0, 86400.0)
Signer = Callable[[bytes, float], dict[str, str]]


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    url: str = field(compare=False)
    delivery_id: str = field(compare=False)
    body: bytes = field(compare=False)
    sign: Signer = field(compare=False)
    attempt: int = field(default=1, compare=False)
    redeliver: bool = field(default=False, compare=False)


class WebhookSender:
    """Delivers webhooks on a thread of its own (start on first send; ``close`` stops it)."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 schedule: tuple[float, ...] | list[float] = DEFAULT_SCHEDULE,
                 timeout: float = 10.0, user_agent: str = "splice-sandbox-webhooks") -> None:
        self.clock = clock
        self.schedule = tuple(float(s) for s in schedule)
        self.timeout = timeout
        self.user_agent = user_agent
        self.attempts: list[dict[str, Any]] = []
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._drop = 0
        self._redeliver = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- controls ---------------------------------------------------------------------------
    def drop_next(self, count: int) -> None:
        with self._cond:
            self._drop += count

    def redeliver_next(self, count: int) -> None:
        with self._cond:
            self._redeliver += count

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    # -- sending ----------------------------------------------------------------------------
    def send(self, url: str, delivery_id: str, body: bytes, sign: Signer) -> None:
        with self._cond:
            if self._drop > 0:
                self._drop -= 1
                self.attempts.append({"delivery_id": delivery_id, "url": url, "attempt": 0,
                                      "status": None, "outcome": "dropped",
                                      "at": self.clock()})
                return
            redeliver = self._redeliver > 0
            self._redeliver -= 1 if redeliver else 0
            heapq.heappush(self._heap, _Job(time.monotonic(), next(self._seq), url,
                                            delivery_id, body, sign, redeliver=redeliver))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="sandbox-webhooks")
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, headers={"user-agent": self.user_agent}) as http:
            while True:
                with self._cond:
                    while not self._closed and (
                            not self._heap or self._heap[0].due > time.monotonic()):
                        wait = self._heap[0].due - time.monotonic() if self._heap else None
                        self._cond.wait(wait)
                    if self._closed:
                        return
                    job = heapq.heappop(self._heap)
                self._attempt(http, job)

    def _attempt(self, http: httpx.Client, job: _Job) -> None:
        status: int | None = None
        outcome = "delivered"
        try:
            headers = job.sign(job.body, self.clock())
            response = http.post(job.url, content=job.body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                outcome = "failed"
        except httpx.HTTPError as exc:
            outcome = f"failed: {type(exc).__name__}"
        with self._cond:
            self.attempts.append({"delivery_id": job.delivery_id, "url": job.url,
                                  "attempt": job.attempt, "status": status,
                                  "outcome": outcome, "at": self.clock()})
            again = outcome != "delivered" and job.attempt <= len(self.schedule)
            delay = self.schedule[job.attempt - 1] if again else 0.0
            if outcome == "delivered" and job.redeliver:  # the 2xx "was lost": send again
                again, delay, job.redeliver = True, 0.0, False
            if again and not self._closed:
                job.attempt += 1
                job.due = time.monotonic() + delay
                job.seq = next(self._seq)
                heapq.heappush(self._heap, job)
                self._cond.notify()

"""The loop serve's scheduler and its broker dispatcher both run on a thread of their own.

:class:`TurnLoop` calls ``turn()`` every ``config.tick`` seconds, or at once when
:meth:`notify` wakes it; a turn that fails (the database away, say) is logged and the loop
goes on; ``alive`` is true while the thread turns (``/healthz`` reads it, and the metric
``splice_scheduler_alive``). Subclasses write ``turn()`` and their own ``stop()``, and call
:meth:`reload_due` at the top of a turn to re-read the registry and recipe files every
``config.reload_every`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("splice.serve")
ALIVE_WITHIN = 10.0  # seconds: a loop that has not turned for this long is not alive


class TurnLoop:
    thread_name = "splice-loop"

    def __init__(self, service: Any) -> None:
        self.service = service
        self.store = service.store
        self.config = service.config
        self.metrics = service.metrics
        self.wake = threading.Event()
        self.stopping = False
        self.last_turn = 0.0
        self._next_reload = 0.0
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Something arrived (a delivery was stored): look now, not at the next tick."""
        self.wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and time.monotonic() - self.last_turn < ALIVE_WITHIN

    def turn(self) -> None:
        raise NotImplementedError

    def reload_due(self, now: float) -> None:
        """Reload the service's recipes when ``config.reload_every`` has passed."""
        if now >= self._next_reload:
            self._next_reload = now + self.config.reload_every
            self.service.reload()

    def _loop(self) -> None:
        while not self.stopping:
            self.last_turn = time.monotonic()
            try:
                self.turn()
            except Exception as exc:  # the loop must survive a bad turn (database away ...)
                log.error("%s turn failed: %s: %s", self.thread_name.removeprefix("splice-"),
                          type(exc).__name__, exc)
            self.metrics.alive.set(1)
            self.wake.wait(self.config.tick)
            self.wake.clear()
        self.metrics.alive.set(0)

"""What a sender (``splice serve``'s dispatcher, a poll task) puts on the broker.

Each call sends one message naming a task of :mod:`.tasks` and raises
:class:`~splice.errors.ConfigError` when the broker cannot take it (down, unreachable): the
caller keeps the work in the database and sends it again later.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .app import QUEUE, make_app
from .broker import describe

DELIVER = "splice.deliver"
RUN_EVENTS = "splice.run_events"
POLL = "splice.poll"


class Enqueuer:
    """Sends tasks to the broker at ``url`` (one Celery app, its connection pool)."""

    def __init__(self, url: str, app: Any = None) -> None:
        self.url = url
        self.app = app or make_app(url)
        self.sent = 0

    def _send(self, name: str, args: list[Any]) -> None:
        try:
            self.app.send_task(name, args=args, queue=QUEUE,
                               retry=True, retry_policy={"max_retries": 1,
                                                         "interval_start": 0.1,
                                                         "interval_step": 0.2,
                                                         "interval_max": 0.5})
        except Exception as exc:  # kombu/redis errors: the broker did not take it
            raise ConfigError(f"the broker at {describe(self.url)} did not take a task "
                              f"({type(exc).__name__})") from None
        self.sent += 1

    def deliver(self, row_ids: list[int]) -> None:
        """Process inbox rows ``row_ids``."""
        self._send(DELIVER, [row_ids])

    def run_events(self, recipe: str, ids: list[int], now: bool = False) -> None:
        """Run stored events of ``recipe`` (``now``: failed ones even if not due yet)."""
        self._send(RUN_EVENTS, [recipe, ids, now])

    def poll(self, recipe: str, due: str | None) -> None:
        """Poll ``recipe`` once (``due``: when the poll was due, ISO 8601)."""
        self._send(POLL, [recipe, due])

    def close(self) -> None:
        try:
            self.app.close()
        except Exception:  # noqa: BLE001 - closing a broken pool
            pass

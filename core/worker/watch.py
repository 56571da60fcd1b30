"""A watch on the broker connection of a threads-pool worker.

With ``--pool threads`` the workers' threads acknowledge on the consumer's Redis connection;
when the broker goes away, a failed acknowledgement can reset the socket the consumer waits
on, and the consumer then waits forever without noticing that the broker came back (a known
Celery/kombu behaviour with thread pools). The watch pings the broker on a connection of its
own every ``every`` seconds; when the broker answers again after failing, it makes the
consumer's event loop raise a connection error, so Celery reconnects as after any lost
connection. Nothing is lost meanwhile: messages not acknowledged are delivered again, and
serve's reconciler re-sends what the broker lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("splice.worker")


class BrokerWatch:
    def __init__(self, url: str, consumer: Any, every: float = 1.0) -> None:
        self.url = url
        self.consumer = consumer
        self.every = every
        self.down = False
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="splice-broker-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        while not self._stop.wait(self.every):
            try:
                client.ping()
            except redis.RedisError:
                if not self.down:
                    log.warning("the broker does not answer; waiting for it")
                self.down = True
                continue
            if self.down:
                self.down = False
                self._reconnect()

    def _reconnect(self) -> None:
        hub = getattr(self.consumer, "hub", None)
        if hub is None:
            return
        import redis

        def lost() -> None:
            raise redis.ConnectionError("the broker came back: reconnecting")

        self.reconnects += 1
        log.warning("the broker answers again; the worker reconnects")
        hub.call_soon(lost)

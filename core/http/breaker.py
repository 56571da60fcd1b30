"""A circuit breaker for one connection: stop sending to an API that keeps failing.

``threshold`` consecutive failures (a 5xx answer or a network error: the API is down or
sick; a 4xx or 429 answer shows it is up) *open* the circuit: :meth:`allow` says no, and the
client raises :class:`~splice.errors.CircuitOpen` without sending. A breaker that starts
open (a previous run left it so) is *half-open*: it lets one probe request through; a success
closes it, a failure opens it again at once. Any success resets the count.

Thread-safe (``concurrency:`` steps share a connection's client). Where the state is kept
between runs is the caller's business (:mod:`splice.store.breakers`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from ..errors import CircuitOpen

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Counts consecutive failures of one connection's requests."""

    def __init__(self, name: str, threshold: int = 5, *, state: str = "closed",
                 failures: int = 0, opened_at: datetime | None = None,
                 last_error: str | None = None) -> None:
        self.name = name
        self.threshold = threshold
        self.failures = failures
        self.opened_at = opened_at
        self.last_error = last_error
        self.probing = False
        self._lock = threading.Lock()
        # open when saved: this run starts half-open (one probe)
        self.state = "half_open" if state in ("open", "half_open") and threshold else "closed"

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def allow(self) -> bool:
        """Whether a request may be sent now (half-open: only the one probe)."""
        if not self.enabled:
            return True
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "half_open" and not self.probing:
                self.probing = True
                return True
            return False

    def success(self) -> None:
        """The API answered (anything but a 5xx): close the circuit."""
        with self._lock:
            self.failures = 0
            self.state = "closed"
            self.probing = False
            self.opened_at = None

    def failure(self, error: str) -> bool:
        """A 5xx or network failure; True when it opened the circuit."""
        if not self.enabled:
            return False
        with self._lock:
            self.failures += 1
            self.last_error = error
            self.probing = False
            if self.state == "half_open" or self.failures >= self.threshold:
                opened = self.state != "open"
                self.state = "open"
                self.opened_at = self.opened_at or datetime.now(UTC)
                return opened
            return False

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def error(self) -> CircuitOpen:
        """The error a request refused by the open circuit raises."""
        return CircuitOpen(
            f"connection '{self.name}': circuit open after {self.failures} consecutive "
            f"failure(s) (last: {self.last_error}); nothing more is sent to it in this run",
            hint="the remaining events wait for the next run, which first sends one probe "
                 "request")

"""What ``splice serve`` is told: address, limits, pool size, timings (one dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

DEFAULT_PORT = 8750
MAX_BODY = 1 << 20  # 1 MiB


@dataclass
class ServeConfig:
    """Settings of one serve process; the defaults are what ``splice serve`` uses."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None     # where providers deliver (default http://host:port)
    workers: int = 4                  # recipe jobs at once (polls, webhook batches)
    inbox_max: int = 10_000           # deliveries waiting: over this, 503 + Retry-After
    max_body: int = MAX_BODY
    tick: float = 0.2                 # the scheduler's idle wake-up (seconds)
    reload_every: float = 1.0         # re-read the registry and recipe files (seconds)
    jitter: float = 0.1               # polls start up to this fraction of the interval late
    claim_batch: int = 200            # inbox rows claimed at once
    shutdown_grace: float = 7.0       # seconds in-flight jobs get on SIGTERM
    retention: timedelta = timedelta(days=7)   # delivery ids remembered this long
    token: str | None = None          # API bearer token (default: the token file's)
    broker_url: str | None = None     # SPLICE_BROKER_URL: workers run the recipes
    requeue_after: float = 30.0       # seconds before unfinished work is sent again

    @property
    def url(self) -> str:
        """The base URL webhook deliveries are sent to."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

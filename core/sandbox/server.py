"""Serve a connector's sandbox (a Starlette app) with uvicorn on 127.0.0.1.

``serve(app)`` is a context manager that starts uvicorn in a background thread on a free
loopback port and yields the base URL; it is what ``splice sandbox``, ``splice demo`` and the
tests use, so every sandbox request crosses a real socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["HOST", "SandboxConfig", "free_port", "load_factory", "serve"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the host process keeps its own handlers
        pass


@contextlib.contextmanager
def serve(app: Any, port: int = 0, *, startup_timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1 (``port`` 0 = a free one) and yield ``http://127.0.0.1:PORT``."""
    port = port or free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False,
                            lifespan="off")
    server = _Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"sandbox server did not start on {HOST}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@dataclass
class SandboxConfig:
    """Settings every connector sandbox accepts (``create_app(config)``).

    The defaults are what ``splice demo`` uses: one OAuth client whose redirect URI is any
    loopback port (RFC 8252 §7.3), automatic approval, the real clock, state kept in memory.
    """

    client_id: str = "splice-demo"
    client_secret: str = "splice-demo-secret"
    # the loopback redirect of `splice connect`, and the dashboard's (`splice serve` on loopback)
    redirect_uris: list[str] = field(default_factory=lambda: [
        "http://127.0.0.1/callback", "http://127.0.0.1/oauth/callback"])
    auto_approve: bool = True
    clock: Callable[[], float] = time.time
    access_token_ttl: int | None = None   # None: the API's documented lifetime
    refresh_token_ttl: int | None = None
    rate_limit: tuple[int, float] | None = None  # (requests, window seconds); None: the API's
    state_path: Path | None = None  # JSON file: loaded at start, saved after every change
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)


def load_factory(connector: Any) -> Callable[[SandboxConfig], Any]:
    """The ``create_app`` a connector registered as its sandbox (``module:function``)."""
    import importlib

    from ..errors import ConfigError

    if not connector.sandbox:
        raise ConfigError(f"connector '{connector.id}' ships no sandbox")
    module, _, attr = connector.sandbox.partition(":")
    return getattr(importlib.import_module(module), attr or "create_app")

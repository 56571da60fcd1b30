"""Run a :class:`~splice.serve.app.Service` under uvicorn until SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) uvicorn stops accepting connections and finishes the requests in
flight (at most ``GRACEFUL_HTTP`` seconds), then the lifespan stops the service: running
jobs get ``shutdown_grace`` seconds to finish; work not started goes back to the inbox. The
process exits 0 within 10 seconds; a job still running then is abandoned safely: its events
are in the run journal and the inbox rows it had are claimed again on the next start, so
nothing is lost, and re-sent writes carry the same idempotency keys.

The API token is kept in ``$SPLICE_HOME/serve.token`` (mode 0600), created with a random
value on first use.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from ..errors import ConfigError
from ..secrets import home
from ..store import logins
from .app import Service, build_app
from .config import ServeConfig

TOKEN_FILE = "serve.token"
GRACEFUL_HTTP = 2
SWITCH_INTERVAL = 0.0005  # seconds (Python's default: 0.005)


def token_path() -> Path:
    return home() / TOKEN_FILE


def load_or_create_token() -> tuple[str, bool]:
    """(token, created): the API token from its 0600 file, made on first use."""
    path = token_path()
    try:
        text = path.read_text("utf-8").strip()
        if text:
            return text, False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the API token file {path}: {exc.strerror}") from None
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write the API token file {path}: {exc.strerror}") from None
    return token, True


def check_address(host: str, port: int) -> None:
    """A clear error now rather than a uvicorn traceback later."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                          hint="choose another --port (or stop what uses it)") from None


def serve_forever(store: Any, registry: Any, config: ServeConfig,
                  out: Callable[[str], None] = print, *, print_login: bool = False) -> int:
    """Serve until a stop signal; returns the exit code (0)."""
    check_address(config.host, config.port)
    token = config.token
    if token is None:
        token, created = load_or_create_token()
        if created:
            out(f"API token (kept in {token_path()}, mode 0600): {token}")
        else:
            out(f"API token: in {token_path()}")
    service = Service(store, registry, config, token)
    app = build_app(service)
    # The inbox writer thread and the event loop hand the GIL back and forth on every
    # delivery; at the default 5 ms switch interval a busy loop makes the writer (and so
    # every acknowledgement waiting for its commit) wait in convoys of tens of ms.
    sys.setswitchinterval(SWITCH_INTERVAL)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_config=None,
                        access_log=False, lifespan="on", server_header=False,
                        timeout_graceful_shutdown=GRACEFUL_HTTP)
    out(f"splice serve on http://{config.host}:{config.port}  (dashboard: /, webhooks: "
        f"{config.url}/hooks/CONNECTION, API: /api, health: /healthz, metrics: /metrics)")
    if print_login:
        out(f"Sign in to the dashboard (works once, for 15 minutes): "
            f"{config.url}/login?token={logins.mint(store)}")
    server = GracefulServer(uv)
    server.run()
    if not service.started:
        raise ConfigError(f"splice serve could not start on {config.host}:{config.port}")
    sys.stdout.flush()
    sys.stderr.flush()
    busy = [t for t in threading.enumerate() if t.name.startswith("splice-job") and t.is_alive()]
    if busy:  # abandoned jobs must not keep the process alive past the grace period
        os._exit(0)
    return 0


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after its graceful shutdown (so the process dies of
    the signal); a stop that finished cleanly exits 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        service = getattr(getattr(self.config.app, "state", None), "service", None)
        if service is not None:  # end the dashboard's live streams now, not after the grace
            service.dashboard.close()


@contextlib.contextmanager
def serve_in_thread(service: Service) -> Iterator[str]:
    """Start ``service`` and serve it on its port from a background thread; yields the base
    URL; stops it on exit (the demo, the tests and the benchmarks use this)."""
    from ..sandbox.server import serve

    app = build_app(service)
    service.start()
    try:
        with serve(app, service.config.port) as url:
            yield url
    finally:
        service.stop()

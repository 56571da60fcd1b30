"""The Redis the worker tests use, and ``splice worker`` child processes.

Each test gets a Redis of its own: a ``redis-server`` started on a free loopback port in a
temporary directory (no persistence), so tests never share queues with each other or with
the machine's Redis on 6379, and one may be stopped and started again mid-test. Without
``redis-server`` the tests skip and say how to install it; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from splice.sandbox import free_port

from .services import need

ROOT = Path(__file__).resolve().parents[1]
START_HINT = ("install it (`apt-get install redis-server`); the project's machines run one "
              "on 127.0.0.1:6379: `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
              "--save \"\" --appendonly no`")


def unavailable() -> str | None:
    """Why a private Redis cannot be started, or None."""
    for module in ("celery", "redis"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    if shutil.which("redis-server") is None:
        return f"redis-server is not on PATH; {START_HINT}"
    return None


def require() -> None:
    """Skip (or, under CI=true, fail) the calling test when Redis cannot be used."""
    need(unavailable())


class PrivateRedis:
    """A redis-server of one test (loopback, free port, no persistence); stop/start keep
    the port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """Kill it (what queued messages it held are gone, as after a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    require()
    folder.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


CHILD = """
import sys
from tests.conftest import _FakeCrmPlugin, register_test_plugin
register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
from splice.cli.main import cli
cli(sys.argv[1:], prog_name="splice")
"""


class SpliceProcess:
    """``splice ARGS`` in a child process (with the fake CRM plugin), killed in ``close``."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT,
                                     env=dict(os.environ), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, marker: str = "ready", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


def worker(*args: str, log: Path) -> SpliceProcess:
    """``splice worker ARGS`` (threads pool)."""
    return SpliceProcess("worker", *args, log=log)

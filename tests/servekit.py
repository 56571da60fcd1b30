"""Helpers for the serve tests: a Service on a loopback port, signed deliveries, a child
``splice serve`` process with the test plugins, and bounded waits."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from splice.sandbox import serve

ROOT = Path(__file__).resolve().parents[1]
I2G_SECRET = "whsec_test-secret-0123456789abcdef"


def wait_for(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {check}")
        time.sleep(every)


@contextlib.contextmanager
def running_service(store: Any, registry: Any, **config: Any) -> Iterator[tuple[Any, str]]:
    """A started Service served on a free loopback port: (service, base URL)."""
    from splice.sandbox import free_port
    from splice.serve.app import Service, build_app
    from splice.serve.config import ServeConfig

    port = free_port()
    cfg = ServeConfig(port=port, tick=0.05, reload_every=0.2, **config)
    service = Service(store, registry, cfg, token="test-api-token")
    app = build_app(service)
    service.start()
    try:
        with serve(app, port) as url:
            yield service, url
    finally:
        service.stop()


# ------------------------------------------------------------------------------- signing


def pem_public(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo
                                         ).decode()


def new_ed25519() -> Any:
    return ed25519.Ed25519PrivateKey.generate()


def new_rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def iso_now(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, UTC).isoformat().replace("+00:00", "Z")


def ghl_user_event(user_id: str | None = None, *, offset: float = 0.0,
                   location: str = "ve9EPM428h8vShlRW1KT", **extra: Any) -> dict[str, Any]:
    user_id = user_id or uuid.uuid4().hex[:20]
    return {"type": "UserCreate", "locationId": location, "companyId": "5DP4iH6HLkQsiKESj6rh",
            "id": user_id, "firstName": "Test", "lastName": f"User {user_id}",
            "email": f"{user_id}@example.com", "phone": "", "extension": "", "role": "user",
            "permissions": {}, "locations": [location], "webhookId": str(uuid.uuid4()),
            "timestamp": iso_now(offset), **extra}


def ghl_headers(body: bytes, ed_key: Any = None, rsa_key: Any = None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if ed_key is not None:
        headers["x-ghl-signature"] = base64.b64encode(ed_key.sign(body)).decode()
    if rsa_key is not None:
        headers["x-wh-signature"] = base64.b64encode(rsa_key.sign(
            body, padding.PKCS1v15(), hashes.SHA256())).decode()
    return headers


def i2g_event(event_type: str, obj: dict[str, Any], event_id: str | None = None
              ) -> dict[str, Any]:
    return {"id": event_id or str(uuid.uuid4()), "type": event_type, "created_at": iso_now(),
            "account_id": "24379237", "api_version": "v1", "data": {"object": obj}}


def i2g_headers(body: bytes, event: dict[str, Any], secret: str = I2G_SECRET,
                timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "X-Webhook-Id": event["id"],
            "X-Webhook-Event": event["type"], "X-Webhook-Timestamp": stamp,
            "X-Webhook-Signature": f"v1={digest}"}


def post(client: httpx.Client, url: str, event: dict[str, Any],
         headers_for: Callable[[bytes], dict[str, str]]) -> httpx.Response:
    body = json.dumps(event).encode()
    return client.post(url, content=body, headers=headers_for(body))


# ------------------------------------------------------------------------------- child serve


CHILD = """
import sys
from tests.conftest import _FakeCrmPlugin, register_test_plugin
register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
from splice.cli.main import cli
cli(["serve", *sys.argv[1:]], prog_name="splice")
"""


class ServeProcess:
    """``splice serve`` in a child process (with the fake CRM plugin), killed in ``close``."""

    def __init__(self, port: int, *args: str, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, "--port", str(port), *args], cwd=ROOT,
            env=dict(os.environ), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(ready, timeout, 0.1)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

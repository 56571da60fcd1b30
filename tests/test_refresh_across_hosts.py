"""Token refresh across machines: several OS processes sharing one PostgreSQL state database
race to refresh one expired connection against the sandboxes' OAuth servers (real HTTP,
refresh tokens rotated on every use).

Exactly one refresh per expiry reaches the token endpoint (counted at the sandbox), every
process ends with a working token, none sees ``reauth_required``: ``Store.locked_refresh``
holds ``SELECT ... FOR UPDATE`` on the connection's row, so the others wait, re-read, and use
the rotated tokens committed before the new access token was sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from splice.plugins import get_registry
from splice.sandbox import load_factory, serve
from splice.store.database import Store

from . import pg
from .test_oauth import CONNECTORS, Recorder, Sandbox, _spawn, call, events, sandbox_config

PROCESSES = 4


class TokenRequests:
    """ASGI middleware counting the requests that reach the OAuth token endpoint."""

    def __init__(self, app: Any) -> None:
        self.app, self.count, self.lock = app, 0, threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/oauth/token"):
            with self.lock:
                self.count += 1
        await self.app(scope, receive, send)


@pytest.fixture(params=CONNECTORS)
def counted(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, TokenRequests]]:
    cid = request.param
    app = TokenRequests(load_factory(get_registry().connector(cid))(sandbox_config(cid)))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Sandbox(cid, url, http), app


def test_processes_on_postgres_refresh_once_per_expiry(
        counted: tuple[Sandbox, TokenRequests], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, tokens = counted
    with pg.schema_url() as url:
        monkeypatch.setenv("SPLICE_DATABASE_URL", url)
        with Store.open() as store:
            sandbox.connect(store, "shared")
            for expiry in (1, 2):
                before = tokens.count
                sandbox.control("expire-tokens")  # every process meets a 401 at once
                (tmp_path / "go").unlink(missing_ok=True)
                outputs, codes = _spawn(PROCESSES, sandbox, "shared", tmp_path)
                assert codes == [0] * PROCESSES and outputs == ["200"] * PROCESSES, outputs
                assert tokens.count - before == 1, \
                    f"expiry {expiry}: {tokens.count - before} refreshes reached the sandbox"
                assert len(events(store, "token_refreshed")) == expiry
            assert events(store, "reauth_required") == []
            record = store.require_connection("shared")
            assert record.status == "valid" and not record.config.get("refreshing")
            assert sandbox.token_stats()["refresh_tokens"] == 1  # one live grant
            recorder = Recorder()  # and the stored refresh token is the live one
            assert call(sandbox, store, "shared", recorder,
                        clock=lambda: time.time() + 10**6) == 200
            assert recorder.statuses()[0] == ("token", 200)

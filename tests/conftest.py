"""Shared fixtures: an isolated SPLICE_HOME per test, plugin registry resets, the fake CRM."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from splice import hookimpl, plugins
from splice.http.ratelimit import reset_shared_buckets
from splice.sandbox import serve

from .fakeapi import TOKEN, create_app

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
TEST_KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="


@pytest.fixture(autouse=True)
def splice_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own state directory, database and secret key."""
    home = tmp_path / "splice-home"
    monkeypatch.setenv("SPLICE_HOME", str(home))
    monkeypatch.setenv("SPLICE_SECRET_KEY", TEST_KEY)
    monkeypatch.delenv("SPLICE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SPLICE_BROKER_URL", raising=False)  # serve runs recipes itself
    monkeypatch.delenv("SPLICE_LOAD_PLUGINS", raising=False)
    for name in ("SPLICE_REDIS_URL", "SPLICE_BROKER_URL", "SPLICE_REDIS_PREFIX",
                 "SPLICE_BUDGET_MARGIN", "SPLICE_DB_AUTO_UPGRADE"):
        monkeypatch.delenv(name, raising=False)  # a test that wants one sets it
    plugins.reset()
    yield home
    plugins.reset()
    reset_shared_buckets()  # close this test's shared rate-budget database


class SharedTransport(httpx.BaseTransport):
    """One real HTTP connection pool shared by every client a test module builds."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:  # clients come and go; the module fixture closes ``inner``
        pass


class _FakeCrmPlugin:
    @hookimpl
    def register_connectors(self, register: Any) -> None:
        register(FIXTURES / "fakecrm.yaml")


def register_test_plugin(plugin: Any, name: str) -> None:
    """Register an in-process plugin next to the installed ones (fresh registry)."""
    plugins.reset()
    plugins.load_plugins()
    plugins.pm.register(plugin, name=name)


@dataclass
class FakeCrm:
    app: Any
    base_url: str
    store: Any

    @property
    def log(self) -> list[tuple[str, str, dict[str, str], str | None]]:
        return self.app.state.log

    def posts(self) -> list[tuple[str, str, dict[str, str], str | None]]:
        return [entry for entry in self.log if entry[0] == "POST"]


@pytest.fixture
def fakecrm() -> Iterator[FakeCrm]:
    """The fake CRM API on a loopback port, its connector, and a connection named 'crm'."""
    from splice.store.database import Store

    register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
    app = create_app()
    with serve(app) as base_url:
        store = Store.open()
        store.put_connection("crm", connector="fakecrm", auth_type="bearer", base_url=base_url,
                             config={"allow_private_network": True}, secret={"token": TOKEN})
        yield FakeCrm(app, base_url, store)
        store.close()


def invoke(*args: str, input: str | None = None) -> Result:
    """Run the splice CLI in-process."""
    from splice.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

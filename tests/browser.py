"""Browser-test kit for the dashboard: headless Debian Chromium driven by Playwright.

Fixtures (import them into a test module: ``from .browser import chromium, dashboard, page``):

- ``chromium``: one Playwright browser for the whole session, launched from
  ``/usr/bin/chromium`` (``SPLICE_CHROMIUM`` overrides) with the flags this machine needs.
  Never ``playwright install``: it downloads a browser, which cannot work here. Without
  Chromium or Playwright the tests skip and say how to install them; under ``CI=true`` fail.
- ``dashboard``: a fresh state (the autouse ``splice_home``), the HighLevel and Invoice2go
  sandboxes on loopback ports (real HTTP, real OAuth servers) and a serve ``Service`` with the
  dashboard on a free port; ``.login(page)`` signs a page in through a one-time link;
  ``.cli(...)`` runs the real ``splice`` command on the same state.
- ``page``: a new 1280x900 browser page (``phone_page``: 390x844, touch) closed afterwards.
- ``shot(page, name)``: a full-page screenshot in ``$SPLICE_SCREENSHOTS`` (default
  ``tests/.screenshots/``); docs/images/ holds the ones the docs show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from splice.plugins import get_registry
from splice.store import logins
from splice.store.database import Store

from .servekit import running_service
from .services import need

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--disable-quic", "--disable-dev-shm-usage"]
INSTALL_HINT = ("install Debian's Chromium with `apt-get install -y chromium` and the test "
                "extra (`pip install -e '.[test]'`); never `playwright install`")


def chromium_path() -> str:
    return os.environ.get("SPLICE_CHROMIUM") or "/usr/bin/chromium"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"playwright is not installed: {INSTALL_HINT}"
    if not (Path(chromium_path()).exists() or shutil.which(chromium_path())):
        return f"no Chromium at {chromium_path()}: {INSTALL_HINT}"
    return None


def require_browser() -> None:
    need(_unavailable())


_shared: dict[str, Any] = {}  # one Playwright and one browser for every test module


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Each test module that imports this fixture has its own definition of it (pytest keys
    fixtures by where they are found), and Playwright's sync API cannot be started twice in
    one thread: so every definition shares one browser, closed when the last one ends."""
    require_browser()
    if not _shared:
        from playwright.sync_api import sync_playwright

        manager = sync_playwright()
        playwright = manager.start()
        try:
            browser = playwright.chromium.launch(executable_path=chromium_path(),
                                                 headless=True, args=CHROMIUM_FLAGS)
        except BaseException:
            manager.__exit__(None, None, None)
            raise
        _shared.update(manager=manager, browser=browser, users=0)
    _shared["users"] += 1
    try:
        yield _shared["browser"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            state = dict(_shared)
            _shared.clear()
            try:
                state["browser"].close()
            finally:
                state["manager"].__exit__(None, None, None)


def _new_page(chromium: Any, **options: Any) -> Iterator[Any]:
    context = chromium.new_context(**options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors  # tests assert none (a CSP violation is logged here)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    yield from _new_page(chromium, viewport={"width": 1280, "height": 900})


@pytest.fixture
def phone_page(chromium: Any) -> Iterator[Any]:
    yield from _new_page(chromium, viewport={"width": 390, "height": 844}, is_mobile=True,
                         has_touch=True, device_scale_factor=2)


def screenshots_dir() -> Path:
    path = Path(os.environ.get("SPLICE_SCREENSHOTS") or ROOT / "tests" / ".screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``NAME.png``."""
    path = screenshots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Dashboard:
    url: str
    service: Any
    store: Any
    sandboxes: Any
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def link(self) -> str:
        return f"{self.url}/login?token={logins.mint(self.store)}"

    def login(self, page: Any, next_path: str = "/") -> Any:
        """Sign ``page`` in with a one-time link; it lands on ``next_path``."""
        page.goto(self.link() + (f"&next={next_path}" if next_path != "/" else ""))
        page.wait_for_load_state()
        return page

    def cli(self, *args: str, check: bool = False, timeout: float = 60.0,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The real ``splice`` command on this dashboard's state."""
        env = {**os.environ, **self.extra_env, "SPLICE_HOME": str(self.home),
               "NO_COLOR": "1", "COLUMNS": "200"}
        result = subprocess.run([sys.executable, "-m", "splice", *args], cwd=cwd or ROOT,
                                env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"splice {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def dashboard(splice_home: Path) -> Iterator[Dashboard]:
    """serve with the dashboard, beside both sandboxes, on a fresh state."""
    from splice.run.demo import Sandboxes

    registry = get_registry()
    store = Store.open()
    try:
        with Sandboxes(registry, None) as sandboxes, \
                running_service(store, registry) as (service, url):
            yield Dashboard(url=url, service=service, store=store, sandboxes=sandboxes,
                            home=splice_home)
    finally:
        store.close()

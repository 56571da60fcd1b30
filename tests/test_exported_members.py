"""The public surface is pinned: what plugin authors and embedders import stays importable."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import splice
import splice.sandbox
import splice.testing

SPLICE_ALL = {
    "AuthError", "ConfigError", "DocumentError", "HTTPError", "InputError", "PluginError",
    "Problem", "RequestError", "SpliceError", "TemplateError", "TemplateSecurityError",
    "ValidationFailed", "__version__", "hookimpl",
}
SANDBOX_ALL = {
    "HOST", "AuthFailure", "OAuthClient", "OAuthFailure", "OAuthServer", "SandboxConfig",
    "TokenInfo", "free_port", "load_factory", "pkce_challenge", "redirect_uri_matches", "serve",
    "DEFAULT_SCHEDULE", "WebhookSender",
}

TESTING_ALL = {
    "ConformanceSuite", "example_input", "load_connector", "sample_problems",
    "sandbox_problems", "trigger_problems",
}


@pytest.mark.parametrize(("module", "expected"), [(splice, SPLICE_ALL),
                                                  (splice.sandbox, SANDBOX_ALL),
                                                  (splice.testing, TESTING_ALL)])
def test_exported_members(module: object, expected: set[str]) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported == expected
    for name in exported:
        assert hasattr(module, name), name
    public = {n for n in dir(module) if not n.startswith("_")}
    # everything public that is not a submodule is exported
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert public - submodules - exported == set()


@pytest.mark.parametrize("old", ["splice.sandboxes", "splice.sandbox_oauth"])
def test_old_sandbox_paths_still_work_with_a_deprecation_warning(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="splice.sandbox"):
        module = importlib.import_module(old)
    for name in module.__all__:
        assert getattr(module, name) is getattr(splice.sandbox, name)


def test_entry_points_still_work() -> None:
    for args in (["-m", "splice", "--version"], ["-c", "from splice.cli import main, cli"]):
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr


def test_pyproject_lists_every_package() -> None:
    import tomllib

    from .conftest import ROOT

    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"splice.recipes"}  # recipes/ ships as package data of splice (no __init__.py)
    for top, folder in (("splice", "core"), ("splice_connectors", "connectors")):
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((top, *parts)))
    assert listed == found


def test_names_the_cli_repeats_to_start_fast_match_their_sources() -> None:
    """cli/connections.py spells two names out (importing them would load httpx at start-up)."""
    from splice.cli import connections as cli_connections
    from splice.connections import client_credentials
    from splice.http import network

    assert cli_connections.OPTION == network.OPTION
    assert cli_connections.CLIENT_CREDENTIALS == client_credentials.KIND

"""Plugin loading through real entry points, broken plugins, duplicates, the allow-list."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from splice import hookimpl, plugins
from splice.errors import ConfigError

from .conftest import invoke, register_test_plugin

GOOD_MANIFEST = """\
id: echo_api
name: Echo API
version: "0.3.0"
base_url: https://echo.invalid
auth: {type: none}
operations:
  echo:
    method: POST
    path: /echo
    input: {type: object, properties: {text: {type: string}}}
    output: {type: object}
"""

BAD_MANIFEST = """\
id: Bad-Id
name: Broken
version: "1"
base_url: https://x.invalid
auth: {type: none}
operations:
  echo:
    method: FETCH
    path: /x
    input: {type: object}
    output: {type: object}
"""


def _package(root: Path, dist: str, module: str, body: str, files: dict[str, str]) -> Path:
    src = root / dist
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(textwrap.dedent(body))
    for name, text in files.items():
        (src / module / name).write_text(text)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.3.0"
        [project.entry-points.splice]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
        [tool.setuptools.package-data]
        {module} = ["*.yaml"]
        """))
    return src


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three throwaway plugin distributions, really built and pip-installed with --target."""
    root = tmp_path_factory.mktemp("plugins")
    register = """\
        from pathlib import Path
        from splice import hookimpl

        @hookimpl
        def register_connectors(register):
            register(Path(__file__).with_name("manifest.yaml"))
        """
    sources = [
        _package(root, "splice-echo", "splice_echo", register, {"manifest.yaml": GOOD_MANIFEST}),
        _package(root, "splice-broken", "splice_broken",
                 "import does_not_exist_anywhere\n", {}),
        _package(root, "splice-badmanifest", "splice_badmanifest", register,
                 {"manifest.yaml": BAD_MANIFEST}),
        _package(root, "splice-dup", "splice_dup", register,
                 {"manifest.yaml": GOOD_MANIFEST}),
        _package(root, "splice-cmd", "splice_cmd", """\
            import click
            from splice import hookimpl

            @hookimpl
            def register_commands(cli):
                @cli.command(name="hello-plugin")
                def hello():
                    \"\"\"Say hello from a plugin.\"\"\"
                    click.echo("hello from a plugin")
            """, {}),
    ]
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), *map(str, sources)],
                   check=True, capture_output=True, timeout=240)
    return target


def _splice(plugin_dir: Path, *args: str, allow: str | None = None,
            home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "SPLICE_HOME": str(home)}
    env.pop("SPLICE_LOAD_PLUGINS", None)
    if allow is not None:
        env["SPLICE_LOAD_PLUGINS"] = allow
    return subprocess.run([sys.executable, "-m", "splice", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_entry_point_plugin_is_listed(plugin_dir, splice_home):
    result = _splice(plugin_dir, "connectors", "list", "--json",
                     allow="splice_echo,ghl_users,invoice2go", home=splice_home)
    assert result.returncode == 0, result.stderr
    assert '"id": "echo_api"' in result.stdout
    assert '"plugin": "splice_echo"' in result.stdout


def test_broken_plugins_are_reported_by_name_and_skipped(plugin_dir, splice_home):
    result = _splice(plugin_dir, "connectors", "list", home=splice_home,
                     allow="splice_echo,splice_broken,splice_badmanifest")
    assert result.returncode == 0
    assert "plugin 'splice_broken' skipped: failed to load: ModuleNotFoundError" \
        in result.stderr
    assert "plugin 'splice_badmanifest' skipped: invalid connector manifest" in result.stderr
    assert "manifest.yaml:1:5: id: does not match the pattern" in result.stderr
    assert "manifest.yaml:8:13: operations.echo.method: must be one of" in result.stderr
    assert "echo_api" in result.stdout
    assert "Traceback" not in result.stderr


def test_duplicate_connector_id_names_both_plugins(plugin_dir, splice_home):
    result = _splice(plugin_dir, "plugins", home=splice_home, allow="splice_echo,splice_dup")
    assert result.returncode == 0
    assert ("connector id 'echo_api' is already registered by plugin 'splice_dup'; "
            "plugin 'splice_echo' must use another id") in result.stderr or \
        ("connector id 'echo_api' is already registered by plugin 'splice_echo'; "
         "plugin 'splice_dup' must use another id") in result.stderr


def test_plugins_command_lists_versions_and_hooks(plugin_dir, splice_home):
    result = _splice(plugin_dir, "plugins", "--json", home=splice_home, allow="splice_echo")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    echo = next(p for p in data["plugins"] if p["name"] == "splice_echo")
    assert echo["version"] == "0.3.0" and echo["hooks"] == ["register_connectors"]
    assert any(p["name"] == "splice.default_plugins.filters" for p in data["plugins"])


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_plugin_commands_are_listed_under_help(plugin_dir, splice_home, flag):
    result = _splice(plugin_dir, flag, allow="splice_cmd", home=splice_home)
    assert result.returncode == 0, result.stderr
    assert "hello-plugin" in result.stdout and "Say hello from a plugin." in result.stdout


def test_allow_list_limits_third_party_plugins(plugin_dir, splice_home):
    result = _splice(plugin_dir, "connectors", "list", "--json", allow="", home=splice_home)
    assert result.returncode == 0
    assert "echo_api" not in result.stdout and "invoice2go" not in result.stdout


def test_first_party_connectors_load_through_entry_points():
    registry = plugins.get_registry()
    assert {"ghl_users", "invoice2go", "splice"} <= set(registry.connectors)
    assert registry.connectors["invoice2go"].plugin == "invoice2go"
    assert not registry.failures, registry.failures


def test_hook_register_template_filters():
    class Shout:
        @hookimpl
        def register_template_filters(self, register):
            register("shout", lambda value: str(value).upper() + "!")

    register_test_plugin(Shout(), "shout")
    from splice.mapping.templates import TemplateEngine

    engine = TemplateEngine(plugins.get_registry().filters)
    assert engine.compile_mapping({"a": "{{ 'hi' | shout }}"})({}) == {"a": "HI!"}


def test_hook_register_auth_types():
    class Custom:
        @hookimpl
        def register_auth_types(self, register):
            register("custom_token", lambda connector, record, store: None)

    register_test_plugin(Custom(), "custom-auth")
    assert "custom_token" in plugins.get_registry().auth_types


def test_hook_register_commands():
    import click

    class Cmd:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(name="hello-plugin")
            def hello() -> None:
                click.echo("hello from a plugin")

    register_test_plugin(Cmd(), "cmd-plugin")
    from splice.cli.main import SpliceGroup

    SpliceGroup._plugins_loaded = False
    from .conftest import invoke

    assert invoke("hello-plugin").stdout.strip() == "hello from a plugin"


def test_hook_register_connectors_failure_is_reported():
    class Raises:
        @hookimpl
        def register_connectors(self, register):
            raise RuntimeError("boom")

    register_test_plugin(Raises(), "raiser")
    failures = [str(f) for f in plugins.get_registry().failures]
    assert failures == ["plugin 'raiser' skipped: hook register_connectors raised "
                        "RuntimeError: boom"]


def test_manifests_are_checked_only_when_a_command_uses_them(tmp_path, monkeypatch):
    """Cold start: a recipe is validated with only its own connectors' manifests checked; an
    invalid manifest of another plugin is reported by the commands that list them all."""
    from splice.model import manifest as manifest_module

    root = Path(__file__).resolve().parent.parent
    good = tmp_path / "good.yaml"
    good.write_text((root / "bench/connector.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: broken_api\nname: x\nversion: '1'\nbase_url: http://x\n"
                   "auth: {type: none}\noperations:\n  op: {method: FETCH, path: /x}\n")

    class Two:
        @hookimpl
        def register_connectors(self, register):
            register(bad)
            register(good)

    register_test_plugin(Two(), "two")
    checked = []
    real = manifest_module.check_manifest
    monkeypatch.setattr(manifest_module, "check_manifest",
                        lambda doc: checked.append(doc.path) or real(doc))
    monkeypatch.setenv("SPLICE_CACHE_DIR", str(tmp_path / "cache"))
    registry = plugins.get_registry()
    assert {"benchapi", "broken_api", "invoice2go"} <= set(registry.ids)
    assert checked == []  # ids are read without checking anything
    assert registry.connector("benchapi").id == "benchapi"
    assert checked == [str(good)] and registry.failures == []
    result = invoke("validate", "--skip-connections", str(root / "bench/recipe.yaml"))
    assert result.exit_code == 0, result.output
    assert "broken_api" not in result.output and checked == [str(good)]
    with pytest.raises(ConfigError, match="installed but its manifest is not valid"):
        registry.connector("broken_api")
    assert [f.plugin for f in registry.failures] == ["two"]
    assert "invalid connector manifest" in registry.failures[0].reason
    assert set(registry.connectors) >= {"benchapi", "invoice2go", "ghl_users"}
    assert len(registry.failures) == 1  # found once, reported once

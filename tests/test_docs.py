"""Docs match the code: every schema key, hook, filter and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from splice import hookspecs
from splice.model.documents import parse_document
from splice.model.schema import bundled_schema

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _keys(schema: object) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            found.add(name)
            found |= _keys(sub)
        for key in ("items", "additionalProperties"):
            found |= _keys(schema.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []):
                found |= _keys(sub)
    return found


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("schema,doc", [("recipe", "recipes.md"),
                                        ("connector", "connectors.md")])
def test_every_schema_key_is_documented(schema, doc):
    text = (DOCS / doc).read_text()
    missing = sorted(k for k in _keys(bundled_schema(schema)) if f"`{k}`" not in text)
    assert not missing, f"{doc} does not document: {missing}"


def test_recipe_example_is_a_valid_recipe():
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import recipe_from_document
    from splice.plugins import get_registry
    from splice.run.plan import build_plan

    blocks = _yaml_blocks((DOCS / "recipes.md").read_text())
    assert blocks
    registry = get_registry()
    for block in blocks:
        recipe = recipe_from_document(parse_document(block, "docs/recipes.md"))
        build_plan(recipe, registry, TemplateEngine(registry.filters))


def test_connector_example_is_the_tested_fixture():
    block = _yaml_blocks((DOCS / "connectors.md").read_text())[0]
    assert yaml.safe_load(block) == yaml.safe_load((ROOT / "tests/fixtures/fakecrm.yaml")
                                                   .read_text())


def _hooks() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("register_")]


@pytest.mark.parametrize("hook", _hooks())
def test_every_hook_is_documented(hook):
    assert f"## `{hook}(" in (DOCS / "plugins.md").read_text()


@pytest.mark.parametrize("hook", _hooks())
def test_every_hook_has_a_test(hook):
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def test_hook_{hook}" in tests


def test_every_filter_is_documented():
    from splice.mapping.filters import FILTERS

    text = (DOCS / "templates.md").read_text()
    assert not [n for n in FILTERS if f"| `{n}` |" not in text]


def test_every_command_is_documented():
    import click

    from splice.cli.main import cli

    text = (DOCS / "cli.md").read_text()
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert f"splice {name}" in text, name
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                assert re.search(rf"splice {name} [^`]*\b{sub}\b", text), f"{name} {sub}"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    command = re.search(r"```(?:sh|bash)\n(.*?pytest.*?)\n```", readme, re.S).group(1)
    assert command.strip().splitlines()[-1] in ci


def test_architecture_names_every_part_of_core():
    text = (DOCS / "architecture.md").read_text()
    core = ROOT / "core"
    parts = {p.name + "/" for p in core.iterdir() if (p / "__init__.py").exists()}
    parts |= {p.name for p in core.glob("*.py")
              if p.stem not in {"__init__", "__main__", "sandboxes", "sandbox_oauth"}}
    missing = sorted(p for p in parts if f"`{p}`" not in text)
    assert not missing, f"docs/architecture.md does not describe {missing}"

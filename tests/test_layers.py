"""The import rule of ``core/`` (the ``splice`` package), checked by parsing every module.

Layers, top to bottom; a module imports only from its own folder or from a lower layer, and
folders that share a layer (written ``a | b``) never import each other::

    cli > serve | testing > web | worker > run | default_plugins | authoring > connections
        > http | store | plugins > model | mapping | sandbox | openapi | secrets | signatures
        > errors | hookspecs | sqlite

The rule is written down in docs/architecture.md; this test keeps it. Also checked: every
import inside ``core/`` is relative, no module imports another module's ``_private`` name,
and the import graph of ``core/`` modules has no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT

CORE = ROOT / "core"
LAYERS: list[set[str]] = [
    {"__init__", "__main__"},
    {"cli"},
    {"serve", "testing"},
    {"web", "worker"},
    {"builder"},
    {"run", "default_plugins", "authoring"},
    {"connections"},
    {"http", "store", "plugins"},
    {"model", "mapping", "sandbox", "openapi", "secrets", "signatures"},
    {"errors", "hookspecs", "sqlite"},
]
# deprecation shims keep old module paths one release; they live in the layer they point to
ALIASES = {"sandboxes": "sandbox", "sandbox_oauth": "sandbox"}
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def part_of(module: str) -> str:
    head = module.split(".")[0]
    return ALIASES.get(head, head)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports(path: Path) -> Iterator[tuple[int, str, list[str], int]]:
    """(line, absolute module inside splice, imported names, level) for each import."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py" or len(package) == 1 and package[0] == "__init__":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level == 0:
                if node.module and (node.module == "splice" or node.module.startswith("splice.")):
                    yield node.lineno, node.module.removeprefix("splice").lstrip("."), names, 0
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield node.lineno, target, names, node.level
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "splice" or alias.name.startswith("splice."):
                    yield node.lineno, alias.name.removeprefix("splice").lstrip("."), [], 0


def resolve(target: str, name: str, modules: dict[str, Path]) -> str:
    """``from target import name``: the module imported (a submodule, or target itself)."""
    sub = f"{target}.{name}" if target else name
    return sub if sub in modules else (target or "__init__")


def edges() -> Iterator[tuple[str, int, str, list[str], int]]:
    modules = core_modules()
    for module, path in modules.items():
        for line, target, names, level in imports(path):
            for name in names or [""]:
                yield module, line, resolve(target, name, modules), [name], level


def violations() -> list[str]:
    out = []
    for module, line, target, names, level in edges():
        where = f"core/{module.replace('.', '/')}.py:{line}"
        if level == 0:
            out.append(f"{where}: absolute import of splice.{target} (use a relative import)")
        src, dst = part_of(module), part_of(target)
        if src == dst:
            continue
        if src not in RANK or dst not in RANK:
            out.append(f"{where}: '{src}' or '{dst}' is not in a layer (add it to LAYERS)")
        elif RANK[dst] < RANK[src] or (RANK[dst] == RANK[src]):
            out.append(f"{where}: {src} may not import {dst} ({target}): "
                       + ("same layer" if RANK[dst] == RANK[src] else "upward import"))
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                out.append(f"{where}: imports the private name {name} from {target}")
    return out


def test_imports_follow_the_layers() -> None:
    problems = violations()
    assert not problems, "\n".join(problems)


def test_core_import_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module, _line, target, _names, _level in edges():
        if target != module:
            graph.setdefault(module, set()).add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_rule_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """The checker itself: a store module importing the runner is reported."""
    fake = tmp_path / "core"
    (fake / "store").mkdir(parents=True)
    (fake / "run").mkdir()
    for d in (fake, fake / "store", fake / "run"):
        (d / "__init__.py").write_text("")
    (fake / "run" / "runner.py").write_text("from ..store import ledger\n")
    (fake / "store" / "ledger.py").write_text("from ..run.runner import Runner\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["CORE"]), "CORE", fake)
    problems = violations()
    assert any("store may not import run" in p for p in problems), problems
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_core_import_graph_has_no_cycle()


def test_no_module_over_600_lines() -> None:
    long = {m: n for m, p in core_modules().items()
            if (n := len(p.read_text("utf-8").splitlines())) > 600}
    assert not long, long

"""The built wheel is complete: installed with no checkout around, `splice demo` works in an
empty directory (the recipes ship as package data, and so do schemas, templates, manifests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installed_without_a_checkout_runs_the_demo(tmp_path):
    source = tmp_path / "src"   # build from a copy: the worktree gets no build/ or egg-info
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("core", "connectors", "recipes"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SPLICE_LOAD_PLUGINS", "SPLICE_CONNECTORS_PATH")}
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(wheels), str(source)], tmp_path, env)
    (wheel,) = wheels.glob("splice-*.whl")
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
          str(wheel)], tmp_path, env)
    assert sorted(p.name for p in (target / "splice/recipes").glob("*.yaml")) == \
        sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
    empty = tmp_path / "empty"
    empty.mkdir()
    run_env = {**env, "PYTHONPATH": str(target), "SPLICE_HOME": str(tmp_path / "home")}
    where = _run([sys.executable, "-c", "import splice, splice_connectors; "
                  "print(splice.__file__, splice_connectors.__file__)"], empty, run_env)
    assert where.stdout.split() == [str(target / "splice/__init__.py"),
                                    str(target / "splice_connectors/__init__.py")]
    demo = _run([sys.executable, "-m", "splice", "demo"], empty, run_env)
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        assert f"{recipe.name}:" in demo.stdout, demo.stdout
    assert "Total:" in demo.stdout and " - failed" not in demo.stdout
    assert sorted(os.listdir(empty)) == []   # the demo wrote nothing into the cwd

"""Every operation of both connectors has a sample that validates, and `splice test --sample`
works on every recipe in recipes/ (after `splice demo` made the connections it names)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splice import plugins
from splice.model.manifest import MISSING
from splice.testing import sample_problems, trigger_problems

from .conftest import ROOT


@pytest.mark.parametrize("connector_id", ["ghl_users", "invoice2go"])
def test_every_operation_has_a_sample_that_validates(connector_id):
    connector = plugins.get_registry().connector(connector_id)
    assert not sample_problems(connector), "\n".join(map(str, sample_problems(connector)))
    assert all(op.sample is not MISSING for op in connector.operations.values())
    assert not trigger_problems(connector)
    for trigger in connector.triggers.values():
        if trigger.type == "polling":  # `splice test --sample` takes the first record
            op = connector.operations[trigger.operation or ""]
            assert op.is_list and op.sample is not MISSING, trigger.ref


def _splice(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPLICE_HOME": str(home), "NO_COLOR": "1"}
    env.pop("SPLICE_CONNECTORS_PATH", None)
    return subprocess.run([sys.executable, "-m", "splice", *args], env=env, cwd=home.parent,
                          capture_output=True, text=True, timeout=120, check=False)


def test_sample_trial_runs_every_recipe(tmp_path):
    home = tmp_path / "home"
    demo = _splice(home, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4
    for recipe in recipes:
        done = _splice(home, "test", str(recipe), "--sample", "--json")
        assert done.returncode == 0, f"{recipe.name}: {done.stdout}{done.stderr}"
        report = json.loads(done.stdout)
        assert report["source"] == "sample" and report["ok"], recipe.name
        assert report["steps"] and all(s["status"] in ("rendered", "skipped")
                                       for s in report["steps"]), recipe.name

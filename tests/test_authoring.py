"""The connector author's loop: manifests from files, `connectors check|new|add|remove`, the
conformance suite (`splice.testing`) and a scaffolded package built and tested in its own venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from splice import plugins

from .conftest import ROOT, invoke

BROKEN = """\
id: broken
name: Broken
version: "1"
base_url: https://broken.invalid
auth: {type: bearer}
operations:
  list_things:
    method: GET
    path: /things/{thing_id}
    input: {type: object, properties: {limit: {type: integer}}}
    output:
      type: object
      properties:
        things: {type: array, items: {type: object, properties: {id: {type: string}}}}
    records: things
    sample: {things: [{id: 7}]}
triggers:
  thing_seen:
    type: polling
    operation: list_things
    key: "{{ record.identifier }}"
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_check_reports_every_problem_at_file_line_col(tmp_path):
    bad = _write(tmp_path / "bad.yaml", BROKEN.replace("method: GET", "method: FETCH"))
    result = invoke("connectors", "check", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:8:13: operations.list_things.method: must be one of" in result.stderr
    # structurally valid, but wrong in what recipes would hit: all of it, positioned
    wrong = _write(tmp_path / "wrong.yaml", BROKEN.replace("path: /things/{thing_id}",
                                                           "path: /things"))
    result = invoke("connectors", "check", str(wrong))
    assert result.exit_code == 2, result.output
    assert (f"{wrong}:16:28: operations.list_things.sample.things[0].id: sample does not "
            "match output") in result.stderr
    assert (f"{wrong}:21:10: triggers.thing_seen.key: record has no field 'identifier'"
            in result.stderr)
    assert "2 error(s)" in result.stderr
    path_param = _write(tmp_path / "param.yaml", BROKEN.replace("{id: 7}", "{id: '7'}")
                        .replace("record.identifier", "record.id"))
    result = invoke("connectors", "check", str(path_param))
    assert (f"{path_param}:9:11: operations.list_things.path: path parameter 'thing_id' "
            "must be a required property of input") in result.stderr
    assert "Traceback" not in result.output


def test_check_warns_about_missing_samples_and_passes_clean_manifests(tmp_path):
    text = BROKEN.replace("path: /things/{thing_id}", "path: /things") \
        .replace("{id: 7}", "{id: '7'}").replace("record.identifier", "record.id")
    ok = _write(tmp_path / "ok.yaml", text)
    result = invoke("connectors", "check", str(ok))
    assert result.exit_code == 0, result.output
    assert "broken ok: 1 operations, 1 triggers" in result.stdout
    nosample = _write(tmp_path / "nosample.yaml",
                      text.replace("    sample: {things: [{id: '7'}]}\n", ""))
    result = invoke("connectors", "check", str(nosample))
    assert result.exit_code == 0
    assert f"warning: {nosample}:7:3: operations.list_things: no sample" in result.stderr
    assert invoke("connectors", "check", "--strict", str(nosample)).exit_code == 2
    for manifest in ("connectors/ghl_users/manifest.yaml", "connectors/invoice2go/manifest.yaml"):
        checked = invoke("connectors", "check", "--strict", str(ROOT / manifest))
        assert checked.exit_code == 0, checked.stderr


def test_add_samples_writes_valid_samples_and_keeps_the_rest_of_the_file(tmp_path):
    original = (ROOT / "tests/fixtures/fakecrm.yaml").read_text()
    copy = tmp_path / "fakecrm.yaml"
    copy.write_text("# my notes stay\n" + original)
    assert invoke("connectors", "check", "--strict", str(copy)).exit_code == 2
    added = invoke("connectors", "check", "--strict", "--add-samples", str(copy))
    assert added.exit_code == 0, added.output
    assert "samples added to 3 operation(s): list_contacts, create_note, add_tags" \
        in added.stderr
    text = copy.read_text()
    assert text.startswith("# my notes stay\n") and text.count("    sample:") == 3
    import yaml

    data = yaml.safe_load(text)
    assert data["operations"]["list_contacts"]["sample"]["data"]["contacts"][0]["id"]
    assert {k: {kk: vv for kk, vv in v.items() if kk != "sample"}
            for k, v in data["operations"].items()} == yaml.safe_load(original)["operations"]


def test_connectors_path_loads_manifests_and_reports_missing_entries(tmp_path, monkeypatch):
    text = BROKEN.replace("path: /things/{thing_id}", "path: /things") \
        .replace("{id: 7}", "{id: '7'}").replace("record.identifier", "record.id")
    manifest = _write(tmp_path / "things.yaml", text)
    monkeypatch.setenv("SPLICE_CONNECTORS_PATH",
                       os.pathsep.join([str(manifest), str(tmp_path / "gone.yaml")]))
    plugins.reset()
    listed = invoke("connectors", "list", "--json")
    assert listed.exit_code == 0
    row = next(r for r in json.loads(listed.stdout) if r["id"] == "broken")
    assert row["plugin"] == f"path:{manifest}"
    assert f"plugin 'path:{tmp_path / 'gone.yaml'}' skipped: no such manifest" in listed.stderr
    # an invalid manifest on the path is reported with its position and skipped
    manifest.write_text(BROKEN.replace("method: GET", "method: FETCH"))
    plugins.reset()
    listed = invoke("connectors", "list", "--json")
    assert "operations.list_things.method: must be one of" in listed.stderr
    assert "broken" not in [r["id"] for r in json.loads(listed.stdout)]


def test_connectors_add_and_remove_persist_a_manifest_path(tmp_path, splice_home):
    text = BROKEN.replace("path: /things/{thing_id}", "path: /things") \
        .replace("{id: 7}", "{id: '7'}").replace("record.identifier", "record.id")
    manifest = _write(tmp_path / "things.yaml", text)
    assert invoke("connectors", "add", str(manifest)).exit_code == 0
    plugins.reset()
    assert "broken" in invoke("connectors", "list", "--json").stdout
    assert json.loads((splice_home / "connectors.json").read_text())["paths"] == \
        [str(manifest.resolve())]
    bad = _write(tmp_path / "bad.yaml", BROKEN)
    refused = invoke("connectors", "add", str(bad))
    assert refused.exit_code == 2 and "record has no field 'identifier'" in refused.stderr
    assert invoke("connectors", "remove", str(manifest)).exit_code == 0
    plugins.reset()
    assert "broken" not in invoke("connectors", "list", "--json").stdout
    assert invoke("connectors", "remove", str(manifest)).exit_code == 2


def test_show_lists_input_fields_and_output_tree():
    shown = invoke("connectors", "show", "invoice2go.create_client", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["kind"] == "operation" and data["method"] == "POST"
    name = next(f for f in data["input"] if f["name"] == "name")
    assert name["required"] is True and name["type"].startswith("string")
    data_field = next(f for f in data["output"] if f["name"] == "data")
    assert any(f["name"] == "id" for f in data_field["fields"])
    trigger = json.loads(invoke("connectors", "show", "invoice2go.invoice_paid",
                                "--json").stdout)
    status = next(f for f in trigger["record"] if f["name"] == "document_status")
    assert "fully_paid" in status["enum"]
    text = invoke("connectors", "show", "ghl_users.create_post").stdout
    assert "input (the `with:` of a step)" in text and "output fields" in text
    missing = invoke("connectors", "show", "ghl_users.create_pots")
    assert missing.exit_code == 2 and "did you mean 'create_post'" in missing.stderr


def test_coverage_lists_spec_operations_with_scopes_and_the_import_command(tmp_path):
    spec = {"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/contacts": {"get": {"operationId": "list", "security": [{"bearer": ["c.read"]}],
                              "responses": {"200": {"description": "ok"}}}},
        "/contacts/{id}/tags": {"post": {"operationId": "tag",
                                         "security": [{"bearer": ["c.write"]}],
                                         "responses": {"200": {"description": "ok"}}}},
        "/contacts/{id}": {"delete": {"operationId": "del",
                                      "responses": {"204": {"description": "ok"}}}},
    }}
    (tmp_path / "crm.json").write_text(json.dumps(spec))
    from .conftest import _FakeCrmPlugin, register_test_plugin

    register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
    result = invoke("connectors", "coverage", "fakecrm", "--spec", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {(r["method"], r["path"]): r for r in data["operations"]}
    assert rows[("GET", "/contacts")]["operation"] == "list_contacts"
    assert rows[("GET", "/contacts")]["scopes"] == ["c.read"]
    assert rows[("POST", "/contacts/{id}/tags")]["operation"] == "add_tags"
    assert rows[("DELETE", "/contacts/{id}")]["operation"] is None
    assert data["unmatched"] == ["create_note"]
    assert data["import"] == [f"splice connectors import-openapi {tmp_path / 'crm.json'} "
                              "--path '/contacts/{id}' -o fakecrm_crm.yaml"]


def test_coverage_of_ghl_users_against_the_official_specs():
    specs = Path("/work/shared/reference/ghl/openapi/apps")
    if not specs.is_dir():
        pytest.skip("the official HighLevel specs are not on this machine")
    result = invoke("connectors", "coverage", "ghl_users", "--spec", str(specs), "--json")
    data = json.loads(result.stdout)
    v2 = [r for r in data["operations"] if r["spec"] in ("users.json",
                                                         "social-media-posting.json")]
    assert v2 and all(r["operation"] for r in v2), [r for r in v2 if not r["operation"]]
    assert not data["unmatched"]
    assert any("import-openapi" in c and "social-planner-v3.json" in c for c in data["import"])


def test_conformance_suite_finds_what_is_wrong(tmp_path):
    from splice.testing import sample_problems, sandbox_problems, trigger_problems
    from splice.testing.conformance import load_connector

    manifest = _write(tmp_path / "broken.yaml", BROKEN.replace("path: /things/{thing_id}",
                                                               "path: /things")
                      .replace("    sample: {things: [{id: 7}]}\n", ""))
    connector = load_connector("", manifest=manifest)
    assert [str(p) for p in trigger_problems(connector)] == \
        [f"{manifest}:20:10: triggers.thing_seen.key: record has no field 'identifier'"]
    assert [p.message for p in sample_problems(connector)] == \
        ["no sample: add an example response body as `sample` (splice test --sample uses it)"]
    # a sandbox that answers with the wrong shape is caught
    crm = load_connector("", manifest=ROOT / "tests/fixtures/fakecrm.yaml",
                         sandbox="tests.conformance_sandbox:create_app")
    problems = sandbox_problems(crm, inputs={"add_tags": {"contact_id": "c0001",
                                                          "tags": ["x"]}})
    assert problems == ["fakecrm.create_note: response does not match output at id: "
                        "expected a string, got an integer"], problems


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


def test_new_package_passes_its_own_tests_installed_and_from_the_path(tmp_path):
    """Acceptance: `splice connectors new acme && cd acme && pip install -e . && pytest`,
    in a new venv; before that, the same manifest works through SPLICE_CONNECTORS_PATH."""
    import site

    env = {k: v for k, v in os.environ.items() if k not in ("SPLICE_LOAD_PLUGINS",
                                                             "PYTHONPATH")}
    _run([sys.executable, "-m", "splice", "connectors", "new", "acme"], tmp_path, env)
    acme = tmp_path / "acme"
    assert (acme / "pyproject.toml").read_text().count("[project.entry-points.splice]") == 1
    # 1. not installed: the manifest from the path, the tests with the package on PYTHONPATH
    path_env = {**env, "SPLICE_CONNECTORS_PATH": str(acme / "splice_acme/manifest.yaml"),
                "PYTHONPATH": str(acme)}
    shown = _run([sys.executable, "-m", "splice", "connectors", "show", "acme.create_widget",
                  "--json"], tmp_path, path_env)
    assert json.loads(shown.stdout)["method"] == "POST"
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], acme, path_env)
    # 2. installed into a new venv that sees splice and its dependencies (not this one)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    site_dir = next(Path(p) for p in (venv / "lib").glob("python*/site-packages"))
    (site_dir / "_splice_dev.pth").write_text(
        f"import site; site.addsitedir({site.getsitepackages()[0]!r})\n")
    _run([str(venv / "bin/pip"), "install", "-q", "-e", "."], acme, env, timeout=240)
    tested = _run([str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                  acme, env)
    assert "4 passed" in tested.stdout
    listed = _run([str(venv / "bin/python"), "-m", "splice", "connectors", "list", "--json"],
                  tmp_path, env)
    assert any(r["id"] == "acme" and r["plugin"] == "acme" for r in json.loads(listed.stdout))
    # this venv did not get the plugin
    here = _run([sys.executable, "-m", "splice", "connectors", "list", "--json"], tmp_path, env)
    assert "acme" not in [r["id"] for r in json.loads(here.stdout)]

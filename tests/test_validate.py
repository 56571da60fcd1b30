"""`splice validate`: every malformed recipe or manifest names file:line:column and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from splice.errors import DocumentError
from splice.model.manifest import load_manifest

from .conftest import FIXTURES, invoke

GOOD = (FIXTURES / "notes.yaml").read_text()


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _problems(path: str) -> list[str]:
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    return [line.removeprefix("error: ") for line in result.stderr.splitlines()
            if line.startswith("error: ")]


RECIPE_CASES = [
    # (recipe text, expected "line:col: path: message" fragment)
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n    with: {subject: a, body: b\n",
     "7:1: invalid YAML: while parsing a flow mapping:"),
    ("name: x\nname: y\ntrigger: {use: fakecrm.contact_updated}\nsteps: []\n",
     "2:1: invalid YAML: duplicate key 'name' (first defined on line 1)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsepps: []\n",
     "3:1: sepps: unknown key 'sepps' (did you mean 'steps'?)"),
    ("name: x\ntrigger: {connection: crm}\nsteps:\n  - use: fakecrm.create_note\n",
     "2:10: trigger: missing required key 'use'"),
    ("name: x\ntrigger: {use: fakecrm, connection: crm}\nsteps:\n  - use: fakecrm.create_note\n",
     "2:16: trigger.use: does not match the pattern"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm, every: soon}\n"
     "steps:\n  - use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: b}\n",
     "2:65: trigger.every: does not match the pattern"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps: []\n",
     "3:8: steps: must have at least 1 item(s)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updatd, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n    with: {subject: a, body: b}\n",
     "2:16: trigger.use: connector 'fakecrm' has no trigger 'contact_updatd' "
     "(did you mean 'contact_updated'?)"),
    ("name: x\ntrigger: {use: fakecrn.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n    with: {subject: a, body: b}\n",
     "2:16: trigger.use: unknown connector 'fakecrn' (did you mean 'fakecrm'?)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_notes\n    connection: crm\n",
     "4:10: steps[0].use: connector 'fakecrm' has no action 'create_notes' "
     "(did you mean 'create_note'?)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with:\n      subject: \"{{ trigger.emial }}\"\n      body: b\n",
     "7:16: steps[0].with.subject: 'trigger.emial' does not exist in the trigger's output "
     "schema (did you mean 'email'?)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with:\n      subject: \"{{ trigger.name }\"\n      body: b\n",
     "7:16: steps[0].with.subject: unexpected '}'"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with:\n      subject: a\n      body: b\n      score: \"{{ trigger.name }}\"\n",
     "9:14: steps[0].with.score: type mismatch: 'trigger.name' is string but the input "
     "expects integer"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n    with: {subject: a}\n",
     "6:5: steps[0].with: missing required input 'body'"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: b, score: many}\n",
     "6:40: steps[0].with.score: expected an integer, got a string"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: b, colour: red}\n",
     "6:33: steps[0].with.colour: unknown input 'colour'"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crmm\n    with: {subject: a, body: b}\n",
     "5:17: steps[0].connection: connection 'crmm' does not exist (did you mean 'crm'?)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: \"{{ ''.__class__.__mro__ }}\", body: b}\n",
     "6:21: steps[0].with.subject: "),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - id: a\n    use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: b}\n"
     "  - id: a\n    use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: \"{{ steps.a.idd }}\"}\n",
     "8:9: steps[1].id: step id 'a' is already used by steps[0]"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - id: a\n    use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: b}\n"
     "  - use: fakecrm.create_note\n    connection: crm\n"
     "    with: {subject: a, body: \"{{ steps.a.idd }}\"}\n",
     "10:30: steps[1].with.body: 'steps.a.idd' does not exist in the earlier steps' outputs "
     "(did you mean 'id'?)"),
    ("name: x\ntrigger: {use: fakecrm.contact_updated, connection: crm}\nsteps:\n"
     "  - use: fakecrm.create_note\n    connection: crm\n    when: \"{{ trigger.scor > 3 }}\"\n"
     "    with: {subject: a, body: b}\n",
     "6:11: steps[0].when: 'trigger.scor' does not exist in the trigger's output schema "
     "(did you mean 'score'?)"),
]


@pytest.mark.parametrize("text,expected", RECIPE_CASES,
                         ids=[f"case{i}" for i in range(len(RECIPE_CASES))])
def test_malformed_recipe_points_at_the_line(fakecrm, tmp_path, text, expected):
    path = _write(tmp_path, "bad.yaml", text)
    problems = _problems(path)
    assert any(p.startswith(f"{path}:{expected}") for p in problems), problems


def test_json_recipe_errors_have_positions(fakecrm, tmp_path):
    path = _write(tmp_path, "bad.json", '{\n  "name": "x",\n  "trigger": {"use": 5}\n}\n')
    problems = _problems(path)
    assert f"{path}:3:22: trigger.use: expected a string, got an integer" in problems
    broken = _write(tmp_path, "broken.json", '{\n  "name": "x",\n}\n')
    assert _problems(broken) == [f"{broken}:3:1: invalid JSON: Expecting property name "
                                 "enclosed in double quotes"]


def test_valid_recipe_passes_in_yaml_and_json(fakecrm, tmp_path):
    import json

    import yaml

    assert invoke("validate", str(FIXTURES / "notes.yaml")).exit_code == 0
    path = _write(tmp_path, "notes.json", json.dumps(yaml.safe_load(GOOD), indent=2))
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output


def test_missing_scopes_are_named_with_the_fix(tmp_path):
    from splice.store.database import Store

    store = Store.open()
    store.put_connection("hl", connector="ghl_users", auth_type="oauth2", base_url=None,
                         config={"scopes": ["users.readonly"]}, secret={"access_token": "t"})
    path = _write(tmp_path, "r.yaml", """\
        name: tags
        trigger:
          use: ghl_users.tag_updated
          connection: hl
        steps:
          - use: ghl_users.search_users
            connection: hl
            with: {query: "{{ trigger.tag }}"}
        """)
    problems = _problems(path)
    assert any("trigger.connection: connection 'hl' lacks scope(s) socialplanner/tag.readonly;"
               " reconnect with `splice connect ghl_users --name hl --scopes" in p
               for p in problems), problems


MANIFEST_CASES = [
    ("id: x\nname: X\nversion: '1'\nbase_url: ftp://x\nauth: {type: none}\noperations: {}\n",
     "4:11: base_url: does not match the pattern"),
    ("id: x\nname: X\nversion: '1'\nbase_url: https://x\nauth: {type: oauth2}\n"
     "operations: {}\n", "5:7: auth: missing required key 'authorize_url'"),
    ("id: x\nname: X\nversion: '1'\nbase_url: https://x\nauth: {type: none}\noperations:\n"
     "  get_a:\n    method: GET\n    path: /a/{a_id}\n    input: {type: object}\n"
     "    output: {type: object}\n",
     "9:11: operations.get_a.path: path parameter 'a_id' must be a required property of input"),
    ("id: x\nname: X\nversion: '1'\nbase_url: https://x\nauth: {type: none}\noperations:\n"
     "  get_a:\n    method: GET\n    path: /a\n    input: {type: objekt}\n"
     "    output: {type: object}\n",
     "10:19: operations.get_a.input.type: not a valid JSON Schema"),
    ("id: x\nname: X\nversion: '1'\nbase_url: https://x\nauth: {type: none}\noperations:\n"
     "  get_a:\n    method: GET\n    path: /a\n    input: {type: object}\n"
     "    output: {type: object}\ntriggers:\n  a_created: {type: polling, operation: get_b, "
     "key: '{{ record.id }}'}\n",
     "13:41: triggers.a_created.operation: unknown operation 'get_b'"),
]


@pytest.mark.parametrize("text,expected", MANIFEST_CASES,
                         ids=[f"manifest{i}" for i in range(len(MANIFEST_CASES))])
def test_malformed_manifest_points_at_the_line(tmp_path, text, expected):
    path = _write(tmp_path, "manifest.yaml", text)
    with pytest.raises(DocumentError) as exc:
        load_manifest(path)
    assert any(str(p).startswith(f"{path}:{expected}") for p in exc.value.problems), \
        [str(p) for p in exc.value.problems]

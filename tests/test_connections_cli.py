"""`splice connections add/list/show/remove` for api_key and bearer connectors."""

from __future__ import annotations

import json

import pytest

from .conftest import invoke
from .test_endpoints import sandboxes  # noqa: F401 - the demo's sandboxes and connections

SECRET = "sk-live-4f9d2c7e8b1a6f3d"


def test_add_from_env_never_shows_the_secret(fakecrm, monkeypatch, splice_home):
    monkeypatch.setenv("CRM_TOKEN", SECRET)
    added = invoke("connections", "add", "crm2", "--connector", "fakecrm",
                   "--from-env", "CRM_TOKEN", "--base-url", fakecrm.base_url,
                   "--allow-private-network")
    assert added.exit_code == 0, added.output
    listing = invoke("connections", "list", "--json")
    row = next(r for r in json.loads(listing.stdout) if r["name"] == "crm2")
    assert row["connector"] == "fakecrm" and row["auth"] == "bearer"
    shown = invoke("connections", "show", "crm2")
    for output in (added.output, listing.output, shown.output,
                   invoke("connections", "list").output):
        assert SECRET not in output
    assert SECRET.encode() not in (splice_home / "splice.db").read_bytes()


def test_add_reads_the_secret_from_stdin_and_test_calls_the_api(fakecrm):
    from .fakeapi import TOKEN

    added = invoke("connections", "add", "crm3", "--connector", "fakecrm", "--base-url",
                   fakecrm.base_url, "--allow-private-network", input=TOKEN + "\n")
    assert added.exit_code == 0, added.output
    tested = invoke("connections", "test", "crm3")
    assert tested.exit_code == 0, tested.output
    assert "works: fakecrm.list_contacts answered with 10 record(s) on the first page" \
        in tested.stdout
    assert TOKEN not in tested.output


def test_a_refused_credential_is_a_clear_error(fakecrm):
    invoke("connections", "add", "wrong", "--connector", "fakecrm", "--base-url",
           fakecrm.base_url, "--allow-private-network", input="not-the-token\n")
    tested = invoke("connections", "test", "wrong")
    assert tested.exit_code == 1
    assert "fakecrm.list_contacts: HTTP 401: bad token" in tested.stderr
    assert "not-the-token" not in tested.output


def test_oauth_connectors_point_to_connect_and_remove_works(fakecrm):
    result = invoke("connections", "add", "hl", "--connector", "ghl_users", input="x\n")
    assert result.exit_code == 2
    assert "run `splice connect ghl_users --name hl`" in result.stderr
    assert invoke("connections", "remove", "crm").exit_code == 0
    assert invoke("connections", "remove", "crm").exit_code == 2


def test_call_runs_one_operation_with_typed_values(fakecrm):
    listed = invoke("call", "fakecrm.list_contacts", "-c", "crm", "--max-pages", "2")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["count"] == 20
    note = invoke("call", "fakecrm.create_note", "-c", "crm", "-w", "subject=s",
                  "-w", "body=00123", "-w", "score=7")
    assert note.exit_code == 0, note.output
    assert fakecrm.app.state.notes[-1] == {"id": "n1", "subject": "s", "body": "00123",
                                           "score": 7}
    bad = invoke("call", "fakecrm.create_note", "-c", "crm", "-w", "subject=s")
    assert bad.exit_code == 1 and "input: missing required key 'body'" in bad.stderr
    assert len(fakecrm.app.state.notes) == 1


@pytest.mark.usefixtures("sandboxes")
def test_demo_connections_pass_connections_test_and_call_checks_scopes():
    """The connections `splice demo` makes (scopes: what the recipes need) pass `connections
    test` (the declared test operations need scopes they lack: another allowed read is used),
    and `splice call` refuses an operation whose scope is missing before sending."""
    from splice.run.demo import CONNECTIONS

    for name in CONNECTIONS.values():
        tested = invoke("connections", "test", name)
        assert tested.exit_code == 0, tested.output
        assert f"connection '{name}' works:" in tested.stdout
        assert "tested with" in tested.stderr  # says why not the declared operation
    called = invoke("call", "invoice2go.get_account", "-c", "my-invoice2go")
    assert called.exit_code == 1, called.output
    assert "lacks scope(s) accounts:read" in called.stderr
    assert "nothing was sent" in called.stderr
    assert 'splice connect invoice2go --name my-invoice2go --scopes "' in called.stderr
    assert "<connection>" not in called.stderr

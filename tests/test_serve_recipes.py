"""The recipe registry (``splice recipes ...``) and hot reload: a changed file is picked up
without a restart; an invalid new version keeps the old one running and is reported."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx

from splice.plugins import get_registry
from splice.store import registry as reg

from .conftest import invoke
from .servekit import I2G_SECRET, i2g_event, i2g_headers, post, running_service, wait_for

RECIPE = """
name: Clients to notes
trigger: {use: invoice2go.client_created_webhook, connection: my-invoice2go}
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "VERSION {{ trigger.id }}", body: "{{ trigger.name }}"}
"""
POLLING = """
name: Contacts to notes
trigger: {use: fakecrm.contact_updated, connection: crm, every: 1h}
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "contact {{ trigger.id }}", body: "{{ trigger.name }}"}
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time() + 1  # a new mtime even within the file system's clock resolution
    os.utime(path, (stamp, stamp))


def test_recipes_commands(fakecrm: Any, tmp_path: Path) -> None:
    fakecrm.store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                                 base_url="http://127.0.0.1:9", config={})
    good, bad, polling = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "poll.yaml"
    good.write_text(RECIPE.replace("VERSION", "v1"))
    bad.write_text(RECIPE.replace("trigger.name", "trigger.nmae"))
    polling.write_text(POLLING)

    refused = invoke("recipes", "add", str(bad))
    assert refused.exit_code == 2
    assert f"{bad}:7:55:" in refused.output and "'trigger.nmae' does not exist" in refused.output
    assert "did you mean 'name'" in refused.output
    assert invoke("recipes", "add", str(good), str(polling)).exit_code == 0
    listed = json.loads(invoke("recipes", "list", "--json").output)
    assert [(r["name"], r["enabled"], r["status"]) for r in listed] == \
        [("Clients to notes", True, "ok"), ("Contacts to notes", True, "ok")]
    assert "Contacts to notes" in invoke("recipes", "list").output

    assert invoke("recipes", "disable", "Clients to notes").exit_code == 0
    assert reg.find(fakecrm.store, "Clients to notes")[0].enabled is False
    assert invoke("recipes", "enable", "Clients to notes").exit_code == 0
    unknown = invoke("recipes", "enable", "Clients to note")
    assert unknown.exit_code == 2 and "did you mean 'Clients to notes'" in unknown.output

    # run-now with no serve running: it runs here, once (the first poll remembers what
    # exists, so nothing is sent)
    ran = invoke("recipes", "run-now", "Contacts to notes")
    assert ran.exit_code == 0, ran.output
    assert "first run: remembered 25 existing record(s)" in ran.output
    assert fakecrm.posts() == []

    assert invoke("recipes", "remove", "Contacts to notes").exit_code == 0
    assert [r.name for r in reg.list_all(fakecrm.store)] == ["Clients to notes"]


def _row(store: Any) -> Any:
    (row,) = reg.find(store, "Clients to notes")
    return row


def test_hot_reload_and_an_invalid_version_keeps_the_old_one(fakecrm: Any,
                                                             tmp_path: Path) -> None:
    store = fakecrm.store
    store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                         base_url="http://127.0.0.1:9", config={},
                         secret={"webhook_secret": I2G_SECRET})
    path = tmp_path / "clients.yaml"
    path.write_text(RECIPE.replace("VERSION", "v1"))
    assert invoke("recipes", "add", str(path)).exit_code == 0
    notes = fakecrm.app.state.notes
    http = httpx.Client(timeout=10)

    with running_service(store, get_registry()) as (service, url):
        def deliver(client_id: str) -> None:
            event = i2g_event("client.created", {"id": client_id, "name": client_id})
            answer = post(http, f"{url}/hooks/my-invoice2go", event,
                          lambda body: i2g_headers(body, event))
            assert answer.status_code == 200, answer.text

        deliver("a")
        wait_for(lambda: [n["subject"] for n in notes] == ["v1 a"])

        _write(path, RECIPE.replace("VERSION", "v2"))  # a new valid version: picked up
        wait_for(lambda: service.book.recipes[_row(store).id].source_hash
                 == _row(store).source_hash and "v2" in _row(store).source)
        deliver("b")
        wait_for(lambda: [n["subject"] for n in notes] == ["v1 a", "v2 b"])

        _write(path, RECIPE.replace("VERSION", "v3").replace("trigger.name", "trigger.nmae"))
        wait_for(lambda: _row(store).status == "invalid")
        deliver("c")  # still the running (v2) version
        wait_for(lambda: [n["subject"] for n in notes] == ["v1 a", "v2 b", "v2 c"])
        listed = invoke("recipes", "list")
        assert "invalid" in listed.output
        assert re.search(rf"{re.escape(str(path))}:7:\d+: steps\[0\]\.with\.body",
                         listed.output)  # file:line:col of v3
        assert "'trigger.nmae' does not exist" in listed.output

        _write(path, RECIPE.replace("VERSION", "v4"))  # fixed: runs, status ok again
        wait_for(lambda: _row(store).status == "ok")
        deliver("d")
        wait_for(lambda: [n["subject"] for n in notes][-1] == "v4 d")


def test_a_due_poll_is_claimed_once(fakecrm: Any, tmp_path: Path) -> None:
    """Of two serve processes that both saw a poll due, one claims it (compare-and-set)."""
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "poll.yaml"
    path.write_text(POLLING)
    assert invoke("recipes", "add", str(path)).exit_code == 0
    (row,) = reg.list_all(fakecrm.store)
    due = datetime(2026, 1, 1, tzinfo=UTC)
    assert reg.claim_poll(fakecrm.store, row.id, None, due)  # first sight
    later = due + timedelta(seconds=60)
    assert [reg.claim_poll(fakecrm.store, row.id, due, later),
            reg.claim_poll(fakecrm.store, row.id, due, later + timedelta(seconds=1))] \
        == [True, False]
    assert reg.poll_schedule(fakecrm.store) == {row.id: later}


def test_webhook_url_and_key_commands(fakecrm: Any, tmp_path: Path,
                                      monkeypatch: Any) -> None:
    from .servekit import new_ed25519, new_rsa, pem_public

    store = fakecrm.store
    store.put_connection("my-highlevel", connector="ghl_users", auth_type="oauth2",
                         config={})
    store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                         base_url="http://127.0.0.1:9", config={})
    shown = invoke("connections", "webhook-url", "my-highlevel", "--json")
    data = json.loads(shown.output)
    assert data["url"] == "http://127.0.0.1:8750/hooks/my-highlevel"
    assert data["events"] == ["INSTALL", "UNINSTALL", "UserCreate"]
    assert data["scopes"] == ["users.readonly"]
    assert data["keys"] == {"ed25519": 1, "rsa_sha256": 1}  # HighLevel's published keys
    text = invoke("connections", "webhook-url", "my-invoice2go", "--base-url",
                  "https://hooks.example.com").output
    assert "https://hooks.example.com/hooks/my-invoice2go" in text
    assert "subscribes it by itself" in text
    assert "no verification key is configured" in text  # no subscription, no secret yet
    assert invoke("connections", "webhook-url", "crm").exit_code == 2  # polls only

    key = tmp_path / "sandbox.pem"
    key.write_text(pem_public(new_ed25519()))
    assert invoke("connections", "webhook-key", "my-highlevel", "--public-key",
                  str(key)).exit_code == 0
    assert store.get_connection("my-highlevel").config["webhook_keys"] == \
        {"ed25519": key.read_text()}
    wrong = tmp_path / "rsa.pem"
    wrong.write_text(pem_public(new_rsa()))
    refused = invoke("connections", "webhook-key", "my-highlevel", "--public-key", str(wrong))
    assert refused.exit_code == 2 and "not an Ed25519 public key" in refused.output
    monkeypatch.setenv("I2G_SECRET", "whsec_by-hand-0123456789")
    assert invoke("connections", "webhook-key", "my-invoice2go", "--secret-from-env",
                  "I2G_SECRET").exit_code == 0
    assert store.get_connection("my-invoice2go").secret["webhook_secret"] == \
        "whsec_by-hand-0123456789"
    assert "whsec_by-hand" not in invoke("connections", "show", "my-invoice2go").output

"""The runner end to end against the fake CRM over loopback HTTP."""

from __future__ import annotations

import json
import sqlite3

from .conftest import FIXTURES, invoke

RECIPE = str(FIXTURES / "notes.yaml")


def test_first_run_seeds_then_fires_on_changes(fakecrm):
    first = invoke("run", RECIPE)
    assert first.exit_code == 0, first.output
    assert "remembered 25 existing record(s)" in first.output
    assert fakecrm.posts() == []
    fakecrm.app.state.contacts[3]["updated_at"] = "2026-06-01T00:00:00Z"
    second = invoke("run", RECIPE)
    assert second.exit_code == 0, second.output
    assert "1 new, 1 succeeded" in second.output
    assert [p[1] for p in fakecrm.posts()] == ["/notes", "/contacts/c0004/tags"]


def test_backfill_runs_two_steps_per_event_across_pages(fakecrm):
    result = invoke("run", RECIPE, "--backfill", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["events_new"] == 25 and report["events_succeeded"] == 25
    pages = [e for e in fakecrm.log if e[1] == "/contacts"]
    assert [p[2]["skip"] for p in pages] == ["0", "10", "20"]
    assert len(fakecrm.app.state.notes) == 25
    note = fakecrm.app.state.notes[0]
    assert note["zip"] == "00001"  # a string that looks like a number stays a string
    assert fakecrm.app.state.tags["c0001"] == ["noted", note["id"]]  # step 2 read step 1
    again = json.loads(invoke("run", RECIPE, "--json").stdout)
    assert again["events_new"] == 0
    assert len(fakecrm.app.state.notes) == 25


def test_failed_step_is_retried_without_resending_the_step_that_succeeded(fakecrm):
    invoke("run", RECIPE)  # seed
    fakecrm.app.state.contacts[0]["updated_at"] = "2026-07-01T00:00:00Z"
    fakecrm.app.state.fail["/contacts/c0001/tags"] = {"status": 409, "count": 1}
    failed = invoke("run", RECIPE, "--json")
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert report["events_failed"] == 1 and report["scheduled"] == 1  # retried later
    assert "HTTP 409" in report["errors"][0]
    notes_before = len(fakecrm.app.state.notes)
    retried = invoke("runs", "retry", report["run_id"])
    assert retried.exit_code == 0, retried.output
    assert len(fakecrm.app.state.notes) == notes_before  # the note was not sent twice
    assert fakecrm.app.state.tags["c0001"] == ["noted", "n1"]
    assert invoke("runs", "retry", report["run_id"]).stdout.strip() == "nothing to retry"


def test_dry_run_sends_nothing_and_changes_nothing(fakecrm, splice_home):
    result = invoke("run", RECIPE, "--dry-run", "--backfill", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["requests"]) == 50
    first = report["requests"][0]
    assert first["method"] == "POST" and first["url"].endswith("/notes")
    assert first["json"]["subject"] == "New contact Contact 1"
    assert first["headers"]["Idempotency-Key"] == "<idempotency-key>"
    assert report["requests"][1]["json"]["tags"] == ["noted", "<steps.note.id>"]
    assert fakecrm.posts() == []
    assert json.loads(invoke("run", RECIPE, "--json").stdout)["seeded"] == 25


def test_secrets_absent_from_connections_list_logs_and_run_records(fakecrm, splice_home):
    from .fakeapi import TOKEN

    listing = invoke("connections", "list", "--json")
    assert TOKEN not in listing.output and "crm" in listing.output
    verbose = invoke("--verbose", "run", RECIPE, "--backfill")
    assert TOKEN not in verbose.output
    db = sqlite3.connect(splice_home / "splice.db")
    for table in ("runs", "events", "step_results", "connections"):
        for row in db.execute(f"SELECT * FROM {table}"):
            assert TOKEN not in repr(row)
    assert TOKEN.encode() not in (splice_home / "splice.db").read_bytes()


def test_splice_test_shows_fields_next_to_their_templates_and_sends_nothing(fakecrm):
    result = invoke("test", RECIPE, "--live", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"] == "live" and report["event"]["id"] == "c0001"
    note = report["steps"][0]
    assert {"field": "zip", "from": "{{ trigger.zip }}", "value": "00001"} in note["fields"]
    assert note["request"]["method"] == "POST"
    assert fakecrm.posts() == []
    human = invoke("test", RECIPE, "--live")
    assert "mapped from" in human.stdout and "nothing was sent" in human.stdout


def test_splice_test_catches_a_wrong_type_with_the_recipe_line(fakecrm, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "notes.yaml").read_text().replace(
        'zip: "{{ trigger.zip }}"', 'score: "{{ trigger.zip }}x"'))
    result = invoke("test", str(bad), "--live", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["steps"][0]["error"]
    assert f"{bad}:12:14: steps[0].with.score: expected an integer, got a string" in error
    assert fakecrm.posts() == []


def test_runs_list_and_show_describe_what_happened(fakecrm):
    report = json.loads(invoke("run", RECIPE, "--backfill", "--json").stdout)
    runs = json.loads(invoke("runs", "list", "--json").stdout)
    assert runs[0]["id"] == report["run_id"] and runs[0]["status"] == "succeeded"
    assert runs[0]["events_new"] == 25
    shown = json.loads(invoke("runs", "show", report["run_id"], "--json").stdout)
    assert len(shown["events"]) == 25 and len(shown["steps"]) == 50
    assert shown["steps"][0]["request"]["method"] == "POST"
    assert "Authorization" not in json.dumps(shown["steps"][0]["request"]["headers"])
    human = invoke("runs", "show", report["run_id"])
    assert "step note: succeeded POST" in human.stdout
    assert invoke("runs", "show", "nope").exit_code == 2


def test_watch_polls_until_interrupted(fakecrm, monkeypatch):
    import time as time_module

    calls = []

    def fake_sleep(seconds):
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time_module, "sleep", fake_sleep)
    result = invoke("run", RECIPE, "--watch")
    assert result.exit_code == 0, result.output
    assert calls == [300.0, 300.0]
    assert result.stdout.count("record(s) seen") == 2
    assert "stopped" in result.stderr


def test_dry_run_and_test_give_for_each_steps_the_full_loop(fakecrm, tmp_path):
    recipe = tmp_path / "loop.yaml"
    recipe.write_text((FIXTURES / "notes.yaml").read_text().replace(
        '''  - use: fakecrm.add_tags
    connection: crm
    with:''', '''  - use: fakecrm.add_tags
    connection: crm
    for_each: "{{ ['a', 'b'] }}"
    with:
      contact_id: "{{ trigger.id }}-{{ loop.index0 }}-of-{{ loop.length }}"''').replace(
        '''      contact_id: "{{ trigger.id }}"\n''', ""))
    dry = json.loads(invoke("run", str(recipe), "--dry-run", "--backfill", "--json").stdout)
    assert dry["errors"] == []
    assert dry["requests"][2]["url"].endswith("/contacts/c0001-1-of-2/tags")
    trial = json.loads(invoke("test", str(recipe), "--live", "--json").stdout)
    assert trial["ok"] and trial["steps"][2]["request"]["url"].endswith("/c0001-1-of-2/tags")

"""A recipe's state belongs to its id: a copy starts fresh, `--backfill` says what it does,
`--reset` re-runs history, two files sharing an id are warned about, and state an older
splice kept under the recipe's name is adopted."""

from __future__ import annotations

import json
from pathlib import Path

from splice.model.recipe import default_recipe_id, load_recipe

from .conftest import FIXTURES, invoke

RECIPE = str(FIXTURES / "notes.yaml")


def test_the_default_id_follows_the_file_and_an_explicit_id_wins(tmp_path: Path) -> None:
    copy = tmp_path / "notes.yaml"
    copy.write_text((FIXTURES / "notes.yaml").read_text())
    assert load_recipe(RECIPE).id == default_recipe_id(RECIPE)
    assert load_recipe(copy).id != load_recipe(RECIPE).id  # same name, other state
    assert load_recipe(copy).id.startswith("notes-")
    copy.write_text("id: crm-notes\n" + copy.read_text())
    assert load_recipe(copy).id == "crm-notes"


def test_a_copy_of_a_recipe_backfills_on_its_own_state(fakecrm, tmp_path: Path) -> None:
    assert invoke("run", RECIPE).exit_code == 0  # the original remembers the 25 contacts
    copy = tmp_path / "my-notes.yaml"
    copy.write_text((FIXTURES / "notes.yaml").read_text())
    report = json.loads(invoke("run", str(copy), "--backfill", "--json").stdout)
    assert report["events_new"] == 25 and report["events_succeeded"] == 25
    assert len(fakecrm.app.state.notes) == 25
    # its writes carry keys of their own (an API that honours them did not drop them)
    keys = {entry[3] for entry in fakecrm.posts()}
    assert len(keys) == 50


def test_backfill_on_a_trigger_with_state_refuses_and_names_the_command(fakecrm) -> None:
    assert invoke("run", RECIPE).exit_code == 0
    refused = invoke("run", RECIPE, "--backfill")
    assert refused.exit_code == 2
    assert "only applies to a recipe's first run" in refused.stderr
    assert "25 record(s) seen" in refused.stderr
    assert f"splice run {RECIPE} --backfill --reset" in refused.stderr
    assert fakecrm.posts() == []
    redone = invoke("run", RECIPE, "--backfill", "--reset")
    assert redone.exit_code == 0, redone.output
    assert "reset: forgot 25 seen record(s)" in redone.stdout
    assert len(fakecrm.app.state.notes) == 25
    reset_only = invoke("run", RECIPE, "--reset")
    assert reset_only.exit_code == 0 and "remembered 25 existing record(s)" in reset_only.stdout
    assert len(fakecrm.app.state.notes) == 25


def test_two_files_sharing_an_id_are_warned_about(fakecrm, tmp_path: Path) -> None:
    text = "id: shared-notes\n" + (FIXTURES / "notes.yaml").read_text()
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(text)
    second.write_text(text)
    assert invoke("run", str(first)).exit_code == 0
    assert "shares the recipe id" not in invoke("run", str(first)).stderr
    shared = invoke("run", str(second))
    assert shared.exit_code == 0
    assert "shares the recipe id 'shared-notes'" in shared.stderr and str(first) in shared.stderr


def test_state_an_older_splice_kept_under_the_name_is_adopted(fakecrm) -> None:
    """An upgrade neither refires history nor forgets it: the name-keyed state moves."""
    store = fakecrm.store
    name = load_recipe(RECIPE).name
    trigger = "fakecrm.contact_updated"
    keys = [f"c{i:04d}@{c['updated_at']}"
            for i, c in enumerate(fakecrm.app.state.contacts, start=1)]
    store.add_seen(name, trigger, keys)
    store.mark_initialized(name, trigger)
    fakecrm.app.state.contacts[0]["updated_at"] = "2026-07-01T00:00:00Z"
    report = json.loads(invoke("run", RECIPE, "--json").stdout)
    assert report["seeded"] == 0 and report["events_new"] == 1
    assert [p[1] for p in fakecrm.posts()] == ["/notes", "/contacts/c0001/tags"]
    assert not store.trigger_initialized(name, trigger)
    assert store.trigger_initialized(load_recipe(RECIPE).id, trigger)

"""The builder model: round-trips with comments, the fields a step may read, one field checked
by validate's checker, dynamic options from the sandboxes, save + register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splice.builder.check import check_field, check_recipe
from splice.builder.document import comment_notice, read_data, write_text
from splice.builder.fields import available_fields
from splice.builder.options import field_options, option_fields
from splice.builder.preview import preview
from splice.builder.save import open_recipe, save_recipe
from splice.errors import ConfigError, DocumentError, InputError
from splice.plugins import get_registry
from splice.store import registry as reg
from splice.web.builder_form import data_to_form, form_to_data

from .conftest import ROOT, invoke
from .test_verify import world  # noqa: F401 - the fixture: both sandboxes, both connections

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
TAGS = ROOT / "recipes" / "ghl_tags_to_invoice2go.yaml"


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_seed_recipe_round_trips_through_the_builder_byte_for_byte(path: Path) -> None:
    text = path.read_text()
    data = read_data(text, str(path))
    again = form_to_data(get_registry(), data_to_form(data))  # what the page posts back
    assert again == data
    assert write_text(again, text, str(path)) == text


def test_an_edit_keeps_every_comment_and_changes_only_that_value() -> None:
    text = TAGS.read_text()
    data = read_data(text, str(TAGS))
    data["steps"][3]["with"]["tags"] = ["{{ trigger.tag | slug }}"]
    data["steps"].append({"use": "invoice2go.get_account", "connection": "my-invoice2go"})
    out = write_text(data, text, str(TAGS))
    assert read_data(out, "x.yaml") == data
    old = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    new = [line for line in out.splitlines() if line.lstrip().startswith("#")]
    assert old == new and len(old) > 25
    changed = [line for line in out.splitlines() if line not in text.splitlines()]
    assert changed == ['        - "{{ trigger.tag | slug }}"', "  - use: invoice2go.get_account"]
    assert out.endswith("  - use: invoice2go.get_account\n    connection: my-invoice2go\n")


def test_a_new_recipe_is_written_in_the_usual_order_and_json_stays_json() -> None:
    data = {"steps": [{"with": {"name": "{{ trigger.tag }}"}, "use": "invoice2go.create_client"}],
            "trigger": {"connection": "my-highlevel", "use": "ghl_users.tag_updated"},
            "name": "New"}
    out = write_text(data)
    assert out.splitlines()[0] == "name: New"
    assert '      name: "{{ trigger.tag }}"' in out
    assert out.index("use: invoice2go.create_client") < out.index("with:")
    assert read_data(out, "x.yaml") == data
    assert read_data(write_text(data, "{}", "x.json"), "x.json") == data
    assert comment_notice('name: "unclosed\n', "r.yaml") is not None
    assert comment_notice(TAGS.read_text(), str(TAGS)) is None
    with pytest.raises(InputError):
        write_text([1, 2])  # type: ignore[arg-type]


def test_fields_a_step_may_read() -> None:
    data = read_data(TAGS.read_text(), str(TAGS))
    registry = get_registry()
    first = {f.path: f.type for f in available_fields(registry, data, 0)}
    assert first["trigger.tag"] == "string" and first["trigger._id"] == "string"
    assert not any(p.startswith("steps.") for p in first)
    assert first["recipe.vars.tag_prefix"] == "string"
    last = {f.path for f in available_fields(registry, data, 3)}
    assert {"steps.details.records[0].tag", "steps.clients.records[0].name",
            "steps.clients.count"} <= last
    data["steps"][3]["for_each"] = "{{ steps.clients.records }}"
    item = {f.path for f in available_fields(registry, data, 3) if f.group == "item"}
    assert {"item.id", "item.name", "item.tags"} <= item


def test_one_field_is_checked_with_validates_checker() -> None:
    data = read_data(TAGS.read_text(), str(TAGS))
    registry = get_registry()
    where = ("steps", 0, "with", "tagIds")
    assert check_field(registry, None, data, where, ["{{ trigger._id }}"]) == []
    [problem] = check_field(registry, None, data, where, ["{{ trigger.idd }}"])
    assert problem.startswith("steps[0].with.tagIds[0]: 'trigger.idd' does not exist in the "
                              "trigger's output schema")
    assert "unknown filter 'slugg'" in check_field(registry, None, data, where,
                                                   ["{{ trigger.tag | slugg }}"])[0]
    assert check_field(registry, None, data, ("steps", 9, "with", "x"), "1") == [
        "steps[9].with.x: no such field in this recipe"]
    assert check_recipe(registry, None, data) == []


def test_dynamic_options_are_real_records_of_the_connection(world: Any) -> None:  # noqa: F811
    sandboxes, store = world
    registry = get_registry()
    assert option_fields(registry, "invoice2go.list_invoices")["client_id"] == \
        "invoice2go.list_clients"
    assert option_fields(registry, "ghl_users.get_tag_details")["tagIds"] == \
        "ghl_users.list_tags"
    clients = field_options(registry, store, "invoice2go.list_invoices", "client_id",
                            "my-invoice2go")
    state = sandboxes.state("invoice2go")
    assert {(o.value, o.label) for o in clients} == {
        (c["id"], c["name"]) for c in state["clients"] if c["account_id"] == "24379237"}
    invoices = field_options(registry, store, "invoice2go.add_invoice_tags", "invoice_id",
                             "my-invoice2go")
    assert {o.value for o in invoices} == {i["id"] for i in state["invoices"]}
    tags = field_options(registry, store, "ghl_users.get_tag_details", "tagIds", "my-highlevel")
    assert tags and all(o.label and o.value for o in tags)
    with pytest.raises(ConfigError, match="lists no choices for 'tags'"):
        field_options(registry, store, "invoice2go.add_invoice_tags", "tags", "my-invoice2go")


def test_preview_reads_for_real_and_writes_nothing(world: Any) -> None:  # noqa: F811
    sandboxes, store = world
    data = read_data(TAGS.read_text(), str(TAGS))
    before = sandboxes.state("invoice2go")
    event, steps = preview(get_registry(), store, data)
    assert event["tag"]
    # get_tag_details reads by POST: only GETs are sent, so it is rendered, not sent
    assert [s.status for s in steps][:2] == ["rendered", "sent"]
    assert steps[1].output["count"] == len([c for c in before["clients"]
                                           if c["account_id"] == "24379237"])
    after = sandboxes.state("invoice2go")
    assert {k: v for k, v in after.items() if k != "now"} == \
        {k: v for k, v in before.items() if k != "now"}


def test_save_validates_writes_and_registers(world: Any, tmp_path: Path) -> None:  # noqa: F811
    _sandboxes, store = world
    registry = get_registry()
    data = {"name": "Clients from tags", "trigger": {"use": "ghl_users.tag_updated",
                                                      "connection": "my-highlevel"},
            "steps": [{"use": "invoice2go.create_client", "connection": "my-invoice2go",
                       "with": {"name": "{{ trigger.tag }}"}}]}
    saved = save_recipe(registry, store, data)
    assert saved.created and not saved.enabled
    assert Path(saved.path).parent.name == "recipes"
    assert reg.get(store, saved.id).path == saved.path
    assert invoke("validate", saved.path).exit_code == 0
    assert open_recipe(saved.path)[0] == data
    again = save_recipe(registry, store, data)  # a second new recipe: a file of its own
    assert again.path != saved.path
    bad = {**data, "steps": [{**data["steps"][0], "with": {"name": "{{ trigger.nope }}"}}]}
    with pytest.raises(DocumentError) as caught:
        save_recipe(registry, store, bad, path=saved.path)
    assert "'trigger.nope' does not exist" in str(caught.value)
    assert open_recipe(saved.path)[0] == data  # the file was not touched
    reg.update(store, saved.id, enabled=True)
    edited = save_recipe(registry, store, {**data, "name": "Renamed"}, path=saved.path)
    assert edited.enabled and not edited.created and reg.get(store, saved.id).name == "Renamed"

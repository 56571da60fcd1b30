"""Output for people and for pipes: tables fit 80 columns on a terminal and fold (never cut)
long values; piped output is plain and whole; `runs show` groups each event's steps with
their inputs and outputs, secrets redacted."""

from __future__ import annotations

import json

from rich.console import Console

from splice.cli.tables import Column, print_table

from .conftest import FIXTURES, invoke
from .fakeapi import TOKEN

RECIPE = str(FIXTURES / "notes.yaml")
LONG_URL = "http://127.0.0.1:43210/a/very/long/base/path/for/a/sandbox/" + "x" * 70


def test_a_terminal_table_fits_80_columns_and_folds_long_values_whole() -> None:
    console = Console(width=80, force_terminal=True, record=True, color_system=None)
    print_table([Column("name", fixed=True), Column("base URL")],
                [["my-highlevel-connection-for-the-agency", LONG_URL]], console=console)
    lines = console.export_text().rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in "".join(lines)
    start = lines[0].index("base URL")
    assert "".join(line[start:].strip() for line in lines[1:]) == LONG_URL
    assert "my-highlevel-connection-for-the-agency" in lines[1]


def test_piped_tables_are_plain_and_whole(fakecrm) -> None:
    from splice.store.database import Store

    with Store.open() as store:
        store.put_connection("my-highlevel-connection-for-the-agency", connector="fakecrm",
                             auth_type="bearer", base_url=LONG_URL, config={},
                             secret={"token": TOKEN})
    listed = invoke("connections", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines()
               if line.startswith("my-highlevel-connection-for-the-agency "))
    assert LONG_URL in row and "…" not in listed.stdout  # grep finds it, whole
    tsv = invoke("connections", "list", "--tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:3] == ["name", "connector", "status"]
    assert any(line.split("\t")[-1] == LONG_URL for line in tsv)
    report = json.loads(invoke("run", RECIPE, "--backfill", "--json").stdout)
    runs = invoke("runs", "list").stdout
    assert report["run_id"] in runs  # the whole id when piped
    assert TOKEN not in listed.stdout + runs


def test_runs_show_groups_steps_under_their_event_with_inputs_and_outputs(fakecrm) -> None:
    report = json.loads(invoke("run", RECIPE, "--backfill", "--json").stdout)
    shown = invoke("runs", "show", report["run_id"]).stdout.splitlines()
    first = next(i for i, line in enumerate(shown) if line.startswith("  event ")
                 and " c0001@" in line)
    block = shown[first:first + 7]
    assert block[0].endswith(": succeeded (attempts 1)")
    assert block[1].startswith("    step note: succeeded POST http://127.0.0.1:")
    assert block[2].startswith("      input:  {") and '"subject": "New contact Contact 1"' \
        in block[2]
    assert block[3].startswith("      output: {") and '"id": "n1"' in block[3]
    assert block[4].startswith("    step 1: succeeded POST ") and "/contacts/c0001/tags" \
        in block[4]
    assert '"tags": ["noted", "n1"]' in block[5]
    assert shown[first + 7].startswith("  event ")  # the next event's block
    assert TOKEN not in "\n".join(shown)
    data = json.loads(invoke("runs", "show", report["run_id"], "--json").stdout)
    event = data["events"][0]
    assert [s["step"] for s in event["steps"]] == ["note", 1]
    assert event["steps"][0]["output"]["id"] == "n1"
    assert "Authorization" not in json.dumps(data) or "[redacted]" in json.dumps(data)
    assert TOKEN not in json.dumps(data)

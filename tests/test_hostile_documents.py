"""Hostile recipe and manifest files: every one is a located one-line error, fast and small.

Each bomb is loaded in process (``parse_document``/``load_document``) and through the real CLI
(``splice validate`` in its own process, capped at 1 GiB): exit 2, one ``error:`` line with
``file:line:column``, under 2 s and 200 MB including the interpreter's start.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from splice.errors import DocumentError
from splice.model.documents import (
    _SCAN_ABOVE,
    Limits,
    _node_bound,
    load_document,
    parse_document,
)
from splice.model.manifest import load_manifest
from splice.model.recipe import load_recipe

from .conftest import FIXTURES
from .hostile import measure

ALIAS_BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n"
    for i in range(8))  # 9 levels x 9 references: 387 million values once expanded

# name -> (file name, text, expected message, position)
BOMBS: dict[str, tuple[str, str | bytes, str, str]] = {
    "alias bomb": ("r.yaml", ALIAS_BOMB, "an alias expands the document past 200,000 values",
                   "6:11"),  # the first alias whose expansion passes the bound
    "huge list": ("r.yaml", "[" + ",".join(["0"] * 300_000) + "]",
                  "holds more than 200,000 values", "1:400000"),
    "huge file": ("r.yaml", "x" * 5_000_001, "larger than 5,000,000 bytes", "1:1"),
    "JSON nested 10,000 deep": ("r.json", "[" * 10_000 + "]" * 10_000,
                                "nested more than 100 levels deep", "1:1001"),
    "YAML nested 150 deep": ("r.yaml", "".join(" " * i + "- \n" for i in range(150)),
                             "nested more than 100 levels deep", "102:102"),
    "NUL": ("r.yaml", "name: a\x00b\n", "a control character (U+0000) is not allowed", "1:8"),
    "C1 control": ("r.yaml", "name: ok\ntrigger: a\x80b\n",
                   "a control character (U+0080) is not allowed", "2:11"),
    "list key": ("r.yaml", "name: x\n? [1, 2]\n: 3\n", "a mapping key must be text, not a list",
                 "2:3"),
    "mapping key": ("r.yaml", "name: x\n{a: 1}: 3\n", "a mapping key must be text, not a "
                    "mapping", "2:1"),
    "null key": ("r.yaml", "name: x\n~: 3\n", "a mapping key must be text, not null", "2:1"),
    "not UTF-8": ("r.yaml", b"name: caf\xe9\n", "not UTF-8 text", "1:10"),
}


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(BOMBS))
def test_loader_refuses_with_a_located_error(case, tmp_path):
    name, text, message, position = BOMBS[case]
    path = _write(tmp_path, name, text)
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        load_document(path)
    assert time.monotonic() - started < 2.0
    problem = str(caught.value)
    assert "\n" not in problem
    assert problem.startswith(f"{path}:{position}: "), problem
    assert message in problem
    if isinstance(text, str) and len(text) <= 5_000_000:
        with pytest.raises(DocumentError, match=re.escape(message)):
            parse_document(text, name)


@pytest.mark.parametrize("case", ["alias bomb", "huge list", "JSON nested 10,000 deep", "NUL",
                                  "list key", "null key"])
def test_validate_refuses_each_bomb_in_under_2s_and_200mb(case, tmp_path):
    name, text, message, position = BOMBS[case]
    path = _write(tmp_path, name, text)
    result = measure("validate", "--skip-connections", str(path))
    assert result.code == 2, result.stderr
    assert result.errors == [f"error: {path}:{position}: " + result.errors[0].split(
        f"{position}: ", 1)[1]], result.stderr
    assert message in result.errors[0]
    assert "Traceback" not in result.stderr
    assert result.cpu < 2.0 and result.seconds < 10, result  # CPU: the machine is shared
    assert result.rss_mb < 200, result


def test_a_50mb_recipe_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as fh:
        fh.write("name: big\nsteps:\n")
        chunk = "  - 0\n" * 100_000
        while fh.tell() < 50_000_000:
            fh.write(chunk)
    result = measure("validate", "--skip-connections", str(path))
    assert result.code == 2
    assert result.errors == [f"error: {path}:1:1: the file is larger than 5,000,000 bytes "
                             "(limit: SPLICE_MAX_DOCUMENT_BYTES)"]
    assert result.cpu < 2.0 and result.seconds < 10 and result.rss_mb < 200, result


@pytest.mark.parametrize("case", ["alias bomb", "YAML nested 150 deep", "list key", "NUL"])
def test_a_long_document_is_refused_as_a_short_one(case):
    """Over 64 KB a document is counted before it is composed unless its characters bound
    its values within the limit; a bounded one meets the same refusals as a short text."""
    name, text, message, position = BOMBS[case]
    padded = text + "#" + "x" * 70_000 + "\n"
    assert len(padded) > _SCAN_ABOVE and _node_bound(padded) <= Limits().max_nodes
    with pytest.raises(DocumentError) as caught:
        parse_document(padded, name)
    assert str(caught.value).startswith(f"{name}:{position}: ") and message in str(caught.value)


def test_a_long_document_over_its_bound_is_counted_before_composing():
    text = "k: [" + ",".join(["1"] * 40_000) + "]\n"  # 80 KB, bound 120,001 values
    limits = Limits(max_nodes=30_000)
    assert len(text) > _SCAN_ABOVE and _node_bound(text) > limits.max_nodes
    with pytest.raises(DocumentError) as caught:
        parse_document(text, "r.yaml", limits)
    # the event count's position (it counts the key too): the 30,001st value is item 29,998
    assert str(caught.value) == ("r.yaml:1:59999: the document holds more than 30,000 values "
                                 "(limit: SPLICE_MAX_DOCUMENT_NODES)")
    assert parse_document(text, "r.yaml", Limits(max_nodes=40_003)).data["k"][-1] == 1


def test_limits_have_overrides(monkeypatch, tmp_path):
    text = "[" + ",".join(["1"] * 50) + "]"
    monkeypatch.setenv("SPLICE_MAX_DOCUMENT_NODES", "20")
    with pytest.raises(DocumentError, match="more than 20 values"):
        parse_document(text, "r.yaml")
    monkeypatch.setenv("SPLICE_MAX_DOCUMENT_NODES", "not a number")  # ignored: the default
    assert len(parse_document(text, "r.yaml").data) == 50
    assert Limits.from_env() == Limits()
    monkeypatch.setenv("SPLICE_MAX_DOCUMENT_DEPTH", "3")
    with pytest.raises(DocumentError, match="nested more than 3 levels deep"):
        parse_document("a: {b: {c: {d: 1}}}", "r.yaml")
    monkeypatch.setenv("SPLICE_MAX_DOCUMENT_BYTES", "10")
    with pytest.raises(DocumentError, match="larger than 10 bytes"):
        load_document(_write(tmp_path, "r.yaml", "name: more than ten bytes"))


def test_aliases_within_the_limits_still_work():
    doc = parse_document("base: &b {x: 1, y: [1, 2]}\nc:\n  <<: *b\n  y: 3\nd: *b\n", "r.yaml")
    assert doc.data == {"base": {"x": 1, "y": [1, 2]}, "c": {"x": 1, "y": 3},
                        "d": {"x": 1, "y": [1, 2]}}
    assert doc.where(("d", "y")) == (1, 20)  # an alias's values point at the anchor's text


def test_scalar_keys_are_text():
    assert parse_document("1: a\ntrue: b\n2024-01-01: c\n", "r.yaml").data == {
        "1": "a", "true": "b", "2024-01-01": "c"}


def test_manifest_paths_that_climb_out_are_refused_at_load(tmp_path):
    manifest = (FIXTURES / "fakecrm.yaml").read_text()
    bad = _write(tmp_path, "m.yaml", manifest.replace("path: /notes", "path: /../../admin")
                 .replace("path: /contacts/{contact_id}/tags",
                          "path: /contacts/%2e%2E/{contact_id}"))
    with pytest.raises(DocumentError) as caught:
        load_manifest(bad)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{bad}:") and "operations.create_note.path: the path has a '.' "
               "or '..' segment" in p for p in problems), problems
    assert any("operations.add_tags.path" in p for p in problems), problems


def test_a_plugin_manifest_that_climbs_out_is_skipped_with_its_position(tmp_path):
    from splice import hookimpl

    from .conftest import invoke, register_test_plugin

    bad = _write(tmp_path, "m.yaml", (FIXTURES / "fakecrm.yaml").read_text().replace(
        "path: /notes", "path: /../../admin"))

    class Plugin:
        @hookimpl
        def register_connectors(self, register):
            register(bad)

    register_test_plugin(Plugin(), "climbing-plugin")
    listed = invoke("connectors", "list")
    assert listed.exit_code == 0
    assert f"{bad}:43:11: operations.create_note.path: the path has a '.' or '..' segment" \
        in " ".join(listed.stderr.split())


@pytest.mark.parametrize("change,message", [
    (("page_size: 10", "page_size: 1.0e+21"), "pagination.page_size: must be <= 10000"),
    (("page_size: 10", "page_size: 10, max_pages: 0"), "max_pages: must be >= 1"),
    (("auth: {type: bearer}", "auth: {type: bearer}\ntimeouts: {read: 1.0e+9}"),
     "timeouts.read: must be <= 600"),
    (("auth: {type: bearer}", "auth: {type: bearer}\nrate_limits: [{limit: 1, per: 99999d}]"),
     "rate_limits[0].per: a rate-limit window must be at most 31 days"),
])
def test_manifest_numbers_have_sane_ranges(tmp_path, change, message):
    text = (FIXTURES / "fakecrm.yaml").read_text().replace(*change)
    with pytest.raises(DocumentError, match=re.escape(message)):
        load_manifest(_write(tmp_path, "m.yaml", text))


@pytest.mark.parametrize("every,message", [
    ("99999999999999d", "trigger.every: does not match the pattern"),
    ("'0s'", "trigger.every: the poll interval must be between 1 second and 31 days"),
    ("99999d", "trigger.every: the poll interval must be between 1 second and 31 days"),
    ("999999999", "trigger.every: must be <= 2678400"),
])
def test_recipe_intervals_have_sane_ranges(tmp_path, every, message):
    text = (FIXTURES / "notes.yaml").read_text().replace(
        "  connection: crm\nsteps", f"  connection: crm\n  every: {every}\nsteps", 1)
    with pytest.raises(DocumentError, match=re.escape(message)):
        load_recipe(_write(tmp_path, "r.yaml", text))


def test_json_recipes_get_positions_too(tmp_path):
    path = _write(tmp_path, "r.json", json.dumps({"name": "x", "trigger": {"use": "a.b"},
                                                 "steps": [{"use": "a.c", "for_each": 5}]}))
    with pytest.raises(DocumentError) as caught:
        load_recipe(path)
    assert str(caught.value).startswith(f"{path}:1:")

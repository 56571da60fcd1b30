"""YAML documents are built straight from the parsed nodes: the data is what PyYAML's safe
loader gives, for every YAML file splice ships and for the corners of YAML 1.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from splice.errors import DocumentError
from splice.model.documents import parse_document

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("connectors/*/*.yaml"), *ROOT.glob("recipes/*.yaml"),
                  ROOT / "bench/connector.yaml", ROOT / "bench/recipe.yaml"])

CORNERS = """\
plain: text
quoted: "yes"
yes_bool: yes
off_bool: off
int: 012
hex: 0x1F
float: 1.5e3
inf: .inf
null_value: ~
empty:
date: 2026-05-01
stamp: 2026-05-01T10:00:00Z
200: an int key
1.5: a float key
base: &base {a: 1, b: [x, y]}
merged:
  <<: *base
  b: overridden
alias: *base
list_alias: &items [1, 2]
again: *items
set: !!set {p, q}
binary: !!binary aGVsbG8=
ordered: !!omap [{k: 1}]
nested: [{a: [b, {c: d}]}, [], {}]
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_yaml_loads_as_the_safe_loader_does(path: Path) -> None:
    text = path.read_text()
    assert parse_document(text, str(path)).data == yaml.load(text, Loader=yaml.SafeLoader)


def test_yaml_corners_load_as_the_safe_loader_does() -> None:
    data = parse_document(CORNERS, "corners.yaml").data
    assert data == yaml.load(CORNERS, Loader=yaml.SafeLoader)
    assert data["alias"] is data["base"] and data["again"] is data["list_alias"]
    assert data["merged"] == {"a": 1, "b": "overridden"}
    assert data["quoted"] == "yes" and data["yes_bool"] is True and data[200] == "an int key"


@pytest.mark.parametrize("text,line", [
    ("a: 1\nb: 2\na: 3\n", 3),
    ("top:\n  x: 1\n  x: 2\n", 3),
    ("- {k: 1, k: 2}\n", 1),
    ("200: a\n0xC8: b\n", 2),  # the same int key written twice
])
def test_duplicate_keys_are_refused_with_their_line(text: str, line: int) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(text, "dup.yaml")
    problem = caught.value.problems[0]
    assert problem.line == line and "duplicate key" in problem.message

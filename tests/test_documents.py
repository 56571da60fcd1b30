"""YAML documents are built straight from the parsed nodes: the data is what splice's loader
(PyYAML's safe loader with text keys) constructs, for every YAML file splice ships and for the
corners of YAML 1.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from splice.errors import DocumentError
from splice.model.documents import Limits, _Loader, parse_document

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("connectors/*/*.yaml"), *ROOT.glob("recipes/*.yaml"),
                  ROOT / "bench/connector.yaml", ROOT / "bench/recipe.yaml"])



def constructed(text: str) -> object:
    """The data the loader's constructor gives (the reference for the direct build)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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
def test_shipped_yaml_loads_as_the_constructor_does(path: Path) -> None:
    text = path.read_text()
    assert parse_document(text, str(path)).data == constructed(text)


def test_yaml_corners_load_as_the_constructor_does() -> None:
    data = parse_document(CORNERS, "corners.yaml").data
    assert data == constructed(CORNERS)
    assert data["alias"] is data["base"] and data["again"] is data["list_alias"]
    assert data["merged"] == {"a": 1, "b": "overridden"}
    assert data["quoted"] == "yes" and data["yes_bool"] is True and data["200"] == "an int key"


@pytest.mark.parametrize("text,line", [
    ("a: 1\nb: 2\na: 3\n", 3),
    ("top:\n  x: 1\n  x: 2\n", 3),
    ("- {k: 1, k: 2}\n", 1),
    ("200: a\n'200': b\n", 2),  # keys are text: 200 and '200' are the same key
])
def test_duplicate_keys_are_refused_with_their_line(text: str, line: int) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(text, "dup.yaml")
    problem = caught.value.problems[0]
    assert problem.line == line and "duplicate key" in problem.message


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    """Composing pauses the cyclic collector; it is on again afterwards, also after a refusal,
    and stays off where the process had turned it off."""
    import gc

    text = (ROOT / "connectors/invoice2go/manifest.yaml").read_text()
    assert gc.isenabled()
    assert parse_document(text, "m.yaml").data["id"] == "invoice2go"
    assert gc.isenabled()
    with pytest.raises(DocumentError):
        parse_document("a: &a [x, x]\nb: [*a, *a, *a]\n" + "c: {d: *a}\n", "m.yaml",
                       Limits(max_nodes=5))
    assert gc.isenabled()
    gc.disable()
    try:
        parse_document(text, "m.yaml")
        assert not gc.isenabled()
    finally:
        gc.enable()

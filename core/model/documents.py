"""Load YAML or JSON documents while remembering where every value came from.

``load_document(path)`` returns a :class:`Document`: the plain data plus a map from each JSON path
(a tuple of keys and indices) to its ``(line, column)``, 1-based, so every later check can report
``file:line:column``. JSON files are parsed by :mod:`json` first (for its precise syntax errors)
and positioned through the YAML composer, which reads JSON too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DocumentError, Problem

JsonPath = tuple[str | int, ...]


@dataclass
class Document:
    """Parsed data plus source positions (collected from the parsed nodes on first use: a
    document without problems never needs them)."""

    path: str
    data: Any
    _positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)
    _key_positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)
    _root: yaml.Node | None = field(default=None, repr=False)

    @property
    def positions(self) -> dict[JsonPath, tuple[int, int]]:
        """JSON path -> (line, column) of each value."""
        self._collect()
        return self._positions

    @property
    def key_positions(self) -> dict[JsonPath, tuple[int, int]]:
        """JSON path -> (line, column) of each mapping key."""
        self._collect()
        return self._key_positions

    def _collect(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            _walk(root, (), self._positions, self._key_positions)

    def where(self, path: Iterable[str | int], *, key: bool = False) -> tuple[int, int]:
        """Position of the value at ``path`` (or of its key), else of the nearest ancestor."""
        p = tuple(path)
        while True:
            if key and p in self.key_positions:
                return self.key_positions[p]
            if p in self.positions:
                return self.positions[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def problem(self, path: Iterable[str | int], message: str, *, key: bool = False) -> Problem:
        p = tuple(path)
        line, col = self.where(p, key=key)
        return Problem(self.path, line, col, format_path(p), message)


def format_path(path: Iterable[str | int]) -> str:
    """``('steps', 0, 'with', 'email')`` -> ``steps[0].with.email``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += part if not out else f".{part}"
    return out


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses duplicate keys (a silent overwrite hides mistakes)."""


_STR = "tag:yaml.org,2002:str"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges are allowed; explicit keys override them
        # a string key is its scalar's text (what constructing it would give)
        key = key_node.value if key_node.tag == _STR and isinstance(key_node, yaml.ScalarNode) \
            else loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first defined on line "
                f"{seen[key].start_mark.line + 1})", key_node.start_mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


def _data(loader: _Loader, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """What ``loader.construct_document(node)`` gives, built straight from the nodes for
    strings, mappings and lists (nearly all of a manifest, ~2x faster than the constructor's
    generic path); any other node (numbers, booleans, dates, ``<<`` merges, tags) goes through
    the loader. Duplicate keys are refused as ``_construct_mapping`` does."""
    kind = type(node)
    if kind is yaml.ScalarNode:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    known = memo.get(id(node))  # an alias: the same object, as the constructor gives
    if known is not None:
        return known
    if kind is yaml.MappingNode and node.tag == _MAP and \
            not any(k.tag == _MERGE for k, _ in node.value):
        out: dict[Any, Any] = {}
        memo[id(node)] = out
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = _data(loader, key_node, memo)
            if isinstance(key, (dict, list)):  # unhashable: the constructor explains it
                return loader.construct_object(node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first defined on line "
                    f"{seen[key].start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
            out[key] = _data(loader, value_node, memo)
        return out
    if kind is yaml.SequenceNode and node.tag == _SEQ:
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_data(loader, item, memo) for item in node.value)
        return items
    return loader.construct_object(node, deep=True)


def _walk(node: yaml.Node, path: JsonPath, positions: dict[JsonPath, tuple[int, int]],
          key_positions: dict[JsonPath, tuple[int, int]]) -> None:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, positions, key_positions)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), positions, key_positions)


def parse_document(text: str, path: str) -> Document:
    """Parse YAML or JSON text; syntax errors become a located :class:`DocumentError`."""
    if path.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError([Problem(path, exc.lineno, exc.colno, "",
                                         f"invalid JSON: {exc.msg}")]) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # one parse: positions and data from the same nodes
        data = _data(loader, node, {}) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        if exc.context and "duplicate" not in what:
            what = f"{exc.context}: {what}"
        raise DocumentError([Problem(path, line, col, "", f"invalid YAML: {what}")]) from None
    finally:
        loader.dispose()
    return Document(path=path, data=data, _root=node)


def load_document(path: str | Path) -> Document:
    """Read and parse a YAML/JSON file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError([Problem(str(path), 1, 1, "", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise DocumentError([Problem(str(path), 1, 1, "",
                                     f"not UTF-8 text ({exc.reason})")]) from None
    return parse_document(text, str(path))

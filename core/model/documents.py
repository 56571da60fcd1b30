"""Load YAML or JSON documents while remembering where every value came from.

``load_document(path)`` returns a :class:`Document`: the plain data plus a map from each JSON path
(a tuple of keys and indices) to its ``(line, column)``, 1-based, so every later check can report
``file:line:column``. JSON files are parsed by :mod:`json` first (for its precise syntax errors)
and positioned through the YAML composer, which reads JSON too.

Hostile input stays harmless: every failure of the reader, scanner, parser, composer or
constructor (a NUL or C1 control character, JSON nested thousands deep, a list, mapping or null
used as a key) is a :class:`~splice.errors.DocumentError` with a position, and a document is
refused before it can cost much time or memory (see :class:`Limits`):

``SPLICE_MAX_DOCUMENT_BYTES``   file size, default 5 MB (5,000,000 bytes)
``SPLICE_MAX_DOCUMENT_NODES``   values (scalars, lists, mappings), default 200,000, counted with
                                every alias expanded: an alias "bomb" is refused at the alias
``SPLICE_MAX_DOCUMENT_DEPTH``   nesting of lists and mappings, default 100

Mapping keys are always text: a scalar key is kept as written (``1:`` is the key ``"1"``).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DocumentError, Problem

JsonPath = tuple[str | int, ...]

MAX_BYTES_ENV = "SPLICE_MAX_DOCUMENT_BYTES"
MAX_NODES_ENV = "SPLICE_MAX_DOCUMENT_NODES"
MAX_DEPTH_ENV = "SPLICE_MAX_DOCUMENT_DEPTH"
# smaller texts cannot hold enough nodes to matter before composing; larger ones are counted
# first (an event pass, ~60 ms a MB) unless a bound from character counts is within the limit
_SCAN_ABOVE = 64_000


@dataclass(frozen=True)
class Limits:
    """How big a document may be; the environment variables above override each default."""

    max_bytes: int = 5_000_000
    max_nodes: int = 200_000
    max_depth: int = 100

    @classmethod
    def from_env(cls) -> Limits:
        def read(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip().replace("_", "")
            return int(raw) if raw.isdigit() and int(raw) > 0 else default

        base = cls()
        return cls(read(MAX_BYTES_ENV, base.max_bytes), read(MAX_NODES_ENV, base.max_nodes),
                   read(MAX_DEPTH_ENV, base.max_depth))


@dataclass
class Document:
    """Parsed data plus source positions."""

    path: str
    data: Any
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    #: the YAML text positions are read from on first use (a document without problems
    #: never pays for them: a 226 KB manifest's positions cost ~100 ms)
    source: str | None = field(default=None, repr=False, compare=False)

    def where(self, path: Iterable[str | int], *, key: bool = False) -> tuple[int, int]:
        """Position of the value at ``path`` (or of its key), else of the nearest ancestor."""
        if self.source is not None:
            text, self.source = self.source, None
            loader = _Loader(text)
            try:
                node = loader.get_single_node()
                if node is not None:  # bounded already: parse_document walked it
                    _walk(node, self, text, Limits(max_bytes=len(text) + 1,
                                                   max_nodes=1 << 62, max_depth=1 << 30))
            finally:
                loader.dispose()
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


def format_path(path: Iterable[Any]) -> str:
    """``('steps', 0, 'with', 'email')`` -> ``steps[0].with.email``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            text = str(part)
            out += text if not out else f".{text}"
    return out


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader whose mapping keys are text, refusing duplicate, null and collection keys."""


def _key_error(message: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, message, node.start_mark)


def _key_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        raise _key_error("a mapping key must be text, not a mapping", node)
    if isinstance(node, yaml.SequenceNode):
        raise _key_error("a mapping key must be text, not a list", node)
    if node.tag == _NULL_TAG:
        raise _key_error("a mapping key must be text, not null", node)
    return str(node.value)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[str, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # `<<: *anchor` merges are allowed; explicit keys override them
        key = _key_of(key_node)
        if key in seen:
            raise _key_error(f"duplicate key '{key}' (first defined on line "
                             f"{seen[key].start_mark.line + 1})", key_node)
        seen[key] = key_node
    loader.flatten_mapping(node)
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        mapping[_key_of(key_node)] = loader.construct_object(value_node, deep=deep)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _data(loader: _Loader, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """What ``loader.construct_document(node)`` gives, built straight from the nodes for
    strings, mappings and lists (nearly all of a manifest, ~2x faster than the constructor's
    generic path); any other node (numbers, booleans, dates, ``<<`` merges, tags) goes through
    the loader. Keys are text and duplicates refused, as ``_construct_mapping`` does."""
    kind = type(node)
    if kind is yaml.ScalarNode:
        return node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
    known = memo.get(id(node))  # an alias: the same object, as the constructor gives
    if known is not None:
        return known
    if kind is yaml.MappingNode and node.tag == _MAP_TAG and \
            not any(k.tag == _MERGE_TAG for k, _ in node.value):
        out: dict[str, Any] = {}
        memo[id(node)] = out
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = _key_of(key_node)
            if key in seen:
                raise _key_error(f"duplicate key '{key}' (first defined on line "
                                 f"{seen[key].start_mark.line + 1})", key_node)
            seen[key] = key_node
            out[key] = _data(loader, value_node, memo)
        return out
    if kind is yaml.SequenceNode and node.tag == _SEQ_TAG:
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_data(loader, item, memo) for item in node.value)
        return items
    return loader.construct_object(node, deep=True)


def _problem(path: str, mark: Any, message: str) -> DocumentError:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return DocumentError([Problem(path, line, col, "", message)])


def _line_col(text: str, index: int) -> tuple[int, int]:
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _scan(text: str, path: str, limits: Limits) -> None:
    """Count values and nesting from the event stream (no objects kept) before composing."""
    nodes = depth = 0
    loader = _Loader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limits.max_depth:
                    raise _problem(path, event.start_mark, _too_deep(limits))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                continue
            elif not isinstance(event, yaml.NodeEvent):
                continue
            nodes += 1
            if nodes > limits.max_nodes:
                raise _problem(path, event.start_mark, _too_many(limits))
    finally:
        loader.dispose()


def _node_bound(text: str) -> int:
    """An upper bound on the values :func:`_scan` would count in ``text`` (every document of
    the stream, an alias counting one), from character counts alone (~2.5 ms a MB).

    Every value is a document's root, a list item, or a mapping key or value. Documents: the
    first, then one per ``---`` marker (libyaml lets only the first document go without one).
    Items of a block list: one ``-`` indicator each (and a marker's dashes are no indicator).
    Items of a flow list: at most its commas plus one, so at most the ``,`` and ``[`` of the
    text. Mapping entries (two values each): a block entry has a ``?`` or ``:`` indicator, as
    has the single-pair mapping inside a flow list (``[a: b]``); a flow mapping has at most
    its commas plus one. Characters inside scalars only raise the bound.
    """
    count = text.count
    commas = count(",")
    return 1 + count("-") + count("[") + commas + \
        2 * (count("?") + count(":") + commas + count("{"))


def _alias_mark(text: str, index: int) -> Any:
    """The mark of the ``index``-th alias (0-based) of the document, in document order."""
    loader = _Loader(text)
    try:
        seen = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                if seen == index:
                    return event.start_mark
                seen += 1
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _too_many(limits: Limits) -> str:
    return (f"the document holds more than {limits.max_nodes:,} values "
            f"(limit: {MAX_NODES_ENV})")


def _too_deep(limits: Limits) -> str:
    return (f"lists and mappings are nested more than {limits.max_depth} levels deep "
            f"(limit: {MAX_DEPTH_ENV})")


def _walk(root: yaml.Node, doc: Document, text: str, limits: Limits, *,
          record: bool = True) -> None:
    """Count values with aliases expanded (iteratively), refusing a document over the
    limits at the alias that crosses them; with ``record``, note every position too."""
    visited: set[int] = set()
    budget = limits.max_nodes
    aliases = 0  # aliases met outside an expansion: the n-th is the n-th alias of the text
    stack: list[tuple[yaml.Node, JsonPath, int, int]] = [(root, (), 0, -1)]
    while stack:
        node, path, depth, alias = stack.pop()
        if alias < 0 and id(node) in visited:
            alias, aliases = aliases, aliases + 1
        budget -= 1
        if budget < 0 or depth > limits.max_depth:
            if alias >= 0:
                mark = _alias_mark(text, alias)
                raise _problem(doc.path, mark, "an alias expands the document past "
                               f"{limits.max_nodes:,} values or {limits.max_depth} levels "
                               f"(limits: {MAX_NODES_ENV}, {MAX_DEPTH_ENV})")
            raise _problem(doc.path, node.start_mark,
                           _too_many(limits) if budget < 0 else _too_deep(limits))
        if alias < 0:
            visited.add(id(node))
        if not record:
            if isinstance(node, yaml.MappingNode):
                stack.extend((v, path, depth + 1, alias) for _, v in reversed(node.value))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((v, path, depth + 1, alias) for v in reversed(node.value))
            continue
        if path not in doc.positions:
            doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        children: list[tuple[yaml.Node, JsonPath, int, int]] = []
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _NULL_TAG:
                    child = (*path, str(key_node.value))
                    doc.key_positions.setdefault(child, (key_node.start_mark.line + 1,
                                                         key_node.start_mark.column + 1))
                else:  # the constructor reports it with its position
                    child = (*path, "?")
                children.append((value_node, child, depth + 1, alias))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i), depth + 1, alias) for i, item in enumerate(node.value)]
        stack.extend(reversed(children))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Compose and build without Python's cyclic garbage collector: they allocate tens of
    thousands of objects that all stay alive (nothing for it to free), and its passes over
    the growing heap cost ~20% of a large manifest's load. The document is bounded before
    anything is composed, so is what the pause lets accumulate; the collector runs again
    after it as before (if it was on)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_document(text: str, path: str, limits: Limits | None = None) -> Document:
    """Parse YAML or JSON text; every problem becomes a located :class:`DocumentError`."""
    limits = limits or Limits.from_env()
    kind = "JSON" if path.endswith(".json") else "YAML"
    if len(text) > limits.max_bytes:
        raise DocumentError([Problem(path, 1, 1, "", _too_big(limits))])
    if path.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError([Problem(path, exc.lineno, exc.colno, "",
                                         f"invalid JSON: {exc.msg}")]) from None
        except RecursionError:
            pass  # too deep for json: the YAML pass below says where
    try:
        if len(text) > _SCAN_ABOVE and _node_bound(text) > limits.max_nodes:
            _scan(text, path, limits)  # composing could hold too many nodes: count them first
        loader = _Loader(text)
        try:
            with _collector_paused():
                node = loader.get_single_node()  # one parse: positions and data from the nodes
                doc = Document(path=path, data=None, source=text)
                if node is not None:
                    _walk(node, doc, text, limits, record=False)
                    doc.data = _data(loader, node, {})  # (_walk bounded it first)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "invalid syntax"
        if "nesting depth" in what:
            raise _problem(path, mark, _too_deep(limits)) from None
        if exc.context and "duplicate" not in what and "mapping key" not in what:
            what = f"{exc.context}: {what}"
        raise _problem(path, mark, f"invalid {kind}: {what}") from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        char = exc.character  # an int from libyaml, a one-character str from the pure reader
        code = char if isinstance(char, int) else ord(char) if isinstance(char, str) and \
            len(char) == 1 else None
        shown = f" (U+{code:04X})" if code is not None else ""
        raise DocumentError([Problem(path, line, col, "", f"invalid {kind}: a control "
                                     f"character{shown} is not allowed in a document")]) \
            from None
    except yaml.YAMLError as exc:
        raise DocumentError([Problem(path, 1, 1, "", f"invalid {kind}: {type(exc).__name__}")]) \
            from None
    except (RecursionError, MemoryError):
        raise DocumentError([Problem(path, 1, 1, "", _too_deep(limits))]) from None
    return doc


def _too_big(limits: Limits) -> str:
    return f"the file is larger than {limits.max_bytes:,} bytes (limit: {MAX_BYTES_ENV})"


def load_document(path: str | Path, limits: Limits | None = None) -> Document:
    """Read and parse a YAML/JSON file (refused unread when it is over the size limit)."""
    limits = limits or Limits.from_env()
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise DocumentError([Problem(str(path), 1, 1, "", _too_big(limits))])
        raw = p.read_bytes()[: limits.max_bytes + 1]
    except FileNotFoundError:
        raise DocumentError([Problem(str(path), 1, 1, "", "file not found")]) from None
    except IsADirectoryError:
        raise DocumentError([Problem(str(path), 1, 1, "", "is a directory, not a file")]) \
            from None
    except OSError as exc:
        raise DocumentError([Problem(str(path), 1, 1, "", f"cannot be read ({exc.strerror})")]) \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", "replace")
        line, col = _line_col(prefix, len(prefix))
        raise DocumentError([Problem(str(path), line, col, "",
                                     f"not UTF-8 text ({exc.reason})")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_document(text, str(path), limits)

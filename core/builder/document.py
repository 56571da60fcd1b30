"""A recipe as the builder edits it: plain data in, YAML text out, comments kept.

The builder's state is the recipe's own data (``name``, ``trigger``, ``steps``...: what
``splice validate`` reads), so a file opened and saved unchanged keeps the same mapping.
:func:`write_text` merges the edited data into the original file with ruamel.yaml's
round-trip loader: keys, values and comments the edit did not touch stay as they were (a
removed step takes its comments with it). A JSON file is written as JSON (it has no
comments); a YAML file ruamel.yaml cannot read back is rewritten whole, and
:func:`comment_notice` says so before the save.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ..errors import InputError
from ..model.documents import parse_document

ORDER = ("name", "id", "description", "vars", "trigger", "triggers", "steps", "retry")
STEP_ORDER = ("id", "use", "connection", "when", "for_each", "concurrency", "max_items",
              "with")
TRIGGER_ORDER = ("use", "connection", "with", "every", "max_pages")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never fold a line the file did not fold
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def read_data(text: str, path: str) -> Any:
    """The recipe's data as ``splice validate`` reads it (located errors, bounded)."""
    return parse_document(text, path).data


def is_json(path: str) -> bool:
    return path.lower().endswith(".json")


def comment_notice(text: str, path: str) -> str | None:
    """Why a save would lose the file's comments, or None when they survive."""
    if is_json(path):
        return None
    try:
        _yaml().load(text)
    except YAMLError:
        return ("this file cannot be read by the round-trip loader: saving rewrites it and "
                "drops its comments")
    return None


def write_text(data: dict[str, Any], original: str | None = None, path: str = "") -> str:
    """``data`` as recipe text: merged into ``original`` when given (comments kept)."""
    if not isinstance(data, dict):
        raise InputError("a recipe is a mapping with name, trigger and steps")
    if is_json(path):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    y = _yaml()
    root: Any = None
    if original is not None and comment_notice(original, path) is None:
        root = y.load(original)
    if isinstance(root, CommentedMap):
        merge(root, data)
    else:
        root = _fresh(data, ORDER)
    out = io.StringIO()
    y.dump(root, out)
    return out.getvalue()


def _fresh(value: Any, order: tuple[str, ...] = ()) -> Any:
    """A new node for ``value``, keys in the recipe's usual order."""
    if isinstance(value, dict):
        node = CommentedMap()
        keys = [k for k in order if k in value] + [k for k in value if k not in order]
        for key in keys:
            node[key] = _fresh(value[key], _order_for(key))
        return node
    if isinstance(value, list):
        seq = CommentedSeq()
        for item in value:
            seq.append(_fresh(item, STEP_ORDER if order is STEP_ORDER else ()))
        return seq
    if isinstance(value, str) and ("{{" in value or "{%" in value) and "\n" not in value:
        return DoubleQuotedScalarString(value)  # templates read best in double quotes
    return value


def _order_for(key: str) -> tuple[str, ...]:
    if key == "steps":
        return STEP_ORDER
    if key == "trigger":
        return TRIGGER_ORDER
    return ()


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def merge(node: CommentedMap, data: dict[str, Any], key: str = "") -> None:
    """Make ``node`` hold ``data``, touching only what differs."""
    for name in [k for k in node if k not in data]:
        del node[name]
    for name, value in data.items():
        if name in node and _plain(node[name]) == value and type(_plain(node[name])) is \
                type(value):
            continue
        current = node.get(name)
        if isinstance(current, CommentedMap) and isinstance(value, dict):
            merge(current, value, name)
        elif isinstance(current, CommentedSeq) and isinstance(value, list):
            _merge_list(current, value, name)
        elif name in node:
            node[name] = _fresh(value, _order_for(name))
        else:
            _insert(node, name, _fresh(value, _order_for(name)),
                    STEP_ORDER if key == "steps" else _order_for(key) or ORDER)


def _merge_list(seq: CommentedSeq, values: list[Any], key: str) -> None:
    del seq[len(values):]
    for i, value in enumerate(values):
        if i >= len(seq):
            seq.append(_fresh(value, STEP_ORDER if key == "steps" else ()))
        elif _plain(seq[i]) == value:
            continue
        elif isinstance(seq[i], CommentedMap) and isinstance(value, dict):
            merge(seq[i], value, "steps" if key == "steps" else "")
        else:
            seq[i] = _fresh(value)


def _insert(node: CommentedMap, name: str, value: Any, order: tuple[str, ...]) -> None:
    """Add a key where it belongs in the usual order (after the keys that come before)."""
    if name in order:
        before = order[:order.index(name)]
        positions = [i for i, k in enumerate(node) if k in before]
        node.insert(positions[-1] + 1 if positions else 0, name, value)
    else:
        node[name] = value

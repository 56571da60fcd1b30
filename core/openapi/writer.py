"""Manifests written as YAML people can read: block style, short lists inline, no aliases."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

__all__ = ["dump_manifest"]



class _Dumper(yaml.SafeDumper):
    """Block style for structure, flow style for small leaves, never anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flow_ok(items: Iterable[Any]) -> bool:
    items = list(items)
    return all(_is_scalar(v) and not (isinstance(v, str) and "\n" in v) for v in items) and (
        sum(len(str(v)) + 2 for v in items) <= 72
    )


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    leaves = [*data.keys()]
    for value in data.values():
        leaves.extend(value if isinstance(value, list) else [value])
    flow = bool(data) and len(data) <= 4 and _flow_ok(leaves)
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = _flow_ok(data) or all(
        _is_scalar(v) and len(str(v)) <= 60 and "\n" not in str(v) for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data.strip() else None
    if style is None and data.startswith("{{") and "'" in data and '"' not in data:
        style = '"'  # templates read better without doubled single quotes
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def dump_manifest(manifest: dict) -> str:
    """Readable YAML: keys in manifest order, small schemas on one line, no anchors."""
    return yaml.dump(
        manifest,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )



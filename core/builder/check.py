"""Checking what the builder holds with ``splice validate``'s own checker.

:func:`check_recipe` builds the plan of the builder's data exactly as ``splice validate``
does (connectors, connections, scopes, templates, the paths templates read, types);
:func:`check_field` sets one field (a template being typed) and returns only the problems
located at that field, so the page can show them next to it. Nothing is sent.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from ..errors import DocumentError, Problem
from ..mapping.templates import TemplateEngine
from ..model.documents import format_path, parse_document
from ..model.recipe import recipe_from_document
from ..run.plan import Plan, build_plan

DRAFT = "<builder>"


def plan_text(text: str, path: str, registry: Any, store: Any | None) -> Plan:
    """Every check ``splice validate`` makes, on ``text`` as the file at ``path``."""
    recipe = recipe_from_document(parse_document(text, path))
    connections = None if store is None else {c.name: c for c in store.list_connections()}
    return build_plan(recipe, registry, TemplateEngine(registry.filters),
                      connections=connections)


def check_recipe(registry: Any, store: Any | None, data: dict[str, Any],
                 path: str = DRAFT) -> list[Problem]:
    """The problems ``splice validate`` reports for ``data`` (empty: it validates)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    try:
        plan_text(text, path, registry, store)
    except DocumentError as exc:
        return exc.problems
    return []


def set_at(data: Any, where: tuple[str | int, ...], value: Any) -> None:
    """Set ``data[where]``, creating mappings on the way."""
    node = data
    for part in where[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(where[-1])] = value
    else:
        node[where[-1]] = value


def check_field(registry: Any, store: Any | None, data: dict[str, Any],
                where: tuple[str | int, ...], value: Any) -> list[str]:
    """Problems of the recipe once ``where`` holds ``value``, only those at that field
    (``steps[1].with.email: 'trigger.emial' does not exist ...``)."""
    draft = copy.deepcopy(data)
    draft.setdefault("name", "draft")
    try:
        set_at(draft, where, value)
    except (IndexError, ValueError, TypeError, AttributeError):
        return [f"{format_path(where)}: no such field in this recipe"]
    label = format_path(where)
    out = []
    for problem in check_recipe(registry, store, draft):
        at = problem.path
        if at == label or at.startswith((label + ".", label + "[")):
            out.append(f"{at}: {problem.message}")
    return out

"""Saving what the builder holds: a recipe file, registered for ``splice serve``.

:func:`save_recipe` writes the builder's data as YAML (merged into the file it was opened
from, so comments stay: :mod:`splice.builder.document`), after every ``splice validate``
check passed (an invalid recipe is never written), atomically, then registers it like
``splice recipes add`` does. A new recipe goes to ``$SPLICE_HOME/recipes/<name>.yaml`` and
is registered disabled: "Go live" (or ``splice recipes enable``) turns it on. A recipe that
was registered keeps its enabled state; a running serve picks the new version up.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DocumentError, InputError
from ..secrets import home
from ..store import registry as reg
from .check import plan_text
from .document import comment_notice, read_data, write_text


@dataclass
class Saved:
    id: str
    name: str
    path: str
    created: bool
    enabled: bool
    notice: str | None = None          # e.g. comments that could not be kept


def recipes_home() -> Path:
    """Where the dashboard writes new recipes: ``$SPLICE_HOME/recipes``."""
    return home() / "recipes"


def new_path(name: str) -> Path:
    """A free file name for a new recipe called ``name``."""
    stem = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] or "recipe"
    folder = recipes_home()
    path = folder / f"{stem}.yaml"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.yaml"
        n += 1
    return path


def open_recipe(path: str | Path) -> tuple[dict[str, Any], str]:
    """(data, text) of a recipe file, for the builder."""
    from ..errors import Problem

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError([Problem(str(path), 1, 1, "", f"cannot read it "
                                                          f"({type(exc).__name__})")]) from None
    data = read_data(text, str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a mapping with name, trigger and steps")
    return data, text


def save_recipe(registry: Any, store: Any, data: dict[str, Any], *,
                path: str | Path | None = None) -> Saved:
    """Validate, write (comments kept) and register; a DocumentError lists what is wrong
    and nothing is written."""
    created = path is None
    target = Path(path) if path is not None else new_path(str(data.get("name") or "recipe"))
    target = target.expanduser().resolve()
    original = None
    notice = None
    if target.exists():
        original = target.read_text(encoding="utf-8")
        notice = comment_notice(original, str(target))
    text = write_text(data, original, str(target))
    plan = plan_text(text, str(target), registry, store)
    rid, name = plan.recipe.id, plan.recipe.name
    existing = reg.get(store, rid)
    if existing is not None and existing.path != str(target):
        raise InputError(f"a recipe with id '{rid}' is already registered from "
                         f"{existing.path}", hint="give this one another `id:`")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".splice-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    enabled = existing.enabled if existing is not None else False
    reg.register(store, rid, name, str(target), text,
                 hashlib.sha256(text.encode("utf-8")).hexdigest(), enabled=enabled)
    return Saved(rid, name, str(target), created, enabled, notice)

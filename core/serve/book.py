"""The registered recipes as ``splice serve`` runs them, reloaded when they change.

Each registered recipe runs the version stored in the registry (the last one that passed
``validate``). Every ``reload_every`` seconds the book:

- reads the registry's generations and reloads the recipes that changed (enabled, disabled,
  a new version, removed) from the database;
- looks at each file (size and mtime, then a hash of its text): a new text that passes every
  check of ``splice validate`` becomes the stored version and runs from the next event on; a
  text that does not is refused: the old version keeps running, the registry's ``status`` says
  ``invalid`` with the new text's ``file:line:col`` problems, and the log says the same once.
  A missing file keeps the stored version running too (``status: missing``);
- when an endpoint is enabled or disabled for a connection (``splice connections
  endpoints``, the dashboard, the API), loads again the recipes that did not load (a
  disabled endpoint refuses a recipe as ``validate`` does).

:func:`check_text` is also what ``splice recipes add`` runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DocumentError, SpliceError
from ..mapping.templates import TemplateEngine
from ..model.documents import parse_document
from ..model.recipe import recipe_from_document
from ..run.plan import Plan, build_plan
from ..store import registry as reg
from ..store.endpoints import disabled_by_connection

log = logging.getLogger("splice.serve.recipes")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_text(path: str | Path) -> str:
    """A recipe file's text; a located DocumentError when it cannot be read."""
    from ..errors import Problem

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError([Problem(str(path), 1, 1, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError([Problem(str(path), 1, 1, "", f"cannot read it "
                                                          f"({type(exc).__name__})")]) from None


def check_text(text: str, path: str, registry: Any, store: Any) -> Plan:
    """Every check ``splice validate`` makes, on ``text`` as the file at ``path``."""
    recipe = recipe_from_document(parse_document(text, path))
    connections = {c.name: c for c in store.list_connections()}
    return build_plan(recipe, registry, TemplateEngine(registry.filters),
                      connections=connections, disabled=disabled_by_connection(store))


@dataclass
class LoadedRecipe:
    """A registered recipe as this process runs it."""

    id: str
    name: str
    path: str
    enabled: bool
    generation: int
    plan: Plan | None          # None: the stored version does not build (see problems)
    source_hash: str
    problems: str | None = None
    file_seen: tuple[float, int] | None = None   # (mtime, size) last looked at
    file_hash: str | None = None                 # hash of the text last looked at


class RecipeBook:
    """recipe id -> LoadedRecipe, kept in step with the registry and the files."""

    def __init__(self, store: Any, registry: Any) -> None:
        self.store = store
        self.registry = registry
        self.recipes: dict[str, LoadedRecipe] = {}
        self._endpoints_off: dict[str, set[str]] | None = None

    def enabled(self) -> list[LoadedRecipe]:
        return [r for r in self.recipes.values() if r.enabled and r.plan is not None]

    def refresh(self) -> list[str]:
        """Reload what changed; returns the ids of recipes whose running plan changed."""
        changed = []
        generations = reg.generations(self.store)
        for rid in [r for r in self.recipes if r not in generations]:
            gone = self.recipes.pop(rid)
            changed.append(rid)
            log.info("recipe '%s' removed", gone.name, extra={"recipe": rid})
        for rid, generation in generations.items():
            loaded = self.recipes.get(rid)
            if loaded is None or loaded.generation != generation:
                if self._load(rid):
                    changed.append(rid)
        for loaded in list(self.recipes.values()):
            if loaded.enabled and self._check_file(loaded):
                changed.append(loaded.id)
        off = disabled_by_connection(self.store)
        if self._endpoints_off is not None and off != self._endpoints_off:
            # an endpoint was enabled or disabled: recipes it kept from loading try again
            for rid in [r for r, loaded in self.recipes.items() if loaded.plan is None]:
                if self._load(rid) and self.recipes[rid].plan is not None:
                    changed.append(rid)
        self._endpoints_off = off
        return changed

    def _load(self, rid: str) -> bool:
        row = reg.get(self.store, rid)
        if row is None:
            return self.recipes.pop(rid, None) is not None
        old = self.recipes.get(rid)
        name = row.name
        plan, problems = None, None
        if old is not None and old.source_hash == row.source_hash and old.plan is not None:
            plan = old.plan  # same text: keep the compiled plan
        else:
            try:
                plan = check_text(row.source, row.path, self.registry, self.store)
            except SpliceError as exc:
                problems = str(exc)
                log.error("recipe '%s': its stored version does not load: %s", name, problems,
                          extra={"recipe": rid})
        self.recipes[rid] = LoadedRecipe(
            id=rid, name=name, path=row.path, enabled=row.enabled, generation=row.generation,
            plan=plan, source_hash=row.source_hash, problems=problems,
            file_seen=old.file_seen if old else None, file_hash=old.file_hash if old else None)
        return True

    def _check_file(self, loaded: LoadedRecipe) -> bool:
        """A new valid text of the file becomes the running version (True)."""
        try:
            st = os.stat(loaded.path)
        except OSError:
            if loaded.file_seen != (-1.0, -1):
                loaded.file_seen = (-1.0, -1)
                reg.update(self.store, loaded.id, bump=False, status="missing",
                           problems=f"{loaded.path}: file not found; the stored version "
                                    "keeps running")
                log.warning("recipe '%s': %s is gone; the stored version keeps running",
                            loaded.name, loaded.path, extra={"recipe": loaded.id})
            return False
        seen = (st.st_mtime, st.st_size)
        if seen == loaded.file_seen:
            return False
        loaded.file_seen = seen
        try:
            text = read_text(loaded.path)
        except DocumentError:
            return False
        digest = text_hash(text)
        if digest == loaded.file_hash:
            return False
        loaded.file_hash = digest
        if digest == loaded.source_hash:
            reg.update(self.store, loaded.id, bump=False, status="ok", problems=None)
            return False
        try:
            plan = check_text(text, loaded.path, self.registry, self.store)
            if plan.recipe.id != loaded.id:
                raise SpliceError(f"{loaded.path}: the recipe's id changed from "
                                  f"'{loaded.id}' to '{plan.recipe.id}' (the id keys the "
                                  "recipe's state): `splice recipes remove` it and add the "
                                  "file again")
        except SpliceError as exc:
            reg.update(self.store, loaded.id, bump=False, status="invalid",
                       problems=str(exc))
            log.error("recipe '%s': the new version of %s is refused; the running version "
                      "stays: %s", loaded.name, loaded.path, exc, extra={"recipe": loaded.id})
            return False
        reg.register(self.store, loaded.id, plan.recipe.name, loaded.path, text, digest,
                     enabled=True)
        row = reg.get(self.store, loaded.id)
        loaded.plan, loaded.source_hash, loaded.problems = plan, digest, None
        loaded.name = plan.recipe.name
        loaded.generation = row.generation if row else loaded.generation
        log.info("recipe '%s': new version of %s loaded", loaded.name, loaded.path,
                 extra={"recipe": loaded.id})
        return True

"""Recipes: load a YAML/JSON file, check it against ``schemas/recipe.schema.json``.

The deeper checks (connectors, scopes, templates, field paths) live in :mod:`splice.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DocumentError
from .documents import Document, load_document
from .durations import parse_period
from .schema import bundled_checker

DEFAULT_EVERY = 300


@dataclass
class StepSpec:
    index: int
    use: str
    id: str | None = None
    connection: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    when: str | None = None
    for_each: str | None = None
    concurrency: int = 1

    @property
    def connector_id(self) -> str:
        return self.use.split(".", 1)[0]

    @property
    def action_id(self) -> str:
        return self.use.split(".", 1)[1]

    @property
    def label(self) -> str:
        return self.id or f"steps[{self.index}]"


@dataclass
class Recipe:
    name: str
    trigger_use: str
    steps: list[StepSpec]
    doc: Document
    description: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    trigger_connection: str | None = None
    trigger_with: dict[str, Any] = field(default_factory=dict)
    every: float = DEFAULT_EVERY

    @property
    def path(self) -> str:
        return self.doc.path

    @property
    def trigger_connector_id(self) -> str:
        return self.trigger_use.split(".", 1)[0]

    @property
    def trigger_id(self) -> str:
        return self.trigger_use.split(".", 1)[1]


def load_recipe(path: str | Path) -> Recipe:
    return recipe_from_document(load_document(path))


def recipe_from_document(doc: Document) -> Recipe:
    data = doc.data
    if not isinstance(data, dict):
        raise DocumentError([doc.problem((), "a recipe must be a mapping with name, trigger "
                                             "and steps")])
    problems = [doc.problem(path, msg, key=at_key)
                for path, msg, at_key in bundled_checker("recipe").errors(data)]
    raw_steps = data.get("steps")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    ids: dict[str, int] = {}
    for i, step in enumerate(steps):
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            if step["id"] in ids:
                problems.append(doc.problem(("steps", i, "id"),
                                            f"step id '{step['id']}' is already used by "
                                            f"steps[{ids[step['id']]}]; ids must be unique"))
            ids[step["id"]] = i
    if problems:
        raise DocumentError(problems)
    trig = data["trigger"]
    every = parse_period(trig["every"]) if "every" in trig else DEFAULT_EVERY
    return Recipe(
        name=data["name"], description=data.get("description", ""), vars=data.get("vars", {}),
        trigger_use=trig["use"], trigger_connection=trig.get("connection"),
        trigger_with=trig.get("with", {}), every=every, doc=doc,
        steps=[StepSpec(index=i, use=s["use"], id=s.get("id"), connection=s.get("connection"),
                        with_=s.get("with", {}), when=s.get("when"), for_each=s.get("for_each"),
                        concurrency=int(s.get("concurrency", 1)))
               for i, s in enumerate(steps)])

"""Recipes: load a YAML/JSON file, check it against ``schemas/recipe.schema.json``.

A recipe's state (seen records, cursor, events, retries, its lease) is keyed by its ``id``:
the ``id:`` it declares, else one derived from the file's resolved path (its stem and a short
digest), so a copy of the file starts with state of its own. ``retry:`` gives the
:class:`RetryPolicy` (defaults: 8 attempts, back-off 1m..6h, breaker after 5 failures).

The deeper checks (connectors, scopes, templates, field paths) live in :mod:`splice.run.plan`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DocumentError
from .documents import Document, load_document
from .durations import DAY, parse_period
from .schema import bundled_validator, iter_errors

DEFAULT_EVERY = 300
MIN_EVERY, MAX_EVERY = 1.0, 31 * DAY  # a poll interval outside this is a mistake
DEFAULT_MAX_ITEMS = 10_000  # for_each elements per event unless the step says otherwise
DEFAULT_ATTEMPTS = 8
DEFAULT_BACKOFF = (60.0, 6 * 3600.0)
DEFAULT_BREAKER = 5


@dataclass(frozen=True)
class RetryPolicy:
    """``retry:``: attempts before dead letters, the back-off range, the breaker threshold."""

    attempts: int = DEFAULT_ATTEMPTS
    backoff_min: float = DEFAULT_BACKOFF[0]
    backoff_max: float = DEFAULT_BACKOFF[1]
    breaker: int = DEFAULT_BREAKER


def default_recipe_id(path: str) -> str:
    """``<file stem>-<8 hex of the resolved path>``: stable for one file, new for a copy."""
    resolved = str(Path(path).expanduser().resolve())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-.") or "recipe"
    return f"{stem[:60]}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


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
    max_items: int = DEFAULT_MAX_ITEMS

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
    max_pages: int | None = None
    id: str = ""
    id_declared: bool = False  # ``id:`` was written (else derived from the path)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = default_recipe_id(self.doc.path)

    @property
    def path(self) -> str:
        return self.doc.path

    @property
    def source(self) -> str:
        """The recipe file's resolved path (which file a state was last run from)."""
        return str(Path(self.doc.path).expanduser().resolve())

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
                for path, msg, at_key in iter_errors(bundled_validator("recipe"), data)]
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
    trig = data.get("trigger")
    if not problems and isinstance(trig, dict) and "every" in trig:
        every = parse_period(trig["every"])
        if not MIN_EVERY <= every <= MAX_EVERY:
            problems.append(doc.problem(("trigger", "every"), "the poll interval must be "
                                        "between 1 second and 31 days"))
    retry = _retry_policy(doc, data.get("retry") or {}, problems)
    if problems:
        raise DocumentError(problems)
    trig = data["trigger"]
    every = parse_period(trig["every"]) if "every" in trig else DEFAULT_EVERY
    return Recipe(
        id=data.get("id", ""), id_declared="id" in data, retry=retry,
        name=data["name"], description=data.get("description", ""), vars=data.get("vars", {}),
        trigger_use=trig["use"], trigger_connection=trig.get("connection"),
        trigger_with=trig.get("with", {}), every=every, doc=doc,
        max_pages=int(trig["max_pages"]) if "max_pages" in trig else None,
        steps=[StepSpec(index=i, use=s["use"], id=s.get("id"), connection=s.get("connection"),
                        with_=s.get("with", {}), when=s.get("when"), for_each=s.get("for_each"),
                        concurrency=int(s.get("concurrency", 1)),
                        max_items=int(s.get("max_items", DEFAULT_MAX_ITEMS)))
               for i, s in enumerate(steps)])


def _retry_policy(doc: Document, spec: dict[str, Any], problems: list[Any]) -> RetryPolicy:
    """The ``retry:`` block (already schema-checked) as a policy; MIN above MAX is a problem."""
    if not isinstance(spec, dict):
        return RetryPolicy()
    low, high = DEFAULT_BACKOFF
    raw = spec.get("backoff")
    if isinstance(raw, str):
        first, _, second = raw.partition("..")
        try:
            low = parse_period(first)
            high = parse_period(second) if second else max(high, low)
        except ValueError:
            return RetryPolicy()  # the schema pattern reported it
        if low > high:
            problems.append(doc.problem(("retry", "backoff"),
                                        f"the back-off minimum {first} is above its maximum "
                                        f"{second}"))
        elif high > MAX_EVERY:
            problems.append(doc.problem(("retry", "backoff"), "a back-off must be at most 31 "
                                        "days"))
    return RetryPolicy(attempts=int(spec.get("attempts", DEFAULT_ATTEMPTS)), backoff_min=low,
                       backoff_max=high, breaker=int(spec.get("breaker", DEFAULT_BREAKER)))

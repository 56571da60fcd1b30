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
from .schema import bundled_checker

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
class TriggerSpec:
    """One trigger of a recipe: ``trigger:`` or an entry of ``triggers:``."""

    use: str
    path: tuple[str | int, ...]  # where it is in the document: ("trigger",) or ("triggers", i)
    connection: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    every: float = DEFAULT_EVERY
    every_given: bool = False
    max_pages: int | None = None  # pages one poll reads at most (else the default bound)

    @property
    def connector_id(self) -> str:
        return self.use.split(".", 1)[0]

    @property
    def trigger_id(self) -> str:
        return self.use.split(".", 1)[1]


@dataclass
class Recipe:
    """A loaded recipe. ``trigger_*`` and ``every`` describe its primary trigger: the polling
    one when ``triggers:`` names several (the others are webhooks feeding the same events)."""

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

    triggers: list[TriggerSpec] = field(default_factory=list)
    primary: int = 0

    def __post_init__(self) -> None:
        if not self.id:
            self.id = default_recipe_id(self.doc.path)

    def set_primary(self, index: int) -> None:
        """Make ``triggers[index]`` the primary trigger (the plan picks the polling one)."""
        trig = self.triggers[index]
        self.primary = index
        self.trigger_use, self.trigger_connection = trig.use, trig.connection
        self.trigger_with, self.every = trig.with_, trig.every
        self.max_pages = trig.max_pages

    @property
    def trigger_path(self) -> tuple[str | int, ...]:
        """Where the primary trigger is in the document."""
        return self.triggers[self.primary].path if self.triggers else ("trigger",)

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
    if "trigger" in data and "triggers" in data:
        problems.append(doc.problem(("triggers",), "give either 'trigger' or 'triggers', "
                                                   "not both", key=True))
    elif "trigger" not in data and "triggers" not in data:
        problems.append(doc.problem((), "missing required key 'trigger' (or 'triggers')"))
    entries = [(("trigger",), data.get("trigger"))] if "trigger" in data else \
        [(("triggers", i), t) for i, t in enumerate(data.get("triggers") or [])]
    for where, trig in entries:
        if not problems and isinstance(trig, dict) and "every" in trig:
            every = parse_period(trig["every"])
            if not MIN_EVERY <= every <= MAX_EVERY:
                problems.append(doc.problem((*where, "every"), "the poll interval must be "
                                            "between 1 second and 31 days"))
    retry = _retry_policy(doc, data.get("retry") or {}, problems)
    if problems:
        raise DocumentError(problems)
    if "trigger" in data:
        specs = [_trigger_spec(data["trigger"], ("trigger",))]
    else:
        specs = [_trigger_spec(t, ("triggers", i)) for i, t in enumerate(data["triggers"])]
    trig = specs[0]
    return Recipe(
        id=data.get("id", ""), id_declared="id" in data, retry=retry,
        name=data["name"], description=data.get("description", ""), vars=data.get("vars", {}),
        trigger_use=trig.use, trigger_connection=trig.connection,
        trigger_with=trig.with_, every=trig.every, doc=doc, triggers=specs,
        max_pages=trig.max_pages,
        steps=[StepSpec(index=i, use=s["use"], id=s.get("id"), connection=s.get("connection"),
                        with_=s.get("with", {}), when=s.get("when"), for_each=s.get("for_each"),
                        concurrency=int(s.get("concurrency", 1)),
                        max_items=int(s.get("max_items", DEFAULT_MAX_ITEMS)))
               for i, s in enumerate(steps)])


def _trigger_spec(trig: dict[str, Any], path: tuple[str | int, ...]) -> TriggerSpec:
    given = "every" in trig
    return TriggerSpec(use=trig["use"], path=path, connection=trig.get("connection"),
                       with_=trig.get("with", {}),
                       every=parse_period(trig["every"]) if given else DEFAULT_EVERY,
                       every_given=given,
                       max_pages=int(trig["max_pages"]) if "max_pages" in trig else None)


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

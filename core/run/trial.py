"""Test transactions (``splice test``): one event through every step, shown side by side.

The event is one real record fetched from the trigger (``live``) or the connector's declared
sample (``sample``); the steps are rehearsed by :mod:`splice.run.rehearsal`. Nothing is sent
unless ``send`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, SpliceError
from ..http.request import extract_records
from ..model.manifest import MISSING
from .rehearsal import StepTrial, trial_steps
from .runner import Runner


@dataclass
class TrialReport:
    recipe: str
    source: str                       # live | sample | stored event N
    event: Any
    steps: list[StepTrial] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


def sample_event(runner: Runner) -> Any:
    plan = runner.plan
    if plan.trigger.sample is not MISSING:
        record = plan.trigger.sample
        for part in plan.trigger.record_path:  # a webhook's sample is the delivered event
            record = record.get(part) if isinstance(record, dict) else None
        return record
    op = plan.operation
    if op is not None and op.sample is not MISSING:
        records = extract_records(op, op.sample)
        if records:
            return records[0]
    raise ConfigError(f"trigger '{plan.trigger.ref}' declares no sample; use --live")


def live_event(runner: Runner) -> Any:
    for records in runner.poll_records(max_pages=1):
        for record in records:
            return record
    raise ConfigError(f"the trigger '{runner.plan.trigger.ref}' returned no records to test "
                      "with; use --sample")


def stored_event(runner: Runner, event_id: int) -> Any:
    """The record of a stored event of this recipe (``splice test --event ID``)."""
    found = runner.store.get_event(event_id)
    if found is None or found.recipe != runner.plan.recipe.id:
        raise ConfigError(f"recipe '{runner.plan.recipe.name}' has no event {event_id}",
                          hint="`splice runs show RUN` lists a run's events with their ids")
    return found.payload


def run_trial(runner: Runner, *, source: str = "auto", send: bool = False,
              event_id: int | None = None) -> TrialReport:
    """One event (``event_id``: a stored one; else live, sample, or auto: live when the
    trigger has a record) through every step; sent only when ``send``."""
    if event_id is not None:
        event, source = stored_event(runner, event_id), f"stored event {event_id}"
    elif source == "auto":
        try:
            event, source = live_event(runner), "live"
        except SpliceError:
            event, source = sample_event(runner), "sample"
    elif source == "live":
        event = live_event(runner)
    else:
        event = sample_event(runner)
    report = TrialReport(runner.plan.recipe.name, source, event)
    report.steps = trial_steps(runner, event, send=send, max_items=None if send else 3)
    return report



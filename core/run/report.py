"""What a run reports: events seen, new, succeeded, failed, and the calls a dry run would make."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepCall:
    """A request the runner made or (in --dry-run) would make."""

    event_key: str
    step: str
    request: dict[str, Any]
    mapped_from: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    run_id: str | None
    recipe: str
    mode: str
    events_seen: int = 0
    events_new: int = 0
    events_succeeded: int = 0
    events_failed: int = 0
    seeded: int = 0
    requests_made: int = 0
    planned: int = 0  # requests a dry run would send (streamed ones are not kept in calls)
    calls: list[StepCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.events_failed == 0 and not self.errors

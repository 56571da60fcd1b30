"""What a run reports: events seen, new, succeeded, failed, retried, dead-lettered, what stopped
it, and the calls a dry run would make."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
    resumed: int = 0        # pending events a stopped or crashed run left, finished now
    retried: int = 0        # failed events that were due, run again
    scheduled: int = 0      # failed now, retried by a later run
    dead: int = 0           # given up on: in the dead letters
    left_pending: int = 0   # claimed but not run (the run stopped): the next run resumes them
    held_by: str | None = None  # another process holds the recipe's lease: nothing was done
    waiting_retries: int = 0    # failed events waiting for their next attempt
    next_retry_at: datetime | None = None
    forgotten: int | None = None  # --reset: seen records forgotten first
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.events_failed == 0 and not self.errors

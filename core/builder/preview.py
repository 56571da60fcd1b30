"""A preview of the requests a recipe would send, rendered on a sample record.

:func:`preview` builds the plan (every ``splice validate`` check), takes the trigger's
declared sample (or a given record) and rehearses every step without writing anything
(:func:`splice.run.rehearsal.trial_steps`; read-only GET steps are sent, so the steps after
them render with real records): each input field next to the template it came
from and the request that would go out, headers redacted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..run.rehearsal import StepTrial, trial_steps
from ..run.runner import Runner
from ..run.trial import sample_event
from .check import DRAFT, plan_text

_DRAFT_AT = re.compile(re.escape(DRAFT) + r":\d+:\d+: ")


def preview(registry: Any, store: Any, data: dict[str, Any], record: Any = None,
            path: str = DRAFT) -> tuple[Any, list[StepTrial]]:
    """(the record used, each step rehearsed); a DocumentError when it does not validate."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    plan = plan_text(text, path, registry, store)
    runner = Runner(plan, store, registry)
    try:
        event = sample_event(runner) if record is None else record
        steps = trial_steps(runner, event, send=False, max_items=3, send_reads=True)
    finally:
        runner.close()
    for step in steps:  # the draft's own file name and position mean nothing to the person
        if step.error:
            step.error = _DRAFT_AT.sub("", step.error)
    return event, steps

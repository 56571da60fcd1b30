"""Chart data for a recipe's dashboard page, read from what its steps sent.

A chart comes from a step whose operation has a reader here (:data:`READERS`):

- ``push_metrics`` (dashboard metrics): one line per metric ``key``, the value of each
  ``period_start`` day as last sent (a later push of a day replaces it, as the API does);
  the statistics recipe's social figures over time.
- ``add_invoice_tags``: invoices tagged per tag, one bar per trigger record's ``tag`` (else
  its ``name``, else the event key): how many invoices each HighLevel tag tagged.

Only succeeded step results count, of the newest :data:`LIMIT` events; request bodies were
redacted when stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store.queries import SentStep, sent_steps

__all__ = ["Chart", "LIMIT", "READERS", "Series", "recipe_charts"]

LIMIT = 500
MAX_POINTS = 90  # days a line shows at most
MAX_BARS = 30


@dataclass
class Series:
    label: str
    points: list[tuple[str, float]] = field(default_factory=list)  # (x label, value)


@dataclass
class Chart:
    title: str
    kind: str  # "line" (x = day) or "bars" (x = category)
    step: str
    series: list[Series]
    unit: str = ""

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def _metrics(sent: list[SentStep], step: str) -> list[Chart]:
    latest: dict[tuple[str, str], float] = {}
    labels: dict[str, str] = {}
    units: dict[str, str] = {}
    for s in sent:  # newest first: the first value of a (key, day) is the last one sent
        metrics = s.body.get("metrics") if isinstance(s.body, dict) else None
        for m in metrics if isinstance(metrics, list) else []:
            if not isinstance(m, dict) or not m.get("key") or not m.get("period_start"):
                continue
            value = _number(m.get("value"))
            day = str(m["period_start"])[:10]
            key = str(m["key"])
            if value is None or (key, day) in latest:
                continue
            latest[key, day] = value
            labels.setdefault(key, str(m.get("label") or key))
            units.setdefault(key, str(m.get("unit") or ""))
    by_key: dict[str, Series] = {}
    for (key, day), value in sorted(latest.items(), key=lambda kv: kv[0][1]):
        by_key.setdefault(key, Series(labels[key])).points.append((day, value))
    return [Chart(series.label, "line", step, [Series(series.label,
                                                      series.points[-MAX_POINTS:])],
                  units.get(key, "")) for key, series in sorted(by_key.items())]


def _tags(sent: list[SentStep], step: str) -> list[Chart]:
    counts: dict[str, int] = {}
    for s in sent:
        record = s.record if isinstance(s.record, dict) else {}
        label = record.get("tag") or record.get("name") or f"event {s.event_id}"
        counts[str(label)] = counts.get(str(label), 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_BARS]
    return [Chart("Invoices tagged per tag", "bars", step,
                  [Series("invoices", [(label, float(n)) for label, n in top])], "invoices")]


Reader = Callable[[list[SentStep], str], list[Chart]]
READERS: dict[str, tuple[Reader, bool]] = {  # operation id -> (reader, needs the record)
    "push_metrics": (_metrics, False),
    "add_invoice_tags": (_tags, True),
}


def recipe_charts(store: Any, recipe_id: str, plan: Any) -> list[Chart]:
    """The charts of a recipe (none when no step has a reader)."""
    charts: list[Chart] = []
    for step in plan.steps:
        found = READERS.get(step.operation.id)
        if found is None:
            continue
        reader, with_record = found
        sent = sent_steps(store, recipe_id, step.index, LIMIT, with_record=with_record)
        charts.extend(reader(sent, step.spec.id or str(step.index)))
    return charts

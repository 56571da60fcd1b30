"""Micro-benchmark of compiled mappings: microseconds per record for a few template shapes.

``python bench/templates.py`` prints one line per shape (median and best of 7 runs of 20,000
renders each). Run it against two checkouts (``PYTHONPATH=<other>/`` with that checkout's
``core`` available as ``splice``) to compare; bench/NOTES.md records what the runtime's bounds
cost.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from splice.mapping.templates import TemplateEngine

RECORD = {"id": 1, "name": "Ada Lovelace", "email": "ADA@example.com", "city": "London",
          "score": 7, "amount": 12.5, "items": [{"name": f"n{i}", "qty": i} for i in range(10)]}
SHAPES: dict[str, Any] = {
    "6 plain fields (bench/recipe.yaml)": {
        k: "{{ trigger." + k + " }}" for k in ("id", "name", "email", "city", "score", "amount")},
    "1 field, 1 filter": {"a": "{{ trigger.name | upper }}"},
    "1 field, arithmetic": {"a": "{{ trigger.score * 2 }}"},
    "1 field, ~": {"a": "{{ trigger.city ~ '-' ~ trigger.id }}"},
    "1 text field": {"a": "{{ trigger.name }} <{{ trigger.email }}>"},
    "4 fields with filters": {
        "label": "{{ trigger.name | upper }} <{{ trigger.email | lower }}>",
        "slug": "{{ trigger.city | slug }}", "n": "{{ trigger.score * 2 }}",
        "tags": ["{{ trigger.city ~ '-' ~ trigger.id }}"]},
    "10-iteration loop": {
        "lines": "{% for x in trigger.items %}{{ x.name }}: {{ x.qty }}\n{% endfor %}"},
}


def measure(mapping: Any, n: int = 20_000, runs: int = 7) -> tuple[float, float]:
    compiled = TemplateEngine().compile_mapping(mapping)
    context = {"trigger": RECORD}
    compiled(context)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(n):
            compiled(context)
        times.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(times), min(times)


def main() -> None:
    results = {name: measure(mapping) for name, mapping in SHAPES.items()}
    if "--json" in sys.argv:
        print(json.dumps({k: {"median_us": round(v[0], 2), "best_us": round(v[1], 2)}
                          for k, v in results.items()}))
        return
    for name, (median, best) in results.items():
        print(f"{name:36s} median {median:6.2f} µs   best {best:6.2f} µs")


if __name__ == "__main__":
    main()

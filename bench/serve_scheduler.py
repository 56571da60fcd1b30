"""The scheduler of `splice serve`: 200 enabled recipes on a 1-minute interval.

    python bench/serve_scheduler.py               # about 3 minutes; prints a results table
    python bench/serve_scheduler.py --json out.json

The HighLevel sandbox runs on loopback; one OAuth connection to it; 200 recipes (each its own
file and id) poll `ghl_users.user_created` every minute. `splice serve` runs as a separate
process (4 workers, the defaults) for `--seconds`; every poll it starts is in its JSON log
with its lag (how late it started after it was due: queueing behind other polls, not the API
call). Reported: polls per recipe, lag p50/p99/max, the smallest gap between two polls of one
recipe (never below the interval: jitter only delays) and whether two polls of one recipe ever
overlapped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
RECIPE = """id: poller-{i:03d}
name: Poller {i}
trigger: {{use: ghl_users.user_created, connection: bench-ghl, every: 1m}}
steps:
  - use: ghl_users.get_user
    connection: bench-ghl
    with: {{userId: "{{{{ trigger.id }}}}"}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="splice-bench-scheduler-"))
    env = {**os.environ, "SPLICE_HOME": str(home), "SPLICE_SECRET_KEY": KEY,
           "SPLICE_LOAD_PLUGINS": "ghl_users"}
    os.environ.update(env)
    from splice.plugins import get_registry
    from splice.run.demo import connect_to_sandbox
    from splice.sandbox import SandboxConfig, free_port, serve
    from splice.serve.book import check_text, text_hash
    from splice.store import registry as reg
    from splice.store.database import Store
    from splice_connectors.ghl_users.sandbox import create_app

    registry = get_registry()
    config = SandboxConfig()
    app = create_app(config)
    log_path = home / "serve.log"
    with serve(app) as url:
        store = Store.open()
        connect_to_sandbox(registry.connector("ghl_users"), store, name="bench-ghl",
                           base_url=url, config=config, scopes=["users.readonly"])
        folder = home / "recipes"
        folder.mkdir()
        for i in range(args.recipes):
            path = folder / f"poller{i:03d}.yaml"
            text = RECIPE.format(i=i)
            path.write_text(text)
            plan = check_text(text, str(path), registry, store)
            reg.register(store, plan.recipe.id, plan.recipe.name, str(path), text,
                         text_hash(text))
        port = free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "splice", "serve", "--port",
                                     str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=log)
            started = time.monotonic()
            try:
                time.sleep(args.seconds)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=20)
        elapsed = time.monotonic() - started
        with store._read() as conn:
            runs = conn.exec_driver_sql(
                "SELECT recipe, started_at, finished_at FROM runs WHERE mode = 'serve' "
                "ORDER BY started_at").all()
        store.close()
    lags, polls_by_recipe = [], {}
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("lag") is not None and "polled" in record.get("message", ""):
            lags.append(float(record["lag"]))
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for recipe, start, end in runs:
        windows.setdefault(recipe, []).append((datetime.fromisoformat(str(start)),
                                               datetime.fromisoformat(str(end))))
    gaps = [(b[0] - a[0]).total_seconds() for w in windows.values()
            for a, b in zip(w, w[1:], strict=False)]
    overlaps = sum(1 for w in windows.values() for a, b in zip(w, w[1:], strict=False)
                   if b[0] < a[1])
    polls_by_recipe = {r: len(w) for r, w in windows.items()}
    results: dict[str, Any] = {
        "recipes": args.recipes, "seconds": round(elapsed, 1), "exit_code": code,
        "polls": sum(polls_by_recipe.values()),
        "recipes_polled": len(polls_by_recipe),
        "polls_per_recipe": {"min": min(polls_by_recipe.values(), default=0),
                             "max": max(polls_by_recipe.values(), default=0)},
        "lag_p50_s": pct(lags, 0.5) if lags else None,
        "lag_p99_s": pct(lags, 0.99) if lags else None,
        "lag_max_s": max(lags) if lags else None, "lag_samples": len(lags),
        "mean_lag_s": statistics.mean(lags) if lags else None,
        "min_gap_s": min(gaps) if gaps else None, "overlapping_polls": overlaps}
    print(f"{args.recipes} recipes every 1m for {elapsed:.0f}s: {results['polls']} polls "
          f"({results['polls_per_recipe']['min']}-{results['polls_per_recipe']['max']} a "
          f"recipe, {results['recipes_polled']} recipes polled)")
    print(f"poll lag: p50 {results['lag_p50_s']:.3f}s  p99 {results['lag_p99_s']:.3f}s  "
          f"max {results['lag_max_s']:.3f}s  (target p99 < 5s; {len(lags)} polls)")
    print(f"smallest gap between two polls of one recipe: {results['min_gap_s']:.1f}s; "
          f"overlapping polls: {overlaps}; serve exit code {code}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

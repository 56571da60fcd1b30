"""Dashboard pages with 10,000 runs in the state database: p50/p95 per page (target < 200 ms).

    python bench/dashboard.py                 # about 1 minute; prints a results table
    python bench/dashboard.py --runs 10000 --requests 40 --json out.json

Set-up (all real): the HighLevel and Invoice2go sandboxes on loopback, connections through
their OAuth flows, the seed recipes registered (tags, statistics, users), and real runs of
them against the sandboxes (a new tag tags invoices; a week of statistics is pushed). Those
runs' rows (runs, events with their trigger records, step results with the requests and
outputs as stored) are the templates the history is made of: ``--runs`` runs spread over the
last weeks, a third of them finding an event, 5% of events failed (retry pending) and 1% dead
letters. Then `splice serve` (with the dashboard) runs in this process and a signed-in
client requests every page.

Pages are enumerated from the dashboard's own routes (every ``GET`` route of every module in
``splice.web.app.PAGES``, so pages added later are measured without editing this file); a
route with path parameters is filled from the data (a run id, an event id with step results,
a recipe id, a connection name, a connector, an operation); a parameter with no sample is
listed as skipped. ``/live/*`` (streams), ``/login`` and static files are not pages. Extra
variants: runs filtered by status and recipe, and a page deep in the keyset paging.

Each page: 5 warm-up requests, then ``--requests`` timed ones over one keep-alive connection;
``/healthz`` (one query) is the baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
RECIPES = [ROOT / "recipes" / n for n in ("ghl_tags_to_invoice2go.yaml",
                                          "ghl_statistics_to_invoice2go_dashboard.yaml",
                                          "ghl_users_to_invoice2go_clients.yaml")]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cli(*args: str) -> None:
    from splice.cli.main import cli as root

    try:
        root.main(list(args), prog_name="splice", standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise


def real_runs(store: Any, registry: Any, sandboxes: Any, recipes: list[Path]) -> None:
    """Run the seed recipes for real: the rows the history is copied from."""
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner

    def run(path: Path, backfill: bool = False) -> None:
        plan = build_plan(load_recipe(path), registry, TemplateEngine(registry.filters),
                          connections={c.name: c for c in store.list_connections()})
        runner = Runner(plan, store, registry)
        try:
            report = runner.run(mode="serve", backfill=backfill)
        finally:
            runner.close()
        assert report.ok, report.errors

    tags, stats, _users = recipes
    run(tags)
    for name in ("Kord Industries", "Daily Planet", "Wayne Enterprises"):
        sandboxes.control("ghl_users", "POST", "tags", {"tag": name})
    run(tags)
    run(stats, backfill=True)


def fill(store: Any, total: int) -> dict[str, int]:
    """``total`` runs copied from the real ones (see the module docstring)."""
    import sqlalchemy as sa

    from splice.store.tables import dead_letters, events, runs, step_results

    with store._read() as conn:
        templates = [dict(r._mapping) for r in conn.execute(sa.select(runs))]
        by_run: dict[str, list[dict[str, Any]]] = {}
        for e in conn.execute(sa.select(events)):
            by_run.setdefault(e.run_id, []).append(dict(e._mapping))
        steps: dict[int, list[dict[str, Any]]] = {}
        for s in conn.execute(sa.select(step_results)):
            steps.setdefault(s.event_id, []).append(dict(s._mapping))
    busy = [t for t in templates if by_run.get(t["id"])]
    quiet = [t for t in templates if not by_run.get(t["id"])]
    rng = random.Random(7)
    now = datetime.now(UTC)
    counts = {"runs": 0, "events": 0, "step_results": 0, "failed": 0, "dead": 0}
    batch: dict[str, list[dict[str, Any]]] = {"runs": [], "events": [], "steps": [],
                                              "dead": []}

    def flush() -> None:
        with store._write() as conn:
            for table, key in ((runs, "runs"), (events, "events"), (step_results, "steps"),
                               (dead_letters, "dead")):
                if batch[key]:
                    conn.execute(table.insert(), batch[key])
                    batch[key] = []

    for i in range(total):
        template = rng.choice(busy) if rng.random() < 0.33 and busy else rng.choice(quiet)
        started = now - timedelta(minutes=5 * (total - i)) - timedelta(seconds=rng.random())
        run_id = str(uuid.uuid4())
        run = {**template, "id": run_id, "started_at": started,
               "finished_at": started + timedelta(seconds=0.4 + rng.random())}
        failed = 0
        for e in by_run.get(template["id"], []):
            event_id = 10_000_000 + counts["events"]
            status, error, klass, nxt = "succeeded", None, None, None
            roll = rng.random()
            if roll < 0.01:
                status, klass = "dead", "client"
                error = ("HTTP 422 from invoice2go: Validation failed.\n  fix: the API refused "
                         "the request (HTTP 422); see it with `splice runs show RUN`, fix the "
                         f"recipe or the data, then splice runs retry --dead {event_id}")
                batch["dead"].append({"event_id": event_id, "recipe": e["recipe"],
                                      "reason": error, "attempts": 1, "created_at": started,
                                      "error_class": klass})
                counts["dead"] += 1
            elif roll < 0.06:
                status, klass, error = "failed", "server", "HTTP 503 from invoice2go"
                nxt = started + timedelta(minutes=2)
                counts["failed"] += 1
            failed += status != "succeeded"
            batch["events"].append({**e, "id": event_id, "key": f"{e['key']}#{i}",
                                    "run_id": run_id, "status": status, "last_error": error,
                                    "error_class": klass, "next_attempt_at": nxt,
                                    "created_at": started, "updated_at": started})
            counts["events"] += 1
            for s in steps.get(e["id"], []):
                batch["steps"].append({**s, "id": None, "event_id": event_id, "run_id": run_id,
                                       "idempotency_key": None, "started_at": started,
                                       "finished_at": started})
                counts["step_results"] += 1
        run.update(events_failed=failed, status="failed" if failed else "succeeded")
        batch["runs"].append(run)
        counts["runs"] += 1
        if len(batch["runs"]) >= 500:
            flush()
    flush()
    return counts


def samples(store: Any, registry: Any) -> dict[str, str]:
    """A value for each path parameter a page may have."""
    import sqlalchemy as sa

    from splice.store import registry as reg
    from splice.store.tables import events, runs, step_results

    with store._read() as conn:
        run_id = conn.execute(sa.select(runs.c.id).where(runs.c.events_new > 0).order_by(
            runs.c.started_at.desc()).limit(1)).scalar_one()
        event_id = conn.execute(sa.select(events.c.id).where(
            events.c.status == "dead", events.c.id.in_(sa.select(step_results.c.event_id)))
            .order_by(events.c.id.desc()).limit(1)).scalar_one()
    recipe = next(r for r in reg.list_all(store) if "tag" in r.id)
    connection = store.list_connections()[0]
    connector = registry.connectors[connection.connector]
    operation = next(iter(connector.operations))
    trigger = next(iter(connector.triggers), "")
    return {"run_id": run_id, "event_id": str(event_id), "recipe_id": recipe.id,
            "recipe": recipe.id, "id": recipe.id, "rid": recipe.id, "name": connection.name,
            "connection": connection.name, "connector_id": connector.id,
            "connector": connector.id, "operation": operation, "operation_id": operation,
            "op": operation, "entry": operation, "trigger": trigger, "trigger_id": trigger}


def pages(service: Any, values: dict[str, str]) -> tuple[list[str], list[str]]:
    """Every GET page of the dashboard, its path parameters filled in; and what was skipped."""
    from starlette.routing import Route

    found, skipped = [], []
    for route in service.dashboard.routes():
        if not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        path = route.path
        if path.startswith(("/live", "/login", "/static", "/logout", "/oauth")):
            continue
        missing = [p for p in route.param_convertors if p not in values]
        if missing:
            skipped.append(f"{path} (no sample for {', '.join(missing)})")
            continue
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", values[name]).replace(
                "{" + name + ":int}", values[name]).replace("{" + name + ":path}", values[name])
        found.append(path)
    return found, skipped


def measure(http: Any, path: str, count: int) -> tuple[float, float, int, int]:
    for _ in range(5):
        http.get(path)
    times = []
    status = size = 0
    for _ in range(count):
        t0 = time.perf_counter()
        response = http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        status, size = response.status_code, len(response.content)
    return statistics.median(times), pct(times, 0.95), status, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="splice-bench-dashboard-"))
    os.environ.update({"SPLICE_HOME": str(home), "SPLICE_SECRET_KEY": KEY})
    sys.path.insert(0, str(ROOT))
    import httpx

    from splice.connections.status import needed_scopes
    from splice.plugins import get_registry
    from splice.run.demo import CONNECTIONS, Sandboxes, ensure_connection
    from splice.sandbox import free_port
    from splice.serve.app import Service
    from splice.serve.config import ServeConfig
    from splice.serve.server import serve_in_thread
    from splice.store import logins
    from splice.store.database import Store

    registry = get_registry()
    store = Store.open()
    with Sandboxes(registry, None) as sandboxes:
        for cid, name in CONNECTIONS.items():
            connector = sandboxes.connectors[cid]
            ensure_connection(store, connector, name, sandboxes,
                              needed_scopes(connector, RECIPES))
        week = home / "ghl_statistics_7_days.yaml"  # the statistics recipe, a week a push
        week.write_text(RECIPES[1].read_text().replace("  days: 1 ", "  days: 7 "))
        recipes = [RECIPES[0], week, RECIPES[2]]
        cli("recipes", "add", *map(str, recipes))
        real_runs(store, registry, sandboxes, recipes)
        t0 = time.perf_counter()
        counts = fill(store, args.runs)
        print(f"history: {counts} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        service = Service(store, registry, ServeConfig(port=free_port()), token="bench")
        with serve_in_thread(service) as url, httpx.Client(base_url=url, timeout=30) as http:
            assert http.get(f"/login?token={logins.mint(store)}").status_code == 303
            values = samples(store, registry)
            found, skipped = pages(service, values)
            page = __import__("splice.store.queries", fromlist=["runs_page"])
            deep = None
            for _ in range(100):  # the keyset of page 100 (50 a page)
                deep = page.runs_page(store, limit=50, after=deep).after
            tags = next(r.name for r in service.book.recipes.values() if "tag" in r.id)
            extra = ["/runs?status=failed", f"/runs?{httpx.QueryParams({'recipe': tags})}",
                     f"/runs?{httpx.QueryParams({'after': deep})}"]
            for r in service.book.recipes.values():  # every recipe's charts (the statistics)
                if f"/recipes/{r.id}/charts" not in found:
                    extra.append(f"/recipes/{r.id}/charts")
            base50, base95, _, _ = measure(http, "/healthz", args.requests)
            rows = []
            for path in [*found, *extra]:
                p50, p95, status, size = measure(http, path, args.requests)
                rows.append({"page": path, "status": status, "bytes": size,
                             "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                             "p50_vs_healthz": round(p50 / base50, 1)})
    load = os.getloadavg()[0]
    print(f"\n{counts['runs']:,} runs, {counts['events']:,} events, "
          f"{counts['step_results']:,} step results; load average {load:.1f}; "
          f"/healthz p50 {base50:.2f} ms, p95 {base95:.2f} ms\n")
    print("| page | status | KB | p50 ms | p95 ms | p50 / healthz |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        short = r["page"] if len(r["page"]) < 60 else r["page"][:57] + "..."
        print(f"| `{short}` | {r['status']} | {r['bytes'] / 1024:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p95_ms']:.1f} | {r['p50_vs_healthz']}x |")
    for s in skipped:
        print(f"skipped: {s}")
    slow = [r for r in rows if r["p95_ms"] >= 200 or r["status"] != 200]
    print("\nall pages under 200 ms (p95)" if not slow else
          f"\nover 200 ms or not 200: {[r['page'] for r in slow]}")
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "load": load, "healthz_p50": base50,
                                         "pages": rows, "skipped": skipped}, indent=2))


if __name__ == "__main__":
    main()

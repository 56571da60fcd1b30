"""Events through `splice worker` processes against a target with 50 ms latency, on PostgreSQL
and Redis, beside single-process `splice serve` in the same run; and the same pipeline when
the target's rate limit, not its latency, is the bound.

    python bench/workers.py                  # latency-bound, about 3 minutes
    python bench/workers.py --events 480 --latency 0.05 --json out.json
    python bench/workers.py --budget-bound   # budget-bound, about 3 minutes
    python bench/workers.py --budget-bound --budgets 100/10 --budget-seconds 20 --margin 0.1

Each configuration gets a fresh PostgreSQL schema (tests/pg.py: 127.0.0.1:5432, database
`test`) and, with workers, a private redis-server on a free port (the Celery broker, and the
store of the shared rate budgets). The recipe is an Invoice2go `client.created` webhook
writing one note per client to a fake CRM (tests/fakeapi.py, served in this process) that
answers each write `--latency` seconds after applying it. With everything started and idle,
the verified deliveries are committed to the inbox in one transaction; the clock runs from
that commit until every row is done and no event is pending (read from the database every
50 ms). Every note is counted at the CRM, which does not dedupe by key: each configuration
must write each note exactly once.

Latency-bound (the default; `--events` deliveries, I/O bound):

1. `splice serve` alone (no broker: its own scheduler runs the events, `--workers 4`);
2. `splice serve` + 1, 2 and 4 `splice worker` processes with `-c 1` (one task at a time):
   the scaling across processes (target: 4 workers >= 3.5x one);
3. one `splice worker -c 16` (threads) against the `-c 1` one (target >= 8x);

and for each the CPU seconds (user + system, from /proc) that serve and the workers spent
per event: the cost of the fleet against single-process serve.

Budget-bound (`--budget-bound`): for each `--budgets` LIMIT/SECONDS (default HighLevel's
100 / 10 s, then the acceptance test's 20 / 1 s), the CRM admits at most LIMIT requests per
sliding window of SECONDS and answers 429 (with Retry-After) over it, and the connector's
manifest (a copy of tests/fixtures/fakecrm.yaml) declares that budget; serve + 1, 2 and 4
workers with `-c --budget-concurrency` (default 4: ~60 writes/s of capacity a worker at 50 ms,
several times the budget) share it through the private Redis. Each configuration gets
`--budget-seconds` worth of the budget plus one window's worth of events. Reported per
worker count: the write rate at the CRM (bench/budget.py's definition: LIMIT / the median
time between admitted write i and write i + LIMIT), its share of the budget (target: >= 95%
with no 429; the shared budget's margin, `SPLICE_BUDGET_MARGIN`, caps it at 97.6% for 10 s
windows and 91% for 1 s ones by default, docs/budgets.md), the most arrivals in any window
(429s included), the 429s the CRM sent, failed steps, and whether each write arrived once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
SECRET = "whsec_bench-secret-0123456789abcdef"
RECIPE = """
name: Clients to notes
trigger: {use: invoice2go.client_created_webhook, connection: my-invoice2go}
steps:
  - use: fakecrm.create_note
    connection: crm
    with: {subject: "client {{ trigger.id }}", body: "{{ trigger.name }}"}
"""
TICKS = os.sysconf("SC_CLK_TCK")
FAKECRM = ROOT / "tests" / "fixtures" / "fakecrm.yaml"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def load() -> float:
    return os.getloadavg()[0]


def run_config(name: str, workers: int, concurrency: int, args: argparse.Namespace,
               crm: Any, crm_url: str, home: Path, *, events: int | None = None,
               manifest: Path = FAKECRM, requeue_after: float = 30.0) -> dict[str, Any]:
    """One configuration: serve (+ ``workers`` ``splice worker -c concurrency``), ``events``
    verified deliveries committed at once, timed until no event is left pending."""
    from splice.store.inbox import Delivery, store_deliveries
    from tests import pg
    from tests.redis_service import PrivateRedis
    from tests.servekit import i2g_event

    crm.state.notes.clear()
    crm.state.idem.clear()
    crm.state.log.clear()
    crm.state.hits.clear()
    crm.state.arrivals.clear()
    count = args.events if events is None else events
    folder = home / name
    folder.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    redis_server: PrivateRedis | None = None
    with pg.schema_url() as url:
        env = {**os.environ, "SPLICE_HOME": str(folder / "home"), "SPLICE_SECRET_KEY": KEY,
               "SPLICE_DATABASE_URL": url,
               "SPLICE_CONNECTORS_PATH": str(manifest)}
        env.pop("SPLICE_BROKER_URL", None)
        env.pop("SPLICE_REDIS_URL", None)  # budgets in the broker's Redis: the private one
        if workers:
            redis_server = PrivateRedis(folder)
            redis_server.start()
            env["SPLICE_BROKER_URL"] = redis_server.url
        os.environ.update(env)
        if not workers:
            os.environ.pop("SPLICE_BROKER_URL", None)
        from splice import plugins
        from splice.store.database import Store

        plugins.reset()
        store = Store.open()
        store.put_connection("crm", connector="fakecrm", auth_type="bearer", base_url=crm_url,
                             config={"allow_private_network": True},
                             secret={"token": "test-token-0123456789"})
        store.put_connection("my-invoice2go", connector="invoice2go", auth_type="oauth2",
                             base_url="http://127.0.0.1:9",
                             config={"webhook_subscription": {
                                 "id": "sub-1", "events": ["client.created"],
                                 "url": "http://127.0.0.1:9/hooks/my-invoice2go"}},
                             secret={"webhook_secret": SECRET})
        from splice.plugins import get_registry
        from splice.serve.book import check_text, text_hash
        from splice.store import registry as reg

        path = folder / "clients.yaml"
        path.write_text(RECIPE)
        plan = check_text(RECIPE, str(path), get_registry(), store)
        reg.register(store, plan.recipe.id, plan.recipe.name, str(path), RECIPE,
                     text_hash(RECIPE))
        try:
            from splice.sandbox import free_port

            port = free_port()
            serve_log = open(folder / "serve.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "splice", "serve", "--port", str(port),
                 "--requeue-after", str(requeue_after)], env=env, cwd=ROOT, stdout=serve_log,
                stderr=subprocess.STDOUT))
            logs = []
            for i in range(workers):
                log_file = folder / f"worker{i}.log"
                logs.append(log_file)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "splice", "worker", "-c", str(concurrency),
                     "-n", f"w{i}@%h"], env=env, cwd=ROOT,
                    stdout=open(log_file, "wb"), stderr=subprocess.STDOUT))  # noqa: SIM115
            _wait_ready(port, logs, procs)
            time.sleep(1.0)
            events = [i2g_event("client.created", {"id": f"c{i:05d}", "name": f"C {i}"},
                                event_id=f"evt-{name}-{i}") for i in range(count)]
            deliveries = [Delivery("my-invoice2go", e["id"], "client.created", json.dumps(e))
                          for e in events]
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            load0 = load()
            started = time.monotonic()
            store_deliveries(store, deliveries)
            while not _done(store, count):
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"{name}: not done after {args.timeout}s")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
            outcome = _outcome(store)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
            if redis_server is not None:
                redis_server.stop()
            store.close()
    notes: dict[str, int] = {}
    for note in crm.state.notes:
        notes[note["subject"]] = notes.get(note["subject"], 0) + 1
    once = len(notes) == count and set(notes.values()) == {1}
    return {"config": name, "workers": workers, "concurrency": concurrency,
            "events": count, "seconds": round(elapsed, 2),
            "events_per_second": round(count / elapsed, 1),
            "cpu_ms_per_event": round(1000 * cpu / count, 2),
            "each_note_once": once, "load_before": round(load0, 2), **outcome}


def _wait_ready(port: int, logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a process exited early: " + " ".join(
                str(p.args) for p in procs if p.poll() is not None))
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            up = False
        if up and all("splice worker ready" in log.read_text(errors="replace")
                      for log in logs):
            return
        if time.monotonic() > deadline:
            raise SystemExit("not ready after 60 s")
        time.sleep(0.1)


def _done(store: Any, count: int) -> bool:
    """Every delivery taken from the inbox and every event settled (none pending)."""
    with store._read() as conn:
        new = conn.exec_driver_sql("SELECT count(*) FROM inbox WHERE status = 'new'").scalar()
        settled = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE status <> 'pending'").scalar()
    return new == 0 and settled == count


def _outcome(store: Any) -> dict[str, int]:
    with store._read() as conn:
        ok = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE status = 'succeeded'").scalar()
        failed = conn.exec_driver_sql(
            "SELECT count(*) FROM step_results WHERE status = 'failed'").scalar()
    return {"succeeded": int(ok or 0), "failed_steps": int(failed or 0)}


def latency_bound(args: argparse.Namespace, crm: Any, crm_url: str, home: Path
                  ) -> dict[str, Any]:
    configs = [("serve", 0, 0), ("1x1", 1, 1), ("2x1", 2, 1), ("4x1", 4, 1), ("1x16", 1, 16)]
    results = []
    for name, workers, concurrency in configs:
        result = run_config(name, workers, concurrency, args, crm, crm_url, home)
        results.append(result)
        print(json.dumps(result), flush=True)
    by = {r["config"]: r for r in results}
    rate = {k: v["events_per_second"] for k, v in by.items()}
    summary = {
        "scaling_2_workers": round(rate["2x1"] / rate["1x1"], 2),
        "scaling_4_workers": round(rate["4x1"] / rate["1x1"], 2),
        "threads_16_vs_sequential": round(rate["1x16"] / rate["1x1"], 2),
        "cost_4x1_vs_serve": round(by["4x1"]["cpu_ms_per_event"]
                                   / by["serve"]["cpu_ms_per_event"], 2),
        "cost_1x16_vs_serve": round(by["1x16"]["cpu_ms_per_event"]
                                    / by["serve"]["cpu_ms_per_event"], 2),
        "latency_s": args.latency, "events": args.events,
    }
    print()
    print(f"{'config':8} {'events/s':>9} {'cpu ms/event':>13} {'once':>5} {'load':>5}")
    for r in results:
        print(f"{r['config']:8} {r['events_per_second']:9.1f} {r['cpu_ms_per_event']:13.2f} "
              f"{str(r['each_note_once']):>5} {r['load_before']:5.2f}")
    print(json.dumps(summary, indent=2))
    return {"results": results, "summary": summary}


def parse_budget(text: str) -> tuple[int, float]:
    """``100/10`` -> (100, 10.0): requests per seconds."""
    limit, _, per = text.partition("/")
    try:
        return int(limit), float(per.removesuffix("s"))
    except ValueError:
        raise SystemExit(f"--budgets: {text!r} is not LIMIT/SECONDS (e.g. 100/10)") from None


def budget_bound(args: argparse.Namespace, crm: Any, crm_url: str, home: Path
                 ) -> dict[str, Any]:
    """The same pipeline with the fake CRM limited to LIMIT writes per SECONDS (429 over it)
    and the connector declaring that budget: 1, 2 and 4 workers share it through Redis."""
    import statistics

    import yaml

    from bench.budget import most_in_window

    if args.margin is not None:
        os.environ["SPLICE_BUDGET_MARGIN"] = args.margin
    rows = []
    for text in args.budgets.split(","):
        limit, per = parse_budget(text)
        rate = limit / per
        data = yaml.safe_load(FAKECRM.read_text("utf-8"))
        data["rate_limits"] = [{"limit": limit, "per": f"{int(per * 1000)}ms"}]
        manifest = home / f"fakecrm-{limit}-per-{per:g}s.yaml"
        manifest.write_text(yaml.safe_dump(data, sort_keys=False))
        crm.state.rate_limit = (limit, per)
        events = int(rate * args.budget_seconds) + limit
        for workers in [int(n) for n in args.processes.split(",")]:
            name = f"b{limit}per{per:g}-{workers}x{args.budget_concurrency}"
            result = run_config(name, workers, args.budget_concurrency, args, crm, crm_url,
                                home, events=events, manifest=manifest,
                                requeue_after=60 + 2 * events / rate)
            arrivals = list(crm.state.arrivals)
            times = sorted(t for t, _ in arrivals)
            admitted = sorted(t for t, ok in arrivals if ok)
            # bench/budget.py's rate: limit / the median time between admitted write i and
            # write i + limit (how long the budget takes to serve a window's worth)
            gaps = [b - a for a, b in zip(admitted, admitted[limit:], strict=False)]
            per_second = limit / statistics.median(gaps) if gaps else 0.0
            result.update(budget=f"{limit}/{per:g}s", limit=limit, per=per,
                          writes_per_second=round(per_second, 2),
                          share=round(per_second / rate, 4),
                          most_in_window=most_in_window(times, per),
                          target_429=sum(1 for _, ok in arrivals if not ok),
                          load_after=round(load(), 2))
            rows.append(result)
            print(json.dumps(result), flush=True)
    crm.state.rate_limit = None
    margin = os.environ.get("SPLICE_BUDGET_MARGIN") or "default (10% of the window, <= 0.25 s)"
    print(f"\nbudget-bound: {args.budget_seconds:g} s of each budget per configuration "
          f"(+ one window); latency {args.latency:g} s; margin {margin}\n")
    print("| budget | workers | events | writes/s at the target | share of budget "
          "| most in any window | 429 at the target | failed steps | each write once "
          "| load before/after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['budget']} | {r['workers']} x `-c {r['concurrency']}` | {r['events']} "
              f"| {r['writes_per_second']:.2f} | {r['share']:.1%} "
              f"| {r['most_in_window']} (limit {r['limit']}) | {r['target_429']} "
              f"| {r['failed_steps']} | {'yes' if r['each_note_once'] else '**no**'} "
              f"| {r['load_before']:.1f} / {r['load_after']:.1f} |")
    return {"budget_bound": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=480,
                        help="events per latency-bound configuration")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds the fake CRM holds each write's answer")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--budget-bound", action="store_true",
                        help="measure the budget-bound configurations instead")
    parser.add_argument("--budgets", default="100/10,20/1",
                        help="budget-bound: LIMIT/SECONDS of the CRM and the manifest, "
                             "comma-separated")
    parser.add_argument("--budget-seconds", type=float, default=20.0,
                        help="budget-bound: events = this many seconds of the budget + one "
                             "window's worth")
    parser.add_argument("--processes", default="1,2,4",
                        help="budget-bound: worker process counts")
    parser.add_argument("--budget-concurrency", type=int, default=4,
                        help="budget-bound: -c of each worker")
    parser.add_argument("--margin", help="budget-bound: SPLICE_BUDGET_MARGIN (default: "
                                         "splice's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from splice.sandbox import serve
    from tests import pg
    from tests.fakeapi import create_app
    from tests.redis_service import unavailable

    for reason in (pg.unavailable(), unavailable()):
        if reason:
            raise SystemExit(reason)
    home = Path(tempfile.mkdtemp(prefix="splice-bench-workers-"))
    crm = create_app()
    crm.state.honour_idempotency = False  # count every arrival
    crm.state.delay = args.latency
    with serve(crm) as crm_url:
        if args.budget_bound:
            out = budget_bound(args, crm, crm_url, home)
        else:
            out = latency_bound(args, crm, crm_url, home)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

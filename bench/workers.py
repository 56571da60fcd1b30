"""Events through `splice worker` processes against a target with 50 ms latency, on PostgreSQL
and Redis, beside single-process `splice serve` in the same run.

    python bench/workers.py                  # about 3 minutes; prints a results table
    python bench/workers.py --events 480 --latency 0.05 --json out.json

Each configuration gets a fresh PostgreSQL schema (tests/pg.py: 127.0.0.1:5432, database
`test`) and, with workers, a private redis-server on a free port. The recipe is an Invoice2go
`client.created` webhook writing one note per client to a fake CRM (tests/fakeapi.py, served
in this process) that answers each write `--latency` seconds after applying it: I/O bound.
With everything started and idle, `--events` verified deliveries are committed to the inbox
in one transaction; the clock runs from that commit until every row is done and every event
succeeded (read from the database every 50 ms). Measured:

1. `splice serve` alone (no broker: its own scheduler runs the events, `--workers 4`);
2. `splice serve` + 1, 2 and 4 `splice worker` processes with `-c 1` (one task at a time):
   the scaling across processes (target: 4 workers >= 3.5x one);
3. one `splice worker -c 16` (threads) against the `-c 1` one (target >= 8x);

and for each the CPU seconds (user + system, from /proc) that serve and the workers spent
per event: the cost of the fleet against single-process serve. Every note is counted at the
CRM: each configuration must write each note exactly once.
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def load() -> float:
    return os.getloadavg()[0]


def run_config(name: str, workers: int, concurrency: int, args: argparse.Namespace,
               crm: Any, crm_url: str, home: Path) -> dict[str, Any]:
    from splice.store.inbox import Delivery, store_deliveries
    from tests import pg
    from tests.redis_service import PrivateRedis
    from tests.servekit import i2g_event

    crm.state.notes.clear()
    crm.state.idem.clear()
    crm.state.log.clear()
    folder = home / name
    folder.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    redis_server: PrivateRedis | None = None
    with pg.schema_url() as url:
        env = {**os.environ, "SPLICE_HOME": str(folder / "home"), "SPLICE_SECRET_KEY": KEY,
               "SPLICE_DATABASE_URL": url,
               "SPLICE_CONNECTORS_PATH": str(ROOT / "tests" / "fixtures" / "fakecrm.yaml")}
        env.pop("SPLICE_BROKER_URL", None)
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
                 "--requeue-after", "30"], env=env, cwd=ROOT, stdout=serve_log,
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
                                event_id=f"evt-{name}-{i}") for i in range(args.events)]
            deliveries = [Delivery("my-invoice2go", e["id"], "client.created", json.dumps(e))
                          for e in events]
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            load0 = load()
            started = time.monotonic()
            store_deliveries(store, deliveries)
            while not _done(store, args.events):
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"{name}: not done after {args.timeout}s")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
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
    once = len(notes) == args.events and set(notes.values()) == {1}
    return {"config": name, "workers": workers, "concurrency": concurrency,
            "events": args.events, "seconds": round(elapsed, 2),
            "events_per_second": round(args.events / elapsed, 1),
            "cpu_ms_per_event": round(1000 * cpu / args.events, 2),
            "each_note_once": once, "load_before": round(load0, 2)}


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
    with store._read() as conn:
        new = conn.exec_driver_sql("SELECT count(*) FROM inbox WHERE status = 'new'").scalar()
        ok = conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE status = 'succeeded'").scalar()
    return new == 0 and ok == count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=480)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=240.0)
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
    configs = [("serve", 0, 0), ("1x1", 1, 1), ("2x1", 2, 1), ("4x1", 4, 1), ("1x16", 1, 16)]
    results = []
    with serve(crm) as crm_url:
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
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()

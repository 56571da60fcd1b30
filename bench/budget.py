"""Budget-bound throughput: N OS processes sharing one HighLevel location's rate budget.

    python bench/budget.py                          # ~2 min: Redis, 1 / 2 / 4 processes
    python bench/budget.py --place postgres         # the PostgreSQL bucket instead of Redis
    python bench/budget.py --limit 20 --per 1 --seconds 20 --processes 1,2,4

The HighLevel sandbox runs on loopback with a limit of ``--limit`` requests per ``--per``
seconds per location (sliding window, 429 over it) and records when every API request
arrives. Each process (``tests/budget_hammer.py``: the connection's API client, as a recipe
step uses it) sends ``list_tags`` as fast as its budget allows; together they send
``--seconds`` worth of the budget. Reported per process count: the rate at the sandbox
(``limit`` / the median time between request i and request i + ``limit``: how long the budget
takes to serve a window's worth, whether requests come in bursts or evenly spaced), that rate
as a share of the budget, the most arrivals in any window, 429s seen by the sandbox and
failures seen by steps.

Baseline in the same run: the same processes with budgets of their own (``in-process``: what
PostgreSQL state without a shared budget did before), which exceed the API's limit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.budget_hammer import Arrivals, most_in_one_window  # noqa: E402

HAMMER = ROOT / "tests" / "budget_hammer.py"
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
CLIENT_ID, CLIENT_SECRET = "bench-budget-client", "bench-budget-secret-0d5e"


def connect(base_url: str) -> None:
    """``splice connect`` as a script: consent on the sandbox's page, install on the
    location, tokens stored (encrypted) in the state database."""
    from splice.connections.authorize import connect as oauth_connect
    from splice.plugins import get_registry
    from splice.store.database import Store
    from splice_connectors.ghl_users.sandbox_data import LOCATION_ID

    def browser(url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            parts = urlsplit(url)
            params = dict(parse_qsl(parts.query))
            answer = http.post(parts.path, data={**params, "target": LOCATION_ID,
                                                 "decision": "approve"})
            http.get(answer.headers["location"])

    connector = get_registry().connector("ghl_users")
    with Store.open() as store:
        oauth_connect(connector, store, name="my-highlevel", client_id=CLIENT_ID,
                      client_secret=CLIENT_SECRET, scopes=connector.scopes, base_url=base_url,
                      open_url=browser, timeout=10, config={"allow_private_network": True})


def run(n: int, args: argparse.Namespace, app: Arrivals, env: dict[str, str]) -> dict[str, Any]:
    rate = args.limit / args.per
    total = int(rate * args.seconds) + args.limit
    each = math.ceil(total / n)
    time.sleep(args.per + 0.5)  # the sandbox's window forgets the previous run
    with app.lock:
        app.seen.clear()
    start_at = time.time() + 2.5
    procs = [subprocess.Popen([sys.executable, str(HAMMER), "my-highlevel", str(each),
                               str(args.limit), f"{int(args.per * 1000)}ms", str(start_at)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(n)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=args.seconds * 10 + 120)
        if proc.returncode != 0:
            raise SystemExit(err[-2000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    with app.lock:
        seen = list(app.seen)
    times = sorted(t for t, _ in seen)
    # how long the budget takes to serve `limit` requests: the median time between request
    # i and request i + limit at the sandbox (a sliding window never lets them closer than
    # the window); bursts and even spacing measure alike
    gaps = [b - a for a, b in zip(times, times[args.limit:], strict=False)]
    per_second = args.limit / statistics.median(gaps) if gaps else 0.0
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {"processes": n, "requests": sum(r["ok"] for r in results), "arrivals": len(times),
            "per_second": per_second, "share": per_second / rate, "span": span,
            "most_in_window": most_in_one_window(times, args.per),
            "sandbox_429": sum(1 for _, s in seen if s == 429),
            "step_failures": sum(len(r["failed"]) for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--place", choices=["redis", "postgres"], default="redis")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--per", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--margin", help="SPLICE_BUDGET_MARGIN (default: splice's default)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    from splice.sandbox import SandboxConfig, serve
    from splice_connectors.ghl_users.sandbox import create_app

    home = tempfile.mkdtemp(prefix="splice-bench-budget-")
    os.environ.update(SPLICE_HOME=home, SPLICE_SECRET_KEY=KEY)
    prefix = f"splice-bench-{uuid.uuid4().hex[:8]}:"
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = None
    if args.place == "postgres":
        import sqlalchemy as sa

        base = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        os.environ["SPLICE_DATABASE_URL"] = sa.make_url(base).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        os.environ.pop("SPLICE_REDIS_URL", None)
        os.environ.pop("SPLICE_BROKER_URL", None)
    else:
        os.environ.setdefault("SPLICE_REDIS_URL", "redis://127.0.0.1:6379/0")
        os.environ["SPLICE_REDIS_PREFIX"] = prefix
    if args.margin is not None:
        os.environ["SPLICE_BUDGET_MARGIN"] = args.margin
    app = Arrivals(create_app(SandboxConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                            auto_approve=False,
                                            rate_limit=(args.limit, args.per))))
    rows = []
    try:
        with serve(app) as base_url:
            connect(base_url)
            for n in [int(x) for x in args.processes.split(",")]:
                rows.append({"budget": f"shared ({args.place})",
                             **run(n, args, app, dict(os.environ))})
                print(json.dumps(rows[-1]), flush=True)
            n = max(int(x) for x in args.processes.split(","))
            rows.append({"budget": "in-process (baseline)",
                         **run(n, args, app, {**os.environ, "BUDGET_IN_PROCESS": "1"})})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if admin is not None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            admin.dispose()
        if args.place == "redis":
            import redis

            client = redis.Redis.from_url(os.environ["SPLICE_REDIS_URL"])
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
            client.close()
    rate = args.limit / args.per
    print(f"\nbudget: {args.limit} per {args.per:g} s = {rate:g}/s per location; "
          f"{args.seconds:g} s of it per run; load average {os.getloadavg()[0]:.2f}\n")
    print("| budget | processes | requests | req/s | share of budget "
          "| most in any window | 429 at the sandbox | failed steps |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['budget']} | {r['processes']} | {r['requests']} | {r['per_second']:.2f} "
              f"| {r['share']:.1%} | {r['most_in_window']} (limit {args.limit}) "
              f"| {r['sandbox_429']} | {r['step_failures']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

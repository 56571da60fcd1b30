"""Where each microsecond of splice's read path goes, per record, measured in one process.

``python bench/breakdown.py [N]`` starts ``bench/api.py`` and times, on the same N records
(100 per page, default 100,000), each layer of a first poll on its own and then together:

1. the hand-written loop (httpx keep-alive + orjson): the floor both sides share;
2. ``ApiClient.iter_pages``: splice's request building, retries and pagination around it;
3. ``Plan.record_key`` over every record: the dedupe keys;
4. ``Store.seed_page`` per page: seen keys and checkpoint, one transaction a page;
5. ``Runner.run`` (the whole first poll), and what is left when 2-4 are subtracted.

Each measurement is the median of ``--reps`` runs (default 5). Nothing here is timed by the
test suite; ``bench/NOTES.md`` quotes a run of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench_run  # noqa: E402
import work  # noqa: E402


def timed(fn: Callable[[], Any], reps: int) -> float:
    runs = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    n, reps = args.n, args.reps
    with bench_run.api_server(lifetime=600) as url:
        bench_run.warm(url, n)
        rows: list[tuple[str, float]] = []

        def hand() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for _rows in work.hand_pages(client, n):
                    pass

        rows.append(("hand-written loop (HTTP + orjson)", timed(hand, reps)))
        runner = work.splice_runner(n, url)
        plan = runner.plan
        op = plan.operation
        client = runner.client(plan.recipe.trigger_connection, plan.connector)
        call = runner.prepare(op, plan.connector, plan.recipe.trigger_connection,
                              {"n": n})
        pages = [page.records for page in client.iter_pages(op, call)]

        def iter_pages() -> None:
            for _page in client.iter_pages(op, call):
                pass

        rows.append(("ApiClient.iter_pages (HTTP + orjson + pagination)",
                     timed(iter_pages, reps)))
        key = plan.record_key

        def keys() -> None:
            for records in pages:
                [(k, r) for k, r in ((key(r), r) for r in records) if k is not None]

        rows.append(("dedupe keys (Plan.record_key, keyed list)", timed(keys, reps)))
        keyed = [[key(r) for r in records] for records in pages]

        def seed() -> None:
            store = runner.store
            scope = f"breakdown-{time.monotonic_ns()}"  # a fresh trigger: every key is new
            for number, page_keys in enumerate(keyed):
                store.seed_page(scope, "t", page_keys, {"next": {"offset": number * 100}})

        rows.append(("Store.seed_page (seen keys + checkpoint, 1 tx a page)",
                     timed(seed, reps)))

        def whole() -> None:
            fresh = work.splice_runner(n, url)
            started = time.perf_counter()
            report = fresh.run(mode="once")
            whole.seconds.append(time.perf_counter() - started)  # type: ignore[attr-defined]
            assert report.seeded == n, report.errors
            fresh.close()

        whole.seconds = []  # type: ignore[attr-defined]
        for _ in range(reps):
            whole()
        total = statistics.median(whole.seconds)  # type: ignore[attr-defined]
        rows.append(("Runner.run, first poll (all of it)", total))
        runner.close()
    per = {name: seconds / n * 1e6 for name, seconds in rows}
    parts = list(per.values())
    rest = parts[4] - parts[1] - parts[2] - parts[3]
    print(f"{n:,} records, median of {reps}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'':58s} {'µs/record':>10s}")
    for name, value in per.items():
        print(f"{name:58s} {value:10.2f}")
    print(f"{'rest of Runner.run (loop, report, run/journal set-up)':58s} {rest:10.2f}")
    print(f"{'ratio hand / Runner.run':58s} {parts[0] / parts[4]:10.2f}")


if __name__ == "__main__":
    os.environ.setdefault("SPLICE_HOME", tempfile.mkdtemp(prefix="splice-breakdown-"))
    main()

"""One benchmark measurement in a fresh process; prints one JSON line.

``python bench/work.py BENCH IMPL N URL`` with BENCH in ``read``, ``readmap``,
``readmap_validate``, ``write``, ``post_threads``, ``post_async`` and IMPL ``splice`` or
``hand``. Only the measured work is timed (imports, state set-up and plan building are not);
``maxrss_kb`` is the process's peak resident set size (``ru_maxrss``).

The hand-written side is the strongest plain loop a user would write: one ``httpx.Client``
(keep-alive), pages decoded with orjson, bodies encoded with orjson.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
PAGE = 100
JSON = {"content-type": "application/json"}


# --------------------------------------------------------------------------- hand-written


def hand_pages(client: httpx.Client, n: int) -> Any:
    skip = 0
    while True:
        response = client.get(f"/d/{n}/records", params={"skip": skip, "limit": PAGE})
        response.raise_for_status()
        body = orjson.loads(response.content)
        rows = body["data"]
        yield rows
        skip += len(rows)
        if not rows or skip >= body["total"]:
            return


def hand_map(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["ref"] = row["id"]
    out["name"] = row["name"]
    out["email"] = row["email"]
    out["city"] = row["city"]
    out["score"] = row["score"]
    out["amount"] = row["amount"]
    return out


def hand(bench: str, n: int, url: str) -> tuple[float, int]:
    count = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        started = time.perf_counter()
        if bench == "read":
            for rows in hand_pages(client, n):
                for _row in rows:
                    count += 1
        elif bench in ("readmap", "readmap_validate"):
            for rows in hand_pages(client, n):
                for row in rows:
                    hand_map(row)
                    count += 1
        elif bench == "write":
            for rows in hand_pages(client, n):
                for row in rows:
                    client.post("/sink", content=orjson.dumps(hand_map(row)),
                                headers=JSON).raise_for_status()
                    count += 1
        else:
            raise SystemExit(f"unknown benchmark {bench}")
        return time.perf_counter() - started, count


def post_threads(n: int, url: str, threads: int) -> tuple[float, int]:
    """n POSTs from ``threads`` threads sharing one sync client (the concurrency probe)."""
    from concurrent.futures import ThreadPoolExecutor

    body = hand_map(json.loads(json.dumps(_row(1))))
    with httpx.Client(base_url=url, timeout=30,
                      limits=httpx.Limits(max_connections=threads)) as client:
        started = time.perf_counter()

        def one(_: int) -> None:
            client.post("/sink", json=body).raise_for_status()

        if threads == 1:
            for i in range(n):
                one(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, range(n)))
        return time.perf_counter() - started, n


def post_async(n: int, url: str, concurrency: int) -> tuple[float, int]:
    """n POSTs through one httpx.AsyncClient, ``concurrency`` at a time."""
    import asyncio

    body = hand_map(_row(1))

    async def main() -> float:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    (await client.post("/sink", json=body)).raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - started

    return asyncio.run(main()), n


def _row(i: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from api import record

    return record(i)


# --------------------------------------------------------------------------- splice


def splice_runner(n: int, url: str) -> Any:
    """A Runner for bench/recipe.yaml in a fresh state directory (not timed)."""
    home = tempfile.mkdtemp(prefix="splice-bench-")
    os.environ["SPLICE_HOME"] = home
    os.environ.setdefault("SPLICE_SECRET_KEY", "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA=")
    os.environ["SPLICE_LOAD_PLUGINS"] = ""  # only the bench connector below
    from splice import hookimpl, plugins
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner
    from splice.store.database import Store

    class BenchPlugin:
        @hookimpl
        def register_connectors(self, register: Any) -> None:
            register(HERE / "connector.yaml")

    plugins.reset()
    plugins.load_plugins()
    plugins.pm.register(BenchPlugin(), name="bench")
    registry = plugins.get_registry()
    store = Store.open()
    store.put_connection("bench", connector="benchapi", auth_type="none", base_url=url,
                         config={"allow_private_network": True})
    recipe = load_recipe(HERE / "recipe.yaml")
    recipe.vars["n"] = n
    plan = build_plan(recipe, registry, TemplateEngine(registry.filters),
                      connections={c.name: c for c in store.list_connections()})
    return Runner(plan, store, registry)


def with_mapping(runner: Any, validate: bool) -> None:
    """Render the step's compiled mapping for every polled record, the way the runner does
    before sending (context, defaults + mapping; with ``validate`` also the input schema),
    by wrapping ``event_key``, which the runner calls once per record."""
    from splice.run.steps import render_defaults

    step = runner.plan.steps[0]
    op = step.operation
    original = runner.event_key
    engine = runner.template_engine()

    def event_key(record: Any) -> Any:
        ctx = {**runner.base_context(), "trigger": record, "steps": {}}
        ctx["connection"] = runner.public_connection(step.connection, step.connector)
        if validate:
            runner.render_input(op, step.defaults, step.mapping, ctx, ("steps", 0, "with"))
        else:  # render_input without the schema check
            merged = render_defaults(engine, op.defaults, ctx, step.defaults)
            merged.update(step.mapping(ctx) or {})
        return original(record)

    runner.event_key = event_key


def splice(bench: str, n: int, url: str) -> tuple[float, int]:
    runner = splice_runner(n, url)
    if bench in ("readmap", "readmap_validate"):
        with_mapping(runner, validate=bench == "readmap_validate")
    started = time.perf_counter()
    if bench in ("read", "readmap", "readmap_validate"):
        report = runner.run(mode="once")  # first poll: every record deduped and remembered
        count = report.seeded
    elif bench == "write":
        report = runner.run(mode="once", backfill=True)  # every record becomes one POST
        count = report.events_succeeded
    else:
        raise SystemExit(f"unknown benchmark {bench}")
    seconds = time.perf_counter() - started
    if not report.ok or count != n:
        raise SystemExit(f"splice {bench}: {count} of {n} records; errors: {report.errors[:3]}")
    runner.close()
    return seconds, count


def main(argv: list[str]) -> None:
    bench, impl, n, url = argv[0], argv[1], int(argv[2]), argv[3]
    if bench == "post_threads":
        seconds, count = post_threads(n, url, int(impl))
    elif bench == "post_async":
        seconds, count = post_async(n, url, int(impl))
    elif impl == "splice":
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            seconds, count = splice(bench, n, url)
            profiler.disable()
            profiler.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            seconds, count = splice(bench, n, url)
    else:
        seconds, count = hand(bench, n, url)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"bench": bench, "impl": impl, "n": n, "seconds": seconds,
                      "records": count, "maxrss_kb": rss}))


if __name__ == "__main__":
    main(sys.argv[1:])

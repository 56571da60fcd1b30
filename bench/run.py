"""splice's benchmark: splice against the strongest hand-written httpx loop on the same API.

Run from the repository root (4-6 minutes; ``--quick`` for a 20-second smoke run)::

    pip install -r bench/requirements.txt      # matplotlib, httptools, uvloop
    python bench/run.py

It starts ``bench/api.py`` (uvicorn with httptools and uvloop on 127.0.0.1, killed at the end
and bounded by its own lifetime), runs every measurement in a fresh process (``bench/work.py``)
several times, splice and the hand-written loop interleaved, and writes ``bench/RESULTS.md``,
``bench/results.json`` and ``bench/records_per_second.png``. The load average of the machine
is recorded around every measurement (the machine may be shared). Earlier results against a
weaker baseline are kept in ``bench/history/`` and shown in RESULTS.md. Nothing here is part
of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
SPLICE = str(Path(PY).with_name("splice"))
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
TARGETS = {"read": 0.5, "readmap": 0.45, "readmap_validate": 0.4, "write": 0.9}
STARTUP_TARGETS = {"help": 0.15, "validate_cold": 0.5}
LABELS = {"read": "read (poll + dedupe + state)", "readmap": "read + 6-field mapping",
          "readmap_validate": "read + mapping + input validation", "write": "write (POST each)"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_server(lifetime: float) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([PY, str(HERE / "api.py"), str(port), "--lifetime", str(lifetime)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the benchmark API did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(bench: str, impl: str, n: int, url: str, env: dict[str, str] | None = None
            ) -> dict[str, Any]:
    out = subprocess.run([PY, str(HERE / "work.py"), bench, impl, str(n), url],
                         capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{bench}/{impl}/{n} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()[0]
    print(f"  {bench:18s} {impl:7s} n={n:<8d} {result['seconds']:8.3f} s  "
          f"{result['records'] / result['seconds']:10.0f} rec/s  "
          f"rss {result['maxrss_kb'] / 1024:6.1f} MB", flush=True)
    return result


def warm(url: str, n: int) -> None:
    """Render and cache every page once, so no run pays for the first rendering."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for skip in range(0, n, 100):
            client.get(f"/d/{n}/records", params={"skip": skip, "limit": 100})


def compare(bench: str, n: int, url: str, reps: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"hand": [], "splice": []}
    for _ in range(reps):
        for impl in ("hand", "splice"):  # interleaved, so drift hits both alike
            runs[impl].append(measure(bench, impl, n, url))
    med = {impl: statistics.median(r["seconds"] for r in rs) for impl, rs in runs.items()}
    pairs = [h["seconds"] / s["seconds"] for h, s in zip(runs["hand"], runs["splice"],
                                                         strict=True)]
    return {"bench": bench, "n": n, "reps": reps,
            "seconds": {k: [r["seconds"] for r in v] for k, v in runs.items()},
            "median": med, "ratio": med["hand"] / med["splice"],
            "pair_ratios": pairs, "load": [r["load"] for v in runs.values() for r in v],
            "rate": {k: n / v for k, v in med.items()}}


def startup(reps: int) -> dict[str, Any]:
    """Wall time of ``splice --help`` and ``splice validate`` on a real recipe, cold (a fresh
    manifest cache: every manifest the recipe uses is parsed and checked) and warm."""
    home = tempfile.mkdtemp(prefix="splice-bench-startup-")
    env = {**os.environ, "SPLICE_HOME": home, "SPLICE_SECRET_KEY": KEY,
           "SPLICE_CACHE_DIR": tempfile.mkdtemp(prefix="splice-bench-cache-")}
    # Python's default: compiled modules cached in __pycache__ (written by the warm-up runs
    # below), also where the environment turns it off (bench/NOTES.md has that figure).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    recipe = ROOT / "recipes" / "ghl_tags_to_invoice2go.yaml"
    subprocess.run([PY, "-c", _CONNECTIONS], env=env, check=True)

    def timed(args: list[str], cache: str) -> tuple[float, int]:
        started = time.perf_counter()
        done = subprocess.run(args, env={**env, "SPLICE_CACHE_DIR": cache},
                              capture_output=True, check=False)
        return time.perf_counter() - started, done.returncode

    warm_cache = env["SPLICE_CACHE_DIR"]
    timed([SPLICE, "--help"], warm_cache)  # the interpreter and packages in the file cache
    timed([SPLICE, "validate", str(recipe)], warm_cache)  # fills the manifest cache
    helps, cold, warm = [], [], []
    for _ in range(reps):  # interleaved, so drift hits all three alike
        helps.append(timed([SPLICE, "--help"], tempfile.mkdtemp(prefix="splice-cold-"))[0])
        cold.append(timed([SPLICE, "validate", str(recipe)],
                          tempfile.mkdtemp(prefix="splice-cold-")))
        warm.append(timed([SPLICE, "validate", str(recipe)], warm_cache))
    return {"help": helps, "help_median": statistics.median(helps),
            "validate_cold": [v[0] for v in cold],
            "validate_cold_median": statistics.median(v[0] for v in cold),
            "validate_warm": [v[0] for v in warm],
            "validate_warm_median": statistics.median(v[0] for v in warm),
            "validate_exit": max(v[1] for v in cold + warm),
            "validate_recipe": str(recipe.relative_to(ROOT)), "load": os.getloadavg()[0]}


# Connections the validated recipe names, with every scope its connectors know.
_CONNECTIONS = """
from splice.plugins import get_registry
from splice.store.database import Store
reg = get_registry(); store = Store.open()
for name, cid in (("my-highlevel", "ghl_users"), ("my-invoice2go", "invoice2go")):
    c = reg.connectors[cid]
    store.put_connection(name, connector=cid, auth_type=c.auth_type, base_url=c.base_url,
                         config={"scopes": c.scopes, "fields": {"locationId": "loc1",
                                 "companyId": "co1", "account_id": "acc1"}},
                         secret={"access_token": "x", "refresh_token": "y"})
"""


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    versions = {}
    for dist in ("splice", "httpx", "httpcore", "h11", "uvicorn", "starlette", "SQLAlchemy",
                 "jsonschema", "jsonschema-rs", "orjson", "Jinja2", "tenacity",
                 "pyrate-limiter", "httptools", "uvloop", "sniffio"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu, "cores": os.cpu_count(), "memory": mem, "versions": versions}


def chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -r bench/requirements.txt)")
        return False
    rows = results["compare"]
    labels = [LABELS[r["bench"]].replace(" (", "\n(") + f"\n{r['n']:,} records" for r in rows]
    fig, (rates, ratios) = plt.subplots(1, 2, figsize=(13, 5.2),
                                        gridspec_kw={"width_ratios": [3, 2]})
    xs = list(range(len(rows)))
    rates.bar([x - 0.2 for x in xs], [r["rate"]["hand"] for r in rows], 0.4,
              label="hand-written loop (httpx keep-alive + orjson)", color="#9aa5b1")
    rates.bar([x + 0.2 for x in xs], [r["rate"]["splice"] for r in rows], 0.4,
              label="splice", color="#2b6cb0")
    rates.set_xticks(xs, labels, fontsize=7)
    rates.set_yscale("log")
    rates.set_ylabel("records per second (log scale, median)")
    rates.legend(fontsize=8)
    rates.set_title("throughput")
    for x, r in zip(xs, rows, strict=True):
        pairs = r.get("pair_ratios") or [r["ratio"]]
        ratios.plot([x, x], [min(pairs), max(pairs)], color="#2b6cb0", linewidth=2)
        ratios.plot(x, r["ratio"], "o", color="#2b6cb0")
        ratios.text(x + 0.12, r["ratio"], f"{r['ratio']:.2f}x", va="center", fontsize=8)
        target = TARGETS.get(r["bench"])
        if target:
            ratios.plot([x - 0.3, x + 0.3], [target, target], color="#c53030", linewidth=1.5)
    ratios.plot([], [], color="#c53030", label="target")
    ratios.plot([], [], "o-", color="#2b6cb0", label="median (line: spread of the runs)")
    ratios.set_xticks(xs, [r["bench"] for r in rows], fontsize=8)
    ratios.set_ylim(0, 1.1)
    ratios.set_ylabel("splice / hand-written (1.0 = as fast)")
    ratios.legend(fontsize=8, loc="upper left")
    ratios.set_title("ratio to the hand-written loop")
    fig.suptitle(f"splice vs the strongest hand-written httpx loop, {results['machine']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def history(lines: list[str]) -> None:
    """Rows of earlier runs (bench/history/*.json), against the baseline of their day."""
    for path in sorted((HERE / "history").glob("*.json")):
        old = json.loads(path.read_text())
        about = old.get("note") or (
            "hand-written loop decoding with the standard `json` module, API on uvicorn's "
            "pure-Python h11 server (httptools and uvloop not installed). Not comparable with "
            "the table above.")
        lines += [f"### {path.stem}", "", f"Measured {old['machine']['date']}; {about}", "",
                  "| benchmark | records | hand-written | splice | ratio |",
                  "|---|---:|---:|---:|---:|"]
        for r in old["compare"]:
            lines.append(f"| {LABELS[r['bench']]} | {r['n']:,} | {r['median']['hand']:.2f} s "
                         f"| {r['median']['splice']:.2f} s | {r['ratio']:.2f}x |")
        lines.append("")


def report(results: dict[str, Any], path: Path, chart_file: str | None) -> None:
    m = results["machine"]
    loads = [x for r in results["compare"] for x in r.get("load", [])]
    lines = [
        "# splice benchmark results", "",
        f"Measured {m['date']} by `python bench/run.py` "
        f"({results['reps']} runs per measurement, medians; every run in a fresh process, "
        "splice and the hand-written loop interleaved). Numbers are from one real run on the "
        "machine below; rerun the command to refresh this file.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM; {m['platform']}; "
        f"Python {m['python']}. " + (
            f"1-minute load average during the throughput runs: {min(loads):.2f}–"
            f"{max(loads):.2f} (the machine is shared)." if loads else ""), "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
        "The API is `bench/api.py` (uvicorn with httptools and uvloop on 127.0.0.1 in its own "
        "process, pages rendered once and cached); 15-field records, 100 per page. The "
        "hand-written side is the strongest plain loop: one `httpx.Client` (keep-alive), pages "
        "decoded and bodies encoded with orjson. splice runs `bench/recipe.yaml` through "
        "`splice.run.runner.Runner` with a fresh SQLite state directory per run.", "",
        "## Throughput", "",
        "| benchmark | records | hand-written | splice | ratio | spread | target | |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["compare"]:
        target = TARGETS.get(r["bench"])
        pairs = r.get("pair_ratios") or [r["ratio"]]
        lines.append(
            f"| {LABELS[r['bench']]} | {r['n']:,} | {r['median']['hand']:.2f} s "
            f"({r['rate']['hand']:,.0f}/s) | {r['median']['splice']:.2f} s "
            f"({r['rate']['splice']:,.0f}/s) | {r['ratio']:.2f}x | {_spread(pairs)}x | "
            + (f">= {target}x | {verdict(r['ratio'] >= target)} |" if target else "info | |"))
    lines += [
        "", "ratio = hand-written time / splice time (median of each side; 1.0x: as fast as "
        "the hand-written loop). spread = lowest and highest ratio of the interleaved pairs of "
        "runs. Seconds of every run, each side:", ""]
    for r in results["compare"]:
        lines.append(f"- {r['bench']}: hand " + ", ".join(f"{x:.2f}" for x in r["seconds"]["hand"])
                     + "; splice " + ", ".join(f"{x:.2f}" for x in r["seconds"]["splice"]))
    mem = results["memory"]
    lines += ["", "## Memory (peak RSS of the read benchmark)", "",
              "| records | splice | hand-written |", "|---:|---:|---:|"]
    for n in sorted(mem["splice"], key=int):
        lines.append(f"| {int(n):,} | {mem['splice'][n] / 1024:.1f} MB | "
                     f"{mem['hand'][n] / 1024:.1f} MB |")
    small, big = sorted(mem["splice"], key=int)
    rss_ratio = mem["splice"][big] / mem["splice"][small]
    peak = mem["splice"][big] / 1024
    lines += ["", f"splice RSS at {int(big):,} / {int(small):,} records: **{rss_ratio:.2f}** "
              f"(target <= 1.2: {verdict(rss_ratio <= 1.2)}); peak {peak:.1f} MB (target < 100 "
              f"MB: {verdict(peak < 100)}); the {int(big):,}-record run took "
              f"{mem['seconds'][big]:.0f} s (median; pages beyond the server's 120 MB cache are "
              "rendered on demand).", ""]
    st = results["startup"]
    lines += [
        "## Startup (wall time, median)", "",
        "Cold: a fresh manifest cache (every manifest the recipe uses is parsed and checked); "
        "warm: the cache filled by an earlier run. Runs interleaved.", "",
        "| command | median | runs | target |", "|---|---:|---|---|",
        f"| `splice --help` | {st['help_median']:.3f} s | "
        + ", ".join(f"{x:.3f}" for x in st["help"])
        + f" | < {STARTUP_TARGETS['help']} s: "
        f"{verdict(st['help_median'] < STARTUP_TARGETS['help'])} |",
        f"| `splice validate {st['validate_recipe']}`, cold | {st['validate_cold_median']:.3f} s"
        " | " + ", ".join(f"{x:.3f}" for x in st["validate_cold"])
        + f" | < {STARTUP_TARGETS['validate_cold']} s: "
        f"{verdict(st['validate_cold_median'] < STARTUP_TARGETS['validate_cold'])} |",
        f"| `splice validate {st['validate_recipe']}`, warm | {st['validate_warm_median']:.3f} s"
        " | " + ", ".join(f"{x:.3f}" for x in st["validate_warm"]) + " | |",
        "", f"Every validate exited {st['validate_exit']} (0: the recipe is valid). Measured "
        "with Python's bytecode cache on (its default; the warm-up runs fill it).", "",
    ]
    if results.get("concurrency"):
        lines += [f"## Concurrency probe (hand-written, {results['sizes']['write']:,} POSTs to "
                  "the sink)", "",
                  "| client | median | POSTs/s |", "|---|---:|---:|"]
        for name, row in results["concurrency"].items():
            lines.append(f"| {name} | {row['median']:.2f} s | {row['rate']:,.0f} |")
        lines.append("")
    if chart_file:
        lines += [f"![records per second and ratios]({chart_file})", ""]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += ["## Analysis", "", notes.read_text().strip(), ""]
    lines += ["## History (earlier baselines)", "",
              "Earlier runs and their analysis are kept in `bench/history/` (results JSON and "
              "notes).", ""]
    history(lines)
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite RESULTS.md and the chart from results.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        results = json.loads(out.with_name("results.json").read_text())
        png = out.with_name("records_per_second.png")
        report(results, out, png.name if chart(results, png) else None)
        return
    reps = 1 if args.quick else max(3, args.reps)
    sizes = {"read": 100_000, "write": 5_000, "small": 10_000, "big": 1_000_000}
    if args.quick:
        sizes = {"read": 10_000, "write": 500, "small": 2_000, "big": 20_000}
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "reps": reps, "sizes": sizes}
    with api_server(lifetime=1800) as url:
        print(f"API at {url}; warming the page cache", flush=True)
        warm(url, sizes["read"])
        warm(url, sizes["write"])
        results["compare"] = []
        for bench, n in (("read", sizes["read"]), ("readmap", sizes["read"]),
                         ("readmap_validate", sizes["read"]), ("write", sizes["write"])):
            print(f"{bench}:", flush=True)
            results["compare"].append(compare(bench, n, url, reps))
        print("memory:", flush=True)
        memory: dict[str, Any] = {"splice": {}, "hand": {}, "seconds": {}}
        for n in (sizes["small"], sizes["big"]):
            runs = [measure("read", "splice", n, url) for _ in range(reps)]
            memory["splice"][str(n)] = statistics.median(r["maxrss_kb"] for r in runs)
            memory["seconds"][str(n)] = statistics.median(r["seconds"] for r in runs)
            memory["hand"][str(n)] = measure("read", "hand", n, url)["maxrss_kb"]
        results["memory"] = memory
        print("concurrency probe:", flush=True)
        results["concurrency"] = {}
        for name, bench, impl in (("sync, 1 thread", "post_threads", "1"),
                                  ("sync, 4 threads, one Client", "post_threads", "4"),
                                  ("sync, 8 threads, one Client", "post_threads", "8"),
                                  ("httpx.AsyncClient, 16 concurrent", "post_async", "16")):
            runs = [measure(bench, impl, sizes["write"], url) for _ in range(reps)]
            med = statistics.median(r["seconds"] for r in runs)
            results["concurrency"][name] = {"median": med, "rate": sizes["write"] / med}
    print("startup:", flush=True)
    results["startup"] = startup(max(5, reps))
    results["total_seconds"] = time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name("records_per_second.png")
    has_chart = chart(results, png)
    out.with_name("results.json").write_text(json.dumps(results, indent=1))
    report(results, out, png.name if has_chart else None)
    print(f"wrote {out} in {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()

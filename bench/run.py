"""splice's benchmark: splice against a hand-written httpx loop on the same local API.

Run from the repository root (about 8 minutes; ``--quick`` for a 1-minute smoke run)::

    pip install -r bench/requirements.txt      # matplotlib, for the chart
    python bench/run.py

It starts ``bench/api.py`` (uvicorn on 127.0.0.1, killed at the end and bounded by its own
lifetime), runs every measurement in a fresh process (``bench/work.py``) several times, and
writes ``bench/RESULTS.md``, ``bench/results.json`` and ``bench/records_per_second.png``.
Nothing here is part of the test suite.
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
TARGETS = {"read": 0.5, "readmap": 0.35, "write": 0.8}
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
    return {"bench": bench, "n": n, "reps": reps,
            "seconds": {k: [r["seconds"] for r in v] for k, v in runs.items()},
            "median": med, "ratio": med["hand"] / med["splice"],
            "rate": {k: n / v for k, v in med.items()}}


def startup(reps: int) -> dict[str, Any]:
    """Wall time of ``splice --help`` and ``splice validate`` on a real recipe."""
    home = tempfile.mkdtemp(prefix="splice-bench-startup-")
    env = {**os.environ, "SPLICE_HOME": home, "SPLICE_SECRET_KEY": KEY}
    recipe = ROOT / "recipes" / "ghl_tags_to_invoice2go.yaml"
    subprocess.run([PY, "-c", _CONNECTIONS], env=env, check=True)

    def timed(args: list[str]) -> tuple[float, int]:
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, check=False)
        return time.perf_counter() - started, done.returncode

    timed([SPLICE, "--help"])  # warm the file cache
    helps = [timed([SPLICE, "--help"])[0] for _ in range(reps)]
    validates = [timed([SPLICE, "validate", str(recipe)]) for _ in range(reps)]
    return {"help": helps, "help_median": statistics.median(helps),
            "validate": [v[0] for v in validates],
            "validate_median": statistics.median(v[0] for v in validates),
            "validate_exit": validates[-1][1], "validate_recipe": str(recipe.relative_to(ROOT))}


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
                 "jsonschema", "Jinja2", "tenacity", "pyrate-limiter", "httptools", "uvloop",
                 "sniffio"):
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
    labels = [LABELS[r["bench"]] + f"\n({r['n']:,} records)" for r in rows]
    hand = [r["rate"]["hand"] for r in rows]
    splice = [r["rate"]["splice"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], hand, 0.4, label="hand-written httpx loop", color="#9aa5b1")
    ax.bar([x + 0.2 for x in xs], splice, 0.4, label="splice", color="#2b6cb0")
    for x, r in zip(xs, rows, strict=True):
        ax.text(x + 0.2, r["rate"]["splice"], f"{r['ratio']:.2f}x", ha="center",
                va="bottom", fontsize=9)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("records per second (log scale, median)")
    ax.set_title(f"splice vs hand-written httpx, {results['machine']['date']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def report(results: dict[str, Any], path: Path, chart_file: str | None) -> None:
    m = results["machine"]
    lines = [
        "# splice benchmark results", "",
        f"Measured {m['date']} by `python bench/run.py` "
        f"({results['reps']} runs per measurement, medians; every run in a fresh process, "
        "splice and the hand-written loop interleaved). Numbers are from one real run on the "
        "machine below; rerun the command to refresh this file.", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM; {m['platform']}; "
        f"Python {m['python']}.", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
        "The API is `bench/api.py` (uvicorn on 127.0.0.1 in its own process, pages rendered "
        "once and cached); 15-field records, 100 per page. splice runs "
        "`bench/recipe.yaml` through `splice.run.runner.Runner` with a fresh SQLite state "
        "directory per run.", "",
        "## Throughput", "",
        "| benchmark | records | hand-written | splice | ratio | target | |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["compare"]:
        target = TARGETS.get(r["bench"])
        lines.append(
            f"| {LABELS[r['bench']]} | {r['n']:,} | {r['median']['hand']:.2f} s "
            f"({r['rate']['hand']:,.0f}/s) | {r['median']['splice']:.2f} s "
            f"({r['rate']['splice']:,.0f}/s) | {r['ratio']:.2f}x | "
            + (f">= {target}x | {verdict(r['ratio'] >= target)} |" if target else "info | |"))
    mem = results["memory"]
    lines += [
        "", "ratio = hand-written time / splice time (1.0x: as fast as the hand-written loop).",
        "", "## Memory (peak RSS of the read benchmark)", "",
        "| records | splice | hand-written |", "|---:|---:|---:|",
    ]
    for n in sorted(mem["splice"], key=int):
        lines.append(f"| {int(n):,} | {mem['splice'][n] / 1024:.1f} MB | "
                     f"{mem['hand'][n] / 1024:.1f} MB |")
    small, big = sorted(mem["splice"], key=int)
    rss_ratio = mem["splice"][big] / mem["splice"][small]
    lines += ["", f"splice RSS at {int(big):,} / {int(small):,} records: **{rss_ratio:.2f}** "
              f"(target <= 1.2: {verdict(rss_ratio <= 1.2)}); the {int(big):,}-record run "
              f"took {mem['seconds'][big]:.0f} s (median).", ""]
    s = results["startup"]
    lines += [
        "## Startup (wall time, median)", "",
        "| command | median | runs | target |", "|---|---:|---|---|",
        f"| `splice --help` | {s['help_median']:.3f} s | "
        + ", ".join(f"{x:.3f}" for x in s["help"])
        + f" | < 0.3 s: {verdict(s['help_median'] < 0.3)} |",
        f"| `splice validate {s['validate_recipe']}` | {s['validate_median']:.3f} s | "
        + ", ".join(f"{x:.3f}" for x in s["validate"]) + f" | (exit {s['validate_exit']}) |",
        "",
    ]
    if results.get("concurrency"):
        lines += [f"## Concurrency probe (hand-written, {results['sizes']['write']:,} POSTs to "
                  "the sink)", "",
                  "| client | median | POSTs/s |", "|---|---:|---:|"]
        for name, row in results["concurrency"].items():
            lines.append(f"| {name} | {row['median']:.2f} s | {row['rate']:,.0f} |")
        lines.append("")
    if chart_file:
        lines += [f"![records per second]({chart_file})", ""]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += ["## Analysis", "", notes.read_text().strip(), ""]
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

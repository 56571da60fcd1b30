"""Webhook ingest of `splice serve` against a bare Starlette endpoint, on loopback.

    python bench/serve_ingest.py                 # about a minute; prints a results table
    python bench/serve_ingest.py --json out.json # and writes the numbers

Both servers run as separate processes under the same uvicorn settings: `splice serve` (every
delivery's HMAC signature verified, the body checked, the delivery committed to the SQLite
inbox before the 200) and a Starlette app that reads the body and answers 200. One load
generator (asyncio, raw HTTP/1.1 keep-alive connections, requests signed in advance) measures:

1. the sustained rate: N signed deliveries, `--concurrency` at a time, as fast as they are
   acknowledged; `--runs` pairs of runs, bare and serve interleaved so both see the same load
   on the machine; the ratio is the median of the pairs' ratios;
2. the acknowledgement latency at half of serve's sustained rate (open loop: requests are
   sent on a schedule, latency counted from the scheduled time), p50/p99.

At the end every delivery serve acknowledged must be in its inbox (counted in the database).
No recipe listens, so the numbers are ingest only (processing is measured by the scheduler
benchmark and the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_bench-secret-0123456789abcdef"
KEY = "rHYfq5Qxv6l1L0XWm2m4oXq3r7tDk1cW8m1Jb0hT9yA="
BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hook(request):
    await request.body()
    return JSONResponse({"status": "accepted"})

app = Starlette(routes=[Route("/hooks/{connection}", hook, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, server_header=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_requests(port: int, count: int, prefix: str) -> list[bytes]:
    """Raw HTTP requests of ``count`` distinct signed client.created deliveries."""
    out = []
    stamp = str(int(time.time()))
    for i in range(count):
        event = {"id": f"{prefix}-{i:07d}", "type": "client.created",
                 "created_at": "2026-05-03T15:00:01Z", "account_id": "24379237",
                 "api_version": "v1",
                 "data": {"object": {"id": f"c-{prefix}-{i}", "name": f"Client {i}",
                                     "email": f"client{i}@example.com"}}}
        body = json.dumps(event, separators=(",", ":")).encode()
        digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + body,
                          hashlib.sha256).hexdigest()
        head = (f"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Webhook-Id: {event['id']}\r\nX-Webhook-Event: client.created\r\n"
                f"X-Webhook-Timestamp: {stamp}\r\nX-Webhook-Signature: v1={digest}\r\n\r\n")
        out.append(head.encode() + body)
    return out


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def closed_loop(port: int, requests: list[bytes], concurrency: int
                      ) -> tuple[float, list[float], dict[int, int]]:
    """Send everything, ``concurrency`` at a time: (seconds, latencies, status counts)."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            request = queue.pop()
            start = time.perf_counter()
            status = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses


async def open_loop(port: int, requests: list[bytes], rate: float, connections: int
                    ) -> tuple[list[float], dict[int, int]]:
    """Send request i at t0 + i / rate; latency from that scheduled time."""
    t0 = time.perf_counter() + 0.2
    next_index = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while next_index[0] < len(requests):
            i = next_index[0]
            next_index[0] += 1
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            status = await _exchange(reader, writer, requests[i])
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, statuses


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited with {proc.returncode}")
        try:
            httpx.request("GET" if path == "/healthz" else "POST", f"http://127.0.0.1:{port}"
                          f"{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="splice-bench-serve-"))
    env = {**os.environ, "SPLICE_HOME": str(home), "SPLICE_SECRET_KEY": KEY,
           "SPLICE_LOAD_PLUGINS": "invoice2go"}
    os.environ.update(env)
    from splice.store.database import Store

    store = Store.open()
    store.put_connection("bench", connector="invoice2go", auth_type="oauth2",
                         base_url="http://127.0.0.1:9", config={},
                         secret={"webhook_secret": SECRET})
    serve_port, bare_port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "splice", "serve", "--port", str(serve_port),
                          "--log-level", "warning"], env=env, cwd=ROOT,
                         stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)], env=env, cwd=ROOT)]
    results: dict[str, Any] = {"deliveries": args.deliveries,
                               "concurrency": args.concurrency, "runs": args.runs}
    try:
        wait_ready(serve_port, "/healthz", procs[0])
        wait_ready(bare_port, "/hooks/warm", procs[1])
        sent_to_serve = 0
        ports = {"bare": bare_port, "serve": serve_port}
        rates: dict[str, list[float]] = {"bare": [], "serve": []}
        p99s: dict[str, list[float]] = {"bare": [], "serve": []}
        for run in range(args.runs):  # interleaved: both see the same machine load
            for name, port in ports.items():
                requests = signed_requests(port, args.deliveries, f"{name}{run}")
                seconds, latencies, statuses = asyncio.run(
                    closed_loop(port, requests, args.concurrency))
                if statuses != {200: args.deliveries}:
                    raise SystemExit(f"{name}: unexpected answers {statuses}")
                rates[name].append(args.deliveries / seconds)
                p99s[name].append(pct(latencies, 0.99))
                if name == "serve":
                    sent_to_serve += args.deliveries
        for name in ports:
            results[name] = {"rate": statistics.median(rates[name]), "rates": rates[name],
                             "saturated_p99_ms": statistics.median(p99s[name]) * 1000}
        results["ratios"] = [s / b for s, b in zip(rates["serve"], rates["bare"], strict=True)]
        half = results["serve"]["rate"] / 2
        count = int(half * args.latency_seconds)
        for name, port in ports.items():
            requests = signed_requests(port, count, f"{name}-paced")
            latencies, statuses = asyncio.run(open_loop(port, requests, half,
                                                        args.concurrency))
            if statuses != {200: count}:
                raise SystemExit(f"{name}: unexpected answers {statuses}")
            results[name].update({"paced_rate": half,
                                  "paced_p50_ms": pct(latencies, 0.50) * 1000,
                                  "paced_p99_ms": pct(latencies, 0.99) * 1000})
            if name == "serve":
                sent_to_serve += count
        with store._read() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM inbox").scalar_one()
        results["serve"]["stored"] = stored
        results["serve"]["acknowledged"] = sent_to_serve
        if stored != sent_to_serve:
            raise SystemExit(f"only {stored} of {sent_to_serve} acknowledged deliveries are "
                             "in the inbox")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
        store.close()
    ratio = statistics.median(results["ratios"])  # of the interleaved pairs
    results["ratio"] = ratio
    print(f"{'':28}{'bare Starlette':>16}{'splice serve':>16}")
    print(f"{'deliveries/s (sustained)':28}{results['bare']['rate']:16.0f}"
          f"{results['serve']['rate']:16.0f}   ratio {ratio:.2f}x (target >= 0.5x)")
    print(f"{'p99 ms at saturation':28}{results['bare']['saturated_p99_ms']:16.1f}"
          f"{results['serve']['saturated_p99_ms']:16.1f}")
    print(f"{'p50 ms at ' + format(half, '.0f') + '/s':28}{results['bare']['paced_p50_ms']:16.1f}"
          f"{results['serve']['paced_p50_ms']:16.1f}")
    print(f"{'p99 ms at ' + format(half, '.0f') + '/s':28}{results['bare']['paced_p99_ms']:16.1f}"
          f"{results['serve']['paced_p99_ms']:16.1f}   (target < 50 ms)")
    print(f"every acknowledged delivery stored: {results['serve']['stored']} of "
          f"{results['serve']['acknowledged']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

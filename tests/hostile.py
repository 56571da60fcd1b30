"""Shared by the hostile-input tests: a CLI run measured in its own process, and an API whose
data and answers try to break splice (served over real loopback HTTP).

``measure(...)`` runs ``python -m splice ...`` in a subprocess capped at 1 GiB of address
space (a regression fails there instead of taking the machine), and reports its exit code,
output, wall time, CPU time and peak resident memory (``ru_maxrss`` of the process itself).

The API (``create_app``) lists ``state.items`` two per page with a cursor, or, with
``state.repeat``, sends the first page forever under a new cursor each time; ``POST
/items/{id}/notes`` records what arrived (``state.log``); ``state.echo_auth`` makes it answer
400 with an error message that echoes the Authorization header, plain and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from splice import hookimpl

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "SEKRIT-4f9a2c71-zq88-PLUMTREE"
_WRAPPER = """
import atexit, resource, sys
def report():
    # VmHWM: the peak of this program's own memory (ru_maxrss would carry over the forking
    # test process's peak: Linux keeps it across execve)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(f"\\n@maxrss {peak} {usage.ru_utime + usage.ru_stime}\\n")
atexit.register(report)
sys.argv = ["splice", *sys.argv[1:]]
from splice.cli import main
main()
"""
CAP = 1 << 30  # address space of a measured CLI process


@dataclass
class Measured:
    """``seconds`` is wall time; ``cpu`` the process's own CPU seconds (what the "under 2 s"
    checks use: on a shared 2-core machine the wall time also counts waiting for a core)."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    rss_mb: float
    cpu: float = 0.0

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def measure(*args: str, cwd: Path | None = None, timeout: float = 60) -> Measured:
    """``splice ARGS`` in its own (capped) process: exit code, output, seconds, peak MB."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=dict(os.environ),
                          preexec_fn=_cap)
    seconds = time.monotonic() - started
    rss = cpu = 0.0
    lines = []
    for line in done.stderr.splitlines():
        if line.startswith("@maxrss "):
            rss, cpu = int(line.split()[1]) / 1024, float(line.split()[2])
        elif line.strip():
            lines.append(line)
    return Measured(done.returncode, done.stdout, "\n".join(lines), seconds, rss, cpu)


class HostilePlugin:
    @hookimpl
    def register_connectors(self, register: Any) -> None:
        register(FIXTURES / "hostile.yaml")


def items(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"i{i}", "name": f"Item {i}", "count": i, **extra} for i in range(1, n + 1)]


def create_app(token: str) -> Starlette:
    async def listing(request: Request) -> Response:
        state = request.app.state
        state.log.append(("GET", request.url.path, dict(request.query_params), None))
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"message": "bad token"}, status_code=401)
        cursor = request.query_params.get("cursor")
        start = int(cursor[1:]) if cursor else 0
        if state.repeat:  # a new cursor every time, the same records every time
            return JSONResponse({"items": state.items[:2], "next": f"c{start + 2}"})
        page = state.items[start:start + 2]
        more = start + 2 < len(state.items)
        return JSONResponse({"items": page, "next": f"c{start + 2}" if more else None})

    async def notes(request: Request) -> Response:
        state = request.app.state
        body = await request.body()
        state.log.append(("POST", request.url.path, dict(request.headers), body))
        auth = request.headers.get("authorization", "")
        if state.echo_auth:
            encoded = base64.b64encode(auth.removeprefix("Bearer ").encode()).decode()
            return JSONResponse({"error": {
                "message": f"invalid credentials: {auth} (as sent: {encoded})",
                "headers": {"Authorization": auth}}}, status_code=400)
        return JSONResponse({"id": f"n{len(state.log)}", **json.loads(body or b"{}")},
                            status_code=201)

    app = Starlette(routes=[Route("/api/v1/items", listing),
                            Route("/api/v1/items/{id}/notes", notes, methods=["POST"])])
    app.state.items = items(4)
    app.state.repeat = False
    app.state.echo_auth = False
    app.state.log = []
    return app


def posts(app: Starlette) -> list[tuple[str, str, Any, Any]]:
    return [entry for entry in app.state.log if entry[0] == "POST"]


def recipe(path: Path, *steps: str, trigger: str = "") -> Path:
    """A recipe on the hostile connector: the trigger, then the given steps (YAML text)."""
    path.write_text("name: hostile test\ntrigger: {use: hostile.item_seen, connection: hostile"
                    + (", " + trigger if trigger else "") + "}\nsteps:\n" + "".join(steps))
    return path


def send_step(**fields: str) -> str:
    """A step sending one note per event, with ``fields`` as its ``with:`` (YAML values)."""
    body = "".join(f"      {k}: {v}\n" for k, v in fields.items())
    return ("  - use: hostile.send_item\n    connection: hostile\n    with:\n"
            "      id: \"{{ trigger.id }}\"\n" + body)


def lines_of(*texts: str) -> Iterator[str]:
    for text in texts:
        yield from text.splitlines()

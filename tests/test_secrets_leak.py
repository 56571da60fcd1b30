"""No token, code or client secret ever leaves the encrypted column.

Connections are made with the real ``splice connect`` (a subprocess; this file plays the
browser), recipes run with ``--verbose`` (as subprocesses and in-process), tokens are rotated
on the way (a refresh on 401), and failures are provoked (a revoked grant, a refused code
exchange, an unreachable token endpoint). Everything the runs produced is then searched for
every secret seen: stdout and stderr, every log record created in this process (raw, before
any redaction filter), exception messages and tracebacks, every row of every table of the
state database (except ``connections.secret``), and the raw bytes of every file in
``$SPLICE_HOME``. Token strings come from decrypting the store; the sandboxes keep digests
only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest

from splice.connections.authorize import connect
from splice.errors import SpliceError
from splice.plugins import get_registry
from splice.sandbox import SandboxConfig, load_factory, serve
from splice.secrets import REDACTOR
from splice.store.database import Store

from .conftest import ROOT, invoke

CLIENT_ID = "splice-leak-tests"
SECRETS = {"ghl_users": "ghl-client-secret-LEAK-5d1e", "invoice2go": "i2g-client-secret-LEAK-9b2c"}
NAMES = {"ghl_users": "my-highlevel", "invoice2go": "my-invoice2go"}

SMALL_RECIPES = {
    "ghl_users": """\
name: leak ghl users
trigger: {use: ghl_users.user_created, connection: my-highlevel}
steps:
  - use: ghl_users.get_user
    connection: my-highlevel
    with: {userId: "{{ trigger.id }}"}
""",
    "invoice2go": """\
name: leak i2g clients
trigger: {use: invoice2go.client_created, connection: my-invoice2go}
steps:
  - use: invoice2go.get_client
    connection: my-invoice2go
    with: {client_id: "{{ trigger.id }}"}
""",
}


def browse(url: str, codes: list[str]) -> None:
    """The browser, through urllib (which logs nothing): consent, then the redirect home."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        urllib.request.build_opener(Stop).open(url, timeout=10)
        raise AssertionError("the sandbox did not redirect")
    except urllib.error.HTTPError as answer:
        location = answer.headers["Location"]
    codes.extend(parse_qs(urlsplit(location).query).get("code", []))
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(location, timeout=10).read()


@dataclass
class Evidence:
    """Everything produced (texts by label) and every secret seen."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    records: int = 0  # log records seen

    def add(self, label: str, text: str) -> None:
        self.texts.append((label, text))

    def harvest(self, store: Store) -> None:
        """The current tokens and client secrets of every connection (they rotate)."""
        for record in store.list_connections():
            for key, value in record.secret.items():
                if isinstance(value, str) and value:
                    self.secrets.add(value)
                    if key == "client_secret":
                        raw = f"{record.config['client_id']}:{value}".encode()
                        self.secrets.add(base64.b64encode(raw).decode())

    def forms(self) -> set[str]:
        out = set()
        for s in self.secrets:
            out |= {s, quote(s, safe=""), quote_plus(s)}
        return {s for s in out if len(s) >= 6}


@pytest.fixture
def world(splice_home: Path) -> Iterator[tuple[dict[str, str], Evidence]]:
    """Both sandboxes, and every log record this process creates (raw)."""
    evidence = Evidence()
    old_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)  # read now: a redacting filter edits it later
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        evidence.add(f"log record {record.name}", text)
        evidence.records += 1
        return record

    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    logging.setLogRecordFactory(factory)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with contextlib.ExitStack() as stack:
            urls = {}
            for cid, secret in SECRETS.items():
                config = SandboxConfig(client_id=CLIENT_ID, client_secret=secret,
                                       rate_limit=(100_000, 60.0),
                                       extra={"token_rate_limit": (100_000, 60.0)})
                app = load_factory(get_registry().connector(cid))(config)
                urls[cid] = stack.enter_context(serve(app))
            evidence.secrets |= set(SECRETS.values())
            yield urls, evidence
    finally:
        logging.setLogRecordFactory(old_factory)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def cli(evidence: Evidence, label: str, *args: str, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``splice --verbose ARGS`` in a fresh process; its output becomes evidence."""
    done = subprocess.run([sys.executable, "-m", "splice", "--verbose", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env or dict(os.environ))
    evidence.add(f"{label} (stdout)", done.stdout)
    evidence.add(f"{label} (stderr)", done.stderr)
    return done


def cli_connect(evidence: Evidence, cid: str, url: str, cwd: Path, codes: list[str]) -> None:
    env = {**os.environ, f"SPLICE_{cid.upper()}_CLIENT_ID": CLIENT_ID,
           f"SPLICE_{cid.upper()}_CLIENT_SECRET": SECRETS[cid]}
    proc = subprocess.Popen([sys.executable, "-m", "splice", "--verbose", "connect", cid,
                             "--name", NAMES[cid], "--base-url", url, "--no-browser",
                             "--timeout", "30", "--allow-private-network"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env, cwd=cwd)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("http"), first
    browse(first.strip(), codes)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    evidence.add(f"connect {cid} (stdout)", first + out)
    evidence.add(f"connect {cid} (stderr)", err)


def in_process(evidence: Evidence, label: str, *args: str) -> Any:
    """The CLI in this process, as a fresh process would see it (nothing pre-registered with
    the redactor), so the redactor cannot hide what the code itself would have printed."""
    REDACTOR.clear()
    result = invoke("--verbose", *args)
    evidence.add(f"{label} (output)", result.output)
    evidence.add(f"{label} (stderr)", result.stderr)
    return result


def dump_database(path: Path) -> str:
    """Every row of every table, except the encrypted ``connections.secret`` column."""
    lines = []
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = db.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                cells = {c: v for c, v in zip(columns, row, strict=True)
                         if not (table == "connections" and c == "secret")}
                lines.append(f"{table}: " + repr({c: v.decode("latin-1")
                                                  if isinstance(v, bytes) else v
                                                  for c, v in cells.items()}))
    assert any(line.startswith("connections:") for line in lines)
    return "\n".join(lines)


def assert_no_leak(evidence: Evidence, home: Path) -> None:
    secrets = evidence.forms()
    assert len(secrets) >= 10
    texts = list(evidence.texts)
    assert evidence.records > 0
    texts.append(("database rows", dump_database(home / "splice.db")))
    leaks = [(label, s[:12] + "...") for label, text in texts for s in secrets if s in text]
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        leaks += [(f"file {path.name}", s[:12] + "...") for s in secrets if s.encode() in data]
    assert leaks == [], leaks


def test_no_secret_in_any_output_log_record_or_database_row(
        world: tuple[dict[str, str], Evidence], splice_home: Path, tmp_path: Path) -> None:
    urls, evidence = world
    codes: list[str] = []
    for cid, url in urls.items():
        cli_connect(evidence, cid, url, tmp_path, codes)
    store = Store.open()
    evidence.harvest(store)
    evidence.secrets |= set(codes)
    assert len(codes) == 2

    recipes = {}
    for cid, text in SMALL_RECIPES.items():
        recipes[cid] = tmp_path / f"{cid}.yaml"
        recipes[cid].write_text(text)
        done = cli(evidence, f"run {cid}", "run", str(recipes[cid]), "--backfill",
                   "--max-pages", "1", "--json")
        assert done.returncode == 0, done.stderr
        assert "HTTP GET" in done.stderr and "Bearer ***" in done.stderr  # traces were on

    with httpx.Client(timeout=10) as http:  # every access token dies: refresh on 401
        for url in urls.values():
            http.post(f"{url}/__test__/expire-tokens").raise_for_status()
    for cid, path in recipes.items():  # the trigger's poll meets a 401 and refreshes
        done = cli(evidence, f"run {cid} after expiry", "run", str(path), "--max-pages", "1")
        assert done.returncode == 0, done.stderr
        evidence.harvest(store)
    assert all(r.config.get("last_refresh_at") != r.config.get("connected_at")
               for r in store.list_connections())  # both really refreshed

    for name in NAMES.values():
        for command in (("connections", "test", name), ("connections", "refresh", name),
                        ("connections", "show", name)):
            result = in_process(evidence, " ".join(command), *command)
            assert result.exit_code == 0, result.output
            evidence.harvest(store)
    in_process(evidence, "connections list", "connections", "list")
    in_process(evidence, "connections list --json", "connections", "list", "--json")

    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        # Every step rendered (a dry run sends only the trigger's poll), then a real run:
        # with --backfill when that stays small (the APIs' rate budgets are real here).
        dry = in_process(evidence, f"recipe {recipe.name} --dry-run", "run", str(recipe),
                         "--dry-run", "--backfill", "--max-pages", "1", "--json")
        events_new = json.loads(dry.stdout)["events_new"] if dry.exit_code != 2 else 0
        backfill = ["--backfill"] if events_new <= 20 else []
        in_process(evidence, f"recipe {recipe.name}", "run", str(recipe), *backfill,
                   "--max-pages", "1", "--json")
        evidence.harvest(store)
    in_process(evidence, "runs list", "runs", "list", "--json")

    # the grant is revoked at the provider: the next run fails with a re-auth error
    secret = store.require_connection("my-invoice2go").secret
    with httpx.Client(timeout=10) as http:
        http.post(f"{urls['invoice2go']}/oauth/revoke", auth=(CLIENT_ID, SECRETS["invoice2go"]),
                  data={"token": secret["refresh_token"]}).raise_for_status()
    done = cli(evidence, "run after revocation", "run", str(recipes["invoice2go"]))
    assert done.returncode == 1 and "needs to be re-authorised" in done.stderr
    in_process(evidence, "connections list after revocation", "connections", "list")
    in_process(evidence, "events", "run", str(ROOT / "recipes" / "connection_health.yaml"),
               "--json")
    store.close()
    assert_no_leak(evidence, splice_home)


def test_errors_and_exceptions_carry_no_secret(world: tuple[dict[str, str], Evidence],
                                              splice_home: Path) -> None:
    urls, evidence = world
    registry = get_registry()
    store = Store.open()
    codes: list[str] = []
    failures: list[BaseException] = []

    def opener(url: str) -> None:
        browse(url, codes)

    def expect_failure(label: str, fn: Any) -> None:
        REDACTOR.clear()
        try:
            fn()
        except SpliceError as exc:
            failures.append(exc)
            evidence.add(f"{label}: str", str(exc))
            evidence.add(f"{label}: repr", repr(exc))
            evidence.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        else:
            raise AssertionError(f"{label}: no error")

    for cid, url in urls.items():
        connector = registry.connector(cid)
        kwargs: dict[str, Any] = dict(client_id=CLIENT_ID, client_secret=SECRETS[cid],
                                      scopes=connector.scopes, base_url=url, open_url=opener,
                                      timeout=10, config={"allow_private_network": True})

        class Replay(httpx.HTTPTransport):  # the code is sent twice: the second is refused
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                super().handle_request(request).close()
                return super().handle_request(request)

        expect_failure(f"{cid} code replay", lambda c=connector, k=kwargs: connect(
            c, store, name="replayed", transport=Replay(), **k))
        connect(connector, store, name=NAMES[cid], **kwargs)
        evidence.harvest(store)

        from splice.connections.client import connection_client
        from splice.http.request import prepare_call

        def call(cid: str = cid, transport: Any = None) -> None:
            c = registry.connector(cid)
            record = store.require_connection(NAMES[cid])
            op = c.operations[c.test_operation]
            fields = record.config.get("fields", {})
            payload = {k: fields[k] for k in op.input.get("required", []) if k in fields}
            with connection_client(c, record, store, registry, transport=transport,
                                   sleep=lambda s: None, max_attempts=1) as client:
                client.send(op, prepare_call(op, c, payload, base_url=client.base_url))

        class Unreachable(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                if request.url.path == "/oauth/token":
                    raise httpx.ReadTimeout("token endpoint timed out", request=request)
                return super().handle_request(request)

        with httpx.Client(timeout=10) as http:
            http.post(f"{url}/__test__/expire-tokens").raise_for_status()
        expect_failure(f"{cid} refresh timeout", lambda f=call: f(transport=Unreachable()))
        with httpx.Client(timeout=10) as http:
            if cid == "invoice2go":
                secret = store.require_connection(NAMES[cid]).secret
                http.post(f"{url}/oauth/revoke", auth=(CLIENT_ID, SECRETS[cid]),
                          data={"token": secret["refresh_token"]}).raise_for_status()
            else:
                http.post(f"{url}/__test__/reset").raise_for_status()
        expect_failure(f"{cid} revoked grant", call)
    evidence.secrets |= set(codes)
    assert len(failures) == 6
    assert any("invalid_grant" in str(f) for f in failures)
    store.close()
    assert_no_leak(evidence, splice_home)

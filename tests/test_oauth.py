"""OAuth connections against both sandboxes over real loopback HTTP.

``splice connect`` runs as a subprocess (``--no-browser``) while this file plays the browser:
it reads the printed URL, lets the sandbox approve, and follows the redirect to splice's
loopback listener. Refresh tests drive the real ``OAuth2Auth`` flow through an ``ApiClient``
whose transport records every request, so "refreshed before the call" and "refreshed once on
401" are read off the wire. Concurrency tests use real processes on one SQLite file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from splice.connections.authorize import connect
from splice.connections.oauth import OAuth2Auth, refresh_skew
from splice.errors import AuthError, HTTPError
from splice.http.client import ApiClient
from splice.http.request import prepare_call
from splice.plugins import get_registry
from splice.sandbox import SandboxConfig, load_factory, serve
from splice.store.connection_events import list_connection_events
from splice.store.database import Store

from .conftest import ROOT, invoke

CLIENT_ID = "splice-oauth-tests"
CLIENT_SECRET = "oauth-test-client-secret-7f3a9c"
CONNECTORS = ["invoice2go", "ghl_users"]
TTL = {"invoice2go": 3600, "ghl_users": 86399}
TOKEN_PATH = "/oauth/token"


# ------------------------------------------------------------------------------ helpers


class Recorder(httpx.BaseTransport):
    """A real transport that logs ``(method, path, status)`` and can fail token requests.

    For every API request it also notes whether the bearer token it carries is the one in
    the store at that moment (``persisted``): a new access token must never be used before
    it is stored.
    """

    def __init__(self, store: Store | None = None, name: str | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.log: list[tuple[str, str, int | str]] = []
        self.persisted: list[bool] = []
        self.fail_token: type[httpx.TransportError] | None = None
        self.store, self.name = store, name

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == TOKEN_PATH and self.fail_token is not None:
            self.log.append((request.method, path, self.fail_token.__name__))
            raise self.fail_token("injected", request=request)
        if path != TOKEN_PATH and self.store is not None and self.name is not None:
            stored = self.store.require_connection(self.name).secret.get("access_token")
            self.persisted.append(request.headers.get("authorization") == f"Bearer {stored}")
        response = self.inner.handle_request(request)
        self.log.append((request.method, path, response.status_code))
        return response

    def statuses(self) -> list[tuple[str, int | str]]:
        return [("token" if p == TOKEN_PATH else "api", s) for _, p, s in self.log]

    def close(self) -> None:
        self.inner.close()


@dataclass
class Sandbox:
    cid: str
    url: str
    http: httpx.Client
    codes: list[str] = field(default_factory=list)

    @property
    def connector(self) -> Any:
        return get_registry().connector(self.cid)

    def control(self, action: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(f"/__test__/{action}", json=body or {})
        response.raise_for_status()
        return response.json()

    def token_stats(self) -> dict[str, int]:
        state = self.http.get("/__test__/state").json()
        return dict(state.get("tokens") or state.get("oauth"))

    def browse(self, url: str) -> httpx.Response:
        """The browser: open the consent URL (auto-approved), follow the redirect home."""
        answer = self.http.get(url)
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        self.codes.extend(parse_qs(urlsplit(location).query).get("code", []))
        return self.http.get(location)

    def connect(self, store: Store, name: str, scopes: list[str] | None = None,
                **kwargs: Any) -> Any:
        connector = self.connector
        kwargs.setdefault("config", {"allow_private_network": True})
        return connect(connector, store, name=name, client_id=CLIENT_ID,
                       client_secret=CLIENT_SECRET,
                       scopes=connector.scopes if scopes is None else scopes,
                       base_url=self.url, open_url=self.browse, timeout=10, **kwargs)

    def revoke_grant(self, store: Store, name: str) -> None:
        """What the provider does when a user uninstalls the app: the grant is gone."""
        if self.cid == "invoice2go":
            secret = store.require_connection(name).secret
            response = self.http.post("/oauth/revoke", auth=(CLIENT_ID, CLIENT_SECRET),
                                      data={"token": secret["refresh_token"]})
            assert response.status_code == 200
        else:
            self.control("reset")


def sandbox_config(cid: str, **extra: Any) -> SandboxConfig:
    return SandboxConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         rate_limit=(100_000, 60.0),
                         extra={"token_rate_limit": (100_000, 60.0), **extra})


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """Both sandboxes, once per module (each test starts from a reset)."""
    with contextlib.ExitStack() as stack:
        yield {cid: stack.enter_context(serve(load_factory(get_registry().connector(cid))(
            sandbox_config(cid)))) for cid in CONNECTORS}


def _fresh(cid: str, url: str) -> Iterator[Sandbox]:
    with httpx.Client(base_url=url, timeout=10) as http:
        http.post("/__test__/reset", json={"tokens": True}).raise_for_status()
        yield Sandbox(cid, url, http)


@pytest.fixture(params=CONNECTORS)
def sandbox(request: pytest.FixtureRequest, servers: dict[str, str]) -> Iterator[Sandbox]:
    yield from _fresh(request.param, servers[request.param])


@pytest.fixture
def i2g(servers: dict[str, str]) -> Iterator[Sandbox]:
    yield from _fresh("invoice2go", servers["invoice2go"])


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open()
    yield s
    s.close()


def test_payload(connector: Any, record: Any) -> tuple[Any, dict[str, Any]]:
    op = connector.operations[connector.test_operation]
    fields = record.config.get("fields", {})
    return op, {k: fields[k] for k in op.input.get("required", []) if k in fields}


test_payload.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def api_client(sandbox: Sandbox, store: Store, name: str, recorder: Recorder, *,
               clock: Callable[[], float] = time.time, skew: float | None = None) -> ApiClient:
    record = store.require_connection(name)
    auth = OAuth2Auth(sandbox.connector, record, store, clock=clock, skew=skew)
    return ApiClient(sandbox.connector, base_url=sandbox.url, auth=auth, transport=recorder,
                     sleep=lambda s: None, max_attempts=1)


def call(sandbox: Sandbox, store: Store, name: str, recorder: Recorder, **kwargs: Any) -> int:
    """The connector's test operation through a fresh client; the HTTP status."""
    with api_client(sandbox, store, name, recorder, **kwargs) as client:
        op, payload = test_payload(sandbox.connector, store.require_connection(name))
        return client.send(op, prepare_call(op, sandbox.connector, payload,
                                            base_url=sandbox.url)).response.status_code


def events(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    return list_connection_events(store, events=[kind] if kind else None)


def cli_env(cid: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SPLICE_LOAD_PLUGINS"}
    return {**env, f"SPLICE_{cid.upper()}_CLIENT_ID": CLIENT_ID,
            f"SPLICE_{cid.upper()}_CLIENT_SECRET": CLIENT_SECRET, **extra}


class CliConnect:
    """``splice connect ... --no-browser`` in a subprocess; ``url`` is the printed URL."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "splice", "connect", *args,
                                      "--no-browser", "--timeout", "20",
                                      "--allow-private-network"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
        lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        self.url = ""
        while not self.url:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError("splice connect printed no URL") from None
            self.stdout.append(line)
            if line.startswith("http"):
                self.url = line.strip()
        self._lines = lines

    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stderr is not None
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        while not self._lines.empty():
            self.stdout.append(self._lines.get())
        return code, "".join(self.stdout), self.proc.stderr.read()


# ------------------------------------------------------------------------------ connect


def test_cli_connect_full_flow_and_connection_details(sandbox: Sandbox, store: Store,
                                                      tmp_path: Path) -> None:
    cid = sandbox.cid
    flow = CliConnect([cid, "--name", "acme", "--base-url", sandbox.url], cli_env(cid),
                      tmp_path)
    params = flow.params()
    assert params["client_id"] == CLIENT_ID and len(params["state"]) >= 32
    assert params["redirect_uri"].startswith("http://127.0.0.1:")
    assert params["redirect_uri"].endswith("/callback")
    assert set(params["scope"].split()) == set(sandbox.connector.scopes)  # no recipes here
    if cid == "invoice2go":
        assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    else:  # HighLevel's flow has no PKCE; its token requests carry user_type
        assert "code_challenge" not in params
    page = sandbox.browse(flow.url)
    assert page.status_code == 200 and b"Go back to the terminal" in page.content
    code, out, err = flow.finish()
    assert code == 0, err
    assert "connected 'acme'" in out and "access token expires" in out

    record = store.require_connection("acme")
    secret = record.secret
    assert secret["access_token"] and secret["refresh_token"]
    assert secret["client_secret"] == CLIENT_SECRET
    shown = invoke("connections", "show", "acme")
    assert shown.exit_code == 0
    for value in (secret["access_token"], secret["refresh_token"], CLIENT_SECRET,
                  sandbox.codes[0]):
        assert value not in out + err + shown.output
    import json

    data = json.loads(shown.stdout)
    assert data["state"] == "valid" and data["last_refresh_at"] and data["client_id"] == CLIENT_ID
    assert set(data["scopes"]) == set(sandbox.connector.scopes)
    if cid == "ghl_users":
        fields = data["fields"]
        assert fields["userType"] == "Location" and fields["locationId"] and fields["companyId"]
        assert f"locationId: {fields['locationId']}" in out
    else:
        assert data["fields"] == {"account_id": "24379237"}
    assert call(sandbox, store, "acme", Recorder()) == 200


def test_cli_refuses_a_forged_callback_and_asks_for_the_recipes_scopes(
        i2g: Sandbox, store: Store, tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "health.yaml").write_text(
        (ROOT / "recipes" / "connection_health.yaml").read_text())
    flow = CliConnect(["invoice2go", "--name", "victim", "--base-url", i2g.url],
                      cli_env("invoice2go"), tmp_path)
    assert flow.params()["scope"] == "insights:write"  # what ./recipes needs, nothing more
    answer = i2g.http.get(flow.url)
    assert answer.status_code == 302
    parts = urlsplit(answer.headers["location"])
    code = parse_qs(parts.query)["code"][0]
    forged = f"{parts.scheme}://{parts.netloc}{parts.path}"
    page = httpx.get(forged, params={"code": code, "state": "attacker-state"})
    assert page.status_code == 400 and b"wrong state" in page.content
    exit_code, out, err = flow.finish()
    assert exit_code != 0
    assert "wrong state" in err and "refused" in err and "Traceback" not in err
    assert code not in out + err
    assert store.get_connection("victim") is None
    assert i2g.token_stats()["access_tokens"] == 0  # the code was never exchanged


def test_wrong_state_is_refused_by_both_flows(sandbox: Sandbox, store: Store) -> None:
    def forge(url: str) -> None:
        answer = sandbox.http.get(url)
        location = answer.headers["location"].replace("state=", "state=x")
        sandbox.http.get(location)

    with pytest.raises(AuthError, match="wrong state parameter; refused"):
        connect(sandbox.connector, store, name="victim", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET, scopes=sandbox.connector.scopes[:1],
                base_url=sandbox.url, open_url=forge, timeout=10)
    assert store.get_connection("victim") is None
    assert sandbox.token_stats()["access_tokens"] == 0


def test_cli_reconnect_reuses_the_stored_base_url_and_client(i2g: Sandbox, store: Store,
                                                             tmp_path: Path) -> None:
    i2g.connect(store, "again", scopes=["accounts:read"])
    i2g.revoke_grant(store, "again")
    i2g.control("expire-tokens")
    with pytest.raises(AuthError):
        call(i2g, store, "again", Recorder())
    assert store.require_connection("again").status == "reauth_required"
    env = {k: v for k, v in cli_env("invoice2go").items() if "INVOICE2GO_CLIENT" not in k}
    flow = CliConnect(["invoice2go", "--name", "again"], env, tmp_path)  # the hint's command
    assert flow.url.startswith(i2g.url) and flow.params()["client_id"] == CLIENT_ID
    assert flow.params()["scope"] == " ".join(i2g.connector.scopes)
    i2g.browse(flow.url)
    exit_code, out, err = flow.finish()
    assert exit_code == 0, err
    record = store.require_connection("again")
    assert record.status == "valid" and record.base_url == i2g.url
    assert call(i2g, store, "again", Recorder()) == 200


def test_pkce_verifier_is_checked_by_invoice2go(i2g: Sandbox, store: Store) -> None:
    class Tamper(httpx.HTTPTransport):
        sent: dict[str, str] = {}

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            Tamper.sent = dict(form)
            form["code_verifier"] = form["code_verifier"][:-4] + "AAAA"
            tampered = httpx.Request("POST", request.url, data=form, headers={
                "Authorization": request.headers["authorization"]})
            return super().handle_request(tampered)

    urls: list[str] = []

    def browse(url: str) -> None:
        urls.append(url)
        i2g.browse(url)

    with pytest.raises(AuthError) as failure:
        connect(i2g.connector, store, name="pkce", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET, scopes=["accounts:read"], base_url=i2g.url,
                open_url=browse, timeout=10, transport=Tamper())
    message = str(failure.value)
    assert "code exchange failed: invalid_grant" in message and "code_verifier" in message
    assert "run `splice connect` again" in message
    assert store.get_connection("pkce") is None
    # what splice sent was right: S256(verifier) is the challenge of the consent URL
    challenge = parse_qs(urlsplit(urls[0]).query)["code_challenge"][0]
    digest = hashlib.sha256(Tamper.sent["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def test_client_credentials_come_from_the_environment_never_arguments(tmp_path: Path) -> None:
    help_text = " ".join(invoke("connect", "--help").output.split())
    assert "never from a command-line argument" in help_text
    assert "SPLICE_<CONNECTOR>_CLIENT_ID" in help_text
    assert "--client-secret-env" in help_text and "--client-secret " not in help_text
    assert invoke("connect", "invoice2go", "--name", "x", "--client-secret",
                  "s3cret").exit_code == 2  # no such option
    result = invoke("connect", "invoice2go", "--name", "x", "--client-id-env", "NOPE_ID_VAR")
    assert result.exit_code == 2 and "NOPE_ID_VAR is not set" in result.output


def test_highlevel_agency_install_keeps_user_type_for_refreshes(store: Store) -> None:
    connector = get_registry().connector("ghl_users")
    app = load_factory(connector)(sandbox_config("ghl_users", install_target="company"))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        box = Sandbox("ghl_users", url, http)
        with pytest.raises(AuthError, match="user_type Location does not match this "
                                            r"installation \(Company\)"):
            box.connect(store, "agency")
        result = box.connect(store, "agency", token_params={"user_type": "Company"})
        assert result.fields["userType"] == "Company" and "locationId" not in result.fields
        assert result.fields["companyId"]
        before = store.require_connection("agency").secret
        with httpx.Client() as client:
            OAuth2Auth(connector, store.require_connection("agency"), store).refresh(client)
        after = store.require_connection("agency")
        assert after.secret["refresh_token"] != before["refresh_token"]
        assert after.config["fields"]["userType"] == "Company"


# ------------------------------------------------------------------------------ refresh


def test_refresh_before_expiry_sends_no_stale_token(sandbox: Sandbox, store: Store) -> None:
    sandbox.connect(store, "c")
    old = store.require_connection("c").secret
    ahead = TTL[sandbox.cid] - 100  # inside the 300 s skew, still valid at the provider
    sandbox.control("advance-clock", {"seconds": ahead})
    recorder = Recorder(store, "c")
    assert call(sandbox, store, "c", recorder, clock=lambda: time.time() + ahead) == 200
    assert recorder.statuses() == [("token", 200), ("api", 200)]  # refreshed first, no 401
    assert recorder.persisted == [True]
    new = store.require_connection("c")
    assert new.secret["access_token"] != old["access_token"]
    assert new.secret["refresh_token"] != old["refresh_token"]
    assert [e["event"] for e in events(store)] == ["token_refreshed"]


def test_refresh_skew_comes_from_the_connection_or_the_environment(
        i2g: Sandbox, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    i2g.connect(store, "c", config={"refresh_skew": 30})
    record = store.require_connection("c")
    monkeypatch.setenv("SPLICE_REFRESH_SKEW", "1000")
    assert refresh_skew(record) == 30.0
    store.update_tokens("c", None, {"refresh_skew": None})
    assert refresh_skew(store.require_connection("c")) == 1000.0
    monkeypatch.delenv("SPLICE_REFRESH_SKEW")
    assert refresh_skew(store.require_connection("c")) == 300.0
    store.update_tokens("c", None, {"refresh_skew": 30})
    recorder = Recorder()  # 100 s left: outside a 30 s skew, so no refresh
    assert call(i2g, store, "c", recorder, clock=lambda: time.time() + 3500) == 200
    assert recorder.statuses() == [("api", 200)]


def test_refresh_on_401_once_then_retry_once(sandbox: Sandbox, store: Store) -> None:
    sandbox.connect(store, "c")
    sandbox.control("expire-tokens")
    recorder = Recorder(store, "c")
    assert call(sandbox, store, "c", recorder) == 200
    assert recorder.statuses() == [("api", 401), ("token", 200), ("api", 200)]
    assert recorder.persisted == [True, True]  # the retry carried the token already stored
    assert len(events(store, "token_refreshed")) == 1


def test_threads_refresh_once(i2g: Sandbox, store: Store) -> None:
    i2g.connect(store, "c")
    i2g.control("expire-tokens")
    barrier = threading.Barrier(4)
    results: list[int | str] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(call(i2g, store, "c", Recorder()))
        except Exception as exc:  # noqa: BLE001 - reported through the assertion
            results.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [200] * 4
    assert len(events(store, "token_refreshed")) == 1


# A separate splice process: it loads the connection, says "ready", waits for the go file,
# then makes one API call. With DIE=1 it crashes between the token response and storing it.
CHILD = """
import os, sys, time
cid, url, name, go, die = sys.argv[1:6]
from splice.store import database as state
if die == "1":
    original = state.Store.update_tokens
    def crash(self, conn, secret=None, *args, **kw):
        if secret and secret.get("access_token"):
            os._exit(1)
        return original(self, conn, secret, *args, **kw)
    state.Store.update_tokens = crash
from splice.http.client import ApiClient
from splice.http.request import prepare_call
from splice.connections.oauth import OAuth2Auth
from splice.plugins import get_registry
store = state.Store.open()
connector = get_registry().connector(cid)
record = store.require_connection(name)
op = connector.operations[connector.test_operation]
fields = record.config.get("fields", {})
payload = {k: fields[k] for k in op.input.get("required", []) if k in fields}
client = ApiClient(connector, base_url=url, auth=OAuth2Auth(connector, record, store),
                   max_attempts=1, sleep=lambda s: None)
print("ready", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
try:
    call = prepare_call(op, connector, payload, base_url=url)
    print(client.send(op, call).response.status_code, flush=True)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
"""


def _spawn(n: int, sandbox: Sandbox, name: str, tmp_path: Path, *, die_on_store: bool = False
           ) -> tuple[list[str], list[int]]:
    """Run ``n`` splice processes that call the API at the same moment; (outputs, codes)."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, sandbox.cid, sandbox.url, name,
                               str(go), "1" if die_on_store else "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_env(sandbox.cid, SPLICE_LOAD_PLUGINS=sandbox.cid))
             for _ in range(n)]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    go.touch()  # all of them hold the same stale token now: go
    outputs, codes = [], []
    for p in procs:
        out, err = p.communicate(timeout=60)
        outputs.append(out.strip() or err.strip()[-300:])
        codes.append(p.returncode)
    return outputs, codes


def test_processes_refreshing_at_once_end_with_one_valid_token_set(
        sandbox: Sandbox, store: Store, tmp_path: Path) -> None:
    sandbox.connect(store, "shared")
    sandbox.control("expire-tokens")  # every process meets a 401 and wants to refresh
    results, codes = _spawn(2, sandbox, "shared", tmp_path)
    assert codes == [0, 0] and results == ["200"] * 2, results
    assert len(events(store, "token_refreshed")) == 1
    assert events(store, "reauth_required") == []
    record = store.require_connection("shared")
    assert record.status == "valid" and not record.config.get("refreshing")
    assert sandbox.token_stats()["refresh_tokens"] == 1  # one live grant, rotated once
    recorder = Recorder()  # and the stored refresh token is the live one
    assert call(sandbox, store, "shared", recorder, clock=lambda: time.time() + 10**6) == 200
    assert recorder.statuses()[0] == ("token", 200)


def test_process_killed_mid_refresh_is_never_silently_broken(
        sandbox: Sandbox, store: Store, tmp_path: Path) -> None:
    import json

    sandbox.connect(store, "k")
    sandbox.control("expire-tokens")
    results, codes = _spawn(1, sandbox, "k", tmp_path, die_on_store=True)
    assert codes == [1] and results == [""]  # died after the provider rotated the token
    listed = {c["name"]: c for c in json.loads(invoke("connections", "list", "--json").stdout)}
    assert listed["k"]["state"] == "refresh_interrupted"
    assert "refresh interrupted" in listed["k"]["status"]

    started = time.monotonic()
    recorder = Recorder()
    with pytest.raises(AuthError) as failure:
        call(sandbox, store, "k", recorder)
    assert time.monotonic() - started < 5  # the dead process's database lock is gone
    message = str(failure.value)
    assert "needs to be re-authorised" in message and "invalid_grant" in message
    assert "stopped before it could save the rotated token" in message
    assert f"splice connect {sandbox.cid} --name k" in message
    listed = {c["name"]: c for c in json.loads(invoke("connections", "list", "--json").stdout)}
    assert listed["k"]["state"] == "reauth_required"
    assert len(events(store, "reauth_required")) == 1
    again = Recorder()  # later calls fail fast, without spending requests
    with pytest.raises(AuthError, match="needs to be re-authorised"):
        call(sandbox, store, "k", again)
    assert again.log == [] and len(events(store, "reauth_required")) == 1


@pytest.mark.parametrize("failure", ["transport", "down"])
def test_network_failure_during_refresh_leaves_tokens_untouched(
        sandbox: Sandbox, store: Store, failure: str) -> None:
    ahead = TTL[sandbox.cid] + 10  # expired: the token request is the first one sent
    recorder = Recorder()
    if failure == "transport":
        sandbox.connect(store, "n")
        recorder.fail_token = httpx.ConnectError
        target = sandbox
    else:  # a sandbox of its own, stopped after connecting
        app = load_factory(sandbox.connector)(sandbox_config(sandbox.cid))
        with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
            target = Sandbox(sandbox.cid, url, http)
            target.connect(store, "n")
    before = store.require_connection("n")
    with pytest.raises(HTTPError, match="network error after 1 attempt"):
        call(target, store, "n", recorder, clock=lambda: time.time() + ahead)
    if failure == "transport":
        assert recorder.statuses() == [("token", "ConnectError")]
    after = store.require_connection("n")
    assert after.secret == before.secret and after.config == before.config
    assert events(store) == []
    if failure == "transport":  # the old refresh token still works: the request never left
        assert call(sandbox, store, "n", Recorder(), clock=lambda: time.time() + ahead) == 200


def test_token_endpoint_outage_keeps_tokens_and_the_current_token_still_works(
        i2g: Sandbox, store: Store) -> None:
    i2g.connect(store, "o")
    before = store.require_connection("o")
    i2g.control("fail-next", {"count": 2, "status": 503, "target": "token"})
    recorder = Recorder()  # 100 s left: a proactive refresh that fails is not fatal
    for _ in range(2):
        assert call(i2g, store, "o", recorder, clock=lambda: time.time() + 3500) == 200
    assert recorder.statuses() == [("token", 503), ("api", 200)] * 2
    after = store.require_connection("o")
    assert after.secret == before.secret
    assert [e["event"] for e in events(store)] == ["token_expiring"]  # once per token
    i2g.control("fail-next", {"count": 1, "status": 503, "target": "token"})
    i2g.control("expire-tokens")
    with pytest.raises(AuthError, match="token refresh failed: unavailable .*stored tokens "
                                        "were kept"):
        call(i2g, store, "o", Recorder())
    assert store.require_connection("o").secret == before.secret


def test_revoked_grant_marks_reauth_once_and_a_recipe_hears_of_it(
        sandbox: Sandbox, i2g: Sandbox, store: Store, tmp_path: Path) -> None:
    sandbox.connect(store, "broken")
    i2g.connect(store, "alerts", scopes=["insights:read", "insights:write"])
    recipe = tmp_path / "health.yaml"
    recipe.write_text("""\
name: reauth alerts
trigger: {use: splice.reauth_required}
steps:
  - use: invoice2go.push_metrics
    connection: alerts
    with:
      metrics:
        - source: splice
          key: connection.reauth_required
          label: "Reconnect {{ trigger.connection }} ({{ trigger.connector }})"
          value: 1
          period_start: "{{ trigger.created_at }}"
          period_end: "{{ trigger.created_at }}"
          external_id: "splice:{{ trigger.id }}"
""")
    assert invoke("run", str(recipe)).exit_code == 0  # baseline: nothing yet
    sandbox.revoke_grant(store, "broken")
    sandbox.control("expire-tokens")
    for attempt in range(3):
        recorder = Recorder()
        with pytest.raises(AuthError) as failure:
            call(sandbox, store, "broken", recorder)
        assert "needs to be re-authorised" in str(failure.value)
        assert f"splice connect {sandbox.cid} --name broken" in str(failure.value)
        if attempt:  # no more requests once marked
            assert recorder.log == []
    marked = events(store, "reauth_required")
    assert [(e["connection"], e["connector"]) for e in marked] == [("broken", sandbox.cid)]
    assert "invalid_grant" in marked[0]["reason"]

    result = invoke("run", str(recipe), "--json")
    assert result.exit_code == 0, result.output
    metrics = [m for m in i2g.http.get("/__test__/state").json()["metrics"]
               if m["key"] == "connection.reauth_required"]
    assert [m["label"] for m in metrics] == [f"Reconnect broken ({sandbox.cid})"]
    assert invoke("run", str(recipe)).exit_code == 0  # once: nothing new the next time
    assert len([m for m in i2g.http.get("/__test__/state").json()["metrics"]
                if m["key"] == "connection.reauth_required"]) == 1


# ------------------------------------------------------------------------------ scopes

SCOPE_RECIPES = {
    "invoice2go": ("insights:write", ["accounts:read"], """\
name: metrics
trigger: {use: splice.token_refreshed}
steps:
  - use: invoice2go.push_metrics
    connection: narrow
    with:
      metrics: [{source: splice, key: refreshed, value: 1,
                 period_start: "{{ trigger.created_at }}", period_end: "{{ trigger.created_at }}"}]
"""),
    "ghl_users": ("socialplanner/tag.readonly", ["users.readonly"], """\
name: tags
trigger: {use: ghl_users.tag_updated, connection: narrow}
steps:
  - use: ghl_users.search_users
    connection: narrow
    with: {query: "{{ trigger.tag }}"}
"""),
}


def test_missing_scopes_are_refused_by_validate_and_run(sandbox: Sandbox, store: Store,
                                                       tmp_path: Path) -> None:
    needed, granted, text = SCOPE_RECIPES[sandbox.cid]
    sandbox.connect(store, "narrow", scopes=granted)
    assert store.require_connection("narrow").scopes == granted
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    for command in (["validate"], ["run"]):
        result = invoke(*command, str(recipe))
        assert result.exit_code == 2, result.output
        assert f"connection 'narrow' lacks scope(s) {needed}" in result.output
        fix = f"splice connect {sandbox.cid} --name narrow --scopes"
        assert fix in result.output
    assert store.list_runs() == []  # refused before a run started
    # the suggested command fixes it
    suggested = result.output.split("--scopes \"", 1)[1].split("\"", 1)[0].split()
    assert set(suggested) == {needed, *granted}
    sandbox.connect(store, "narrow", scopes=suggested)
    assert invoke("validate", str(recipe)).exit_code == 0


# ------------------------------------------------------------------------------ listing


def test_connections_list_and_show_report_status_scopes_and_last_refresh(store: Store) -> None:
    import json

    now = time.time()
    base = {"scopes": ["a:read"], "last_refresh_at": "2026-05-01T10:00:00+00:00",
            "client_id": "cid"}
    secret = {"access_token": "AT-secret-value-1", "refresh_token": "RT-secret-value-1"}
    for name, extra in {"fine": {"expires_at": now + 7200},
                        "soon": {"expires_at": now + 200},
                        "gone": {"expires_at": now - 5},
                        "dead": {"expires_at": now + 7200, "status": "reauth_required",
                                 "last_error": "revoked"}}.items():
        store.put_connection(name, connector="invoice2go", auth_type="oauth2",
                             config={**base, **extra}, secret=secret)
    result = invoke("connections", "list", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["fine"]["state"] == "valid" and rows["fine"]["status"] == "valid (2 h left)"
    assert rows["soon"]["state"] == "expiring"
    assert rows["soon"]["status"].startswith("expiring in 3 min")
    assert rows["gone"]["status"] == "expired (refreshes on next use)"
    assert rows["dead"]["status"] == "needs re-auth" and rows["dead"]["last_error"] == "revoked"
    assert rows["fine"]["scopes"] == ["a:read"]
    assert rows["fine"]["last_refresh_at"] == "2026-05-01T10:00:00+00:00"
    table = invoke("connections", "list").output
    assert "needs re-auth" in table and "expiring in 3 min" in table and "2026-05-01" in table
    shown = invoke("connections", "show", "dead").output
    for output in (result.output, table, shown):
        assert "secret-value" not in output

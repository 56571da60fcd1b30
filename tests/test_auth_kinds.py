"""Auth kinds over real loopback HTTP: what each sends, client credentials across expiries.

The API is ``tests/authapi.py``; the connectors are ``tests/fixtures/authkinds/*.yaml``, loaded
through ``SPLICE_CONNECTORS_PATH`` (no packaging), and ``hmac_signature`` comes from a test
plugin (``tests/hmac_plugin.py``) through ``register_auth_types``.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from splice import plugins
from splice.sandbox import serve

from . import authapi, hmac_plugin
from .conftest import FIXTURES, ROOT, invoke, register_test_plugin

AUTHKINDS = FIXTURES / "authkinds"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("SPLICE_CONNECTORS_PATH", str(AUTHKINDS))
    monkeypatch.setenv("MACHINE_ID", authapi.CLIENT_ID)
    monkeypatch.setenv("MACHINE_SECRET", authapi.CLIENT_SECRET)
    register_test_plugin(hmac_plugin, "hmac-plugin")
    app = authapi.create_app(access_ttl=2)
    with serve(app) as url:
        yield app, url


def _add(name: str, connector: str, url: str, *extra: str, secret: str | None = None) -> None:
    result = invoke("connections", "add", name, "--connector", connector, "--base-url", url,
                    "--allow-private-network", *extra,
                    input=None if secret is None else secret + "\n")
    assert result.exit_code == 0, result.output
    assert secret is None or secret not in result.output


@pytest.mark.parametrize(("connector", "extra", "secret", "header"), [
    ("auth_bearer", (), authapi.BEARER, ("authorization", f"Bearer {authapi.BEARER}")),
    ("auth_api_key_header", (), authapi.API_KEY, ("x-api-key", authapi.API_KEY)),
    ("auth_api_key_query", (), authapi.API_KEY, ("query", {"api_key": authapi.API_KEY})),
    ("auth_basic", ("--username", authapi.USERNAME), authapi.PASSWORD,
     ("authorization", "Basic " + base64.b64encode(
         f"{authapi.USERNAME}:{authapi.PASSWORD}".encode()).decode())),
])
def test_static_kinds_send_what_the_docs_say(api, splice_home, connector, extra, secret,
                                             header):
    app, url = api
    _add("conn", connector, url, *extra, secret=secret)
    tested = invoke("connections", "test", "conn")
    assert tested.exit_code == 0, tested.output
    assert "answered HTTP 200" in tested.stdout
    name, value = header
    assert app.state.seen[-1][name] == value
    shown = invoke("connections", "show", "conn").stdout
    assert secret not in shown and secret not in tested.output
    assert secret.encode() not in (splice_home / "splice.db").read_bytes()
    docs = (ROOT / "docs/connectors.md").read_text()
    kind = plugins.get_registry().connector(connector).auth_type
    assert f"`{kind}`" in docs


def test_a_wrong_static_credential_is_refused_cleanly(api):
    app, url = api
    _add("conn", "auth_basic", url, "--username", "mallory", secret="nope-nope-nope")
    tested = invoke("connections", "test", "conn")
    assert tested.exit_code == 1
    assert "HTTP 401: bad basic credentials" in tested.stderr
    assert "nope-nope-nope" not in tested.output


def test_hook_register_auth_types_signs_requests_with_hmac(api):
    app, url = api
    assert "hmac_signature" in plugins.get_registry().auth_types
    _add("signed", "auth_hmac", url, secret=authapi.HMAC_SECRET)
    tested = invoke("connections", "test", "signed")
    assert tested.exit_code == 0, tested.output
    seen = app.state.seen[-1]
    assert seen["x-signature"].startswith("v1=") and seen["x-timestamp"].isdigit()
    _add("forged", "auth_hmac", url, secret="another-secret-123")
    assert invoke("connections", "test", "forged").exit_code == 1


def _cc_connection(url: str, name: str = "machine") -> None:
    _add(name, "auth_machine", url, "--client-id-env", "MACHINE_ID", "--client-secret-env",
         "MACHINE_SECRET", "--scopes", "items.read items.write")


def test_client_credentials_store_references_not_secrets(api, splice_home):
    app, url = api
    _cc_connection(url)
    assert app.state.oauth.issued_client_tokens == 1
    shown = invoke("connections", "show", "machine")
    assert '"client_secret_ref": {\n    "$env": "MACHINE_SECRET"' in shown.stdout
    assert authapi.CLIENT_SECRET not in shown.stdout
    assert authapi.CLIENT_SECRET.encode() not in (splice_home / "splice.db").read_bytes()
    listed = invoke("call", "auth_machine.list_items", "-c", "machine")
    assert listed.exit_code == 0, listed.output
    assert app.state.seen[-1]["authorization"].startswith("Bearer tok_at_")


def test_client_credentials_refetch_before_expiry_and_on_401(api):
    from splice.connections.client import connection_client
    from splice.http.request import prepare_call
    from splice.store.database import Store

    app, url = api
    _cc_connection(url)
    registry = plugins.get_registry()
    connector = registry.connector("auth_machine")
    op = connector.operations["whoami"]
    store = Store.open()
    with connection_client(connector, store.require_connection("machine"), store,
                           registry) as client:
        client.send(op, prepare_call(op, connector, {}, base_url=url))
        assert app.state.oauth.issued_client_tokens == 1   # the stored token is used
        time.sleep(1.6)                                     # within 0.5 s of the 2 s expiry
        client.send(op, prepare_call(op, connector, {}, base_url=url))
        assert app.state.oauth.issued_client_tokens == 2   # fetched before it expired
        assert app.state.rejected == 0
        app.state.oauth.expire_access_tokens()              # the server drops it early
        client.send(op, prepare_call(op, connector, {}, base_url=url))
        assert app.state.oauth.issued_client_tokens == 3   # one 401, one fetch, one retry
        assert app.state.rejected == 1
    store.close()


def test_client_credentials_fetch_is_single_flight(api):
    from splice.connections.client import connection_client
    from splice.http.request import prepare_call
    from splice.store.database import Store

    app, url = api
    app.state.oauth.access_ttl = 60  # only the server's early expiry below, no proactive fetch
    _cc_connection(url)
    app.state.oauth.expire_access_tokens()
    registry = plugins.get_registry()
    connector = registry.connector("auth_machine")
    op = connector.operations["whoami"]
    errors: list[BaseException] = []
    stores = [Store.open() for _ in range(6)]
    # every client starts from the stored (expired) token, then all send at once
    clients = [connection_client(connector, store.require_connection("machine"), store,
                                 registry) for store in stores]
    start = threading.Barrier(len(clients))

    def worker(client: Any) -> None:
        try:
            start.wait(timeout=10)
            with client:
                client.send(op, prepare_call(op, connector, {}, base_url=url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for store in stores:
        store.close()
    assert not errors, errors
    # one 401 each, but the siblings find the token the first fetcher stored
    assert app.state.rejected == 6
    assert app.state.oauth.issued_client_tokens == 2


def test_wrong_client_secret_is_a_clear_error(api, monkeypatch):
    app, url = api
    monkeypatch.setenv("MACHINE_SECRET", "not-the-secret-xyz")
    result = invoke("connections", "add", "machine", "--connector", "auth_machine",
                    "--base-url", url, "--allow-private-network", "--client-id-env", "MACHINE_ID",
                    "--client-secret-env", "MACHINE_SECRET")
    assert result.exit_code == 1
    assert "refused the client credentials: invalid_client" in result.stderr
    assert "not-the-secret-xyz" not in result.output
    monkeypatch.delenv("MACHINE_SECRET")
    tested = invoke("connections", "refresh", "machine")
    assert tested.exit_code == 2
    assert "the client secret is not available: environment variable MACHINE_SECRET is " \
           "not set" in tested.stderr


RECIPE = """\
name: Note machine items
trigger:
  use: auth_machine.item_created
  connection: machine
  every: 1s
steps:
  - use: auth_machine.create_note
    connection: machine
    with: {text: "seen {{ trigger.name }}"}
"""


def test_client_credentials_keep_working_across_expiries_in_a_watch_run(api, splice_home,
                                                                        tmp_path):
    """Acceptance: a --watch run outlives several 2-second tokens without one failure."""
    app, url = api
    _cc_connection(url)
    recipe = tmp_path / "machine.yaml"
    recipe.write_text(RECIPE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as in a terminal, even when the test run itself was started as a background job
    # (a shell starts those with SIGINT ignored, and the child would inherit that)
    ctrl_c = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
              " sys.argv[0] = 'splice'; runpy.run_module('splice', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", ctrl_c, "run", str(recipe), "--watch"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 7.5
        added = 0
        while time.monotonic() < deadline:
            if any("next poll in" in line for line in lines):  # seeded: now add records
                authapi.add_item(app, f"item {added}")
                added += 1
            time.sleep(0.7)
        polls = sum("next poll in" in line for line in lines)
        while sum("next poll in" in line for line in lines) == polls:
            time.sleep(0.05)   # stop between two polls
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    err = "".join(lines)
    assert "error" not in err.lower(), err
    assert "Traceback" not in err
    assert app.state.oauth.issued_client_tokens >= 3, "the run never crossed an expiry"
    noted = {n["text"] for n in app.state.notes}
    delivered = {f"seen item {i}" for i in range(added)}
    # every item the run saw became a note (the last one may arrive after the last poll)
    assert len(noted) >= added - 1 and noted <= delivered
    assert " 0 failed" in out and "failed" not in out.replace(" 0 failed", "")

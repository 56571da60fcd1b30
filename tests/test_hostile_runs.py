"""Hostile data and answers during real runs (loopback HTTP): one bad event fails alone.

A non-ASCII header value, a template that crosses a bound, a path value that would climb out
of the base URL, a ``for_each`` list past its cap: each fails its event (recorded, retryable,
nothing sent for it) and later events still run; ``splice run`` exits 1. Also: loops in the
API's data stop, private networks need a connection option, API error bodies are redacted,
and a dry run streams its requests.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from splice.errors import RequestError
from splice.http.network import HostGuard, refusal
from splice.http.pagination import DEFAULT_MAX_PAGES, paginate
from splice.http.request import ensure_under_base, prepare_call
from splice.model.manifest import load_manifest
from splice.sandbox import serve

from .conftest import invoke, register_test_plugin
from .hostile import (
    FIXTURES,
    SECRET,
    HostilePlugin,
    create_app,
    items,
    posts,
    recipe,
    send_step,
)


@dataclass
class Api:
    app: Any
    url: str
    home: Path

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "splice.db")

    def event_errors(self) -> dict[str, str | None]:
        with self.db() as db:
            return dict(db.execute("SELECT key, last_error FROM events"))

    def error_columns(self) -> list[str]:
        """Every error column of the run ledger."""
        with self.db() as db:
            rows = [*db.execute("SELECT error FROM runs"),
                    *db.execute("SELECT last_error FROM events"),
                    *db.execute("SELECT error FROM step_results"),
                    *db.execute("SELECT reason FROM dead_letters")]
        return [row[0] for row in rows if row[0]]


@pytest.fixture
def api(splice_home: Path) -> Iterator[Api]:
    from splice.store.database import Store

    register_test_plugin(HostilePlugin(), "hostile-test-plugin")
    app = create_app(SECRET)
    with serve(app) as url:
        store = Store.open()
        store.put_connection("hostile", connector="hostile", auth_type="bearer",
                             base_url=f"{url}/api/v1", config={"allow_private_network": True},
                             secret={"token": SECRET})
        store.close()
        yield Api(app, url, splice_home)


def run(path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke("run", str(path), "--backfill", "--json", *args)
    return result.exit_code, json.loads(result.stdout), result.stderr


def sent_ids(api: Api) -> list[str]:
    return [entry[1].split("/")[4] for entry in posts(api.app)]


# ---------------------------------------------------------------------------- one event fails


def test_a_non_ascii_header_fails_its_event_and_the_run_goes_on(api, tmp_path):
    api.app.state.items = [{"id": "i1", "name": "plain"}, {"id": "i2", "name": "café"},
                           {"id": "i3", "name": "line\u2028separator"},
                           {"id": "i4", "name": "next\x85line"}, {"id": "i5", "name": "ok"}]
    code, report, _ = run(recipe(tmp_path / "r.yaml", send_step(name='"{{ trigger.name }}"')))
    assert code == 1
    assert report["events_new"] == 5 and report["events_succeeded"] == 2
    assert report["events_failed"] == 3
    assert sent_ids(api) == ["i1", "i5"]  # nothing sent for the failed ones
    errors = api.event_errors()
    for key in ("i2", "i3", "i4"):
        assert "header 'X-Item-Name' has a non-ASCII character" in (errors[key] or "")
    assert "café" not in json.dumps(report["errors"])  # the value is never echoed
    listed = invoke("runs", "show", report["run_id"])
    assert listed.exit_code == 0 and "failed" in listed.output


def test_a_refused_render_sends_nothing_for_that_event_only(api, tmp_path):
    note = "\"{{ 'x' | center(999999999 if trigger.id == 'i2' else 3) }}\""
    path = recipe(tmp_path / "r.yaml", send_step(note=note))
    code, report, _ = run(path)
    assert code == 1 and report["events_failed"] == 1 and report["events_succeeded"] == 3
    assert sent_ids(api) == ["i1", "i3", "i4"]
    error = api.event_errors()["i2"] or ""
    assert error.startswith(f"{path}:8:13: steps[0].with.note: the result of |center would "
                            "be longer than 1,000,000"), error


def test_a_path_value_that_climbs_out_of_the_base_url_is_refused(api, tmp_path):
    api.app.state.items = [{"id": "../../admin"}, {"id": "..%2F..%2Fadmin"}, {"id": "fine"}]
    code, report, _ = run(recipe(tmp_path / "r.yaml", send_step()))
    assert code == 1 and report["events_failed"] == 1
    # a literal "..%2F..%2Fadmin" is one segment (sent as ..%252F..%252Fadmin)
    assert [e[1] for e in posts(api.app)] == ["/api/v1/items/..%2F..%2Fadmin/notes",
                                              "/api/v1/items/fine/notes"]
    assert "outside the connection's base URL" in api.event_errors()["../../admin"]


def test_for_each_lists_are_capped(api, tmp_path):
    step = send_step(note='"{{ item }}"').replace(
        "    connection: hostile\n", "    connection: hostile\n"
        "    for_each: \"{{ range(trigger.count) | list }}\"\n    max_items: 3\n", 1)
    code, report, _ = run(recipe(tmp_path / "r.yaml", step))
    assert code == 1 and report["events_failed"] == 1  # i4 loops over 4 items
    assert sorted(sent_ids(api)) == ["i1", "i2", "i2", "i3", "i3", "i3"]
    assert "for_each gave 4 items, more than the step's max_items (3)" in \
        api.event_errors()["i4"]


def test_for_each_default_cap_is_ten_thousand(api, tmp_path):
    step = send_step().replace("    connection: hostile\n", "    connection: hostile\n"
                               "    for_each: \"{{ range(10001) | list }}\"\n", 1)
    code, report, _ = run(recipe(tmp_path / "r.yaml", step))
    assert code == 1 and report["events_failed"] == 4 and posts(api.app) == []
    assert "more than the step's max_items (10,000)" in report["errors"][0]


# ---------------------------------------------------------------------------- data loops


def test_a_cursor_that_changes_while_records_repeat_stops_the_poll(api, tmp_path):
    api.app.state.repeat = True
    code, report, stderr = run(recipe(tmp_path / "r.yaml", send_step()))
    assert code == 0 and report["events_new"] == 2
    gets = [e for e in api.app.state.log if e[0] == "GET"]
    assert len(gets) == 2
    assert "page 2 holds only records already read in this poll" in stderr


def test_page_limits_from_the_option_and_the_trigger(api, tmp_path):
    api.app.state.items = items(20)
    path = recipe(tmp_path / "r.yaml", send_step())
    code, report, _ = run(path, "--max-pages", "2")
    assert code == 0 and report["events_new"] == 4
    limited = recipe(tmp_path / "t.yaml", send_step(), trigger="max_pages: 3")
    code, report, _ = run(limited)
    assert code == 0 and report["events_seen"] == 6


def test_default_page_limit_per_poll(caplog):
    connector = load_manifest(FIXTURES / "hostile.yaml")
    op = connector.operations["list_items"]

    class Endless:  # an API that always has one more page
        base_url = "https://hostile.invalid/api/v1"
        sent = 0

        def send(self, op: Any, call: Any) -> Any:
            self.sent += 1
            body = {"items": [{"id": f"i{self.sent}"}], "next": f"c{self.sent}"}
            return type("R", (), {"json": lambda self: body, "response": None})()

    sender = Endless()
    call = prepare_call(op, connector, {}, base_url=sender.base_url)
    with caplog.at_level(logging.WARNING, "splice.pagination"):
        pages = list(paginate(sender, op, call))
    assert len(pages) == DEFAULT_MAX_PAGES == sender.sent == 1000
    assert "stopped after 1000 pages (the page limit)" in caplog.text


# ---------------------------------------------------------------------------- dry run


def test_dry_run_streams_its_requests(api, tmp_path):
    from splice.cli.common import DryRunStream, load_plan
    from splice.plugins import get_registry
    from splice.run.runner import Runner
    from splice.store.database import Store

    path = recipe(tmp_path / "r.yaml", send_step(name='"{{ trigger.name }}"'))
    result = invoke("run", str(path), "--dry-run", "--backfill", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert [r["url"].rsplit("/", 2)[1] for r in report["requests"]] == ["i1", "i2", "i3", "i4"]
    registry, store = get_registry(), Store.open()
    runner = Runner(load_plan(str(path), registry, store), store, registry)
    seen: list[Any] = []
    stream = DryRunStream(as_json=True)
    runner.on_call = lambda call: (seen.append(call.request["url"]), stream(call))
    done = runner.run(mode="dry_run", backfill=True)
    runner.close()
    assert done.calls == [] and done.planned == 4 == len(seen) == stream.count
    assert posts(api.app) == []
    human = invoke("run", str(path), "--dry-run", "--backfill")
    assert "4 request(s) would be sent" in human.stdout
    assert human.stdout.index("for event i1") < human.stdout.index("would be sent")


# ---------------------------------------------------------------------------- private networks


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest", "http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/",
    "http://[::ffff:169.254.169.254]/", "http://10.1.2.3/api", "http://localhost:8080/",
    "http://metadata.google.internal/", "http://127.1/",
])
def test_private_base_urls_need_the_connection_option(api, url):
    refused = invoke("connections", "add", "meta", "--connector", "hostile", "--base-url", url,
                     input="token-value\n")
    assert refused.exit_code == 2
    assert "the base URL points at" in refused.stderr and "refused" in refused.stderr
    assert "--allow-private-network" in refused.stderr
    allowed = invoke("connections", "add", "meta", "--connector", "hostile", "--base-url", url,
                     "--allow-private-network", input="token-value\n")
    assert allowed.exit_code == 0
    shown = json.loads(invoke("connections", "show", "meta").stdout)
    assert shown["allow_private_network"] is True


def test_a_connection_without_the_option_cannot_reach_loopback(api, tmp_path):
    from splice.store.database import Store

    store = Store.open()
    record = store.require_connection("hostile")
    store.put_connection("hostile", connector="hostile", auth_type="bearer",
                         base_url=record.base_url, config={}, secret={"token": SECRET})
    store.close()
    code, report, _ = run(recipe(tmp_path / "r.yaml", send_step()))
    assert code == 1 and api.app.state.log == []
    assert "points at a loopback address (127.0.0.1); refused" in report["errors"][0]


def test_the_manifest_base_url_cannot_point_at_a_metadata_service(api, tmp_path):
    manifest = tmp_path / "meta.yaml"
    manifest.write_text((FIXTURES / "hostile.yaml").read_text().replace(
        "id: hostile", "id: metadata_grab").replace("https://hostile.invalid/api/v1",
                                                    "http://169.254.169.254/latest"))
    from splice.connections.client import connection_client
    from splice.errors import ConfigError
    from splice.store.database import Store

    connector = load_manifest(manifest)
    store = Store.open()
    with pytest.raises(ConfigError, match=r"link-local address \(169\.254\.169\.254\)"):
        connection_client(connector, None, store, None)
    store.close()


def test_names_that_resolve_to_private_addresses_are_refused(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))])
    guard = HostGuard()
    with pytest.raises(RequestError, match=r"a name that resolves to a private address"):
        guard(httpx.Request("GET", "https://internal-looking.example/x"))
    assert refusal("api.example.com") is None and refusal("8.8.8.8") is None


def test_urls_are_normalised_before_the_base_check():
    base = "https://h.example/api/v1"
    for url in ("https://h.example/api/v1/../../admin", "https://h.example/api/v1/%2e%2e/x",
                "https://h.example/api/v1/a/..%2F..%2F..%2Fadmin",
                "https://h.example/api/v1/..\\admin"):
        with pytest.raises(RequestError, match="outside the connection's base URL"):
            ensure_under_base(url, base)
    ensure_under_base("https://h.example/api/v1/a/../b", base)


# ---------------------------------------------------------------------------- error bodies


def test_api_error_bodies_are_redacted_and_cut(api, tmp_path, caplog):
    api.app.state.echo_auth = True
    with caplog.at_level(logging.DEBUG, "splice"):
        result = invoke("--verbose", "run", str(recipe(tmp_path / "r.yaml", send_step())),
                        "--backfill", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    # the echoed header and its base64 form are both masked
    assert "HTTP 400: invalid credentials: *** (as sent: ***)" in report["errors"][0]
    texts = [result.stdout, result.stderr, *(r.getMessage() for r in caplog.records),
             *filter(None, api.event_errors().values())]
    for text in texts:
        assert SECRET not in text
        assert SECRET.lower() not in text.lower()


# ---------------------------------------------------------------------------- secrets


SECRET_TEMPLATE = """\
{%- if trigger.count == 1 %}{{ [1].index(trigger.secret | upper) }}
{%- elif trigger.count == 2 %}{{ [1].index(trigger.secret.lower()) }}
{%- elif trigger.count == 3 %}{{ [1].index(trigger.secret[3:-2]) }}
{%- elif trigger.count == 4 %}{{ {'a': 1}[trigger.secret.split('-')[1]] }}
{%- elif trigger.count == 5 %}{{ '%d' % trigger.secret.split('-')[2] }}
{%- elif trigger.count == 6 %}{{ (trigger.secret.swapcase() ~ 'x') | from_json }}
{%- elif trigger.count == 7 %}{{ trigger.secret.title() > 3 }}
{%- else %}fine{% endif %}"""


def test_transformed_secrets_never_reach_messages_logs_output_or_the_ledger(api, tmp_path,
                                                                           caplog):
    from .test_hostile_templates import assert_no_secret

    api.app.state.items = items(8, secret=SECRET)
    api.app.state.echo_auth = True  # the 8th event reaches the API, which echoes the token
    steps = send_step(note=json.dumps(SECRET_TEMPLATE), count='"{{ trigger.count }}"')
    path = recipe(tmp_path / "r.yaml", steps)
    with caplog.at_level(logging.DEBUG):
        result = invoke("--verbose", "run", str(path), "--backfill", "--json")
        shown = invoke("runs", "show", json.loads(result.stdout)["run_id"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["events_failed"] == 8, report
    assert len(posts(api.app)) == 1  # only the 8th rendered; the API refused it
    texts = [result.stdout, result.stderr, shown.stdout, shown.stderr,
             *(record.getMessage() for record in caplog.records), *api.error_columns()]
    assert len(api.error_columns()) >= 8
    for text in texts:
        assert_no_secret(text)
    assert "details hidden" in result.stdout

"""Every pagination kind against the fault server; guards, max_pages, checkpoints; and a trigger
that crashes mid-pagination and resumes without emitting anything twice."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from splice.errors import RequestError
from splice.http.client import ApiClient
from splice.http.pagination import Page
from splice.http.request import prepare_call
from splice.model.manifest import Connector, load_manifest
from splice.sandbox import serve

from .faultserver import create_app, make_records

OFFSET = {"type": "offset", "offset_param": "skip", "limit_param": "limit", "page_size": 10}
KINDS: dict[str, dict[str, Any]] = {
    "offset": {**OFFSET, "total_path": "total"},
    "offset_no_total": OFFSET,
    "page": {"type": "page", "page_param": "page", "limit_param": "per_page", "page_size": 10},
    "cursor": {"type": "cursor", "cursor_param": "cursor", "cursor_path": "next_cursor",
               "has_more_path": "has_more", "limit_param": "limit", "page_size": 10},
    "cursor_header": {"type": "cursor", "cursor_param": "after",
                      "cursor_header": "X-Next-Cursor", "limit_param": "limit",
                      "page_size": 10},
    "next": {"type": "next_url", "next_url_path": "links.next", "limit_param": "limit",
             "page_size": 10},
    "link": {"type": "link", "limit_param": "limit", "page_size": 10},
    "stuck": {"type": "cursor", "cursor_param": "cursor", "cursor_path": "next_cursor",
              "limit_param": "limit", "page_size": 10},
    "ignores_skip": OFFSET,
    "escape": {"type": "next_url", "next_url_path": "links.next"},
}
PATHS = {"offset_no_total": "offset"}
RECORD_PATHS = {"page": "items"}


def connector() -> Connector:
    ops: dict[str, Any] = {}
    for name, spec in KINDS.items():
        ops[f"list_{name}"] = {
            "method": "GET", "path": f"/items/{PATHS.get(name, name)}",
            "input": {"type": "object"}, "output": {"type": "object"},
            "records": RECORD_PATHS.get(name, "data"), "pagination": spec}
    ops["list_unpaged"] = {"method": "GET", "path": "/items/offset", "input": {"type": "object"},
                           "output": {"type": "object"}, "records": "data"}
    return load_manifest({"id": "pages", "name": "Pages", "version": "1",
                          "base_url": "https://pages.invalid", "auth": {"type": "none"},
                          "operations": ops})


@pytest.fixture
def crm_only(fakecrm: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake CRM with no other connector loaded (they take seconds to parse)."""
    from .conftest import _FakeCrmPlugin, register_test_plugin

    monkeypatch.setenv("SPLICE_LOAD_PLUGINS", "")
    register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
    return fakecrm


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, str]]:
    app = create_app(25)
    with serve(app) as url:
        yield app, url


@pytest.fixture
def api(server: tuple[Any, str]) -> Iterator[Any]:
    app, url = server
    app.state.log.clear()
    app.state.records = make_records(25)
    conn = connector()
    client = ApiClient(conn, base_url=url, sleep=lambda s: None)

    class Api:
        def __init__(self) -> None:
            self.app, self.url, self.client = app, url, client

        def pages(self, kind: str, **kwargs: Any) -> list[Page]:
            op = conn.operation(f"list_{kind}")
            call = prepare_call(op, conn, {}, base_url=url)
            return list(client.iter_pages(op, call, **kwargs))

        def requests(self) -> list[dict[str, str]]:
            return [a.query for a in app.state.log]

    yield Api()
    client.close()


def ids(pages: list[Page]) -> list[str]:
    return [r["id"] for p in pages for r in p.records]


ALL = [f"r{i:05d}" for i in range(1, 26)]


@pytest.mark.parametrize("kind", ["offset", "offset_no_total", "page", "cursor",
                                  "cursor_header", "next", "link"])
def test_each_kind_reads_every_record_once(api, kind):
    pages = api.pages(kind)
    assert ids(pages) == ALL
    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert len(api.requests()) == 3
    assert pages[-1].next is None and all(p.next for p in pages[:-1])


def test_offset_sends_skip_and_limit(api):
    api.pages("offset")
    assert [(q["skip"], q["limit"]) for q in api.requests()] == [("0", "10"), ("10", "10"),
                                                                 ("20", "10")]


def test_offset_stops_at_total_without_asking_for_an_empty_page(api):
    api.app.state.records = make_records(30)
    assert len(ids(api.pages("offset"))) == 30
    assert len(api.requests()) == 3  # total says 30: no 4th request
    api.app.state.log.clear()
    assert len(ids(api.pages("offset_no_total"))) == 30
    assert len(api.requests()) == 4  # without a total, an empty page ends the list


def test_page_numbers_count_from_one(api):
    api.pages("page")
    assert [q["page"] for q in api.requests()] == ["1", "2", "3"]


def test_cursor_from_the_body_and_from_a_header(api):
    api.pages("cursor")
    assert [q.get("cursor") for q in api.requests()] == [None, "10", "20"]
    api.app.state.log.clear()
    api.pages("cursor_header")
    assert [q.get("after") for q in api.requests()] == [None, "10", "20"]


def test_link_and_next_url_follow_relative_urls(api):
    api.pages("link")
    assert [q.get("from") for q in api.requests()] == [None, "10", "20"]


def test_same_cursor_twice_stops_the_loop(api, caplog):
    with caplog.at_level(logging.WARNING, logger="splice.pagination"):
        pages = api.pages("stuck")
    assert len(api.requests()) == 2  # the first page, then the one cursor it kept sending
    assert len(pages) == 2 and pages[-1].next is None
    assert "already sent" in caplog.text


def test_api_that_ignores_the_offset_stops_after_one_repeat(api, caplog):
    with caplog.at_level(logging.WARNING, logger="splice.pagination"):
        pages = api.pages("ignores_skip")
    assert ids(pages) == ALL[:10]  # the repeated page adds nothing
    assert len(api.requests()) == 2
    assert "repeats the page before it" in caplog.text


def test_next_url_outside_the_base_url_is_refused(api):
    with pytest.raises(RequestError, match="outside the connection's base URL"):
        api.pages("escape")
    assert len(api.requests()) == 1


def test_max_pages_stops_and_the_checkpoint_resumes(api):
    first = api.pages("offset", max_pages=2)
    assert ids(first) == ALL[:20] and len(api.requests()) == 2
    checkpoint = first[-1].next
    assert checkpoint == {"offset": 20, "fetched": 20}
    api.app.state.log.clear()
    rest = api.pages("offset", resume=checkpoint)
    assert ids(rest) == ALL[20:]
    assert [q["skip"] for q in api.requests()] == ["20"]


@pytest.mark.parametrize("kind", ["page", "cursor", "cursor_header", "next", "link"])
def test_every_kind_resumes_from_its_checkpoint(api, kind):
    checkpoint = api.pages(kind, max_pages=1)[-1].next
    assert checkpoint is not None
    assert ids(api.pages(kind, resume=checkpoint)) == ALL[10:]


def test_a_checkpoint_of_another_kind_starts_over(api, caplog):
    with caplog.at_level(logging.WARNING, logger="splice.pagination"):
        assert ids(api.pages("offset", resume={"cursor": "abc"})) == ALL
    assert "does not fit offset pagination" in caplog.text


def test_a_checkpoint_url_outside_the_base_is_refused(api):
    with pytest.raises(RequestError):
        api.pages("next", resume={"url": "http://evil.invalid/x"})


def test_unpaginated_operation_is_one_page(api):
    pages = api.pages("unpaged")
    assert len(pages) == 1 and len(pages[0].records) == 10 and pages[0].next is None


def test_pages_stream_one_request_at_a_time(api):
    conn = connector()
    op = conn.operation("list_offset")
    stream = api.client.pages(op, prepare_call(op, conn, {}, base_url=api.url))
    body, records = next(stream)
    assert len(records) == 10 and len(api.requests()) == 1  # page 2 not fetched yet
    next(stream)
    assert len(api.requests()) == 2
    stream.close()


# --------------------------------------------------------------------------- crash + resume


def _crash_after_notes(home: str, posts_before_crash: int) -> None:
    """Child process: run the notes recipe and die hard (no cleanup) right after the API
    answered POST number ``posts_before_crash`` to /notes, before splice recorded it."""
    from splice import plugins
    from splice.http import client as http
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner
    from splice.store.database import Store

    from .conftest import FIXTURES, _FakeCrmPlugin, register_test_plugin

    os.environ["SPLICE_HOME"] = home
    os.environ["SPLICE_LOAD_PLUGINS"] = ""  # only the fake CRM: parsing the others is slow
    register_test_plugin(_FakeCrmPlugin(), "fakecrm-test-plugin")
    registry = plugins.get_registry()
    store = Store.open()
    plan = build_plan(load_recipe(FIXTURES / "notes.yaml"), registry,
                      TemplateEngine(registry.filters),
                      connections={c.name: c for c in store.list_connections()})
    real_send = http.ApiClient.send
    count = 0

    def send(self: Any, op: Any, call: Any) -> Any:
        nonlocal count
        result = real_send(self, op, call)
        if call.url.endswith("/notes"):
            count += 1
            if count == posts_before_crash:
                os._exit(17)
        return result

    http.ApiClient.send = send  # type: ignore[method-assign]
    Runner(plan, store, registry).run(mode="once", backfill=True)
    os._exit(0)


def _crash_and_resume(fakecrm: Any, splice_home: Path, posts_before_crash: int) -> list[Any]:
    from splice import plugins
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner

    from .conftest import FIXTURES

    os.environ["SPLICE_LEASE_TTL"] = "1"  # the dead child's lease expires after 1 s
    try:
        child = multiprocessing.get_context("spawn").Process(
            target=_crash_after_notes, args=(str(splice_home), posts_before_crash))
        child.start()
        child.join(timeout=60)
    finally:
        del os.environ["SPLICE_LEASE_TTL"]
    assert child.exitcode == 17, "the child should have crashed mid-run"
    crashed_log = list(fakecrm.log)
    registry = plugins.get_registry()
    plan = build_plan(load_recipe(FIXTURES / "notes.yaml"), registry,
                      TemplateEngine(registry.filters),
                      connections={c.name: c for c in fakecrm.store.list_connections()})
    report = Runner(plan, fakecrm.store, registry).run(mode="once", backfill=True, wait=True)
    assert report.ok and report.held_by is None, report.errors
    return crashed_log


def test_crash_mid_pagination_resumes_without_emitting_anything_twice(crm_only, splice_home):
    fakecrm = crm_only
    _crash_and_resume(crm_only, splice_home, posts_before_crash=15)  # inside page 2
    state = fakecrm.app.state
    assert len(state.notes) == 25  # the note whose answer was lost was not created twice
    assert sorted(n["subject"] for n in state.notes) == sorted(
        f"New contact Contact {i}" for i in range(1, 26))
    for contact_id, tags in state.tags.items():
        assert len(tags) == 2, f"{contact_id} was tagged twice: {tags}"
    assert len(state.tags) == 25
    keys = [entry[3] for entry in fakecrm.posts() if entry[1] == "/notes"]
    assert len(set(keys)) == 25 and len(keys) == 26  # one re-send, with the same key


def test_crash_mid_pagination_resumes_from_the_page_checkpoint(crm_only, splice_home):
    fakecrm = crm_only
    crashed_log = _crash_and_resume(crm_only, splice_home, posts_before_crash=15)
    resumed = [e for e in fakecrm.log[len(crashed_log):] if e[1] == "/contacts"]
    assert resumed[0][2]["skip"] == "10"  # page 1 was done: the resumed run starts at page 2


class SlowTransport(httpx.HTTPTransport):
    """Adds latency to POSTs and records how many were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return super().handle_request(request)
        import time

        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.05)
            return super().handle_request(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_step_concurrency_runs_items_in_parallel_and_keeps_their_order(crm_only, tmp_path):
    fakecrm = crm_only
    from splice import plugins
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner

    recipe = tmp_path / "fanout.yaml"
    recipe.write_text(
        "name: Fan out\n"
        "trigger: {use: fakecrm.contact_updated, connection: crm}\n"
        "steps:\n"
        "  - id: notes\n"
        "    use: fakecrm.create_note\n"
        "    connection: crm\n"
        "    for_each: \"{{ range(8) | list }}\"\n"
        "    concurrency: 4\n"
        "    with: {subject: \"n{{ item }}\", body: \"{{ trigger.id }}\"}\n"
        "  - use: fakecrm.add_tags\n"
        "    connection: crm\n"
        "    with:\n"
        "      contact_id: \"{{ trigger.id }}\"\n"
        "      tags: [\"{{ steps.notes | map(attribute='subject') | join(',') }}\"]\n")
    fakecrm.app.state.contacts = fakecrm.app.state.contacts[:1]
    registry = plugins.get_registry()
    plan = build_plan(load_recipe(recipe), registry, TemplateEngine(registry.filters),
                      connections={c.name: c for c in fakecrm.store.list_connections()})
    transport = SlowTransport()
    report = Runner(plan, fakecrm.store, registry, transport=transport).run(backfill=True)
    assert report.ok, report.errors
    assert transport.most == 4  # bounded by the step's concurrency, and really parallel
    assert fakecrm.app.state.tags["c0001"] == [",".join(f"n{i}" for i in range(8))]

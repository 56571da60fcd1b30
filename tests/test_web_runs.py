"""Dashboard runs, events, dead letters, live updates, budget and charts over real HTTP.

serve (with the dashboard) runs the tag recipe every second against both sandboxes; a bad
mapping (a tag prefix with a comma, which Invoice2go refuses) makes a real dead letter; the
fixed file is hot-reloaded and the event page's Retry sends it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from splice.connections.status import needed_scopes
from splice.run.budget import plan_budget
from splice.run.demo import CONNECTIONS, ensure_connection
from splice.store import queries
from splice.store import registry as reg

from .browser import dashboard  # noqa: F401 - fixture
from .conftest import ROOT, invoke
from .servekit import wait_for

TAGS = ROOT / "recipes" / "ghl_tags_to_invoice2go.yaml"
NAME = "Tags <script>alert(1)</script>"


@dataclass
class LiveTags:
    dash: Any
    path: Path
    recipe_id: str
    name: str = NAME

    def write(self, prefix: str) -> None:
        text = TAGS.read_text()
        assert "  tag_prefix: social-\n" in text and "  every: 15m\n" in text
        text = (text.replace("  tag_prefix: social-\n", f"  tag_prefix: '{prefix}'\n")
                .replace("  every: 15m\n", "  every: 1s\n")
                .replace("name: Tag Invoice2go invoices from HighLevel social tags",
                         f"name: {self.name}"))
        self.path.write_text(text)

    def loaded_prefix(self) -> str | None:
        loaded = self.dash.service.book.recipes.get(self.recipe_id)
        return loaded.plan.recipe.vars.get("tag_prefix") if loaded and loaded.plan else None

    def events(self, status: str) -> list[Any]:
        return queries.list_events(self.dash.store, recipe=self.recipe_id, status=status)


def connect(dash: Any, recipes: tuple[Path, ...] = (TAGS,)) -> None:
    """The connections the recipes name, through the sandboxes' OAuth flow."""
    for cid, name in CONNECTIONS.items():
        connector = dash.sandboxes.connectors[cid]
        ensure_connection(dash.store, connector, name, dash.sandboxes,
                          needed_scopes(connector, list(recipes)))


def start_tags(dash: Any, tmp_path: Path, prefix: str, name: str = NAME) -> LiveTags:
    """Connections, then the tag recipe (polling every second) registered and seeded."""
    connect(dash)
    live = LiveTags(dash, tmp_path / "tags.yaml", "", name)
    live.write(prefix)
    result = invoke("recipes", "add", str(live.path))
    assert result.exit_code == 0, result.output
    (row,) = reg.list_all(dash.store)
    live.recipe_id = row.id
    wait_for(lambda: [r for r in dash.store.list_runs(recipe=name) if r.status == "succeeded"],
             timeout=30)
    return live


def signed_in(dash: Any) -> httpx.Client:
    http = httpx.Client(base_url=dash.url, timeout=10)
    assert http.get(dash.link().removeprefix(dash.url)).status_code == 303
    return http


def csrf_of(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def break_and_fail(live: LiveTags, tag: str = "Kord Industries") -> Any:
    """A new HighLevel tag whose Invoice2go tag the bad prefix makes invalid: a dead letter."""
    live.dash.sandboxes.control("ghl_users", "POST", "tags", {"tag": tag})
    (event,) = wait_for(lambda: live.events("dead"), timeout=30)
    return event


@pytest.fixture
def tags(dashboard: Any, tmp_path: Path) -> Iterator[LiveTags]:  # noqa: F811
    yield start_tags(dashboard, tmp_path, "social,")


def test_a_failure_shows_its_class_and_fix_and_retry_sends_it_after_the_fix(
        tags: LiveTags) -> None:
    dash = tags.dash
    event = break_and_fail(tags)
    assert event.error_class == "validation"
    http = signed_in(dash)

    runs = http.get("/runs")
    assert runs.status_code == 200
    assert "Tags &lt;script&gt;alert(1)&lt;/script&gt;" in runs.text
    assert "<script>alert(1)" not in runs.text
    assert f'id="run-{event.run_id}"' in runs.text
    failed = http.get(f"/runs?status=failed&recipe={NAME}")
    assert f'id="run-{event.run_id}"' in failed.text
    assert 'id="run-' not in http.get("/runs?status=interrupted").text

    detail = http.get(f"/runs/{event.run_id[:8]}")  # a prefix works, like the CLI
    assert detail.status_code == 200 and f'id="event-{event.id}"' in detail.text
    assert ">validation<" in detail.text

    page = http.get(f"/events/{event.id}")
    assert page.status_code == 200
    assert '<span class="badge bad" id="error-class">validation</span>' in page.text
    assert "fix the recipe" in page.text  # the fix the engine wrote with the dead letter
    assert "Kord Industries" in page.text  # the trigger record
    assert "GET " in page.text and "/clients" in page.text  # the steps that succeeded

    dead = http.get("/dead-letters")
    assert f'id="dead-{event.id}"' in dead.text

    csrf = csrf_of(page.text)
    assert http.post(f"/events/{event.id}/retry").status_code == 403  # no CSRF token
    assert dash.store.get_event(event.id).status == "dead"

    tags.write("social-")  # the fix; serve reloads the file
    wait_for(lambda: tags.loaded_prefix() == "social-", timeout=10)
    retried = http.post(f"/events/{event.id}/retry", data={"csrf": csrf})
    assert retried.status_code == 303 and retried.headers["location"] == f"/events/{event.id}"
    wait_for(lambda: dash.store.get_event(event.id).status == "succeeded", timeout=30)
    state = dash.sandboxes.state("invoice2go")
    assert any("social-kord-industries" in i["tags"] for i in state["invoices"])
    after = http.get(f"/events/{event.id}")
    assert "Runs again now" in after.text or "runs again now" in after.text  # the flash
    assert '<span class="badge ok">succeeded</span>' in after.text
    assert 'id="dead-' not in http.get("/dead-letters").text
    assert http.get("/events/999999").status_code == 404
    assert http.get("/runs/nope-nope").status_code == 404


def test_requeue_from_the_dead_letter_list(tags: LiveTags) -> None:
    event = break_and_fail(tags, "Daily Planet")
    http = signed_in(tags.dash)
    csrf = csrf_of(http.get("/dead-letters").text)
    tags.write("social-")
    wait_for(lambda: tags.loaded_prefix() == "social-", timeout=10)
    done = http.post(f"/dead-letters/{event.id}/requeue", data={"csrf": csrf})
    assert done.status_code == 303
    wait_for(lambda: tags.dash.store.get_event(event.id).status == "succeeded", timeout=30)
    again = http.post(f"/dead-letters/{event.id}/requeue", data={"csrf": csrf},
                      follow_redirects=True)
    assert "not a dead letter" in again.text


def _listen(url: str, cookies: Any, seen: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, cookies=cookies, timeout=30) as http, \
            http.stream("GET", "/live/runs") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            seen.append(line)
            if stop.is_set():
                return


def test_live_stream_sends_new_runs_to_every_listener_from_one_poll(tags: LiveTags) -> None:
    dash = tags.dash
    http = signed_in(dash)
    feed = dash.service.dashboard.live
    feed.heartbeat = 0.3
    stop = threading.Event()
    seen: list[list[str]] = [[], []]
    threads = [threading.Thread(target=_listen, args=(dash.url, http.cookies, s, stop))
               for s in seen]
    for t in threads:
        t.start()
    wait_for(lambda: len(feed.listeners) == 2, timeout=10)
    polls, started = feed.polls, time.monotonic()
    tags.dash.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
    (event,) = wait_for(lambda: tags.events("dead"), timeout=30)

    def got(lines: list[str]) -> bool:
        runs = [json.loads(x[6:]) for x in lines if x.startswith("data: ")]
        return any(m["id"] == event.run_id and m["status"] == "failed" for m in runs) and \
            any(m["id"] == event.id and m["run_id"] == event.run_id for m in runs)

    wait_for(lambda: all(got(s) for s in seen), timeout=15)
    elapsed = time.monotonic() - started
    # One database poll a tick for both listeners (two would be twice this).
    assert feed.polls - polls <= elapsed / feed.interval + 2
    wait_for(lambda: all(": heartbeat" in s for s in seen), timeout=5)
    assert all(s[0].startswith("retry: ") for s in seen)
    html = next(json.loads(x[6:])["html"] for x in seen[0] if x.startswith("data: ")
                and json.loads(x[6:])["id"] == event.run_id)
    assert "&lt;script&gt;" in html and "<script>" not in html  # rendered escaped

    dash.service.dashboard.close()  # shutdown: every stream ends now
    stop.set()
    for t in threads:
        t.join(timeout=5)
        assert not t.is_alive()
    assert not feed.listeners
    assert http.get("/live/runs").status_code == 503  # closed: no new listener


def test_budget_and_charts_pages_show_the_planner_and_what_was_sent(
        dashboard: Any, tmp_path: Path) -> None:  # noqa: F811
    live = start_tags(dashboard, tmp_path, "social-")
    live.dash.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
    wait_for(lambda: live.events("succeeded"), timeout=30)
    http = signed_in(dashboard)
    (loaded,) = dashboard.service.book.enabled()

    def plan() -> Any:
        return plan_budget(dashboard.store, dashboard.service.registry,
                           [(loaded.id, loaded.name, loaded.plan)])

    before = plan()
    page = http.get("/budget")
    after = plan()  # serve polls every second: the page matches one of the two
    assert page.status_code == 200
    assert "ghl_users/locationId=ve9EPM428h8vShlRW1KT" in page.text
    assert "invoice2go/connection=my-invoice2go" in page.text
    matched = [r for r in (before, after) if all(
        k.suggestion[1:] in page.text and
        all(f'width="{min(100.0, round(w.share * 100, 2))}"' in page.text for w in k.windows)
        for k in r.keys)]
    assert matched, page.text
    ghl = next(k for k in matched[0].keys if k.connector == "ghl_users")
    (cost,) = ghl.costs
    assert cost.measured > 0 and cost.every == 1.0
    assert "measured over" in page.text
    assert "&lt;script&gt;" in page.text and "<script>alert" not in page.text

    charts = http.get(f"/recipes/{live.recipe_id}/charts")
    assert charts.status_code == 200
    state = dashboard.sandboxes.state("invoice2go")
    tagged = [i for i in state["invoices"] if "social-kord-industries" in i["tags"]]
    assert tagged and "Invoices tagged per tag" in charts.text
    assert ">Kord Industries<title>" in charts.text
    assert 'class="value" x=' in charts.text and f">{len(tagged)}</text>" in charts.text
    assert http.get("/recipes/no-such-recipe/charts").status_code == 404


def test_sigterm_ends_live_streams_at_once(tmp_path: Path) -> None:
    """A real `splice serve` with a browser listening to /live/runs stops at once on SIGTERM
    (without the stream ending itself, uvicorn would wait its grace and cancel it)."""
    from splice.sandbox import free_port
    from splice.store import logins
    from splice.store.database import Store

    from .servekit import ServeProcess

    serve = ServeProcess(free_port(), log=tmp_path / "serve.log")
    try:
        serve.wait_ready()
        store = Store.open()
        token = logins.mint(store)
        store.close()
        http = httpx.Client(base_url=serve.url, timeout=10)
        assert http.get(f"/login?token={token}").status_code == 303
        lines: list[str] = []
        done = threading.Event()

        def listen() -> None:
            try:
                with http.stream("GET", "/live/runs") as response:
                    for line in response.iter_lines():
                        lines.append(line)
            except httpx.HTTPError:
                lines.append("error")
            finally:
                done.set()

        thread = threading.Thread(target=listen)
        thread.start()
        wait_for(lambda: lines and lines[0].startswith("retry: "), timeout=10)
        code, seconds = serve.terminate()
        assert code == 0
        assert seconds < 1.5, seconds  # the grace is 2 s: the stream ended on its own
        assert done.wait(5) and "error" not in lines
        thread.join(5)
        assert "Exception in ASGI application" not in serve.output()
        assert "Cancel" not in serve.output()
    finally:
        serve.close()

"""The runs pages in a real browser (headless Chromium): a run appears without reloading when
a tag is created in the HighLevel sandbox (server-sent events), a broken mapping fails with
its class shown on the event page, and Retry sends it once the recipe is fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .browser import chromium, dashboard, page, phone_page, shot  # noqa: F401 - fixtures
from .servekit import wait_for
from .test_web_runs import break_and_fail, start_tags


def test_watch_a_run_arrive_live_then_fix_a_failure_and_retry_it(
        dashboard: Any, page: Any, tmp_path: Path) -> None:  # noqa: F811
    # A tag prefix with a comma: Invoice2go refuses the tag (a bad mapping).
    live = start_tags(dashboard, tmp_path, "social,", "Tag invoices from social tags")
    dashboard.login(page, "/runs")
    page.wait_for_selector("table#runs-table tbody tr")
    shot(page, "runs")
    page.evaluate("window.spliceNotReloaded = true")

    event = break_and_fail(live)
    row = page.wait_for_selector(f"#run-{event.run_id}", timeout=15_000)  # no reload
    assert page.evaluate("window.spliceNotReloaded") is True
    wait_for(lambda: "failed" in row.inner_text(), timeout=15)
    shot(page, "runs-live")

    page.click(f"#run-{event.run_id} a")
    page.wait_for_selector(f"#event-{event.id}")
    assert "validation" in page.inner_text(f"#event-{event.id}")
    shot(page, "run-detail")

    page.click(f"#event-{event.id} a")
    assert page.inner_text("#error-class") == "validation"
    assert "fix the recipe" in page.inner_text("#fix")
    shot(page, "event-failed")

    page.goto(f"{dashboard.url}/dead-letters")
    page.wait_for_selector(f"#dead-{event.id}")
    shot(page, "dead-letters")

    live.write("social-")  # the fix: serve hot-reloads the file
    wait_for(lambda: live.loaded_prefix() == "social-", timeout=10)
    page.goto(f"{dashboard.url}/events/{event.id}")
    page.click("#retry")
    page.wait_for_selector(".flash.ok")
    wait_for(lambda: dashboard.store.get_event(event.id).status == "succeeded", timeout=30)
    page.reload()
    assert page.inner_text("h1 .badge") == "succeeded"
    assert page.query_selector("#error-class") is None or \
        dashboard.store.get_event(event.id).last_error is None
    shot(page, "event-retried")
    state = dashboard.sandboxes.state("invoice2go")
    assert any("social-kord-industries" in i["tags"] for i in state["invoices"])

    page.goto(f"{dashboard.url}/budget")
    page.wait_for_selector("svg.budget-bar")
    assert "daily budget" in page.inner_text("main")
    shot(page, "budget")
    page.goto(f"{dashboard.url}/recipes/{live.recipe_id}/charts")
    page.wait_for_selector("svg.chart rect.bar")
    shot(page, "charts-tags")
    assert page.console_errors == []  # nothing broke the CSP (no inline script or style)


def test_runs_page_on_a_phone(dashboard: Any, phone_page: Any,  # noqa: F811
                              tmp_path: Path) -> None:
    start_tags(dashboard, tmp_path, "social-")
    dashboard.login(phone_page, "/runs")
    phone_page.wait_for_selector("table#runs-table tbody tr")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # the table scrolls inside its box, the page does not
    shot(phone_page, "runs-phone")
    assert phone_page.console_errors == []


def test_statistics_chart_shows_each_figure_over_time(dashboard: Any, page: Any,  # noqa: F811
                                                      tmp_path: Path) -> None:
    from splice.mapping.templates import TemplateEngine
    from splice.model.recipe import load_recipe
    from splice.run.plan import build_plan
    from splice.run.runner import Runner
    from splice.store import registry as reg

    from .conftest import invoke
    from .test_recipes import STATS, _with_days
    from .test_web_runs import connect

    connect(dashboard, (STATS,))
    week = _with_days(STATS, 7, tmp_path)
    assert invoke("recipes", "add", str(week)).exit_code == 0
    registry = dashboard.service.registry
    plan = build_plan(load_recipe(week), registry, TemplateEngine(registry.filters),
                      connections={c.name: c for c in dashboard.store.list_connections()})
    runner = Runner(plan, dashboard.store, registry)
    try:
        report = runner.run(mode="once", backfill=True, wait=True)
    finally:
        runner.close()
    assert report.ok, report.errors
    (row,) = reg.list_all(dashboard.store)
    wait_for(lambda: row.id in dashboard.service.book.recipes, timeout=10)
    dashboard.login(page, f"/recipes/{row.id}/charts")
    page.wait_for_selector("svg.chart polyline.line")
    titles = page.locator(".chart-card h2").all_inner_texts()
    assert sorted(titles) == sorted(["Social posts published", "Social impressions",
                                     "Social likes", "Social comments", "Social followers"])
    assert page.locator("svg.chart circle.dot").count() == 5 * 7  # a week of days each
    shot(page, "charts-statistics")
    assert page.console_errors == []

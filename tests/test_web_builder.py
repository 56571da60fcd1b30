"""The recipe builder and verified test transactions in the dashboard.

Real serve over loopback with both sandboxes (real HTTP, real OAuth for the connections),
real Chromium through Playwright for the person's path: build the HighLevel social tags ->
Invoice2go invoice tags recipe from dropdowns, test it (read-back diff all equal), go live;
open a commented recipe file and save it with its comments.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from splice.builder.document import read_data
from splice.connections.status import needed_scopes
from splice.run.demo import CONNECTIONS, ensure_connection
from splice.store import registry as reg

from .browser import chromium, dashboard, page, shot  # noqa: F401 - fixtures
from .conftest import ROOT

RECIPES = ROOT / "recipes"
TAGS = RECIPES / "ghl_tags_to_invoice2go.yaml"


def connect_both(dash: Any) -> None:
    """my-highlevel and my-invoice2go through the sandboxes' real OAuth flow."""
    for cid, name in CONNECTIONS.items():
        connector = dash.sandboxes.connectors[cid]
        scopes = sorted(set(needed_scopes(connector, sorted(RECIPES.glob("*.yaml"))))
                        | set(connector.scopes))
        ensure_connection(dash.store, connector, name, dash.sandboxes, scopes)


def signed_in(dash: Any) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=dash.url, timeout=30)
    response = http.get(dash.link().removeprefix(dash.url))
    assert response.status_code == 303
    html = http.get("/recipes").text
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return http, html[start:html.index('"', start)]


def form_fields(html: str) -> dict[str, str]:
    """The builder form's named inputs as a browser would post them (text, hidden, selects'
    selected option, textareas)."""
    import html as htmlmod

    out: dict[str, str] = {}
    for m in re.finditer(r'<input type="(?:text|hidden)"[^>]*?name="([^"]+)"[^>]*?value="([^"]*)"',
                         html):
        out[htmlmod.unescape(m.group(1))] = htmlmod.unescape(m.group(2))
    for m in re.finditer(r'<textarea[^>]*?name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        out[htmlmod.unescape(m.group(1))] = htmlmod.unescape(m.group(2))
    for m in re.finditer(r'<select[^>]*?name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', m.group(2))
        out[htmlmod.unescape(m.group(1))] = htmlmod.unescape(chosen.group(1)) if chosen else ""
    return out


# ------------------------------------------------------------------------ HTTP (no browser)


def test_recipe_pages_need_a_session_and_csrf(dashboard: Any) -> None:  # noqa: F811
    anon = httpx.Client(base_url=dashboard.url, timeout=10)
    for path in ("/recipes", "/recipes/new", "/recipes/x/edit", "/recipes/x/test",
                 "/recipes/x"):
        assert anon.get(path).status_code == 303, path
    assert anon.get("/recipes/builder/options?use=a.b&field=c",
                    headers={"HX-Request": "true"}).status_code == 401
    http, _csrf = signed_in(dashboard)
    for path in ("/recipes/builder/check", "/recipes/builder/save", "/recipes/x/enable",
                 "/recipes/builder/preview", "/recipes/x/test"):
        assert http.post(path, data={"name": "x"}).status_code == 403, path


def test_an_opened_recipe_saves_back_with_its_comments_and_same_mapping(
        dashboard: Any, tmp_path: Path) -> None:  # noqa: F811
    connect_both(dashboard)
    copy = tmp_path / "tags.yaml"
    copy.write_text(TAGS.read_text())
    added = dashboard.cli("recipes", "add", str(copy), "--disabled")
    assert added.returncode == 0, added.stderr
    [row] = reg.list_all(dashboard.store)
    http, csrf = signed_in(dashboard)
    page_html = http.get(f"/recipes/{row.id}/edit").text
    fields = form_fields(page_html)
    assert fields["steps"] == "4" and fields["trigger.use"] == "ghl_users.tag_updated"
    assert fields["steps.3.with.invoice_id"] == "{{ item.id }}"
    saved = http.post("/recipes/builder/save", data={**fields, "csrf": csrf})
    assert saved.status_code == 303 and saved.headers["location"] == f"/recipes/{row.id}"
    assert copy.read_text() == TAGS.read_text()  # unchanged: byte for byte, comments too
    fields["steps.1.connection"] = "my-invoice2go"
    fields["name"] = "Tags to invoices (edited)"
    saved = http.post("/recipes/builder/save", data={**fields, "csrf": csrf})
    assert saved.status_code == 303
    text = copy.read_text()
    assert "# Matching rule (read this before you copy the recipe):" in text
    assert "# 4. Add the tag to each of those invoices" in text
    want = read_data(TAGS.read_text(), str(TAGS))
    want["name"] = "Tags to invoices (edited)"
    assert read_data(text, str(copy)) == want
    assert reg.get(dashboard.store, row.id).name == "Tags to invoices (edited)"
    assert dashboard.cli("validate", str(copy)).returncode == 0


def test_a_field_is_checked_as_typed_and_an_invalid_recipe_is_not_saved(
        dashboard: Any) -> None:  # noqa: F811
    connect_both(dashboard)
    http, csrf = signed_in(dashboard)
    data = {"name": "t", "trigger": {"use": "ghl_users.tag_updated",
                                     "connection": "my-highlevel"},
            "steps": [{"use": "invoice2go.create_client", "connection": "my-invoice2go",
                       "with": {"name": "{{ trigger.tagg }}"}}]}
    from splice.web.builder_form import data_to_form

    fields = data_to_form(data)
    answer = http.post("/recipes/builder/check", data={**fields, "csrf": csrf},
                       headers={"HX-Request": "true", "HX-Trigger-Name": "steps.0.with.name"})
    assert answer.status_code == 200
    assert "steps[0].with.name: &#39;trigger.tagg&#39; does not exist in the trigger&#39;s " \
           "output schema (did you mean &#39;tag&#39;?)" in answer.text
    fields["steps.0.with.name"] = "{{ trigger.tag | slug }}"
    ok = http.post("/recipes/builder/check", data={**fields, "csrf": csrf},
                   headers={"HX-Request": "true", "HX-Trigger-Name": "steps.0.with.name"})
    assert ok.status_code == 200 and "error" not in ok.text
    fields["steps.0.with.name"] = "{{ trigger.tagg }}"
    refused = http.post("/recipes/builder/save", data={**fields, "csrf": csrf})
    assert refused.status_code == 400 and "Not saved: fix these first" in refused.text
    assert "does not exist in the trigger" in refused.text
    assert reg.list_all(dashboard.store) == []
    assert not list((dashboard.home / "recipes").glob("*.yaml"))


def test_script_in_a_name_or_value_is_shown_escaped(dashboard: Any) -> None:  # noqa: F811
    connect_both(dashboard)
    http, csrf = signed_in(dashboard)
    evil = "<script>alert(1)</script>"
    from splice.web.builder_form import data_to_form

    fields = data_to_form({
        "name": f"Evil {evil}", "trigger": {"use": "ghl_users.tag_updated",
                                            "connection": "my-highlevel"},
        "steps": [{"use": "invoice2go.create_client", "connection": "my-invoice2go",
                   "with": {"name": f"{evil} {{{{ trigger.tag }}}}"}}]})
    saved = http.post("/recipes/builder/save", data={**fields, "csrf": csrf})
    assert saved.status_code == 303, saved.text
    rid = saved.headers["location"].rsplit("/", 1)[1]
    for path in ("/recipes", f"/recipes/{rid}", f"/recipes/{rid}/edit", f"/recipes/{rid}/test"):
        html = http.get(path).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


# ------------------------------------------------------------------------ the browser


SETTLED = """() => { const f = document.getElementById('builder');
  return f && f['htmx-internal-data'] &&
    !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling'); }"""


def _settled(tab: Any) -> None:
    """htmx has swapped the builder in and wired it (its triggers listen)."""
    tab.wait_for_function(SETTLED)


def _choose(tab: Any, selector: str, value: str) -> None:
    """Pick an option and wait for the builder to re-render around it."""
    _settled(tab)
    with tab.expect_response(lambda r: r.url.endswith("/recipes/builder/form")):
        tab.select_option(selector, value)
    tab.wait_for_selector(f"{selector} option[value='{value}'][selected]", state="attached")
    _settled(tab)


def test_a_new_user_builds_tests_and_enables_the_tags_recipe(
        dashboard: Any, page: Any) -> None:  # noqa: F811
    connect_both(dashboard)
    dashboard.login(page, "/recipes")
    shot(page, "recipes-empty")
    page.click("text=New recipe")
    page.wait_for_url(dashboard.url + "/recipes/new")
    page.fill("#f-name", "Tag invoices from HighLevel social tags")
    _choose(page, "#f-trigger", "ghl_users.tag_updated")
    _choose(page, "#f-trigger-connection", "my-highlevel")
    # step 1: read an invoice chosen from the real ones in Invoice2go
    _choose(page, "#s0-use", "invoice2go.get_invoice")
    _choose(page, "#s0-connection", "my-invoice2go")
    with page.expect_response(lambda r: r.url.endswith("/recipes/builder/form")):
        page.fill("#s0-id", "invoice")
        page.dispatch_event("#s0-id", "change")
    _settled(page)
    row = page.locator(".map-row[data-input='invoice_id']")
    options = row.locator("select.options")
    options.locator("option:nth-child(2)").wait_for(state="attached")
    chosen = options.locator("option:nth-child(2)").get_attribute("value")
    invoices = {i["id"] for i in dashboard.sandboxes.state("invoice2go")["invoices"]}
    assert chosen in invoices  # a real invoice of the account, from list_invoices
    options.select_option(chosen)
    assert row.locator("input.template").input_value() == chosen
    # step 2: add the tag to it, mapped from dropdowns and one typed expression
    _settled(page)
    with page.expect_response(lambda r: r.url.endswith("/recipes/builder/form")):
        page.click("text=Add a step")
    page.wait_for_selector("#s1-use")
    _choose(page, "#s1-use", "invoice2go.add_invoice_tags")
    _choose(page, "#s1-connection", "my-invoice2go")
    for name, path in (("invoice_id", "steps.invoice.data.id"),
                       ("current_tags", "steps.invoice.data.tags")):
        field = page.locator(f"#step-1 .map-row[data-input='{name}']")
        field.locator("select.pick").first.select_option("{{ " + path + " }}")
        assert field.locator("input.template").input_value() == "{{ " + path + " }}"
    tags = page.locator("#step-1 .map-row[data-input='tags'] input.template")
    tags.fill("")
    tags.type('["{{ trigger.tagg | slug }}"]')
    error = page.locator("#step-1 .map-row[data-input='tags'] .errors .error")
    error.wait_for()
    assert "'trigger.tagg' does not exist in the trigger's output schema" in error.inner_text()
    shot(page, "builder-error")
    tags.fill("")
    tags.type('["{{ trigger.tag | slug }}"]')
    error.wait_for(state="detached")
    page.click("#preview-button")
    page.wait_for_selector("#preview .preview")
    assert "Nothing was written" in page.inner_text("#preview")
    assert "failed" not in page.inner_text("#preview")  # the read made step 2 real
    shot(page, "builder")
    page.click("#save")
    page.wait_for_url(re.compile(r".*/recipes/[^/]+$"))
    assert "Saved 'Tag invoices from HighLevel social tags'" in page.inner_text(".flash")
    shot(page, "recipe")
    saved = json.loads(dashboard.cli("recipes", "list", "--json", check=True).stdout)
    assert [(r["name"], r["enabled"]) for r in saved] == [
        ("Tag invoices from HighLevel social tags", False)]
    assert dashboard.cli("validate", saved[0]["path"]).returncode == 0

    page.click(".page-head a[href$='/test']")
    page.select_option("#event", "live")
    page.click("#run-test")
    page.wait_for_selector("#read-back")
    read_back = page.inner_text("#read-back")
    assert "Read back: all fields equal" in read_back, read_back
    diff = page.locator("#read-back table.diff tbody tr")
    assert diff.count() == 1
    assert "tags" in diff.first.inner_text() and "equal" in diff.first.inner_text()
    stored = next(i for i in dashboard.sandboxes.state("invoice2go")["invoices"]
                  if i["id"] == chosen)
    assert "snow-removal-raleigh" in stored["tags"]  # the live tag, really written
    assert "Authorization" not in page.content() and "Bearer" not in page.content()
    shot(page, "test-transaction")
    page.click("#go-live")
    page.wait_for_url(re.compile(r".*/recipes/[^/]+$"))
    assert "is live" in page.inner_text(".flash")
    listed = json.loads(dashboard.cli("recipes", "list", "--json", check=True).stdout)
    assert listed[0]["enabled"] is True
    page.goto(dashboard.url + "/recipes")
    shot(page, "recipes")
    assert page.console_errors == []


def test_a_commented_file_opens_in_the_builder_and_keeps_its_comments(
        dashboard: Any, page: Any, tmp_path: Path) -> None:  # noqa: F811
    connect_both(dashboard)
    copy = tmp_path / "tags.yaml"
    copy.write_text(TAGS.read_text())
    assert dashboard.cli("recipes", "add", str(copy), "--disabled").returncode == 0
    [row] = reg.list_all(dashboard.store)
    dashboard.login(page, f"/recipes/{row.id}/edit")
    assert page.input_value("#f-name") == "Tag Invoice2go invoices from HighLevel social tags"
    assert page.input_value("#step-3 .map-row[data-input='invoice_id'] input.template") == \
        "{{ item.id }}"
    shot(page, "builder-existing")
    page.fill("#f-name", "Tags to invoices <script>x</script>")
    page.click("#save")
    page.wait_for_url(dashboard.url + f"/recipes/{row.id}")
    assert page.inner_text("h1") == "Tags to invoices <script>x</script>"
    text = copy.read_text()
    assert text.count("\n#") + text.count("  #") >= 20  # the comments are all there
    assert "name: Tags to invoices <script>x</script>" in text
    assert text.replace("name: Tags to invoices <script>x</script>",
                        "name: Tag Invoice2go invoices from HighLevel social tags") == \
        TAGS.read_text()
    assert page.console_errors == []



def test_trigger_inputs_offer_real_values_and_lists_grow(dashboard: Any,  # noqa: F811
                                                         page: Any) -> None:  # noqa: F811
    connect_both(dashboard)
    dashboard.login(page, "/recipes/new")
    _choose(page, "#f-trigger", "ghl_users.statistics_refreshed")
    _choose(page, "#f-trigger-connection", "my-highlevel")
    row = page.locator(".map-row[data-input='profileIds']")
    options = row.locator("select.options")
    options.locator("option:nth-child(3)").wait_for(state="attached")
    values = [options.locator(f"option:nth-child({n})").get_attribute("value") for n in (2, 3)]
    accounts = dashboard.sandboxes.state("ghl_users")
    assert all(v and v in json.dumps(accounts) for v in values)  # real profile ids
    for value in values:
        options.select_option(value)
    field = row.locator("input.template")
    assert json.loads(field.input_value()) == values  # a list of ids, built by choosing
    page.wait_for_load_state("networkidle")
    assert row.locator(".errors .error").count() == 0
    locations = page.locator(".map-row[data-input='locationId']")
    assert "from the connection when empty" in locations.inner_text()
    shot(page, "builder-trigger-options")
    assert page.console_errors == []


def test_the_list_shows_a_refused_version_with_its_file_line_and_column(
        dashboard: Any, tmp_path: Path) -> None:  # noqa: F811
    from .servekit import wait_for

    connect_both(dashboard)
    copy = tmp_path / "tags.yaml"
    copy.write_text(TAGS.read_text())
    assert dashboard.cli("recipes", "add", str(copy)).returncode == 0
    [row] = reg.list_all(dashboard.store)
    text = TAGS.read_text().replace('client_id: "{{ item.id }}"', 'client_id: "{{ item.id }"')
    staged = tmp_path / "tags.yaml.new"  # replaced at once: serve never reads half a file
    staged.write_text(text)
    staged.replace(copy)  # serve notices the file and refuses the new version
    wait_for(lambda: reg.get(dashboard.store, row.id).status == "invalid", timeout=20)
    http, _csrf = signed_in(dashboard)
    html = http.get("/recipes").text
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '{{ item.id }"' in t)
    assert re.search(rf"{re.escape(str(copy))}:{line}:\d+: steps\[2\]\.with\.client_id", html)
    assert "invalid" in html and f'href="/recipes/{row.id}"' in html

"""The catalog and connected apps in a real browser (Chromium via Playwright): connect the
HighLevel and Invoice2go sandboxes through OAuth, disable an endpoint and see a recipe refused
(browser and CLI), search and filter the catalog, a test call with inline errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from splice.run.demo import recipes_dir

from .browser import chromium, dashboard, page, phone_page, shot  # noqa: F401 - fixtures

SECRET = "splice-demo-secret"
APPS = {"ghl_users": "my-highlevel", "invoice2go": "my-invoice2go"}


def script_errors(tab: Any) -> list[str]:
    """Console errors but the 400 answers of forms sent with mistakes (shown inline)."""
    return [e for e in tab.console_errors
            if "status of 400 (Bad Request)" not in e]


def connect_in_browser(dash: Any, page: Any, connector: str, name: str,  # noqa: F811
                       screenshot: str | None = None) -> None:
    """What a person does on /connections: fill the app's form, approve (the sandbox
    approves by itself), land on the connection's page."""
    page.goto(dash.url + "/connections")
    form = page.locator(f"form.connect-form[data-app='{connector}']")
    form.locator("summary").click()
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=client_id]").fill("splice-demo")
    form.locator("input[name=client_secret]").fill(SECRET)
    form.locator("input[name=base_url]").fill(dash.sandboxes.urls[connector])
    form.locator("input[name=allow_private_network]").check()
    if screenshot:
        shot(page, screenshot)
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{dash.url}/connections/{name}")
    assert f"Connected '{name}'" in page.inner_text(".flash.ok")


def test_connect_both_sandboxes_through_oauth_in_the_browser(dashboard: Any,  # noqa: F811
                                                              page: Any) -> None:  # noqa: F811
    dashboard.login(page, "/connections")
    assert "No app connected yet" in page.inner_text("main")
    shot(page, "connections-empty")
    for i, (connector, name) in enumerate(APPS.items()):
        connect_in_browser(dashboard, page, connector, name,
                           "connections-connect-form" if i == 0 else None)
        assert page.inner_text("h1").startswith(name)
        assert "valid" in page.inner_text(".page-head")
        shot(page, f"connection-{connector}")
    page.goto(dashboard.url + "/connections")
    rows = page.locator("tr.connection-row")
    assert rows.count() == 2
    assert page.locator("tr.connection-row .badge.ok").count() == 2
    shot(page, "connections")
    listed = json.loads(dashboard.cli("connections", "list", "--json", check=True).stdout)
    assert {r["name"]: r["state"] for r in listed} == {"my-highlevel": "valid",
                                                       "my-invoice2go": "valid"}
    assert all(r["scopes"] for r in listed)
    tested = dashboard.cli("connections", "test", "my-invoice2go")
    assert tested.returncode == 0, tested.stderr
    assert SECRET not in page.content()
    assert script_errors(page) == []


def test_reauthenticate_after_a_revocation(dashboard: Any, page: Any) -> None:  # noqa: F811
    dashboard.login(page, "/connections")
    connect_in_browser(dashboard, page, "invoice2go", "my-invoice2go")
    dashboard.cli("connections", "revoke", "my-invoice2go", check=True)
    page.goto(dashboard.url + "/")
    banner = page.locator(".banner.bad")
    assert "my-invoice2go" in banner.inner_text()
    shot(page, "reauth-banner")
    banner.locator("a", has_text="Re-authenticate").click()
    page.wait_for_url(f"{dashboard.url}/connections/my-invoice2go")
    shot(page, "connection-reauth-needed")
    page.locator(".page-head button", has_text="Re-authenticate").click()
    page.wait_for_url(f"{dashboard.url}/connections/my-invoice2go")
    assert "Connected 'my-invoice2go'" in page.inner_text(".flash.ok")
    assert page.locator(".banner.bad").count() == 0
    assert json.loads(dashboard.cli("connections", "show", "my-invoice2go",
                                    check=True).stdout)["state"] == "valid"


def test_a_disabled_endpoint_refuses_a_recipe_in_the_browser_and_the_cli(
        dashboard: Any, page: Any, tmp_path: Path) -> None:  # noqa: F811
    dashboard.login(page, "/connections")
    for connector, name in APPS.items():
        connect_in_browser(dashboard, page, connector, name)
    recipe = tmp_path / "ghl_tags_to_invoice2go.yaml"
    shutil.copy(recipes_dir() / recipe.name, recipe)
    dashboard.cli("recipes", "add", str(recipe), check=True)
    assert dashboard.cli("validate", str(recipe)).returncode == 0

    page.goto(dashboard.url + "/connections/my-highlevel")
    row = page.locator("#endpoint-list_tags")
    assert "enabled" in row.inner_text()
    row.locator("button", has_text="Disable").click()
    page.wait_for_url(f"{dashboard.url}/connections/my-highlevel#endpoint-list_tags")
    assert "ghl_users.list_tags disabled for 'my-highlevel'" in page.inner_text(".flash.ok")
    assert "disabled" in page.locator("#endpoint-list_tags").inner_text()
    refusal = page.inner_text("#refused")
    assert ("endpoint ghl_users.list_tags is disabled for connection 'my-highlevel' "
            "(trigger ghl_users.tag_updated polls it); enable it with `splice connections "
            "endpoints my-highlevel --enable list_tags`") in refusal
    shot(page, "connection-endpoint-disabled")

    checked = dashboard.cli("validate", str(recipe))
    assert checked.returncode == 2
    assert "endpoint ghl_users.list_tags is disabled for connection 'my-highlevel'" \
        in checked.stderr
    listed = dashboard.cli("connections", "endpoints", "my-highlevel", "--disabled")
    assert "list_tags" in listed.stdout

    # the test call of the disabled endpoint is refused too, nothing sent
    page.goto(dashboard.url + "/connections/my-highlevel/call/list_tags")
    page.locator("form.call-form button[type=submit]").click()
    page.wait_for_load_state()
    assert "is disabled for connection 'my-highlevel'" in page.inner_text(".call-error")
    shot(page, "call-refused")

    # the CLI enables it again; the page shows it
    dashboard.cli("connections", "endpoints", "my-highlevel", "--enable", "list_tags",
                  check=True)
    page.goto(dashboard.url + "/connections/my-highlevel")
    assert page.locator("#refused").count() == 0
    assert "enabled" in page.locator("#endpoint-list_tags").inner_text()
    assert dashboard.cli("validate", str(recipe)).returncode == 0
    assert script_errors(page) == []


def test_catalog_search_and_filters(dashboard: Any, page: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    from splice.web.catalog import catalog

    total = len(catalog(dashboard.service.registry))
    assert total == 132  # `splice connectors list`: 88 actions and 44 triggers
    dashboard.login(page, "/catalog")
    assert page.locator("tr.catalog-row").count() == total
    assert page.inner_text("#result-count") == str(total)
    shot(page, "catalog")

    page.fill("#q", "tag")  # htmx: the results change without a page load
    expect(page.locator("#result-count")).not_to_have_text(str(total))
    tagged = int(page.inner_text("#result-count"))
    assert 0 < tagged < total
    assert "q=tag" in page.url  # the filter is in the address (shareable, back button)
    refs = page.locator("tr.catalog-row").evaluate_all(
        "rows => rows.map(r => r.dataset.ref)")
    assert "ghl_users.list_tags" in refs and "invoice2go.add_invoice_tags" in refs

    page.select_option("#connector", "ghl_users")
    expect(page.locator("#result-count")).not_to_have_text(str(tagged))
    refs = page.locator("tr.catalog-row").evaluate_all(
        "rows => rows.map(r => r.dataset.ref)")
    assert refs and all(r.startswith("ghl_users.") for r in refs)
    shot(page, "catalog-filtered")

    # server-side filters work without a script too
    page.goto(dashboard.url + "/catalog?scope=invoices%3Awrite&kind=action")
    refs = page.locator("tr.catalog-row").evaluate_all(
        "rows => rows.map(r => r.dataset.ref)")
    assert "invoice2go.add_invoice_tags" in refs
    assert all(r.startswith("invoice2go.") for r in refs)
    page.goto(dashboard.url + "/catalog?q=zzzz-nothing")
    assert "Nothing matches" in page.inner_text("#results")

    page.goto(dashboard.url + "/catalog?q=add_invoice_tags")
    page.locator("tr.catalog-row a").first.click()
    page.wait_for_url(f"{dashboard.url}/catalog/invoice2go/add_invoice_tags")
    main = page.inner_text("main")
    assert "invoices:write" in main and "Input fields" in main and "Sample" in main
    assert "invoice_id" in main
    shot(page, "catalog-detail")
    page.goto(dashboard.url + "/catalog/ghl_users/tag_updated")
    assert "polls list_tags" in page.inner_text("main")
    shot(page, "catalog-trigger")
    assert script_errors(page) == []


def test_test_call_form_inline_errors_then_a_successful_call(dashboard: Any,  # noqa: F811
                                                             page: Any) -> None:  # noqa: F811
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    dashboard.login(page, "/connections")
    connect_in_browser(dashboard, page, "invoice2go", "my-invoice2go")
    page.locator("#endpoint-create_client a", has_text="Test call").click()
    page.wait_for_url(f"{dashboard.url}/connections/my-invoice2go/call/create_client")
    name_label = page.locator("label[for='field-name']")
    assert "required" in (name_label.get_attribute("class") or "")
    assert page.locator("label[for='field-account_id']").get_attribute("class") is None
    assert page.locator("#field-tags").evaluate("e => e.tagName") == "TEXTAREA"
    assert page.locator("#field-payment_terms_days").get_attribute("type") == "number"
    shot(page, "call-form")

    page.fill("#field-email", "not-an-email")
    page.locator("form.call-form button[type=submit]").click()
    page.wait_for_load_state()
    name_field = page.locator(".field:has(#field-name)")
    assert "required" in name_field.locator(".error").inner_text()
    assert "valid email" in page.locator(".field:has(#field-email) .error").inner_text()
    assert page.input_value("#field-email") == "not-an-email"  # kept for fixing
    shot(page, "call-form-errors")

    hostile = "<script>alert('x')</script> Ada"
    page.fill("#field-name", hostile)
    page.fill("#field-email", "ada@example.com")
    page.fill("#field-tags", '["vip"]')
    page.locator("form.call-form button[type=submit]").click()
    page.wait_for_load_state()
    answer = json.loads(page.inner_text("pre.call-answer"))
    assert answer["data"]["name"] == hostile and answer["data"]["tags"] == ["vip"]
    assert "HTTP 201" in page.inner_text("#answer") or "HTTP 200" in page.inner_text("#answer")
    assert "&lt;script&gt;" in page.content() and "<script>alert" not in page.content()
    assert dialogs == []
    shot(page, "call-answer")
    clients = json.loads(dashboard.cli("call", "invoice2go.list_clients", "-c",
                                       "my-invoice2go", check=True).stdout)
    assert any(c["name"] == hostile for c in clients["records"])

    page.goto(dashboard.url + "/connections/my-invoice2go/call/create_invoice")
    status = page.locator("#field-document_status")
    assert status.evaluate("e => e.tagName") == "SELECT"
    assert status.locator("option").all_inner_texts() == ["—", "unsent", "sent"]
    assert page.locator("#field-part_payment option").all_inner_texts() == [
        "—", "true", "false"]
    assert "required" in (page.locator("label[for='field-items']").get_attribute("class")
                          or "")
    shot(page, "call-form-enums")
    assert script_errors(page) == []


def test_form_values_are_parsed_by_type_with_errors_at_their_field() -> None:
    from splice.plugins import get_registry
    from splice.web.testcall import form_fields, parse_form

    op = get_registry().connector("invoice2go").operations["create_invoice"]
    fields = form_fields(op)
    by_name = {f.name: f for f in fields}
    assert by_name["document_status"].kind == "select"
    assert by_name["part_payment"].kind == "boolean"
    assert by_name["account_id"].defaulted and not by_name["account_id"].required
    payload = parse_form(fields, {"f.client_id": "c1", "f.document_status": "sent",
                                  "f.part_payment": "false", "f.items": "[oops"})
    assert payload == {"client_id": "c1", "document_status": "sent", "part_payment": False}
    assert by_name["items"].error.startswith("expected JSON")
    assert by_name["items"].value == "[oops"  # shown again for fixing
    terms = next(f for f in form_fields(get_registry().connector("invoice2go")
                                        .operations["create_client"])
                 if f.name == "payment_terms_days")
    assert parse_form([terms], {"f.payment_terms_days": "x"}) == {}
    assert terms.error == "expected a whole number"
    assert parse_form([terms], {"f.payment_terms_days": "30"}) == {"payment_terms_days": 30}


def test_catalog_search_matches_word_starts_and_ranks_the_exact_id_first() -> None:
    from splice.plugins import get_registry
    from splice.web.catalog import catalog, search

    entries = catalog(get_registry())
    tagged = {e.ref for e in search(entries, q="tag")}
    assert {"ghl_users.list_tags", "ghl_users.tag_created",
            "invoice2go.add_invoice_tags"} <= tagged
    assert "ghl_users.list_instagram_accounts" not in tagged  # "tag" inside a word
    assert search(entries, q="add_invoice_tags")[0].ref == "invoice2go.add_invoice_tags"
    assert search(entries, q="invoice2go.list_clients")[0].ref == "invoice2go.list_clients"
    writes = search(entries, scope="invoices:write", kind="action")
    assert writes and all("invoices:write" in e.scopes and e.kind == "action" for e in writes)
    assert search(entries, q="zzzz") == []
    assert {e.connector for e in entries} == {"ghl_users", "invoice2go", "splice"}


def test_catalog_and_connections_fit_a_phone(dashboard: Any,  # noqa: F811
                                             phone_page: Any) -> None:  # noqa: F811
    dashboard.login(phone_page, "/connections")
    connect_in_browser(dashboard, phone_page, "invoice2go", "my-invoice2go")
    for path, name in (("/catalog", "catalog-phone"),
                       ("/connections", "connections-phone"),
                       ("/connections/my-invoice2go", "connection-phone"),
                       ("/connections/my-invoice2go/call/create_client", "call-phone")):
        phone_page.goto(dashboard.url + path)
        width = phone_page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, (path, width)  # tables scroll inside their card, not the page
        shot(phone_page, name)
    assert script_errors(phone_page) == []

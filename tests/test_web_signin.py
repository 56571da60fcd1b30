"""Dashboard sign-in: one-time links, signed session cookies, CSRF, security headers.

Real serve over loopback (httpx) and a real browser (Chromium via Playwright)."""

from __future__ import annotations

from typing import Any

import httpx

from splice.store import logins
from splice.web.security import CSP

from .browser import chromium, dashboard, page, phone_page, shot  # noqa: F401 - fixtures


def _signed_in(dash: Any) -> httpx.Client:
    http = httpx.Client(base_url=dash.url, timeout=10)
    response = http.get(dash.link().removeprefix(dash.url))
    assert response.status_code == 303 and response.headers["location"] == "/"
    return http


def _csrf(html: str) -> str:
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def test_pages_need_a_session_and_a_link_works_once(dashboard: Any) -> None:  # noqa: F811
    http = httpx.Client(base_url=dashboard.url, timeout=10)
    response = http.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2F"
    assert http.get("/", headers={"HX-Request": "true"}).status_code == 401
    assert http.get("/api/recipes").status_code == 401
    assert http.get("/healthz").status_code == 200  # monitoring stays open
    login = http.get("/login")
    assert login.status_code == 200 and "splice login-link" in login.text

    token = logins.mint(dashboard.store)
    first = http.get(f"/login?token={token}&next=/runs")
    assert first.status_code == 303 and first.headers["location"] == "/runs"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert http.get("/").status_code == 200  # the session cookie works
    assert http.get("/api/recipes").status_code == 200  # the API answers a session too

    again = httpx.Client(base_url=dashboard.url, timeout=10)
    reused = again.get(f"/login?token={token}")
    assert reused.status_code == 403 and "used already or has expired" in reused.text
    assert again.get("/").status_code == 303
    assert again.get("/login?token=made-up").status_code == 403


def test_open_redirects_and_forged_cookies_are_refused(dashboard: Any) -> None:  # noqa: F811
    http = httpx.Client(base_url=dashboard.url, timeout=10)
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = http.get(f"/login?token={logins.mint(dashboard.store)}&next={target}")
        assert response.status_code == 303 and response.headers["location"] == "/"
    forged = httpx.Client(base_url=dashboard.url, timeout=10,
                          cookies={"splice_session": '{"user": "admin"}'})
    assert forged.get("/").status_code == 303
    tampered = http.cookies["splice_session"][:-2] + "xx"
    other = httpx.Client(base_url=dashboard.url, timeout=10,
                         cookies={"splice_session": tampered})
    assert other.get("/").status_code == 303


def test_state_changes_need_the_csrf_token(dashboard: Any) -> None:  # noqa: F811
    http = _signed_in(dashboard)
    csrf = _csrf(http.get("/").text)
    assert http.post("/logout").status_code == 403
    assert http.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert http.post("/logout", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert http.post("/api/recipes/nope/run").status_code == 403  # the API too, by session
    # a script with the bearer token needs no CSRF token (no cookie is involved)
    bearer = httpx.Client(base_url=dashboard.url, timeout=10,
                          headers={"Authorization": "Bearer test-api-token"})
    assert bearer.post("/api/recipes/nope/run").status_code == 404
    out = http.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert http.get("/").status_code == 303  # signed out


def test_security_headers(dashboard: Any) -> None:  # noqa: F811
    http = _signed_in(dashboard)
    for path in ("/", "/login", "/api/recipes"):
        headers = http.get(path).headers
        assert headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    static = http.get("/static/splice.css")
    assert static.status_code == 200 and "max-age" in static.headers["cache-control"]
    html = http.get("/").text
    assert "<script>" not in html and " style=" not in html and "onclick" not in html


def test_a_person_signs_in_with_the_link_in_a_browser(dashboard: Any, page: Any,  # noqa: F811
                                                      phone_page: Any) -> None:  # noqa: F811
    page.goto(dashboard.url + "/runs")
    assert page.url.startswith(dashboard.url + "/login")
    assert "splice login-link" in page.inner_text("main")
    shot(page, "signin")
    dashboard.login(page)
    assert page.url == dashboard.url + "/"
    assert page.inner_text("h1") == "Overview"
    assert "Connect your apps" in page.inner_text(".step.current")
    shot(page, "overview")
    page.click("text=Sign out")
    page.wait_for_url(dashboard.url + "/login")
    page.goto(dashboard.url + "/")
    assert "/login" in page.url
    assert page.console_errors == []  # no CSP violation, no script error

    dashboard.login(phone_page)
    assert not phone_page.is_visible("nav.nav a[href='/catalog']")  # folded on a phone
    phone_page.click("label.nav-button")
    assert phone_page.is_visible("nav.nav a[href='/catalog']")
    shot(phone_page, "overview-phone")
    assert phone_page.console_errors == []


def test_login_link_command_signs_in(dashboard: Any) -> None:  # noqa: F811
    result = dashboard.cli("login-link", "--url", dashboard.url, check=True)
    link = result.stdout.strip().splitlines()[-1]
    assert link.startswith(dashboard.url + "/login?token=")
    http = httpx.Client(timeout=10)
    assert http.get(link).status_code == 303
    assert http.get(dashboard.url + "/").status_code == 200

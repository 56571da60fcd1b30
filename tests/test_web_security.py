"""The dashboard's security, over real HTTP against a running serve with both sandboxes:

- every route of the app (enumerated from ``app.routes``) without a session: 303 to /login
  (pages) or 401 (anything else), the open ones excepted;
- every POST route with a session but without the CSRF token: 403;
- a crawl of every page reachable from / (every catalog entry, every connection page and
  test-call form) and every /api answer holds none of the secrets actually in play: the
  stored access and refresh tokens, the client secret, its HTTP Basic form, the serve API
  token, the encryption and session keys, the session cookie;
- hostile text (``<script>``) in a form field, a search or a connection name is shown escaped.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from starlette.routing import Mount, Route

from splice.serve.app import build_app
from splice.web.security import OPEN_PATHS

from .browser import dashboard  # noqa: F401 - fixture

SECRET = "splice-demo-secret"
API_TOKEN = "test-api-token"  # tests/servekit.py
HOSTILE = "<script>alert(1)</script>"
PARAMS = {"name": "my-invoice2go", "op": "create_client", "connector": "invoice2go",
          "entry": "list_clients", "endpoint": "list_clients"}


def _csrf(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def signed_in(dash: Any) -> httpx.Client:
    http = httpx.Client(base_url=dash.url, timeout=20)
    assert http.get(dash.link().removeprefix(dash.url)).status_code == 303
    return http


def connect(dash: Any, http: httpx.Client, connector: str, name: str) -> None:
    """The dashboard's OAuth flow, driven without a browser."""
    csrf = _csrf(http.get("/connections").text)
    started = http.post("/connections/connect", data={
        "csrf": csrf, "connector": connector, "name": name, "client_id": "splice-demo",
        "client_secret": SECRET, "base_url": dash.sandboxes.urls[connector],
        "allow_private_network": "1", "scopes": ""})
    assert started.status_code == 200, started.text
    assert SECRET not in started.text
    url = re.search(r'id="consent-link" data-follow="1" href="([^"]+)"', started.text)
    consent = httpx.get(url.group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
    assert consent.status_code == 302
    back = http.get(consent.headers["location"].removeprefix(dash.url))
    assert back.status_code == 303 and back.headers["location"] == f"/connections/{name}"


def concrete(path: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name, _, kind = match.group(1).partition(":")
        return "1" if kind == "int" else PARAMS.get(name, "x")
    return re.sub(r"\{([^}]+)\}", fill, path)


def app_routes(dash: Any) -> list[tuple[str, str]]:
    """(method, concrete path) of every route of the serve app, the dashboard's included."""
    out = []
    for route in build_app(dash.service).routes:
        if isinstance(route, Mount):
            out.append(("GET", route.path + "/splice.css"))
        elif isinstance(route, Route):
            for method in sorted(route.methods or ["GET"]):
                if method != "HEAD":
                    out.append((method, concrete(route.path)))
    return out


def test_every_route_needs_a_session_and_every_post_a_csrf_token(dashboard: Any) -> None:  # noqa: F811
    routes = app_routes(dashboard)
    paths = {p for _m, p in routes}
    for needed in ("/catalog", "/connections", "/oauth/callback",
                   "/connections/my-invoice2go/call/create_client"):
        assert needed in paths
    anonymous = httpx.Client(base_url=dashboard.url, timeout=10)
    checked = 0
    for method, path in routes:
        if path in OPEN_PATHS or path.startswith(("/hooks/", "/static/")):
            continue
        answer = anonymous.request(method, path)
        if method == "GET" and not path.startswith("/api/"):
            assert answer.status_code == 303, (method, path, answer.status_code)
            assert answer.headers["location"].startswith("/login?next="), path
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)
        checked += 1
    assert checked >= 30

    http = signed_in(dashboard)
    posts = [p for m, p in routes if m == "POST" and not p.startswith("/hooks/")]
    assert "/connections/connect" in posts
    for path in posts:
        refused = http.post(path, data={"enabled": "0", "connector": "invoice2go",
                                        "name": "x"})
        assert refused.status_code == 403, (path, refused.status_code)
        wrong = http.post(path, data={"csrf": "wrong"})
        assert wrong.status_code == 403, path


def _links(html: str, base: str) -> list[str]:
    out = []
    for href in re.findall(r'href="([^"]+)"', html):
        href = href.replace("&amp;", "&")
        if href.startswith("/") and not href.startswith(("//", "/static/", "/logout")):
            out.append(urljoin(base, href).split("#")[0])
    return out


def secrets_in_play(dash: Any) -> set[str]:
    values = {SECRET, API_TOKEN, base64.b64encode(f"splice-demo:{SECRET}".encode()).decode()}
    for record in dash.store.list_connections():
        values |= {v for v in record.secret.values() if isinstance(v, str) and len(v) >= 8}
    for key_file in ("secret.key", "dashboard.key"):
        path = dash.home / key_file
        if path.exists():
            values.add(path.read_text().strip())
    return {v for v in values if v}


def test_a_crawl_of_every_page_and_api_answer_shows_no_secret(dashboard: Any) -> None:  # noqa: F811
    http = signed_in(dashboard)
    for connector, name in (("ghl_users", "my-highlevel"), ("invoice2go", "my-invoice2go")):
        connect(dashboard, http, connector, name)
    csrf = _csrf(http.get("/").text)
    # answers rendered by the test-call form (the sandbox's data) are part of the crawl
    bodies: dict[str, str] = {}
    for path, data in (("/connections/my-invoice2go/call/list_clients", {}),
                       ("/connections/my-invoice2go/call/get_account", {}),
                       ("/connections/my-highlevel/call/list_tags", {})):
        answer = http.post(path, data={"csrf": csrf, **data})
        assert answer.status_code == 200 and "call-answer" in answer.text, path
        bodies["POST " + path] = answer.text

    seen: set[str] = set()
    queue: deque[str] = deque(["/"])
    for record in dashboard.store.list_connections():
        connector = dashboard.service.registry.connector(record.connector)
        queue.extend(f"/connections/{record.name}/call/{op}" for op in connector.operations)
    while queue:
        path = queue.popleft()
        if path in seen or len(seen) > 1500:
            continue
        seen.add(path)
        answer = http.get(path)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        bodies[path] = answer.text
        if "text/html" in answer.headers.get("content-type", ""):
            queue.extend(link for link in _links(answer.text, path) if link not in seen)
    assert sum(p.startswith("/catalog/") for p in seen) == 132
    assert {"/connections/my-highlevel", "/connections/my-invoice2go"} <= seen
    assert sum("/call/" in p for p in seen) == 88

    api = httpx.Client(base_url=dashboard.url, timeout=20,
                       headers={"Authorization": f"Bearer {API_TOKEN}"})
    for method, path in app_routes(dashboard):
        if method == "GET" and path.startswith("/api/"):
            for concrete_path in {path, path.replace("my-invoice2go", "my-highlevel")}:
                answer = api.get(concrete_path)
                assert answer.status_code in (200, 404), concrete_path
                bodies["API " + concrete_path] = answer.text
    assert "/api/connections/my-invoice2go/endpoints" in [k[4:] for k in bodies]

    cookie = http.cookies.get("splice_session")
    secrets = secrets_in_play(dashboard) | ({cookie} if cookie else set())
    assert len(secrets) >= 8  # two connections' tokens and more: the check has teeth
    leaks = [(where, s[:6] + "...") for where, body in bodies.items() for s in secrets
             if s in body]
    assert leaks == []
    everything = "\n".join(bodies.values())
    assert not re.search(r"Bearer [A-Za-z0-9._~+/=-]{12,}", everything)
    assert "\"client_secret\":" not in everything and "\"refresh_token\":" not in everything


def test_hostile_text_is_shown_escaped(dashboard: Any) -> None:  # noqa: F811
    http = signed_in(dashboard)
    connect(dashboard, http, "invoice2go", "my-invoice2go")
    csrf = _csrf(http.get("/").text)
    searched = http.get("/catalog", params={"q": HOSTILE})
    assert HOSTILE not in searched.text and "&lt;script&gt;alert(1)&lt;/script&gt;" \
        in searched.text
    named = http.post("/connections/connect", data={
        "csrf": csrf, "connector": "invoice2go", "name": HOSTILE, "client_id": "a",
        "client_secret": "b"})
    assert named.status_code == 400 and "invalid connection name" in named.text
    assert HOSTILE not in named.text and "&lt;script&gt;" in named.text
    called = http.post("/connections/my-invoice2go/call/create_client",
                       data={"csrf": csrf, "f.name": HOSTILE, "f.notes": HOSTILE})
    assert called.status_code == 200
    assert HOSTILE not in called.text and "&lt;script&gt;alert(1)&lt;/script&gt;" \
        in called.text
    page = http.get("/connections/" + HOSTILE)
    assert page.status_code == 404 and HOSTILE not in page.text
    bad_type = http.post("/connections/my-invoice2go/call/create_client",
                         data={"csrf": csrf, "f.name": "A", "f.payment_terms_days": HOSTILE})
    assert bad_type.status_code == 400 and HOSTILE not in bad_type.text
    assert urlsplit(dashboard.url).hostname == "127.0.0.1"


def test_the_api_lists_and_toggles_endpoints_and_refuses_a_recipe_using_one(
        dashboard: Any, tmp_path: Any) -> None:  # noqa: F811
    import shutil
    import time

    from splice.run.demo import recipes_dir

    http = signed_in(dashboard)
    for connector, name in (("ghl_users", "my-highlevel"), ("invoice2go", "my-invoice2go")):
        connect(dashboard, http, connector, name)
    recipe = tmp_path / "ghl_tags_to_invoice2go.yaml"
    shutil.copy(recipes_dir() / recipe.name, recipe)
    dashboard.cli("recipes", "add", str(recipe), check=True)
    api = httpx.Client(base_url=dashboard.url, timeout=20,
                       headers={"Authorization": f"Bearer {API_TOKEN}"})
    deadline = time.monotonic() + 10
    while not (rows := api.get("/api/recipes").json()) or not rows[0]["triggers"]:
        assert time.monotonic() < deadline, "serve did not load the recipe"
        time.sleep(0.1)
    rid = rows[0]["id"]

    off = api.post("/api/connections/my-invoice2go/endpoints/add_invoice_tags/disable")
    assert off.json() == {"connection": "my-invoice2go", "endpoint": "add_invoice_tags",
                          "enabled": False, "changed": True}
    listed = {e["id"]: e for e in api.get("/api/connections/my-invoice2go/endpoints").json()}
    assert listed["add_invoice_tags"]["enabled"] is False and listed["list_clients"]["enabled"]
    refused = api.post(f"/api/recipes/{rid}/run")
    assert refused.status_code == 409
    assert "endpoint invoice2go.add_invoice_tags is disabled for connection 'my-invoice2go'" \
        in refused.json()["error"]
    api.post(f"/api/recipes/{rid}/disable")
    assert api.post(f"/api/recipes/{rid}/enable").status_code == 409
    cli = dashboard.cli("connections", "endpoints", "my-invoice2go", "--disabled")
    assert "add_invoice_tags" in cli.stdout  # the CLI sees what the API changed
    assert api.post("/api/connections/my-invoice2go/endpoints/add_invoice_tags/enable"
                    ).json()["changed"] is True
    assert api.post(f"/api/recipes/{rid}/enable").status_code == 200
    assert api.post(f"/api/recipes/{rid}/run").status_code == 200
    missing = api.post("/api/connections/my-invoice2go/endpoints/nope/disable")
    assert missing.status_code == 404 and "has no operation or trigger 'nope'" \
        in missing.json()["error"]
    assert api.get("/api/connections/nobody/endpoints").status_code == 404


def test_an_oauth_answer_is_taken_once_by_the_session_that_started_it() -> None:
    from urllib.parse import parse_qs

    from splice.connections.authorize import PendingAuthorizations, begin
    from splice.plugins import get_registry

    connector = get_registry().connector("invoice2go")
    auth = begin(connector, name="c", client_id="id", client_secret=SECRET, scopes=["a"],
                 base_url="http://127.0.0.1:9", redirect_uri="http://127.0.0.1:8/oauth/callback",
                 owner="session-1")
    query = parse_qs(urlsplit(auth.url).query)
    assert query["state"] == [auth.state] and query["code_challenge_method"] == ["S256"]
    assert SECRET not in auth.url and SECRET not in repr(auth)
    assert auth.verifier and auth.verifier not in auth.url
    pending = PendingAuthorizations(ttl=60)
    pending.add(auth)
    assert pending.take("wrong-state", "session-1") is None
    assert pending.take(auth.state, "session-2") is None  # another browser: refused...
    assert pending.take(auth.state, "session-1") is None  # ...and the state is spent
    pending.add(auth)
    assert pending.take(auth.state, "session-1") is auth
    assert pending.take(auth.state, "session-1") is None  # one answer only
    auth.created_at -= 120
    pending.add(auth)
    assert pending.take(auth.state, "session-1") is None  # older than the ttl


def test_connect_refuses_a_private_server_unless_allowed_and_names_missing_clients(
        dashboard: Any) -> None:  # noqa: F811
    http = signed_in(dashboard)
    csrf = _csrf(http.get("/connections").text)
    form = {"csrf": csrf, "connector": "invoice2go", "name": "i2g", "client_id": "splice-demo",
            "client_secret": SECRET, "base_url": "http://169.254.169.254/latest"}
    private = http.post("/connections/connect", data=form)
    assert private.status_code == 400 and "169.254.169.254" in private.text
    assert "consent-link" not in private.text and SECRET not in private.text
    no_secret = http.post("/connections/connect", data={**form, "client_secret": "",
                                                        "base_url": ""})
    assert no_secret.status_code == 400
    assert "no OAuth client secret for invoice2go" in no_secret.text
    assert "SPLICE_INVOICE2GO_CLIENT_SECRET" in no_secret.text
    connect(dashboard, http, "invoice2go", "my-invoice2go")
    clash = http.post("/connections/connect", data={**form, "connector": "ghl_users",
                                                    "name": "my-invoice2go", "base_url": ""})
    assert clash.status_code == 400 and "belongs to connector &#39;invoice2go&#39;" in clash.text
    assert dashboard.store.get_connection("i2g") is None

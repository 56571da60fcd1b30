"""The HighLevel sandbox over real loopback HTTP, checked against the official OpenAPI specs.

Every response that goes through :func:`api_client` is validated by an httpx response hook:
a 2xx (or a declared 400/401/422) must match the schema the official spec declares for that
operation and status, with ``$ref``s into ``../common/common-schemas.json`` resolved.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from splice.sandbox import SandboxConfig, serve
from splice_connectors.ghl_users.sandbox import create_app
from splice_connectors.ghl_users.sandbox_data import COMPANY_ID, LOCATION_ID, SECOND_LOCATION_ID

from .ghl_spec import corrected

SPEC_DIR = Path(os.environ.get(
    "GHL_OPENAPI_DIR",
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "ghl" / "openapi"))
SPEC_FILES = ("users.json", "social-media-posting.json", "oauth.json")
SPEC_BASE = "https://ghl-openapi.invalid/"  # any hierarchical base resolves "../"
NOW = datetime(2026, 5, 2, 12, 0, tzinfo=UTC).timestamp()
REDIRECT = "http://127.0.0.1:8765/callback"
ALL_SCOPES = ("users.readonly users.write socialplanner/tag.readonly "
              "socialplanner/statistics.readonly socialplanner/account.readonly "
              "socialplanner/category.readonly")
V = {"Version": "2021-07-28"}
TAGS = f"/social-media-posting/{LOCATION_ID}/tags"


# -- the official specs ----------------------------------------------------------------------

FORMATS = FormatChecker()
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    """jsonschema checks ``date-time`` only with an optional package; this needs none."""
    return not isinstance(value, str) or RFC3339.fullmatch(value) is not None


class Spec:
    """Response schemas of the official specs, looked up by method, concrete path and status."""

    def __init__(self, root: Path) -> None:
        resources = [(f"{SPEC_BASE}common/common-schemas.json",
                      json.loads((root / "common" / "common-schemas.json").read_text()))]
        self.operations: list[tuple[str, re.Pattern[str], int, str]] = []
        for name in SPEC_FILES:  # with the known defects corrected (tests/ghl_spec.py)
            doc = corrected(name, json.loads((root / "apps" / name).read_text()))
            uri = f"{SPEC_BASE}apps/{name}"
            resources.append((uri, doc))
            for path, item in doc["paths"].items():
                pattern = re.compile("^" + "/".join(
                    "[^/]+" if seg.startswith("{") else re.escape(seg)
                    for seg in path.split("/")) + "$")
                for method in item:
                    pointer = path.replace("~", "~0").replace("/", "~1")
                    self.operations.append((method.upper(), pattern, path.count("{"),
                                            f"{uri}#/paths/{pointer}/{method}"))
        self.registry: Registry[Any] = Registry().with_resources(
            (uri, Resource(contents=doc, specification=DRAFT202012)) for uri, doc in resources)
        self.checked: list[tuple[str, str, int]] = []

    def operation(self, method: str, path: str) -> str | None:
        found = sorted((n, ref) for m, pattern, n, ref in self.operations
                       if m == method and pattern.match(path))
        return found[0][1] if found else None

    def validate(self, method: str, path: str, status: int, body: Any) -> bool:
        """Validate ``body`` if the spec declares ``status`` for the operation; True if so."""
        ref = self.operation(method, path)
        if ref is None:
            return False
        uri, pointer = ref.split("#")
        op = self.registry.resolver().lookup(ref).contents
        declared = op["responses"].get(str(status))
        if not declared or "content" not in declared:
            return False
        schema_ref = f"{uri}#{pointer}/responses/{status}/content/application~1json/schema"
        validator = Draft202012Validator({"$ref": schema_ref}, registry=self.registry,
                                          format_checker=FORMATS)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors[:5])
        self.checked.append((method, path, status))
        return True


@pytest.fixture(scope="session")
def spec() -> Spec:
    if not (SPEC_DIR / "apps" / "users.json").exists():
        pytest.skip(f"official HighLevel specs not found in {SPEC_DIR} (set GHL_OPENAPI_DIR)")
    return Spec(SPEC_DIR)


def api_client(base_url: str, spec: Spec) -> httpx.Client:
    """An httpx client whose every response is checked against the spec when it declares it."""
    def check(response: httpx.Response) -> None:
        response.read()
        request = response.request
        if request.url.path.startswith("/__test__/"):
            return
        if response.headers.get("content-type", "").startswith("application/json"):
            checked = spec.validate(request.method, request.url.path, response.status_code,
                                    response.json())
            assert checked or not response.is_success, (
                f"no official response schema for {request.method} {request.url.path} "
                f"{response.status_code}")
    return httpx.Client(base_url=base_url, timeout=10, event_hooks={"response": [check]})


# -- servers and OAuth helpers ---------------------------------------------------------------

def make_config(**changes: Any) -> SandboxConfig:
    config = SandboxConfig(clock=lambda: NOW, redirect_uris=["http://127.0.0.1/callback"])
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture()
def sandbox(spec: Spec) -> Iterator[httpx.Client]:
    with serve(create_app(make_config())) as base, api_client(base, spec) as client:
        yield client


@pytest.fixture(scope="module")
def shared(spec: Spec) -> Iterator[httpx.Client]:
    """One server for read-only tests (nothing here changes its data or nears its limits)."""
    config = make_config(rate_limit=(10_000, 10.0))
    with serve(create_app(config)) as base, api_client(base, spec) as client:
        yield client


class _Form(HTMLParser):
    """The consent page's form: action, hidden fields and the installation choices."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "input" and a.get("type") == "radio":
            self.targets.append(a["value"])


def authorize_params(scope: str = ALL_SCOPES, state: str = "st-123") -> dict[str, str]:
    return {"response_type": "code", "client_id": "splice-demo", "redirect_uri": REDIRECT,
            "scope": scope, "state": state}


def code_from(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == ["st-123"]
    return query["code"][0]


def exchange(client: httpx.Client, code: str, user_type: str | None = "Location") -> httpx.Response:
    form = {"client_id": "splice-demo", "client_secret": "splice-demo-secret",
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if user_type:
        form["user_type"] = user_type
    return client.post("/oauth/token", data=form)


def refresh(client: httpx.Client, token: str, user_type: str = "Location") -> httpx.Response:
    return client.post("/oauth/token", data={
        "client_id": "splice-demo", "client_secret": "splice-demo-secret",
        "grant_type": "refresh_token", "refresh_token": token, "user_type": user_type})


def connect(client: httpx.Client, scope: str = ALL_SCOPES) -> dict[str, Any]:
    """Auto-approved install on the main sub-account; the token response."""
    code = code_from(client.get("/v2/oauth/chooselocation", params=authorize_params(scope)))
    response = exchange(client, code)
    assert response.status_code == 200, response.text
    return response.json()


def auth(token: dict[str, Any]) -> dict[str, str]:
    return {**V, "Authorization": f"Bearer {token['access_token']}"}


# -- OAuth -----------------------------------------------------------------------------------

def test_consent_page_code_flow_gives_a_location_token(spec: Spec) -> None:
    with serve(create_app(make_config(auto_approve=False))) as base, \
            api_client(base, spec) as client:
        page = client.get("/v2/oauth/chooselocation", params=authorize_params())
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        form = _Form()
        form.feed(page.text)
        assert form.hidden["state"] == "st-123" and LOCATION_ID in form.targets
        approved = client.post(form.action, data={**form.hidden, "target": LOCATION_ID,
                                                  "decision": "approve"})
        body = exchange(client, code_from(approved)).json()
        assert list(body)[:6] == ["access_token", "token_type", "expires_in", "refresh_token",
                                  "scope", "userType"]
        assert body["token_type"] == "Bearer" and body["expires_in"] == 86399
        assert body["userType"] == "Location" and body["locationId"] == LOCATION_ID
        assert body["companyId"] == COMPANY_ID and re.fullmatch(r"[A-Za-z0-9]{20}",
                                                                 body["userId"])
        assert set(body["scope"].split()) == set(ALL_SCOPES.split())
        assert "refresh_token_expires_in" not in body
        assert ("POST", "/oauth/token", 200) in spec.checked

        denied = client.post(form.action, data={**form.hidden, "decision": "deny"})
        assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == [
            "access_denied"]


def test_company_install_gives_an_agency_token(spec: Spec) -> None:
    with serve(create_app(make_config(auto_approve=False))) as base, \
            api_client(base, spec) as client:
        params = {**authorize_params(), "target": "company", "decision": "approve"}
        code = code_from(client.post("/v2/oauth/chooselocation", data=params))
        wrong = exchange(client, code, user_type="Location")
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_request"
        body = exchange(client, code, user_type="Company").json()
        assert body["userType"] == "Company" and "locationId" not in body
        assert body["approvedLocations"] == [LOCATION_ID, SECOND_LOCATION_ID]
        # Social Planner needs a Sub-Account token; Users search accepts an Agency one.
        tags = client.get(TAGS, headers=auth(body))
        assert tags.status_code == 401 and "authClass" in tags.json()["message"]
        users = client.get("/users/search", headers=auth(body), params={"companyId": COMPANY_ID})
        assert users.status_code == 200 and users.json()["count"] == 8


def test_authorize_rejects_unknown_client_and_foreign_redirect(sandbox: httpx.Client) -> None:
    bad_client = sandbox.get("/v2/oauth/chooselocation",
                             params={**authorize_params(), "client_id": "nope"})
    assert bad_client.status_code == 400 and "location" not in bad_client.headers
    foreign = sandbox.get("/v2/oauth/chooselocation",
                          params={**authorize_params(), "redirect_uri": "https://evil.test/cb"})
    assert foreign.status_code == 400
    bad_scope = sandbox.get("/v2/oauth/chooselocation",
                            params=authorize_params(scope="contacts.write"))
    assert parse_qs(urlsplit(bad_scope.headers["location"]).query)["error"] == [
        "invalid_scope"]


def test_refresh_rotates_and_reuse_is_invalid_grant(sandbox: httpx.Client) -> None:
    first = connect(sandbox)
    second = refresh(sandbox, first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["userType"] == "Location" and rotated["locationId"] == LOCATION_ID
    reused = refresh(sandbox, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert reused.json()["error_description"] == "Invalid grant: refresh token is invalid"
    assert sandbox.get(TAGS, headers=auth(rotated)).status_code == 200
    assert refresh(sandbox, rotated["refresh_token"]).status_code == 200


def test_token_endpoint_validates_its_form(sandbox: httpx.Client) -> None:
    missing = sandbox.post("/oauth/token", data={"client_id": "splice-demo"})
    assert missing.status_code == 422
    assert "grant_type should not be empty" in missing.json()["message"]
    wrong_secret = sandbox.post("/oauth/token", data={
        "client_id": "splice-demo", "client_secret": "x", "grant_type": "refresh_token",
        "refresh_token": "y"})
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


def test_access_tokens_expire_after_a_day(sandbox: httpx.Client) -> None:
    token = connect(sandbox)
    assert sandbox.get(TAGS, headers=auth(token)).status_code == 200
    sandbox.post("/__test__/advance-clock", json={"seconds": 86399})
    expired = sandbox.get(TAGS, headers=auth(token))
    assert expired.status_code == 401
    assert expired.json() == {"statusCode": 401, "error": "Unauthorized",
                              "message": "Invalid token: access token is invalid"}
    renewed = refresh(sandbox, token["refresh_token"]).json()
    assert sandbox.get(TAGS, headers=auth(renewed)).status_code == 200
    sandbox.post("/__test__/expire-tokens")
    assert sandbox.get(TAGS, headers=auth(renewed)).status_code == 401


# -- request guards --------------------------------------------------------------------------

def test_version_header_is_required(shared: httpx.Client) -> None:
    token = connect(shared)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    missing = shared.get(TAGS, headers=bearer)
    assert missing.status_code == 400
    assert missing.json() == {"statusCode": 400, "message": "Version header was not found"}
    other = shared.get(TAGS, headers={**bearer, "Version": "2021-04-15"})
    assert other.status_code == 400 and "2021-07-28" in other.json()["message"]


def test_bad_or_missing_token_is_401(shared: httpx.Client) -> None:
    for headers in (V, {**V, "Authorization": "Bearer not-a-token"}):
        response = shared.get("/users/search", headers=headers,
                              params={"companyId": COMPANY_ID})
        assert response.status_code == 401
        assert response.json()["message"] == "Invalid token: access token is invalid"


def test_missing_scope_is_401_naming_the_scope(shared: httpx.Client) -> None:
    """The specs document no 403 for these operations (and NOTES names none): 401."""
    token = connect(shared, scope="users.readonly")
    response = shared.get(TAGS, headers=auth(token))
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401, "error": "Unauthorized",
        "message": "The token is not authorized for this scope: socialplanner/tag.readonly"}
    write = shared.post("/users/", headers=auth(token), json={})
    assert write.status_code == 401 and write.json()["message"].endswith("users.write")


def test_other_location_is_refused_with_401(shared: httpx.Client) -> None:
    token = connect(shared)
    response = shared.get(f"/social-media-posting/{SECOND_LOCATION_ID}/tags",
                          headers=auth(token))
    assert response.status_code == 401
    assert response.json()["message"] == "The token does not have access to this location"
    stats = shared.post("/social-media-posting/statistics", headers=auth(token),
                        params={"locationId": SECOND_LOCATION_ID}, json={"profileIds": ["x"]})
    assert stats.status_code == 401


def test_unknown_route_is_a_json_404(shared: httpx.Client) -> None:
    response = shared.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json()["message"] == "Cannot GET /no/such/thing"


# -- rate limits and injected failures -------------------------------------------------------

def test_rate_limit_100_per_10_seconds(sandbox: httpx.Client) -> None:
    headers = auth(connect(sandbox))
    remaining = []
    for _ in range(100):
        response = sandbox.get(TAGS, headers=headers, params={"limit": "1"})
        assert response.status_code == 200
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == list(range(99, -1, -1))
    assert response.headers["X-RateLimit-Max"] == "100"
    assert response.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert response.headers["X-RateLimit-Limit-Daily"] == "200000"
    assert response.headers["X-RateLimit-Daily-Remaining"] == "199900"
    limited = sandbox.get(TAGS, headers=headers)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "10"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.json()["statusCode"] == 429
    sandbox.post("/__test__/advance-clock", json={"seconds": 10})
    assert sandbox.get(TAGS, headers=headers).status_code == 200


def test_rate_limit_is_configurable_and_per_location(spec: Spec) -> None:
    with serve(create_app(make_config(rate_limit=(3, 60.0)))) as base, \
            api_client(base, spec) as client:
        headers = auth(connect(client))
        codes = [client.get(TAGS, headers=headers).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert client.get(TAGS, headers=headers).headers["Retry-After"] == "60"
        # another sub-account installation has its own budget
        params = {**authorize_params(), "target": SECOND_LOCATION_ID, "decision": "approve"}
        other = exchange(client, code_from(client.post("/v2/oauth/chooselocation", data=params)))
        assert other.json()["locationId"] == SECOND_LOCATION_ID
        second = client.get(f"/social-media-posting/{SECOND_LOCATION_ID}/tags",
                            headers=auth(other.json()))
        assert second.status_code == 200 and second.headers["X-RateLimit-Remaining"] == "2"
        assert second.json()["results"] == {"tags": [], "count": 0}


def test_fail_next_injects_failures(sandbox: httpx.Client) -> None:
    token = connect(sandbox)
    headers = auth(token)
    sandbox.post("/__test__/fail-next", json={"count": 2, "status": 429, "retry_after": 3})
    first, second = (sandbox.get(TAGS, headers=headers) for _ in range(2))
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "3" and "X-RateLimit-Max" in first.headers
    assert sandbox.get(TAGS, headers=headers).status_code == 200
    sandbox.post("/__test__/fail-next", json={"count": 1, "status": 503})
    assert sandbox.get(TAGS, headers=headers).status_code == 503
    sandbox.post("/__test__/fail-next", json={"count": 1, "status": 502, "target": "token"})
    assert refresh(sandbox, token["refresh_token"]).status_code == 502
    assert refresh(sandbox, token["refresh_token"]).status_code == 200  # not consumed
    bad = sandbox.post("/__test__/fail-next", json={"count": 0, "status": 200})
    assert bad.status_code == 422


# -- Social Planner --------------------------------------------------------------------------

def test_tags_page_through_without_loss_or_repeats(shared: httpx.Client, spec: Spec) -> None:
    headers = auth(connect(shared))
    seen: list[str] = []
    skip, pages, count = 0, 0, None
    while pages < 20:
        body = shared.get(TAGS, headers=headers,
                          params={"skip": str(skip), "limit": "60"}).json()
        count = body["results"]["count"]
        page = body["results"]["tags"]
        seen += [t["_id"] for t in page]
        pages += 1
        if len(page) < 60:
            break
        skip += 60
    assert count == 250 and pages == 5
    assert len(seen) == len(set(seen)) == 250
    assert ("GET", TAGS, 200) in spec.checked


def test_tags_search_text_and_defaults(shared: httpx.Client) -> None:
    headers = auth(connect(shared))
    default = shared.get(TAGS, headers=headers).json()["results"]
    assert len(default["tags"]) == 10 and default["count"] == 250
    wayne = shared.get(TAGS, headers=headers, params={"searchText": "wayne"}).json()["results"]
    assert sorted(t["tag"] for t in wayne["tags"]) == ["Wayne Enterprises", "wayne-enterprises"]
    assert wayne["count"] == 2
    names = {t["tag"] for t in shared.get(TAGS, headers=headers,
                                          params={"limit": "250"}).json()["results"]["tags"]}
    assert {"Daily Planet", "Stark Industries", "Acme Corp", "vip-client", "plumbing",
            "lawn-care"} <= names
    # the spec types skip/limit as free strings: a value that is no number means the default
    free = shared.get(TAGS, headers=headers, params={"limit": "ten", "skip": "-3"})
    assert free.status_code == 200 and len(free.json()["results"]["tags"]) == 10


def test_tag_details_returns_201(shared: httpx.Client) -> None:
    headers = auth(connect(shared))
    tags = shared.get(TAGS, headers=headers, params={"limit": "3"}).json()["results"]["tags"]
    ids = [tags[0]["_id"], tags[2]["_id"], "unknownTagId00000000"]
    response = shared.post(f"{TAGS}/details", headers=headers, json={"tagIds": ids})
    assert response.status_code == 201
    body = response.json()
    assert body["statusCode"] == 201 and body["results"]["count"] == 2
    assert {t["_id"] for t in body["results"]["tags"]} == set(ids[:2])
    invalid = shared.post(f"{TAGS}/details", headers=headers, json={})
    assert invalid.status_code == 422
    assert invalid.json() == {"statusCode": 422, "message": ["tagIds should not be empty"],
                              "error": "Unprocessable Entity"}
    wrong = shared.post(f"{TAGS}/details", headers=headers, json={"tagIds": "x"})
    assert wrong.json()["message"] == ["tagIds must be an array"]


def test_tags_change_over_time(sandbox: httpx.Client) -> None:
    headers = auth(connect(sandbox))
    created = sandbox.post("/__test__/tags", json={"tag": "Gotham Gazette"}).json()
    assert re.fullmatch(r"[A-Za-z0-9]{20}", created["_id"])
    assert created["createdAt"] == "2026-05-02T12:00:00.000Z"
    found = sandbox.get(TAGS, headers=headers, params={"searchText": "gotham"}).json()
    assert [t["_id"] for t in found["results"]["tags"]] == [created["_id"]]
    sandbox.post("/__test__/advance-clock", json={"seconds": 90})
    renamed = sandbox.patch(f"/__test__/tags/{created['_id']}",
                            json={"tag": "Gotham Gazette Weekly"}).json()
    assert renamed["updatedAt"] == "2026-05-02T12:01:30.000Z"
    assert renamed["createdAt"] == created["createdAt"]
    body = sandbox.get(TAGS, headers=headers, params={"skip": "250"}).json()["results"]
    assert body["count"] == 251 and body["tags"][0]["tag"] == "Gotham Gazette Weekly"


def test_accounts_and_statistics(shared: httpx.Client) -> None:
    headers = auth(connect(shared))
    accounts = shared.get(f"/social-media-posting/{LOCATION_ID}/accounts",
                          headers=headers).json()["results"]["accounts"]
    assert 3 <= len(accounts) <= 5
    profiles = [a["profileId"] for a in accounts]
    window = {"currentRange": {"startDate": "2026-04-01T00:00:00Z",
                               "endDate": "2026-04-10T23:59:59Z"}}
    url, params = "/social-media-posting/statistics", {"locationId": LOCATION_ID}
    first = shared.post(url, headers=headers, params=params,
                        json={"profileIds": profiles, **window})
    assert first.status_code == 201
    results = first.json()["results"]
    assert results["dayRange"][0] == "Wed" and len(results["dayRange"]) == 10
    assert all(len(v) == 10 for v in results["postPerformance"]["posts"].values())
    assert set(results["postPerformance"]["posts"]) == {a["platform"] for a in accounts}
    assert results["totals"]["impressions"] == sum(results["postPerformance"]["impressions"])
    again = shared.post(url, headers=headers, params=params,
                        json={"profileIds": profiles, **window}).json()
    assert again["results"] == results  # deterministic
    only_fb = shared.post(url, headers=headers, params=params,
                          json={"profileIds": profiles, "platforms": ["facebook"]}).json()
    assert list(only_fb["results"]["breakdowns"]["posts"]["platforms"]) == ["facebook"]
    assert len(only_fb["results"]["dayRange"]) == 7  # default: the last 7 days
    empty = shared.post(url, headers=headers, params=params, json={"profileIds": []})
    assert empty.status_code == 422 and isinstance(empty.json()["message"], list)
    orphan = shared.post(url, headers=headers, params=params,
                         json={"profileIds": profiles, "prevRange": window["currentRange"]})
    assert orphan.status_code == 400


def test_categories_list(shared: httpx.Client) -> None:
    headers = auth(connect(shared))
    body = shared.get(f"/social-media-posting/{LOCATION_ID}/categories",
                      headers=headers, params={"limit": "4"}).json()["results"]
    assert body["count"] == 6 and len(body["categories"]) == 4


# -- Users -----------------------------------------------------------------------------------

NEW_USER = {"companyId": COMPANY_ID, "firstName": "Clark", "lastName": "Kent",
            "email": "clark.kent@dailyplanet.test", "password": "Sup3r-Secret-Pass!",
            "phone": "+15125550199", "type": "account", "role": "user",
            "locationIds": [LOCATION_ID], "permissions": {"socialPlanner": True}}


def test_users_create_get_update_search_delete(sandbox: httpx.Client) -> None:
    headers = auth(connect(sandbox))
    created = sandbox.post("/users/", headers=headers, json=NEW_USER)
    assert created.status_code == 201
    user = created.json()
    assert user["name"] == "Clark Kent" and user["roles"]["locationIds"] == [LOCATION_ID]
    assert user["permissions"]["socialPlanner"] is True and "password" not in user
    fetched = sandbox.get(f"/users/{user['id']}", headers=headers).json()
    assert fetched == user
    updated = sandbox.put(f"/users/{user['id']}", headers=headers,
                          json={"lastName": "Kent Jr", "role": "admin"})
    assert updated.status_code == 200
    assert updated.json()["name"] == "Clark Kent Jr" and updated.json()["roles"]["role"] == "admin"
    found = sandbox.get("/users/search", headers=headers,
                        params={"companyId": COMPANY_ID, "query": "dailyplanet"}).json()
    assert found["count"] == 1 and found["users"][0]["id"] == user["id"]
    by_location = sandbox.get("/users/", headers=headers, params={"locationId": LOCATION_ID})
    assert user["id"] in [u["id"] for u in by_location.json()["users"]]
    deleted = sandbox.delete(f"/users/{user['id']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["succeded"] is True
    assert "clark.kent@dailyplanet.test" in deleted.json()["message"]
    assert sandbox.get(f"/users/{user['id']}", headers=headers).status_code == 400
    gone = sandbox.get("/users/search", headers=headers,
                       params={"companyId": COMPANY_ID, "ids": user["id"]}).json()
    assert gone == {"users": [], "count": 0}


def test_create_user_validation(sandbox: httpx.Client) -> None:
    headers = auth(connect(sandbox))
    # The date-versioned spec states no rule for e-mail, role or password text: accepted.
    loose = sandbox.post("/users/", headers=headers,
                         json={**NEW_USER, "email": "not-an-email", "password": "short",
                               "role": "owner"})
    assert loose.status_code == 201 and loose.json()["roles"]["role"] == "owner"
    # The v3 spec states a password policy, so a v3 request must meet it.
    v3 = sandbox.post("/users/", headers={**headers, "Version": "v3"},
                      json={**NEW_USER, "email": "weak@dailyplanet.test", "password": "short"})
    assert v3.status_code == 422
    assert v3.json()["message"][0].startswith("password must be at least 12")
    missing = sandbox.post("/users/", headers=headers, json={"companyId": COMPANY_ID})
    assert missing.status_code == 422
    assert "firstName should not be empty" in missing.json()["message"]
    typed = sandbox.post("/users/", headers=headers,
                         json={**NEW_USER, "locationIds": "x", "platformLanguage": "klingon"})
    assert typed.status_code == 422 and typed.json()["message"] == [
        "locationIds must be an array", "platformLanguage must be one of the following values: "
        "en_US, es, fr_CA, fr_FR, nl, de, pt_PT, pt_BR, it, sv, da, fi, no"]
    assert sandbox.post("/users/", headers=headers, json=NEW_USER).status_code == 201
    duplicate = sandbox.post("/users/", headers=headers, json=NEW_USER)
    assert duplicate.status_code == 400
    other_company = sandbox.post("/users/", headers=headers,
                                 json={**NEW_USER, "companyId": "otherCompany000000000"})
    assert other_company.status_code == 401
    email_change = sandbox.put(f"/users/{sandbox_user_id(sandbox, headers)}", headers=headers,
                               json={"email": "new@example.com"})
    assert email_change.status_code == 400


def sandbox_user_id(client: httpx.Client, headers: dict[str, str]) -> str:
    users = client.get("/users/search", headers=headers,
                       params={"companyId": COMPANY_ID, "query": "Priya"}).json()["users"]
    return str(users[0]["id"])


def test_users_search_paging_filters_and_sort(shared: httpx.Client) -> None:
    headers = auth(connect(shared))
    search = {"companyId": COMPANY_ID}
    everyone = shared.get("/users/search", headers=headers, params=search).json()
    # a Sub-Account token sees the users of its own location: 7 of the 8 seeded users
    assert everyone["count"] == 7
    names = [u["name"] for u in everyone["users"]]
    assert names == sorted(names, key=str.casefold)
    pages = [shared.get("/users/search", headers=headers,
                        params={**search, "skip": str(s), "limit": "3"}).json()
             for s in (0, 3, 6)]
    assert [u["id"] for p in pages for u in p["users"]] == [u["id"] for u in everyone["users"]]
    assert all(p["count"] == 7 for p in pages)
    admins = shared.get("/users/search", headers=headers,
                        params={**search, "role": "admin", "type": "account"}).json()
    assert {u["name"] for u in admins["users"]} == {"Priya Patel", "Lucas Moreau"}
    newest = shared.get("/users/search", headers=headers,
                        params={**search, "sort": "dateAdded", "sortDirection": "desc"}).json()
    assert newest["users"][0]["name"] == "Lucas Moreau"
    no_company = shared.get("/users/search", headers=headers)
    assert no_company.status_code == 422
    agency_only = shared.post("/users/search/filter-by-email", headers=headers,
                              json={"companyId": COMPANY_ID, "emails": "x@y.z"})
    assert agency_only.status_code == 401


def test_filter_by_email_with_an_agency_token(spec: Spec) -> None:
    with serve(create_app(make_config(extra={"install_target": "company"}))) as base, \
            api_client(base, spec) as client:
        code = code_from(client.get("/v2/oauth/chooselocation", params=authorize_params()))
        token = exchange(client, code, user_type="Company").json()
        response = client.post("/users/search/filter-by-email", headers=auth(token), json={
            "companyId": COMPANY_ID,
            "emails": "maria.alvarez@brightpath-marketing.com,nobody@example.com"})
        assert response.status_code == 200
        assert response.json()["count"] == 1
        assert set(response.json()["users"][0]) == {"id", "email"}
        assert client.get("/users/", headers=auth(token),
                          params={"locationId": LOCATION_ID}).status_code == 401


# -- determinism and persistence -------------------------------------------------------------

def _world(config: SandboxConfig) -> dict[str, Any]:
    return create_app(config).state.sandbox.world.to_json()  # type: ignore[no-any-return]


def test_seed_is_deterministic() -> None:
    one, two = _world(make_config()), _world(make_config())
    assert one == two
    other = _world(make_config(seed=7))
    assert [t["_id"] for t in other["tags"]] != [t["_id"] for t in one["tags"]]
    assert len(one["users"]) == 8 and len(one["tags"]) == 250
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", t["_id"]) for t in one["tags"])
    assert max(t["updatedAt"] for t in one["tags"]) <= "2026-05-01T10:00:00.000Z"


def test_state_survives_a_restart(tmp_path: Path, spec: Spec) -> None:
    state = tmp_path / "ghl-state.json"
    config = make_config(state_path=state)
    with serve(create_app(config)) as base, api_client(base, spec) as client:
        token = connect(client)
        tag = client.post("/__test__/tags", json={"tag": "Persisted Tag"}).json()
        client.post("/__test__/advance-clock", json={"seconds": 30})
    assert state.exists() and not list(tmp_path.glob("*.tmp"))
    assert token["access_token"] not in state.read_text()
    with serve(create_app(make_config(state_path=state))) as base, \
            api_client(base, spec) as client:
        found = client.get(TAGS, headers=auth(token), params={"searchText": "Persisted"})
        assert found.status_code == 200
        assert [t["_id"] for t in found.json()["results"]["tags"]] == [tag["_id"]]
        assert refresh(client, token["refresh_token"]).status_code == 200
        assert client.get("/__test__/state").json()["clockOffset"] == 30
        client.post("/__test__/reset")
        assert client.get(TAGS, headers=auth(token)).status_code == 401
    assert json.loads(state.read_text())["clockOffset"] == 0

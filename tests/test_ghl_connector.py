"""The HighLevel connector (ghl_users) driven through the engine against its sandbox.

Every test connects with the real OAuth flow (``splice.connections.authorize.connect``: consent
loopback redirect listener, HighLevel's form-encoded token request with ``user_type``,
encrypted storage) to one sandbox shared by the module and reset before each test. Operations
are called the way a recipe step calls them: defaults rendered from the connection, input
checked against the manifest, the request built by ``prepare_call`` and sent by the
connection's client (OAuth refresh, retries, pagination, error mapping). Every response the
client receives is recorded, so the contract test can check it against the official OpenAPI
spec and against the manifest's own ``output`` schema.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

from splice.connections.authorize import connect
from splice.connections.client import connection_client
from splice.errors import AuthError, HTTPError
from splice.http.client import ApiClient, CallResult
from splice.http.ratelimit import limiter_for
from splice.http.request import prepare_call
from splice.mapping.templates import TemplateEngine
from splice.model.manifest import Connector, Operation, load_manifest
from splice.plugins import get_registry
from splice.run.steps import rendered_parts
from splice.sandbox import SandboxConfig, serve
from splice.store.database import ConnectionRecord, Store
from splice_connectors.ghl_users import MANIFEST
from splice_connectors.ghl_users.sandbox import create_app
from splice_connectors.ghl_users.sandbox_data import COMPANY_ID, LOCATION_ID

from .conftest import SharedTransport, invoke
from .ghl_spec import FORMATS, V2, V3, OfficialSpecs

SPECS = Path(__file__).resolve().parents[2] / "shared/reference/ghl/openapi"
needs_specs = pytest.mark.skipif(
    not (SPECS / "apps/users.json").is_file(),
    reason=f"official HighLevel OpenAPI specs not found in {SPECS} (shared/ beside the repo)")

NOW = datetime(2026, 5, 2, 12, 0, tzinfo=UTC).timestamp()  # a Saturday
CLIENT_ID, CLIENT_SECRET = "splice-tests", "ghl-test-client-secret"
CONNECTION = "my-highlevel"
MANIFEST_DATA = yaml.load(MANIFEST.read_text("utf-8"), Loader=yaml.CSafeLoader)
OPERATION_IDS = sorted(MANIFEST_DATA["operations"])
NEW_USER = {"firstName": "Clark", "lastName": "Kent", "email": "clark.kent@dailyplanet.test",
            "password": "Sup3r-Secret-Pass!", "phone": "+15125550199", "type": "account",
            "role": "user", "locationIds": [LOCATION_ID],
            "permissions": {"socialPlanner": True}}


# ------------------------------------------------------------------------------ official spec


class OfficialSpec:
    """Response schemas of the official Users and Social Media Posting specs (both versions),
    with the known defects tests/ghl_spec.py lists corrected and every ``$ref`` inlined."""

    def __init__(self, root: Path) -> None:
        self.specs = OfficialSpecs(root)

    def problems(self, method: str, path: str, status: int, body: Any,
                 version: str = V2) -> list[str]:
        """Where ``body`` breaks the spec's schema for ``method path`` answering ``status``."""
        found = self.specs.operation(method, path, version)
        assert found is not None, f"{method} {path} is not in the {version} spec"
        name, _, op, _ = found
        schema = self.specs.response(name, op, status)
        if schema is None:
            return [f"the spec declares no JSON response {status} for {method} {path}"]
        validator = Draft202012Validator(schema, format_checker=FORMATS)
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


@pytest.fixture(scope="module")
def official() -> OfficialSpec:
    if not (SPECS / "apps/users.json").is_file():
        pytest.skip(f"official HighLevel OpenAPI specs not found in {SPECS}")
    return OfficialSpec(SPECS)


# ------------------------------------------------------------------------------ sandbox


@dataclass
class Sandbox:
    base_url: str
    http: httpx.Client
    transport: SharedTransport

    def control(self, action: str, **body: Any) -> Any:
        response = self.http.post(f"/__test__/{action}", json=body)
        response.raise_for_status()
        return response.json()

    def world(self) -> dict[str, Any]:
        return self.http.get("/__test__/state").json()["world"]  # type: ignore[no-any-return]

    def browser(self, target: str = LOCATION_ID) -> Callable[[str], None]:
        """A script acting as the browser: open the consent page, install on ``target``."""
        def open_url(url: str) -> None:
            # HighLevel's marketplace URL, moved onto the connection's base URL (the sandbox)
            assert url.startswith(f"{self.base_url}/v2/oauth/chooselocation?"), url
            parts = urlsplit(url)
            params = dict(parse_qsl(parts.query))
            page = self.http.get(parts.path, params=params)
            assert page.status_code == 200 and "Approve" in page.text, page.text
            answer = self.http.post(parts.path, data={**params, "target": target,
                                                      "decision": "approve"})
            assert answer.status_code == 302, answer.text
            self.http.get(answer.headers["location"])  # to splice's loopback listener
        return open_url


def serve_sandbox(**config: Any) -> Iterator[Sandbox]:
    """The HighLevel sandbox served on loopback (consent given by a script), with ``config``
    passed on to its SandboxConfig; the module fixtures of the HighLevel tests yield from it."""
    settings = SandboxConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             auto_approve=False, **config)
    transport = SharedTransport()
    with serve(create_app(settings)) as base_url, \
            httpx.Client(base_url=base_url, timeout=10, transport=transport) as http:
        yield Sandbox(base_url, http, transport)
    transport.inner.close()


def connected(sandbox: Sandbox) -> Iterator[Ghl]:
    """Seed data, no tokens, fresh limits; then a connection with every manifest scope."""
    sandbox.control("reset")
    api = open_connection(sandbox)
    yield api
    api.close()
    api.store.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """HighLevel's real limits (100 requests / 10 s) on a clock that moves only when told."""
    yield from serve_sandbox(clock=lambda: NOW)


# ------------------------------------------------------------------------------ the engine


@dataclass
class Ghl:
    """Calls ghl_users operations as a recipe step does; records every response received."""

    sandbox: Sandbox
    store: Store
    connector: Connector
    name: str
    budgets: bool = False  # enforce the manifest's rate_limits before sending
    responses: list[httpx.Response] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    _client: ApiClient | None = field(default=None, repr=False)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            record = self.record()
            limiter = limiter_for(self.connector, record, self.store, clock=self.clock,
                                  path=None) if self.budgets else None
            self._client = connection_client(self.connector, record, self.store,
                                             get_registry(), sleep=self._sleep,
                                             clock=self.clock, limiter=limiter,
                                             on_request=self._received,
                                             transport=self.sandbox.transport)
        return self._client

    def clock(self) -> float:
        """The client's clock: the sandbox's, which moves only when the client waits."""
        return NOW + sum(self.slept)

    def _sleep(self, seconds: float) -> None:
        """No real waiting: the API's clock moves on instead."""
        self.slept.append(seconds)
        self.sandbox.control("advance-clock", seconds=seconds)

    def _received(self, request: httpx.Request, response: httpx.Response | None,
                  attempt: Any) -> None:
        if response is not None:
            self.responses.append(response)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def record(self) -> ConnectionRecord:
        record = self.store.get_connection(self.name)
        assert record is not None
        return record

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self.record().config.get("fields") or {})

    def op(self, op_id: str) -> Operation:
        return self.connector.operation(op_id)

    def prepare(self, op: Operation, given: dict[str, Any]) -> Any:
        """Operation defaults rendered from the connection, then ``given``; input checked;
        the request built as a step builds it (the operation's header templates rendered)."""
        context = {"connection": {"name": self.name, "base_url": self.sandbox.base_url,
                                  **self.fields}}
        engine = TemplateEngine(get_registry().filters)
        payload = {**(engine.compile_mapping(op.defaults, where=f"{op.ref}.defaults")(context)
                      or {}), **given}
        problems = [e.message for e in op.input_validator.iter_errors(payload)]
        assert not problems, f"{op.ref} input rejected: {problems}"
        parts = rendered_parts(op, {"input": payload, "connection": context["connection"]},
                               lambda part, value: engine.compile_mapping(value, where=part))
        return prepare_call(op, self.connector, payload, base_url=self.client.base_url,
                            **parts)  # the operation's own headers (Version v3), as a step

    def call(self, op: Operation | str, **given: Any) -> CallResult:
        op = self.op(op) if isinstance(op, str) else op
        return self.client.send(op, self.prepare(op, given))

    def send(self, op: Operation | str, **given: Any) -> Any:
        return self.call(op, **given).json()

    def pages(self, op: Operation | str, **given: Any) -> list[tuple[Any, list[Any]]]:
        op = self.op(op) if isinstance(op, str) else op
        return list(self.client.pages(op, self.prepare(op, given)))

    def records(self, op: Operation | str, **given: Any) -> list[Any]:
        return [r for _, page in self.pages(op, **given) for r in page]


def open_connection(sandbox: Sandbox, name: str = CONNECTION, *, target: str = LOCATION_ID,
                    connector: Connector | None = None, scopes: list[str] | None = None) -> Ghl:
    """``splice connect`` as a script: consent, loopback redirect, code exchange, storage."""
    connector = connector or get_registry().connector("ghl_users")
    store = Store.open()
    connect(connector, store, name=name, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            scopes=connector.scopes if scopes is None else scopes, base_url=sandbox.base_url,
            open_url=sandbox.browser(target), timeout=10, transport=sandbox.transport,
            config={"allow_private_network": True})
    return Ghl(sandbox, store, connector, name)


def open_agency_connection(sandbox: Sandbox) -> Ghl:
    """An Agency (Company) installation: the same connector asking for ``user_type=Company``.

    The manifest fixes ``user_type: Location`` (Social Planner needs Sub-Account tokens), so
    this is how the one Agency-only operation, ``filter_users_by_email``, can be exercised.
    """
    base = get_registry().connector("ghl_users")
    agency = replace(base, auth={**base.auth, "token_params": {"user_type": "Company"}})
    return open_connection(sandbox, "my-highlevel-agency", target="company", connector=agency,
                           scopes=["users.readonly"])


@pytest.fixture
def ghl(sandbox: Sandbox) -> Iterator[Ghl]:
    yield from connected(sandbox)


def seeded_tags(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [t for t in sandbox.world()["tags"]
            if t["locationId"] == LOCATION_ID and not t["deleted"]]


def profile_ids(sandbox: Sandbox) -> list[str]:
    return [a["profileId"] for a in sandbox.world()["accounts"]
            if a["_locationId"] == LOCATION_ID]


def new_user(api: Ghl, **changes: Any) -> dict[str, Any]:
    return api.send("create_user", **{**NEW_USER, **changes})  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ connecting


def test_connect_stores_a_location_token_with_every_scope(ghl: Ghl) -> None:
    record = ghl.record()
    assert record.connector == "ghl_users" and record.base_url == ghl.sandbox.base_url
    assert sorted(record.scopes) == sorted(ghl.connector.scopes) and len(record.scopes) == 13
    fields = ghl.fields
    assert re.fullmatch(r"[A-Za-z0-9]{20}", fields.pop("userId"))  # who installed the app
    assert fields == {"locationId": LOCATION_ID, "companyId": COMPANY_ID, "userType": "Location"}
    assert abs(record.config["expires_at"] - (time.time() + 86399)) < 60  # about a day
    assert record.secret["refresh_token"] and record.secret["client_secret"] == CLIENT_SECRET
    checked = invoke("connections", "test", CONNECTION)  # the manifest's test_operation
    assert checked.exit_code == 0, checked.output


# ------------------------------------------------------------------------------ contract

# Every manifest operation, with the input a step would give it. Each is called below and
# every response checked against the official spec and the manifest's output schema.
AGENCY_ONLY = {"filter_users_by_email"}
CSV_TEXT = ("content,scheduleDate,imageUrls\n"
            "Summer sale starts Monday,2026-06-01 15:00:00,https://cdn.example.test/sale.png\n"
            "Meet the new crew,2026-06-03T16:00:00Z,\n"
            "Broken row,not a date,\n")


def api_headers(api: Ghl, version: str = V2) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.record().secret['access_token']}", "Version": version}


def upload_csv_file(api: Ghl, text: str = CSV_TEXT) -> httpx.Response:
    """A multipart file upload made by hand, as the spec describes ``upload_csv``."""
    return api.sandbox.http.post(f"/social-media-posting/{LOCATION_ID}/csv",
                                 headers=api_headers(api),
                                 files={"file": ("posts.csv", text.encode(), "text/csv")})


def account_ids(api: Ghl) -> list[str]:
    return [a["id"] for a in api.sandbox.world()["accounts"]
            if a["_locationId"] == LOCATION_ID and not a.get("_deleted")]


def csv_payload(api: Ghl) -> dict[str, Any]:
    uploaded = upload_csv_file(api).json()["results"]
    return {"accountIds": account_ids(api)[:2], "userId": api.fields["userId"], **uploaded}


def csv_import_id(api: Ghl) -> str:
    api.send("set_csv_accounts", **csv_payload(api))
    return str(api.sandbox.world()["csv_imports"][-1]["_id"])


def login_id(api: Ghl, platform: str) -> str:
    """The OAuth account id a network login gives: a seeded one, else a fresh start."""
    for account in api.sandbox.world()["accounts"]:
        if account["platform"] == platform and account["_locationId"] == LOCATION_ID:
            return str(account["oauthId"])
    page = api.call(f"start_{platform.replace('-', '_')}_oauth", userId=api.fields["userId"])
    return str(oauth_event(page.response.text)["accountId"])


def oauth_event(page: str) -> dict[str, Any]:
    """The message HighLevel's OAuth popup posts to its opener (embedded in the page)."""
    found = re.search(r"id='social-media-posting-event'>(.*?)</script>", page)
    assert found, page
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def seeded_post(api: Ghl, status: str = "published") -> str:
    return str(next(p["_id"] for p in api.sandbox.world()["posts"] if p["status"] == status))


PAYLOADS: dict[str, Callable[[Ghl], dict[str, Any]]] = {
    "list_tags": lambda api: {},
    "get_tag_details": lambda api: {"tagIds": [t["_id"] for t in seeded_tags(api.sandbox)[:3]]},
    "get_statistics": lambda api: {"profileIds": profile_ids(api.sandbox)},
    "get_statistics_for_range": lambda api: {
        "profileIds": profile_ids(api.sandbox),
        "currentRange": {"startDate": "2026-04-01T00:00:00.000Z",
                         "endDate": "2026-04-30T23:59:59.999Z"},
        "prevRange": {"startDate": "2026-03-02T00:00:00.000Z",
                      "endDate": "2026-03-31T23:59:59.999Z"}},
    "list_social_accounts": lambda api: {},
    "delete_social_account": lambda api: {"id": account_ids(api)[-1],
                                          "userId": api.fields["userId"]},
    "list_categories": lambda api: {},
    "get_category": lambda api: {"id": api.sandbox.world()["categories"][0]["_id"]},
    "list_users": lambda api: {},
    "search_users": lambda api: {"sort": "dateAdded", "sortDirection": "desc"},
    "filter_users_by_email": lambda api: {
        "emails": "maria.alvarez@brightpath-marketing.com,priya.patel@brightpath-marketing.com",
        "projection": "all"},
    "get_user": lambda api: {"userId": api.fields["userId"]},
    "create_user": lambda api: dict(NEW_USER),
    "update_user": lambda api: {"userId": new_user(api)["id"], "lastName": "Kent Jr",
                                "role": "admin"},
    "delete_user": lambda api: {"userId": new_user(api)["id"]},
    "list_posts": lambda api: {"skip": "0", "limit": "20", "fromDate": "2026-03-01T00:00:00Z",
                               "toDate": "2026-06-01T00:00:00Z", "includeUsers": "true"},
    "create_post": lambda api: {"type": "post", "accountIds": account_ids(api)[:2],
                                "userId": api.fields["userId"], "summary": "Grand opening!",
                                "scheduleDate": "2026-05-20T15:00:00.000Z",
                                "tags": ["grand-opening"]},
    "get_post": lambda api: {"id": seeded_post(api)},
    "update_post": lambda api: {"id": seeded_post(api, "scheduled"), "type": "post",
                                "summary": "Summer maintenance plans: now 10% off"},
    "delete_post": lambda api: {"id": seeded_post(api, "draft")},
    "bulk_delete_posts": lambda api: {"postIds": [seeded_post(api), seeded_post(api, "failed")]},
    "list_csv_imports": lambda api: (csv_import_id(api) and {"userId": api.fields["userId"]}),
    "set_csv_accounts": csv_payload,
    "get_csv_import": lambda api: {"id": csv_import_id(api)},
    "finalize_csv_import": lambda api: {"id": csv_import_id(api),
                                        "userId": api.fields["userId"]},
    "delete_csv_import": lambda api: {"id": csv_import_id(api)},
    "delete_csv_post": lambda api: (lambda csv_id: {"csvId": csv_id, "postId": next(
        i for i in api.sandbox.world()["csv_imports"] if i["_id"] == csv_id)["_rows"][0]["_id"]})(
        csv_import_id(api)),
}
for _platform in ("google", "facebook", "instagram", "linkedin", "twitter", "tiktok",
                  "tiktok-business"):
    _name = _platform.replace("-", "_")
    PAYLOADS[f"start_{_name}_oauth"] = lambda api: {"userId": api.fields["userId"]}
LISTS = {"google": "list_google_locations", "facebook": "list_facebook_pages",
         "instagram": "list_instagram_accounts", "linkedin": "list_linkedin_pages",
         "twitter": "get_twitter_profile", "tiktok": "get_tiktok_profile",
         "tiktok-business": "get_tiktok_business_profile"}
ATTACHES = {"google": "attach_google_location", "facebook": "attach_facebook_page",
            "instagram": "attach_instagram_account", "linkedin": "attach_linkedin_page",
            "twitter": "attach_twitter_profile", "tiktok": "attach_tiktok_profile"}
for _platform, _op in LISTS.items():
    PAYLOADS[_op] = lambda api, p=_platform: {"accountId": login_id(api, p)}
for _platform, _op in ATTACHES.items():
    PAYLOADS[_op] = lambda api, p=_platform: {"accountId": login_id(api, p)}
PAYLOADS["attach_instagram_account"] = lambda api: (lambda grant: {
    "accountId": grant, "pageId": api.send("list_instagram_accounts", accountId=grant)[
        "results"]["accounts"][1]["pageId"]})(login_id(api, "instagram"))
# Checked in its own test below: uploaded by hand (multipart) and by splice.
MULTIPART_ONLY = {"upload_csv"}


def test_every_operation_has_a_payload() -> None:
    assert sorted(set(PAYLOADS) | MULTIPART_ONLY) == OPERATION_IDS and len(OPERATION_IDS) == 48


def version_of(op: Operation) -> str:
    """The Version header an operation is sent with: its own, else the connector's."""
    return op.headers.get("Version", V2)


def test_every_operation_is_served(ghl: Ghl) -> None:
    """No route of the manifest is unknown to the sandbox, with the operation's own Version
    (48 of 48: the 47 routes of the date-versioned specs, statistics again with ``v3``)."""
    assert {version_of(ghl.op(op_id)) for op_id in OPERATION_IDS} == {V2, V3}
    for op_id in OPERATION_IDS:
        op = ghl.op(op_id)
        path = re.sub(r"{[^}]+}", "x1", op.path)
        response = ghl.sandbox.http.request(op.method, path,
                                            headers={"Version": version_of(op)})
        assert response.status_code == 401, (op_id, response.status_code, response.text)


def _check(op: Operation, response: httpx.Response, official: OfficialSpec) -> None:
    assert response.is_success, (op.id, response.status_code, response.text)
    if op.id.startswith("start_"):  # the spec declares a 200 without content: a page
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert oauth_event(response.text)["page"] == "social_media_posting"
        return
    body = response.json()
    version = version_of(op)
    assert response.request.headers["Version"] == version, op.id
    spec_problems = official.problems(op.method, op.path, response.status_code, body, version)
    assert not spec_problems, f"{op.id}: differs from the official spec: {spec_problems}"
    ours = [f"{list(e.absolute_path)}: {e.message}" for e in op.output_validator.iter_errors(body)]
    assert not ours, f"{op.id}: differs from the manifest's output schema: {ours}"


@needs_specs
@pytest.mark.parametrize("op_id", sorted(PAYLOADS))
def test_responses_match_the_official_spec_and_the_manifest(
        ghl: Ghl, official: OfficialSpec, op_id: str) -> None:
    api = open_agency_connection(ghl.sandbox) if op_id in AGENCY_ONLY else ghl
    try:
        op = api.op(op_id)
        given = PAYLOADS[op_id](api)
        api.responses.clear()
        if op.is_list:
            records = api.records(op, **given)
            assert records, f"{op_id} returned no records, so the check proves little"
        else:
            api.send(op, **given)
        assert api.responses
        for response in api.responses:
            _check(op, response, official)
    finally:
        if api is not ghl:
            api.close()
            api.store.close()


@needs_specs
def test_upload_csv_answers_the_spec_and_splice_sends_the_file_as_multipart(
        ghl: Ghl, official: OfficialSpec) -> None:
    op = ghl.op("upload_csv")
    uploaded = upload_csv_file(ghl)  # by hand, as the spec describes it
    assert uploaded.status_code == 201
    _check(op, uploaded, official)
    assert uploaded.json()["results"]["rowsCount"] == 3
    sent = ghl.call(op, file={"content": CSV_TEXT, "filename": "posts.csv"})
    assert sent.response.status_code == 201
    assert ghl.responses[-1].request.headers["content-type"].startswith("multipart/form-data")
    _check(op, ghl.responses[-1], official)
    assert sent.json()["results"]["rowsCount"] == 3


@needs_specs
def test_error_responses_match_the_spec_and_carry_the_api_message(
        ghl: Ghl, official: OfficialSpec) -> None:
    op = ghl.op("create_user")
    bad = prepare_call(op, ghl.connector, {**NEW_USER, "companyId": COMPANY_ID,
                                           "locationIds": LOCATION_ID, "permissions": []},
                       base_url=ghl.client.base_url)
    with pytest.raises(HTTPError) as invalid:
        ghl.client.send(op, bad)
    assert invalid.value.status == 422
    assert ("ghl_users.create_user: HTTP 422: locationIds must be an array; "
            "permissions must be an object") in str(invalid.value)
    with pytest.raises(HTTPError) as unknown:
        ghl.send("get_user", userId="noSuchUser0000000000")
    assert unknown.value.status == 400 and "User not found" in str(unknown.value)
    refused = ghl.responses[-2:]
    assert [r.status_code for r in refused] == [422, 400]
    for response, (method, path) in zip(refused, [("POST", "/users/"),
                                                  ("GET", "/users/{userId}")], strict=True):
        assert not official.problems(method, path, response.status_code, response.json())


# ------------------------------------------------------------------------------ social planner


def test_tags_come_page_by_page_with_none_lost_or_repeated(ghl: Ghl) -> None:
    op = ghl.op("list_tags")
    small = replace(op, pagination={**(op.pagination or {}), "page_size": 40})
    pages = ghl.pages(small)
    ids = [t["_id"] for _, page in pages for t in page]
    expected = [t["_id"] for t in seeded_tags(ghl.sandbox)]
    assert len(expected) == 250
    assert [len(page) for _, page in pages] == [40] * 6 + [10]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected)
    sent = [dict(r.request.url.params) for r in ghl.responses]
    assert sent == [{"skip": str(s), "limit": "40"} for s in range(0, 250, 40)]
    assert all(body["results"]["count"] == 250 for body, _ in pages)


def test_tag_search_and_details_show_deleted_tags(ghl: Ghl) -> None:
    found = ghl.records("list_tags", searchText="wayne")
    assert sorted(t["tag"] for t in found) == ["Wayne Enterprises", "wayne-enterprises"]
    gone = found[0]
    ghl.sandbox.http.patch(f"/__test__/tags/{gone['_id']}", json={"deleted": True})
    assert [t["_id"] for t in ghl.records("list_tags", searchText="wayne")] == [found[1]["_id"]]
    result = ghl.call("get_tag_details", tagIds=[gone["_id"], found[1]["_id"],
                                                 "unknownTagId00000000"])
    assert result.response.status_code == 201  # HighLevel answers this read with 201
    body = result.json()
    assert body["results"]["count"] == 2
    details = {t["_id"]: t for t in body["results"]["tags"]}
    assert details[gone["_id"]]["deleted"] is True and details[found[1]["_id"]]["deleted"] is False


def test_statistics_cover_the_last_seven_days_of_the_chosen_profiles(ghl: Ghl) -> None:
    accounts = ghl.records("list_social_accounts")
    assert {a["platform"] for a in accounts} >= {"facebook", "instagram"}
    profiles = [a["profileId"] for a in accounts]
    result = ghl.call("get_statistics", profileIds=profiles)
    assert result.response.status_code == 201
    stats = result.json()
    assert stats["message"] == "Analytics Built Successfully" and stats["traceId"]
    [snapshot] = ghl.records("get_statistics", profileIds=profiles)  # one record: `results`
    assert snapshot == stats["results"]  # the same window gives the same figures
    # Saturday 2 May: the seven days before it, today excluded.
    assert snapshot["dayRange"] == ["Sat", "Sun", "Mon", "Tue", "Wed", "Thu", "Fri"]
    assert snapshot["totals"]["impressions"] == sum(snapshot["postPerformance"]["impressions"])
    assert set(snapshot["postPerformance"]["posts"]) == {a["platform"] for a in accounts}
    facebook = ghl.send("get_statistics", profileIds=profiles, platforms=["facebook"])
    assert list(facebook["results"]["breakdowns"]["posts"]["platforms"]) == ["facebook"]


def test_statistics_for_a_date_range_are_asked_with_version_v3(ghl: Ghl) -> None:
    profiles = profile_ids(ghl.sandbox)
    week = {"startDate": "2026-04-25T00:00:00.000Z", "endDate": "2026-05-01T23:59:59.999Z"}
    before = {"startDate": "2026-04-18T00:00:00.000Z", "endDate": "2026-04-24T23:59:59.999Z"}
    result = ghl.call("get_statistics_for_range", profileIds=profiles, currentRange=week,
                      prevRange=before)
    assert result.response.request.headers["Version"] == "v3"
    assert result.response.status_code == 200  # v3 declares 200 where 2021-07-28 says 201
    body = json.loads(result.response.request.content)
    assert body == {"profileIds": profiles, "currentRange": week, "prevRange": before}
    assert "locationId" not in body and result.response.request.url.params["locationId"]
    # Saturday 2 May: the default window of get_statistics is these same 7 days against the
    # 7 before, so both versions give the same figures.
    [seven] = ghl.records("get_statistics", profileIds=profiles)
    assert ghl.responses[-1].request.headers["Version"] == V2
    assert result.json()["results"] == seven
    # any range: a day of it has the same figures as that day in the 7-day window
    april = {"startDate": "2026-04-01T00:00:00.000Z", "endDate": "2026-04-30T23:59:59.999Z"}
    [month] = ghl.records("get_statistics_for_range", profileIds=profiles, currentRange=april)
    assert len(month["dayRange"]) == 30 and month["dayRange"][0] == "Wed"  # 1 April 2026
    assert month["postPerformance"]["likes"][24:] == seven["postPerformance"]["likes"][:6]
    assert month["totals"]["likes"] == sum(month["postPerformance"]["likes"])
    with pytest.raises(HTTPError) as backwards:  # the v3 spec: end after start
        ghl.call("get_statistics_for_range", profileIds=profiles,
                 currentRange={"startDate": april["endDate"], "endDate": april["startDate"]})
    assert backwards.value.status == 400


# ------------------------------------------------------------------------------ users


def test_user_create_get_update_search_delete(ghl: Ghl) -> None:
    created = ghl.call("create_user", **NEW_USER)
    assert created.response.status_code == 201
    user = created.json()
    assert user["name"] == "Clark Kent" and user["roles"]["locationIds"] == [LOCATION_ID]
    assert "password" not in user
    assert ghl.send("get_user", userId=user["id"]) == user
    updated = ghl.send("update_user", userId=user["id"], lastName="Kent Jr", role="admin")
    assert updated["name"] == "Clark Kent Jr" and updated["roles"]["role"] == "admin"
    found = ghl.records("search_users", query="dailyplanet")
    assert [u["id"] for u in found] == [user["id"]]
    everyone = ghl.records("list_users")
    assert user["id"] in {u["id"] for u in everyone}
    deleted = ghl.send("delete_user", userId=user["id"])
    assert deleted["succeded"] is True  # sic: HighLevel's spelling
    with pytest.raises(HTTPError) as gone:
        ghl.send("get_user", userId=user["id"])
    assert gone.value.status == 400
    assert ghl.records("search_users", ids=user["id"]) == []


def test_user_search_pages_with_skip_and_limit(ghl: Ghl) -> None:
    op = ghl.op("search_users")
    small = replace(op, pagination={**(op.pagination or {}), "page_size": 3})
    pages = ghl.pages(small, sort="dateAdded", sortDirection="asc")
    assert [len(page) for _, page in pages] == [3, 3, 1]  # the location's 7 users
    assert all(body["count"] == 7 for body, _ in pages)
    names = [u["name"] for _, page in pages for u in page]
    assert len(set(names)) == 7 and names[-1] == "Lucas Moreau"  # the newest


def test_missing_scope_is_refused_with_the_scope_named(ghl: Ghl) -> None:
    narrow = open_connection(ghl.sandbox, "users-only", scopes=["users.readonly"])
    try:
        assert narrow.records("search_users")
        with pytest.raises(AuthError) as refused:
            narrow.records("list_tags")
        assert refused.value.status == 401  # the specs document no 403
        assert "socialplanner/tag.readonly" in str(refused.value)
    finally:
        narrow.close()
        narrow.store.close()


# ------------------------------------------------------------------------------ rate limits


def test_injected_429s_are_retried_after_retry_after(ghl: Ghl) -> None:
    ghl.sandbox.control("fail-next", count=2, status=429, retry_after=1)
    result = ghl.call("list_social_accounts")
    assert result.response.status_code == 200
    assert [a.status for a in result.attempts] == [429, 429, 200]
    assert ghl.slept == [1.0, 1.0]
    assert all("X-RateLimit-Max" in r.headers for r in ghl.responses)


def test_429_is_surfaced_when_retries_run_out(ghl: Ghl) -> None:
    ghl.sandbox.control("fail-next", count=4, status=429, retry_after=1)
    with pytest.raises(HTTPError) as limited:
        ghl.call("list_social_accounts")
    assert limited.value.status == 429
    assert "ghl_users.list_social_accounts: HTTP 429: Too Many Requests" in str(limited.value)
    assert ghl.slept == [1.0, 1.0, 1.0]  # four attempts, three waits
    assert [r.status_code for r in ghl.responses] == [429] * 4


def test_the_101st_request_in_10_seconds_waits_and_nothing_is_lost(ghl: Ghl) -> None:
    op = ghl.op("list_tags")
    tiny = replace(op, pagination={**(op.pagination or {}), "page_size": 2})
    ids = [t["_id"] for t in ghl.records(tiny)]
    assert len(ids) == len(set(ids)) == 250
    statuses = [r.status_code for r in ghl.responses]
    assert statuses.count(429) == 1 and statuses.index(429) == 100 and len(statuses) == 126
    assert ghl.responses[99].headers["X-RateLimit-Remaining"] == "0"
    assert ghl.responses[100].headers["Retry-After"] == "10"
    assert ghl.slept == [10.0]  # Retry-After honoured (on the sandbox's clock)


def test_the_manifests_budget_waits_before_the_api_says_429(ghl: Ghl) -> None:
    budgeted = Ghl(ghl.sandbox, ghl.store, ghl.connector, ghl.name, budgets=True)
    try:
        op = budgeted.op("list_tags")
        tiny = replace(op, pagination={**(op.pagination or {}), "page_size": 2})
        ids = [t["_id"] for t in budgeted.records(tiny)]
    finally:
        budgeted.close()
    assert len(ids) == len(set(ids)) == 250
    assert [r.status_code for r in budgeted.responses] == [200] * 125  # never a 429
    assert 10.0 <= sum(budgeted.slept) <= 11.0  # one 10-second window waited out


# ------------------------------------------------------------------------------ tokens


def test_expired_access_token_is_refreshed_and_the_rotation_persisted(ghl: Ghl) -> None:
    assert ghl.records("list_social_accounts")
    before = ghl.record()
    ghl.sandbox.control("expire-tokens")
    result = ghl.call("list_social_accounts")
    assert result.response.status_code == 200 and len(result.attempts) == 1
    after = ghl.record()
    assert after.status == "valid"
    assert after.secret["access_token"] != before.secret["access_token"]
    assert after.secret["refresh_token"] != before.secret["refresh_token"]
    reuse = ghl.sandbox.http.post("/oauth/token", data={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
        "refresh_token": before.secret["refresh_token"], "user_type": "Location"})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # A new process reads the rotated refresh token from the store and refreshes with it.
    ghl.sandbox.control("expire-tokens")
    later = Ghl(ghl.sandbox, ghl.store, ghl.connector, ghl.name)
    try:
        assert later.records("list_social_accounts")
    finally:
        later.close()
    final = ghl.record()
    assert final.status == "valid"
    assert final.secret["refresh_token"] not in (before.secret["refresh_token"],
                                                 after.secret["refresh_token"])


# ------------------------------------------------------------------------------ triggers

RECIPE = """\
name: ghl {trigger} check
trigger:
  use: ghl_users.{trigger}
  connection: {connection}
  with: {trigger_with}
steps:
  - id: check
    use: ghl_users.{step}
    connection: {connection}
    with: {step_with}
"""


def _create_tag(api: Ghl) -> None:
    api.sandbox.control("tags", tag="Gotham Gazette")
    api.sandbox.control("advance-clock", seconds=60)  # renaming changes no tag's key
    tag = seeded_tags(api.sandbox)[0]
    api.sandbox.http.patch(f"/__test__/tags/{tag['_id']}", json={"tag": tag["tag"] + "!"})


def _rename_tag(api: Ghl) -> None:
    api.sandbox.control("advance-clock", seconds=60)
    tag = seeded_tags(api.sandbox)[5]
    api.sandbox.http.patch(f"/__test__/tags/{tag['_id']}", json={"tag": "Renamed"})


def _add_user(api: Ghl) -> None:
    new_user(api)


def _next_day(api: Ghl) -> None:
    api.sandbox.control("advance-clock", seconds=86400)  # also expires the access token


TRIGGERS: dict[str, tuple[Callable[[Ghl], dict[str, Any]], str, str,
                          Callable[[Ghl], None], int]] = {
    # trigger: (trigger `with`, step, step `with`, the change, requests of the poll)
    "tag_created": (lambda api: {}, "get_tag_details", '{tagIds: ["{{ trigger._id }}"]}',
                    _create_tag, 3),
    "tag_updated": (lambda api: {}, "get_tag_details", '{tagIds: ["{{ trigger._id }}"]}',
                    _rename_tag, 3),
    "user_created": (lambda api: {}, "get_user", '{userId: "{{ trigger.id }}"}', _add_user, 1),
    "statistics_refreshed": (lambda api: {"profileIds": profile_ids(api.sandbox)},
                             "list_social_accounts", "{}", _next_day, 1),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_polling_trigger_fires_once_per_change(ghl: Ghl, trigger: str, tmp_path: Path) -> None:
    trigger_with, step, step_with, change, polls = TRIGGERS[trigger]
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(RECIPE.format(trigger=trigger, connection=CONNECTION, step=step,
                                    trigger_with=json.dumps(trigger_with(ghl)),
                                    step_with=step_with), encoding="utf-8")

    def run() -> dict[str, Any]:
        result = invoke("run", str(recipe), "--json")
        assert result.exit_code == 0, result.output
        report: dict[str, Any] = json.loads(result.stdout)
        assert not report["errors"] and report["events_failed"] == 0
        return report

    first = run()
    assert first["seeded"] >= 1 and first["events_new"] == 0
    assert first["requests_made"] == polls
    refresh_token = ghl.record().secret["refresh_token"]
    change(ghl)
    second = run()
    assert second["events_new"] == second["events_succeeded"] == 1
    assert second["requests_made"] == polls + 1  # the poll, then the step once
    if change is _next_day:  # the day-old access token was refreshed during the run
        assert ghl.record().secret["refresh_token"] != refresh_token
    third = run()
    assert third["events_new"] == 0 and third["requests_made"] == polls


# ------------------------------------------------------------------------------ CLI


def test_connectors_show_lists_operations_triggers_and_scopes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    trigger_scopes = {"tag_created": ["socialplanner/tag.readonly"],
                      "tag_updated": ["socialplanner/tag.readonly"],
                      "user_created": ["users.readonly"],
                      "statistics_refreshed": ["socialplanner/statistics.readonly"],
                      **dict.fromkeys(["post_published", "post_failed", "post_scheduled",
                                       "post_updated"], ["socialplanner/post.readonly"]),
                      "csv_import_created": ["socialplanner/csv.readonly"],
                      **dict.fromkeys(["category_created", "category_updated"],
                                      ["socialplanner/category.readonly"]),
                      **dict.fromkeys(["account_connected", "account_expired"],
                                      ["socialplanner/account.readonly"]),
                      "user_created_webhook": ["users.readonly"], "app_installed": [],
                      "app_uninstalled": []}
    shown = invoke("connectors", "show", "ghl_users", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert sorted(o["id"] for o in data["operations"]) == OPERATION_IDS
    assert all(o["scopes"] for o in data["operations"])
    assert set(data["scopes"]) == {s for o in data["operations"] for s in o["scopes"]}
    assert {t["id"]: t["scopes"] for t in data["triggers"]} == trigger_scopes
    assert {t["id"] for t in data["triggers"] if t["type"] == "webhook"} == \
        {"user_created_webhook", "app_installed", "app_uninstalled"}

    text = invoke("connectors", "show", "ghl_users")  # piped: plain rows, nothing cut
    assert text.exit_code == 0, text.output
    assert "48 operations" in text.stdout and "16 triggers" in text.stdout
    rows = {line.split()[0]: line for line in text.stdout.splitlines()[1:] if line.strip()}
    for op in data["operations"]:
        assert op["path"] in rows[op["id"]] and " ".join(op["scopes"]) in rows[op["id"]]
    for trigger_id, scopes in trigger_scopes.items():
        kind = "webhook" if trigger_id.startswith("app_") or "webhook" in trigger_id \
            else "polling"
        assert kind in rows[trigger_id] and (not scopes or scopes[0] in rows[trigger_id])


@needs_specs
@pytest.mark.parametrize(("spec", "count", "some"), [
    ("users.json", 7, {"search_users", "get_user", "create_user", "delete_user"}),
    ("social-media-posting.json", 40, {"list_tags", "get_tag_details", "get_statistics"}),
])
def test_import_openapi_writes_a_manifest_that_loads(
        tmp_path: Path, spec: str, count: int, some: set[str]) -> None:
    out = tmp_path / "imported.yaml"
    result = invoke("connectors", "import-openapi", str(SPECS / "apps" / spec), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{count} operations imported" in result.stderr
    connector = load_manifest(out)
    assert len(connector.operations) == count and some <= set(connector.operations)
    assert connector.base_url == "https://services.leadconnectorhq.com"
    assert connector.headers == {"Version": "2021-07-28"}
    assert "description" not in out.read_text("utf-8")  # no prose copied by default


def test_readme_documents_every_operation_trigger_and_scope() -> None:
    text = (MANIFEST.parent / "README.md").read_text("utf-8")
    for name in [*MANIFEST_DATA["triggers"], *MANIFEST_DATA["auth"]["scopes"]]:
        assert f"`{name}`" in text, name
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}
    for op_id, op in MANIFEST_DATA["operations"].items():
        assert f"`{op['method']} {op['path']}`" in rows[op_id], op_id
        assert f"`{' '.join(op['scopes'])}`" in rows[op_id], op_id
        assert "| yes |" in rows[op_id], op_id  # the sandbox serves every operation

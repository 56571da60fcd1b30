"""Contract tests: the HighLevel sandbox and connector against the official OpenAPI files.

Parametrized over the operations of ``apps/users.json`` and ``apps/social-media-posting.json``
(not over our manifest): each must have a manifest operation with the same method and path,
the same scopes as the spec (or as documented in tests/test_ghl_manifest.py's EXCEPTIONS),
a request built by splice that the spec accepts, and a sandbox answer the spec's response
schema accepts; operations the v3 files also define are checked against v3 the same way.
A manifest operation is matched by (method, path, Version): one that sends its own
``Version`` header (``get_statistics_for_range``: ``v3`` on the statistics route) is the
operation of that version's spec file, and is checked against it in every test above.
Then: the rules file the sandbox enforces is a fresh build from the spec files, the sandbox
refuses what the spec forbids (422), and a bounded property-based test sends requests drawn
from the spec's schemas and expects no 5xx and a 2xx for every spec-valid one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from splice.http.request import PreparedCall
from splice.model.manifest import MISSING
from splice_connectors.ghl_users import MANIFEST
from splice_connectors.ghl_users.sandbox import ENDPOINTS
from splice_connectors.ghl_users.sandbox_data import COMPANY_ID, LOCATION_ID
from splice_connectors.ghl_users.sandbox_http import BOTH, COMPANY, LOCATION

from .ghl_spec import (
    ENUM_AS_OBJECT_V2,
    FORMATS,
    REPLACED,
    REQUESTS_FILE,
    V2,
    V2_FILES,
    V3,
    OfficialSpecs,
    enum_objects,
    find_specs,
    render_table,
    request_table,
)
from .test_ghl_connector import (
    AGENCY_ONLY,
    CSV_TEXT,
    NOW,
    PAYLOADS,
    Ghl,
    Sandbox,
    api_headers,
    connected,
    open_agency_connection,
    open_connection,
    serve_sandbox,
)
from .test_ghl_manifest import EXCEPTIONS

ROOT = find_specs()
MANIFEST_DATA = yaml.load(MANIFEST.read_text("utf-8"), Loader=yaml.CSafeLoader)


def version_of(op: dict[str, Any]) -> str:
    """The Version an operation is sent with: its own header, else the connector's."""
    return str(op.get("headers", {}).get("Version", MANIFEST_DATA["headers"]["Version"]))


# (method, path, Version) -> manifest operation
ROUTES = {(op["method"], op["path"], version_of(op)): op_id
          for op_id, op in MANIFEST_DATA["operations"].items()}
# Spec operations deliberately left out of the manifest, with the reason. None today: all 47
# operations of the two files are in it.
NOT_IN_MANIFEST: dict[tuple[str, str], str] = {}
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def _spec_routes() -> list[str]:
    if ROOT is None:
        return []
    routes = []
    for name in V2_FILES:
        doc = json.loads((ROOT / "apps" / name).read_text("utf-8"))
        routes += [f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item
                   if m in HTTP_METHODS]
    return routes


SPEC_ROUTES = _spec_routes()
NO_SPECS = [pytest.param("GET /", marks=pytest.mark.skip(reason="official specs not found"))]
# Manifest operations pinned to another Version than the connector's: "METHOD path @version".
PINNED_ROUTES = [f"{m} {p} @{v}" for m, p, v in sorted(ROUTES) if v != V2]


def _route(route: str) -> tuple[str, str, str]:
    """``"METHOD path"`` (the connector's Version) or ``"METHOD path @version"``."""
    route, _, version = route.partition(" @")
    method, path = route.split(" ", 1)
    return method, path, version or V2


@pytest.fixture(scope="module")
def specs() -> OfficialSpecs:
    if ROOT is None:
        pytest.skip("official HighLevel OpenAPI specs not found")
    return OfficialSpecs(ROOT)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    yield from serve_sandbox(clock=lambda: NOW, rate_limit=(100_000, 10.0))


@pytest.fixture
def ghl(sandbox: Sandbox) -> Iterator[Ghl]:
    yield from connected(sandbox)


# -- the request splice builds, seen by the spec ---------------------------------------------

def request_problems(specs: OfficialSpecs, version: str, method: str, path: str,
                     call: PreparedCall) -> list[str]:
    """Where ``call`` breaks the spec of ``method path`` in ``version`` (path, query, body)."""
    found = specs.operation(method, path, version)
    assert found is not None
    name, template, op, fixed = found
    problems = []
    pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
    actual = httpx.URL(call.url).path
    if not re.match(pattern, actual):
        problems.append(f"path {actual} does not fit {template}")
    query = specs.query(name, op)
    for param, rule in query.items():
        value = call.params.get(param)
        if value is None:
            if rule["required"]:
                problems.append(f"query {param} is required")
            continue
        schema = rule["schema"]
        if schema.get("type") == "boolean":
            problems += [] if value in ("true", "false") else [f"query {param} not a boolean"]
        elif schema.get("type") == "string" and "enum" in schema and value not in schema["enum"]:
            problems.append(f"query {param}={value} outside its enum")
    problems += [f"query {p} is not a parameter of the spec" for p in call.params
                 if p not in query]
    version_param = next(p for p in specs.parameters(name, op) if p["name"] == "Version")
    if call.headers.get("Version") not in version_param["schema"]["enum"]:
        problems.append(f"Version {call.headers.get('Version')} outside the spec's enum")
    body = specs.body(name, op, fixed)
    if body is None:
        if call.json_body is not MISSING or call.form_body is not None:
            problems.append("a body is sent where the spec declares none")
        return problems
    if call.files is not None:  # multipart: the spec's file fields are the parts sent
        if body["media"] != "multipart/form-data":
            problems.append(f"body is multipart, the spec wants {body['media']}")
        wanted = set(body["schema"].get("required", []))
        sent = {part.name for part in call.files} | set(call.form_body or {})
        problems += [f"multipart part {name} is required" for name in sorted(wanted - sent)]
        return problems
    if call.form_body is not None:
        problems.append(f"body is form-encoded, the spec wants {body['media']}")
        return problems
    if call.json_body is MISSING:
        if body["required"]:
            problems.append("the spec requires a body and none is sent")
        return problems
    validator = Draft202012Validator(body["schema"], format_checker=FORMATS)
    problems += [f"body {list(e.absolute_path)}: {e.message}"
                 for e in validator.iter_errors(call.json_body)]
    return problems


def response_problems(specs: OfficialSpecs, version: str, method: str, path: str,
                      response: httpx.Response) -> list[str]:
    found = specs.operation(method, path, version)
    assert found is not None
    name, _, op, fixed = found
    if str(response.status_code) not in op["responses"]:
        return [f"status {response.status_code} is not declared"]
    schema = specs.response(name, op, response.status_code, fixed)
    if schema is None:  # declared without content (the OAuth start pages)
        return []
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    return [f"{list(e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(response.json())]


def _expected_scopes(specs: OfficialSpecs, method: str, path: str,
                     version: str = V2) -> list[str]:
    found = specs.operation(method, path, version)
    assert found is not None
    listed = specs.scopes(found[2])
    return listed or sorted(EXCEPTIONS[(method, path)]["scopes"])


def _token_types(op: dict[str, Any]) -> tuple[str, ...]:
    schemes = {name for req in op.get("security") or [] for name in req}
    if schemes == {"Agency-Access"}:
        return (COMPANY,)
    if schemes == {"Agency-Access", "Location-Access"}:
        return BOTH
    return (LOCATION,)  # Location-Access, "bearer" (a Sub-Account token) or none given


def _prepare(api: Ghl, op_id: str, version: str | None = None) -> tuple[Ghl, PreparedCall]:
    """The request splice builds for ``op_id``; with ``version``, sent with that Version
    instead of the operation's own."""
    target = open_agency_connection(api.sandbox) if op_id in AGENCY_ONLY else api
    payload = {"file": {"content": CSV_TEXT, "filename": "posts.csv"}} \
        if op_id == "upload_csv" else PAYLOADS[op_id](target)
    call = target.prepare(target.op(op_id), payload)
    if version is not None:
        call.headers["Version"] = version
    return target, call


def _endpoint(method: str, path: str) -> Any:
    """The sandbox endpoint serving a route (one per route, whatever the Version)."""
    (endpoint,) = [e for e in ENDPOINTS if (e.method, e.path) == (method, path)]
    return endpoint


def _send(api: Ghl, op_id: str, call: PreparedCall) -> httpx.Response:
    request = call.to_request()
    request.headers["Authorization"] = f"Bearer {api.record().secret['access_token']}"
    return api.sandbox.http.send(request)


def _multipart_upload(api: Ghl, version: str) -> httpx.Response:
    return api.sandbox.http.post(f"/social-media-posting/{LOCATION_ID}/csv",
                                 headers=api_headers(api, version),
                                 files={"file": ("posts.csv", CSV_TEXT.encode(), "text/csv")})


# -- every operation of the spec files ---------------------------------------------------------

def test_every_spec_operation_is_in_the_manifest(specs: OfficialSpecs) -> None:
    missing = [r for r in SPEC_ROUTES
               if (*r.split(" ", 1), V2) not in ROUTES and tuple(r.split(" ", 1))
               not in NOT_IN_MANIFEST]
    assert not missing, f"spec operations without a manifest operation: {missing}"
    assert len(SPEC_ROUTES) == 47 and {r for r in ROUTES if r[2] == V2} == {
        (*r.split(" ", 1), V2) for r in SPEC_ROUTES}
    # the others: each the operation of its Version's spec file, on a route the sandbox serves
    assert PINNED_ROUTES == ["POST /social-media-posting/statistics @v3"]
    assert len(ROUTES) == len(MANIFEST_DATA["operations"]) == 48  # no two on one key
    for method, path, version in map(_route, PINNED_ROUTES):
        found = specs.operation(method, path, version)
        assert found is not None and found[0] == "v3/social-planner-v3.json", (method, path)
        assert f"{method} {path}" in SPEC_ROUTES  # the same route, another version


@pytest.mark.parametrize("route", SPEC_ROUTES and SPEC_ROUTES + PINNED_ROUTES or NO_SPECS)
def test_operation_honours_its_spec(ghl: Ghl, specs: OfficialSpecs, route: str) -> None:
    """The operation's request, built by splice with the operation's own Version, is one its
    spec accepts; the sandbox answers it with that version's status and response schema."""
    method, path, version = _route(route)
    op_id = ROUTES[(method, path, version)]
    spec_op = specs.operation(method, path, version)
    assert spec_op is not None
    # scopes and token types: spec (or the documented exception), manifest and sandbox agree
    scopes = _expected_scopes(specs, method, path, version)
    assert sorted(MANIFEST_DATA["operations"][op_id]["scopes"]) == scopes
    endpoint = _endpoint(method, path)
    assert endpoint.op_id == ROUTES[(method, path, V2)]  # the sandbox's rules: per route
    assert [endpoint.scope] == scopes
    assert set(endpoint.token_types) == set(_token_types(spec_op[2]))
    api, call = _prepare(ghl, op_id)
    assert call.headers["Version"] == version, op_id  # the manifest's, not a test's
    assert not request_problems(specs, version, method, path, call), op_id
    response = _send(api, op_id, call)
    assert response.is_success, (response.status_code, response.text)
    assert response.status_code == endpoint.success(version)
    assert not response_problems(specs, version, method, path, response)


V3_ROUTES = [r for r in SPEC_ROUTES if r not in (
    "GET /users/", "GET /social-media-posting/oauth/twitter/start",
    "GET /social-media-posting/oauth/{locationId}/twitter/accounts/{accountId}",
    "POST /social-media-posting/oauth/{locationId}/twitter/accounts/{accountId}",
    "GET /social-media-posting/oauth/{locationId}/google/locations/{accountId}",
    "POST /social-media-posting/oauth/{locationId}/google/locations/{accountId}")]


def test_the_sandbox_accepts_v3_exactly_where_the_v3_spec_defines_the_operation(
        ghl: Ghl, specs: OfficialSpecs) -> None:
    for route in SPEC_ROUTES:
        method, path = route.split(" ", 1)
        assert (specs.operation(method, path, V3) is not None) == (route in V3_ROUTES), route
        concrete = re.sub(r"{[^}]+}", "x1", path)
        for version, served in ((V3, route in V3_ROUTES), ("2021-04-15", False)):
            response = ghl.sandbox.http.request(method, concrete,
                                                headers=api_headers(ghl, version))
            refused = response.status_code == 400 and "Version header" in response.text
            assert refused != served, (route, version, response.status_code, response.text)


@pytest.mark.parametrize("route", V3_ROUTES or NO_SPECS)
def test_v3_requests_are_held_to_the_v3_spec(ghl: Ghl, specs: OfficialSpecs,
                                             route: str) -> None:
    """The same call with ``Version: v3``: answered per the v3 spec if v3 allows it, else 422."""
    method, path = route.split(" ", 1)
    op_id = ROUTES[(method, path, V2)]
    if op_id == "upload_csv":
        response = _multipart_upload(ghl, V3)
        problems: list[str] = []
    else:
        api, call = _prepare(ghl, op_id, V3)
        problems = request_problems(specs, V3, method, path, call)
        response = _send(api, op_id, call)
    if problems:
        assert response.status_code == 422, (problems, response.status_code, response.text)
        return
    assert response.is_success, (response.status_code, response.text)
    endpoint = next(e for e in ENDPOINTS if e.op_id == op_id)
    assert response.status_code == endpoint.success(V3)
    assert not response_problems(specs, V3, method, path, response)


# -- the rules the sandbox enforces ------------------------------------------------------------

def test_sandbox_request_rules_are_a_fresh_build_of_the_specs(specs: OfficialSpecs) -> None:
    fresh = render_table(request_table(specs, MANIFEST_DATA))
    assert REQUESTS_FILE.read_text("utf-8") == fresh, "run `python -m tests.ghl_spec`"


def test_the_listed_spec_defects_are_really_in_the_files(specs: OfficialSpecs) -> None:
    assert enum_objects(specs.raw["social-media-posting.json"]) == ENUM_AS_OBJECT_V2
    assert enum_objects(specs.raw["users.json"]) == set()
    for (name, pointer), replacement in REPLACED.items():
        node: Any = specs.raw[name]
        for part in pointer.lstrip("#/").split("/"):
            node = node[part]
        assert node != replacement and "allOf" in node, pointer  # one object, not a list


def test_manifest_inputs_are_the_corrected_spec_schemas(specs: OfficialSpecs) -> None:
    """Body and query schemas of every manifest operation equal the (corrected) spec's."""
    for op_id, op in MANIFEST_DATA["operations"].items():
        found = specs.operation(op["method"], op["path"], version_of(op))
        assert found is not None
        name, _, spec_op, fixed = found
        path_params = set(re.findall(r"{([^}]+)}", op["path"]))
        props = op["input"]["properties"]
        for param, rule in specs.query(name, spec_op).items():
            assert specs.plain(props[param]) == rule["schema"], (op_id, param)
        body = specs.body(name, spec_op, fixed)
        if body is None or op_id == "upload_csv":
            continue
        mine = {k: specs.plain(v) for k, v in props.items()
                if k not in path_params and k not in op.get("query", [])}
        assert mine == body["schema"].get("properties", {}), op_id
        required = [r for r in op["input"].get("required", [])
                    if r not in path_params and r not in op.get("query", [])]
        assert sorted(required) == sorted(body["schema"].get("required", [])), op_id


# -- the sandbox refuses what the spec forbids -------------------------------------------------

_WRONG = {"string": 7, "number": "seven", "integer": "seven", "boolean": "yes",
          "array": "not-a-list", "object": ["not", "an", "object"]}
BODY_ROUTES = [r for r in SPEC_ROUTES + PINNED_ROUTES
               if r.split(" ")[0] in ("POST", "PUT", "PATCH")
               and r != "POST /social-media-posting/{locationId}/csv"]


@pytest.mark.parametrize("route", BODY_ROUTES if SPEC_ROUTES else NO_SPECS)
def test_bodies_the_spec_forbids_are_422(ghl: Ghl, specs: OfficialSpecs, route: str) -> None:
    method, path, version = _route(route)
    op_id = ROUTES[(method, path, version)]
    api, call = _prepare(ghl, op_id)
    assert call.headers["Version"] == version
    found = specs.operation(method, path, version)
    assert found is not None
    body = specs.body(found[0], found[2], found[3])
    assert body is not None
    schema = body["schema"]
    for field, rule in schema.get("properties", {}).items():
        kind = rule.get("type")
        if not isinstance(kind, str) or kind not in _WRONG:
            continue
        bad = PreparedCall(call.method, call.url, call.params, call.headers,
                           {**dict(call.json_body), field: _WRONG[kind]})
        response = _send(api, op_id, bad)
        assert response.status_code == 422, (field, response.status_code, response.text)
        assert any(field in m for m in response.json()["message"]), response.text
    for field in schema.get("required", []):
        rest = {k: v for k, v in dict(call.json_body).items() if k != field}
        response = _send(api, op_id, PreparedCall(call.method, call.url, call.params,
                                                  call.headers, rest))
        assert response.status_code == 422
        assert f"{field} should not be empty" in response.json()["message"]


def test_statistics_body_is_optional_but_platforms_must_be_a_list(ghl: Ghl) -> None:
    url = f"/social-media-posting/statistics?locationId={LOCATION_ID}"
    omitted = ghl.sandbox.http.post(url, headers=api_headers(ghl))
    assert omitted.status_code == 201 and omitted.json()["results"]["totals"]["followers"] > 0
    null = ghl.sandbox.http.post(url, headers=api_headers(ghl),
                                 json={"profileIds": ["x"], "platforms": None})
    assert null.status_code == 422 and null.json()["message"] == ["platforms must be an array"]
    v3 = ghl.sandbox.http.post(url, headers=api_headers(ghl, V3))  # v3: the body is required
    assert v3.status_code == 422


# -- property-based: requests drawn from the spec's schemas ------------------------------------

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
MOMENTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))


def from_schema(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values a JSON schema allows (bounded: short texts and lists, shallow objects)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*[from_schema({**schema, "type": k}, depth) for k in kind])
    if kind == "string":
        return TEXT
    if kind in ("number", "integer"):
        return st.integers(-10**6, 10**6)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1),
                        min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" and schema.get("properties") and depth < 3:
        props = schema["properties"]
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, depth + 1) for k, v in props.items() if k in required},
            optional={k: from_schema(v, depth + 1) for k, v in props.items()
                      if k not in required})
    if kind == "object":
        return st.dictionaries(TEXT, TEXT, max_size=2)
    return st.one_of(st.none(), st.booleans(), TEXT)


# Per operation: fields that name things in the sandbox's world (or must parse as dates) are
# drawn from it; every other field comes from the spec's schema.
PROPERTY_OPS = ("search_users", "list_tags", "get_statistics", "list_posts", "create_post",
                "update_post")


def _overrides(world: dict[str, Any]) -> dict[str, dict[str, st.SearchStrategy[Any]]]:
    accounts = [a["id"] for a in world["accounts"] if a["_locationId"] == LOCATION_ID]
    categories = [c["_id"] for c in world["categories"]]
    ids = st.lists(st.sampled_from(accounts), max_size=3)
    return {
        "search_users": {"companyId": st.just(COMPANY_ID),
                         "locationId": st.sampled_from([LOCATION_ID])},
        "get_statistics": {"locationId": st.just(LOCATION_ID)},
        "list_posts": {"fromDate": MOMENTS, "toDate": MOMENTS},
        "create_post": {"accountIds": ids, "scheduleDate": MOMENTS,
                        "categoryId": st.sampled_from(categories)},
        "update_post": {"accountIds": ids, "scheduleDate": MOMENTS,
                        "categoryId": st.sampled_from(categories)},
    }


@pytest.fixture(scope="module")
def property_api(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ghl]:
    sandbox.control("reset")
    with pytest.MonkeyPatch.context() as env:  # module-scoped: before the per-test home
        env.setenv("SPLICE_HOME", str(tmp_path_factory.mktemp("property-home")))
        env.delenv("SPLICE_DATABASE_URL", raising=False)
        api = open_connection(sandbox, "property-based")
        yield api
        api.close()
        api.store.close()


@pytest.mark.parametrize("op_id", PROPERTY_OPS)
def test_spec_valid_requests_get_2xx_and_nothing_gets_5xx(
        property_api: Ghl, specs: OfficialSpecs, op_id: str) -> None:
    api = property_api
    op = MANIFEST_DATA["operations"][op_id]
    found = specs.operation(op["method"], op["path"], V2)
    assert found is not None
    name, _, spec_op, fixed = found
    world = api.sandbox.world()
    override = _overrides(world).get(op_id, {})
    query = specs.query(name, spec_op)
    query_strategy = st.fixed_dictionaries(
        {k: override.get(k, from_schema(r["schema"])) for k, r in query.items() if r["required"]},
        optional={k: override.get(k, from_schema(r["schema"])) for k, r in query.items()
                  if not r["required"]})
    body = specs.body(name, spec_op, fixed)
    body_strategy: st.SearchStrategy[Any] = st.none()
    if body is not None:
        schema = body["schema"]
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        body_strategy = st.fixed_dictionaries(
            {k: override.get(k, from_schema(v)) for k, v in props.items() if k in required},
            optional={k: override.get(k, from_schema(v)) for k, v in props.items()
                      if k not in required})
    post_id = next(p["_id"] for p in world["posts"] if p["status"] == "scheduled")
    path = op["path"].replace("{locationId}", LOCATION_ID).replace("{id}", post_id)
    headers = api_headers(api)
    sent: list[int] = []

    @settings(max_examples=17, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(query=query_strategy, payload=body_strategy)
    def check(query: dict[str, Any], payload: Any) -> None:
        params = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in query.items()}
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if payload is not None:
            kwargs["json"] = payload
        response = api.sandbox.http.request(op["method"], path, **kwargs)
        sent.append(response.status_code)
        assert response.status_code < 500, response.text
        assert response.is_success, (params, payload, response.status_code, response.text)
        assert not response_problems(specs, V2, op["method"], op["path"], response)

    check()
    assert len(sent) >= 10, sent  # the examples really reached the sandbox

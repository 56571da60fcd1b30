"""The committed HighLevel manifest: valid, complete, and faithful to the official specs."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator

from splice.openapi.importer import connector_schema, load_spec

from .conftest import invoke

SP = "/social-media-posting"
CORE_IDS = {
    "list_tags", "get_tag_details", "get_statistics", "search_users", "get_user", "create_user",
    "update_user", "delete_user", "list_users", "filter_users_by_email", "list_social_accounts",
}  # fmt: skip
SAMPLED = {"list_tags", "get_tag_details", "get_statistics", "search_users", "get_user"}

_OAUTH_READ = ["socialplanner/oauth.readonly"]
_OAUTH_WRITE = ["socialplanner/oauth.write"]
_CSV_READ = ["socialplanner/csv.readonly"]
_CSV_WRITE = ["socialplanner/csv.write"]

# Every deliberate difference between the manifest and the official spec. The test below
# computes the real differences and requires this table to match them exactly.
EXCEPTIONS: dict[tuple[str, str], dict] = {
    # The spec forgets to declare these path parameters.
    ("PUT", "/users/{userId}"): {"path_params_added": ["userId"]},
    ("DELETE", "/users/{userId}"): {"path_params_added": ["userId"]},
    ("POST", f"{SP}/{{locationId}}/posts/bulk-delete"): {
        "path_params_added": ["locationId"], "scopes": _CSV_WRITE},
    # splice sends the token itself.
    ("GET", f"{SP}/{{locationId}}/categories/{{id}}"): {
        "headers_dropped": ["Authorization"], "scopes": ["socialplanner/category.readonly"]},
    # Scopes the spec leaves empty, from Scopes.md (NOTES section 5) and the v3 spec.
    ("GET", f"{SP}/{{locationId}}/tags"): {"scopes": ["socialplanner/tag.readonly"]},
    ("POST", f"{SP}/{{locationId}}/tags/details"): {"scopes": ["socialplanner/tag.readonly"]},
    ("POST", f"{SP}/statistics"): {"scopes": ["socialplanner/statistics.readonly"]},
    ("GET", f"{SP}/{{locationId}}/posts/{{id}}"): {"scopes": ["socialplanner/post.readonly"]},
    ("PUT", f"{SP}/{{locationId}}/posts/{{id}}"): {"scopes": ["socialplanner/post.write"]},
    ("DELETE", f"{SP}/{{locationId}}/posts/{{id}}"): {"scopes": ["socialplanner/post.write"]},
    ("DELETE", f"{SP}/{{locationId}}/accounts/{{id}}"): {
        "scopes": ["socialplanner/account.write"]},
    ("GET", f"{SP}/{{locationId}}/csv"): {"scopes": _CSV_READ},
    ("GET", f"{SP}/{{locationId}}/csv/{{id}}"): {"scopes": _CSV_READ},
    ("PATCH", f"{SP}/{{locationId}}/csv/{{id}}"): {"scopes": _CSV_WRITE},
    ("DELETE", f"{SP}/{{locationId}}/csv/{{id}}"): {"scopes": _CSV_WRITE},
    ("DELETE", f"{SP}/{{locationId}}/csv/{{csvId}}/post/{{postId}}"): {"scopes": _CSV_WRITE},
    ("GET", f"{SP}/oauth/facebook/start"): {"scopes": _OAUTH_READ},
    ("GET", f"{SP}/oauth/linkedin/start"): {"scopes": _OAUTH_READ},
    **{
        ("GET", f"{SP}/oauth/{{locationId}}/{platform}/{noun}/{{accountId}}"): {
            "scopes": _OAUTH_READ}
        for platform, noun in (("google", "locations"), ("facebook", "accounts"),
                               ("instagram", "accounts"), ("linkedin", "accounts"),
                               ("twitter", "accounts"), ("tiktok", "accounts"),
                               ("tiktok-business", "accounts"))
    },
    **{
        ("POST", f"{SP}/oauth/{{locationId}}/{platform}/{noun}/{{accountId}}"): {
            "scopes": _OAUTH_WRITE}
        for platform, noun in (("google", "locations"), ("facebook", "accounts"),
                               ("instagram", "accounts"), ("linkedin", "accounts"),
                               ("twitter", "accounts"), ("tiktok", "accounts"))
    },
}  # fmt: skip


def _find_specs() -> Path | None:
    here = Path(__file__)
    for candidate in (
        os.environ.get("SPLICE_GHL_SPECS"),
        here.resolve().parents[2] / "shared/reference/ghl/openapi",
        here.parents[1] / "../shared/reference/ghl/openapi",
    ):
        if candidate and (Path(candidate) / "apps/users.json").is_file():
            return Path(candidate)
    return None


SPECS = _find_specs()
needs_specs = pytest.mark.skipif(
    SPECS is None,
    reason="HighLevel OpenAPI specs not found: set SPLICE_GHL_SPECS or put shared/ beside the repo",
)


@pytest.fixture(scope="module")
def manifest() -> dict:
    text = resources.files("splice_connectors.ghl_users").joinpath("manifest.yaml").read_text()
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def spec_ops() -> dict[tuple[str, str], tuple[dict, dict, object]]:
    """(METHOD, path) -> (operation, path item, $ref resolver) from both official files."""
    ops = {}
    for name in ("users.json", "social-media-posting.json"):
        spec, resolve = load_spec(SPECS / "apps" / name)
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    ops[(method.upper(), path)] = (op, item, resolve)
    return ops


def _record_schema(output: dict, records: str) -> dict:
    schema = output
    for part in [] if records == "." else records.split("."):
        schema = schema["properties"][part]
    return schema.get("items", schema) if schema.get("type") == "array" else schema


def _dig(value, dotted: str):
    for part in [] if dotted == "." else dotted.split("."):
        value = value[part]
    return value


# --------------------------------------------------------------------------- shape


def test_manifest_validates_against_the_meta_schema(manifest):
    Draft202012Validator(connector_schema()).validate(manifest)
    for op_id, op in manifest["operations"].items():
        Draft202012Validator.check_schema(op["input"])
        Draft202012Validator.check_schema(op["output"])
        assert re.fullmatch(r"[a-z][a-z0-9_]*", op_id)
        assert op["title"] and op["description"], op_id


def test_connection_level_settings(manifest):
    assert manifest["id"] == "ghl_users"
    assert manifest["base_url"] == "https://services.leadconnectorhq.com"
    assert manifest["headers"] == {"Version": "2021-07-28"}
    auth = manifest["auth"]
    assert auth["type"] == "oauth2" and auth["pkce"] is False
    assert auth["authorize_url"] == "https://marketplace.gohighlevel.com/v2/oauth/chooselocation"
    assert auth["token_url"] == "https://services.leadconnectorhq.com/oauth/token"
    assert auth["token_params"] == {"user_type": "Location"}
    assert auth["rotating_refresh_tokens"] is True
    used = {s for op in manifest["operations"].values() for s in op["scopes"]}
    assert set(auth["scopes"]) == used
    assert manifest["rate_limits"] == [
        {"limit": 100, "per": "10s", "key": "locationId"},
        {"limit": 200000, "per": "1d", "key": "locationId"},
    ]
    test_op = manifest["operations"][manifest["test_operation"]]
    assert test_op["method"] == "GET" and "pagination" not in test_op


def test_operations_are_complete_with_readable_ids(manifest):
    ops = manifest["operations"]
    # the 47 of the date-versioned specs, and v3 statistics for a date range
    assert len([op for op in ops.values() if op.get("headers", {}).get("Version") != "v3"]) == 47
    assert len(ops) == 48
    assert CORE_IDS <= set(ops)
    assert ops["list_users"]["deprecated"] is True
    assert ops["list_users"]["path"] == "/users/"
    assert ops["list_social_accounts"]["path"] == f"{SP}/{{locationId}}/accounts"


def test_connection_defaults_fill_location_and_company(manifest):
    for op_id, op in manifest["operations"].items():
        props = op["input"]["properties"]
        defaults = op.get("defaults", {})
        assert ("locationId" in props) == ("locationId" in defaults), op_id
        assert ("companyId" in props) == ("companyId" in defaults), op_id
        if "locationId" in defaults:
            assert defaults["locationId"] == "{{ connection.locationId }}"
        if "companyId" in defaults:
            assert defaults["companyId"] == "{{ connection.companyId }}"


def test_pagination_and_records(manifest):
    ops = manifest["operations"]
    assert ops["list_tags"]["records"] == "results.tags"
    assert ops["list_tags"]["pagination"] == {
        "type": "offset", "offset_param": "skip", "limit_param": "limit", "page_size": 100,
        "total_path": "results.count"}  # fmt: skip
    assert ops["search_users"]["records"] == "users"
    assert ops["search_users"]["pagination"]["total_path"] == "count"
    assert ops["list_users"]["records"] == "users"
    for op_id, op in ops.items():
        if "records" in op:
            _record_schema(op["output"], op["records"])  # the path exists in the output
        if "pagination" in op:
            assert op["method"] == "GET", op_id
            assert {"skip", "limit"} <= set(op["query"]), op_id


def test_samples_validate_against_outputs(manifest):
    ops = manifest["operations"]
    assert SAMPLED <= {op_id for op_id, op in ops.items() if "sample" in op}
    assert {op_id for op_id, op in ops.items() if "sample" not in op} == set()
    for op_id, op in ops.items():
        if "sample" in op:
            jsonschema.validate(op["sample"], op["output"])
            if "records" in op:
                assert _dig(op["sample"], op["records"]), op_id


def test_triggers_poll_real_operations(manifest):
    triggers = {k: t for k, t in manifest["triggers"].items() if t["type"] == "polling"}
    assert set(triggers) == {"tag_created", "tag_updated", "user_created", "statistics_refreshed",
                             "post_published", "post_failed", "post_scheduled", "post_updated",
                             "csv_import_created", "category_created", "category_updated",
                             "account_connected", "account_expired"}
    env = SandboxedEnvironment()
    keys = {}
    for trigger_id, trigger in triggers.items():
        op = manifest["operations"][trigger["operation"]]
        assert trigger["type"] == "polling" and "records" in op, trigger_id
        assert trigger["title"] and trigger["description"], trigger_id
        sample = trigger.get("sample")
        if sample is None:  # the first record of the operation's sample stands for it
            sample = _dig(op["sample"], op["records"])
            sample = sample[0] if isinstance(sample, list) else sample
        jsonschema.validate(sample, _record_schema(op["output"], op["records"]))
        render = {k: env.from_string(trigger[k]).render(record=sample)
                  for k in ("key", "version") if k in trigger}  # fmt: skip
        assert all(render.values()), trigger_id
        keys[trigger_id] = render
    assert keys["tag_updated"]["version"] == triggers["tag_updated"]["sample"]["updatedAt"]
    assert keys["statistics_refreshed"]["key"] == "Thu,Fri,Sat,Sun,Mon,Tue,Wed"
    assert '"posts": 9' in keys["statistics_refreshed"]["version"]
    assert manifest["operations"]["get_statistics"]["records"] == "results"


# --------------------------------------------------------------------------- against the spec


def _spec_view(op: dict, item: dict, resolve) -> dict:
    params = [resolve(p["$ref"]) if "$ref" in p else p
              for p in [*item.get("parameters", []), *op.get("parameters", [])]]  # fmt: skip
    scopes = sorted({s for req in op.get("security") or [] for v in req.values() for s in v})
    body = (op.get("requestBody") or {}).get("content", {})
    media = next(iter(body), None)
    schema = body[media].get("schema", {}) if media else {}
    while "$ref" in schema:
        schema = resolve(schema["$ref"])
    return {
        "path": sorted(p["name"] for p in params if p["in"] == "path"),
        "query": sorted(p["name"] for p in params if p["in"] == "query"),
        "headers": sorted(
            p["name"] for p in params if p["in"] == "header" and p["name"] != "Version"
        ),  # fmt: skip
        "scopes": scopes,
        "media": media,
        "body": sorted(schema.get("properties", {})),
    }


def _deviations(spec: dict, op: dict) -> dict:
    found: dict = {}
    in_path = sorted(re.findall(r"{([^}]+)}", op["path"]))
    added = sorted(set(in_path) - set(spec["path"]))
    if added:
        found["path_params_added"] = added
    if spec["headers"]:
        found["headers_dropped"] = [h for h in spec["headers"] if h not in op.get("headers", {})]
    if sorted(op["scopes"]) != spec["scopes"]:
        found["scopes"] = op["scopes"]
    encoding = op.get("body_encoding", "json")
    expected = {None: "json", "application/json": "json",
                "application/x-www-form-urlencoded": "form",
                "multipart/form-data": "multipart"}.get(spec["media"])  # fmt: skip
    if spec["media"] and encoding != expected:
        found["body_encoding"] = f"{encoding} (spec: {spec['media']})"
    return found


@needs_specs
def test_operations_match_the_official_spec(manifest, spec_ops):
    ops = {op_id: op for op_id, op in manifest["operations"].items()
           if op.get("headers", {}).get("Version") != "v3"}  # v3 ones: the test below
    routes = {(op["method"], op["path"]): op_id for op_id, op in ops.items()}
    assert len(routes) == len(ops) and set(routes) == set(spec_ops)
    deviations = {}
    for route, op_id in routes.items():
        op = ops[op_id]
        spec = _spec_view(*spec_ops[route])
        # Path, query and body names are the spec's, and required inputs cover the path.
        required = set(op["input"].get("required", []))
        props = set(op["input"]["properties"])
        assert set(re.findall(r"{([^}]+)}", op["path"])) <= required, op_id
        assert sorted(op.get("query", [])) == spec["query"], op_id
        body_props = props - set(op.get("query", [])) - set(re.findall(r"{([^}]+)}", op["path"]))
        if spec["body"] and "body" not in op:
            assert sorted(body_props) == spec["body"], op_id
        assert op.get("deprecated", False) == spec_ops[route][0].get("deprecated", False)
        found = _deviations(spec, op)
        if found:
            deviations[route] = found
    unlisted = {r: d for r, d in deviations.items() if EXCEPTIONS.get(r) != d}
    assert not unlisted, f"deviations missing from EXCEPTIONS (or different): {unlisted}"
    stale = set(EXCEPTIONS) - set(deviations)
    assert not stale, f"EXCEPTIONS entries with no matching deviation: {stale}"


@needs_specs
def test_v3_operations_match_the_v3_spec(manifest):
    spec, resolve = load_spec(SPECS / "apps/v3/social-planner-v3.json")
    v3 = {op_id: op for op_id, op in manifest["operations"].items()
          if op.get("headers", {}).get("Version") == "v3"}
    assert set(v3) == {"get_statistics_for_range"}
    for op_id, op in v3.items():
        spec_op = spec["paths"][op["path"]][op["method"].lower()]
        view = _spec_view(spec_op, spec["paths"][op["path"]], resolve)
        assert sorted(op.get("query", [])) == view["query"], op_id
        body = set(op["input"]["properties"]) - set(op.get("query", []))
        assert sorted(body) == view["body"], op_id
        assert sorted(op["scopes"]) == view["scopes"], op_id
        version = next(p for p in spec_op["parameters"] if p["name"] == "Version")
        assert version["schema"]["enum"] == ["v3"]


@needs_specs
def test_required_spec_parameters_stay_required(manifest, spec_ops):
    for op in manifest["operations"].values():
        if op.get("headers", {}).get("Version") == "v3":
            continue
        spec_op, item, resolve = spec_ops[(op["method"], op["path"])]
        for param in [*item.get("parameters", []), *spec_op.get("parameters", [])]:
            param = resolve(param["$ref"]) if "$ref" in param else param
            if param.get("required") and param["in"] in ("path", "query"):
                assert param["name"] in op["input"]["required"], (op["path"], param["name"])


def test_catalog_of_both_connectors_has_at_least_126_actions_and_triggers():
    listed = invoke("connectors", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert (rows["ghl_users"]["operations"], rows["ghl_users"]["triggers"]) == (48, 16)
    total = sum(rows[c]["operations"] + rows[c]["triggers"] for c in ("ghl_users", "invoice2go"))
    assert total >= 126, total
    actions = sum(r["operations"] for r in rows.values())
    triggers = sum(r["triggers"] for r in rows.values())
    assert (f"{len(rows)} connectors: {actions} actions and {triggers} triggers "
            f"({actions + triggers} in all)") in invoke("connectors", "list").stdout

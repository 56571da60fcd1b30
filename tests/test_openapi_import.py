"""The OpenAPI importer: every official HighLevel spec imports cleanly, and the mapping rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema import Draft202012Validator

from splice.errors import InputError
from splice.openapi.importer import (
    ImportResult,
    derive_operation_id,
    dump_manifest,
    import_openapi,
    load_spec,
    run_import,
)

METHODS = ("get", "post", "put", "patch", "delete")


def _find_specs() -> Path | None:
    here = Path(__file__)
    candidates = [
        os.environ.get("SPLICE_GHL_SPECS"),
        here.resolve().parents[2] / "shared/reference/ghl/openapi",
        here.parents[1] / "../shared/reference/ghl/openapi",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "apps").is_dir():
            return Path(candidate)
    return None


SPECS = _find_specs()
APP_SPECS = sorted((SPECS / "apps").glob("*.json")) if SPECS else []
needs_specs = pytest.mark.skipif(
    SPECS is None,
    reason="HighLevel OpenAPI specs not found: set SPLICE_GHL_SPECS or put shared/ beside the repo",
)


@pytest.fixture(scope="module")
def meta_validator() -> Draft202012Validator:
    from splice.openapi.importer import connector_schema

    return Draft202012Validator(connector_schema())


@pytest.fixture(scope="module")
def imported() -> dict[str, ImportResult]:
    return {path.name: import_openapi(path) for path in APP_SPECS}


def _spec_operation_count(path: Path) -> int:
    spec = json.loads(path.read_text())
    return sum(1 for item in spec["paths"].values() for method in item if method in METHODS)


# --------------------------------------------------------------------------- official specs


@needs_specs
@pytest.mark.parametrize("name", [p.name for p in APP_SPECS] or ["none"])
def test_official_spec_imports_completely(name, imported, meta_validator):
    result = imported[name]
    meta_validator.validate(result.manifest)
    assert result.operation_count == _spec_operation_count(SPECS / "apps" / name)
    assert result.operation_count == len(result.manifest["operations"])
    assert result.skipped == []
    for op_id, op in result.manifest["operations"].items():
        assert set(op.get("query", [])) <= set(op["input"]["properties"]), op_id
        for placeholder in op["path"].split("{")[1:]:
            assert placeholder.split("}")[0] in op["input"].get("required", []), op_id


@needs_specs
def test_date_versioned_specs_hold_576_operations(imported):
    assert len(imported) == 41
    assert sum(r.operation_count for r in imported.values()) == 576


@needs_specs
def test_every_generated_schema_is_valid_json_schema(imported):
    unique: dict[str, object] = {}
    for result in imported.values():
        for op in result.manifest["operations"].values():
            for key in ("input", "output"):
                unique.setdefault(json.dumps(op[key], sort_keys=True), op[key])
    for schema in unique.values():
        Draft202012Validator.check_schema(schema)


@needs_specs
def test_highlevel_users_spec_maps_as_documented(imported):
    manifest = imported["users.json"].manifest
    ops = manifest["operations"]
    assert manifest["base_url"] == "https://services.leadconnectorhq.com"
    assert manifest["headers"] == {"Version": "2021-07-28"}
    assert manifest["auth"] == {"type": "bearer"}
    assert set(ops) == {
        "search_users", "filter_users_by_email", "get_user", "update_user", "delete_user",
        "list_users", "create_user",
    }  # fmt: skip
    assert ops["list_users"]["deprecated"] is True
    assert ops["search_users"]["scopes"] == ["users.readonly"]
    assert ops["search_users"]["pagination"]["total_path"] == "count"
    assert "userId" in ops["delete_user"]["input"]["required"]  # spec omits the parameter
    assert "description" not in json.dumps(ops)  # no prose copied by default
    warnings = imported["users.json"].warnings
    assert any("'userId' is not declared" in w for w in warnings)


@needs_specs
def test_v3_spec_common_refs_fall_back_to_sibling_folder():
    spec, resolve = load_spec(SPECS / "apps/v3/users-v3.json")
    node = resolve("../common/common-schemas.json#/components/schemas/BadRequestDTO")
    assert node["type"] == "object"


# --------------------------------------------------------------------------- focused rules


def _write(tmp_path: Path, paths: dict, **extra) -> Path:
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "Pets API", "version": "2.0", "description": "Prose about pets."},
        "servers": [{"url": "https://api.pets.test/"}],
        "paths": paths,
        **extra,
    }
    path = tmp_path / "pets.json"
    path.write_text(json.dumps(spec))
    return path


def _version(value: str = "2024-01-01") -> dict:
    return {"name": "Version", "in": "header", "required": True,
            "schema": {"type": "string", "enum": [value]}}  # fmt: skip


def _ok(schema: dict, code: str = "200") -> dict:
    return {code: {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def test_nullable_becomes_a_type_union(tmp_path):
    pet = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "nullable": True, "example": "Rex"},
            "kind": {"type": "string", "enum": ["cat", "dog"], "nullable": True},
            "owner": {"$ref": "#/components/schemas/Owner", "nullable": True},
            "age": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        },
    }
    components = {"schemas": {"Owner": {"type": "object", "properties": {"id": {}}}}}
    path = _write(tmp_path, {"/pets/{id}": {"get": {"responses": _ok(pet)}}},
                  components=components)  # fmt: skip
    output = import_openapi(path).manifest["operations"]["get_pet"]["output"]
    props = output["properties"]
    assert props["name"] == {"type": ["string", "null"], "examples": ["Rex"]}
    assert props["kind"]["enum"] == ["cat", "dog", None]
    assert props["age"] == {"type": "integer", "exclusiveMinimum": 0}
    Draft202012Validator.check_schema(output)
    jsonschema.validate({"name": None, "kind": None, "owner": None, "age": 1}, output)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"age": 0}, output)


def test_recursive_schemas_are_cut_and_stay_valid(tmp_path):
    node = {"type": "object", "properties": {"children": {
        "type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}  # fmt: skip
    path = _write(
        tmp_path,
        {"/nodes": {"get": {"responses": _ok({"$ref": "#/components/schemas/Node"})}}},
        components={"schemas": {"Node": node}},
    )
    output = import_openapi(path).manifest["operations"]["list_nodes"]["output"]
    Draft202012Validator.check_schema(output)
    assert "recursive reference to Node" in json.dumps(output)


def test_form_body_and_fixed_version_header(tmp_path):
    body = {"type": "object", "required": ["code"],
            "properties": {"code": {"type": "string"}, "state": {"type": "string"}}}  # fmt: skip
    op = {
        "parameters": [_version()],
        "requestBody": {"required": True,
                        "content": {"application/x-www-form-urlencoded": {"schema": body}}},
        "responses": _ok({"type": "object"}, "201"),
    }  # fmt: skip
    manifest = import_openapi(_write(tmp_path, {"/tokens": {"post": op}})).manifest
    created = manifest["operations"]["create_token"]
    assert manifest["headers"] == {"Version": "2024-01-01"}
    assert created["body_encoding"] == "form"
    assert "body" not in created
    assert created["input"]["required"] == ["code"]
    assert set(created["input"]["properties"]) == {"code", "state"}


def test_mixed_versions_go_on_each_operation(tmp_path):
    paths = {
        "/pets": {"get": {"parameters": [_version("A")], "responses": _ok({"type": "array"})}},
        "/pets/{id}": {"get": {"parameters": [_version("B")], "responses": _ok({})}},
    }
    manifest = import_openapi(_write(tmp_path, paths)).manifest
    assert "headers" not in manifest
    assert manifest["operations"]["list_pets"]["headers"] == {"Version": "A"}
    assert manifest["operations"]["get_pet"]["headers"] == {"Version": "B"}
    assert manifest["operations"]["list_pets"]["records"] == "."


def test_array_body_and_clashing_body_are_nested(tmp_path):
    array_body = {"content": {"application/json": {"schema": {
        "type": "array", "items": {"type": "string"}}}}, "required": True}  # fmt: skip
    clash_body = {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"id": {"type": "string"}}}}}}  # fmt: skip
    paths = {
        "/pets/bulk-delete": {"post": {"requestBody": array_body, "responses": _ok({})}},
        "/pets/{id}": {"put": {"requestBody": clash_body, "responses": _ok({})}},
    }
    ops = import_openapi(_write(tmp_path, paths)).manifest["operations"]
    bulk = ops["bulk_delete_pets"]
    assert bulk["body"] == "{{ input.body }}"
    assert bulk["input"]["required"] == ["body"]
    assert bulk["input"]["properties"]["body"]["type"] == "array"
    assert ops["update_pet"]["body"] == "{{ input.body }}"
    assert set(ops["update_pet"]["input"]["properties"]) == {"id", "body"}


def test_header_and_query_parameters(tmp_path):
    op = {
        "parameters": [
            {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
            {"name": "Authorization", "in": "header", "required": True},
            {"name": "limit", "in": "query", "schema": {"type": "integer"}},
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "security": [{"oauth": ["pets.read"]}, {"oauth": ["pets.read", "pets.admin"]}],
        "responses": _ok({}),
    }
    ops = import_openapi(_write(tmp_path, {"/pets/{id}/toys": {"get": op}})).manifest["operations"]
    toys = ops["list_toys"]
    assert toys["headers"] == {"X-Trace": "{{ input['X-Trace'] | default('') }}"}
    assert toys["query"] == ["limit"]
    assert set(toys["input"]["properties"]) == {"X-Trace", "limit", "id"}
    assert toys["scopes"] == ["pets.read", "pets.admin"]


def test_operation_ids_are_readable_verb_phrases():
    cases = {
        ("GET", "/social-media-posting/{locationId}/tags"): "list_tags",
        ("POST", "/social-media-posting/{locationId}/tags/details"): "get_tag_details",
        ("POST", "/social-media-posting/statistics"): "get_statistics",
        ("GET", "/users/search"): "search_users",
        ("POST", "/users/search/filter-by-email"): "filter_users_by_email",
        ("GET", "/users/{userId}"): "get_user",
        ("POST", "/users/"): "create_user",
        ("PUT", "/users/{userId}"): "update_user",
        ("DELETE", "/users/{userId}"): "delete_user",
        ("GET", "/users/"): "list_users",
        ("POST", "/social-media-posting/{locationId}/posts/bulk-delete"): "bulk_delete_posts",
        ("POST", "/invoices/{invoiceId}/send"): "send_invoice",
        ("GET", "/v2/categories"): "list_categories",
    }
    for (method, path), expected in cases.items():
        assert derive_operation_id(method, path, "social-media-posting") == expected, path


def test_colliding_ids_fall_back_to_operation_id(tmp_path):
    paths = {
        "/a/{id}": {"get": {"operationId": "getAlpha", "responses": _ok({})}},
        "/b/a/{id}": {"get": {"operationId": "get-beta-a", "responses": _ok({})}},
    }
    ops = import_openapi(_write(tmp_path, paths)).manifest["operations"]
    assert set(ops) == {"get_alpha", "get_beta_a"}
    assert ops["get_alpha"]["title"] == "Get alpha"


def test_descriptions_are_opt_in(tmp_path):
    op = {
        "summary": "Fetch a pet",
        "description": "Long prose.",
        "responses": _ok(
            {"type": "object", "description": "A pet.", "properties": {"id": {"title": "Id"}}}
        ),
    }
    path = _write(tmp_path, {"/pets/{id}": {"get": op}})
    plain = import_openapi(path).manifest
    assert plain["operations"]["get_pet"]["title"] == "Get pet"
    assert "Prose" not in json.dumps(plain) and "description" not in json.dumps(plain)
    rich = import_openapi(path, descriptions=True).manifest
    assert rich["operations"]["get_pet"]["title"] == "Fetch a pet"
    assert rich["operations"]["get_pet"]["description"] == "Long prose."
    assert rich["operations"]["get_pet"]["output"]["description"] == "A pet."


def test_oauth2_security_scheme_becomes_oauth2_auth(tmp_path):
    flows = {"authorizationCode": {
        "authorizationUrl": "https://pets.test/authorize", "tokenUrl": "https://pets.test/token",
        "scopes": {"pets.read": "Read pets"}}}  # fmt: skip
    op = {"security": [{"oauth": ["pets.read", "pets.write"]}], "responses": _ok({})}
    path = _write(
        tmp_path,
        {"/pets": {"get": op}},
        components={"securitySchemes": {"oauth": {"type": "oauth2", "flows": flows}}},
    )
    auth = import_openapi(path).manifest["auth"]
    assert auth["type"] == "oauth2"
    assert auth["authorize_url"] == "https://pets.test/authorize"
    assert auth["token_url"] == "https://pets.test/token"
    assert set(auth["scopes"]) == {"pets.read", "pets.write"}


def test_filters_report_what_was_skipped(tmp_path):
    paths = {
        "/pets": {"get": {"tags": ["Pets"], "responses": _ok({})}},
        "/toys": {"get": {"tags": ["Toys"], "responses": _ok({})}},
    }
    path = _write(tmp_path, paths)
    result = import_openapi(path, tags=["pets"], connector_id="pets_only")
    assert result.manifest["id"] == "pets_only"
    assert list(result.manifest["operations"]) == ["list_pets"]
    assert result.skipped == ["GET /toys: filtered out"]
    assert list(import_openapi(path, paths=["/toys*"]).manifest["operations"]) == ["list_toys"]
    with pytest.raises(InputError, match="no operations matched"):
        import_openapi(path, tags=["birds"])


def test_unresolvable_ref_names_the_ref(tmp_path):
    op = {"responses": _ok({"$ref": "#/components/schemas/Missing"})}
    with pytest.raises(InputError, match="#/components/schemas/Missing"):
        import_openapi(_write(tmp_path, {"/pets": {"get": op}}))
    op = {"responses": _ok({"$ref": "../common/nowhere.json#/components/schemas/X"})}
    with pytest.raises(InputError, match=r"\.\./common/nowhere\.json"):
        import_openapi(_write(tmp_path, {"/pets": {"get": op}}))


def test_missing_relative_file_falls_back_to_sibling_folder(tmp_path):
    common = tmp_path / "common"
    common.mkdir()
    shared = {"components": {"schemas": {"Err": {"type": "object"}}}}
    (common / "common-schemas.json").write_text(json.dumps(shared))
    op = {"responses": _ok({"$ref": "../common/common-schemas.json#/components/schemas/Err"})}
    result = import_openapi(_write(tmp_path, {"/pets": {"get": op}}))
    assert result.manifest["operations"]["list_pets"]["output"] == {"type": "object"}
    assert any("common-schemas.json" in w for w in result.warnings)


def test_dump_is_plain_yaml_that_round_trips(tmp_path, capsys):
    shared = {"type": "object", "properties": {"id": {"type": "string"}}}
    paths = {
        "/pets": {"get": {"responses": _ok({"type": "array", "items": shared})}},
        "/pets/{id}": {"get": {"responses": _ok(shared)}},
    }
    path = _write(tmp_path, paths)
    manifest = import_openapi(path).manifest
    text = dump_manifest(manifest)
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    assert yaml.safe_load(text) == manifest
    assert text.index("id: pets") < text.index("operations:")

    out = tmp_path / "pets.yaml"
    result = run_import(path, out, (), (), False)
    assert yaml.safe_load(out.read_text()) == result.manifest
    run_import(path, None, (), (), False)
    assert "list_pets:" in capsys.readouterr().out


def test_not_openapi_3_is_refused(tmp_path):
    path = tmp_path / "swagger.json"
    path.write_text(json.dumps({"swagger": "2.0", "paths": {}}))
    with pytest.raises(InputError, match="only OpenAPI 3"):
        load_spec(path)

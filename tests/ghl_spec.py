"""The official HighLevel OpenAPI specs as the tests read them (a helper, not a test module).

Contract:

* :class:`OfficialSpecs` loads ``apps/users.json`` and ``apps/social-media-posting.json``
  (``Version: 2021-07-28``) and their ``apps/v3/*-v3.json`` counterparts (``Version: v3``)
  from ``shared/reference/ghl/openapi`` (or ``$SPLICE_GHL_SPECS``) and answers, per manifest
  operation and version: the spec operation (matched by method + path; a v3 ``{platform}``
  segment matches when its enum holds the platform), its query parameters, its request body
  and its response schema for a status, every ``$ref`` inlined.
* Known defects of the spec files are corrected on load, each listed below with the reason;
  nothing else is changed. The tests assert that each listed defect is really in the files.
* :func:`request_table` builds ``connectors/ghl_users/sandbox_requests.yaml`` (the request
  schemas the sandbox enforces, per route and version); ``python -m tests.ghl_spec``
  rewrites that file, and tests/test_ghl_contract.py checks the committed file equals a
  fresh build.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import FormatChecker

Json = dict[str, Any]
V2, V3 = "2021-07-28", "v3"
V2_FILES = ("users.json", "social-media-posting.json")
V3_FILES = {"users.json": "v3/users-v3.json", "social-media-posting.json":
            "v3/social-planner-v3.json"}
PROSE = {"description", "example", "examples", "title", "default", "deprecated", "readOnly",
         "writeOnly", "externalDocs"}


def find_specs() -> Path | None:
    here = Path(__file__)
    for candidate in (os.environ.get("SPLICE_GHL_SPECS"),
                      here.resolve().parents[2] / "shared/reference/ghl/openapi",
                      here.parents[1] / "../shared/reference/ghl/openapi"):
        if candidate and (Path(candidate) / "apps/users.json").is_file():
            return Path(candidate)
    return None


# -- known defects of the spec files --------------------------------------------------------

# NestJS emits ``{"type": "object"}`` for a TypeScript enum it cannot name. Every such node in
# the date-versioned files carries a plain string example (and most a "must be one of ..."
# description); the v3 files declare the same fields as strings (``CreatePostDTO.type`` and
# ``status``, ``CSVImportSchema.status`` ...). They are read as strings. The list is exact:
# a test fails if the files gain or lose one.
ENUM_AS_OBJECT_V2 = {
    f"#/components/schemas/{name}/properties/{prop}"
    for name, props in {
        "SocialGoogleMediaAccountSchema": ("platform", "type"),
        "SearchPostDTO": ("postType",),
        "FormatedApprovalDetails": ("approvalStatus",),
        "TiktokPostSchema": ("privacyLevel",),
        "GMBPostSchema": ("actionType",),
        "GetPostFormattedSchema": ("status", "type"),
        "PostApprovalSchema": ("approvalStatus",),
        "CreatePostDTO": ("status", "type"),
        "PostCreateRequest": ("status", "type"),
        "AttachFBAccountDTO": ("type",),
        "SocialMediaFacebookAccountSchema": ("platform", "type"),
        "SocialMediaInstagramAccountSchema": ("platform", "type"),
        "SocialMediaLinkedInAccountSchema": ("platform", "type"),
        "SocialMediaTwitterAccountSchema": ("platform", "type"),
        "CSVPostSchema": ("type",),
        "CsvResponse": ("status",),
        "TiktokProfileSchema": ("type",),
        "SocialMediaTiktokAccountSchema": ("platform", "type"),
    }.items()
    for prop in props
}
# CreatePostDTO.status: the description lists "null" among the values (a post without one).
NULLABLE = {"#/components/schemas/CreatePostDTO/properties/status"}
# Other defects, by file and pointer: the replacement node and why.
REPLACED: dict[tuple[str, str], Json] = {
    # ``csvs`` is a list of imports (the v3 file says so; ``count`` counts them), not one.
    ("social-media-posting.json",
     "#/components/schemas/GetUploadStatusResponseSchema/properties/csvs"):
        {"type": "array", "items": {"$ref": "#/components/schemas/CSVImportSchema"}},
}
# v3 attach-oauth-accounts takes ``oneOf`` all platforms' DTOs, most with no required field,
# so almost every body matches several and ``oneOf`` would refuse it: per platform, the DTO of
# that platform (the date-versioned operation's body) is what the endpoint reads.
V3_ATTACH_DTO = {"facebook": "AttachFBAccountDTO", "instagram": "AttachIGAccountDTO",
                 "linkedin": "AttachLinkedinAccountDTO", "tiktok": "AttachTiktokAccountDTO"}
# Their responses have the same ``oneOf`` defect (the DTOs share every field but ``results``,
# none required there): per platform and method, that platform's response DTO.
V3_RESPONSE_DTO = {
    ("get", "facebook"): "GetFacebookAccountsResponseDTO",
    ("get", "instagram"): "GetInstagramAccountsResponseDTO",
    ("get", "linkedin"): "GetLinkedInAccountsResponseDTO",
    ("get", "tiktok"): "GetTiktokAccountResponseDTO",
    ("get", "tiktok-business"): "GetTiktokBusinessAccountResponseDTO",
    ("post", "facebook"): "SocialMediaFBAccountResponseDTO",
    ("post", "instagram"): "SocialMediaInstagramAccountResponseDTO",
    ("post", "linkedin"): "SocialMediaLinkedInAccountResponseDTO",
    ("post", "tiktok"): "SocialMediaTiktokAccountResponseDTO",
}


def enum_objects(doc: Json) -> set[str]:
    """Pointers of ``{"type": "object"}`` nodes without properties whose example is text."""
    found: set[str] = set()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" not in node \
                    and "additionalProperties" not in node \
                    and isinstance(node.get("example"), str):
                found.add(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(doc.get("components", {}), "#/components")
    walk(doc.get("paths", {}), "#/paths")
    return found


def _node(doc: Json, pointer: str) -> Json:
    node: Any = doc
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node  # type: ignore[no-any-return]


def corrected(name: str, doc: Json) -> Json:
    """A copy of spec file ``name`` with the defects above corrected."""
    doc = copy.deepcopy(doc)
    for pointer in enum_objects(doc):
        node = _node(doc, pointer)
        node["type"] = ["string", "null"] if pointer in NULLABLE else "string"
    for (file, pointer), replacement in REPLACED.items():
        if file == name:
            parent, key = pointer.rsplit("/", 1)
            _node(doc, parent)[key] = copy.deepcopy(replacement)
    return doc


# -- loading and inlining -------------------------------------------------------------------

class OfficialSpecs:
    """The four spec files, corrected, with $ref inlining and operation lookup."""

    def __init__(self, root: Path) -> None:
        self.root = root
        common = json.loads((root / "common/common-schemas.json").read_text("utf-8"))
        common_v3 = json.loads((root / "apps/v3/common/common-schemas.json").read_text("utf-8"))
        self.raw: dict[str, Json] = {}
        self.docs: dict[str, Json] = {}
        for name in (*V2_FILES, *V3_FILES.values()):
            raw = json.loads((root / "apps" / name).read_text("utf-8"))
            self.raw[name] = raw
            self.docs[name] = corrected(name, raw)
        self.commons = {V2: common, V3: common_v3}

    # -- $refs --------------------------------------------------------------------------------

    def inline(self, name: str, node: Any, depth: int = 0) -> Any:
        """``node`` of file ``name`` with every ``$ref`` replaced by its target."""
        if depth > 40:
            raise ValueError("reference cycle")
        if isinstance(node, list):
            return [self.inline(name, v, depth + 1) for v in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            if ref.startswith("#/"):
                target = _node(self.docs[name], ref)
            else:  # ../common/common-schemas.json#/components/schemas/X
                common = self.commons[V3 if name.startswith("v3/") else V2]
                target = _node(common, "#" + ref.split("#", 1)[1])
                return {**copy.deepcopy(target), **rest}
            return self.inline(name, {**target, **rest}, depth + 1)
        return {k: self.inline(name, v, depth + 1) for k, v in node.items()}

    @staticmethod
    def plain(schema: Any) -> Any:
        """``schema`` without prose, and single-entry ``allOf`` wrappers merged."""
        if isinstance(schema, list):
            return [OfficialSpecs.plain(v) for v in schema]
        if not isinstance(schema, dict):
            return schema
        out = {k: OfficialSpecs.plain(v) for k, v in schema.items() if k not in PROSE}
        if isinstance(out.get("allOf"), list) and len(out["allOf"]) == 1:
            inner = out.pop("allOf")[0]
            out = {**inner, **out}
        return out

    # -- operations ---------------------------------------------------------------------------

    def operation(self, method: str, path: str,
                  version: str) -> tuple[str, str, Json, dict[str, str]] | None:
        """(file, spec path, operation, fixed path values) for ``method path`` in ``version``."""
        names = V2_FILES if version == V2 else tuple(V3_FILES.values())
        for name in names:
            paths = self.docs[name]["paths"]
            item = paths.get(path, {})
            if method.lower() in item:
                return name, path, item[method.lower()], {}
        if version == V2:
            return None
        for name in names:
            for template, item in self.docs[name]["paths"].items():
                op = item.get(method.lower())
                fixed = _match(template, path, op)
                if op is not None and fixed is not None:
                    return name, template, op, fixed
        return None

    def parameters(self, name: str, op: Json) -> list[Json]:
        return [self.inline(name, p) for p in op.get("parameters", [])]

    def query(self, name: str, op: Json) -> dict[str, Json]:
        return {p["name"]: {"required": bool(p.get("required")),
                            "schema": self.plain(p.get("schema", {}))}
                for p in self.parameters(name, op) if p["in"] == "query"}

    def body(self, name: str, op: Json, fixed: dict[str, str]) -> Json | None:
        """``{media, required, schema}`` of the request body, or None."""
        request = op.get("requestBody")
        if not request:
            return None
        media, content = next(iter(request.get("content", {}).items()))
        schema = content.get("schema", {})
        if "oneOf" in schema and fixed.get("platform") in V3_ATTACH_DTO:
            schema = {"$ref": f"#/components/schemas/{V3_ATTACH_DTO[fixed['platform']]}"}
        return {"media": media, "required": bool(request.get("required")),
                "schema": self.plain(self.inline(name, schema))}

    def response(self, name: str, op: Json, status: int,
                 fixed: dict[str, str] | None = None) -> Json | None:
        """The inlined JSON schema of response ``status`` (None: no JSON content declared)."""
        declared = op.get("responses", {}).get(str(status))
        if not declared or "application/json" not in declared.get("content", {}):
            return None
        schema = declared["content"]["application/json"].get("schema", {})
        method = "post" if "requestBody" in op else "get"
        dto = V3_RESPONSE_DTO.get((method, (fixed or {}).get("platform", "")))
        if "oneOf" in schema and dto:
            schema = {"$ref": f"#/components/schemas/{dto}"}
        return self.inline(name, schema)  # type: ignore[no-any-return]

    def scopes(self, op: Json) -> list[str]:
        return sorted({s for req in op.get("security") or [] for v in req.values() for s in v})

    def versions(self, method: str, path: str) -> list[str]:
        return [v for v in (V2, V3) if self.operation(method, path, v) is not None]


def _match(template: str, path: str, op: Json | None) -> dict[str, str] | None:
    """Values of the template's enum-restricted segments that make it ``path``, if any."""
    if op is None or template.count("/") != path.count("/"):
        return None
    enums = {p["name"]: p.get("schema", {}).get("enum") for p in op.get("parameters", [])
             if p.get("in") == "path"}
    fixed: dict[str, str] = {}
    for seg, actual in zip(template.split("/"), path.split("/"), strict=True):
        name = seg[1:-1] if seg.startswith("{") else None
        if name is None:
            if seg != actual:
                return None
        elif actual.startswith("{"):
            if enums.get(name):  # an enum segment never matches a free one
                return None
        elif not enums.get(name) or actual not in enums[name]:
            return None
        else:
            fixed[name] = actual
    return fixed


def request_table(specs: OfficialSpecs, manifest: Json) -> Json:
    """What the sandbox enforces, per route (named by its manifest operation) and accepted
    version. An operation that sends its own ``Version`` (``get_statistics_for_range``: v3
    on the statistics route) is another operation on a route already listed, whose v3 rules
    it shares; it adds no entry."""
    table: Json = {}
    for op_id, op in sorted(manifest["operations"].items()):
        if "Version" in op.get("headers", {}):
            continue
        versions: Json = {}
        for version in (V2, V3):
            found = specs.operation(op["method"], op["path"], version)
            if found is None:
                continue
            name, _, spec_op, fixed = found
            versions[version] = {"query": specs.query(name, spec_op),
                                 "body": specs.body(name, spec_op, fixed)}
        table[op_id] = {"method": op["method"], "path": op["path"], "versions": versions}
    return table


# -- formats ----------------------------------------------------------------------------------

FORMATS = FormatChecker(formats=())
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    """``date-time`` checked without jsonschema's optional format packages."""
    return not isinstance(value, str) or DATE_TIME.fullmatch(value) is not None


REQUESTS_FILE = Path(__file__).resolve().parents[1] / "connectors/ghl_users/sandbox_requests.yaml"
HEADER = ("# Generated by `python -m tests.ghl_spec` from the official HighLevel OpenAPI specs\n"
          "# (apps/users.json, apps/social-media-posting.json and their apps/v3 twins), with the\n"
          "# defects listed in tests/ghl_spec.py corrected and all prose left out. Do not edit:\n"
          "# tests/test_ghl_contract.py checks this file equals a fresh build.\n")


def render_table(table: Json) -> str:
    import yaml

    return HEADER + yaml.safe_dump({"operations": table}, sort_keys=True, width=100,
                                   default_flow_style=None)


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import yaml

    root = find_specs()
    if root is None:
        raise SystemExit("official specs not found (set SPLICE_GHL_SPECS)")
    manifest_path = REQUESTS_FILE.with_name("manifest.yaml")
    manifest = yaml.load(manifest_path.read_text("utf-8"), Loader=yaml.CSafeLoader)
    REQUESTS_FILE.write_text(render_table(request_table(OfficialSpecs(root), manifest)),
                             encoding="utf-8")
    print(f"wrote {REQUESTS_FILE}")

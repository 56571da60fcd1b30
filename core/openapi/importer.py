"""Import an OpenAPI 3.0 document as a splice connector manifest.

The importer turns every path x method into one operation: parameters and the request body
become the ``input`` JSON Schema, the first 2xx response becomes ``output`` (``$ref``s inlined,
OpenAPI 3.0 keywords rewritten to JSON Schema 2020-12), security requirements become
``scopes``. Ids are readable verb phrases (``list_tags``, ``get_user``). By default no prose is
copied from the spec: titles are generated from the ids. The result is a starting point to
curate, and it always validates against ``connector.schema.json``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import InputError
from .names import derive_operation_id, title_from_id, valid_id
from .schema import RefResolver, SchemaConverter, parse_document

__all__ = [
    "ImportResult",
    "RefResolver",
    "connector_schema",
    "derive_operation_id",
    "dump_manifest",
    "import_openapi",
    "load_spec",
    "run_import",
]

METHODS = ("get", "post", "put", "patch", "delete")
_SUCCESS_CODES = ("200", "201", "202", "204")
_SKIPPED_HEADERS = {"authorization", "content-type", "accept", "content-length"}


# --------------------------------------------------------------------------- loading


def load_spec(path: Path) -> tuple[dict, Callable[..., Any]]:
    """Parse an OpenAPI file (JSON or YAML) and return it with a ``$ref`` resolver."""
    return _load(Path(path))


def _load(path: Path) -> tuple[dict, RefResolver]:
    try:
        spec = parse_document(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable JSON or YAML document ({exc})") from None
    if not isinstance(spec, dict) or "paths" not in spec:
        raise InputError(f"{path}: not an OpenAPI document (no 'paths')")
    if not str(spec.get("openapi", "")).startswith("3."):
        raise InputError(f"{path}: only OpenAPI 3.x is supported (found {spec.get('openapi')!r})")
    return spec, RefResolver(path, spec)



# --------------------------------------------------------------------------- operations


@dataclass
class ImportResult:
    """What :func:`import_openapi` produced."""

    manifest: dict
    operation_count: int
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Op:
    method: str
    path: str
    derived: str
    fallback: str
    body: dict[str, Any]
    version: tuple[str, str] | None = None
    id: str = ""


def _assign_ids(ops: list[_Op]) -> None:
    """Give every operation a unique id; colliding derived ids fall back to operationId."""
    counts: dict[str, int] = {}
    for op in ops:
        op.id = op.derived or op.fallback
        counts[op.id] = counts.get(op.id, 0) + 1
    taken = {op.id for op in ops if op.id and counts[op.id] == 1}
    for op in ops:
        if op.id and counts[op.id] == 1:
            continue
        base = op.derived or op.fallback or "operation"
        candidates = [op.fallback, f"{base}_{op.method.lower()}"]
        candidates += [f"{base}_{n}" for n in range(2, len(ops) + 2)]
        op.id = next(c for c in candidates if c and c not in taken)
        taken.add(op.id)


class _OperationBuilder:
    """Builds one manifest operation from an OpenAPI Operation Object."""

    def __init__(self, spec: dict, converter: SchemaConverter) -> None:
        self.spec = spec
        self.converter = converter
        self.resolver = converter.resolver
        self.descriptions = converter.descriptions
        self.warn = converter.warn

    def deref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            node = self.resolver(node["$ref"])
            seen += 1
        return node

    def build(self, method: str, path: str, item: dict, op: dict) -> tuple[dict, tuple | None]:
        where = f"{method.upper()} {path}"
        properties: dict[str, Any] = {}
        required: list[str] = []
        query: list[str] = []
        headers: dict[str, str] = {}
        version: tuple[str, str] | None = None
        path_names = re.findall(r"{([^}]+)}", path)
        params = self._parameters(item, op)
        for param in params:
            name, where_in = param.get("name"), param.get("in")
            if not isinstance(name, str):
                continue
            schema = self._param_schema(param)
            if where_in == "header":
                fixed = _fixed_version(name, schema)
                if fixed is not None:
                    version = (name, fixed)
                    continue
                if name.lower() in _SKIPPED_HEADERS:
                    continue
                headers[name] = _input_template(name, bool(param.get("required")))
            elif where_in == "path":
                if name not in path_names:
                    self.warn(f"{where}: path parameter {name!r} is not in the path; dropped")
                    continue
            elif where_in == "query":
                if name not in query:
                    query.append(name)
            else:
                self.warn(f"{where}: {where_in} parameter {name!r} is not supported; dropped")
                continue
            properties.setdefault(name, schema)
            if (param.get("required") or where_in == "path") and name not in required:
                required.append(name)
        for name in path_names:
            if name not in properties:
                self.warn(f"{where}: path parameter {name!r} is not declared; added as a string")
                properties[name] = {"type": "string"}
                required.append(name)
        result: dict[str, Any] = {"method": method.upper(), "path": path}
        if self.descriptions:
            for key, source in (("title", "summary"), ("description", "description")):
                if isinstance(op.get(source), str) and op[source].strip():
                    result[key] = op[source].strip()
        if op.get("deprecated") is True:
            result["deprecated"] = True
        if isinstance(op.get("tags"), list) and op["tags"]:
            result["tags"] = [str(t) for t in op["tags"]]
        result["scopes"] = self._scopes(op)
        if headers:
            result["headers"] = headers
        body = self._body(op, where, properties, required, has_headers=bool(headers))
        for key in ("body_encoding", "body"):
            if key in body:
                result[key] = body[key]
        if query or (method in ("get", "delete") and set(properties) - set(path_names)):
            result["query"] = query
        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = body.get("open", False)
        result["input"] = input_schema
        result["output"] = self._output(op, where)
        return result, version

    def _parameters(self, item: dict, op: dict) -> list[dict]:
        merged: dict[tuple[str, str], dict] = {}
        for source in (item.get("parameters") or [], op.get("parameters") or []):
            for raw in source:
                param = self.deref(raw)
                if isinstance(param, dict):
                    merged[(str(param.get("name")), str(param.get("in")))] = param
        return list(merged.values())

    def _param_schema(self, param: dict[str, Any]) -> Any:
        raw = param.get("schema")
        if raw is None and isinstance(param.get("content"), dict):
            first: dict[str, Any] = next(iter(param["content"].values()), {})
            raw = first.get("schema")
        schema = self.converter.convert(
            raw if raw is not None else {"type": "string"}, self.resolver.root
        )
        extra: dict[str, Any] = {}
        if self.descriptions and isinstance(param.get("description"), str):
            extra["description"] = param["description"]
        if param.get("deprecated") is True:
            extra["deprecated"] = True
        if "example" in param and isinstance(schema, dict) and "examples" not in schema:
            extra["examples"] = [param["example"]]
        return {**schema, **extra} if extra and isinstance(schema, dict) else schema

    def _scopes(self, op: dict) -> list[str]:
        security = op["security"] if "security" in op else self.spec.get("security")
        scopes: dict[str, None] = {}
        for requirement in security or []:
            if isinstance(requirement, dict):
                for values in requirement.values():
                    for scope in values or []:
                        scopes[str(scope)] = None
        return list(scopes)

    def _body(
        self, op: dict, where: str, properties: dict, required: list[str], has_headers: bool
    ) -> dict[str, Any]:
        request = self.deref(op.get("requestBody"))
        if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
            return {}
        content = request["content"]
        media = _pick_media(content)
        raw = (self.deref(content[media]) or {}).get("schema", {}) if media else {}
        schema = self.converter.convert(raw, self.resolver.root)
        out: dict[str, Any] = {}
        if media and "form" in media:
            out["body_encoding"] = "form"
            if media.startswith("multipart/"):
                self.warn(f"{where}: multipart/form-data body is sent url-encoded (no file parts)")
        elif media and "json" not in media and media != "*/*":
            self.warn(f"{where}: {media} body is not supported; it is sent as JSON")
        flat = _object_properties(schema)
        clash = flat is not None and bool(set(flat[0]) & set(properties))
        if flat is not None and flat[0] and not clash and not has_headers:
            props, body_required, open_ = flat
            properties.update(props)
            required.extend(r for r in body_required if r not in required)
            out["open"] = open_
            return out
        name = "body" if "body" not in properties else "request_body"
        properties[name] = schema
        if request.get("required") and name not in required:
            required.append(name)
        out["body"] = f"{{{{ input.{name} }}}}"
        return out

    def _output(self, op: dict, where: str) -> Any:
        responses = op.get("responses") or {}
        code = next((c for c in _SUCCESS_CODES if c in responses), None)
        if code is None:
            code = next((c for c in responses if str(c).startswith("2")), None)
        if code is None:
            self.warn(f"{where}: no 2xx response declared; output accepts anything")
            return {}
        response = self.deref(responses[code])
        content = response.get("content") if isinstance(response, dict) else None
        if not isinstance(content, dict) or not content:
            return {}
        media = _pick_media(content) or next(iter(content))
        raw = (self.deref(content[media]) or {}).get("schema")
        if raw is None:
            return {}
        return self.converter.convert(raw, self.resolver.root)


def _pick_media(content: dict) -> str | None:
    keys = list(content)
    for test in (
        lambda k: k.split(";")[0].strip() == "application/json",
        lambda k: "json" in k,
        lambda k: k.startswith("application/x-www-form-urlencoded"),
        lambda k: k.startswith("multipart/form-data"),
    ):
        hit = next((k for k in keys if test(k)), None)
        if hit:
            return hit
    return keys[0] if keys else None


_PLAIN_OBJECT_KEYS = {"type", "properties", "required", "additionalProperties", "examples",
                      "title", "description"}  # fmt: skip


def _object_properties(schema: Any) -> tuple[dict, list[str], bool] | None:
    """(properties, required, allows extra keys) of an object schema, flattening allOf."""
    if not isinstance(schema, dict):
        return None
    parts = schema.get("allOf") if set(schema) <= {"allOf", "type"} else [schema]
    props: dict[str, Any] = {}
    required: list[str] = []
    open_ = False
    for part in parts or []:
        if not isinstance(part, dict) or set(part) - _PLAIN_OBJECT_KEYS:
            return None
        if part.get("type", "object") != "object" or not isinstance(part.get("properties"), dict):
            return None
        props.update(part["properties"])
        required.extend(part.get("required", []))
        open_ = open_ or part.get("additionalProperties") not in (None, False)
    return props, required, open_


def _fixed_version(name: str, schema: Any) -> str | None:
    if name.lower() != "version" or not isinstance(schema, dict):
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and len(enum) == 1 and isinstance(enum[0], str):
        return enum[0]
    return None


def _input_template(name: str, required: bool) -> str:
    ref = f"input.{name}" if name.isidentifier() else f"input[{name!r}]"
    return f"{{{{ {ref} }}}}" if required else f"{{{{ {ref} | default('') }}}}"


# --------------------------------------------------------------------------- records + pages

_TOTAL_NAMES = ("count", "total", "totalCount", "total_count", "totalRecords", "total_records")
_OFFSET_NAMES = ("skip", "offset", "start")
_LIMIT_NAMES = ("limit", "pageSize", "page_size", "perPage", "per_page", "pageLimit")


def _infer_records(op_id: str, body: dict) -> None:
    if not op_id.startswith(("list_", "search_")):
        return
    output = body["output"]
    found = _array_path(output)
    if found is None:
        return
    records, container = found
    body["records"] = records
    if body["method"] != "GET":
        return
    query = set(body.get("query", []))
    offset = next((n for n in _OFFSET_NAMES if n in query), None)
    limit = next((n for n in _LIMIT_NAMES if n in query), None)
    if limit and (offset or "page" in query):
        pages: dict[str, Any] = (
            {"type": "offset", "offset_param": offset, "limit_param": limit}
            if offset
            else {"type": "page", "page_param": "page", "limit_param": limit}
        )
        total = next((n for n in _TOTAL_NAMES if _is_numeric_schema(container.get(n))), None)
        if total:
            prefix = records.rpartition(".")[0]
            pages["total_path"] = f"{prefix}.{total}" if prefix else total
        body["pagination"] = pages


def _array_path(schema: Any) -> tuple[str, dict] | None:
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "array":
        return ".", {}
    props = schema.get("properties") or {}
    arrays = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "array"]
    if len(arrays) == 1:
        return arrays[0], props
    if arrays:
        return None
    for name in ("results", "data", "result", "response", "items"):
        inner = props.get(name)
        if isinstance(inner, dict) and inner.get("type") == "object":
            found = _array_path(inner)
            if found and found[0] != ".":
                return f"{name}.{found[0]}", found[1]
    return None


def _is_numeric_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") in ("number", "integer")


# --------------------------------------------------------------------------- manifest


def _auth(
    spec: dict,
    resolver: RefResolver,
    scopes_used: Iterable[str],
    descriptions: bool,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    resolved = [
        resolver(s["$ref"]) if "$ref" in s else s for s in schemes.values() if isinstance(s, dict)
    ]
    for scheme in resolved:
        if scheme.get("type") != "oauth2":
            continue
        flow = (scheme.get("flows") or {}).get("authorizationCode")
        if not isinstance(flow, dict):
            warn("oauth2 scheme without an authorizationCode flow; using bearer auth")
            break
        known: dict[str, str] = {}
        for name, text in (flow.get("scopes") or {}).items():
            known[name] = text if descriptions and isinstance(text, str) else _scope_text(name)
        for name in scopes_used:
            known.setdefault(name, _scope_text(name))
        auth: dict[str, Any] = {
            "type": "oauth2",
            "authorize_url": flow.get("authorizationUrl", ""),
            "token_url": flow.get("tokenUrl", ""),
        }
        if flow.get("refreshUrl") and flow["refreshUrl"] != flow.get("tokenUrl"):
            warn("oauth2 refreshUrl differs from tokenUrl; splice refreshes at token_url")
        if known:
            auth["scopes"] = known
        return auth
    for scheme in resolved:
        if scheme.get("type") == "apiKey" and scheme.get("in") in ("header", "query"):
            return {"type": "api_key", "in": scheme["in"], "name": str(scheme.get("name"))}
    return {"type": "bearer"}


def _scope_text(scope: str) -> str:
    name, _, access = scope.rpartition(".")
    subject = (name or scope).replace("/", " ").replace("-", " ").replace("_", " ")
    if access in ("readonly", "read"):
        return f"Read {subject}"
    if access == "write":
        return f"Create, change and delete {subject}"
    return f"Scope {scope}"


def _namespace(paths: Iterable[str]) -> str | None:
    firsts = {p.strip("/").split("/")[0] for p in paths}
    if len(firsts) != 1:
        return None
    first = firsts.pop()
    return first if first and "{" not in first and not first.endswith("s") else None


def _matches(path: str, op_tags: list[str], tags: Sequence[str], paths: Sequence[str]) -> bool:
    if tags and not {t.lower() for t in op_tags} & {t.lower() for t in tags}:
        return False
    if paths:
        return any(
            fnmatch.fnmatchcase(path, pattern)
            or (not any(c in pattern for c in "*?[") and path.startswith(pattern))
            for pattern in paths
        )
    return True


def import_openapi(
    path: Path,
    *,
    tags: Sequence[str] = (),
    paths: Sequence[str] = (),
    descriptions: bool = False,
    connector_id: str | None = None,
) -> ImportResult:
    """Convert an OpenAPI 3.0 file into a connector manifest (see the module docstring)."""
    path = Path(path)
    spec, resolver = _load(path)
    warnings: dict[str, None] = {}
    converter = SchemaConverter(resolver, descriptions, warnings)
    ops, skipped = _collect(spec, _OperationBuilder(spec, converter), tags, paths)
    if not ops:
        raise InputError(f"{path.name}: no operations matched the given tags/paths")
    _assign_ids(ops)
    versions = {op.version for op in ops}
    shared_version = versions.pop() if len(versions) == 1 and None not in versions else None
    operations: dict[str, Any] = {}
    for op in ops:
        body = op.body
        if op.version and not shared_version:
            body["headers"] = {op.version[0]: op.version[1], **body.get("headers", {})}
        _infer_records(op.id, body)
        body.setdefault("title", title_from_id(op.id))
        operations[op.id] = _unshare(_order(body))
    for key, target in resolver.fallbacks.items():
        converter.warn(f"$ref {key} not found; used {Path(target).name} beside the spec instead")
    manifest = _manifest(spec, path, connector_id, shared_version, operations, converter)
    _check(manifest, path)
    return ImportResult(manifest, len(operations), skipped, list(warnings))


def _collect(
    spec: dict, builder: _OperationBuilder, tags: Sequence[str], paths: Sequence[str]
) -> tuple[list[_Op], list[str]]:
    namespace = _namespace(spec["paths"])
    ops: list[_Op] = []
    skipped: list[str] = []
    for op_path, raw_item in spec["paths"].items():
        item = builder.deref(raw_item)
        for method, raw_op in item.items() if isinstance(item, dict) else ():
            if method in _PATH_ITEM_KEYS or method.startswith("x-"):
                continue
            if method not in METHODS:
                skipped.append(f"{method.upper()} {op_path}: method not supported")
                continue
            op = raw_op if isinstance(raw_op, dict) else {}
            if not _matches(op_path, op.get("tags") or [], tags, paths):
                skipped.append(f"{method.upper()} {op_path}: filtered out")
                continue
            body, version = builder.build(method, op_path, item, op)
            derived = derive_operation_id(method, op_path, namespace)
            fallback = valid_id(str(op.get("operationId") or ""))
            ops.append(_Op(method.upper(), op_path, derived, fallback, body, version))
    return ops, skipped


_PATH_ITEM_KEYS = ("parameters", "servers", "summary", "description", "$ref")
_OP_ORDER = ("title", "description", "method", "path", "deprecated", "tags", "scopes", "headers",
             "query", "body_encoding", "body", "defaults", "input", "output", "records",
             "pagination", "sample")  # fmt: skip


def _order(op: dict[str, Any]) -> dict[str, Any]:
    first = {k: op[k] for k in _OP_ORDER if k in op}
    return first | {k: v for k, v in op.items() if k not in first}


def _unshare(value: Any) -> Any:
    """Deep copy (schemas share cached sub-trees between operations)."""
    return json.loads(json.dumps(value))


def _manifest(
    spec: dict,
    path: Path,
    connector_id: str | None,
    shared_version: tuple[str, str] | None,
    operations: dict[str, Any],
    converter: SchemaConverter,
) -> dict[str, Any]:
    descriptions, warn = converter.descriptions, converter.warn
    info = spec.get("info") or {}
    servers = spec.get("servers") or []
    url = servers[0].get("url", "") if servers and isinstance(servers[0], dict) else ""
    for name, var in ((servers[0].get("variables") or {}) if url else {}).items():
        url = url.replace(f"{{{name}}}", str((var or {}).get("default", "")))
    if not re.match(r"^https?://", url):
        warn(f"servers[0].url {url!r} is not absolute; base_url is a placeholder to edit")
        url = "https://api.example.invalid" + (url if url.startswith("/") else "")
    manifest: dict[str, Any] = {
        "id": connector_id or valid_id(path.stem) or "connector",
        "name": str(info.get("title") or path.stem),
        "version": str(info.get("version") or "0.1.0"),
    }
    if descriptions and isinstance(info.get("description"), str):
        manifest["description"] = info["description"]
    manifest["base_url"] = url.rstrip("/")
    if shared_version:
        manifest["headers"] = {shared_version[0]: shared_version[1]}
    scopes_used = dict.fromkeys(s for op in operations.values() for s in op.get("scopes", []))
    manifest["auth"] = _auth(spec, converter.resolver, scopes_used, descriptions, warn)
    manifest["operations"] = operations
    return manifest


def connector_schema() -> dict:
    """The connector manifest meta-schema shipped with splice."""
    text = resources.files("splice").joinpath("schemas/connector.schema.json").read_text("utf-8")
    return json.loads(text)


def _check(manifest: dict, path: Path) -> None:
    validator = jsonschema.Draft202012Validator(connector_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise InputError(f"{path.name}: generated manifest is invalid at {where}: {first.message}")


# --------------------------------------------------------------------------- YAML output


class _Dumper(yaml.SafeDumper):
    """Block style for structure, flow style for small leaves, never anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flow_ok(items: Iterable[Any]) -> bool:
    items = list(items)
    return all(_is_scalar(v) and not (isinstance(v, str) and "\n" in v) for v in items) and (
        sum(len(str(v)) + 2 for v in items) <= 72
    )


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    leaves = [*data.keys()]
    for value in data.values():
        leaves.extend(value if isinstance(value, list) else [value])
    flow = bool(data) and len(data) <= 4 and _flow_ok(leaves)
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = _flow_ok(data) or all(
        _is_scalar(v) and len(str(v)) <= 60 and "\n" not in str(v) for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data.strip() else None
    if style is None and data.startswith("{{") and "'" in data and '"' not in data:
        style = '"'  # templates read better without doubled single quotes
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def dump_manifest(manifest: dict) -> str:
    """Readable YAML: keys in manifest order, small schemas on one line, no anchors."""
    return yaml.dump(
        manifest,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )


def run_import(
    spec: Path,
    out: Path | None,
    tags: Sequence[str] = (),
    paths: Sequence[str] = (),
    descriptions: bool = False,
) -> ImportResult:
    """CLI glue: import ``spec`` and write the YAML to ``out`` (stdout when ``None``)."""
    result = import_openapi(
        Path(spec), tags=tuple(tags), paths=tuple(paths), descriptions=descriptions
    )
    header = (
        f"# Generated by `splice import-openapi {Path(spec).name}`: "
        f"{result.operation_count} operations. Review and curate before use.\n"
    )
    text = header + dump_manifest(result.manifest)
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
    return result

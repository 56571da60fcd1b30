"""One OpenAPI operation -> one manifest operation: parameters, body, scopes, output, paging.

Path, query and header parameters and the JSON body become the input schema (every ``$ref``
inlined); the first 2xx response becomes the output schema; security scopes become scopes; a
list response with skip/limit style parameters gets ``pagination`` and ``records``.
"""

from __future__ import annotations

import re
from typing import Any

from .schema import SchemaConverter

__all__ = ["OperationBuilder", "infer_records"]


METHODS = ("get", "post", "put", "patch", "delete")
_SUCCESS_CODES = ("200", "201", "202", "204")
_SKIPPED_HEADERS = {"authorization", "content-type", "accept", "content-length"}


class OperationBuilder:
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
        for key in ("body_encoding", "files", "body"):
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
        if media and media.startswith("multipart/"):
            out["body_encoding"] = "multipart"
            flat = _object_properties(schema)
            if flat is None:
                self.warn(f"{where}: multipart body that is not an object; sent without parts")
            else:  # binary properties become file parts, the rest form fields
                files = [n for n, sub in flat[0].items() if _is_binary(sub)]
                if files:
                    out["files"] = files
                    schema = {**schema, "properties": {
                        n: (file_schema(self.descriptions) if n in files else sub)
                        for n, sub in flat[0].items()}}
        elif media and "form" in media:
            out["body_encoding"] = "form"
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


def file_schema(descriptions: bool = True) -> dict[str, Any]:
    """The file reference a multipart ``files`` input takes (``schemas/file.schema.json``);
    without ``descriptions`` its prose is left out, like the spec's."""
    import json
    from importlib import resources

    data = json.loads(resources.files("splice").joinpath("schemas/file.schema.json")
                      .read_text("utf-8"))

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()
                    if not k.startswith("$") and (descriptions or k != "description")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(data)  # type: ignore[no-any-return]


def _is_binary(schema: Any) -> bool:
    """A ``format: binary`` string (an OpenAPI 3.0 file), or an array of them."""
    if not isinstance(schema, dict):
        return False
    if schema.get("format") == "binary" or schema.get("contentMediaType"):
        return True
    return False


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


def infer_records(op_id: str, body: dict) -> None:
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



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
from urllib.parse import unquote

import jsonschema
import yaml

from splice.errors import InputError

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
MAX_REF_DEPTH = 8
_SUCCESS_CODES = ("200", "201", "202", "204")
_SKIPPED_HEADERS = {"authorization", "content-type", "accept", "content-length"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --------------------------------------------------------------------------- loading + $ref


class RefResolver:
    """Resolves local and relative-file ``$ref``s; callable as ``resolver(ref, base=None)``."""

    def __init__(self, root: Path, document: Any) -> None:
        self.root = root.resolve()
        self._docs: dict[Path, Any] = {self.root: document}
        self.fallbacks: dict[str, str] = {}

    def __call__(self, ref: str, base: Path | None = None) -> Any:
        return self.locate(ref, base)[0]

    def locate(self, ref: str, base: Path | None = None) -> tuple[Any, Path]:
        """Return the node a ``$ref`` points at and the file that holds it."""
        base = base or self.root
        file_part, _, fragment = ref.partition("#")
        if "://" in file_part:
            raise InputError(
                f"cannot resolve $ref {ref!r} in {base.name}: remote refs are not supported"
            )
        doc_path = self._find(file_part, base, ref) if file_part else base
        node = self._document(doc_path, ref)
        for token in [t for t in fragment.split("/") if t] if fragment else []:
            key = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise InputError(
                    f"cannot resolve $ref {ref!r} in {base.name}: "
                    f"{key!r} not found in {doc_path.name}"
                )
        return node, doc_path

    def _find(self, file_part: str, base: Path, ref: str) -> Path:
        direct = (base.parent / file_part).resolve()
        if direct.is_file():
            return direct
        # Known defect (HighLevel apps/v3): "../common/x.json" means "./common/x.json".
        rel = file_part
        while rel.startswith("../"):
            rel = rel[3:]
            candidate = (base.parent / rel).resolve()
            if candidate.is_file():
                self.fallbacks[f"{base.name}: {file_part}"] = str(candidate)
                return candidate
        raise InputError(
            f"cannot resolve $ref {ref!r} in {base.name}: file {file_part!r} not found"
        )

    def _document(self, path: Path, ref: str) -> Any:
        if path not in self._docs:
            try:
                self._docs[path] = _parse(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                message = f"cannot resolve $ref {ref!r}: {path.name} is unreadable ({exc})"
                raise InputError(message) from None
        return self._docs[path]


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        return yaml.load(text, Loader=_LOADER)
    return json.loads(text)


def load_spec(path: Path) -> tuple[dict, Callable[..., Any]]:
    """Parse an OpenAPI file (JSON or YAML) and return it with a ``$ref`` resolver."""
    return _load(Path(path))


def _load(path: Path) -> tuple[dict, RefResolver]:
    try:
        spec = _parse(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable JSON or YAML document ({exc})") from None
    if not isinstance(spec, dict) or "paths" not in spec:
        raise InputError(f"{path}: not an OpenAPI document (no 'paths')")
    if not str(spec.get("openapi", "")).startswith("3."):
        raise InputError(f"{path}: only OpenAPI 3.x is supported (found {spec.get('openapi')!r})")
    return spec, RefResolver(path, spec)


# --------------------------------------------------------------------------- schema conversion

_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum")
_FLAGS = ("uniqueItems", "readOnly", "writeOnly", "deprecated")
_ANY = ("default", "const", "format", "contentMediaType", "contentEncoding")


class _SchemaConverter:
    """Rewrites OpenAPI 3.0 Schema Objects as self-contained JSON Schema 2020-12."""

    def __init__(self, resolver: RefResolver, descriptions: bool, warnings: dict[str, None]):
        self.resolver = resolver
        self.descriptions = descriptions
        self.warnings = warnings
        self._cache: dict[str, Any] = {}
        self._cuts: list[str] = []  # refs where a recursion or depth cut happened

    def convert(self, node: Any, doc: Path) -> Any:
        return self._convert(node, doc, ())

    def warn(self, message: str) -> None:
        self.warnings[message] = None

    def _convert(self, node: Any, doc: Path, stack: tuple[str, ...]) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            return {}
        if "$ref" in node:
            return self._ref(node, doc, stack)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "patternProperties"):
                if isinstance(value, dict):
                    out[key] = {n: self._convert(v, doc, stack) for n, v in value.items()}
            elif key in ("allOf", "anyOf", "oneOf"):
                if isinstance(value, list) and value:
                    out[key] = [self._convert(v, doc, stack) for v in value]
            elif key in ("not", "additionalProperties"):
                out[key] = self._convert(value, doc, stack)
            elif key == "items" and isinstance(value, list):
                out["prefixItems"] = [self._convert(v, doc, stack) for v in value]
            elif key == "items":
                out["items"] = self._convert(value, doc, stack)
            else:
                self._keyword(out, key, value)
        _finish(out, node)
        if len(out) == 1 and len(out.get("allOf", ())) == 1:
            return out["allOf"][0]  # NestJS wraps every $ref in a one-item allOf
        return out

    def _keyword(self, out: dict[str, Any], key: str, value: Any) -> None:
        if key == "type":
            out.update(self._type(value))
        elif key == "enum":
            if isinstance(value, list):
                out["enum"] = value
        elif key == "required":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["required"] = list(dict.fromkeys(value))
        elif key in _COUNTS:
            if _is_number(value) and value >= 0 and float(value).is_integer():
                out[key] = int(value)
        elif key in _NUMBERS:
            if _is_number(value):
                out[key] = value
        elif key == "multipleOf":
            if _is_number(value) and value > 0:
                out[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if _is_number(value):
                out[key] = value
            elif value is True:
                out[key] = True  # resolved against minimum/maximum in _finish
        elif key in _FLAGS:
            if isinstance(value, bool):
                out[key] = value
        elif key == "pattern":
            if isinstance(value, str) and _compiles(value):
                out[key] = value
            else:
                self.warn(f"dropped a pattern Python cannot compile: {value!r}")
        elif key == "example":
            out.setdefault("examples", [value])
        elif key == "examples":
            if isinstance(value, list):
                out["examples"] = value
        elif key in ("title", "description"):
            if self.descriptions and isinstance(value, str):
                out[key] = value
        elif key in _ANY:
            if key != "format" or isinstance(value, str):
                out[key] = value
        elif key == "nullable":
            pass  # handled in _finish
        # everything else (discriminator, xml, externalDocs, x-*) is not JSON Schema: dropped

    def _type(self, value: Any) -> dict[str, Any]:
        if value == "file":
            return {"type": "string", "format": "binary"}
        if isinstance(value, str) and value in _TYPES:
            return {"type": value}
        if isinstance(value, list):
            kept = [v for v in dict.fromkeys(value) if v in _TYPES]
            if kept:
                return {"type": kept if len(kept) > 1 else kept[0]}
        self.warn(f"dropped an invalid schema type: {value!r}")
        return {}

    def _ref(self, node: dict, doc: Path, stack: tuple[str, ...]) -> Any:
        ref = node["$ref"]
        if not isinstance(ref, str):
            return {}
        target, target_doc = self.resolver.locate(ref, doc)
        key = f"{target_doc}#{ref.partition('#')[2]}"
        name = ref.rsplit("/", 1)[-1]
        if key in stack:
            self._cuts.append(key)
            return {"$comment": f"recursive reference to {name} not expanded"}
        if len(stack) >= MAX_REF_DEPTH:
            self._cuts.append("")
            return {"$comment": f"{name} not expanded (nesting too deep)"}
        result = self._cache.get(key)
        if result is None:
            mark = len(self._cuts)
            result = self._convert(target, target_doc, (*stack, key))
            # Cache only what does not depend on the path taken to get here.
            pending = [cut for cut in self._cuts[mark:] if cut != key]
            if not pending:
                self._cache[key] = result
            self._cuts[mark:] = pending  # cuts at outer refs make the outer ones uncacheable
        return _nullable(result) if node.get("nullable") is True else result


def _finish(out: dict[str, Any], node: dict) -> None:
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            if bound in out:
                out[exclusive] = out.pop(bound)
            else:
                del out[exclusive]
    if node.get("nullable") is True:
        nullable = _nullable(dict(out))
        out.clear()
        out.update(nullable)


def _nullable(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    if isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    elif kind != "null":
        out["type"] = [kind, "null"]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


# --------------------------------------------------------------------------- operation ids

_VERBS = frozenset(
    "search list filter bulk set start stop upload download export import send resend cancel "
    "attach detach verify validate publish unpublish archive unarchive restore duplicate clone "
    "copy move sync refresh reset enable disable activate deactivate approve reject preview "
    "generate reschedule add remove assign unassign connect disconnect finalize complete lock "
    "unlock merge void record refund mark upsert create update delete get fetch find lookup "
    "calculate pause resume submit accept decline invite revoke rotate transfer convert apply "
    "redeem replace bind unbind install uninstall block unblock".split()
)
# Verbs that act on a whole collection take a plural object: search_users, bulk_delete_posts.
_COLLECTION_VERBS = frozenset("search list filter bulk export import sync upsert find".split())
# Words that are verbs only when followed by an object ("record-payment", not "record").
_WEAK_VERBS = frozenset("record set block lock mark".split())
_VIEW_NOUNS = frozenset(
    "details detail statistics stats summary status analytics overview info report reports "
    "metrics insights".split()
)
_LINKERS = frozenset({"by", "for", "from", "to", "with", "in", "on", "of"})


def _is_verb(word: str) -> bool:
    words = word.split("_")
    return words[0] in _VERBS and (len(words) > 1 or words[0] not in _WEAK_VERBS)


def _snake(text: str) -> str:
    """``filter-by-email`` / ``getUserById`` / ``Get tags`` -> ``filter_by_email`` ..."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return text


def _singular(word: str) -> str:
    """Rough English singular of the last word of a snake_case noun."""
    head, _, last = word.rpartition("_")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes", "uses")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 3:
        last = last[:-1]
    return f"{head}_{last}" if head else last


def _plural(word: str) -> str:
    """Rough English plural of the last word of a snake_case noun."""
    head, _, last = word.rpartition("_")
    if _singular(last) != last or last.endswith("data"):
        pass  # already plural
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head}_{last}" if head else last


def derive_operation_id(method: str, path: str, namespace: str | None = None) -> str:
    """A snake_case verb phrase for ``method path`` (empty when the path says nothing)."""
    method = method.upper()
    segments = [s for s in path.split("/") if s]
    items: list[tuple[bool, str]] = []  # (is_param, snake words)
    for seg in segments:
        if "{" in seg:
            items.append((True, ""))
        elif not re.fullmatch(r"v\d+(\.\d+)?|api", seg, flags=re.I):
            items.append((False, _snake(seg)))
    literals = [i for i, (param, word) in enumerate(items) if not param and word]
    if literals and namespace and items[literals[0]][1] == _snake(namespace) and len(literals) > 1:
        literals = literals[1:]
    if not literals:
        return ""
    last_index = literals[-1]
    last = items[last_index][1]
    words = last.split("_")
    trailing_param = any(param for param, _ in items[last_index + 1 :])

    def noun_before(index: int) -> tuple[str, bool]:
        """The nearest noun segment before ``index`` and whether a param sits between."""
        for i in reversed([j for j in literals if j < index]):
            if not _is_verb(items[i][1]):
                return items[i][1], any(p for p, _ in items[i + 1 : index])
        return "", False

    verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "update"}.get(
        method, "delete"
    )
    if not trailing_param and _is_verb(last):
        noun, item = noun_before(last_index)
        if noun:
            noun = _plural(noun) if words[0] in _COLLECTION_VERBS and not item else _singular(noun)
        if all(w in _VERBS for w in words):  # "search", "bulk_delete"
            return "_".join(filter(None, [last, noun]))
        if words[1:] == ["all"]:  # "remove_all"
            return "_".join(filter(None, [words[0], "all", _plural(noun) if noun else ""]))
        if words[1] in _LINKERS:  # "filter_by_email"
            return "_".join(filter(None, [words[0], noun, *words[1:]]))
        return last  # "set_accounts", "record_payment"
    if not trailing_param and last in _VIEW_NOUNS:
        noun, _ = noun_before(last_index)
        prefix = "get" if method in ("GET", "POST") else verb
        return "_".join(filter(None, [prefix, _singular(noun) if noun else "", last]))
    if trailing_param:
        return f"{verb}_{_singular(last)}"
    if method == "GET":
        return f"list_{_plural(last)}"
    return f"{verb}_{_singular(last) if method != 'DELETE' else _plural(last)}"


def _valid_id(text: str) -> str:
    text = _snake(text)
    if not text:
        return ""
    return text if text[0].isalpha() else f"op_{text}"


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


def title_from_id(op_id: str) -> str:
    """``list_tags`` -> ``List tags``."""
    text = op_id.replace("_", " ")
    return text[:1].upper() + text[1:]


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


class _OperationBuilder:
    """Builds one manifest operation from an OpenAPI Operation Object."""

    def __init__(self, spec: dict, converter: _SchemaConverter) -> None:
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

    def _param_schema(self, param: dict) -> Any:
        raw = param.get("schema")
        if raw is None and isinstance(param.get("content"), dict):
            raw = next(iter(param["content"].values()), {}).get("schema")
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
    converter = _SchemaConverter(resolver, descriptions, warnings)
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
            fallback = _valid_id(str(op.get("operationId") or ""))
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
    converter: _SchemaConverter,
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
        "id": connector_id or _valid_id(path.stem) or "connector",
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

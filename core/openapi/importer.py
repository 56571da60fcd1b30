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
from .operations import OperationBuilder, infer_records
from .schema import RefResolver, SchemaConverter, parse_document
from .writer import dump_manifest

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
    ops, skipped = _collect(spec, OperationBuilder(spec, converter), tags, paths)
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
        infer_records(op.id, body)
        body.setdefault("title", title_from_id(op.id))
        operations[op.id] = _unshare(_order(body))
    for key, target in resolver.fallbacks.items():
        converter.warn(f"$ref {key} not found; used {Path(target).name} beside the spec instead")
    manifest = _manifest(spec, path, connector_id, shared_version, operations, converter)
    _check(manifest, path)
    return ImportResult(manifest, len(operations), skipped, list(warnings))


def _collect(
    spec: dict, builder: OperationBuilder, tags: Sequence[str], paths: Sequence[str]
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

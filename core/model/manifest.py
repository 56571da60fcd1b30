"""Connector manifests: load, check, and expose them as typed objects.

A manifest is checked in two passes, both reported as ``file:line:column`` problems:
the meta-schema (``schemas/connector.schema.json``), then the rules a schema cannot say
(every path parameter is a required input, triggers name existing list operations, every
embedded JSON Schema passes ``check_schema``, samples match their output schema, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

from ..errors import ConfigError, DocumentError, Problem
from .documents import Document, load_document
from .durations import DAY, parse_period
from .options import OptionSource, check_options, option_sources
from .readback import ReadBack, read_back
from .schema import (
    Checker,
    bundled_checker,
    did_you_mean,
    schema_error,
    subschema,
)

_CODE_VERSION = "manifest-checks-3"  # bump when check_manifest's rules change
PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BODY_METHODS = {"POST", "PUT", "PATCH"}
MISSING = object()


@dataclass
class Operation:
    """One declared endpoint."""

    id: str
    connector_id: str
    method: str
    path: str
    input: Any
    output: Any
    title: str = ""
    description: str = ""
    scopes: list[str] = field(default_factory=list)
    query: list[str] | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = MISSING
    body_encoding: str = "json"
    files: list[str] = field(default_factory=list)
    records: str | None = None
    pagination: dict[str, Any] | None = None
    sample: Any = MISSING
    timeout: float | None = None
    idempotent: bool | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    deprecated: bool = False
    verify: ReadBack | None = None       # the get operation that reads a write back
    declared_options: dict[str, Any] = field(default_factory=dict)  # ``options:`` as written

    @property
    def ref(self) -> str:
        return f"{self.connector_id}.{self.id}"

    @cached_property
    def path_params(self) -> list[str]:
        return PATH_PARAM.findall(self.path)

    @cached_property
    def query_params(self) -> list[str]:
        """Input names sent in the query string (explicit list, or the method's default)."""
        if isinstance(self.query, list):
            return list(self.query)
        if isinstance(self.query, dict):
            return []
        if self.method in BODY_METHODS:
            return []
        props = (self.input or {}).get("properties", {}) if isinstance(self.input, dict) else {}
        return [p for p in props if p not in self.path_params]

    @property
    def is_list(self) -> bool:
        return self.records is not None

    @cached_property
    def record_schema(self) -> Any:
        """Schema of one record (the element at ``records``), or the output schema."""
        if self.records is None:
            return self.output
        if self.records == ".":
            node = self.output
        else:
            node = subschema(self.output, tuple(self.records.split(".")))
        if isinstance(node, dict) and (node.get("type") == "array" or "items" in node):
            return node.get("items", True)
        return node if node is not None else True

    @cached_property
    def input_validator(self) -> Draft202012Validator:
        return self.input_checker.validator

    @cached_property
    def output_validator(self) -> Draft202012Validator:
        return self.output_checker.validator

    @cached_property
    def input_checker(self) -> Checker:
        return Checker(self.input)

    @cached_property
    def output_checker(self) -> Checker:
        return Checker(self.output)

    @property
    def writes(self) -> bool:
        return self.method != "GET"


@dataclass
class Trigger:
    """A declared event source."""

    id: str
    connector_id: str
    type: str
    title: str = ""
    description: str = ""
    operation: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    version: str | None = None
    filter: str | None = None
    cursor: dict[str, str] | None = None
    events: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)  # webhook: what the app needs for them
    signature: dict[str, Any] | None = None
    output: Any = None
    sample: Any = MISSING
    record: str | None = None            # webhook: path of the record inside the event
    delivery_id: dict[str, str] | None = None   # webhook: {header: X} or {path: p}
    event_type: dict[str, str] | None = None    # webhook: {header: X} or {path: p}
    match_connection: list[str] = field(default_factory=list)
    revokes_connection: bool = False

    @property
    def ref(self) -> str:
        return f"{self.connector_id}.{self.id}"

    @property
    def record_path(self) -> tuple[str, ...]:
        """Where the record is inside a delivered event (empty: the whole event)."""
        return tuple(self.record.split(".")) if self.record else ()


@dataclass
class Connector:
    """A loaded, checked manifest."""

    id: str
    name: str
    version: str
    base_url: str
    auth: dict[str, Any]
    operations: dict[str, Operation]
    triggers: dict[str, Trigger]
    description: str = ""
    docs_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_headers: dict[str, str] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)
    idempotency: dict[str, Any] | None = None
    error_message_paths: list[str] = field(default_factory=list)
    test_operation: str | None = None
    webhook_subscription: dict[str, str] | None = None
    source: str = "<memory>"
    plugin: str = ""
    sandbox: str | None = None

    @property
    def auth_type(self) -> str:
        return str(self.auth.get("type", "none"))

    @property
    def scopes(self) -> list[str]:
        declared = list((self.auth.get("scopes") or {}).keys())
        for op in self.operations.values():
            declared += [s for s in op.scopes if s not in declared]
        for trigger in self.triggers.values():
            declared += [s for s in trigger.scopes if s not in declared]
        return declared

    def operation(self, op_id: str) -> Operation:
        try:
            return self.operations[op_id]
        except KeyError:
            raise ConfigError(f"connector '{self.id}' has no operation '{op_id}'"
                              f"{did_you_mean(op_id, self.operations)}") from None

    def input_options(self, op_id: str) -> dict[str, OptionSource]:
        """Input field -> the list operation whose records are its choices (declared in
        ``options:`` or inferred from the field's name)."""
        raw = {k: {"input": o.input, "output": o.output, "records": o.records,
                   "options": o.declared_options} for k, o in self.operations.items()}
        return option_sources(raw[op_id], raw)

    def trigger(self, trigger_id: str) -> Trigger:
        try:
            return self.triggers[trigger_id]
        except KeyError:
            raise ConfigError(f"connector '{self.id}' has no trigger '{trigger_id}'"
                              f"{did_you_mean(trigger_id, self.triggers)}") from None

    def trigger_output(self, trigger: Trigger) -> Any:
        """Schema of one event of ``trigger`` (for a webhook: of the record it carries)."""
        if trigger.output is not None:
            if trigger.record_path:
                found = subschema(trigger.output, trigger.record_path)
                return True if found is None else found
            return trigger.output
        if trigger.operation and trigger.operation in self.operations:
            return self.operations[trigger.operation].record_schema
        return True


def load_manifest(source: str | Path | dict[str, Any], *, plugin: str = "",
                  sandbox: str | None = None) -> Connector:
    """Load and check a manifest from a file or a dict; raise :class:`DocumentError`.

    A file that passed every check before (same bytes, same splice) is not checked again:
    its data is reused from memory or from the on-disk cache (``SPLICE_CACHE_DIR``, default
    the platform's user cache dir), so startup stays fast with large generated manifests.
    """
    if isinstance(source, dict):
        doc = Document(path=f"<{plugin or 'manifest'}>", data=source)
    else:
        raw = Path(source).read_bytes() if Path(source).is_file() else None
        cached = _cache_get(raw) if raw is not None else None
        if cached is not None:
            return _build(Document(path=str(source), data=cached), plugin=plugin,
                          sandbox=sandbox)
        doc = load_document(source)
    problems = check_manifest(doc)
    if problems:
        raise DocumentError(problems)
    if not isinstance(source, dict) and raw is not None:
        _cache_put(raw, doc.data)
    return _build(doc, plugin=plugin, sandbox=sandbox)


_MEMORY_CACHE: dict[str, Any] = {}


def _cache_key(raw: bytes) -> str:
    import hashlib
    from importlib import resources

    digest = hashlib.sha256(raw)
    digest.update(resources.files("splice").joinpath("schemas/connector.schema.json")
                  .read_bytes())
    digest.update(_CODE_VERSION.encode())
    return digest.hexdigest()


def _cache_dir() -> Path:
    import os

    import platformdirs

    return Path(os.environ.get("SPLICE_CACHE_DIR") or platformdirs.user_cache_dir("splice")) \
        / "manifests"


def _cache_get(raw: bytes) -> Any:
    import orjson

    key = _cache_key(raw)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    try:
        data = orjson.loads((_cache_dir() / f"{key}.json").read_bytes())
    except (OSError, ValueError):
        return None
    _MEMORY_CACHE[key] = data
    return data


def _cache_put(raw: bytes, data: Any) -> None:
    import os
    import tempfile

    import orjson

    key = _cache_key(raw)
    _MEMORY_CACHE[key] = data
    try:  # exactly what was parsed, or nothing: a YAML date or a non-string key is not cached
        text = orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        return
    try:
        folder = _cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass  # a read-only cache only costs speed


def check_manifest(doc: Document) -> list[Problem]:
    """Every problem of a manifest document (empty list when it is valid)."""
    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "a manifest must be a mapping (id, name, operations, ...)")]
    problems = [doc.problem(path, msg, key=at_key)
                for path, msg, at_key in bundled_checker("connector").errors(data)]
    if problems:
        return problems
    ops: dict[str, Any] = data.get("operations", {})
    for op_id, op in ops.items():
        base = ("operations", op_id)
        for name in ("input", "output"):
            exc = schema_error(op[name])
            if exc is not None:
                problems.append(doc.problem((*base, name, *exc.absolute_path),
                                            f"not a valid JSON Schema: {exc.message}"))
        if _has_dot_segment(op["path"]):
            problems.append(doc.problem((*base, "path"), "the path has a '.' or '..' segment "
                                        "(also when percent-encoded); operation paths stay under "
                                        "base_url"))
        props = op["input"].get("properties", {}) if isinstance(op["input"], dict) else {}
        required = op["input"].get("required", []) if isinstance(op["input"], dict) else []
        for param in PATH_PARAM.findall(op["path"]):
            if param not in props or param not in required:
                problems.append(doc.problem((*base, "path"),
                                f"path parameter '{param}' must be a required property of input"))
        if isinstance(op.get("query"), list):
            for q in op["query"]:
                if q not in props:
                    problems.append(doc.problem((*base, "query"),
                                    f"query parameter '{q}' is not a property of input"
                                    f"{did_you_mean(q, props)}"))
        for name in op.get("files", []):
            if name not in props:
                problems.append(doc.problem((*base, "files"),
                                f"file input '{name}' is not a property of input"
                                f"{did_you_mean(name, props)}"))
        if op.get("files") and op.get("body_encoding") != "multipart":
            problems.append(doc.problem((*base, "files"),
                                        "`files` needs body_encoding: multipart"))
        if op.get("body_encoding") == "multipart" and op["method"] not in BODY_METHODS:
            problems.append(doc.problem((*base, "body_encoding"),
                                        f"a {op['method']} request has no body"))
        if "verify" in op:
            read_back(op["verify"], op_id, ops, doc, problems)
        problems.extend(check_options(doc, op_id, ops))
        if "sample" in op and not problems:
            for path, msg, _ in Checker(op["output"]).errors(op["sample"]):
                problems.append(doc.problem((*base, "sample", *path),
                                            f"sample does not match output: {msg}"))
    for trig_id, trig in (data.get("triggers") or {}).items():
        base = ("triggers", trig_id)
        if trig["type"] == "polling":
            op_id = trig["operation"]
            if op_id not in ops:
                problems.append(doc.problem((*base, "operation"),
                                f"unknown operation '{op_id}'{did_you_mean(op_id, ops)}"))
            elif "records" not in ops[op_id]:
                problems.append(doc.problem((*base, "operation"),
                                f"operation '{op_id}' declares no `records` path to poll"))
        if "output" in trig:
            exc = schema_error(trig["output"])
            if exc is not None:
                problems.append(doc.problem((*base, "output"),
                                            f"not a valid JSON Schema: {exc.message}"))
            else:
                record = trig.get("record")
                if record and subschema(trig["output"], tuple(record.split(".")),
                                        strict=True) is None:
                    problems.append(doc.problem((*base, "record"),
                                                f"'{record}' is not in the trigger's output"))
        if trig["type"] != "webhook":
            for name in ("record", "delivery_id", "scopes", "event_type", "match_connection",
                         "revokes_connection", "signature"):
                if name in trig:
                    problems.append(doc.problem((*base, name), f"'{name}' is only for "
                                                "webhook triggers", key=True))
    subscription = data.get("webhook_subscription") or {}
    for role in ("create", "update", "delete"):
        wanted = subscription.get(role)
        if wanted is not None and wanted not in ops:
            problems.append(doc.problem(("webhook_subscription", role),
                                        f"unknown operation '{wanted}'"
                                        f"{did_you_mean(str(wanted), ops)}"))
    create = ops.get(subscription.get("create", ""))
    if create is not None:
        props = create["input"].get("properties", {}) if isinstance(create["input"], dict) \
            else {}
        missing = [name for name in ("url", "events") if name not in props]
        if missing:
            problems.append(doc.problem(("webhook_subscription", "create"),
                                        f"operation '{subscription['create']}' takes no "
                                        f"{' or '.join(missing)} input"))
    try:
        base_url = urlsplit(data["base_url"])
        if not base_url.hostname:
            raise ValueError("no host")
    except ValueError:
        problems.append(doc.problem(("base_url",), "not a valid URL"))
    else:
        if _has_dot_segment(base_url.path):
            problems.append(doc.problem(("base_url",), "the base URL's path has a '.' or '..' "
                                        "segment"))
    for i, window in enumerate(data.get("rate_limits") or []):
        if parse_period(window["per"]) > 31 * DAY:
            problems.append(doc.problem(("rate_limits", i, "per"), "a rate-limit window must "
                                        "be at most 31 days"))
    test_op = data.get("test_operation")
    if test_op and test_op not in ops:
        problems.append(doc.problem(("test_operation",),
                                    f"unknown operation '{test_op}'{did_you_mean(test_op, ops)}"))
    return problems


def connector_from_document(doc: Document, *, plugin: str = "",
                            sandbox: str | None = None) -> Connector:
    """A :class:`Connector` from a document that passed the meta-schema, without the other
    checks (``splice connectors check`` reports those next to what a recipe would hit)."""
    return _build(doc, plugin=plugin, sandbox=sandbox)


def _pagination(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """Integers as integers (``page_size: 1e2`` is valid JSON Schema and must be sent as 100)."""
    if spec is None:
        return None
    return {k: int(v) if k in ("page_size", "max_pages", "start") and isinstance(v, float)
            else v for k, v in spec.items()}


_DOT_SEGMENT = re.compile(r"^(?:\.|%2[eE]){1,2}$")


def _has_dot_segment(path: str) -> bool:
    """Whether a path has a ``.`` or ``..`` segment, literally or percent-encoded (a ``{name}``
    placeholder is filled with one encoded segment later, so it cannot add one)."""
    return any(_DOT_SEGMENT.match(segment)
               for segment in re.split(r"/|%2[fF]|\\|%5[cC]", path))


def _build(doc: Document, *, plugin: str, sandbox: str | None) -> Connector:
    data = doc.data
    cid = data["id"]
    operations = {}
    for op_id, op in data.get("operations", {}).items():
        operations[op_id] = Operation(
            id=op_id, connector_id=cid, method=op["method"], path=op["path"],
            input=op["input"], output=op["output"], title=op.get("title", ""),
            description=op.get("description", ""), scopes=list(op.get("scopes", [])),
            query=op.get("query"), headers=dict(op.get("headers", {})),
            body=op.get("body", MISSING), body_encoding=op.get("body_encoding", "json"),
            files=list(op.get("files", [])),
            records=op.get("records"), pagination=_pagination(op.get("pagination")),
            sample=op.get("sample", MISSING), timeout=op.get("timeout"),
            idempotent=op.get("idempotent"), defaults=dict(op.get("defaults", {})),
            deprecated=bool(op.get("deprecated", False)),
            verify=read_back(op["verify"], op_id, data["operations"]) if "verify" in op
            else None,
            declared_options=dict(op.get("options") or {}))
    triggers = {}
    for tid, t in (data.get("triggers") or {}).items():
        triggers[tid] = Trigger(
            id=tid, connector_id=cid, type=t["type"], title=t.get("title", ""),
            description=t.get("description", ""), operation=t.get("operation"),
            defaults=dict(t.get("defaults", {})), key=t.get("key"), version=t.get("version"),
            filter=t.get("filter"), cursor=t.get("cursor"), events=list(t.get("events", [])),
            scopes=list(t.get("scopes", [])),
            signature=t.get("signature"), output=t.get("output"),
            sample=t.get("sample", MISSING), record=t.get("record"),
            delivery_id=t.get("delivery_id"), event_type=t.get("event_type"),
            match_connection=list(t.get("match_connection", [])),
            revokes_connection=bool(t.get("revokes_connection", False)))
    return Connector(
        id=cid, name=data["name"], version=str(data["version"]), base_url=data["base_url"],
        auth=dict(data["auth"]), operations=operations, triggers=triggers,
        description=data.get("description", ""), docs_url=data.get("docs_url"),
        headers=dict(data.get("headers", {})), rate_limits=list(data.get("rate_limits", [])),
        rate_limit_headers=dict(data.get("rate_limit_headers", {})),
        timeouts=dict(data.get("timeouts", {})), idempotency=data.get("idempotency"),
        error_message_paths=list(data.get("error_message_paths", [])),
        test_operation=data.get("test_operation"),
        webhook_subscription=data.get("webhook_subscription"), source=doc.path, plugin=plugin,
        sandbox=sandbox)

"""Request building: an operation and its (validated) input become a :class:`PreparedCall`.

Guards, all applied before anything is sent: path values are percent-encoded as one segment;
header names and values with CR, LF or NUL are refused; the final URL must stay under the
connection's base URL. ``dig`` and ``extract_records`` read values and record lists out of
response bodies.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..errors import RequestError
from ..model.manifest import MISSING, PATH_PARAM, Connector, Operation
from .body import encode_json


def _segment(value: Any, name: str) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(
        value, (dict, list)) else str(value).lower() if isinstance(value, bool) else str(value)
    if text == "":
        raise RequestError(f"path parameter '{name}' is empty")
    encoded = quote(text, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle costs ~30-60 ms each time."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(query_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_NAME = re.compile(r"[\r\n\x00:]")


def check_header(name: str, value: str) -> str:
    if _BAD_VALUE.search(value) or _BAD_NAME.search(name):
        raise RequestError(f"header '{name.strip()}' contains a line break or NUL; refused",
                           hint="header values must be a single line")
    return value


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


@functools.lru_cache(maxsize=1024)  # most operations have one URL per connection
def _under_base(url: str, base_url: str) -> bool:
    u, b = urlsplit(url), urlsplit(base_url)
    base_path = b.path.rstrip("/") + "/"
    return (u.scheme, u.hostname, u.port) == (b.scheme, b.hostname, b.port) and \
        (u.path + "/").startswith(base_path)


def ensure_under_base(url: str, base_url: str) -> None:
    """Refuse any URL that is not under ``base_url`` (scheme, host, port and path prefix)."""
    if not _under_base(url, base_url):
        b = urlsplit(base_url)
        raise RequestError(f"refusing to send a request outside the connection's base URL "
                           f"({b.scheme}://{b.netloc}{b.path or '/'})")


@functools.lru_cache(maxsize=1024)  # httpx.URL is immutable; parsing one costs ~10 µs
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


@dataclass
class PreparedCall:
    """What an operation call will send (shown by --dry-run)."""

    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    json_body: Any = MISSING
    form_body: dict[str, str] | None = None

    def to_request(self) -> httpx.Request:
        kwargs: dict[str, Any] = {"params": self.params or None, "headers": self.headers}
        if self.json_body is not MISSING:
            kwargs["content"] = encode_json(self.json_body)  # orjson (splice.http.body)
        elif self.form_body is not None:
            kwargs["data"] = self.form_body
        request = httpx.Request(self.method, _parsed_url(self.url), **kwargs)
        if self.json_body is not MISSING:
            request.headers.setdefault("Content-Type", "application/json")
        return request

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.params:
            out["query"] = self.params
        if self.json_body is not MISSING:
            out["json"] = self.json_body
        if self.form_body is not None:
            out["form"] = self.form_body
        return out


def prepare_call(op: Operation, connector: Connector, payload: Mapping[str, Any], *,
                 base_url: str, rendered_headers: Mapping[str, str] | None = None,
                 rendered_query: Mapping[str, Any] | None = None,
                 rendered_body: Any = MISSING,
                 idempotency_key: str | None = None) -> PreparedCall:
    """Build the request for ``op`` from a validated payload."""
    used = set(op.path_params)

    def fill(match: Any) -> str:
        name = match.group(1)
        if name not in payload or payload[name] is None:
            raise RequestError(f"{op.ref}: path parameter '{name}' has no value")
        return _segment(payload[name], name)

    url = join_url(base_url, PATH_PARAM.sub(fill, op.path))
    ensure_under_base(url, base_url)
    params: dict[str, str] = {}
    if rendered_query is not None:
        params = {k: query_value(v) for k, v in rendered_query.items() if v is not None}
    else:
        for name in op.query_params:
            if name in payload and payload[name] is not None:
                params[name] = query_value(payload[name])
    used.update(op.query_params)
    headers = {"Accept": "application/json", **connector.headers, **(rendered_headers or {})}
    if idempotency_key and connector.idempotency and op.method in (
            connector.idempotency.get("methods") or ["POST"]):
        headers[connector.idempotency["header"]] = idempotency_key
    for name, value in headers.items():
        check_header(name, value)
    call = PreparedCall(op.method, url, params, headers)
    if op.method in ("POST", "PUT", "PATCH"):
        if rendered_body is not MISSING:
            body = rendered_body
        else:
            body = {k: v for k, v in payload.items() if k not in used}
            body = body if body else MISSING
        if body is not MISSING:
            if op.body_encoding == "form":
                call.form_body = {k: query_value(v) for k, v in dict(body).items()
                                  if v is not None}
            else:
                call.json_body = body
    return call


def dig(data: Any, path: str) -> Any:
    """Value at a dotted path (``.`` = the data itself); None when absent."""
    if path in (".", ""):
        return data
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def extract_records(op: Operation, body: Any) -> list[Any]:
    """The records of one response page."""
    if op.records is None:
        return [body]
    node = dig(body, op.records)
    if node is None:
        return []
    return node if isinstance(node, list) else [node]

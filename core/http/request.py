"""Request building: an operation and its (validated) input become a :class:`PreparedCall`.

Guards, all applied before anything is sent: path values are percent-encoded as one segment;
header names and values with CR, LF, NUL or other control characters, and non-ASCII header
values, are refused (a :class:`~splice.errors.RequestError` fails that one event, never the
run); the URL's dot segments are removed and the result, also read with ``%2E``, ``%2F`` and
``%5C`` decoded (as a server might), must stay under the connection's base URL; a request whose
estimated JSON size passes ``SPLICE_MAX_REQUEST_BYTES`` (10 MB) is refused whole. ``dig`` and
``extract_records`` read values and record lists out of response bodies.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..errors import RequestError
from ..mapping.bounds import MAX_REQUEST_ENV, json_size, max_request_bytes
from ..model.manifest import MISSING, PATH_PARAM, Connector, Operation
from .body import encode_json
from .multipart import FilePart


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


@functools.cache
def _no_ca_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but trusts no CA at all


def tls_context_for(base_url: str) -> ssl.SSLContext:
    """The TLS context of a client whose requests all go under ``base_url`` (no auth flow
    sending token requests elsewhere): for a plain ``http://`` base (a sandbox, a loopback
    API) one that loads no CA bundle, since requests never leave the base URL and redirects
    are not followed; it still verifies, so a TLS connection it were ever asked for would
    fail closed."""
    if base_url.lower().startswith("http://"):
        return _no_ca_context()
    return tls_context()


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
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_header(name: str, value: str) -> str:
    """``value``, unless the header could not be sent as one clean line of ASCII.

    The messages name the header, never its value (it may carry a secret)."""
    shown = name.strip() if name.isascii() and name.isprintable() else "(a header)"
    if _BAD_VALUE.search(value) or _BAD_NAME.search(name):
        raise RequestError(f"header '{shown}' contains a line break or NUL; refused",
                           hint="header values must be a single line")
    if not _TOKEN.match(name):
        raise RequestError(f"header name '{shown}' has a character a header name cannot hold",
                           hint="header names are ASCII letters, digits and !#$%&'*+.^_`|~-")
    if not value.isascii():
        raise RequestError(f"header '{shown}' has a non-ASCII character; HTTP header values "
                           "must be ASCII", hint="encode the value in the template, e.g. "
                           "`{{ value | urlencode }}`, or send it in the body")
    if _CONTROL.search(value):
        raise RequestError(f"header '{shown}' contains a control character; refused")
    return value


def join_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: ``/a/b/../c/./d`` -> ``/a/c/d`` (never above the root)."""
    segments = path.split("/")
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            if segment == ".." and len(out) > 1:
                out.pop()
            if i == last:
                out.append("")
            continue
        out.append(segment)
    return "/".join(out)


_DECODED = re.compile(r"%(2[eEfF]|5[cC])")


def _decoded(path: str) -> str:
    """``%2E``, ``%2F`` and ``%5C`` decoded, and ``\\`` read as ``/`` (as some servers do)."""
    return _DECODED.sub(lambda m: chr(int(m.group(1), 16)), path).replace("\\", "/")


@functools.lru_cache(maxsize=1024)  # pure; an operation without path parameters has one URL
def normalize_url(url: str) -> str:
    """The URL with the dot segments of its path removed (what a server would resolve)."""
    parts = urlsplit(url)
    path = remove_dot_segments(parts.path)
    return url if path == parts.path else parts._replace(path=path).geturl()


@functools.lru_cache(maxsize=1024)  # most operations have one URL per connection
def _under_base(url: str, base_url: str) -> bool:
    u, b = urlsplit(url), urlsplit(base_url)
    base_path = remove_dot_segments(b.path).rstrip("/") + "/"
    if (u.scheme, u.hostname, u.port) != (b.scheme, b.hostname, b.port):
        return False
    return all((remove_dot_segments(path) + "/").startswith(base_path)
               for path in (u.path, _decoded(u.path)))


def ensure_under_base(url: str, base_url: str) -> None:
    """Refuse any URL that is not under ``base_url`` (scheme, host, port and path prefix)."""
    if not _under_base(url, base_url):
        b = urlsplit(base_url)
        raise RequestError(f"refusing to send a request outside the connection's base URL "
                           f"({b.scheme}://{b.netloc}{b.path or '/'})")


@functools.lru_cache(maxsize=1024)  # httpx.URL is immutable; parsing one costs ~10 µs
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)


#: headers httpx adds to a request built from ``content``
_AUTO_HEADERS = frozenset(("host", "content-length", "transfer-encoding"))


def _json_request(method: str, url: httpx.URL, params: dict[str, str],
                  headers: dict[str, str], typed: bool, content: bytes) -> httpx.Request:
    """``httpx.Request(method, url, params=..., headers=..., content=content)`` with a JSON
    ``Content-Type`` unless ``typed``, built the way httpx documents for a request whose
    headers are complete (``stream=``): the same headers in the same order (``Host`` first,
    ``Content-Length`` last) and the body read, without the two header-list rebuilds and the
    look-ups ``content=`` costs (~9.5 -> ~3 µs a request; tests/test_requests.py compares
    the two)."""
    if params:
        url = url.copy_merge_params(params)
    full = [("Host", url.netloc.decode("ascii")), *headers.items()]
    if not typed:
        full.append(("Content-Type", "application/json"))
    full.append(("Content-Length", str(len(content))))
    request = httpx.Request(method, url, headers=full, stream=httpx.ByteStream(content))
    request.read()  # as httpx does for a body given whole: ``request.content`` works
    return request


@dataclass
class PreparedCall:
    """What an operation call will send (shown by --dry-run)."""

    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    json_body: Any = MISSING
    form_body: dict[str, str] | None = None
    files: list[FilePart] | None = None   # multipart: file parts (form_body: the fields)
    content: bytes | None = field(default=None, repr=False)  # json_body, encoded once

    def to_request(self) -> httpx.Request:
        kwargs: dict[str, Any] = {"params": self.params or None, "headers": self.headers}
        if self.json_body is not MISSING:
            if self.content is None:
                self.content = encode_json(self.json_body)  # orjson (splice.http.body)
            names = {name.lower() for name in self.headers}
            if not names & _AUTO_HEADERS:
                return _json_request(self.method, _parsed_url(self.url), self.params,
                                     self.headers, "content-type" in names, self.content)
            kwargs["content"] = self.content
            if "content-type" not in names:
                kwargs["headers"] = {**self.headers, "Content-Type": "application/json"}
        elif self.files is not None:
            kwargs["data"] = self.form_body or {}
            # a list keeps one part per entry, even for an empty field set
            kwargs["files"] = [(part.name, part.read()) for part in self.files]
        elif self.form_body is not None:
            kwargs["data"] = self.form_body
        return httpx.Request(self.method, _parsed_url(self.url), **kwargs)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.params:
            out["query"] = self.params
        if self.json_body is not MISSING:
            out["json"] = self.json_body
        if self.files is not None:
            out["multipart"] = {"fields": self.form_body or {},
                                "files": {p.name: p.describe() for p in self.files}}
        elif self.form_body is not None:
            out["form"] = self.form_body
        return out


class CallTemplate:
    """What building a request for one operation under one base URL always gives, worked out
    once: the URL of a path without parameters (normalized, checked under the base), the
    ``Accept`` and connector headers (checked), the idempotency header's name for this
    method, the inputs that are not body fields. A run keeps one per operation and base URL;
    :meth:`prepare` builds each call from it (a run's ``prepare``: ~6.3 -> ~5.2 µs a call)."""

    def __init__(self, op: Operation, connector: Connector, base_url: str) -> None:
        self.op = op
        self.base_url = base_url
        self.used = frozenset((*op.path_params, *op.query_params))
        self.url: str | None = None
        if not op.path_params:
            self.url = normalize_url(join_url(base_url, op.path))
            ensure_under_base(self.url, base_url)
        self.headers = {"Accept": "application/json", **connector.headers}
        for name, value in self.headers.items():
            check_header(name, value)
        idempotency = connector.idempotency or {}
        self.idempotency_header: str | None = idempotency.get("header") if op.method in (
            idempotency.get("methods") or ["POST"]) else None

    def prepare(self, payload: Mapping[str, Any], *,
                rendered_headers: Mapping[str, str] | None = None,
                rendered_query: Mapping[str, Any] | None = None,
                rendered_body: Any = MISSING,
                idempotency_key: str | None = None) -> PreparedCall:
        """The request for a validated payload (refused whole, before anything is sent,
        when it is too big or would leave the base URL)."""
        op, limit = self.op, max_request_bytes()
        json_body = op.body_encoding not in ("form", "multipart")
        if not json_body and json_size([payload, rendered_headers, rendered_query, None if
                                        rendered_body is MISSING else rendered_body],
                                       limit) > limit:
            raise _too_big(op, limit)
        url = self.url
        if url is None:
            def fill(match: Any) -> str:
                name = match.group(1)
                if name not in payload or payload[name] is None:
                    raise RequestError(f"{op.ref}: path parameter '{name}' has no value")
                return _segment(payload[name], name)

            url = normalize_url(join_url(self.base_url, PATH_PARAM.sub(fill, op.path)))
            ensure_under_base(url, self.base_url)
        params: dict[str, str] = {}
        if rendered_query is not None:
            params = {k: query_value(v) for k, v in rendered_query.items() if v is not None}
        else:
            for name in op.query_params:
                if name in payload and payload[name] is not None:
                    params[name] = query_value(payload[name])
        headers = self.headers
        if rendered_headers:
            for name, value in rendered_headers.items():
                check_header(name, value)
            headers = {**headers, **rendered_headers}
        if idempotency_key and self.idempotency_header:
            headers = {**headers, self.idempotency_header:
                       check_header(self.idempotency_header, idempotency_key)}
        elif headers is self.headers:
            headers = dict(headers)  # the call's own (the runner adds to what it records)
        call = PreparedCall(op.method, url, params, headers)
        if op.method in ("POST", "PUT", "PATCH"):
            if rendered_body is not MISSING:
                body = rendered_body
            else:
                body = {k: v for k, v in payload.items() if k not in self.used}
                body = body if body else MISSING
            if op.body_encoding == "multipart":
                fields = dict(body) if isinstance(body, Mapping) else {}
                call.files = [FilePart.from_input(name, fields.pop(name)) for name in op.files
                              if fields.get(name) is not None]
                call.form_body = {k: query_value(v) for k, v in fields.items()
                                  if v is not None}
            elif body is not MISSING:
                if op.body_encoding == "form":
                    call.form_body = {k: query_value(v) for k, v in dict(body).items()
                                      if v is not None}
                else:
                    call.json_body = body
                    try:
                        call.content = encode_json(body)
                    except (TypeError, ValueError) as exc:
                        raise RequestError(f"{op.ref}: the request cannot be built "
                                           f"({type(exc).__name__}); nothing was sent") from None
        if json_body and len(url) + len(call.content or b"") + sum(
                len(k) + len(v) + 4 for k, v in (*headers.items(), *params.items())) > limit:
            raise _too_big(op, limit)  # what would be sent, measured exactly
        return call


def prepare_call(op: Operation, connector: Connector, payload: Mapping[str, Any], *,
                 base_url: str, rendered_headers: Mapping[str, str] | None = None,
                 rendered_query: Mapping[str, Any] | None = None,
                 rendered_body: Any = MISSING,
                 idempotency_key: str | None = None) -> PreparedCall:
    """Build the request for ``op`` from a validated payload (see :class:`CallTemplate`)."""
    return CallTemplate(op, connector, base_url).prepare(
        payload, rendered_headers=rendered_headers, rendered_query=rendered_query,
        rendered_body=rendered_body, idempotency_key=idempotency_key)


def _too_big(op: Operation, limit: int) -> RequestError:
    return RequestError(f"{op.ref}: the request would be larger than {limit:,} bytes; "
                        f"nothing was sent (limit: {MAX_REQUEST_ENV})")


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

"""Follow every page of a list operation, one page at a time (memory stays flat).

Kinds: ``offset`` (skip/limit), ``page`` (page number), ``cursor`` (from the body or a header),
``next_url`` (from the body) and ``link`` (RFC 8288 ``Link: <...>; rel="next"``). Every kind stops
on an empty page, and a guard stops a loop that serves the same cursor, URL or page twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from .errors import HTTPError
from .http import PreparedCall, dig, ensure_under_base, extract_records
from .manifest import Operation

if TYPE_CHECKING:
    from .http import ApiClient

log = logging.getLogger("splice.pagination")


class PaginationLoop(HTTPError):
    """The API served the same page twice; following it would never end."""


def paginate(client: ApiClient, op: Operation, call: PreparedCall, *,
             max_pages: int | None = None, start_state: Any = None
             ) -> Iterator[tuple[Any, list[Any]]]:
    """Yield ``(body, records)`` per page. Without pagination: one page."""
    spec = op.pagination or {}
    kind = spec.get("type")
    limit = max_pages or spec.get("max_pages")
    size = spec.get("page_size")
    params = dict(call.params)
    if size and spec.get("limit_param") and spec["limit_param"] not in params:
        params[spec["limit_param"]] = str(size)
    seen: set[str] = set()
    pages = 0
    offset = int(spec.get("start", 0)) if kind == "offset" else int(spec.get("start", 1))
    url = call.url
    while True:
        if kind == "offset":
            params[spec["offset_param"]] = str(offset)
        elif kind == "page":
            params[spec["page_param"]] = str(offset)
        marker = f"{url}?{sorted(params.items())}"
        if marker in seen:
            raise PaginationLoop(f"{op.ref}: the API returned the same page twice; "
                                 "stopped following pages to avoid an endless loop")
        seen.add(marker)
        result = client.send(op, replace(call, url=url, params=dict(params)))
        body = result.json()
        records = extract_records(op, body)
        pages += 1
        yield body, records
        if not kind or not records or (limit and pages >= limit):
            return
        if kind in ("offset", "page"):
            total = dig(body, spec["total_path"]) if spec.get("total_path") else None
            if kind == "offset":
                offset += len(records)
                if isinstance(total, (int, float)) and offset >= total:
                    return
            else:
                offset += 1
            if size and len(records) < size and not isinstance(total, (int, float)):
                return
        elif kind == "cursor":
            if spec.get("has_more_path") and dig(body, spec["has_more_path"]) is False:
                return
            cursor = (result.response.headers.get(spec["cursor_header"])
                      if spec.get("cursor_header") else dig(body, spec["cursor_path"]))
            if cursor in (None, ""):
                return
            params[spec["cursor_param"]] = str(cursor)
        elif kind == "next_url":
            nxt = dig(body, spec["next_url_path"])
            if not nxt:
                return
            url = urljoin(call.url, str(nxt))
            ensure_under_base(url, client.base_url)
            params = {}
        elif kind == "link":
            nxt = result.response.links.get("next", {}).get("url")
            if not nxt:
                return
            url = urljoin(call.url, nxt)
            ensure_under_base(url, client.base_url)
            params = {}

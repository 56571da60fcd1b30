"""Follow every page of a list operation, one page at a time (memory stays flat).

Kinds (the manifest's ``pagination.type``):

``offset``    skip/limit: ``offset_param`` grows by the records received
``page``      page number: ``page_param`` grows by one
``cursor``    the next cursor from the body (``cursor_path``) or a header (``cursor_header``),
              sent back in ``cursor_param``; ``has_more_path`` false also ends the list
``next_url``  the next page's URL from the body (``next_url_path``), relative or absolute
``link``      RFC 8288 ``Link: <...>; rel="next"``

Every kind stops on an empty page; offset and page stop on a short page or when
``total_path`` says everything was read. Guards: a cursor or URL served twice, or a page
identical to the one before (an API that ignores the page parameter), stops with a warning
(following it would only fetch pages already read). ``max_pages`` bounds one run (default: the
manifest's ``max_pages``, else :data:`DEFAULT_MAX_PAGES`, 1,000); each :class:`Page` carries
``next``, a JSON checkpoint from which ``paginate(resume=...)`` continues.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urljoin

from ..model.manifest import Operation
from .request import PreparedCall, dig, ensure_under_base, extract_records, normalize_url

log = logging.getLogger("splice.pagination")
DEFAULT_MAX_PAGES = 1000


class PageSender(Protocol):
    """What pagination needs of a client (``ApiClient`` is one)."""

    base_url: str

    def send(self, op: Operation, call: PreparedCall) -> Any: ...


@dataclass
class Page:
    """One page: the body, its records, its number in this run (from 1), and ``next``, the
    checkpoint of the following page (None when this is the last one)."""

    body: Any
    records: list[Any]
    number: int
    next: dict[str, Any] | None


def _same_page(a: list[Any], b: list[Any] | None) -> bool:
    """Whether two pages look identical (same length, same first and last record)."""
    return b is not None and len(a) == len(b) and bool(a) and a[0] == b[0] and a[-1] == b[-1]


class _State:
    """Where the next request goes; serialises to and from a checkpoint."""

    def __init__(self, op: Operation, call: PreparedCall, client: PageSender) -> None:
        spec = op.pagination or {}
        self.spec = spec
        self.kind: str | None = spec.get("type")
        self.url = call.url
        self.params = dict(call.params)
        self.size = spec.get("page_size")
        if self.size and spec.get("limit_param") and spec["limit_param"] not in self.params:
            self.params[spec["limit_param"]] = str(self.size)
        self.position = int(spec.get("start", 0 if self.kind == "offset" else 1))
        self.fetched = 0  # records read in this run (the ``total`` stop condition)
        self.client = client
        self.call = call
        if self.kind == "offset":
            self.params[spec["offset_param"]] = str(self.position)
        elif self.kind == "page":
            self.params[spec["page_param"]] = str(self.position)

    def checkpoint(self) -> dict[str, Any]:
        if self.kind == "offset":
            return {"offset": self.position, "fetched": self.fetched}
        if self.kind == "page":
            return {"page": self.position, "fetched": self.fetched}
        if self.kind == "cursor":
            return {"cursor": self.params.get(self.spec["cursor_param"])}
        return {"url": self.url, "params": self.params}

    def restore(self, token: Mapping[str, Any]) -> bool:
        """Continue from a checkpoint; False (start over) if it does not fit this kind."""
        try:
            if self.kind == "offset" and "offset" in token:
                self.position = int(token["offset"])
                self.params[self.spec["offset_param"]] = str(self.position)
            elif self.kind == "page" and "page" in token:
                self.position = int(token["page"])
                self.params[self.spec["page_param"]] = str(self.position)
            elif self.kind == "cursor" and token.get("cursor") not in (None, ""):
                self.params[self.spec["cursor_param"]] = str(token["cursor"])
            elif self.kind in ("next_url", "link") and isinstance(token.get("url"), str):
                ensure_under_base(token["url"], self.client.base_url)
                self.url = token["url"]
                self.params = {str(k): str(v) for k, v in (token.get("params") or {}).items()}
            else:
                return False
            self.fetched = int(token.get("fetched", 0))
        except (TypeError, ValueError):
            return False
        return True

    def advance(self, body: Any, records: list[Any], response: Any) -> bool:
        """Move to the following page; False when this page was the last."""
        spec, kind = self.spec, self.kind
        self.fetched += len(records)
        if not kind or not records:
            return False
        if kind in ("offset", "page"):
            total = dig(body, spec["total_path"]) if spec.get("total_path") else None
            if isinstance(total, (int, float)) and not isinstance(total, bool):
                if self.fetched >= total:
                    return False
            elif self.size and len(records) < self.size:
                return False
            if kind == "offset":
                self.position += len(records)
                self.params[spec["offset_param"]] = str(self.position)
            else:
                self.position += 1
                self.params[spec["page_param"]] = str(self.position)
            return True
        if kind == "cursor":
            if spec.get("has_more_path") and dig(body, spec["has_more_path"]) is False:
                return False
            cursor = (response.headers.get(spec["cursor_header"]) if spec.get("cursor_header")
                      else dig(body, spec["cursor_path"]))
            if cursor in (None, ""):
                return False
            self.params[spec["cursor_param"]] = str(cursor)
            return True
        if kind == "next_url":
            nxt = dig(body, spec["next_url_path"])
        else:  # link
            nxt = response.links.get("next", {}).get("url")
        if not nxt:
            return False
        self.url = normalize_url(urljoin(self.url, str(nxt)))
        ensure_under_base(self.url, self.client.base_url)
        self.params = {}
        return True

    def marker(self) -> str:
        """Identity of the next request (the same-cursor / same-URL guard)."""
        raw = json.dumps([self.url, sorted(self.params.items())])
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def paginate(client: PageSender, op: Operation, call: PreparedCall, *,
             max_pages: int | None = None, resume: Mapping[str, Any] | None = None
             ) -> Iterator[Page]:
    """Yield every page of ``op`` (one page when it declares no pagination)."""
    state = _State(op, call, client)
    if resume and not state.restore(resume):
        log.warning("%s: ignoring a checkpoint that does not fit %s pagination; starting from "
                    "the first page", op.ref, state.kind)
    limit = max_pages or state.spec.get("max_pages") or DEFAULT_MAX_PAGES
    seen = {state.marker()}
    previous: list[Any] | None = None
    number = 0
    while True:
        result = client.send(op, replace(call, url=state.url, params=dict(state.params)))
        body = result.json()
        records = extract_records(op, body)
        number += 1
        more = state.advance(body, records, result.response)
        if more and state.kind in ("offset", "page") and _same_page(records, previous):
            log.warning("%s: page %d repeats the page before it (the API seems to ignore "
                        "the %s parameter); stopped following pages", op.ref, number,
                        state.spec.get("offset_param") or state.spec.get("page_param"))
            yield Page(body, [], number, None)  # its records were all on the previous page
            return
        previous = records if state.kind in ("offset", "page") else None
        if more and state.kind in ("cursor", "next_url", "link"):
            marker = state.marker()
            if marker in seen:
                log.warning("%s: the API sent a %s it already sent; stopped following pages "
                            "to avoid an endless loop", op.ref,
                            "cursor" if state.kind == "cursor" else "next-page URL")
                more = False
            seen.add(marker)
        yield Page(body, records, number, state.checkpoint() if more else None)
        if not more:
            return
        if number >= limit:
            log.log(logging.INFO if max_pages else logging.WARNING,
                    "%s: stopped after %d pages (the page limit); the next poll continues from "
                    "there", op.ref, limit)
            return

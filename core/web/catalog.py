"""The catalog at ``/catalog``: every connector's operations and triggers, searchable.

``GET /catalog`` lists them all (``q``: words that must each start a word of the id,
title, description, path, scopes or field names; ``connector``, ``scope`` and ``kind`` filter), as a
page or, for htmx (``HX-Request``), just the results table, so the filter form updates the
list as the person types. ``GET /catalog/{connector}/{id}`` shows one: its scopes, request,
input and output fields (from the JSON Schemas) and a sample record. The entries are built
once per registry from the manifests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..model.examples import example
from ..model.fields import Field, fields
from ..model.manifest import MISSING, Connector

__all__ = ["Entry", "catalog", "routes", "search"]

KINDS = ("action", "trigger")
_WORD = re.compile(r"[a-z0-9]+")  # ids split at _ . / - too: "tag" finds tag_created


@dataclass
class Entry:
    """One operation (``kind`` action) or trigger of a connector, as the catalog shows it."""

    connector: str
    connector_name: str
    kind: str
    id: str
    title: str
    description: str
    scopes: list[str]
    request: str                  # "GET /path", "polls list_tags", "webhook", "engine event"
    input: list[Field] = field(default_factory=list)
    output: list[Field] = field(default_factory=list)
    sample: Any = None
    deprecated: bool = False
    text: str = ""                # " word word ...": a query word matches a word's start

    @property
    def ref(self) -> str:
        return f"{self.connector}.{self.id}"

    @property
    def app(self) -> str:
        """The connector's short name: "HighLevel" of "HighLevel (Users + Social Planner)"."""
        return self.connector_name.split(" (")[0]

    @property
    def href(self) -> str:
        return f"/catalog/{self.connector}/{self.id}"

    @property
    def sample_json(self) -> str:
        return json.dumps(self.sample, indent=2, default=str, ensure_ascii=False)


def _names(tree: list[Field]) -> list[str]:
    return [f.path for top in tree for _depth, f in top.walk()]


def _entries(connector: Connector) -> list[Entry]:
    out = []
    for op in connector.operations.values():
        sample = op.sample if op.sample is not MISSING else example(op.record_schema)
        entry = Entry(connector.id, connector.name, "action", op.id, op.title or op.id,
                      op.description, list(op.scopes), f"{op.method} {op.path}",
                      fields(op.input), fields(op.output), sample, op.deprecated)
        out.append(entry)
    for trig in connector.triggers.values():
        listing = connector.operations.get(trig.operation or "")
        output = connector.trigger_output(trig)
        sample = trig.sample if trig.sample is not MISSING else example(output)
        request = {"webhook": "webhook delivery", "event": "engine event"}.get(
            trig.type, f"polls {trig.operation}" if trig.operation else trig.type)
        entry = Entry(connector.id, connector.name, "trigger", trig.id, trig.title or trig.id,
                      trig.description,
                      list(listing.scopes if listing is not None else trig.scopes),
                      request, fields(listing.input) if listing is not None else [],
                      fields(output),
                      sample)
        out.append(entry)
    for entry in out:
        entry.text = " " + " ".join(_WORD.findall(" ".join([
            entry.ref, entry.title, entry.description, entry.request, entry.connector_name,
            *entry.scopes, *_names(entry.input), *_names(entry.output)]).lower()))
    return out


_CACHE: dict[int, list[Entry]] = {}


def catalog(registry: Any) -> list[Entry]:
    """Every entry of every installed connector (built once per registry)."""
    key = id(registry)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = [e for c in registry.connectors.values() for e in _entries(c)]
    return _CACHE[key]


def search(entries: list[Entry], *, q: str = "", connector: str = "", scope: str = "",
           kind: str = "") -> list[Entry]:
    """The entries where every word of ``q`` starts a word of theirs (``tag`` finds
    ``tag_created`` and ``tags``, not ``instagram``), and each filter given; an entry whose
    id is the query comes first, then those whose id holds it."""
    words = [" " + w for w in _WORD.findall(q.lower())]
    found = [e for e in entries
             if (not connector or e.connector == connector)
             and (not scope or scope in e.scopes)
             and (not kind or e.kind == kind)
             and all(w in e.text for w in words)]
    wanted = q.strip().lower()
    if wanted:  # an exact id first, then ids holding the query, in catalog order
        found.sort(key=lambda e: (wanted not in (e.id, e.ref), wanted not in e.ref))
    return found


def routes(dash: Any) -> list[BaseRoute]:
    def index(request: Request) -> Response:
        entries = catalog(dash.registry)
        params = request.query_params
        query = {"q": params.get("q", "")[:200], "connector": params.get("connector", ""),
                 "scope": params.get("scope", ""), "kind": params.get("kind", "")}
        found = search(entries, **query)
        connectors = sorted({(e.connector, e.connector_name) for e in entries})
        scopes = sorted({s for e in entries for s in e.scopes
                         if not query["connector"] or e.connector == query["connector"]})
        context = {"entries": found, "total": len(entries), "query": query,
                   "connectors": connectors, "scopes": scopes, "kinds": KINDS}
        if request.headers.get("hx-request") and not request.headers.get("hx-boosted"):
            return dash.render(request, "catalog/_results.html", context)
        return dash.render(request, "catalog/index.html", context)

    def detail(request: Request) -> Response:
        cid, eid = request.path_params["connector"], request.path_params["entry"]
        entry = next((e for e in catalog(dash.registry)
                      if e.connector == cid and e.id == eid), None)
        if entry is None:
            return dash.render(request, "catalog/missing.html", {"ref": f"{cid}.{eid}"},
                               status=404)
        usable = [r.name for r in dash.store.list_connections() if r.connector == cid]
        return dash.render(request, "catalog/detail.html", {"entry": entry,
                                                            "connections": usable})

    return [Route("/catalog", index, methods=["GET"]),
            Route("/catalog/{connector}/{entry}", detail, methods=["GET"])]

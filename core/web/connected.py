"""Connected apps: ``/connections``, one connection's page, OAuth in the browser, endpoints.

- ``GET /connections``: each connection with its status (valid / expiring / expired /
  re-auth needed, :func:`splice.connections.status.token_state`), scopes granted vs needed
  by the registered recipes, token expiry and last refresh; a "Connect" form per OAuth app.
- ``POST /connections/connect`` and ``POST /connections/{name}/reauth`` start the same flow
  as ``splice connect`` (:func:`splice.connections.authorize.begin`: state, PKCE, consent
  URL); the settings come from :func:`~splice.connections.authorize.renewal` (the
  connection being renewed, else the form, else ``SPLICE_<CONNECTOR>_CLIENT_ID/SECRET``).
  The answer is a page that follows a link to the consent page (a form may not redirect to
  another origin under the CSP's ``form-action 'self'``; a link may).
- ``GET /oauth/callback``: the provider's redirect; the ``state`` must name an
  authorization this session started (:class:`PendingAuthorizations`, 10 minutes, one use),
  then :func:`~splice.connections.authorize.finish` exchanges and stores, and the browser
  goes back to the connection's page with a message.
- ``GET /connections/{name}``: status, scopes, token fields, the endpoints it may use with
  enable/disable toggles (``POST /connections/{name}/endpoints/{id}``), the registered
  recipes a disabled endpoint refuses.

Nothing secret is rendered: no token, code, client secret or Authorization value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..connections.authorize import PendingAuthorizations, begin, finish, renewal
from ..connections.endpoints import list_endpoints, set_enabled
from ..connections.status import default_scopes, token_state
from ..errors import SpliceError
from ..store.endpoints import disabled, disabled_by_connection
from . import testcall
from .formdata import form_data

__all__ = ["routes"]

CALLBACK = "/oauth/callback"
FORM_KEYS = ("connector", "name", "base_url", "client_id", "scopes")


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(float(value), UTC)
        return datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        return None


def href(name: str, *rest: str) -> str:
    return "/".join(["/connections", quote(name, safe=""), *[quote(r, safe="") for r in rest]])


class _Views:
    def __init__(self, dash: Any) -> None:
        self.dash = dash
        self.pending = PendingAuthorizations()

    # -- data -------------------------------------------------------------------------------
    def needed(self) -> dict[str, set[str]]:
        """connection -> scopes the registered recipes need from it."""
        out: dict[str, set[str]] = {}
        for loaded in self.dash.service.book.recipes.values():
            if loaded.plan is not None:
                for name, scopes in loaded.plan.required_scopes.items():
                    out.setdefault(name, set()).update(scopes)
        return out

    def summary(self, record: Any, needed: set[str]) -> dict[str, Any]:
        state, words = token_state(record)
        granted = list(record.scopes)
        config = record.config
        return {"name": record.name, "href": href(record.name), "connector": record.connector,
                "auth": record.auth_type, "state": state, "words": words,
                "granted": granted, "needed": sorted(needed),
                "missing": sorted(s for s in needed if s not in granted),
                "expires_at": _when(config.get("expires_at")),
                "last_refresh_at": _when(config.get("last_refresh_at")),
                "connected_at": _when(config.get("connected_at")),
                "last_error": config.get("last_error"),
                "base_url": record.base_url, "fields": dict(config.get("fields") or {}),
                "reauth": record.auth_type == "oauth2" and state in (
                    "reauth_required", "expired", "refresh_interrupted")}

    def oauth_apps(self) -> list[dict[str, Any]]:
        apps = []
        for c in self.dash.registry.connectors.values():
            if c.auth_type == "oauth2":
                apps.append({"id": c.id, "name": c.name, "scopes": c.scopes,
                             "default_scopes": " ".join(default_scopes(c))})
        return apps

    def refused(self, name: str) -> list[dict[str, str]]:
        """Registered recipes using ``name`` that a disabled endpoint refuses."""
        off = disabled_by_connection(self.dash.store)
        out = []
        for loaded in self.dash.service.book.recipes.values():
            plan = loaded.plan
            if plan is not None and name in plan.required_scopes:
                why = plan.refused({name: off.get(name, set())})
                if why:
                    out.append({"id": loaded.id, "name": loaded.name, "why": why})
        return out

    # -- pages ------------------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        needed = self.needed()
        rows = [self.summary(r, needed.get(r.name, set()))
                for r in self.dash.store.list_connections()]
        return self.dash.render(request, "connections/index.html",
                                {"connections": rows, "apps": self.oauth_apps(),
                                 "form": dict.fromkeys(FORM_KEYS, ""), "problem": None})

    def detail(self, request: Request) -> Response:
        name = request.path_params["name"]
        record = self.dash.store.get_connection(name)
        if record is None:
            return self.dash.render(request, "connections/missing.html", {"name": name},
                                    status=404)
        connector = self.dash.registry.connectors.get(record.connector)
        endpoints = list_endpoints(connector, record, disabled(self.dash.store, name)) \
            if connector is not None else []
        return self.dash.render(request, "connections/detail.html", {
            "c": self.summary(record, self.needed().get(name, set())),
            "connector": connector, "endpoints": endpoints, "refused": self.refused(name),
            "call_href": lambda op: href(name, "call", op)})

    # -- OAuth ------------------------------------------------------------------------------
    def _owner(self, request: Request) -> str:
        return str((request.scope.get("session") or {}).get("csrf") or "")

    def _start(self, request: Request, connector: Any, settings: dict[str, Any]) -> Response:
        auth = begin(connector, redirect_uri=self.dash.service.config.url + CALLBACK,
                     owner=self._owner(request), **settings)
        self.pending.add(auth)
        return self.dash.render(request, "connections/continue.html",
                                {"app": connector.name, "url": auth.url, "name": auth.name})

    async def connect(self, request: Request) -> Response:
        form = await form_data(request)
        values = {k: str(form.get(k) or "") for k in FORM_KEYS}
        return await run_in_threadpool(self._connect, request, values,
                                       str(form.get("client_secret") or ""),
                                       bool(form.get("allow_private_network")))

    def _connect(self, request: Request, values: dict[str, str], client_secret: str,
                 allow_private_network: bool) -> Response:
        connector = self.dash.registry.connectors.get(values["connector"])
        try:
            if connector is None or connector.auth_type != "oauth2":
                raise SpliceError("choose an app that connects with OAuth")
            settings = renewal(connector, self.dash.store, values["name"].strip(),
                               client_id=values["client_id"],
                               client_secret=client_secret,
                               scopes=values["scopes"].split(), base_url=values["base_url"],
                               allow_private_network=allow_private_network)
            return self._start(request, connector, settings)
        except SpliceError as exc:
            needed = self.needed()
            rows = [self.summary(r, needed.get(r.name, set()))
                    for r in self.dash.store.list_connections()]
            return self.dash.render(request, "connections/index.html", {
                "connections": rows, "apps": self.oauth_apps(), "form": values,
                "problem": exc.message + (f" ({exc.hint})" if exc.hint else "")}, status=400)

    def reauth(self, request: Request) -> Response:
        name = request.path_params["name"]
        record = self.dash.store.get_connection(name)
        connector = self.dash.registry.connectors.get(record.connector) if record else None
        if record is None or connector is None or connector.auth_type != "oauth2":
            self.dash.flash(request, f"'{name}' is not an OAuth connection splice can renew",
                            "error")
            return RedirectResponse("/connections", status_code=303)
        try:
            settings = renewal(connector, self.dash.store, name)
        except SpliceError as exc:
            self.dash.flash(request, exc.message, "error")
            return RedirectResponse(href(name), status_code=303)
        return self._start(request, connector, settings)

    def callback(self, request: Request) -> Response:
        params = {k: v[:2000] for k, v in request.query_params.items()}
        auth = self.pending.take(params.get("state", ""), self._owner(request))
        if auth is None:
            self.dash.flash(request, "This answer does not belong to a connection started in "
                                     "this browser in the last 10 minutes; nothing was "
                                     "stored. Connect again.", "error")
            return RedirectResponse("/connections", status_code=303)
        try:
            result = finish(auth, self.dash.store, params)
        except SpliceError as exc:
            self.dash.flash(request, f"{auth.connector.name}: {exc.message}", "error")
            return RedirectResponse("/connections", status_code=303)
        missing = [s for s in auth.scopes if s not in result.scopes]
        self.dash.flash(request, f"Connected '{auth.name}' ({auth.connector.name}); "
                                 f"{len(result.scopes)} scope(s) granted"
                        + (f"; not granted: {' '.join(missing)}" if missing else ""))
        return RedirectResponse(href(auth.name), status_code=303)

    # -- endpoints --------------------------------------------------------------------------
    async def toggle(self, request: Request) -> Response:
        form = await form_data(request)
        return await run_in_threadpool(self._toggle, request, str(form.get("enabled")) == "1")

    def _toggle(self, request: Request, enabled: bool) -> Response:
        name, endpoint = request.path_params["name"], request.path_params["endpoint"]
        record = self.dash.store.get_connection(name)
        connector = self.dash.registry.connectors.get(record.connector) if record else None
        if record is None or connector is None:
            return self.dash.render(request, "connections/missing.html", {"name": name},
                                    status=404)
        try:
            eid, changed = set_enabled(self.dash.store, connector, record, endpoint, enabled)
        except SpliceError as exc:
            self.dash.flash(request, exc.message, "error")
            return RedirectResponse(href(name), status_code=303)
        state = "enabled" if enabled else "disabled"
        self.dash.flash(request, f"{connector.id}.{eid} {state} for '{name}'"
                        + ("" if changed else " (it already was)"))
        return RedirectResponse(href(name) + f"#endpoint-{eid}", status_code=303)


def routes(dash: Any) -> list[BaseRoute]:
    views = _Views(dash)
    return [Route("/connections", views.index, methods=["GET"]),
            Route("/connections/connect", views.connect, methods=["POST"]),
            Route(CALLBACK, views.callback, methods=["GET"]),
            Route("/connections/{name}", views.detail, methods=["GET"]),
            Route("/connections/{name}/reauth", views.reauth, methods=["POST"]),
            Route("/connections/{name}/endpoints/{endpoint}", views.toggle, methods=["POST"]),
            *testcall.routes(dash)]

"""The dashboard's page registry and renderer.

:class:`Dashboard` is built by the serve process with its ``Service`` (store, plugin registry,
recipe book, scheduler, config). Each page module in ``PAGES`` contributes routes through
``routes(dash)``; handlers render templates from ``web/templates`` with :meth:`render`, which
adds what every page shows: the CSRF token, the re-authentication banner (connections whose
refresh token expired or was revoked), the active navigation section and flash messages.
Templates autoescape everything; no page renders a secret (connections are shown through
their public fields only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..connections.status import token_state
from . import budget, charts, home, runs, signin

__all__ = ["NAV", "PAGES", "Dashboard"]

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PAGES: tuple[ModuleType, ...] = (signin, home, runs, budget, charts)
# (section, label, href): the navigation bar, in order
NAV = (("home", "Overview", "/"), ("catalog", "Catalog", "/catalog"),
       ("connections", "Connected apps", "/connections"), ("recipes", "Recipes", "/recipes"),
       ("runs", "Runs", "/runs"), ("budget", "Budget", "/budget"))
REAUTH_STATES = frozenset({"reauth_required"})


@pass_context
def _csrf_field(context: Any) -> Markup:
    token = context.get("csrf", "")
    return Markup('<input type="hidden" name="csrf" value="{}">').format(token)


class Dashboard:
    """The dashboard of one serve process (see the module docstring)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                               autoescape=select_autoescape(default=True,
                                                            default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(csrf_field=_csrf_field, nav_items=NAV)
        self.closers: list[Callable[[], None]] = []  # run by close(): long-lived streams end

    def close(self) -> None:
        """End what pages keep open (live streams): serve is stopping."""
        for close in self.closers:
            close()

    @property
    def store(self) -> Any:
        return self.service.store

    @property
    def registry(self) -> Any:
        return self.service.registry

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Mount("/static", StaticFiles(directory=STATIC),
                                         name="static")]
        for module in PAGES:
            routes.extend(module.routes(self))
        return routes

    # -- rendering --------------------------------------------------------------------------
    def render(self, request: Request, template: str, context: dict[str, Any] | None = None,
               *, status: int = 200) -> HTMLResponse:
        session = request.scope.get("session") or {}
        flashes = session.pop("flashes", []) if session else []
        ctx = {"request": request, "csrf": session.get("csrf", ""),
               "signed_in": bool(session.get("user")), "nav": self.section(request.url.path),
               "banner": self.banner() if session.get("user") else [], "flashes": flashes,
               **(context or {})}
        return HTMLResponse(self.env.get_template(template).render(ctx), status_code=status)

    def fragment(self, template: str, context: dict[str, Any]) -> str:
        """A template rendered without the page context (htmx partials, SSE messages)."""
        return self.env.get_template(template).render(context)

    @staticmethod
    def flash(request: Request, message: str, kind: str = "ok") -> None:
        """Show ``message`` on the next page this browser renders."""
        session = request.scope.get("session")
        if session is not None and session.get("user"):
            session["flashes"] = [*session.get("flashes", []), {"kind": kind,
                                                                "text": message[:500]}]

    @staticmethod
    def section(path: str) -> str:
        for section, _label, href in NAV:
            if href != "/" and (path == href or path.startswith(href + "/")):
                return section
        return "home" if path == "/" else ""

    def banner(self) -> list[dict[str, str]]:
        """Connections that need the person to sign in to the app again."""
        out = []
        for record in self.store.list_connections():
            state, words = token_state(record)
            if state in REAUTH_STATES:
                out.append({"name": record.name, "connector": record.connector,
                            "words": words, "href": f"/connections/{record.name}"})
        return out

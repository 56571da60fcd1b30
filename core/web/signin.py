"""Signing in and out: ``GET /login?token=...`` (a one-time link) and ``POST /logout``.

A link printed by ``splice serve --print-login`` or ``splice login-link`` works once and for
15 minutes; opening it starts a session (see :mod:`splice.web.session`) and redirects to the
page asked for before (``next``, a local path only) or the overview. Without a valid token the
page says how to get a new link.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..store import logins
from .session import new_session

__all__ = ["routes"]


def _local(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def routes(dash: Any) -> list[BaseRoute]:
    def login(request: Request) -> Response:
        token = request.query_params.get("token")
        target = _local(request.query_params.get("next"))
        if token:
            if logins.consume(dash.store, token):
                session = request.scope["session"]
                session.clear()
                session.update(new_session())
                return RedirectResponse(target, status_code=303)
            return dash.render(request, "login.html", {"problem": "This sign-in link was "
                               "used already or has expired.", "next": target}, status=403)
        if request.scope.get("splice.signed_in"):
            return RedirectResponse(target, status_code=303)
        return dash.render(request, "login.html", {"problem": None, "next": target})

    def logout(request: Request) -> Response:
        request.scope["session"].clear()
        return RedirectResponse("/login", status_code=303)

    return [Route("/login", login, methods=["GET"]),
            Route("/logout", logout, methods=["POST"])]

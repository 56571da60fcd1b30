"""``GET /budget``: the budget planner (:mod:`splice.run.budget`) of the enabled recipes.

One card per rate-limit key (e.g. a HighLevel location): each declared window as a bar (an
SVG ``rect`` whose ``width`` is the share used; the CSP forbids style attributes, SVG geometry
attributes are fine) with a mark at the 80% target, the suggestion sentence, and what each
recipe's poll costs (measured from its last polls, or estimated). The numbers are those of
``splice validate --budget``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..run.budget import TARGET, every_text, plan_budget

__all__ = ["routes"]


def _bar(share: float) -> dict[str, Any]:
    width = round(min(max(share, 0.0), 1.0) * 100, 2)
    kind = "over" if share > 1 else "near" if share > TARGET else "ok"
    return {"width": width, "kind": kind}


def routes(dash: Any) -> list[BaseRoute]:
    def page(request: Request) -> Response:
        enabled = [r for r in dash.service.book.enabled() if r.plan is not None]
        result = plan_budget(dash.store, dash.registry, [(r.id, r.name, r.plan)
                                                         for r in enabled])
        keys = [{"kb": kb, "windows": [{"use": w, **_bar(w.share)} for w in kb.windows]}
                for kb in result.keys]
        return dash.render(request, "budget/index.html", {
            "keys": keys, "unlimited": result.unlimited, "recipes": enabled,
            "target": round(TARGET * 100), "every_text": every_text})

    return [Route("/budget", page, methods=["GET"])]

"""``GET /recipes/{id}/charts``: charts of what a recipe sent, drawn as server-side SVG.

The data is :func:`splice.run.series.recipe_charts` (the statistics recipe: each social figure
pushed to Invoice2go per day; the tagging recipe: invoices tagged per tag). This module only
turns it into geometry (coordinates the template writes as SVG attributes; no script, no
style attribute, no charting library).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..run.series import Chart, recipe_charts
from ..store import registry as reg

__all__ = ["BarGeometry", "LineGeometry", "bars", "line", "routes"]

WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 32, 14, 30


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at least ``value`` (an axis top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


@dataclass
class LineGeometry:
    title: str
    unit: str
    points: str = ""                       # "x,y x,y ..." for <polyline points=>
    dots: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, tooltip
    ticks: list[tuple[float, str]] = field(default_factory=list)       # y, label
    labels: list[tuple[float, str]] = field(default_factory=list)      # x, label
    last: str = ""
    width: int = WIDTH
    height: int = HEIGHT


def line(chart: Chart) -> LineGeometry:
    points = chart.series[0].points if chart.series else []
    geo = LineGeometry(chart.title, chart.unit)
    if not points:
        return geo
    top = nice_max(max(v for _, v in points))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(1, len(points) - 1)
    coords = []
    for i, (label, value) in enumerate(points):
        x = LEFT + (i * step if len(points) > 1 else inner_w / 2)
        y = TOP + inner_h * (1 - value / top)
        coords.append((round(x, 1), round(y, 1)))
        geo.dots.append((round(x, 1), round(y, 1), f"{label}: {_fmt(value)}"))
    geo.points = " ".join(f"{x},{y}" for x, y in coords)
    geo.ticks = [(round(TOP + inner_h * (1 - f), 1), _fmt(top * f)) for f in (0, 0.5, 1)]
    every = max(1, math.ceil(len(points) / 6))
    geo.labels = [(coords[i][0], points[i][0][5:]) for i in range(0, len(points), every)]
    geo.last = f"{_fmt(points[-1][1])} on {points[-1][0]}"
    return geo


@dataclass
class BarGeometry:
    title: str
    unit: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    width: int = WIDTH
    height: int = 0
    label_width: int = 200


def bars(chart: Chart) -> BarGeometry:
    points = chart.series[0].points if chart.series else []
    geo = BarGeometry(chart.title, chart.unit)
    row_h = 26
    top = nice_max(max((v for _, v in points), default=1.0))
    span = WIDTH - geo.label_width - 60
    for i, (label, value) in enumerate(points):
        y = 6 + i * row_h
        geo.rows.append({"label": label if len(label) <= 30 else label[:29] + "…",
                         "full": label, "y": y, "text_y": y + 15,
                         "w": round(max(1.0, span * value / top), 1),
                         "value": _fmt(value), "value_x": geo.label_width + 8 +
                         round(max(1.0, span * value / top), 1) + 6})
    geo.height = 12 + row_h * max(1, len(points))
    return geo


def routes(dash: Any) -> list[BaseRoute]:
    def page(request: Request) -> Response:
        recipe_id = request.path_params["recipe_id"]
        found = reg.find(dash.store, recipe_id)
        row = found[0] if len(found) == 1 else None
        loaded = dash.service.book.recipes.get(row.id) if row is not None else None
        if row is None or loaded is None or loaded.plan is None:
            return dash.render(request, "charts/recipe.html", {
                "row": row, "charts": [], "missing": True}, status=404 if row is None else 200)
        charts = recipe_charts(dash.store, row.id, loaded.plan)
        views = [{"kind": c.kind, "empty": c.empty, "step": c.step,
                  "geo": line(c) if c.kind == "line" else bars(c)} for c in charts]
        return dash.render(request, "charts/recipe.html", {
            "row": row, "charts": views, "missing": False})

    return [Route("/recipes/{recipe_id}/charts", page, methods=["GET"])]

"""The recipe builder: ``/recipes/new`` and ``/recipes/{id}/edit``.

One form (:mod:`splice.web.builder_form`) holds the whole recipe. Choosing a trigger or an
action re-renders it (``POST /recipes/builder/form``, htmx) with that action's inputs, each
with a dropdown of the fields the step may read (:mod:`splice.builder.fields`), a dropdown of
real values where the input is an id (``GET /recipes/builder/options``, read with the
connection), and an error slot filled as the person types (``POST /recipes/builder/check``:
``splice validate``'s checker, problems at that field only). ``POST /recipes/builder/preview``
renders each step's request on the trigger's sample record; ``POST /recipes/builder/save``
writes the YAML file (comments of an opened file kept) once it validates and registers it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..builder.check import check_field
from ..builder.document import comment_notice
from ..builder.fields import available_fields
from ..builder.options import field_options
from ..builder.preview import preview
from ..builder.save import open_recipe, save_recipe
from ..errors import DocumentError, SpliceError
from ..model.schema import subschema
from ..secrets import redact_data
from ..store import registry as reg
from .builder_form import (
    MAX_STEPS,
    StepForm,
    data_to_form,
    form_to_data,
    input_rows,
    operation_of,
    parse_value,
    read_form,
    trigger_operation,
    trigger_rows,
    yaml_text,
)

__all__ = ["routes"]

NEW_RECIPE: dict[str, Any] = {"name": "", "trigger": {}, "steps": [{}]}


def catalog(registry: Any) -> dict[str, list[tuple[str, str, str]]]:
    """Every trigger and action: kind -> [(ref, connector name, title)]."""
    out: dict[str, list[tuple[str, str, str]]] = {"triggers": [], "actions": []}
    for cid in registry.ids:
        connector = registry.get(cid)
        if connector is None:
            continue
        for tid, trig in connector.triggers.items():
            out["triggers"].append((f"{cid}.{tid}", connector.name, trig.title or tid))
        for op_id, op in connector.operations.items():
            out["actions"].append((f"{cid}.{op_id}", connector.name, op.title or op_id))
    return out


def _connector_of(use: Any) -> str:
    return use.split(".", 1)[0] if isinstance(use, str) and "." in use else ""


def builder_context(dash: Any, request: Request, data: dict[str, Any], *,
                    recipe_id: str | None = None, problems: list[str] | None = None,
                    notice: str | None = None) -> dict[str, Any]:
    registry = dash.registry
    steps = []
    for i, step in enumerate(data.get("steps") or []):
        step = step if isinstance(step, dict) else {}
        steps.append(StepForm(i, step, input_rows(registry, step),
                              available_fields(registry, data, i)))
    found = data.get("trigger") if isinstance(data.get("trigger"), dict) else \
        (data.get("triggers") or [{}])[0]
    trig: dict[str, Any] = found if isinstance(found, dict) else {}
    connections = [(c.name, c.connector) for c in dash.store.list_connections()]
    session = request.scope.get("session") or {}
    trigger_op = trigger_operation(registry, trig.get("use"))
    return {"data": data, "form": data_to_form(data), "trig": trig, "steps": steps,
            "trigger_inputs": trigger_rows(registry, trig) if trig.get("use") else [],
            "trigger_op": trigger_op.ref if trigger_op is not None else "",
            "catalog": catalog(registry), "connections": connections,
            "connector_of": _connector_of, "recipe_id": recipe_id or "",
            "problems": problems or [], "notice": notice, "csrf": session.get("csrf", ""),
            "options_url": _options_url, "yaml_text": yaml_text}


def _options_url(use: str, connection: str, name: str) -> str:
    return "/recipes/builder/options?" + urlencode({"use": use, "field": name,
                                                    "connection": connection})


def _form_fragment(dash: Any, request: Request, data: dict[str, Any],
                   **kwargs: Any) -> HTMLResponse:
    ctx = builder_context(dash, request, data, **kwargs)
    return HTMLResponse(dash.fragment("recipes/_builder_form.html", ctx),
                        headers={"Cache-Control": "no-store"})


def routes(dash: Any) -> list[BaseRoute]:
    registry = dash.registry

    def new(request: Request) -> Response:
        data = json.loads(json.dumps(NEW_RECIPE))
        return dash.render(request, "recipes/builder.html",
                           builder_context(dash, request, data))

    def edit(request: Request) -> Response:
        row = reg.get(dash.store, request.path_params["rid"])
        if row is None:
            return dash.render(request, "recipes/missing.html", {"rid": request.path_params[
                "rid"]}, status=404)
        notice = None
        try:
            data, text = open_recipe(row.path)
            notice = comment_notice(text, row.path)
        except SpliceError:
            from ..builder.document import read_data

            data = read_data(row.source, row.path)
            notice = (f"{row.path} cannot be read; the builder shows the version serve runs "
                      "and saving writes the file again")
        return dash.render(request, "recipes/builder.html", builder_context(
            dash, request, data, recipe_id=row.id, notice=notice))

    async def form(request: Request) -> Response:
        posted = await read_form(request)
        data = await run_in_threadpool(form_to_data, registry, posted)
        action = str(posted.get("action") or "")
        steps = data.setdefault("steps", [])
        if action == "add" and len(steps) < MAX_STEPS:
            steps.append({})
        elif action.startswith("remove:") and action[7:].isdigit():
            index = int(action[7:])
            if 0 <= index < len(steps):
                del steps[index]
        rid = str(posted.get("recipe_id") or "") or None
        return await run_in_threadpool(lambda: _form_fragment(dash, request, data,
                                                              recipe_id=rid))

    async def check(request: Request) -> Response:
        posted = await read_form(request)
        name = request.headers.get("hx-trigger-name") or str(posted.get("field") or "")

        def run() -> list[str]:
            data = form_to_data(registry, posted)
            where = _where(name)
            if where is None:
                return []
            value: Any = str(posted.get(name) or "")
            if where[0] == "steps" and len(where) == 4 and where[2] == "with":
                index = int(where[1])
                step = data["steps"][index] if index < len(data["steps"]) else {}
                op = operation_of(registry, step.get("use"))
                schema = subschema(op.input, (where[3],)) if op is not None else True
                value = parse_value(value, str(posted.get(f"steps.{where[1]}.kind."
                                                          f"{where[3]}") or "text"), schema)
            elif where[0] == "trigger":
                trig = data.get("trigger") or (data.get("triggers") or [{}])[0]
                op = trigger_operation(registry, trig.get("use"))
                schema = subschema(op.input, (where[2],)) if op is not None else True
                value = parse_value(value, str(posted.get(f"trigger.kind.{where[2]}") or
                                               "text"), schema)
                if "trigger" not in data:
                    where = ("triggers", 0, *where[1:])
            if value == "":
                return []
            return check_field(registry, dash.store, data, where, value)

        try:
            problems = await run_in_threadpool(run)
        except SpliceError as exc:
            problems = [str(exc)]
        return HTMLResponse(dash.fragment("recipes/_check.html", {"problems": problems}),
                            headers={"Cache-Control": "no-store"})

    def options(request: Request) -> Response:
        q = request.query_params
        try:
            found = field_options(registry, dash.store, q.get("use", ""), q.get("field", ""),
                                  q.get("connection") or None)
            problem = None if found else "no values found with this connection"
        except SpliceError as exc:
            found, problem = [], str(exc).splitlines()[0][:200]
        return HTMLResponse(dash.fragment("recipes/_options.html", {
            "options": found, "problem": problem, "field": q.get("field", "")}),
            headers={"Cache-Control": "no-store"})

    async def do_preview(request: Request) -> Response:
        posted = await read_form(request)

        def run() -> dict[str, Any]:
            data = form_to_data(registry, posted)
            try:
                event, steps = preview(registry, dash.store, data)
            except DocumentError as exc:
                return {"problems": [str(p) for p in exc.problems], "event": None,
                        "steps": []}
            except SpliceError as exc:
                return {"problems": [str(exc)], "event": None, "steps": []}
            return {"problems": [], "event": redact_data(event), "steps": steps}

        ctx = await run_in_threadpool(run)
        ctx["dumps"] = _dumps
        return HTMLResponse(dash.fragment("recipes/_preview.html", ctx),
                            headers={"Cache-Control": "no-store"})

    async def save(request: Request) -> Response:
        posted = await read_form(request)
        rid = str(posted.get("recipe_id") or "") or None

        def run() -> Response:
            try:
                data = form_to_data(registry, posted)
            except SpliceError as exc:
                return _page(NEW_RECIPE, [str(exc)], status=400)
            path = None
            if rid is not None:
                row = reg.get(dash.store, rid)
                if row is None:
                    return _page(data, [f"no registered recipe '{rid}'"], status=404)
                path = row.path
            try:
                saved = save_recipe(registry, dash.store, data, path=path)
            except DocumentError as exc:
                return _page(data, [_shown(p, path) for p in exc.problems], status=400)
            except SpliceError as exc:
                return _page(data, [str(exc)], status=400)
            dash.flash(request, f"Saved '{saved.name}' to {saved.path}" +
                       ("" if saved.enabled else "; run a test transaction, then go live"))
            return RedirectResponse(f"/recipes/{saved.id}", status_code=303)

        def _page(data: dict[str, Any], problems: list[str], status: int) -> Response:
            return dash.render(request, "recipes/builder.html", builder_context(
                dash, request, data, recipe_id=rid, problems=problems), status=status)

        return await run_in_threadpool(run)

    return [Route("/recipes/new", new, methods=["GET"]),
            Route("/recipes/{rid}/edit", edit, methods=["GET"]),
            Route("/recipes/builder/form", form, methods=["POST"]),
            Route("/recipes/builder/check", check, methods=["POST"]),
            Route("/recipes/builder/options", options, methods=["GET"]),
            Route("/recipes/builder/preview", do_preview, methods=["POST"]),
            Route("/recipes/builder/save", save, methods=["POST"])]


def _shown(problem: Any, path: str | None) -> str:
    """A problem of the file being saved; a new file's temporary name is not shown."""
    return str(problem) if path else f"{problem.path}: {problem.message}" if problem.path \
        else problem.message


def _where(name: str) -> tuple[str | int, ...] | None:
    """``steps.1.with.email`` -> ``("steps", 1, "with", "email")``; the form's other
    checkable names: ``steps.N.when``, ``steps.N.for_each``, ``trigger.with.FIELD``."""
    parts = name.split(".", 3)
    if name.startswith("trigger.with.") and len(name) > len("trigger.with."):
        return ("trigger", "with", name[len("trigger.with."):])
    if len(parts) >= 3 and parts[0] == "steps" and parts[1].isdigit():
        if parts[2] in ("when", "for_each") and len(parts) == 3:
            return ("steps", int(parts[1]), parts[2])
        if parts[2] == "with" and len(parts) == 4:
            return ("steps", int(parts[1]), "with", parts[3])
    return None


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


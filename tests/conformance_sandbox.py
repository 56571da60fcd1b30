"""A sandbox for the fake CRM manifest that answers one operation with the wrong shape.

``create_note`` answers ``{"id": 1, ...}`` where the manifest declares a string id; the other
operations answer as declared. The conformance suite must name exactly that operation.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from splice.sandbox import SandboxConfig

from .fakeapi import make_contacts


def create_app(config: SandboxConfig) -> Starlette:
    def denied(request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {config.client_secret}":
            return JSONResponse({"message": "bad token"}, status_code=401)
        return None

    async def contacts(request: Request) -> Response:
        rows = make_contacts(3)
        return denied(request) or JSONResponse({"data": {"contacts": rows, "total": 3}})

    async def notes(request: Request) -> Response:
        body = await request.json()
        return denied(request) or JSONResponse({"id": 1, **body}, status_code=201)

    async def tags(request: Request) -> Response:
        body = await request.json()
        return denied(request) or JSONResponse(
            {"contact_id": request.path_params["contact_id"], "tags": body["tags"]})

    return Starlette(routes=[Route("/contacts", contacts),
                             Route("/notes", notes, methods=["POST"]),
                             Route("/contacts/{contact_id}/tags", tags, methods=["POST"])])

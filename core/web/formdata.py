"""A submitted form (``application/x-www-form-urlencoded``, what the dashboard's forms send)
as a dict of strings, read without a multipart parser. The first value of a repeated name
wins; a body over ``MAX_BODY`` bytes or another content type reads as an empty form."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

__all__ = ["MAX_BODY", "form_data"]

MAX_BODY = 1 << 20


async def form_data(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True,
                      max_num_fields=2000)
    return {k: v[0] for k, v in fields.items() if v}

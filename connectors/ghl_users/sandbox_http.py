"""HTTP plumbing shared by the HighLevel sandbox's handlers: errors, callers, bodies, limits.

Contract:

* :class:`ApiProblem` is the one way a handler refuses a request; the pipeline turns it into
  HighLevel's NestJS error shape (:func:`error_body`, NOTES §8): ``{statusCode, message}`` plus
  ``error`` for 401/404/422/429, and ``message`` a list for 422.
* Only statuses the official specs document for these operations are produced (400, 401, 404
  where declared, 422), plus 429 from the rate limiter (NOTES §6). There is no 403: NOTES does
  not say the real API answers one here, so refusals of authorisation are 401.
* :class:`Caller` is who a valid token speaks for; its ``require_*`` checks raise 401.
* :func:`read_json`, :func:`read_form` and :func:`read_multipart` parse request bodies without
  extra packages (no python-multipart); :func:`json_response` renders any JSON-ready value,
  even strings with lone surrogates, without failing.
* :class:`RateLimiter`: a sliding 10 s burst window plus a per-UTC-day budget per (app,
  location) key, with HighLevel's ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response

Json = dict[str, Any]
LOCATION, COMPANY = "Location", "Company"
BOTH = (LOCATION, COMPANY)
MISSING_BODY: Any = object()  # no request body at all (distinct from ``{}``)


class ApiProblem(Exception):
    """A request the API refuses: ``status`` and a message (a list for 422)."""

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message


def unprocessable(*messages: str) -> ApiProblem:
    return ApiProblem(422, list(messages))


_ERROR_NAMES = {401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
                429: "Too Many Requests"}


def error_body(status: int, message: str | list[str]) -> Json:
    """HighLevel's error shape: ``{statusCode, message}`` plus ``error`` where it sends one."""
    body: Json = {"statusCode": status, "message": message}
    if status in _ERROR_NAMES:
        body["error"] = _ERROR_NAMES[status]
    return body


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """``body`` as JSON; text that cannot be UTF-8 (lone surrogates) is sent escaped."""
    try:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return Response(raw, status_code=status, headers=headers, media_type="application/json")


def error_response(status: int, message: str | list[str],
                   headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(status, message), status, headers)


@dataclass(frozen=True)
class Caller:
    """Who a valid access token speaks for."""

    user_type: str
    company_id: str
    location_id: str | None
    user_id: str
    locations: tuple[str, ...]

    @classmethod
    def from_subject(cls, subject: Json) -> Caller:
        location = subject.get("locationId")
        locations = (location,) if location else tuple(subject.get("approvedLocations", ()))
        return cls(subject.get("userType", LOCATION), subject.get("companyId", ""), location,
                   subject.get("userId", ""), locations)

    def require_location(self, location_id: str) -> None:
        if location_id not in self.locations:
            raise ApiProblem(401, "The token does not have access to this location")

    def require_company(self, company_id: str) -> None:
        if company_id != self.company_id:
            raise ApiProblem(401, "The token does not have access to this company")


@dataclass(frozen=True)
class Part:
    """One part of a ``multipart/form-data`` body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


class Host(Protocol):
    """What handlers see of the sandbox: its world, clock, persistence, trace ids and the
    webhooks it delivers (``user_created``)."""

    world: Any
    webhooks: Any

    def now_dt(self) -> datetime: ...

    def save(self) -> None: ...

    def next_trace_id(self) -> str: ...


@dataclass
class Call:
    """One checked API request, as a handler receives it.

    ``body`` is the parsed JSON body (schema-valid for ``version``) or None when the request
    has none; ``parts`` the ``multipart/form-data`` parts for upload operations.
    """

    host: Host
    request: Request
    caller: Caller
    version: str
    path: dict[str, str]
    query: dict[str, str]
    body: Any = None
    parts: list[Part] | None = None

    @property
    def v3(self) -> bool:
        return self.version == "v3"


# -- request bodies ----------------------------------------------------------------------------

def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request) -> Any:
    """The parsed JSON body, :data:`MISSING_BODY` when there is none; 400 if it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return MISSING_BODY
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiProblem(400, "Unexpected token in JSON body") from None


async def read_form(request: Request) -> ImmutableMultiDict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (anything else reads as empty)."""
    if media_type(request) not in ("", "application/x-www-form-urlencoded"):
        return ImmutableMultiDict()
    raw = (await request.body()).decode("utf-8", errors="replace")
    return ImmutableMultiDict(parse_qsl(raw, keep_blank_values=True))


async def read_multipart(request: Request) -> list[Part] | None:
    """The parts of a ``multipart/form-data`` body; None when the body is not multipart."""
    header = request.headers.get("content-type", "")
    if media_type(request) != "multipart/form-data" or "boundary=" not in header:
        return None
    raw = await request.body()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + header.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise ApiProblem(400, "Multipart: Boundary not found")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        parts.append(Part(name, filename, part.get_content_type(),
                          payload if isinstance(payload, bytes) else b""))
    return parts


# -- query strings -----------------------------------------------------------------------------

def whole_number(raw: str | None, default: int, *, minimum: int = 0) -> int:
    """A skip/limit query value. The specs type these as free strings, so nothing is refused:
    a value that is not a whole number means ``default``, and ``minimum`` is a floor."""
    if raw is None:
        return default
    text = raw.strip()
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        return default
    return max(minimum, sign * int(digits))


def page_limit(raw: str | None, default: int) -> int:
    """A limit: a whole number of at least 1, else ``default``."""
    value = whole_number(raw, default, minimum=0)
    return value if value >= 1 else default


# -- rate limits -------------------------------------------------------------------------------

@dataclass
class RateDecision:
    allowed: bool
    remaining: int
    daily_remaining: int
    retry_after: int = 0


def from_unix(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class RateLimiter:
    """A sliding window burst limit plus a per-UTC-day limit, per (app, location) key."""

    def __init__(self, limit: int, window: float, daily: int) -> None:
        self.limit, self.window, self.daily = limit, window, daily
        self._hits: dict[tuple[str, str], collections.deque[float]] = {}
        self._days: dict[tuple[str, str], tuple[date, int]] = {}

    def hit(self, key: tuple[str, str], now: float) -> RateDecision:
        hits = self._hits.setdefault(key, collections.deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        today = from_unix(now).date()
        day, used = self._days.get(key, (today, 0))
        if day != today:
            used = 0
        if len(hits) >= self.limit or used >= self.daily:
            if used >= self.daily:
                midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(),
                                            tzinfo=UTC)
                wait = midnight.timestamp() - now
            else:
                wait = hits[0] + self.window - now
            return RateDecision(False, max(0, self.limit - len(hits)),
                                max(0, self.daily - used), max(1, math.ceil(wait)))
        hits.append(now)
        self._days[key] = (today, used + 1)
        return RateDecision(True, self.limit - len(hits), self.daily - used - 1)

    def headers(self, decision: RateDecision | None) -> dict[str, str]:
        remaining = self.limit if decision is None else decision.remaining
        daily = self.daily if decision is None else decision.daily_remaining
        return {"X-RateLimit-Max": str(self.limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Interval-Milliseconds": str(int(self.window * 1000)),
                "X-RateLimit-Limit-Daily": str(self.daily),
                "X-RateLimit-Daily-Remaining": str(daily)}

    def reset(self) -> None:
        self._hits.clear()
        self._days.clear()


def parse_moment(value: Any) -> datetime | None:
    """An ISO 8601 date-time (``Z`` or an offset; no zone means UTC) or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00")
                                        .replace("z", "+00:00"))
    except ValueError:
        return None
    if not 1900 <= moment.year <= 9000:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

"""A local emulator of HighLevel's Users and Social Planner APIs (``create_app``).

What it reproduces, checked against the official specs in ``reference/ghl/openapi``:

* OAuth: ``GET /v2/oauth/chooselocation`` (consent page or auto-approval), ``POST /oauth/token``
  (form body, ``user_type`` Location|Company, HighLevel's response fields, refresh tokens that
  rotate on every use, ``invalid_grant`` on reuse, one-day access tokens);
* every resource request needs ``Version: 2021-07-28``, a Bearer token, the operation's scope,
  a token of the right type (Sub-Account or Agency) and the token's own location;
* the seven Users operations and Social Planner tags, tag details, statistics, accounts and
  categories, with the spec's shapes and status codes (201 for the POST reads);
* NestJS-style errors (400/401/403/422), rate limits (100 requests / 10 s and 200,000 / day
  per app and location) with ``X-RateLimit-*`` headers and 429 + ``Retry-After``;
* test controls under ``/__test__/`` to change tags, expire tokens, inject failures, move the
  clock, inspect and reset the state.

``SandboxConfig.extra`` keys: ``allowed_scopes`` (the app's scopes), ``install_target``
(``"company"`` or a location id: what auto-approval installs to; default the main
sub-account) and ``daily_limit``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from splice.errors import ConfigError
from splice.sandbox import AuthFailure, OAuthClient, OAuthFailure, OAuthServer, SandboxConfig

from . import sandbox_data as data
from .sandbox_data import ApiProblem, RateLimiter, World, unprocessable
from .webhooks import GhlWebhooks

__all__ = ["API_VERSION", "GhlSandbox", "create_app"]

API_VERSION = "2021-07-28"
ACCESS_TTL = 86399
REFRESH_TTL = 365 * 86400
RATE_LIMIT = (100, 10.0)
DAILY_LIMIT = 200_000
# The scopes the emulated Marketplace app was registered with: every scope the ghl_users
# manifest declares (so `splice connect` with the default scopes is accepted), plus a few more.
DEFAULT_SCOPES = frozenset({
    "users.readonly", "users.write", "socialplanner/tag.readonly",
    "socialplanner/statistics.readonly", "socialplanner/account.readonly",
    "socialplanner/account.write", "socialplanner/category.readonly",
    "socialplanner/post.readonly", "socialplanner/post.write", "socialplanner/oauth.readonly",
    "socialplanner/oauth.write", "socialplanner/csv.readonly", "socialplanner/csv.write",
    "locations.readonly", "oauth.readonly", "oauth.write",
})
LOCATION, COMPANY = "Location", "Company"
BOTH = (LOCATION, COMPANY)
STATE_FORMAT = "splice-ghl-sandbox/1"

Json = dict[str, Any]


# -- responses -------------------------------------------------------------------------------

_ERROR_NAMES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                422: "Unprocessable Entity", 429: "Too Many Requests"}


def error_body(status: int, message: str | list[str]) -> Json:
    """HighLevel's error shape: ``{statusCode, message}`` plus ``error`` where it sends one."""
    body: Json = {"statusCode": status, "message": message}
    if status in _ERROR_NAMES:
        body["error"] = _ERROR_NAMES[status]
    return body


def error_response(status: int, message: str | list[str],
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


# -- callers ---------------------------------------------------------------------------------

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
            raise ApiProblem(403, "The token does not have access to this location")

    def require_company(self, company_id: str) -> None:
        if company_id != self.company_id:
            raise ApiProblem(403, "The token does not have access to this company")


Handler = Callable[[Request, Caller], Awaitable[Json]]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _int_query(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise unprocessable(f"{name} must be a number string")
    return int(raw)


async def _json_body(request: Request) -> Json:
    """The JSON object in the body (``{}`` when empty); 400 for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiProblem(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "Request body must be a JSON object")
    return body


async def _form(request: Request) -> ImmutableMultiDict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (anything else reads as empty)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        return ImmutableMultiDict()
    raw = (await request.body()).decode("utf-8", errors="replace")
    return ImmutableMultiDict(parse_qsl(raw, keep_blank_values=True))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _control_body(request: Request) -> Json:
    try:
        return await _json_body(request)
    except ApiProblem:
        return {}


# -- the sandbox -----------------------------------------------------------------------------

class GhlSandbox:
    """The emulator's state (world, OAuth, clock, limits) and its HTTP routes."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        extra = self.config.extra
        scopes = set(extra.get("allowed_scopes", DEFAULT_SCOPES))
        self.client = OAuthClient(self.config.client_id, self.config.client_secret,
                                  list(self.config.redirect_uris), scopes)
        self.clock_offset = 0.0
        limit, window = self.config.rate_limit or RATE_LIMIT
        self.limiter = RateLimiter(int(limit), float(window),
                                   int(extra.get("daily_limit", DAILY_LIMIT)))
        self.failures: list[Json] = []
        self.traces = 0
        self.webhooks = GhlWebhooks(self)
        self._reset_state()
        path = self.config.state_path
        if path is not None and Path(path).exists():
            self._load(Path(path))

    def _reset_state(self) -> None:
        self.world = World.seeded(self.config.seed)
        self.oauth = OAuthServer(
            clients=[self.client], clock=self.now,
            access_ttl=self.config.access_token_ttl or ACCESS_TTL,
            refresh_ttl=self.config.refresh_token_ttl or REFRESH_TTL, token_prefix="ghl")
        # user type of each pending code / live refresh token, by SHA-256 digest
        self.grant_types: dict[str, list[Any]] = {}

    # -- clock and persistence ----------------------------------------------------------------

    def now(self) -> float:
        return self.config.clock() + self.clock_offset

    def now_dt(self) -> datetime:
        return data.from_unix(self.now())

    def snapshot(self) -> Json:
        return {"format": STATE_FORMAT, "clockOffset": self.clock_offset,
                "world": self.world.to_json(), "oauth": self.oauth.to_json(),
                "grantTypes": self.grant_types}

    def save(self) -> None:
        """Write the state file atomically (no-op without ``config.state_path``)."""
        path = self.config.state_path
        if path is None:
            return
        self._prune_grants()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.snapshot(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _prune_grants(self) -> None:
        now = self.now()
        self.grant_types = {k: v for k, v in self.grant_types.items()
                            if v[1] is None or v[1] > now}

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {state.get('format')!r}")
            self.clock_offset = float(state["clockOffset"])
            self.world = World.from_json(state["world"])
            self.oauth.load_json(state["oauth"])
            self.grant_types = dict(state["grantTypes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"HighLevel sandbox state file {path} is unreadable: {exc}",
                              hint="delete it to start from the seed data") from None

    # -- OAuth ------------------------------------------------------------------------------

    def _installer(self, location_id: str | None) -> str:
        users = self.world.users
        if location_id is None:
            return users[data.AGENCY_INSTALLER_INDEX]["id"]
        for user in users:
            roles = user["roles"]
            if roles["type"] == "account" and roles["role"] == "admin" \
                    and location_id in roles["locationIds"]:
                return str(user["id"])
        return str(users[data.AGENCY_INSTALLER_INDEX]["id"])

    def subject_for(self, target: str) -> Json:
        """The installation a consent creates: ``company`` or a location id."""
        if target.lower() == "company":
            return {"userType": COMPANY, "companyId": data.COMPANY_ID,
                    "approvedLocations": list(data.LOCATIONS), "userId": self._installer(None),
                    "isBulkInstallation": False, "installToFutureLocations": False,
                    "approveAllLocations": True}
        if target not in data.LOCATIONS:
            raise ApiProblem(400, f"Unknown location {target}")
        return {"userType": LOCATION, "companyId": data.COMPANY_ID, "locationId": target,
                "userId": self._installer(target), "isBulkInstallation": False}

    def _approve(self, params: dict[str, str], target: str) -> Response:
        try:
            subject = self.subject_for(target)
        except ApiProblem as exc:
            return _page("Install failed", f"<p>{html.escape(str(exc.message))}</p>", 400)
        url = self.oauth.authorize(params, subject)
        self._prune_grants()
        code = parse_qs(urlsplit(url).query).get("code")
        if code:
            self.grant_types[_digest(code[0])] = [subject["userType"],
                                                  self.now() + self.oauth.code_ttl]
        self.save()
        return RedirectResponse(url, status_code=302)

    async def choose_location(self, request: Request) -> Response:
        """HighLevel's consent screen: pick a sub-account (or the agency) and approve."""
        if request.method == "POST":
            form = await _form(request)
            params = {k: str(v) for k, v in form.items() if k not in ("decision", "target")}
        else:
            params = dict(request.query_params)
        try:
            error_redirect = self.oauth.validate_authorize(params)
        except OAuthFailure as exc:
            return _page("Invalid request", f"<p>{html.escape(exc.description)}</p>", 400)
        if error_redirect:
            return RedirectResponse(error_redirect, status_code=302)
        if request.method == "POST":
            if form.get("decision") != "approve":
                return RedirectResponse(self.oauth.deny(params), status_code=302)
            return self._approve(params, str(form.get("target") or data.LOCATION_ID))
        if self.config.auto_approve:
            return self._approve(params, str(self.config.extra.get("install_target",
                                                                   data.LOCATION_ID)))
        return _consent_page(params, request.url.path)

    async def token(self, request: Request) -> Response:
        """``POST /oauth/token``: code and refresh grants, HighLevel's response fields."""
        failure = self._take_failure("token")
        if failure is not None:
            return self._injected(failure)
        form = await _form(request)
        missing = [f"{k} should not be empty" for k in ("client_id", "client_secret",
                                                          "grant_type") if not form.get(k)]
        grant = form.get("grant_type")
        if grant and grant not in ("authorization_code", "refresh_token", "client_credentials"):
            missing.append("grant_type must be one of the following values: "
                           "authorization_code, refresh_token, client_credentials")
        user_type = form.get("user_type")
        if user_type and user_type not in BOTH:
            missing.append("user_type must be one of the following values: Company, Location")
        if missing:
            return error_response(422, missing)
        secret_key = {"authorization_code": "code", "refresh_token": "refresh_token"}.get(
            str(grant))
        presented = form.get(secret_key) if secret_key else None
        known = self.grant_types.get(_digest(str(presented))) if presented else None
        if user_type and known and known[0] != user_type:
            return _oauth_error(OAuthFailure(
                400, "invalid_request",
                f"user_type {user_type} does not match this installation ({known[0]})"))
        try:
            body = self.oauth.token(form, request.headers.get("authorization"))
        except OAuthFailure as exc:
            if exc.error == "invalid_grant":
                exc.description = ("Invalid grant: refresh token is invalid"
                                   if grant == "refresh_token"
                                   else f"Invalid grant: {exc.description}")
            self.save()  # a replayed code revokes its grant
            return _oauth_error(exc)
        if presented:
            self.grant_types.pop(_digest(str(presented)), None)
        self.grant_types[_digest(body["refresh_token"])] = [
            body["userType"], None if self.oauth.refresh_ttl is None
            else self.now() + self.oauth.refresh_ttl]
        self.save()
        return JSONResponse(_token_body(body),
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- the resource pipeline --------------------------------------------------------------

    def _take_failure(self, target: str) -> Json | None:
        """The next injected failure aimed at ``target`` (``api`` or ``token``), if any."""
        for index, failure in enumerate(self.failures):
            if failure["target"] in (target, "all"):
                failure["count"] -= 1
                if failure["count"] <= 0:
                    del self.failures[index]
                return failure
        return None

    def _injected(self, failure: Json) -> Response:
        status = int(failure.get("status", 500))
        headers = self.limiter.headers(None)
        if failure.get("retry_after") is not None:
            headers["Retry-After"] = str(failure["retry_after"])
        message = "Too Many Requests" if status == 429 else "Internal server error"
        if status < 500 and status != 429:
            message = "Injected failure"
        return error_response(status, message, headers)

    async def handle_api(self, request: Request, handler: Handler, scope: str,
                    token_types: tuple[str, ...], status: int) -> Response:
        """Version, auth, rate limit, token type, scope; then the handler."""
        failure = self._take_failure("api")
        if failure is not None:
            return self._injected(failure)
        idle = self.limiter.headers(None)
        version = request.headers.get("version")
        if version is None:
            return error_response(400, "Version header was not found", idle)
        if version != API_VERSION:
            return error_response(400, f"Version header must be {API_VERSION}", idle)
        try:
            info = self.oauth.check(request.headers.get("authorization"), ())
        except AuthFailure:
            return error_response(401, "Invalid token: access token is invalid", idle)
        caller = Caller.from_subject(info.subject)
        key = (info.client_id, caller.location_id or caller.company_id)
        decision = self.limiter.hit(key, self.now())
        headers = self.limiter.headers(decision)
        if not decision.allowed:
            headers["Retry-After"] = str(decision.retry_after)
            return error_response(429, "Too Many Requests", headers)
        if caller.user_type not in token_types:
            return error_response(401, "This authClass type is not allowed to access this "
                                  "scope. Please reach out to support if this is a mistake",
                                  headers)
        if scope not in info.scopes:
            return error_response(
                403, f"The token does not have access to this scope: {scope}", headers)
        try:
            body = await handler(request, caller)
        except ApiProblem as exc:
            return error_response(exc.status, exc.message, headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def route(self, path: str, method: str, handler: Handler, scope: str,
              token_types: tuple[str, ...] = BOTH, status: int = 200) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self.handle_api(request, handler, scope, token_types, status)
        endpoint.__name__ = handler.__name__
        return Route(path, endpoint, methods=[method])

    # -- Social Planner ---------------------------------------------------------------------

    async def list_tags(self, request: Request, caller: Caller) -> Json:
        location = request.path_params["locationId"]
        caller.require_location(location)
        skip, limit = _int_query(request, "skip", 0), _int_query(request, "limit", 10)
        tags, count = self.world.list_tags(location, request.query_params.get("searchText"),
                                           skip, limit)
        return {"success": True, "statusCode": 200, "message": "Fetched Tags by Location ID",
                "results": {"tags": tags, "count": count}}

    async def tag_details(self, request: Request, caller: Caller) -> Json:
        location = request.path_params["locationId"]
        caller.require_location(location)
        body = await _json_body(request)
        ids = body.get("tagIds")
        if not isinstance(ids, list):
            raise unprocessable("tagIds must be an array")
        if not all(isinstance(i, str) for i in ids):
            raise unprocessable("each value in tagIds must be a string")
        tags = self.world.tags_by_ids(location, ids)
        return {"success": True, "statusCode": 201, "message": "Fetched Tags by Tag IDs",
                "results": {"tags": tags, "count": len(tags)}}

    async def list_categories(self, request: Request, caller: Caller) -> Json:
        location = request.path_params["locationId"]
        caller.require_location(location)
        skip, limit = _int_query(request, "skip", 0), _int_query(request, "limit", 10)
        rows, count = self.world.list_categories(
            location, request.query_params.get("searchText"), skip, limit)
        return {"success": True, "statusCode": 200,
                "message": "Fetched Categories by Location ID",
                "results": {"count": count, "categories": rows}}

    async def list_accounts(self, request: Request, caller: Caller) -> Json:
        location = request.path_params["locationId"]
        caller.require_location(location)
        accounts, groups = self.world.location_accounts(location)
        return {"success": True, "statusCode": 200, "message": "Fetched Accounts",
                "results": {"accounts": accounts, "groups": groups}}

    async def statistics(self, request: Request, caller: Caller) -> Json:
        location = request.query_params.get("locationId")
        if not location:
            raise unprocessable("locationId should not be empty")
        caller.require_location(location)
        ask = data.statistics_request(await _json_body(request), self.now_dt().date())
        wanted = set(ask.profile_ids)
        accounts = [a for a in self.world.accounts
                    if a["_locationId"] == location and a["profileId"] in wanted
                    and (ask.platforms is None or a["platform"] in ask.platforms)]
        self.traces += 1
        return data.statistics(self.world.seed, accounts, ask.current, ask.previous,
                               data.trace_id(self.world.seed, self.traces))

    # -- Users ------------------------------------------------------------------------------

    def _visible_user(self, user_id: str, caller: Caller) -> Json:
        user = self.world.find_user(user_id)
        if user is None or user["_companyId"] != caller.company_id or (
                caller.location_id and caller.location_id not in user["roles"]["locationIds"]):
            raise ApiProblem(400, "User not found")
        return user

    async def users_by_location(self, request: Request, caller: Caller) -> Json:
        location = request.query_params.get("locationId")
        if not location:
            raise unprocessable("locationId should not be empty")
        caller.require_location(location)
        users = self.world.search_users(company_id=caller.company_id, query=None,
                                        location_id=location, utype=None, role=None, ids=None,
                                        sort=None, descending=False)
        return {"users": [data.user_view(u, with_deleted=True) for u in users]}

    async def search_users(self, request: Request, caller: Caller) -> Json:
        q = request.query_params
        company = q.get("companyId")
        if not company:
            raise unprocessable("companyId should not be empty", "companyId must be a string")
        caller.require_company(company)
        skip, limit = _int_query(request, "skip", 0), _int_query(request, "limit", 25)
        direction = q.get("sortDirection") or "asc"
        if direction not in ("asc", "desc"):
            raise unprocessable("sortDirection must be one of the following values: asc, desc")
        sort = q.get("sort") or None
        if sort not in (None, "dateAdded", "firstName", "lastName", "email", "name"):
            raise unprocessable("sort must be one of the following values: dateAdded, "
                                "firstName, lastName, email, name")
        if q.get("enabled2waySync") not in (None, "true", "false"):
            raise unprocessable("enabled2waySync must be a boolean value")
        location = q.get("locationId") or caller.location_id
        if location:
            caller.require_location(location)
        ids = [i for i in (q.get("ids") or "").split(",") if i] if q.get("ids") else None
        users = self.world.search_users(
            company_id=company, query=q.get("query"), location_id=location,
            utype=q.get("type") or None, role=q.get("role") or None, ids=ids, sort=sort,
            descending=direction == "desc")
        return {"users": [data.user_view(u, with_deleted=True)
                          for u in users[skip: skip + limit]], "count": len(users)}

    async def filter_by_email(self, request: Request, caller: Caller) -> Json:
        body = await _json_body(request)
        problems = [f"{k} should not be empty" for k in ("companyId", "emails")
                    if not isinstance(body.get(k), str) or not body[k]]
        for key in ("skip", "limit"):
            if key in body and not (isinstance(body[key], str) and body[key].isascii()
                                      and body[key].isdigit()):
                problems.append(f"{key} must be a number string")
        if "deleted" in body and not isinstance(body["deleted"], bool):
            problems.append("deleted must be a boolean value")
        if problems:
            raise unprocessable(*problems)
        caller.require_company(body["companyId"])
        return self.world.filter_by_email(body)

    async def get_user(self, request: Request, caller: Caller) -> Json:
        user = self._visible_user(request.path_params["userId"], caller)
        return data.user_view(user, with_deleted=False)

    async def create_user(self, request: Request, caller: Caller) -> Json:
        body = await _json_body(request)
        problems = data.validate_user_body(body, create=True)
        if problems:
            raise unprocessable(*problems)
        caller.require_company(body["companyId"])
        for location in body["locationIds"]:
            caller.require_location(location)
        if body["type"] == "account" and not body["locationIds"]:
            raise unprocessable("locationIds should not be empty")
        if self.world.email_taken(body["email"]):
            raise ApiProblem(400, "A user with this email already exists")
        user = self.world.create_user(body, self.now_dt())
        self.save()
        self.webhooks.user_created(user)
        return data.user_view(user, with_deleted=False)

    async def update_user(self, request: Request, caller: Caller) -> Json:
        user = self._visible_user(request.path_params["userId"], caller)
        body = await _json_body(request)
        problems = data.validate_user_body(body, create=False)
        if caller.user_type == COMPANY and not body.get("companyId"):
            problems.append("companyId should not be empty")
        if problems:
            raise unprocessable(*problems)
        if body.get("companyId"):
            caller.require_company(body["companyId"])
        if "email" in body and body["email"].casefold() != user["email"].casefold():
            raise ApiProblem(400, "Email update is no longer supported due to security reasons")
        for location in body.get("locationIds", []):
            caller.require_location(location)
        World.update_user(user, body)
        self.save()
        return data.user_view(user, with_deleted=False)

    async def delete_user(self, request: Request, caller: Caller) -> Json:
        user = self._visible_user(request.path_params["userId"], caller)
        user["deleted"] = True
        self.save()
        return {"succeded": True,
                "message": f"Queued deleting user with e-mail {user['email']} and name "
                           f"{user['name']}. Will take effect in a few minutes."}

    # -- test controls ----------------------------------------------------------------------

    async def test_create_tag(self, request: Request) -> Response:
        """``{"tag": name, "locationId"?}``: a new tag, stamped with the sandbox clock."""
        body = await _control_body(request)
        location = body.get("locationId", data.LOCATION_ID)
        if not isinstance(body.get("tag"), str) or location not in data.LOCATIONS:
            return error_response(422, ["tag must be a string",
                                        "locationId must be a sandbox location"])
        try:
            tag = self.world.create_tag(location, body["tag"], self.now_dt())
        except ApiProblem as exc:
            return error_response(exc.status, exc.message)
        self.save()
        return JSONResponse(tag, status_code=201)

    async def test_update_tag(self, request: Request) -> Response:
        """``{"tag"?: new name, "deleted"?: bool}``: edit a tag and bump its ``updatedAt``."""
        body = await _control_body(request)
        name, deleted = body.get("tag"), body.get("deleted")
        if not isinstance(name, str | None) or not isinstance(deleted, bool | None):
            return error_response(422, ["tag must be a string", "deleted must be a boolean"])
        try:
            tag = self.world.update_tag(request.path_params["tagId"], self.now_dt(),
                                        name=name, deleted=deleted)
        except ApiProblem as exc:
            return error_response(exc.status, exc.message)
        self.save()
        return JSONResponse(tag)

    async def test_expire_tokens(self, request: Request) -> Response:
        self.oauth.expire_access_tokens()
        self.save()
        return JSONResponse({"ok": True, **self.oauth.stats()})

    async def test_fail_next(self, request: Request) -> Response:
        """``{"count", "status", "retry_after"?, "target"?: "api"|"token"|"all"}``."""
        body = await _control_body(request)
        count, status = body.get("count", 1), body.get("status", 500)
        retry_after, target = body.get("retry_after"), body.get("target", "api")
        if not (_is_int(count) and 1 <= count <= 1000 and _is_int(status)
                and 400 <= status <= 599 and target in ("api", "token", "all")
                and (retry_after is None or _is_int(retry_after) and retry_after >= 0)):
            return error_response(422, ["count must be 1-1000, status 400-599, retry_after a "
                                        "whole number of seconds, target api|token|all"])
        self.failures.append({"count": count, "status": status, "retry_after": retry_after,
                              "target": target})
        return JSONResponse({"pending": self.failures})

    async def test_advance_clock(self, request: Request) -> Response:
        """``{"seconds": S}``: move the sandbox clock forward (tokens, new timestamps)."""
        seconds = (await _control_body(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return error_response(422, ["seconds must be a number >= 0"])
        self.clock_offset += seconds
        self.save()
        return JSONResponse({"now": data.iso(self.now_dt()), "clockOffset": self.clock_offset})

    async def test_state(self, request: Request) -> Response:
        return JSONResponse({"now": data.iso(self.now_dt()), "clockOffset": self.clock_offset,
                             "oauth": self.oauth.stats(), "pendingFailures": self.failures,
                             "world": self.world.to_json()})

    async def test_reset(self, request: Request) -> Response:
        self.clock_offset = 0.0
        self.failures.clear()
        self.limiter.reset()
        self.traces = 0
        self._reset_state()
        self.save()
        return JSONResponse({"ok": True})

    # -- assembly ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        r, social = self.route, "/social-media-posting"
        loc_only = (LOCATION,)
        return [
            Route("/v2/oauth/chooselocation", self.choose_location, methods=["GET", "POST"]),
            Route("/oauth/chooselocation", self.choose_location, methods=["GET", "POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            r(f"{social}/{{locationId}}/tags", "GET", self.list_tags,
              "socialplanner/tag.readonly", loc_only),
            r(f"{social}/{{locationId}}/tags/details", "POST", self.tag_details,
              "socialplanner/tag.readonly", loc_only, 201),
            r(f"{social}/statistics", "POST", self.statistics,
              "socialplanner/statistics.readonly", loc_only, 201),
            r(f"{social}/{{locationId}}/accounts", "GET", self.list_accounts,
              "socialplanner/account.readonly", loc_only),
            r(f"{social}/{{locationId}}/categories", "GET", self.list_categories,
              "socialplanner/category.readonly", loc_only),
            r("/users/", "GET", self.users_by_location, "users.readonly", loc_only),
            r("/users", "GET", self.users_by_location, "users.readonly", loc_only),
            r("/users/search", "GET", self.search_users, "users.readonly"),
            r("/users/search/filter-by-email", "POST", self.filter_by_email, "users.readonly",
              (COMPANY,)),
            r("/users/", "POST", self.create_user, "users.write", status=201),
            r("/users", "POST", self.create_user, "users.write", status=201),
            r("/users/{userId}", "GET", self.get_user, "users.readonly"),
            r("/users/{userId}", "PUT", self.update_user, "users.write"),
            r("/users/{userId}", "DELETE", self.delete_user, "users.write"),
            Route("/__test__/tags", self.test_create_tag, methods=["POST"]),
            Route("/__test__/tags/{tagId}", self.test_update_tag, methods=["PATCH"]),
            Route("/__test__/expire-tokens", self.test_expire_tokens, methods=["POST"]),
            Route("/__test__/fail-next", self.test_fail_next, methods=["POST"]),
            Route("/__test__/advance-clock", self.test_advance_clock, methods=["POST"]),
            Route("/__test__/state", self.test_state, methods=["GET"]),
            Route("/__test__/reset", self.test_reset, methods=["POST"]),
            *self.webhooks.routes(),
        ]


def _token_body(issued: Json) -> Json:
    """The toolkit's token body in HighLevel's field order, without non-HighLevel fields."""
    first = ("access_token", "token_type", "expires_in", "refresh_token", "scope", "userType")
    body = {k: issued[k] for k in first if k in issued}
    body.update({k: v for k, v in issued.items()
                 if k not in body and k != "refresh_token_expires_in"})
    return body


def _oauth_error(exc: OAuthFailure) -> JSONResponse:
    body = {"statusCode": exc.status, "message": exc.description, **exc.body()}
    headers = {"Cache-Control": "no-store", **exc.headers}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status)


def _consent_page(params: dict[str, str], action: str) -> HTMLResponse:
    hidden = "".join(f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
                     for k, v in params.items())
    choices = [(loc, f"Sub-Account: {name}") for loc, name in data.LOCATIONS.items()]
    choices.append(("company", f"Agency: {data.COMPANY_NAME}"))
    options = "".join(
        f"<label><input type='radio' name='target' value='{html.escape(v)}'"
        f"{' checked' if i == 0 else ''}> {html.escape(label)}</label><br>"
        for i, (v, label) in enumerate(choices))
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in params.get("scope", "").split())
    body = (f"<p>App <b>{html.escape(params.get('client_id', ''))}</b> asks for:</p>"
            f"<ul>{scopes}</ul><form method='post' action='{html.escape(action)}'>{hidden}"
            f"{options}<button name='decision' value='approve'>Approve</button> "
            f"<button name='decision' value='deny'>Deny</button></form>")
    return _page("Choose an account", body)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(status, f"Cannot {request.method} {request.url.path}")


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The HighLevel sandbox as a Starlette app; ``app.state.sandbox`` is the GhlSandbox."""
    sandbox = GhlSandbox(config)
    app = Starlette(routes=sandbox.routes(),
                    exception_handlers={404: _not_found, 405: _not_found})
    app.state.sandbox = sandbox
    return app

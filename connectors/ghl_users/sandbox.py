"""A local emulator of HighLevel's Users and Social Planner APIs (``create_app``).

Contract, checked against the official specs in ``reference/ghl/openapi`` by
tests/test_ghl_contract.py:

* all 47 operations of ``apps/users.json`` and ``apps/social-media-posting.json`` are served
  (:data:`ENDPOINTS`), statefully: users, tags, categories, connected accounts, posts, CSV
  imports and social network logins live in one world that survives a restart;
* every request needs a ``Version`` header the official specs define for the operation
  (``2021-07-28`` always; ``v3`` too where ``apps/v3`` has the same method and path), a Bearer
  token (Marketplace OAuth, see sandbox_auth), a token of the right type (Sub-Account or
  Agency), the operation's scope and, for a ``locationId`` in the path, the token's location;
* the query and body must be what the spec of that version allows (sandbox_validate: exactly
  the spec's schemas, so free-text fields stay free); then a handler answers with the spec's
  status and shape, or refuses what the schemas cannot express with a documented status;
* errors are HighLevel's NestJS shapes (400/401/422, 404 where declared), rate limits are
  100 requests / 10 s and 200,000 / day per app and location with ``X-RateLimit-*`` headers,
  429 + ``Retry-After`` over them; no other status is produced;
* test controls under ``/__test__/`` change tags and categories (which HighLevel's app, not
  its API, creates and edits), expire a connected account or the tokens, inject failures,
  move the clock, show and reset the state.

``SandboxConfig.extra`` keys: ``allowed_scopes`` (the app's scopes), ``install_target``
(``"company"`` or a location id: what auto-approval installs to; default the main
sub-account) and ``daily_limit``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from splice.errors import ConfigError
from splice.sandbox import AuthFailure, OAuthClient, OAuthServer, SandboxConfig

from . import sandbox_csv as csvs
from . import sandbox_data as data
from . import sandbox_posts as posts
from . import sandbox_social as social
from . import sandbox_social_oauth as social_oauth
from . import sandbox_users as users
from .sandbox_auth import MarketplaceAuth
from .sandbox_data import World
from .sandbox_http import (
    BOTH,
    COMPANY,
    LOCATION,
    MISSING_BODY,
    ApiProblem,
    Call,
    Caller,
    RateLimiter,
    error_response,
    from_unix,
    json_response,
    read_json,
    read_multipart,
)
from .sandbox_stats import trace_id
from .sandbox_validate import JSON_MEDIA, MULTIPART, rules
from .webhooks import GhlWebhooks

__all__ = ["API_VERSION", "ENDPOINTS", "Endpoint", "GhlSandbox", "create_app", "seeded_world"]

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
STATE_FORMAT = "splice-ghl-sandbox/1"

Json = dict[str, Any]
Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """One API operation: its manifest id, route, scope, token types and success status."""

    op_id: str
    method: str
    path: str
    scope: str
    handler: Handler
    status: int = 200
    status_v3: int | None = None  # where the v3 spec declares another success status
    token_types: tuple[str, ...] = (LOCATION,)

    def success(self, version: str) -> int:
        return self.status_v3 if version == "v3" and self.status_v3 else self.status


SP = "/social-media-posting"
_SCOPE = "socialplanner/"


def _endpoints() -> list[Endpoint]:
    e = Endpoint
    found = [
        e("list_users", "GET", "/users/", "users.readonly", users.list_users),
        e("search_users", "GET", "/users/search", "users.readonly", users.search_users,
          token_types=BOTH),
        e("filter_users_by_email", "POST", "/users/search/filter-by-email", "users.readonly",
          users.filter_by_email, token_types=(COMPANY,)),
        e("get_user", "GET", "/users/{userId}", "users.readonly", users.get_user,
          token_types=BOTH),
        e("update_user", "PUT", "/users/{userId}", "users.write", users.update_user,
          token_types=BOTH),
        e("delete_user", "DELETE", "/users/{userId}", "users.write", users.delete_user,
          token_types=BOTH),
        e("create_user", "POST", "/users/", "users.write", users.create_user, 201,
          token_types=BOTH),
        e("list_tags", "GET", f"{SP}/{{locationId}}/tags", f"{_SCOPE}tag.readonly",
          social.list_tags),
        e("get_tag_details", "POST", f"{SP}/{{locationId}}/tags/details",
          f"{_SCOPE}tag.readonly", social.tag_details, 201),
        e("get_statistics", "POST", f"{SP}/statistics", f"{_SCOPE}statistics.readonly",
          social.statistics, 201, 200),
        e("list_social_accounts", "GET", f"{SP}/{{locationId}}/accounts",
          f"{_SCOPE}account.readonly", social.list_accounts),
        e("delete_social_account", "DELETE", f"{SP}/{{locationId}}/accounts/{{id}}",
          f"{_SCOPE}account.write", social.delete_account),
        e("list_categories", "GET", f"{SP}/{{locationId}}/categories",
          f"{_SCOPE}category.readonly", social.list_categories),
        e("get_category", "GET", f"{SP}/{{locationId}}/categories/{{id}}",
          f"{_SCOPE}category.readonly", social.get_category),
        e("list_posts", "POST", f"{SP}/{{locationId}}/posts/list", f"{_SCOPE}post.readonly",
          posts.list_posts, 201),
        e("create_post", "POST", f"{SP}/{{locationId}}/posts", f"{_SCOPE}post.write",
          posts.create_post, 201),
        e("get_post", "GET", f"{SP}/{{locationId}}/posts/{{id}}", f"{_SCOPE}post.readonly",
          posts.get_post),
        e("update_post", "PUT", f"{SP}/{{locationId}}/posts/{{id}}", f"{_SCOPE}post.write",
          posts.update_post),
        e("delete_post", "DELETE", f"{SP}/{{locationId}}/posts/{{id}}", f"{_SCOPE}post.write",
          posts.delete_post),
        e("bulk_delete_posts", "POST", f"{SP}/{{locationId}}/posts/bulk-delete",
          f"{_SCOPE}csv.write", posts.bulk_delete_posts, 201),
        e("upload_csv", "POST", f"{SP}/{{locationId}}/csv", f"{_SCOPE}csv.write",
          csvs.upload_csv, 201),
        e("list_csv_imports", "GET", f"{SP}/{{locationId}}/csv", f"{_SCOPE}csv.readonly",
          csvs.list_csv_imports),
        e("set_csv_accounts", "POST", f"{SP}/{{locationId}}/set-accounts",
          f"{_SCOPE}csv.write", csvs.set_csv_accounts, 201),
        e("get_csv_import", "GET", f"{SP}/{{locationId}}/csv/{{id}}", f"{_SCOPE}csv.readonly",
          csvs.get_csv_import),
        e("finalize_csv_import", "PATCH", f"{SP}/{{locationId}}/csv/{{id}}",
          f"{_SCOPE}csv.write", csvs.finalize_csv_import),
        e("delete_csv_import", "DELETE", f"{SP}/{{locationId}}/csv/{{id}}",
          f"{_SCOPE}csv.write", csvs.delete_csv_import),
        e("delete_csv_post", "DELETE", f"{SP}/{{locationId}}/csv/{{csvId}}/post/{{postId}}",
          f"{_SCOPE}csv.write", csvs.delete_csv_post),
    ]
    lists = {"google": "list_google_locations", "facebook": "list_facebook_pages",
             "instagram": "list_instagram_accounts", "linkedin": "list_linkedin_pages",
             "twitter": "get_twitter_profile", "tiktok": "get_tiktok_profile",
             "tiktok-business": "get_tiktok_business_profile"}
    attaches = {"google": "attach_google_location", "facebook": "attach_facebook_page",
                "instagram": "attach_instagram_account", "linkedin": "attach_linkedin_page",
                "twitter": "attach_twitter_profile", "tiktok": "attach_tiktok_profile"}
    for platform in social_oauth.PLATFORMS:
        name = platform.replace("-", "_")
        found.append(e(f"start_{name}_oauth", "GET", f"{SP}/oauth/{platform}/start",
                       f"{_SCOPE}oauth.readonly", social_oauth.start(platform)))
        noun = "locations" if platform == "google" else "accounts"
        path = f"{SP}/oauth/{{locationId}}/{platform}/{noun}/{{accountId}}"
        found.append(e(lists[platform], "GET", path, f"{_SCOPE}oauth.readonly",
                       social_oauth.listing(platform)))
        if platform in attaches:
            found.append(e(attaches[platform], "POST", path, f"{_SCOPE}oauth.write",
                           social_oauth.attach(platform), 201))
    return found


ENDPOINTS: tuple[Endpoint, ...] = tuple(_endpoints())


def seeded_world(seed: int) -> World:
    """The deterministic starting world: users, tags, categories, accounts, posts, logins."""
    world = World.seeded(seed)
    social_oauth.seed_grants(world)
    posts.seed_posts(world)
    return world


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def _control_body(request: Request) -> Json:
    try:
        body = await read_json(request)
    except ApiProblem:
        return {}
    return body if isinstance(body, dict) else {}


# -- the sandbox -----------------------------------------------------------------------------

class GhlSandbox(MarketplaceAuth):
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
        self.rules = rules()
        self.webhooks = GhlWebhooks(self)
        self._reset_state()
        path = self.config.state_path
        if path is not None and Path(path).exists():
            self._load(Path(path))

    def _reset_state(self) -> None:
        self.world = seeded_world(self.config.seed)
        self.oauth = OAuthServer(
            clients=[self.client], clock=self.now,
            access_ttl=self.config.access_token_ttl or ACCESS_TTL,
            refresh_ttl=self.config.refresh_token_ttl or REFRESH_TTL, token_prefix="ghl")
        # user type of each pending code / live refresh token, by SHA-256 digest
        self.grant_types: dict[str, list[Any]] = {}

    # -- clock, traces and persistence --------------------------------------------------------

    def now(self) -> float:
        return self.config.clock() + self.clock_offset

    def now_dt(self) -> datetime:
        return from_unix(self.now())

    def next_trace_id(self) -> str:
        self.traces += 1
        return trace_id(self.world.seed, self.traces)

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
            if "oauth_grants" not in state["world"]:  # saved before posts and logins existed
                social_oauth.seed_grants(self.world)
                posts.seed_posts(self.world)
            self.oauth.load_json(state["oauth"])
            self.grant_types = dict(state["grantTypes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"HighLevel sandbox state file {path} is unreadable: {exc}",
                              hint="delete it to start from the seed data") from None

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

    async def handle_api(self, request: Request, endpoint: Endpoint) -> Response:
        """Version, auth, rate limit, token type, scope, location, request schema; handler."""
        failure = self._take_failure("api")
        if failure is not None:
            return self._injected(failure)
        idle = self.limiter.headers(None)
        versions = self.rules.versions(endpoint.op_id)
        version = request.headers.get("version")
        if version is None:
            return error_response(400, "Version header was not found", idle)
        if version not in versions:
            return error_response(400, f"Version header must be {' or '.join(versions)}", idle)
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
        try:
            if caller.user_type not in endpoint.token_types:
                raise ApiProblem(401, "This authClass type is not allowed to access this "
                                      "scope. Please reach out to support if this is a mistake")
            if endpoint.scope not in info.scopes:
                raise ApiProblem(
                    401, f"The token is not authorized for this scope: {endpoint.scope}")
            path = {k: str(v) for k, v in request.path_params.items()}
            if "locationId" in path:
                caller.require_location(path["locationId"])
            call = await self._checked_call(request, endpoint, version, caller, path)
            result = await endpoint.handler(call)
        except ApiProblem as exc:
            return error_response(exc.status, exc.message, headers)
        if isinstance(result, Response):
            result.headers.update(headers)
            return result
        return json_response(result, endpoint.success(version), headers)

    async def _checked_call(self, request: Request, endpoint: Endpoint, version: str,
                            caller: Caller, path: dict[str, str]) -> Call:
        query = dict(request.query_params)
        problems = self.rules.check_query(endpoint.op_id, version, query)
        call = Call(self, request, caller, version, path, query)
        spec = self.rules.body(endpoint.op_id, version)
        if spec is not None and spec["media"] == JSON_MEDIA:
            body = await read_json(request)
            if body is MISSING_BODY:
                if spec["required"]:
                    problems.append("request body should not be empty")
            else:
                problems += self.rules.check_body(endpoint.op_id, version, body)
                call.body = body
        elif spec is not None and spec["media"] == MULTIPART:
            call.parts = await read_multipart(request)
            if call.parts is None:
                raise ApiProblem(400, "The request body must be multipart/form-data")
            fields = {p.name: p.data.decode("utf-8", "replace") for p in call.parts}
            problems += self.rules.check_body(endpoint.op_id, version, fields)
        if problems:
            raise ApiProblem(422, problems)
        return call

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
        return json_response(tag, 201)

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
        return json_response(tag)

    async def test_create_category(self, request: Request) -> Response:
        """``{"name", "primaryColor"?, "secondaryColor"?, "locationId"?}``: a new post category
        (made in HighLevel's app; the API has no call for it), stamped with the sandbox clock."""
        body = await _control_body(request)
        location = body.get("locationId", data.LOCATION_ID)
        colors = (body.get("primaryColor", "#0F766E"), body.get("secondaryColor", "#CCFBF1"))
        if not isinstance(body.get("name"), str) or location not in data.LOCATIONS \
                or not all(isinstance(c, str) for c in colors):
            return error_response(422, ["name must be a string", "colors must be strings",
                                        "locationId must be a sandbox location"])
        try:
            category = self.world.create_category(location, body["name"], colors, self.now_dt())
        except ApiProblem as exc:
            return error_response(exc.status, exc.message)
        self.save()
        return json_response(category, 201)

    async def test_update_category(self, request: Request) -> Response:
        """``{"name"?, "primaryColor"?, "secondaryColor"?, "deleted"?}``: edit a category and
        bump its ``updatedAt``."""
        body = await _control_body(request)
        texts: Json = {k: body[k] for k in ("name", "primaryColor", "secondaryColor")
                       if k in body}
        if not all(isinstance(v, str) and v.strip() for v in texts.values()) \
                or not isinstance(body.get("deleted", False), bool) \
                or set(body) - {*texts, "deleted"}:
            return error_response(422, ["name and colors must be non-empty strings",
                                        "deleted must be a boolean"])
        changes = dict(texts)
        if "deleted" in body:
            changes["deleted"] = body["deleted"]
        try:
            category = self.world.update_category(request.path_params["categoryId"], changes,
                                                  self.now_dt())
        except ApiProblem as exc:
            return error_response(exc.status, exc.message)
        self.save()
        return json_response(category)

    async def test_update_account(self, request: Request) -> Response:
        """``{"isExpired": bool}``: a connected account's access expires now (``expire`` set
        to the sandbox clock) or is valid again; attaching it anew also renews it."""
        expired = (await _control_body(request)).get("isExpired")
        account = next((a for a in self.world.accounts
                        if a["id"] == request.path_params["accountId"]), None)
        if not isinstance(expired, bool):
            return error_response(422, ["isExpired must be a boolean"])
        if account is None:
            return error_response(404, f"Account {request.path_params['accountId']} not found")
        account["isExpired"] = expired
        if expired:
            account["expire"] = data.iso(self.now_dt())
        self.save()
        return json_response({k: v for k, v in account.items() if not k.startswith("_")})

    async def test_expire_tokens(self, request: Request) -> Response:
        self.oauth.expire_access_tokens()
        self.save()
        return json_response({"ok": True, **self.oauth.stats()})

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
        return json_response({"pending": self.failures})

    async def test_advance_clock(self, request: Request) -> Response:
        """``{"seconds": S}``: move the sandbox clock forward (tokens, new timestamps)."""
        seconds = (await _control_body(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return error_response(422, ["seconds must be a number >= 0"])
        self.clock_offset += seconds
        self.save()
        return json_response({"now": data.iso(self.now_dt()), "clockOffset": self.clock_offset})

    async def test_state(self, request: Request) -> Response:
        return json_response({"now": data.iso(self.now_dt()), "clockOffset": self.clock_offset,
                              "oauth": self.oauth.stats(), "pendingFailures": self.failures,
                              "world": self.world.to_json()})

    async def test_reset(self, request: Request) -> Response:
        self.clock_offset = 0.0
        self.failures.clear()
        self.limiter.reset()
        self.traces = 0
        self._reset_state()
        self.save()
        return json_response({"ok": True})

    # -- assembly ---------------------------------------------------------------------------

    def _route(self, path: str, endpoint: Endpoint) -> Route:
        async def serve(request: Request) -> Response:
            return await self.handle_api(request, endpoint)
        serve.__name__ = endpoint.op_id
        return Route(path, serve, methods=[endpoint.method])

    def routes(self) -> list[Route]:
        routes = [
            Route("/v2/oauth/chooselocation", self.choose_location, methods=["GET", "POST"]),
            Route("/oauth/chooselocation", self.choose_location, methods=["GET", "POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
        ]
        for endpoint in ENDPOINTS:
            routes.append(self._route(endpoint.path, endpoint))
            if endpoint.path == "/users/":  # HighLevel answers without the slash too
                routes.append(self._route("/users", endpoint))
        routes += [
            Route("/__test__/tags", self.test_create_tag, methods=["POST"]),
            Route("/__test__/tags/{tagId}", self.test_update_tag, methods=["PATCH"]),
            Route("/__test__/categories", self.test_create_category, methods=["POST"]),
            Route("/__test__/categories/{categoryId}", self.test_update_category,
                  methods=["PATCH"]),
            Route("/__test__/accounts/{accountId}", self.test_update_account, methods=["PATCH"]),
            Route("/__test__/expire-tokens", self.test_expire_tokens, methods=["POST"]),
            Route("/__test__/fail-next", self.test_fail_next, methods=["POST"]),
            Route("/__test__/advance-clock", self.test_advance_clock, methods=["POST"]),
            Route("/__test__/state", self.test_state, methods=["GET"]),
            Route("/__test__/reset", self.test_reset, methods=["POST"]),
            *self.webhooks.routes(),
        ]
        return routes


async def _not_found(request: Request, exc: Exception) -> Response:
    """NestJS's answer to an unknown route or method: 404 ``Cannot METHOD /path``."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(404 if status in (404, 405) else status,
                          f"Cannot {request.method} {request.url.path}")


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The HighLevel sandbox as a Starlette app; ``app.state.sandbox`` is the GhlSandbox."""
    sandbox = GhlSandbox(config)
    app = Starlette(routes=sandbox.routes(),
                    exception_handlers={404: _not_found, 405: _not_found})
    app.state.sandbox = sandbox
    return app

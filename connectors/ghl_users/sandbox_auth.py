"""HighLevel's Marketplace OAuth in the sandbox: the consent page and ``POST /oauth/token``.

Contract (NOTES §3): ``GET|POST /v2/oauth/chooselocation`` (also the old ``/oauth/...`` path)
shows a consent page to pick a sub-account or the agency, or approves on its own when the
sandbox is configured to; ``POST /oauth/token`` takes a form body (``client_id``,
``client_secret``, ``grant_type``, ``code``/``refresh_token``, ``user_type``), answers with
HighLevel's token fields (``userType``, ``locationId`` or ``companyId``/``approvedLocations``,
``userId``...) and rotates refresh tokens on every use (reuse: ``invalid_grant``). A code or
refresh token presented with the other ``user_type`` than it was issued for is refused.

:class:`MarketplaceAuth` is a mixin of :class:`~.sandbox.GhlSandbox`, which provides the
attributes it declares.
"""

from __future__ import annotations

import hashlib
import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from splice.sandbox import OAuthFailure, OAuthServer, SandboxConfig

from . import sandbox_data as data
from .sandbox_http import COMPANY, LOCATION, ApiProblem, error_response, read_form

Json = dict[str, Any]
BOTH = (LOCATION, COMPANY)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class MarketplaceAuth:
    """Consent and token endpoints over ``self.oauth`` (an :class:`OAuthServer`)."""

    config: SandboxConfig
    oauth: OAuthServer
    world: data.World
    grant_types: dict[str, list[Any]]

    def now(self) -> float:
        raise NotImplementedError

    def save(self) -> None:
        raise NotImplementedError

    def _prune_grants(self) -> None:
        raise NotImplementedError

    def _take_failure(self, target: str) -> Json | None:
        raise NotImplementedError

    def _injected(self, failure: Json) -> Response:
        raise NotImplementedError

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
            form = await read_form(request)
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
        form = await read_form(request)
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

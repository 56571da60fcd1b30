"""OAuth 2.0 for connections: PKCE, token requests, and refresh as an ``httpx.Auth`` flow.

Refresh rules (HighLevel and Invoice2go rotate refresh tokens on every use):

* refresh proactively ``skew`` seconds before expiry, and once on a 401 (then retry once);
* single-flight across threads and processes: the refresh runs inside ``Store.locked_refresh``
  (a database write/row lock) and first re-reads the connection: if a sibling already rotated,
  its tokens are used and no request is made;
* the rotated refresh token is written (same transaction as the lock) before the new access
  token is used;
* a network failure leaves the stored tokens untouched; ``invalid_grant`` re-reads the store
  once more and only then marks the connection ``reauth_required`` (and emits the event once).

The flow yields its token request through the client that is sending the API request, so it
does no HTTP of its own (the pattern of httpx's ``DigestAuth``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from .errors import AuthError
from .manifest import Connector

DEFAULT_SKEW = 300.0


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def endpoint(url: str, base_url: str) -> str:
    """An OAuth URL from the manifest; a leading ``/`` is relative to the base URL."""
    return urljoin(base_url.rstrip("/") + "/", url.lstrip("/")) if url.startswith("/") else url


def authorize_url(connector: Connector, *, base_url: str, client_id: str, redirect_uri: str,
                  scopes: list[str], state: str, code_challenge: str | None) -> str:
    auth = connector.auth
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "state": state, **(auth.get("authorize_params") or {})}
    if scopes:
        params["scope"] = auth.get("scope_separator", " ").join(scopes)
    if code_challenge:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    return endpoint(auth["authorize_url"], base_url) + "?" + urlencode(params)


def token_request(connector: Connector, *, base_url: str, client_id: str, client_secret: str,
                  fields: dict[str, str]) -> httpx.Request:
    """A token-endpoint request in the style the manifest declares."""
    auth = connector.auth
    data = {**(auth.get("token_params") or {}), **fields}
    headers = {"Accept": "application/json"}
    if auth.get("client_auth", "body") == "basic":
        raw = f"{client_id}:{client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    else:
        data.update(client_id=client_id, client_secret=client_secret)
    url = endpoint(auth["token_url"], base_url)
    if auth.get("token_request", "form") == "json":
        return httpx.Request("POST", url, json=data, headers=headers)
    return httpx.Request("POST", url, data=data, headers=headers)


@dataclass
class TokenResult:
    secret: dict[str, Any]      # access_token, refresh_token (encrypted at rest)
    config: dict[str, Any]      # scopes, expires_at, fields, status, last_refresh_at


def parse_token_response(connector: Connector, body: Any, *, requested_scopes: list[str],
                         previous_refresh: str | None = None,
                         clock: Callable[[], float] = time.time) -> TokenResult:
    if not isinstance(body, dict) or not body.get("access_token"):
        raise AuthError(f"{connector.id}: the token endpoint returned no access_token")
    auth = connector.auth
    sep = auth.get("scope_separator", " ")
    scope_text = body.get("scope")
    scopes = [s for s in str(scope_text).split(sep) if s] if scope_text else list(requested_scopes)
    lifetime = body.get("expires_in") or auth.get("default_expires_in")
    expires_at = clock() + float(lifetime) if lifetime else None
    fields = {f: body[f] for f in auth.get("token_fields", []) or [] if f in body}
    stamp = datetime.fromtimestamp(clock(), UTC).isoformat()
    secret = {"access_token": body["access_token"],
              "refresh_token": body.get("refresh_token") or previous_refresh}
    config = {"scopes": scopes, "expires_at": expires_at, "status": "valid",
              "last_refresh_at": stamp}
    if fields:
        config["fields"] = fields
    return TokenResult(secret, config)


def oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"


class OAuth2Auth(httpx.Auth):
    """Bearer auth from a stored connection, refreshing before expiry and once on 401."""

    requires_response_body = True

    def __init__(self, connector: Connector, connection: Any, store: Any, *,
                 skew: float = DEFAULT_SKEW, clock: Callable[[], float] = time.time,
                 emit: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
        self.connector = connector
        self.name = connection.name
        self.store = store
        self.skew = skew
        self.clock = clock
        self.emit = emit or (lambda event, name, data: None)
        self._record = connection

    def _base_url(self, record: Any) -> str:
        return record.base_url or self.connector.base_url

    def _expiring(self, record: Any) -> bool:
        expires_at = record.config.get("expires_at")
        return expires_at is not None and float(expires_at) - self.skew <= self.clock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        record = self._record
        if record.status == "reauth_required":
            record = self.store.get_connection(self.name) or record
            if record.status == "reauth_required":
                raise AuthError(f"connection '{self.name}' needs to be re-authorised",
                                hint=f"run `splice connect {self.connector.id} --name "
                                     f"{self.name}`")
        if self._expiring(record):
            record = yield from self._refresh(record.secret.get("access_token"))
        token = record.secret.get("access_token")
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        record = yield from self._refresh(token)
        request.headers["Authorization"] = f"Bearer {record.secret.get('access_token')}"
        yield request

    def _refresh(self, stale_access: str | None) -> Generator[httpx.Request, httpx.Response, Any]:
        with self.store.locked_refresh(self.name) as fresh:
            current = fresh.secret
            if current.get("access_token") != stale_access and not self._expiring(fresh):
                self._record = fresh   # a sibling thread or process already refreshed
                return fresh
            refresh_token = current.get("refresh_token")
            if not refresh_token:
                self._mark_reauth(fresh, "no refresh token stored")
            client_id = fresh.config.get("client_id", "")
            request = token_request(self.connector, base_url=self._base_url(fresh),
                                    client_id=client_id,
                                    client_secret=current.get("client_secret", ""),
                                    fields={"grant_type": "refresh_token",
                                            "refresh_token": refresh_token})
            response = yield request   # a network error ends the flow here: nothing is written
            response.read()
            if response.status_code == 200:
                result = parse_token_response(self.connector, response.json(),
                                              requested_scopes=fresh.scopes,
                                              previous_refresh=refresh_token, clock=self.clock)
                self.store.update_tokens(self.name, result.secret, result.config)
                updated = self.store.get_connection(self.name)
                self._record = updated
                self.emit("token_refreshed", self.name,
                          {"connector": self.connector.id,
                           "expires_at": result.config.get("expires_at")})
                return updated
            error = oauth_error(response)
            if error == "invalid_grant":
                self._mark_reauth(fresh, "the refresh token was refused (invalid_grant)")
            raise AuthError(f"connection '{self.name}': token refresh failed ({error}); "
                            "stored tokens were kept", status=response.status_code)

    def _mark_reauth(self, record: Any, reason: str) -> None:
        if record.status != "reauth_required":
            self.store.update_tokens(self.name, None, {"status": "reauth_required",
                                                      "last_error": reason})
            self.emit("reauth_required", self.name, {"connector": self.connector.id,
                                                     "reason": reason})
        raise AuthError(f"connection '{self.name}' needs to be re-authorised: {reason}",
                        hint=f"run `splice connect {self.connector.id} --name {self.name}`")

"""OAuth 2.0 client credentials (RFC 6749 §4.4) as an ``httpx.Auth`` flow.

For machine-to-machine APIs: the client authenticates as itself at the manifest's
``token_url`` and gets a short-lived access token, with no refresh token and no browser.

Rules:

* the client id and secret are **references** kept on the connection
  (``{"$env": NAME}`` or ``{"$file": PATH}``; default ``SPLICE_<CONNECTOR>_CLIENT_ID`` /
  ``_CLIENT_SECRET``), resolved each time a token is fetched, so rotating the secret needs
  no splice command and the secret is never written to the state database;
* a token is fetched when none is stored, ``skew`` seconds before it expires (at most a
  quarter of its lifetime, so a two-minute token is not fetched on every request), and once
  on a 401, after which the request is retried once;
* single-flight across threads and processes: the fetch runs inside
  ``Store.locked_refresh`` and first re-reads the connection; a token a sibling stored
  meanwhile (not the one this flow used, not expiring) is used and nothing is sent;
* the new token is committed (the lock's transaction) before it is used; a network failure
  or a refused request leaves the stored token untouched.

Like :class:`splice.connections.oauth.OAuth2Auth`, the flow yields its token request through
the client that sends the API request and does no HTTP of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx
import sqlalchemy as sa

from ..errors import AuthError, ConfigError
from ..model.manifest import Connector
from ..secrets import resolve_secret_ref
from .oauth import (
    describe_oauth_error,
    oauth_error,
    parse_token_response,
    refresh_skew,
    response_json,
    token_request,
)

log = logging.getLogger("splice.oauth")

KIND = "oauth2_client_credentials"


def default_refs(connector_id: str) -> dict[str, dict[str, str]]:
    """The environment variables a connection reads when it names none."""
    prefix = f"SPLICE_{connector_id.upper()}"
    return {"client_id_ref": {"$env": f"{prefix}_CLIENT_ID"},
            "client_secret_ref": {"$env": f"{prefix}_CLIENT_SECRET"}}


def client_credentials(connector: Connector, record: Any) -> tuple[str, str]:
    """(client id, client secret), resolved from the connection's references."""
    refs = {**default_refs(connector.id), **{k: v for k, v in record.config.items()
                                             if k in ("client_id_ref", "client_secret_ref")}}
    values = []
    for key in ("client_id_ref", "client_secret_ref"):
        try:
            value = resolve_secret_ref(refs[key])
        except ConfigError as exc:
            raise ConfigError(f"connection '{record.name}': the client "
                              f"{'id' if key == 'client_id_ref' else 'secret'} is not "
                              f"available: {exc.message}", hint=exc.hint) from None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"connection '{record.name}': the client "
                              f"{'id' if key == 'client_id_ref' else 'secret'} is empty")
        values.append(value)
    return values[0], values[1]


class ClientCredentialsAuth(httpx.Auth):
    """Bearer auth with tokens from the client-credentials grant; see the module docstring."""

    requires_response_body = True

    def __init__(self, connector: Connector, connection: Any, store: Any, *,
                 skew: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.connector = connector
        self.name = connection.name
        self.store = store
        self.skew = refresh_skew(connection) if skew is None else skew
        self.clock = clock
        self._record = connection
        self._access: str | None = connection.secret.get("access_token")
        self.fetches = 0  # tokens this flow fetched (tests and -v logs)

    def _expiring(self, record: Any) -> bool:
        expires_at = record.config.get("expires_at")
        if expires_at is None:
            return False
        lifetime = record.config.get("token_lifetime")
        skew = min(self.skew, float(lifetime) / 4) if lifetime else self.skew
        return float(expires_at) - skew <= self.clock()

    def _use(self, record: Any) -> Any:
        self._record = record
        self._access = record.secret.get("access_token")
        return record

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._access or self._expiring(self._record):
            yield from self._fetch(self._access)
        used = self._access
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code != 401:
            return
        yield from self._fetch(used, after_401=True)
        request.headers["Authorization"] = f"Bearer {self._access}"
        yield request

    def fetch(self, client: httpx.Client) -> Any:
        """Fetch a token now with ``client`` (``splice connections refresh``)."""
        flow = self._fetch(self._access, after_401=True)
        try:
            request = next(flow)
            while True:
                try:
                    response = client.send(request)
                except httpx.TransportError as exc:
                    raise AuthError(f"connection '{self.name}': could not reach the token "
                                    f"endpoint ({type(exc).__name__})") from None
                request = flow.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            flow.close()

    def _fetch(self, used: str | None, *, after_401: bool = False
               ) -> Generator[httpx.Request, httpx.Response, Any]:
        try:
            with self.store.locked_refresh(self.name) as fresh:
                return (yield from self._fetch_locked(fresh, used, after_401))
        except sa.exc.OperationalError as exc:
            raise AuthError(f"connection '{self.name}': the state database failed while "
                            f"fetching a token ({type(exc.orig).__name__})",
                            hint="another splice process may hold the database for too "
                                 "long; try again") from None

    def _fetch_locked(self, fresh: Any, used: str | None, after_401: bool
                      ) -> Generator[httpx.Request, httpx.Response, Any]:
        access = fresh.secret.get("access_token")
        if access and access != used and not self._expiring(fresh):
            return self._use(fresh)  # a sibling thread or process fetched one meanwhile
        if access and not after_401 and access == used and not self._expiring(fresh):
            return self._use(fresh)
        client_id, client_secret = client_credentials(self.connector, fresh)
        auth = self.connector.auth
        fields = {"grant_type": "client_credentials"}
        scopes = fresh.config.get("requested_scopes") or []
        if scopes:
            fields["scope"] = auth.get("scope_separator", " ").join(scopes)
        request = token_request(self.connector, base_url=fresh.base_url, client_id=client_id,
                                client_secret=client_secret, fields=fields,
                                token_params=fresh.config.get("token_params"))
        response = yield request   # a network error ends the flow here: nothing is written
        response.read()
        body = response_json(response)
        if response.status_code != 200 or not isinstance(body, dict) \
                or not body.get("access_token"):
            what = describe_oauth_error(response) if response.status_code != 200 \
                else "an answer without an access token"
            hint = ("check the client id and secret the connection reads (`splice connections "
                    f"show {self.name}`)") if oauth_error(response) == "invalid_client" else None
            raise AuthError(f"connection '{self.name}': the token endpoint refused the client "
                            f"credentials: {what}", status=response.status_code, hint=hint)
        result = parse_token_response(self.connector, body, requested_scopes=list(scopes),
                                      clock=self.clock)
        config = dict(result.config)
        expires_at = config.get("expires_at")
        config["token_lifetime"] = (float(expires_at) - self.clock()) if expires_at else None
        self.store.update_tokens(self.name, {"access_token": result.secret["access_token"]},
                                 config)
        self.fetches += 1
        log.info("connection '%s': client-credentials token fetched", self.name)
        return self._use(self.store.require_connection(self.name))

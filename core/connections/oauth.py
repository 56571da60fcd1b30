"""OAuth 2.0 for connections: PKCE, token requests, and refresh as an ``httpx.Auth`` flow.

Refresh rules (HighLevel and Invoice2go rotate refresh tokens on every use, so one lost write
or one race locks the user out):

* refresh proactively ``skew`` seconds before expiry, and once on a 401 (then retry once);
* single-flight across threads and processes: the refresh runs inside ``Store.locked_refresh``
  (SQLite ``BEGIN IMMEDIATE`` / PostgreSQL ``SELECT ... FOR UPDATE``) and first re-reads the
  connection: if a sibling already refreshed, its tokens are used and nothing is sent;
* the rotated refresh token is committed (the lock's transaction) before the new access token
  is used;
* a network failure leaves the stored tokens untouched; ``invalid_grant`` re-reads the store
  once more (a sibling may have rotated) and only then marks the connection
  ``reauth_required`` and emits the ``reauth_required`` event, once;
* each refresher records a marker in the connection's config (its own short transaction)
  before it takes the lock and removes it afterwards. A process that dies between the token
  response and the commit leaves its marker, so ``splice connections list`` says "refresh
  interrupted" at once instead of "valid", and the next use either refreshes (the request
  never reached the provider) or marks the connection for re-auth and says why.

The flow yields its token request through the client that sends the API request, so it does
no HTTP of its own (the pattern of httpx's ``DigestAuth``); :meth:`OAuth2Auth.refresh` drives
the same flow with a given client for ``splice connections refresh``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx
import sqlalchemy as sa

from ..errors import AuthError, ConfigError
from ..model.manifest import Connector
from ..secrets import REDACTOR, redact_text

log = logging.getLogger("splice.oauth")

DEFAULT_SKEW = 300.0
SKEW_ENV = "SPLICE_REFRESH_SKEW"
REAUTH = "reauth_required"
# Token requests run while other processes wait on the refresh lock (SQLite busy timeout
# 30 s), so they must finish well within it.
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

# A refresh marker older than this belongs to a refresher that died (lock wait + request).
REFRESH_STALE_AFTER = 60.0

Emit = Callable[[str, str, dict[str, Any]], None]


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def endpoint(url: str, base_url: str, default_base: str | None = None) -> str:
    """An OAuth URL from the manifest, for a connection whose base URL is ``base_url``.

    A URL starting with ``/`` is relative to the base URL. An absolute URL is kept, unless
    ``default_base`` (the connector's own base URL) is given and the connection overrides it:
    then its path moves onto the override, so one ``--base-url`` (a sandbox, a staging
    server) serves the API and the OAuth endpoints alike.
    """
    root = base_url.rstrip("/") + "/"
    if url.startswith("/"):
        return urljoin(root, url.lstrip("/"))
    if default_base is not None and base_url.rstrip("/") != default_base.rstrip("/"):
        parts = urlsplit(url)
        rest = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        return root + rest
    return url


def oauth_url(connector: Connector, key: str, base_url: str | None = None) -> str:
    """The manifest's ``auth.<key>`` URL for a connection (``base_url`` None: the default)."""
    url = connector.auth.get(key)
    if not url:
        raise ConfigError(f"connector '{connector.id}' declares no auth.{key}")
    return endpoint(str(url), base_url or connector.base_url, connector.base_url)


def authorize_url(connector: Connector, *, base_url: str | None, client_id: str,
                  redirect_uri: str, scopes: list[str], state: str,
                  code_challenge: str | None) -> str:
    """The consent page URL (``base_url``: the connection's override, or None)."""
    auth = connector.auth
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "state": state, **(auth.get("authorize_params") or {})}
    if scopes:
        params["scope"] = auth.get("scope_separator", " ").join(scopes)
    if code_challenge:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    return oauth_url(connector, "authorize_url", base_url) + "?" + urlencode(params)


def _client_request(connector: Connector, url: str, *, client_id: str, client_secret: str,
                    data: dict[str, Any]) -> httpx.Request:
    """A POST to an OAuth endpoint, with client authentication as the manifest declares."""
    auth = connector.auth
    headers = {"Accept": "application/json"}
    if auth.get("client_auth", "body") == "basic":  # RFC 6749 §2.3.1: form-encode, then base64
        raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
        encoded = base64.b64encode(raw).decode()
        REDACTOR.add(encoded)  # masked if the token endpoint echoes it
        headers["Authorization"] = "Basic " + encoded
    else:
        data = {**data, "client_id": client_id, "client_secret": client_secret}
    extensions = {"timeout": TOKEN_TIMEOUT.as_dict()}
    if auth.get("token_request", "form") == "json":
        return httpx.Request("POST", url, json=data, headers=headers, extensions=extensions)
    return httpx.Request("POST", url, data=data, headers=headers, extensions=extensions)


def token_request(connector: Connector, *, base_url: str | None, client_id: str,
                  client_secret: str, fields: dict[str, str],
                  token_params: dict[str, str] | None = None) -> httpx.Request:
    """A token-endpoint request; ``token_params`` override the manifest's ``token_params``."""
    data = {**(connector.auth.get("token_params") or {}), **(token_params or {}), **fields}
    return _client_request(connector, oauth_url(connector, "token_url", base_url),
                           client_id=client_id, client_secret=client_secret, data=data)


def revoke_request(connector: Connector, *, base_url: str | None, client_id: str,
                   client_secret: str, token: str, hint: str = "refresh_token"
                   ) -> httpx.Request:
    """An RFC 7009 revocation request."""
    return _client_request(connector, oauth_url(connector, "revoke_url", base_url),
                           client_id=client_id, client_secret=client_secret,
                           data={"token": token, "token_type_hint": hint})


@dataclass
class TokenResult:
    secret: dict[str, Any]      # access_token, refresh_token (encrypted at rest)
    config: dict[str, Any]      # scopes, expires_at, fields, status, last_refresh_at


def parse_token_response(connector: Connector, body: Any, *, requested_scopes: list[str],
                         previous_refresh: str | None = None,
                         clock: Callable[[], float] = time.time) -> TokenResult:
    """Split a token response into the secret part and the displayable config part."""
    if not isinstance(body, dict) or not body.get("access_token"):
        raise AuthError(f"{connector.id}: the token endpoint returned no access_token")
    auth = connector.auth
    sep = auth.get("scope_separator", " ")
    scope_text = body.get("scope")
    scopes = [s for s in str(scope_text).split(sep) if s] if scope_text else list(requested_scopes)
    lifetime = body.get("expires_in") or auth.get("default_expires_in")
    try:
        expires_at = clock() + float(lifetime) if lifetime else None
    except (TypeError, ValueError):
        expires_at = None
    fields = {f: body[f] for f in auth.get("token_fields", []) or [] if f in body}
    now = clock()
    secret = {"access_token": str(body["access_token"]),
              "refresh_token": body.get("refresh_token") or previous_refresh}
    config: dict[str, Any] = {"scopes": scopes, "expires_at": expires_at, "status": "valid",
                              "last_refresh_at": datetime.fromtimestamp(now, UTC).isoformat(),
                              "last_error": None}
    if fields:
        config["fields"] = fields
    return TokenResult(secret, config)


def response_json(response: httpx.Response) -> Any:
    """The JSON body, or None when there is none."""
    try:
        return response.json()
    except ValueError:
        return None


def oauth_error(response: httpx.Response) -> str:
    """The RFC 6749 ``error`` code of a failed token response (or ``HTTP <status>``)."""
    body = response_json(response)
    if isinstance(body, dict):
        code = body.get("error") or body.get("message")
        if isinstance(code, str) and code:
            return code[:100]
    return f"HTTP {response.status_code}"


def describe_oauth_error(response: httpx.Response) -> str:
    """``code (description)`` of a failed token response, for messages."""
    code = oauth_error(response)
    body = response_json(response)
    detail = body.get("error_description") or body.get("message") \
        if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = "; ".join(str(d) for d in detail)
    if isinstance(detail, str) and detail and detail != code:
        return f"{redact_text(code, 80)} ({redact_text(detail, 200)})"
    return redact_text(code, 80)


def refresh_skew(record: Any) -> float:
    """Seconds before expiry to refresh: connection ``refresh_skew``, $SPLICE_REFRESH_SKEW,
    else 300."""
    value = record.config.get("refresh_skew") if record is not None else None
    if value is None:
        value = os.environ.get(SKEW_ENV)
    if value is None or value == "":
        return DEFAULT_SKEW
    try:
        skew = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"refresh skew {value!r} is not a number of seconds",
                          hint=f"fix the connection's refresh_skew or ${SKEW_ENV}") from None
    if skew < 0:
        raise ConfigError("refresh skew must be >= 0 seconds")
    return skew


def _marker_dead(marker: str, started: float, now: float) -> bool:
    """Whether the refresher behind a marker (``host:pid:thread``) is gone."""
    host, _, rest = marker.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, owned by someone else
            pass
    return now - started > REFRESH_STALE_AFTER


def interrupted_refreshes(record: Any, now: float | None = None) -> dict[str, float]:
    """Refreshes of this connection that started and never finished (their markers)."""
    now = time.time() if now is None else now
    markers = record.config.get("refreshing") or {}
    return {k: float(v) for k, v in markers.items() if _marker_dead(k, float(v), now)}


def reauth_error(connector: Connector, name: str, reason: str) -> AuthError:
    return AuthError(f"connection '{name}' needs to be re-authorised: {reason}",
                     hint=f"run `splice connect {connector.id} --name {name}`")


class OAuth2Auth(httpx.Auth):
    """Bearer auth from a stored connection, refreshing before expiry and once on 401.

    ``skew`` (seconds) defaults to :func:`refresh_skew`; ``clock`` gives Unix seconds (tests
    move it); ``emit(event, connection, data)`` records connection events (default: the
    store's event table).
    """

    requires_response_body = True

    def __init__(self, connector: Connector, connection: Any, store: Any, *,
                 skew: float | None = None, clock: Callable[[], float] = time.time,
                 emit: Emit | None = None) -> None:
        self.connector = connector
        self.name = connection.name
        self.store = store
        self.skew = refresh_skew(connection) if skew is None else skew
        self.clock = clock
        self.emit = emit or self._emit_to_store
        self._record = connection
        self._access: str | None = connection.secret.get("access_token")

    def _emit_to_store(self, event: str, name: str, data: dict[str, Any]) -> None:
        from ..store.connection_events import emit_connection_event

        emit_connection_event(self.store, event, name, data)

    # -- state ------------------------------------------------------------------------------

    def _expiring(self, record: Any) -> bool:
        expires_at = record.config.get("expires_at")
        return expires_at is not None and float(expires_at) - self.skew <= self.clock()

    def _expired(self, record: Any) -> bool:
        expires_at = record.config.get("expires_at")
        return expires_at is not None and float(expires_at) <= self.clock()

    def _use(self, record: Any) -> Any:
        self._record = record
        self._access = record.secret.get("access_token")
        return record

    def _reauth(self, reason: str) -> AuthError:
        return reauth_error(self.connector, self.name, reason)

    # -- the flow ---------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        record = self._record
        if record.status == REAUTH:  # maybe reconnected since: look again before refusing
            record = self._use(self.store.require_connection(self.name))
            if record.status == REAUTH:
                raise self._reauth(record.config.get("last_error") or "marked as such")
        if not self._access or self._expiring(record):
            record = yield from self._refresh(self._access, proactive=bool(self._access))
        used = self._access
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code != 401:
            return
        yield from self._refresh(used, proactive=False)
        request.headers["Authorization"] = f"Bearer {self._access}"
        yield request

    def refresh_flow(self) -> Generator[httpx.Request, httpx.Response, Any]:
        """Refresh now (unless a sibling just did); returns the stored connection."""
        return self._refresh(self._access, proactive=False, force=True)

    def refresh(self, client: httpx.Client) -> Any:
        """Drive :meth:`refresh_flow` with ``client``; a network failure changes nothing."""
        flow = self.refresh_flow()
        try:
            request = next(flow)
            while True:
                try:
                    response = client.send(request)
                except httpx.TransportError as exc:
                    raise AuthError(f"connection '{self.name}': could not reach the token "
                                    f"endpoint ({type(exc).__name__}); stored tokens were "
                                    "kept") from None
                request = flow.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            flow.close()

    def _refresh(self, used_access: str | None, *, proactive: bool, force: bool = False
                 ) -> Generator[httpx.Request, httpx.Response, Any]:
        """Refresh under the cross-process lock; see the module docstring for the rules."""
        marker = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        try:
            self._flag(marker, on=True)
            try:
                with self.store.locked_refresh(self.name) as fresh:
                    try:
                        return (yield from self._refresh_locked(fresh, used_access, marker,
                                                                proactive, force))
                    finally:  # removed in the lock's own commit, whatever happened
                        with contextlib.suppress(sa.exc.SQLAlchemyError):
                            self._flag(marker, on=False)
            finally:  # in case the lock was never taken
                self._flag(marker, on=False)
        except sa.exc.OperationalError as exc:
            # Never show the statement: its parameters hold the (encrypted) secret.
            raise AuthError(f"connection '{self.name}': the state database failed during "
                            f"the token refresh ({type(exc.orig).__name__})",
                            hint="another splice process may hold the database for too "
                                 "long; try again") from None

    def _flag(self, marker: str, *, on: bool) -> None:
        """Add or remove this refresher's marker (compare-and-swap on the row version)."""
        for _ in range(10):
            record = self.store.get_connection(self.name)
            if record is None:
                return
            markers = dict(record.config.get("refreshing") or {})
            if on:
                markers[marker] = time.time()
            elif markers.pop(marker, None) is None:
                return
            if self.store.update_tokens(self.name, None, {"refreshing": markers or None},
                                        expected_version=record.version):
                return

    def _refresh_locked(self, fresh: Any, used_access: str | None, marker: str,
                        proactive: bool, force: bool
                        ) -> Generator[httpx.Request, httpx.Response, Any]:
        if fresh.status == REAUTH:
            self._use(fresh)
            raise self._reauth(fresh.config.get("last_error") or "marked as such")
        current = fresh.secret
        access = current.get("access_token")
        if access and access != used_access and not self._expiring(fresh) and not force:
            return self._use(fresh)  # a sibling thread or process already refreshed
        refresh_token = current.get("refresh_token")
        if not refresh_token:
            self._mark_reauth(fresh, "no refresh token is stored")
        request = token_request(
            self.connector, base_url=fresh.base_url, client_id=fresh.config.get("client_id", ""),
            client_secret=current.get("client_secret", ""),
            fields={"grant_type": "refresh_token", "refresh_token": refresh_token},
            token_params=fresh.config.get("token_params"))
        response = yield request   # a network error ends the flow here: nothing is written
        response.read()
        body = response_json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            result = parse_token_response(self.connector, body, requested_scopes=fresh.scopes,
                                          previous_refresh=refresh_token, clock=self.clock)
            # The connection works again: forget refreshers that died, and this one's marker
            # goes in the same commit as the tokens.
            dead = interrupted_refreshes(fresh)
            result.config["refreshing"] = {
                k: v for k, v in (fresh.config.get("refreshing") or {}).items()
                if k not in dead and k != marker} or None
            # Committed with the lock, before the caller sends the new access token.
            self.store.update_tokens(self.name, result.secret, result.config)
            updated = self._use(self.store.require_connection(self.name))
            log.info("connection '%s': access token refreshed", self.name)
            self.emit("token_refreshed", self.name,
                      {"connector": self.connector.id,
                       "expires_at": result.config.get("expires_at")})
            return updated
        error = oauth_error(response)
        if error == "invalid_grant":
            again = self.store.require_connection(self.name)
            mine = again.secret
            if mine.get("refresh_token") != refresh_token and mine.get("access_token") \
                    and again.status != REAUTH:
                return self._use(again)  # rotated by a writer that skipped the lock
            reason = ("the provider refused the refresh token (invalid_grant: revoked, "
                      "expired, or already used)")
            if interrupted_refreshes(again):
                reason += ("; an earlier refresh stopped before it could save the rotated "
                           "token")
            self._mark_reauth(again, reason)
        what = describe_oauth_error(response) if response.status_code != 200 \
            else "an answer without an access token"
        if proactive and access and not self._expired(fresh):
            self._warn_expiring(fresh, what)
            return self._use(fresh)
        raise AuthError(f"connection '{self.name}': token refresh failed: {what}; stored "
                        "tokens were kept", status=response.status_code,
                        hint="run `splice connections refresh "
                             f"{self.name}` to try again")

    def _warn_expiring(self, record: Any, what: str) -> None:
        """A proactive refresh failed but the token still works: say so, once per token."""
        expires_at = record.config.get("expires_at")
        log.warning("connection '%s': refresh failed (%s); the current access token is used "
                    "until it expires", self.name, what)
        if record.config.get("expiring_notice_for") == expires_at:
            return
        self.store.update_tokens(self.name, None, {"expiring_notice_for": expires_at})
        self.emit("token_expiring", self.name, {"connector": self.connector.id,
                                                "expires_at": expires_at,
                                                "reason": f"refresh failed: {what}"})

    def _mark_reauth(self, record: Any, reason: str) -> None:
        """Mark the connection (and emit the event) unless it already is; always raises."""
        if record.status != REAUTH:
            stamp = datetime.fromtimestamp(time.time(), UTC).isoformat()
            self.store.update_tokens(self.name, None, {"status": REAUTH, "last_error": reason,
                                                      "reauth_since": stamp})
            self.emit(REAUTH, self.name, {"connector": self.connector.id, "reason": reason})
        self._use(self.store.require_connection(self.name))
        raise self._reauth(reason)


def revoke(connector: Connector, record: Any, store: Any, *,
           transport: httpx.BaseTransport | None = None) -> bool:
    """Revoke the connection's grant at the provider (if it has a revoke URL), then drop the
    stored tokens and mark it ``reauth_required``. True when the provider was told."""
    told = False
    secret = record.secret
    token = secret.get("refresh_token") or secret.get("access_token")
    if connector.auth.get("revoke_url") and token:
        request = revoke_request(connector, base_url=record.base_url,
                                 client_id=record.config.get("client_id", ""),
                                 client_secret=secret.get("client_secret", ""), token=token,
                                 hint="refresh_token" if secret.get("refresh_token")
                                 else "access_token")
        with httpx.Client(transport=transport) as client:
            try:
                response = client.send(request)
            except httpx.TransportError as exc:
                raise AuthError(f"could not reach the revocation endpoint "
                                f"({type(exc).__name__}); nothing was changed") from None
        if response.status_code >= 400:
            raise AuthError(f"the provider refused the revocation: "
                            f"{describe_oauth_error(response)}; nothing was changed",
                            status=response.status_code)
        told = True
    store.update_tokens(record.name, {"access_token": None, "refresh_token": None},
                        {"status": REAUTH, "last_error": "revoked with `splice connections "
                                                         "revoke`", "expires_at": None})
    return told

"""A small OAuth 2.0 authorization server for connector sandboxes.

Both sandboxes (Invoice2go, HighLevel) use it for the authorization-code grant with optional
PKCE (S256 only), refresh tokens that rotate on every use, RFC 7009 revocation and bearer
checks on resource routes. The client-credentials grant (RFC 6749 §4.4) issues an access
token alone (no refresh token) to an authenticated client, for machine-to-machine APIs.
It knows nothing about HTTP frameworks: routes hand it the query or
form fields and the ``Authorization`` header, and turn :class:`OAuthFailure` /
:class:`AuthFailure` into responses.

Tokens are opaque random strings. Only their SHA-256 digests are kept, so :meth:`to_json`
(the persisted state) holds no usable credential, and no error message ever contains a token.
The ``subject`` of a grant (an account id, a location id ...) is arbitrary and is merged into
the token response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlencode, urlsplit

__all__ = [
    "AuthFailure",
    "OAuthClient",
    "OAuthFailure",
    "OAuthServer",
    "TokenInfo",
    "pkce_challenge",
    "redirect_uri_matches",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})  # IP literals only (RFC 8252 §8.3)


@dataclass
class OAuthClient:
    """A registered client: credentials, redirect URIs and the scopes it may ask for."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    allowed_scopes: set[str]
    subject: dict[str, Any] = field(default_factory=dict)  # client credentials: who it is


@dataclass
class TokenInfo:
    """What a valid access token grants (returned by :meth:`OAuthServer.check`)."""

    access_token: str
    scopes: set[str]
    subject: dict[str, Any]
    expires_at: float
    client_id: str


class OAuthFailure(Exception):
    """An RFC 6749 error for the token/authorize/revoke endpoints.

    Render as ``status`` with body ``{"error": error, "error_description": description}``
    and the extra ``headers`` (``WWW-Authenticate: Basic`` for ``invalid_client``).
    """

    def __init__(self, status: int, error: str, description: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class AuthFailure(Exception):
    """A bearer check failed: ``invalid_token`` (401) or ``insufficient_scope`` (403).

    ``scope`` names the scopes that were needed (space-separated) for ``insufficient_scope``.
    """

    def __init__(self, kind: Literal["invalid_token", "insufficient_scope"],
                 scope: str | None = None, description: str | None = None) -> None:
        if description is None:
            description = ("The access token is missing, invalid or expired."
                           if kind == "invalid_token" else f"This request needs scope {scope}.")
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.scope = scope

    @property
    def status(self) -> int:
        return 401 if self.kind == "invalid_token" else 403

    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` header value (RFC 6750 §3)."""
        value = f'Bearer error="{self.kind}"'
        if self.scope:
            value += f', scope="{self.scope}"'
        return value


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact match, or a loopback URI that differs only in its port (RFC 8252 §7.3)."""
    if registered == requested:
        return True
    reg, req = urlsplit(registered), urlsplit(requested)
    if reg.scheme != "http" or req.scheme != "http":
        return False
    if reg.hostname not in LOOPBACK_HOSTS:
        return False
    try:
        req.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return (req.hostname == reg.hostname and (req.path or "/") == (reg.path or "/")
            and req.query == reg.query and not req.fragment and not req.username)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _scopes(value: str | None) -> set[str]:
    return set((value or "").split())


def _scope_str(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: set[str]
    subject: dict[str, Any]
    expires_at: float
    challenge: str | None
    grant_id: str
    used: bool = False


@dataclass
class _Token:
    client_id: str
    scopes: set[str]
    subject: dict[str, Any]
    expires_at: float | None
    grant_id: str


@dataclass
class _State:
    codes: dict[str, _Code] = field(default_factory=dict)
    access: dict[str, _Token] = field(default_factory=dict)
    refresh: dict[str, _Token] = field(default_factory=dict)


class OAuthServer:
    """Authorization codes, rotating refresh tokens and bearer checks, in memory.

    ``clock`` returns Unix seconds (tests pass a controllable one). ``refresh_ttl`` of ``None``
    means refresh tokens never expire. With ``rng`` the tokens are reproducible (tests);
    without it they come from :mod:`secrets`.
    """

    def __init__(self, *, clients: list[OAuthClient], clock: Callable[[], float],
                 access_ttl: int, refresh_ttl: int | None, code_ttl: int = 600,
                 token_prefix: str = "tok", require_pkce: bool = False,
                 rng: random.Random | None = None) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.code_ttl = code_ttl
        self.token_prefix = token_prefix
        self.require_pkce = require_pkce
        self._rng = rng
        self._lock = threading.RLock()
        self._state = _State()
        self.issued_client_tokens = 0  # client-credentials tokens issued (tests count them)

    # -- authorization endpoint -------------------------------------------------------------

    def authorize(self, params: Mapping[str, str], subject: dict[str, Any]) -> str:
        """Approve an authorization request for ``subject``; return the redirect URL.

        Raises :class:`OAuthFailure` (400 ``invalid_request``) when the client or redirect
        URI is wrong: that must not redirect. Other problems come back as an error redirect.
        """
        client, redirect_uri = self._authorize_target(params)
        state = params.get("state")
        try:
            scopes, challenge = self._check_authorize_params(client, params)
        except OAuthFailure as exc:
            return self._redirect(redirect_uri, error=exc.error,
                                  error_description=exc.description, state=state)
        code = self._new_token("code")
        with self._lock:
            self._prune()
            self._state.codes[_digest(code)] = _Code(
                client_id=client.client_id, redirect_uri=redirect_uri, scopes=scopes,
                subject=dict(subject), expires_at=self.clock() + self.code_ttl,
                challenge=challenge, grant_id=self._new_token("grant"))
        return self._redirect(redirect_uri, code=code, state=state)

    def deny(self, params: Mapping[str, str]) -> str:
        """The redirect URL for a user who refused (``access_denied``)."""
        _, redirect_uri = self._authorize_target(params)
        return self._redirect(redirect_uri, error="access_denied",
                              error_description="The user denied the request.",
                              state=params.get("state"))

    def validate_authorize(self, params: Mapping[str, str]) -> str | None:
        """Check a request before showing a consent page.

        Raises :class:`OAuthFailure` for a bad client/redirect URI; returns an error redirect
        URL for other problems, or ``None`` when the request can be approved.
        """
        client, redirect_uri = self._authorize_target(params)
        try:
            self._check_authorize_params(client, params)
        except OAuthFailure as exc:
            return self._redirect(redirect_uri, error=exc.error,
                                  error_description=exc.description, state=params.get("state"))
        return None

    def _authorize_target(self, params: Mapping[str, str]) -> tuple[OAuthClient, str]:
        client = self.clients.get(params.get("client_id") or "")
        if client is None:
            raise OAuthFailure(400, "invalid_request", "Unknown client_id.")
        redirect_uri = params.get("redirect_uri") or ""
        if not any(redirect_uri_matches(r, redirect_uri) for r in client.redirect_uris):
            raise OAuthFailure(400, "invalid_request",
                               "redirect_uri is missing or not registered for this client.")
        return client, redirect_uri

    def _check_authorize_params(self, client: OAuthClient,
                                params: Mapping[str, str]) -> tuple[set[str], str | None]:
        if params.get("response_type") != "code":
            raise OAuthFailure(400, "unsupported_response_type", "response_type must be 'code'.")
        scopes = _scopes(params.get("scope")) or set(client.allowed_scopes)
        unknown = scopes - client.allowed_scopes
        if unknown:
            raise OAuthFailure(400, "invalid_scope",
                               f"Scope not allowed for this client: {_scope_str(unknown)}.")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method")
        if challenge is None:
            if method:
                raise OAuthFailure(400, "invalid_request",
                                   "code_challenge_method given without code_challenge.")
            if self.require_pkce:
                raise OAuthFailure(400, "invalid_request", "PKCE code_challenge is required.")
        elif method != "S256":
            raise OAuthFailure(400, "invalid_request", "code_challenge_method must be S256.")
        elif not 43 <= len(challenge) <= 128:
            raise OAuthFailure(400, "invalid_request", "code_challenge has an invalid length.")
        return scopes, challenge

    @staticmethod
    def _redirect(redirect_uri: str, **fields: str | None) -> str:
        query = urlencode({k: v for k, v in fields.items() if v is not None})
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return f"{redirect_uri}{sep}{query}"

    # -- token endpoint ---------------------------------------------------------------------

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """Handle a token request; return the JSON body or raise :class:`OAuthFailure`."""
        _reject_duplicates(form)
        client = self._authenticate(form, authorization)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthFailure(400, "invalid_request", "grant_type is required.")
        with self._lock:
            self._prune()
            if grant_type == "authorization_code":
                return self._code_grant(client, form)
            if grant_type == "refresh_token":
                return self._refresh_grant(client, form)
            if grant_type == "client_credentials":
                return self._client_credentials_grant(client, form)
        raise OAuthFailure(400, "unsupported_grant_type",
                           "grant_type must be authorization_code, refresh_token or "
                           "client_credentials.")

    def _code_grant(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise OAuthFailure(400, "invalid_request", "code is required.")
        entry = self._state.codes.get(_digest(code))
        if entry is None or entry.client_id != client.client_id:
            raise OAuthFailure(400, "invalid_grant", "Unknown authorization code.")
        if entry.used:
            # RFC 6749 §4.1.2: a replayed code revokes what was issued from it.
            self._revoke_grant(entry.grant_id)
            raise OAuthFailure(400, "invalid_grant", "Authorization code was already used.")
        entry.used = True
        if entry.expires_at <= self.clock():
            raise OAuthFailure(400, "invalid_grant", "Authorization code has expired.")
        if form.get("redirect_uri") != entry.redirect_uri:
            raise OAuthFailure(400, "invalid_grant",
                               "redirect_uri does not match the authorization request.")
        verifier = form.get("code_verifier")
        if entry.challenge is None:
            if verifier:
                raise OAuthFailure(400, "invalid_grant",
                                   "code_verifier sent but no code_challenge was.")
        elif not verifier:
            raise OAuthFailure(400, "invalid_grant", "code_verifier is required.")
        elif not hmac.compare_digest(pkce_challenge(verifier), entry.challenge):
            raise OAuthFailure(400, "invalid_grant", "code_verifier does not match.")
        return self._issue(client.client_id, entry.scopes, entry.scopes, entry.subject,
                           entry.grant_id)

    def _refresh_grant(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthFailure(400, "invalid_request", "refresh_token is required.")
        key = _digest(token)
        entry = self._state.refresh.get(key)
        if entry is None or entry.client_id != client.client_id:
            raise OAuthFailure(400, "invalid_grant",
                               "Refresh token is invalid, expired, revoked or already rotated.")
        if entry.expires_at is not None and entry.expires_at <= self.clock():
            del self._state.refresh[key]
            raise OAuthFailure(400, "invalid_grant", "Refresh token has expired.")
        requested = _scopes(form.get("scope")) or set(entry.scopes)
        if not requested <= entry.scopes:
            raise OAuthFailure(400, "invalid_scope",
                               "Requested scope exceeds the original grant: "
                               f"{_scope_str(requested - entry.scopes)}.")
        del self._state.refresh[key]  # rotation: the old refresh token dies now
        return self._issue(client.client_id, requested, entry.scopes, entry.subject,
                           entry.grant_id)

    def _client_credentials_grant(self, client: OAuthClient, form: Mapping[str, str]
                                  ) -> dict[str, Any]:
        """RFC 6749 §4.4: the client acts for itself; no refresh token is issued."""
        requested = _scopes(form.get("scope")) or set(client.allowed_scopes)
        unknown = requested - client.allowed_scopes
        if unknown:
            raise OAuthFailure(400, "invalid_scope",
                               f"Scope not allowed for this client: {_scope_str(unknown)}.")
        access = self._new_token("at")
        self._state.access[_digest(access)] = _Token(
            client.client_id, set(requested), dict(client.subject),
            self.clock() + self.access_ttl, self._new_token("grant"))
        self.issued_client_tokens += 1
        return {**client.subject, "access_token": access, "token_type": "Bearer",
                "expires_in": self.access_ttl, "scope": _scope_str(requested)}

    def _issue(self, client_id: str, access_scopes: set[str], grant_scopes: set[str],
               subject: dict[str, Any], grant_id: str) -> dict[str, Any]:
        now = self.clock()
        access, refresh = self._new_token("at"), self._new_token("rt")
        self._state.access[_digest(access)] = _Token(
            client_id, set(access_scopes), dict(subject), now + self.access_ttl, grant_id)
        self._state.refresh[_digest(refresh)] = _Token(
            client_id, set(grant_scopes), dict(subject),
            None if self.refresh_ttl is None else now + self.refresh_ttl, grant_id)
        body: dict[str, Any] = {k: v for k, v in subject.items()}
        body.update(access_token=access, token_type="Bearer", expires_in=self.access_ttl,
                    refresh_token=refresh, scope=_scope_str(access_scopes))
        if self.refresh_ttl is not None:
            body["refresh_token_expires_in"] = self.refresh_ttl
        return body

    def _authenticate(self, form: Mapping[str, str],
                      authorization: str | None) -> OAuthClient:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
                basic_id, basic_secret = raw.split(":", 1)
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _invalid_client("Malformed Basic credentials.") from None
            basic_id, basic_secret = unquote(basic_id), unquote(basic_secret)
            if client_id and client_id != basic_id:
                raise _invalid_client("client_id in the body differs from Basic credentials.")
            if secret:
                raise OAuthFailure(400, "invalid_request",
                                   "Use one client authentication method, not two.")
            client_id, secret = basic_id, basic_secret
        client = self.clients.get(client_id or "")
        if client is None or secret is None or not hmac.compare_digest(
                secret.encode("utf-8"), client.client_secret.encode("utf-8")):
            raise _invalid_client("Client authentication failed.")
        return client

    # -- revocation -------------------------------------------------------------------------

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009: revoke an access or refresh token; unknown tokens are not an error.

        Revoking a refresh token also revokes every access token of the same grant.
        """
        _reject_duplicates(form)
        client = self._authenticate(form, authorization)
        token = form.get("token")
        if not token:
            raise OAuthFailure(400, "invalid_request", "token is required.")
        key = _digest(token)
        with self._lock:
            refresh = self._state.refresh.get(key)
            if refresh is not None and refresh.client_id == client.client_id:
                self._revoke_grant(refresh.grant_id)
                return
            access = self._state.access.get(key)
            if access is not None and access.client_id == client.client_id:
                del self._state.access[key]

    def _revoke_grant(self, grant_id: str) -> None:
        for table in (self._state.access, self._state.refresh):
            for key in [k for k, t in table.items() if t.grant_id == grant_id]:
                del table[key]

    # -- resource side ----------------------------------------------------------------------

    def check(self, authorization_header: str | None, required: Iterable[str]) -> TokenInfo:
        """Validate a ``Bearer`` header and that the token holds every ``required`` scope."""
        header = (authorization_header or "").strip()
        if header[:7].lower() != "bearer " or not header[7:].strip():
            raise AuthFailure("invalid_token", description="Missing bearer access token.")
        token = header[7:].strip()
        with self._lock:
            entry = self._state.access.get(_digest(token))
            if entry is None:
                raise AuthFailure("invalid_token",
                                  description="The access token is invalid or revoked.")
            if entry.expires_at is not None and entry.expires_at <= self.clock():
                raise AuthFailure("invalid_token", description="The access token has expired.")
            needed = list(dict.fromkeys(required))
            missing = [s for s in needed if s not in entry.scopes]
            if missing:
                raise AuthFailure("insufficient_scope", scope=" ".join(missing))
            return TokenInfo(access_token=token, scopes=set(entry.scopes),
                             subject=dict(entry.subject), expires_at=float(entry.expires_at or 0),
                             client_id=entry.client_id)

    # -- test controls, persistence ---------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired now (refresh tokens keep working)."""
        with self._lock:
            past = self.clock() - 1
            for entry in self._state.access.values():
                entry.expires_at = past

    def stats(self) -> dict[str, int]:
        """Counts of live codes and tokens (never the values)."""
        with self._lock:
            return {"codes": len(self._state.codes), "access_tokens": len(self._state.access),
                    "refresh_tokens": len(self._state.refresh)}

    def to_json(self) -> dict[str, Any]:
        """Codes and tokens as JSON-able data (digests only, no usable token)."""
        with self._lock:
            return {
                "codes": {k: _code_json(c) for k, c in self._state.codes.items()},
                "access": {k: _token_json(t) for k, t in self._state.access.items()},
                "refresh": {k: _token_json(t) for k, t in self._state.refresh.items()},
            }

    def load_json(self, data: dict[str, Any]) -> None:
        """Replace codes and tokens with what :meth:`to_json` produced."""
        state = _State(
            codes={k: _Code(**{**v, "scopes": set(v["scopes"])})
                   for k, v in data.get("codes", {}).items()},
            access={k: _Token(**{**v, "scopes": set(v["scopes"])})
                    for k, v in data.get("access", {}).items()},
            refresh={k: _Token(**{**v, "scopes": set(v["scopes"])})
                     for k, v in data.get("refresh", {}).items()},
        )
        with self._lock:
            self._state = state

    def _new_token(self, kind: str) -> str:
        if self._rng is not None:
            raw = self._rng.getrandbits(256).to_bytes(32, "big")
            value = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        else:
            value = secrets.token_urlsafe(32)
        return f"{self.token_prefix}_{kind}_{value}"

    def _prune(self) -> None:
        """Drop expired codes and tokens so memory and state files stay bounded."""
        now = self.clock()
        codes = self._state.codes
        for key in [k for k, c in codes.items() if c.expires_at + self.code_ttl <= now]:
            del codes[key]
        for table in (self._state.access, self._state.refresh):
            for key in [k for k, t in table.items()
                        if t.expires_at is not None and t.expires_at + 86400 <= now]:
                del table[key]


def _invalid_client(description: str) -> OAuthFailure:
    return OAuthFailure(401, "invalid_client", description,
                        {"WWW-Authenticate": 'Basic realm="oauth"'})


def _reject_duplicates(form: Mapping[str, str]) -> None:
    getlist = getattr(form, "getlist", None)
    if getlist is None:
        return
    for key in set(form.keys()):
        if len(getlist(key)) > 1:
            raise OAuthFailure(400, "invalid_request", f"Parameter {key} is repeated.")


def _code_json(code: _Code) -> dict[str, Any]:
    return {"client_id": code.client_id, "redirect_uri": code.redirect_uri,
            "scopes": sorted(code.scopes), "subject": code.subject,
            "expires_at": code.expires_at, "challenge": code.challenge,
            "grant_id": code.grant_id, "used": code.used}


def _token_json(token: _Token) -> dict[str, Any]:
    return {"client_id": token.client_id, "scopes": sorted(token.scopes),
            "subject": token.subject, "expires_at": token.expires_at,
            "grant_id": token.grant_id}

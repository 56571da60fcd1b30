"""The OAuth authorization-code flow with PKCE: ``splice connect`` and the dashboard.

:func:`begin` makes a random ``state``, a PKCE pair (where the connector uses PKCE) and the
consent URL; :func:`finish` checks the answer's ``state`` (anything else is refused, the code
unused), exchanges the code with the verifier and stores the token set encrypted. ``splice
connect`` (:func:`connect`) receives the answer on a one-shot listener on 127.0.0.1; the
dashboard on its ``/oauth/callback`` route, keeping what it started in
:class:`PendingAuthorizations`. Nothing secret is printed or logged.
"""

from __future__ import annotations

import hmac
import http.server
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ..errors import AuthError, ConfigError, InputError
from ..model.manifest import Connector
from ..sandbox.server import HOST
from ..store.database import check_connection_name
from .oauth import (
    authorize_url,
    describe_oauth_error,
    oauth_error,
    parse_token_response,
    pkce_pair,
    response_json,
    token_request,
)

CALLBACK_PATH = "/callback"
_PAGE = ("<!doctype html><html><head><meta charset='utf-8'><title>splice</title></head>"
         "<body><h1>{title}</h1><p>{text}</p></body></html>")
PAGE_OK = _PAGE.format(title="splice received the authorization",
                       text="Go back to the terminal; you can close this tab.").encode()
PAGE_ERR = _PAGE.format(title="splice could not connect",
                        text="See the terminal for what went wrong.").encode()
PAGE_STATE = _PAGE.format(title="Refused", text="This answer does not belong to the "
                          "authorization splice started (wrong state).").encode()


@dataclass
class Callback:
    params: dict[str, str] | None = None


class _Listener(http.server.HTTPServer):
    callback: Callback
    done: threading.Event
    expected_state: str


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self.send_response(404)
            self.end_headers()
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        state_ok = hmac.compare_digest(params.get("state", "").encode(),
                                       self.server.expected_state.encode())
        ok = state_ok and "code" in params
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE_OK if ok else PAGE_ERR if state_ok else PAGE_STATE)
        if self.server.callback.params is None:  # one shot: the first answer decides
            self.server.callback.params = params
            self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:  # codes must never reach a log
        pass


def start_listener(port: int = 0, expected_state: str = "") -> _Listener:
    """Serve ``/callback`` on 127.0.0.1:``port`` (0: a free port) in a daemon thread."""
    try:
        server = _Listener((HOST, port), _Handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {HOST}:{port} for the OAuth redirect "
                          f"({exc.strerror or exc})",
                          hint="pick another --port (it must match the app's registered "
                               "redirect URI), or omit --port for a free one") from None
    server.callback = Callback()
    server.done = threading.Event()
    server.expected_state = expected_state
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                     name="splice-oauth").start()
    return server


@dataclass
class ConnectResult:
    scopes: list[str]
    expires_at: float | None
    fields: dict[str, Any]
    redirect_uri: str = ""


def _check_answer(params: dict[str, str], state: str) -> str:
    """The code from the redirect's query, after the state and error checks."""
    if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
        raise AuthError("the authorization answer had the wrong state parameter; refused "
                        "(possible cross-site request forgery); no code was exchanged",
                        hint="run `splice connect` again and approve in the browser it opens")
    if "error" in params:
        detail = params.get("error_description")
        raise AuthError(f"authorization was refused: {params['error'][:100]}"
                        + (f" ({detail[:200]})" if detail else ""),
                        hint="approve the request, or check the scopes and redirect URI "
                             "registered for the app")
    code = params.get("code")
    if not code:
        raise AuthError("the authorization answer carried no code")
    return code


@dataclass
class Authorization:
    """One authorization started and not yet answered: what the answer is checked against
    and what the code exchange needs. Kept by whoever waits for the answer (the loopback
    listener's caller, or the dashboard's in-memory :class:`PendingAuthorizations`); it
    holds the PKCE verifier and the client secret, so it is never sent anywhere."""

    connector: Connector
    name: str
    client_id: str
    client_secret: str
    scopes: list[str]
    base_url: str | None
    redirect_uri: str
    state: str
    verifier: str | None
    url: str
    token_params: dict[str, str] | None = None
    config: dict[str, Any] | None = None
    created_at: float = 0.0
    owner: str = ""          # the dashboard: the session that started it

    def __repr__(self) -> str:  # never the verifier or the client secret
        return f"Authorization({self.connector.id!r}, name={self.name!r})"


def begin(connector: Connector, *, name: str, client_id: str, client_secret: str,
          scopes: list[str], base_url: str | None, redirect_uri: str,
          token_params: dict[str, str] | None = None,
          config: dict[str, Any] | None = None, owner: str = "") -> Authorization:
    """A random ``state``, a PKCE pair where the connector uses PKCE, and the consent URL."""
    if connector.auth_type != "oauth2":
        raise ConfigError(f"connector '{connector.id}' does not use OAuth "
                          f"(auth: {connector.auth_type})",
                          hint=f"use `splice connections add {name} --connector {connector.id}`")
    state = secrets.token_urlsafe(24)
    use_pkce = connector.auth.get("pkce", True)
    verifier, challenge = pkce_pair() if use_pkce else (None, None)
    url = authorize_url(connector, base_url=base_url, client_id=client_id,
                        redirect_uri=redirect_uri, scopes=scopes, state=state,
                        code_challenge=challenge)
    return Authorization(connector, name, client_id, client_secret, list(scopes), base_url,
                         redirect_uri, state, verifier, url, token_params, config,
                         time.time(), owner)


def finish(auth: Authorization, store: Any, params: dict[str, str], *,
           transport: httpx.BaseTransport | None = None) -> ConnectResult:
    """Check the answer (state, error), exchange the code (with the verifier) and store the
    connection, tokens and client secret encrypted. Nothing secret is in any error."""
    connector = auth.connector
    code = _check_answer(params, auth.state)
    fields = {"grant_type": "authorization_code", "code": code,
              "redirect_uri": auth.redirect_uri}
    if auth.verifier:
        fields["code_verifier"] = auth.verifier
    request = token_request(connector, base_url=auth.base_url, client_id=auth.client_id,
                            client_secret=auth.client_secret, fields=fields,
                            token_params=auth.token_params)
    with httpx.Client(transport=transport) as client:
        try:
            response = client.send(request)
        except httpx.TransportError as exc:
            raise AuthError(f"could not reach the token endpoint ({type(exc).__name__})",
                            hint="check --base-url and your network, then connect again") \
                from None
    body = response_json(response)
    if response.status_code != 200 or not isinstance(body, dict):
        hint = None
        if oauth_error(response) == "invalid_grant":
            hint = ("the code expired or was used already, or the redirect URI or PKCE "
                    "verifier did not match; run `splice connect` again")
        elif oauth_error(response) == "invalid_client":
            hint = "the client id or secret is wrong; check the app's credentials"
        raise AuthError(f"code exchange failed: {describe_oauth_error(response)}",
                        status=response.status_code, hint=hint)
    result = parse_token_response(connector, body, requested_scopes=auth.scopes,
                                  clock=time.time)
    stored = {k: v for k, v in result.config.items() if v is not None}
    stored.update(client_id=auth.client_id, connected_at=stored["last_refresh_at"])
    if auth.token_params:
        stored["token_params"] = dict(auth.token_params)
    stored.update({k: v for k, v in (auth.config or {}).items() if v is not None})
    store.put_connection(auth.name, connector=connector.id, auth_type="oauth2",
                         base_url=auth.base_url, config=stored,
                         secret={**result.secret, "client_secret": auth.client_secret})
    return ConnectResult(result.config["scopes"], result.config.get("expires_at"),
                         result.config.get("fields", {}), auth.redirect_uri)


def connect(connector: Connector, store: Any, *, name: str, client_id: str,
            client_secret: str, scopes: list[str], base_url: str | None = None, port: int = 0,
            open_url: Callable[[str], Any], timeout: float = 300.0,
            transport: httpx.BaseTransport | None = None,
            token_params: dict[str, str] | None = None,
            config: dict[str, Any] | None = None) -> ConnectResult:
    """Run the whole flow on a loopback listener; ``open_url`` shows the consent page (a
    browser, or a script).

    ``base_url`` overrides the connector's (API and OAuth endpoints, e.g. a sandbox);
    ``token_params`` are extra token-request fields kept for refreshes (HighLevel's
    ``user_type``); ``config`` adds non-secret settings such as ``refresh_skew``.
    """
    if connector.auth_type != "oauth2":
        raise ConfigError(f"connector '{connector.id}' does not use OAuth "
                          f"(auth: {connector.auth_type})",
                          hint=f"use `splice connections add {name} --connector {connector.id}`")
    listener = start_listener(port)
    try:
        auth = begin(connector, name=name, client_id=client_id, client_secret=client_secret,
                     scopes=scopes, base_url=base_url,
                     redirect_uri=f"http://{HOST}:{listener.server_address[1]}{CALLBACK_PATH}",
                     token_params=token_params, config=config)
        listener.expected_state = auth.state
        open_url(auth.url)
        if not listener.done.wait(timeout):
            raise AuthError(f"no answer from the consent page within {timeout:.0f}s",
                            hint="run `splice connect` again; use --no-browser to copy the URL")
        params = listener.callback.params or {}
    finally:
        listener.shutdown()
        listener.server_close()
    return finish(auth, store, params, transport=transport)


class PendingAuthorizations:
    """Authorizations the dashboard started, by ``state``, until answered or ``ttl`` old
    (a consent left open). Thread-safe; one answer consumes its entry."""

    def __init__(self, ttl: float = 600.0, limit: int = 100) -> None:
        self.ttl, self.limit = ttl, limit
        self._items: dict[str, Authorization] = {}
        self._lock = threading.Lock()

    def add(self, auth: Authorization) -> None:
        with self._lock:
            self._expire()
            while len(self._items) >= self.limit:  # the oldest goes first
                self._items.pop(next(iter(self._items)))
            self._items[auth.state] = auth

    def take(self, state: str, owner: str) -> Authorization | None:
        """The authorization ``state`` names, if ``owner`` started it (consumed either
        way once found, so a state is good for one answer)."""
        with self._lock:
            self._expire()
            for key in list(self._items):
                if hmac.compare_digest(key.encode(), state.encode()):
                    auth = self._items.pop(key)
                    return auth if hmac.compare_digest(auth.owner.encode(),
                                                       owner.encode()) else None
        return None

    def _expire(self) -> None:
        cutoff = time.time() - self.ttl
        for key in [k for k, a in self._items.items() if a.created_at < cutoff]:
            del self._items[key]


def connect_target(connector: Connector, store: Any, name: str, *, base_url: str | None,
                   allow_private_network: bool) -> tuple[Any, str | None, bool]:
    """(the connection being renewed or None, the base URL, whether private networks are
    allowed) for connecting ``name``: the name is valid and not another connector's, the
    base URL defaults to the renewed connection's, private networks stay allowed once they
    were, and the base URL and the absolute OAuth URLs are checked against them."""
    from ..http.network import OPTION, check_url

    check_connection_name(name)
    existing = store.get_connection(name)
    if existing is not None and existing.connector != connector.id:
        raise InputError(f"connection '{name}' belongs to connector '{existing.connector}'",
                         hint=f"choose another name, or `splice connections remove {name}`")
    allowed = allow_private_network or bool(existing is not None
                                            and existing.config.get(OPTION))
    base_url = (base_url or "").strip() or (existing.base_url if existing else None)
    check_url(base_url or connector.base_url, allowed=allowed, what="the base URL")
    for key in ("authorize_url", "token_url"):
        url = connector.auth.get(key)
        if isinstance(url, str) and not url.startswith("/"):
            check_url(url, allowed=allowed, what=f"the connector's {key}")
    return existing, base_url, allowed


def renewal(connector: Connector, store: Any, name: str, *, client_id: str = "",
            client_secret: str = "", scopes: list[str] | None = None,
            base_url: str | None = None, allow_private_network: bool = False,
            default_scopes: list[str] | None = None,
            environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`begin` for connecting ``name`` from the dashboard,
    as ``splice connect`` settles them: a value given wins, else the connection being
    renewed keeps its client id and secret, base URL, token parameters, scopes, refresh skew
    and private-network choice, else ``SPLICE_<CONNECTOR>_CLIENT_ID``/``_CLIENT_SECRET``.
    URLs are checked against private networks unless allowed."""
    from ..http.network import OPTION

    env = os.environ if environ is None else environ
    existing, base_url, allowed = connect_target(connector, store, name, base_url=base_url,
                                                 allow_private_network=allow_private_network)
    old_config = existing.config if existing is not None else {}
    old_secret = existing.secret if existing is not None else {}
    prefix = f"SPLICE_{connector.id.upper()}"
    client_id = client_id.strip() or str(old_config.get("client_id") or "") or \
        env.get(f"{prefix}_CLIENT_ID", "")
    client_secret = client_secret.strip() or str(old_secret.get("client_secret") or "") or \
        env.get(f"{prefix}_CLIENT_SECRET", "")
    for label, value, var in (("client id", client_id, "CLIENT_ID"),
                              ("client secret", client_secret, "CLIENT_SECRET")):
        if not value:
            raise InputError(f"no OAuth {label} for {connector.id}",
                             hint=f"enter it, or set {prefix}_{var} where splice serve runs")
    wanted = list(scopes or []) or list(default_scopes or connector.scopes)
    wanted += [s for s in (existing.scopes if existing and not scopes else []) if s not in wanted]
    return {"name": name, "client_id": client_id, "client_secret": client_secret,
            "scopes": wanted, "base_url": base_url,
            "token_params": old_config.get("token_params"),
            "config": {"refresh_skew": old_config.get("refresh_skew"),
                       OPTION: True if allowed else None}}

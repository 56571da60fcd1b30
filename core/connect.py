"""``splice connect``: the OAuth authorization-code flow with PKCE and a loopback redirect.

A one-shot HTTP listener on 127.0.0.1 receives the redirect, ``state`` is checked, the code is
exchanged, and the token set is stored encrypted. Nothing secret is printed.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from .errors import AuthError, ConfigError
from .manifest import Connector
from .oauth import authorize_url, oauth_error, parse_token_response, pkce_pair, token_request
from .sandboxes import HOST

CALLBACK_PATH = "/callback"
PAGE_OK = b"<html><body><h1>splice is connected</h1><p>You can close this tab.</p></body></html>"
PAGE_ERR = b"<html><body><h1>splice could not connect</h1><p>See the terminal.</p></body></html>"


@dataclass
class Callback:
    params: dict[str, str] | None = None


class _Listener(http.server.HTTPServer):
    callback: Callback
    done: threading.Event


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self.send_response(404)
            self.end_headers()
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        ok = "code" in params
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(PAGE_OK if ok else PAGE_ERR)
        if self.server.callback.params is None:
            self.server.callback.params = params
            self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:  # codes must never reach a log
        pass


def start_listener(port: int = 0) -> _Listener:
    server = _Listener((HOST, port), _Handler)
    server.callback = Callback()
    server.done = threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                     name="splice-oauth").start()
    return server


@dataclass
class ConnectResult:
    scopes: list[str]
    expires_at: float | None
    fields: dict[str, Any]


def connect(connector: Connector, store: Any, *, name: str, client_id: str,
            client_secret: str, scopes: list[str], base_url: str | None = None, port: int = 0,
            open_url: Callable[[str], Any], timeout: float = 300.0,
            transport: httpx.BaseTransport | None = None) -> ConnectResult:
    """Run the whole flow; ``open_url`` shows the consent page (a browser, or a script)."""
    if connector.auth_type != "oauth2":
        raise ConfigError(f"connector '{connector.id}' does not use OAuth "
                          f"(auth: {connector.auth_type})",
                          hint=f"use `splice connections add {name} --connector {connector.id}`")
    base = base_url or connector.base_url
    listener = start_listener(port)
    redirect_uri = f"http://{HOST}:{listener.server_address[1]}{CALLBACK_PATH}"
    state = secrets.token_urlsafe(24)
    use_pkce = connector.auth.get("pkce", True)
    verifier, challenge = pkce_pair() if use_pkce else (None, None)
    url = authorize_url(connector, base_url=base, client_id=client_id,
                        redirect_uri=redirect_uri, scopes=scopes, state=state,
                        code_challenge=challenge)
    try:
        open_url(url)
        if not listener.done.wait(timeout):
            raise AuthError(f"no answer from the consent page within {timeout:.0f}s",
                            hint="run `splice connect` again; use --no-browser to copy the URL")
        params = listener.callback.params or {}
    finally:
        listener.shutdown()
        listener.server_close()
    if params.get("state") != state:
        raise AuthError("the authorization answer had the wrong state parameter; refused "
                        "(possible cross-site request forgery)")
    if "error" in params:
        raise AuthError(f"authorization was refused: {params['error']}"
                        + (f" ({params['error_description']})"
                           if params.get("error_description") else ""))
    fields = {"grant_type": "authorization_code", "code": params.get("code", ""),
              "redirect_uri": redirect_uri}
    if verifier:
        fields["code_verifier"] = verifier
    request = token_request(connector, base_url=base, client_id=client_id,
                            client_secret=client_secret, fields=fields)
    with httpx.Client(transport=transport, timeout=30.0) as client:
        try:
            response = client.send(request)
        except httpx.TransportError as exc:
            raise AuthError(f"could not reach the token endpoint: {type(exc).__name__}") \
                from None
    if response.status_code != 200:
        raise AuthError(f"code exchange failed: {oauth_error(response)}",
                        status=response.status_code)
    result = parse_token_response(connector, response.json(), requested_scopes=scopes,
                                  clock=time.time)
    config = {**result.config, "client_id": client_id}
    store.put_connection(name, connector=connector.id, auth_type="oauth2",
                         base_url=base_url, config=config,
                         secret={**result.secret, "client_secret": client_secret})
    return ConnectResult(result.config["scopes"], result.config.get("expires_at"),
                         result.config.get("fields", {}))

"""Built-in auth types, registered like a plugin's (a plugin may override one by name).

``none``: nothing is sent. ``bearer``, ``api_key`` and ``basic``: a static credential from
the connection's secret (:mod:`splice.connections.credentials`). ``oauth2``: the
authorization-code grant with refresh (:mod:`splice.connections.oauth`).
``oauth2_client_credentials``: machine-to-machine tokens fetched and re-fetched on expiry
(:mod:`splice.connections.client_credentials`).
"""

from __future__ import annotations

from typing import Any

import httpx

from ..connections.client_credentials import KIND as CLIENT_CREDENTIALS
from ..connections.client_credentials import ClientCredentialsAuth
from ..connections.credentials import HeaderAuth, api_key_auth, basic_auth, bearer_auth
from ..connections.oauth import OAuth2Auth
from ..hookspecs import hookimpl
from ..model.manifest import Connector

__all__ = ["HeaderAuth", "client_credentials", "oauth2", "register_auth_types"]


def oauth2(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    """Bearer tokens that refresh themselves; events go to the store's event table."""
    return OAuth2Auth(connector, connection, store)


def client_credentials(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    """Tokens from the client-credentials grant, fetched again before expiry and on 401."""
    return ClientCredentialsAuth(connector, connection, store)


@hookimpl
def register_auth_types(register: Any) -> None:
    register("bearer", bearer_auth)
    register("api_key", api_key_auth)
    register("basic", basic_auth)
    register("oauth2", oauth2)
    register(CLIENT_CREDENTIALS, client_credentials)

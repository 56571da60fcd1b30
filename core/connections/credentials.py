"""The built-in auth types' credentials: ``bearer``, ``api_key`` and ``oauth2`` as httpx auth.

Registered by the default plugin ``splice.default_plugins.auth``, which imports this module
only when a connection first needs one (so commands that send nothing, like ``splice
validate``, do not load httpx and the OAuth machinery).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx

from ..errors import ConfigError
from ..model.manifest import Connector
from .oauth import OAuth2Auth


class HeaderAuth(httpx.Auth):
    """A static credential in a header (or query parameter)."""

    def __init__(self, name: str, value: str, *, in_query: bool = False) -> None:
        self.name, self.value, self.in_query = name, value, in_query

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.in_query:
            request.url = request.url.copy_merge_params({self.name: self.value})
        else:
            request.headers[self.name] = self.value
        yield request


def _secret(connection: Any, key: str) -> str:
    value = connection.secret.get(key)
    if not value:
        raise ConfigError(f"connection '{connection.name}' has no {key.replace('_', ' ')} stored",
                          hint=f"add it with `splice connections add {connection.name} "
                               f"--connector {connection.connector}`")
    return str(value)


def bearer(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    return HeaderAuth("Authorization", f"Bearer {_secret(connection, 'token')}")


def api_key(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    auth = connector.auth
    value = auth.get("prefix", "") + _secret(connection, "api_key")
    return HeaderAuth(auth["name"], value, in_query=auth.get("in") == "query")


def oauth2(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    """Bearer tokens that refresh themselves; events go to the store's event table."""
    return OAuth2Auth(connector, connection, store)

"""Static credentials as ``httpx.Auth`` flows: bearer token, API key, HTTP basic.

What each kind sends (the values come from the connection's encrypted secret):

* ``bearer``: ``Authorization: Bearer <token>``;
* ``api_key``: the key, after the manifest's ``prefix``, in the header ``auth.name``
  (``in: header``) or the query parameter ``auth.name`` (``in: query``);
* ``basic``: ``Authorization: Basic base64(<username>:<password>)`` (RFC 7617, UTF-8).

The flows do no I/O and never put a credential in an error message.
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from typing import Any

import httpx

from ..errors import ConfigError
from ..model.manifest import Connector
from ..secrets import REDACTOR


class HeaderAuth(httpx.Auth):
    """A static credential in a header, or in a query parameter (``in_query``)."""

    def __init__(self, name: str, value: str, *, in_query: bool = False) -> None:
        self.name, self.value, self.in_query = name, value, in_query

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.in_query:
            request.url = request.url.copy_merge_params({self.name: self.value})
        else:
            request.headers[self.name] = self.value
        yield request


def basic_header(username: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic auth (RFC 7617, UTF-8)."""
    raw = f"{username}:{password}".encode()
    encoded = base64.b64encode(raw).decode("ascii")
    REDACTOR.add(encoded)  # an API that echoes the header is masked in errors and logs
    return "Basic " + encoded


def stored_secret(connection: Any, key: str) -> str:
    """One value of the connection's secret, or a ConfigError saying how to store it."""
    value = connection.secret.get(key)
    if not value:
        raise ConfigError(f"connection '{connection.name}' has no {key.replace('_', ' ')} stored",
                          hint=f"add it with `splice connections add {connection.name} "
                               f"--connector {connection.connector}`")
    return str(value)


def bearer_auth(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    return HeaderAuth("Authorization", f"Bearer {stored_secret(connection, 'token')}")


def api_key_auth(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    auth = connector.auth
    value = auth.get("prefix", "") + stored_secret(connection, "api_key")
    return HeaderAuth(auth["name"], value, in_query=auth.get("in") == "query")


def basic_auth(connector: Connector, connection: Any, store: Any) -> httpx.Auth:
    username = connection.config.get("username") or connection.secret.get("username")
    if not username:
        raise ConfigError(f"connection '{connection.name}' has no username",
                          hint=f"add it with `splice connections add {connection.name} "
                               f"--connector {connection.connector} --username NAME`")
    header = basic_header(str(username), stored_secret(connection, "password"))
    return HeaderAuth("Authorization", header)

"""Built-in auth types, registered like a plugin's (a plugin may override one by name).

``none``: nothing is sent. ``bearer``, ``api_key`` and ``basic``: a static credential from
the connection's secret (:mod:`splice.connections.credentials`). ``oauth2``: the
authorization-code grant with refresh (:mod:`splice.connections.oauth`).
``oauth2_client_credentials``: machine-to-machine tokens fetched and re-fetched on expiry
(:mod:`splice.connections.client_credentials`).

Each factory's module is imported when a connection first needs it, so commands that send
nothing (``splice validate``) load neither httpx nor the OAuth machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl

__all__ = ["AUTH_TYPES", "register_auth_types"]

# auth type -> (module under splice.connections, the factory or auth class it calls)
AUTH_TYPES: dict[str, tuple[str, str]] = {
    "bearer": ("credentials", "bearer_auth"),
    "api_key": ("credentials", "api_key_auth"),
    "basic": ("credentials", "basic_auth"),
    "oauth2": ("oauth", "OAuth2Auth"),
    "oauth2_client_credentials": ("client_credentials", "ClientCredentialsAuth"),
}


def _factory(kind: str, module: str, name: str) -> Callable[..., Any]:
    def build(connector: Any, connection: Any, store: Any) -> Any:
        from ..connections import client_credentials, credentials, oauth

        loaded = {"credentials": credentials, "oauth": oauth,
                  "client_credentials": client_credentials}[module]
        return getattr(loaded, name)(connector, connection, store)

    build.__name__ = build.__qualname__ = kind
    return build


@hookimpl
def register_auth_types(register: Any) -> None:
    for kind, (module, name) in AUTH_TYPES.items():
        register(kind, _factory(kind, module, name))

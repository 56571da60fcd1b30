"""Built-in auth types: ``none``, ``bearer``, ``api_key`` and ``oauth2``.

The factories live in :mod:`splice.connections.credentials`, imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl

AUTH_TYPES = ("bearer", "api_key", "oauth2")


def _factory(name: str) -> Callable[..., Any]:
    def build(connector: Any, connection: Any, store: Any) -> Any:
        from ..connections import credentials

        return getattr(credentials, name)(connector, connection, store)

    build.__name__ = build.__qualname__ = name
    return build


@hookimpl
def register_auth_types(register: Any) -> None:
    for name in AUTH_TYPES:
        register(name, _factory(name))

"""A stored connection as an API client, and the fields of it that templates may see."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..http.client import ApiClient
from ..http.ratelimit import limiter_for
from ..model.manifest import Connector
from ..store.database import Store


def public_fields(connector: Connector, record: Any, name: str | None = None
                  ) -> dict[str, Any]:
    """What templates see as ``connection``: its name, base URL and non-secret token fields."""
    base = record.base_url if record is not None and record.base_url else connector.base_url
    out: dict[str, Any] = {"name": record.name if record is not None else name,
                           "base_url": base}
    if record is not None:
        fields = record.config.get("fields") or {}
        for f in connector.auth.get("token_fields", []) or []:
            if f in fields:
                out[f] = fields[f]
    return out


def connection_client(connector: Connector, record: Any, store: Store, registry: Any,
                      **kwargs: Any) -> ApiClient:
    """An API client for ``connector`` using the stored connection ``record`` (may be None)."""
    base = record.base_url if record is not None and record.base_url else connector.base_url
    auth = None
    if connector.auth_type != "none":
        factory = registry.auth_types.get(connector.auth_type)
        if factory is None:
            raise ConfigError(f"no plugin provides auth type '{connector.auth_type}'")
        if record is None:
            raise ConfigError(f"connector '{connector.id}' needs a connection")
        if record.connector != connector.id:
            raise ConfigError(f"connection '{record.name}' is for '{record.connector}', "
                              f"not '{connector.id}'")
        auth = factory(connector, record, store)
    kwargs.setdefault("limiter", limiter_for(connector, record, store))
    if record is not None:
        kwargs.setdefault("connection", record.name)
        kwargs.setdefault("scopes", record.scopes)
    return ApiClient(connector, base_url=base, auth=auth, **kwargs)

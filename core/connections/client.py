"""A stored connection as an API client, and the fields of it that templates may see."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..http.client import ApiClient
from ..http.network import OPTION, check_url, guard_client
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


def allows_private_network(record: Any) -> bool:
    """Whether the connection was created with ``--allow-private-network``."""
    return bool(record is not None and (record.config or {}).get(OPTION))


def connection_client(connector: Connector, record: Any, store: Store, registry: Any,
                      **kwargs: Any) -> ApiClient:
    """An API client for ``connector`` using the stored connection ``record`` (may be None).

    Loopback, link-local and private hosts are refused (the base URL and absolute OAuth URLs
    here; every request, after resolving its host name, in a request hook) unless the
    connection allows them: see :mod:`splice.http.network`."""
    base = record.base_url if record is not None and record.base_url else connector.base_url
    allowed = allows_private_network(record)
    who = f"connection '{record.name}'" if record is not None else f"connector '{connector.id}'"
    check_url(base, allowed=allowed, what=f"the base URL of {who}")
    for key in ("token_url", "revoke_url"):
        url = connector.auth.get(key)
        if isinstance(url, str) and not url.startswith("/"):
            check_url(url, allowed=allowed, what=f"the {key} of connector '{connector.id}'")
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
    client = ApiClient(connector, base_url=base, auth=auth, **kwargs)
    if not allowed:
        guard_client(client.client)
    return client

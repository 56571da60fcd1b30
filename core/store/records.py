"""A stored connection as the rest of splice sees it (no SQLAlchemy here: ``splice validate``
reads connections without importing it, :mod:`splice.store.connection_state`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..secrets import REDACTOR, SecretBox

__all__ = ["ConnectionRecord", "register_secrets"]


@dataclass(frozen=True)
class ConnectionRecord:
    """A stored connection. ``secret`` is decrypted on access and never shown by ``repr``."""

    name: str
    connector: str
    auth_type: str
    base_url: str | None
    config: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    _ciphertext: bytes | None = field(default=None, repr=False, compare=False)
    _box: Callable[[], SecretBox] | None = field(default=None, repr=False, compare=False)

    @property
    def secret(self) -> dict[str, Any]:
        """The decrypted secret dict (its values are registered with the log redactor)."""
        if self._ciphertext is None or self._box is None:
            return {}
        data = self._box().decrypt(self._ciphertext)
        register_secrets(data)
        return data

    @property
    def scopes(self) -> list[str]:
        """Granted OAuth scopes, as recorded in ``config["scopes"]``."""
        return list(self.config.get("scopes") or [])

    @property
    def status(self) -> str:
        """``valid``, ``expiring`` or ``reauth_required`` (``config["status"]``)."""
        return str(self.config.get("status") or "valid")


def register_secrets(data: Any) -> None:
    """Register every string in ``data`` (nested dicts and lists) with the log redactor."""
    if isinstance(data, str):
        REDACTOR.add(data)
    elif isinstance(data, Mapping):
        for value in data.values():
            register_secrets(value)
    elif isinstance(data, list):
        for value in data:
            register_secrets(value)

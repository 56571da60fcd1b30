"""A connection's webhook verification keys, per signature scheme.

Shared secrets (``key_kind = "secret"``, e.g. ``hmac_sha256``) live in the connection's
encrypted secret as ``webhook_secret`` (a REST-hook subscription stores its own there;
``splice connections webhook-key`` sets one by hand). Public keys come from the connection's
configuration (``webhook_keys: {scheme: PEM}``, e.g. a sandbox's key) or else from the
manifest's default ``public_key``. No key means every delivery is refused.
"""

from __future__ import annotations

from typing import Any

from ..signatures import SignatureSpec

SECRET_FIELD = "webhook_secret"
PUBLIC_KEYS_FIELD = "webhook_keys"


def connection_keys(record: Any, specs: list[SignatureSpec], schemes: dict[str, Any]
                    ) -> dict[str, list[Any]]:
    """scheme name -> loaded keys for ``record`` (keys that do not load are left out)."""
    out: dict[str, list[Any]] = {}
    custom = dict(record.config.get(PUBLIC_KEYS_FIELD) or {})
    secret = None
    for spec in specs:
        for block in spec.chain():
            scheme = schemes.get(block.scheme)
            if scheme is None or block.scheme in out:
                continue
            texts: list[str] = []
            if scheme.key_kind == "secret":
                if secret is None:
                    secret = record.secret
                value = secret.get(SECRET_FIELD)
                texts = [value] if isinstance(value, str) and value else []
            elif custom.get(block.scheme):
                texts = [custom[block.scheme]]
            elif block.public_key:
                texts = [block.public_key]
            keys = []
            for text in texts:
                try:
                    keys.append(scheme.load_key(text))
                except ValueError:
                    continue
            out[block.scheme] = keys
    return out

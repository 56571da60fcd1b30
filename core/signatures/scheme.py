"""What a signature scheme is, and the reasons a delivery is turned away.

A scheme turns key text (an HMAC secret, a PEM public key) into a key object once
(``load_key``) and answers whether ``signature`` signs ``message`` under that key
(``verify``). It never raises for a bad signature: ``verify`` returns False, and every
malformed input (wrong key type, garbage bytes) is a False too, so a caller cannot
accidentally accept on an exception. ``load_key`` raises ``ValueError`` for key text it cannot
use. ``key_kind`` says where a connection keeps the key: ``secret`` (encrypted with the
connection's secrets) or ``public_key`` (plain configuration, or a default in the manifest).
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

#: rejection reasons, as counted in metrics and logged (never with the payload)
REASONS = (
    "unknown_connection",    # no such connection, or its connector has no webhook trigger
    "too_large",             # the body is over the size limit
    "no_key",                # the connection has no verification key: fail closed
    "missing_signature",     # the signature header is absent or empty
    "bad_signature",         # present but does not verify (tampered body, wrong key)
    "missing_timestamp",     # the scheme signs a timestamp and none was sent
    "stale_timestamp",       # outside the tolerance window (replay of an old delivery)
    "malformed_json",        # the body is not a JSON object
    "missing_delivery_id",   # no delivery id where the trigger declares it
    "unknown_event",         # an event type no trigger of the connector declares
    "duplicate",             # a delivery id already received: acknowledged, nothing new
    "inbox_full",            # over the inbox depth limit: 503 + Retry-After
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Rejected(Exception):
    """A delivery failed verification. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason.replace("_", " "))
        self.reason = reason
        self.detail = detail or reason.replace("_", " ")


@runtime_checkable
class SignatureScheme(Protocol):
    """One signing algorithm (see the module docstring)."""

    name: str
    key_kind: str  # "secret" or "public_key"

    def load_key(self, text: str) -> Any:
        """The key object for ``text``; ``ValueError`` when it is not a usable key."""

    def verify(self, key: Any, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` signs ``message`` under ``key`` (False on any problem)."""


def check_scheme(scheme: Any) -> str | None:
    """Why ``scheme`` cannot be registered, or None when it can (checked at ``register``)."""
    name = getattr(scheme, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        return f"a signature scheme needs a snake_case name, got {name!r}"
    if getattr(scheme, "key_kind", None) not in ("secret", "public_key"):
        return f"signature scheme '{name}' needs key_kind 'secret' or 'public_key'"
    for method in ("load_key", "verify"):
        if not callable(getattr(scheme, method, None)):
            return f"signature scheme '{name}' has no {method}() method"
    return None

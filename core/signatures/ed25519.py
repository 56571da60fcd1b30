"""``ed25519``: Ed25519 signatures checked with a PEM (SubjectPublicKeyInfo) public key.

HighLevel's current scheme (``x-ghl-signature``): the raw body signed with HighLevel's key.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key


class Ed25519:
    name = "ed25519"
    key_kind = "public_key"

    def load_key(self, text: str) -> Ed25519PublicKey:
        try:
            key = load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
            raise ValueError(f"not a PEM public key ({type(exc).__name__})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"not an Ed25519 public key (got {type(key).__name__})")
        return key

    def verify(self, key: Any, message: bytes, signature: bytes) -> bool:
        if not isinstance(key, Ed25519PublicKey) or len(signature) != 64:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

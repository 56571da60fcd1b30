"""``ed25519``: Ed25519 signatures checked with a PEM (SubjectPublicKeyInfo) public key.

HighLevel's current scheme (``x-ghl-signature``): the raw body signed with HighLevel's key.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .pem import load_public_key


class Ed25519:
    name = "ed25519"
    key_kind = "public_key"

    def load_key(self, text: str) -> Ed25519PublicKey:
        key: Ed25519PublicKey = load_public_key(text, Ed25519PublicKey, "Ed25519")
        return key

    def verify(self, key: Any, message: bytes, signature: bytes) -> bool:
        if not isinstance(key, Ed25519PublicKey) or len(signature) != 64:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

"""``rsa_sha256``: RSA PKCS#1 v1.5 signatures over SHA-256, checked with a PEM public key.

HighLevel's legacy scheme (``x-wh-signature``), still sent alongside the Ed25519 one.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .pem import load_public_key


class RsaSha256:
    name = "rsa_sha256"
    key_kind = "public_key"

    def load_key(self, text: str) -> RSAPublicKey:
        key: RSAPublicKey = load_public_key(text, RSAPublicKey, "RSA")
        if key.key_size < 2048:
            raise ValueError(f"RSA key of {key.key_size} bits is too short (at least 2048)")
        return key

    def verify(self, key: Any, message: bytes, signature: bytes) -> bool:
        if not isinstance(key, RSAPublicKey):
            return False
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

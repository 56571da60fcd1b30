"""``hmac_sha256``: HMAC-SHA256 with a shared secret (Invoice2go, Stripe-like APIs).

The key is the secret string's UTF-8 bytes, exactly as the provider shows it (Invoice2go's
``whsec_...`` is used whole, not base64-decoded). Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any


class HmacSha256:
    name = "hmac_sha256"
    key_kind = "secret"

    def load_key(self, text: str) -> bytes:
        if not isinstance(text, str) or not text:
            raise ValueError("an HMAC secret must be a non-empty string")
        return text.encode("utf-8")

    def verify(self, key: Any, message: bytes, signature: bytes) -> bool:
        if not isinstance(key, bytes) or not key:
            return False
        expected = hmac.new(key, message, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)

    def sign(self, key: bytes, message: bytes) -> bytes:
        """The signature a sender computes (tests and benchmarks use it)."""
        return hmac.new(key, message, hashlib.sha256).digest()

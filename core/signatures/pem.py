"""Loading the PEM public keys the ``ed25519`` and ``rsa_sha256`` schemes verify with."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key


def load_public_key(text: str, kind: type, label: str) -> Any:
    """The key in ``text`` if it is a PEM public key of ``kind``; ValueError saying why not."""
    try:
        key = load_pem_public_key(text.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, AttributeError) as exc:
        raise ValueError(f"not a PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, kind):
        raise ValueError(f"not an {label} public key (got {type(key).__name__})")
    return key

"""The built-in webhook signature schemes (``hmac_sha256``, ``ed25519``, ``rsa_sha256``)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def register_signature_schemes(register: Any) -> None:
    from ..signatures import BUILTIN_SCHEMES  # (cryptography: only where webhooks are checked)

    for scheme in BUILTIN_SCHEMES:
        register(scheme)

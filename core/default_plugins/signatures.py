"""The built-in webhook signature schemes (``hmac_sha256``, ``ed25519``, ``rsa_sha256``)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from ..signatures import BUILTIN_SCHEMES


@hookimpl(trylast=True)
def register_signature_schemes(register: Any) -> None:
    for scheme in BUILTIN_SCHEMES:
        register(scheme)

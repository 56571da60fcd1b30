"""Webhook signature schemes: a family of interchangeable parts, one module each.

A connector manifest declares how its deliveries are signed (``signature:`` on a webhook
trigger); :func:`~splice.signatures.spec.SignatureSpec.from_dict` reads that block and
:func:`~splice.signatures.verify.verify_delivery` checks a delivery against it, failing closed
with a short :class:`Rejected` reason. The algorithms themselves are
:class:`~splice.signatures.scheme.SignatureScheme` objects: the built-ins
(``hmac_sha256``, ``ed25519``, ``rsa_sha256``) are registered by the default plugin
``splice.default_plugins.signatures``; a plugin adds one with the
``register_signature_schemes(register)`` hook.
"""

from .ed25519 import Ed25519
from .hmac_sha256 import HmacSha256
from .rsa_sha256 import RsaSha256
from .scheme import REASONS, Rejected, SignatureScheme, check_scheme
from .spec import SignatureSpec
from .verify import Verified, body_timestamp, verify_delivery

BUILTIN_SCHEMES: tuple[SignatureScheme, ...] = (HmacSha256(), Ed25519(), RsaSha256())

__all__ = [
    "BUILTIN_SCHEMES",
    "REASONS",
    "Ed25519",
    "HmacSha256",
    "Rejected",
    "RsaSha256",
    "SignatureScheme",
    "SignatureSpec",
    "Verified",
    "body_timestamp",
    "check_scheme",
    "verify_delivery",
]

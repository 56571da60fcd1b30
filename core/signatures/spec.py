"""The ``signature:`` block of a webhook trigger, read into a :class:`SignatureSpec`.

::

    signature:
      scheme: hmac_sha256            # a registered scheme
      header: X-Webhook-Signature    # where the signature is
      format: "v1={hex}"             # how it is written: {hex} or {base64}, with literal text
      message: "{timestamp}.{body}"  # what is signed: the raw body, maybe with the timestamp
      timestamp_header: X-Webhook-Timestamp   # Unix seconds, signed in the message
      timestamp_path: timestamp      # or: a signed field of the body (ISO 8601 or Unix)
      tolerance: 300                 # seconds a delivery may be old (or early)
      public_key: "-----BEGIN PUBLIC KEY-----..."   # default key (public_key schemes)
      fallback: {...}                # another block, used when this header is absent
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TOLERANCE = 300
_PLACEHOLDER = re.compile(r"\{(hex|base64)\}")


@dataclass(frozen=True)
class SignatureSpec:
    """How one provider signs its deliveries (see the module docstring)."""

    scheme: str
    header: str
    format: str = "{base64}"
    message: str = "{body}"
    timestamp_header: str | None = None
    timestamp_path: str | None = None
    tolerance: int = DEFAULT_TOLERANCE
    public_key: str | None = None
    fallback: SignatureSpec | None = None

    @classmethod
    def from_dict(cls, block: Mapping[str, Any]) -> SignatureSpec:
        fallback = block.get("fallback")
        return cls(scheme=str(block["scheme"]), header=str(block["header"]),
                   format=str(block.get("format", "{base64}")),
                   message=str(block.get("message", "{body}")),
                   timestamp_header=block.get("timestamp_header"),
                   timestamp_path=block.get("timestamp_path"),
                   tolerance=int(block.get("tolerance", DEFAULT_TOLERANCE)),
                   public_key=block.get("public_key"),
                   fallback=cls.from_dict(fallback) if isinstance(fallback, Mapping) else None)

    def chain(self) -> list[SignatureSpec]:
        """This block and its fallbacks, in the order they are tried."""
        out: list[SignatureSpec] = []
        spec: SignatureSpec | None = self
        while spec is not None and spec not in out:
            out.append(spec)
            spec = spec.fallback
        return out

    @property
    def signs_timestamp(self) -> bool:
        return "{timestamp}" in self.message

    def decode(self, value: str) -> list[bytes]:
        """The signatures written in a header value (several when comma-separated, as during
        a key rotation); values that do not match ``format`` are left out."""
        match = _PLACEHOLDER.search(self.format)
        if match is None:
            return []
        prefix, suffix = self.format[:match.start()], self.format[match.end():]
        out = []
        for part in value.split(","):
            part = part.strip()
            if not part.startswith(prefix) or not part.endswith(suffix) or \
                    len(part) <= len(prefix) + len(suffix):
                continue
            text = part[len(prefix):len(part) - len(suffix)]
            try:
                if match.group(1) == "hex":
                    out.append(bytes.fromhex(text))
                else:
                    out.append(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
            except (ValueError, binascii.Error):
                continue
        return out

    def encode(self, signature: bytes) -> str:
        """The header value for ``signature`` (what a sender writes)."""
        match = _PLACEHOLDER.search(self.format)
        kind = match.group(1) if match else "base64"
        text = signature.hex() if kind == "hex" else base64.b64encode(signature).decode()
        return _PLACEHOLDER.sub(text, self.format, count=1) if match else text

    def signed_message(self, body: bytes, timestamp: str | None) -> bytes:
        """The bytes the sender signed: ``message`` with the raw body and timestamp."""
        head, sep, tail = self.message.partition("{body}")
        stamp = timestamp or ""
        out = head.replace("{timestamp}", stamp).encode()
        if sep:
            out += body + tail.replace("{timestamp}", stamp).encode()
        return out

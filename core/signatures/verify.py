"""Check one delivery against a :class:`SignatureSpec`, failing closed.

``verify_delivery`` picks the first block of the spec's chain whose header is present (so
HighLevel's ``x-ghl-signature`` is checked when sent, and ``x-wh-signature`` only when it is
not), then: a key must be configured for that scheme (``no_key`` otherwise: never skipped), the
signature must verify under one of the keys (``bad_signature``), and a signed header timestamp
must lie within ``tolerance`` seconds of now (``stale_timestamp``). A timestamp inside the body
(``timestamp_path``) is checked after the body is parsed, with :func:`body_timestamp`.
Nothing here reads or logs the payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .scheme import Rejected, SignatureScheme
from .spec import SignatureSpec


@dataclass(frozen=True)
class Verified:
    """A delivery that passed: the block that verified it and its signed timestamp, if any."""

    spec: SignatureSpec
    timestamp: float | None


def verify_delivery(spec: SignatureSpec, schemes: Mapping[str, SignatureScheme],
                    keys: Mapping[str, Sequence[Any]], body: bytes,
                    headers: Mapping[str, str], now: float) -> Verified:
    """``headers`` with lower-case names; ``keys``: scheme name -> loaded keys."""
    chosen = None
    for candidate in spec.chain():
        if headers.get(candidate.header.lower(), "").strip():
            chosen = candidate
            break
    if chosen is None:
        raise Rejected("missing_signature", f"no {spec.header} header")
    scheme = schemes.get(chosen.scheme)
    usable = list(keys.get(chosen.scheme) or ())
    if scheme is None or not usable:
        raise Rejected("no_key", f"no {chosen.scheme} key is configured for this connection")
    stamp_text: str | None = None
    if chosen.timestamp_header:
        stamp_text = headers.get(chosen.timestamp_header.lower(), "").strip() or None
        if stamp_text is None:
            raise Rejected("missing_timestamp", f"no {chosen.timestamp_header} header")
    elif chosen.signs_timestamp:
        raise Rejected("missing_timestamp", "the scheme signs a timestamp but names no header")
    signatures = chosen.decode(headers[chosen.header.lower()])
    message = chosen.signed_message(body, stamp_text)
    if not any(scheme.verify(key, message, sig) for sig in signatures for key in usable):
        raise Rejected("bad_signature", f"{chosen.header} does not verify")
    stamp = None
    if stamp_text is not None:
        stamp = _parse_time(stamp_text)
        if stamp is None:
            raise Rejected("missing_timestamp", f"{chosen.timestamp_header} is not a time")
        _check_window(stamp, now, chosen.tolerance)
    return Verified(chosen, stamp)


def body_timestamp(spec: SignatureSpec, data: Any, now: float) -> float | None:
    """Check the signed timestamp inside a parsed body (``timestamp_path``), if declared."""
    if not spec.timestamp_path:
        return None
    node = data
    for part in spec.timestamp_path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    stamp = _parse_time(node)
    if stamp is None:
        raise Rejected("missing_timestamp", f"no timestamp at '{spec.timestamp_path}'")
    _check_window(stamp, now, spec.tolerance)
    return stamp


def _check_window(stamp: float, now: float, tolerance: int) -> None:
    if abs(now - stamp) > tolerance:
        raise Rejected("stale_timestamp", f"signed {now - stamp:.0f} s from now (window "
                                          f"{tolerance} s)")


def _parse_time(value: Any) -> float | None:
    """Unix seconds (or milliseconds) as a number or text, or an ISO 8601 timestamp."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                return None
            return parsed.timestamp()
    else:
        return None
    if number > 1e11:  # milliseconds
        number /= 1000.0
    return number if number == number and abs(number) < 1e11 else None

"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d`` or seconds."""

from __future__ import annotations

import re

DAY = 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "": 1.0}
_PERIOD = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?$")


def parse_period(value: str | float | int) -> float:
    """Seconds in a window written as ``10``, ``10s``, ``500ms``, ``1m``, ``1h`` or ``1d``."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _PERIOD.match(value.strip())
    if not match:
        raise ValueError(f"not a window length: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def human(seconds: float) -> str:
    """A short duration: ``850 ms``, ``12 s``, ``3 min``, ``2 h 5 min``, ``1 d``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        hours, rest = divmod(int(round(seconds)), 3600)
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    return f"{seconds / DAY:.1f} d"

"""The built-in template filters, registered as a default plugin (a plugin may override them).

The filters themselves live in :mod:`splice.mapping.filters`, the mapping engine's library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def register_template_filters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the built-in filters (plugins registered later may override them)."""
    from ..mapping.filters import FILTERS  # (Jinja: not for commands that render nothing)

    for name, function in FILTERS.items():
        register(name, function)

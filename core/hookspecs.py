"""Plugin hook specifications. Plugins implement these with ``@splice.hookimpl``."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("splice")
hookimpl = pluggy.HookimplMarker("splice")


@hookspec
def register_connectors(register: Any) -> None:
    """Register connector manifests: ``register(path_or_dict, sandbox="module:factory")``."""


@hookspec
def register_template_filters(register: Any) -> None:
    """Register Jinja filters: ``register(name, function)``."""


@hookspec
def register_auth_types(register: Any) -> None:
    """Register auth types: ``register(name, factory)``; factory(connector, record, store)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``splice`` CLI group."""


@hookspec
def register_signature_schemes(register: Any) -> None:
    """Register webhook signature schemes: ``register(scheme)``; see ``splice.signatures``."""

"""A connection's health in words people read, and the scopes recipes need from a connector."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SpliceError
from ..model.durations import human
from ..model.manifest import Connector
from ..model.recipe import load_recipe
from .oauth import interrupted_refreshes, refresh_skew


def token_state(record: Any, now: float | None = None) -> tuple[str, str]:
    """(state, words): valid / expiring / expired / refresh_interrupted / reauth_required."""
    if record.status == "reauth_required":
        return "reauth_required", "needs re-auth"
    if record.auth_type == "oauth2" and interrupted_refreshes(record):
        return "refresh_interrupted", ("refresh interrupted (next use retries it; "
                                       "may need re-auth)")
    expires_at = record.config.get("expires_at")
    if expires_at is None:
        return "valid", "valid"
    left = float(expires_at) - (time.time() if now is None else now)
    oauth = record.auth_type == "oauth2"
    if left <= 0:
        return "expired", "expired (refreshes on next use)" if oauth else "expired"
    try:
        skew = refresh_skew(record) if oauth else 0.0
    except ConfigError:
        skew = 0.0
    if left <= max(skew, 60.0):
        return "expiring", f"expiring in {human(left)}" + \
            (" (refreshes on next use)" if oauth else "")
    return "valid", f"valid ({human(left)} left)"


def needed_scopes(connector: Connector, paths: Iterable[Path]) -> list[str]:
    """Scopes the recipes at ``paths`` need from ``connector`` (all of its scopes if none).

    A recipe that does not load is skipped: ``validate`` and ``run`` report it."""
    needed: list[str] = []
    for path in paths:
        try:
            recipe = load_recipe(path)
        except SpliceError:
            continue
        ops = [connector.operations.get(s.action_id) for s in recipe.steps
               if s.connector_id == connector.id]
        scopes = [s for op in ops if op is not None for s in op.scopes]
        for spec in recipe.triggers:
            trigger = connector.triggers.get(spec.trigger_id) \
                if spec.connector_id == connector.id else None
            if trigger is not None:
                op = connector.operations.get(trigger.operation or "")
                scopes += op.scopes if op is not None else trigger.scopes
        needed += [s for s in scopes if s not in needed]
    return needed or list(connector.scopes)


def default_scopes(connector: Connector, recipes_dir: Path = Path("recipes")) -> list[str]:
    """Scopes the recipes in ``recipes_dir`` need from this connector, else all of its scopes."""
    return needed_scopes(connector, sorted(recipes_dir.glob("*.y*ml"))
                         + sorted(recipes_dir.glob("*.json")))

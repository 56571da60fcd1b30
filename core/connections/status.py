"""A connection's health in words people read, the scopes recipes need from a connector, and
the scope check ``splice call`` and ``splice connections test`` share with recipes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import AuthError, ConfigError, SpliceError
from ..model.durations import human
from ..model.manifest import Connector, Operation
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
    oauth = record.auth_type in ("oauth2", "oauth2_client_credentials")
    if left <= 0:
        return "expired", ("expired (refreshes on next use)" if oauth else "expired")
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
    return list(dict.fromkeys(needed)) or list(connector.scopes)


def granted_scopes(record: Any, connector: Connector) -> list[str] | None:
    """The scopes an OAuth connection was granted (None: not recorded, or not OAuth)."""
    if record is None or connector.auth_type != "oauth2":
        return None
    granted = record.config.get("scopes")
    return None if granted is None else list(granted)


def reconnect_command(connector: Connector, name: str, granted: Iterable[str],
                      missing: Iterable[str]) -> str:
    """The ``splice connect`` command that keeps the granted scopes and adds the missing."""
    scopes = " ".join(sorted(set(granted) | set(missing)))
    return f'splice connect {connector.id} --name {name} --scopes "{scopes}"'


def check_scopes(connector: Connector, record: Any, op: Operation) -> None:
    """Raise :class:`AuthError` (nothing sent) when the connection lacks a scope ``op``
    needs, naming the scopes and the command that adds them."""
    granted = granted_scopes(record, connector)
    if granted is None:
        return
    missing = [s for s in op.scopes if s not in granted]
    if missing:
        raise AuthError(f"connection '{record.name}' lacks scope(s) {', '.join(missing)} that "
                        f"{op.ref} needs (nothing was sent)",
                        hint="reconnect with them: " + reconnect_command(
                            connector, record.name, granted, missing))


def probe_operation(connector: Connector, record: Any, disabled: Iterable[str] = ()
                    ) -> tuple[Operation, str | None]:
    """The operation ``connections test`` calls: the connector's ``test_operation`` when the
    connection may call it (granted and not ``disabled``), else another read its scopes
    allow and its fields can fill (with a note saying why). An :class:`AuthError` names the
    missing scope and the command when no read is allowed."""
    off = set(disabled)
    declared = connector.operations.get(connector.test_operation or "")
    granted = granted_scopes(record, connector)
    if declared is not None and declared.id not in off and (
            granted is None or set(declared.scopes) <= set(granted)):
        return declared, None
    if granted is None and not off:
        raise ConfigError(f"connector '{connector.id}' declares no test_operation")
    fields = set((record.config.get("fields") or {}) if record is not None else {})
    reads = [op for op in connector.operations.values()
             if op.method == "GET" and op.id not in off
             and (granted is None or set(op.scopes) <= set(granted))
             and set((op.input or {}).get("required", [])) <= fields | set(op.defaults)]
    reads.sort(key=lambda op: (not op.is_list, len((op.input or {}).get("required", []))))
    missing = [s for s in (declared.scopes if declared else []) if s not in (granted or [])]
    if reads:
        note = None
        if declared is not None and declared.id in off:
            note = f"the test operation {declared.ref} is disabled for this connection"
        elif declared is not None:
            note = (f"the test operation {declared.ref} needs scope {', '.join(missing)}, "
                    "which the connection was not granted")
        return reads[0], note
    if granted is None or (declared is not None and declared.id in off and not missing):
        name = record.name if record is not None else "NAME"
        raise ConfigError(f"connection '{name}': every read splice could test it with is "
                          "disabled", hint=f"enable one: `splice connections endpoints {name}`")
    wanted = missing or list(connector.scopes)[:1]
    raise AuthError(f"connection '{record.name}' has no scope that lets splice test it "
                    f"(the test operation needs {', '.join(wanted)})",
                    hint="reconnect with it: " + reconnect_command(connector, record.name,
                                                                   granted, wanted))


def default_scopes(connector: Connector, recipes_dir: Path = Path("recipes")) -> list[str]:
    """Scopes the recipes in ``recipes_dir`` need from this connector, else all of its scopes."""
    return needed_scopes(connector, sorted(recipes_dir.glob("*.y*ml"))
                         + sorted(recipes_dir.glob("*.json")))

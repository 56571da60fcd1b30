"""What a failed event's error means, and when the event runs again.

Every error a step raises is put in one class; the class decides what happens to the event:

==========  ===========================================  ====================================
class       raised for                                   what splice does
==========  ===========================================  ====================================
server      HTTP 5xx                                     failed; retried after a back-off
network     connect/read errors, timeouts                failed; retried after a back-off
client      HTTP 408, 409, 425, 429                      failed; retried after a back-off
client      any other HTTP 4xx                           dead letter at once
validation  input not valid, template or request error   dead letter at once
auth        HTTP 401/403, refused refresh                dead letter at once; the run stops
            (token endpoint unreachable or 5xx: network or server, retried)
scope       HTTP 403 naming a missing scope              dead letter at once; the run stops
config      missing connection, unknown connector        dead letter at once; the run stops
budget      rate budget used up, long Retry-After        stays pending; the run stops
unknown     a crash while a write without idempotency    dead letter at once (re-sending could
            support was in flight                        write twice: check the API first)
==========  ===========================================  ====================================

(``budget`` and an open circuit breaker are not failures: nothing was sent, the event stays
pending and the next run resumes it.) A retryable failure gets ``next_attempt_at``: the
recipe's ``retry.backoff`` minimum, doubled for each further attempt, plus up to 25% jitter,
capped at the maximum. After ``retry.attempts`` attempts the event is dead-lettered with its
last error and the command that fixes it (``splice runs retry --dead ID`` requeues it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import (
    AuthError,
    ConfigError,
    HTTPError,
    InputError,
    OutcomeUnknown,
    PluginError,
    RequestError,
    SpliceError,
    ValidationFailed,
)
from ..model.recipe import RetryPolicy

__all__ = ["ADVICE", "RETRYABLE_4XX", "Verdict", "backoff_delay", "classify", "explain",
           "next_attempt_at"]

RETRYABLE_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Verdict:
    """How an event's error is handled."""

    error_class: str
    retryable: bool
    stops_run: bool = False
    fix: str | None = None  # what the user does (a command where one exists)


def classify(exc: SpliceError, *, recipe_path: str | None = None,
             event_id: int | None = None) -> Verdict:
    """The class of ``exc`` and what to do about it (see the table above)."""
    requeue = f"splice runs retry --dead {event_id}" if event_id is not None else \
        "splice runs retry --dead ID"
    test = f"splice test {recipe_path}" if recipe_path else "splice test RECIPE"
    if isinstance(exc, OutcomeUnknown):
        return Verdict("unknown", False, fix="look in the API whether the write was applied; "
                                             f"if it was not: {requeue}")
    if isinstance(exc, AuthError) and exc.status is not None and exc.status >= 500:
        return Verdict("server", True)  # the token endpoint is sick, not the credentials
    if isinstance(exc, AuthError) and exc.status is None and "could not reach" in exc.message:
        return Verdict("network", True)
    if isinstance(exc, AuthError):
        scope = "missing scope" in exc.message
        then = f"{exc.hint}; then {requeue}" if exc.hint else \
            f"reconnect (splice connect CONNECTOR --name NAME), then {requeue}"
        return Verdict("scope" if scope else "auth", False, True, then)
    if isinstance(exc, HTTPError):
        status = exc.status
        if status is None:
            return Verdict("network", True)
        if status >= 500:
            return Verdict("server", True)
        if status in RETRYABLE_4XX:
            return Verdict("client", True)
        return Verdict("client", False, fix=f"the API refused the request (HTTP {status}); "
                                            f"see it with `splice runs show RUN`, fix the "
                                            f"recipe or the data, then {requeue}")
    if isinstance(exc, ValidationFailed | RequestError | InputError):
        return Verdict("validation", False,
                       fix=f"fix the recipe (`{test}` shows each mapped field), then {requeue}")
    if isinstance(exc, ConfigError | PluginError):
        return Verdict("config", False, True, fix=f"{exc.hint or 'fix the configuration'}; "
                                                  f"then {requeue}")
    return Verdict("config", False, True, fix=requeue)


def backoff_delay(policy: RetryPolicy, attempt: int,
                  rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first run)."""
    base = min(policy.backoff_max, policy.backoff_min * 2 ** max(0, attempt - 1))
    return min(policy.backoff_max, base * rng(1.0, 1.25))


def next_attempt_at(policy: RetryPolicy, attempt: int, at: datetime,
                    rng: Callable[[float, float], float] = random.uniform) -> datetime:
    """When an event that failed its ``attempt``-th time is due again."""
    return at + timedelta(seconds=backoff_delay(policy, attempt, rng))


ADVICE = {  # what to do about a failed or dead event of each class (the dashboard, runs show)
    "server": "the API failed (5xx): splice retries it on its own after a back-off; Retry "
              "runs it now",
    "network": "the API could not be reached: splice retries it on its own after a back-off; "
               "Retry runs it now",
    "client": "the API refused the request: fix the recipe or the data it read, then retry "
              "(a 408/409/425/429 is retried on its own)",
    "validation": "the mapped input does not fit the action: fix the recipe (splice test "
                  "shows each mapped field), then retry",
    "auth": "the connection's credentials were refused: re-authenticate it, then retry",
    "scope": "the connection lacks a scope the step needs: reconnect it with that scope, then "
             "retry",
    "config": "the configuration is incomplete (a connection or connector is missing): fix "
              "it, then retry",
    "budget": "the request budget was used up: nothing was sent; it runs when the budget "
              "frees up",
    "unknown": "a crash hid whether the write was applied: look in the API first; retry only "
               "if it was not",
}


def explain(error_class: str | None, last_error: str | None) -> tuple[str, str | None]:
    """An event's stored error split into (message, what to do): the ``fix:`` line the
    engine wrote with a dead letter when there is one, else the class's advice."""
    text = last_error or ""
    message, _, written = text.partition("\n  fix: ")
    fix = written.strip() or None
    if fix is None and error_class is not None:
        fix = ADVICE.get(error_class)
    return message.strip(), fix

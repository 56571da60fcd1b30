"""Error classes, the back-off schedule and the recipe's ``retry:`` block."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from splice.errors import (
    AuthError,
    ConfigError,
    DocumentError,
    HTTPError,
    OutcomeUnknown,
    RequestError,
    TemplateError,
    ValidationFailed,
)
from splice.http.breaker import CircuitBreaker
from splice.model.recipe import RetryPolicy, load_recipe
from splice.run.retry import backoff_delay, classify, next_attempt_at

from .conftest import FIXTURES


@pytest.mark.parametrize(("error", "klass", "retryable", "stops"), [
    (HTTPError("x: HTTP 503: busy", status=503), "server", True, False),
    (HTTPError("x: HTTP 500", status=500), "server", True, False),
    (HTTPError("x: network error after 4 attempt(s): ConnectError"), "network", True, False),
    (HTTPError("x: HTTP 429", status=429), "client", True, False),
    (HTTPError("x: HTTP 409", status=409), "client", True, False),
    (HTTPError("x: HTTP 408", status=408), "client", True, False),
    (HTTPError("x: HTTP 425", status=425), "client", True, False),
    (HTTPError("x: HTTP 400: bad", status=400), "client", False, False),
    (HTTPError("x: HTTP 404", status=404), "client", False, False),
    (HTTPError("x: HTTP 422", status=422), "client", False, False),
    (ValidationFailed("x input is not valid"), "validation", False, False),
    (TemplateError("steps[0].with.a: 'x' is undefined"), "validation", False, False),
    (RequestError("x: path parameter 'id' has no value"), "validation", False, False),
    (AuthError("x: HTTP 401: bad token", status=401), "auth", False, True),
    (AuthError("x: HTTP 403: no (missing scope 'a:write')", status=403,
               hint="reconnect with the scope: splice connect c --name n --scopes \"a:write\""),
     "scope", False, True),
    (AuthError("connection 'n': could not reach the token endpoint (ConnectError)"), "network",
     True, False),
    (AuthError("connection 'n': token refresh failed: HTTP 502", status=502), "server", True,
     False),
    (ConfigError("connection 'n' does not exist"), "config", False, True),
    (OutcomeUnknown("x: an earlier run died while this request was in flight"), "unknown",
     False, False),
])
def test_every_error_has_a_class(error, klass, retryable, stops) -> None:
    verdict = classify(error, recipe_path="r.yaml", event_id=7)
    assert (verdict.error_class, verdict.retryable, verdict.stops_run) == \
        (klass, retryable, stops)
    if not retryable:
        assert "splice runs retry --dead 7" in (verdict.fix or "")
    if klass == "validation":
        assert "splice test r.yaml" in (verdict.fix or "")
    if klass == "scope":
        assert "splice connect c --name n --scopes" in (verdict.fix or "")


def test_backoff_doubles_with_jitter_between_its_bounds() -> None:
    policy = RetryPolicy(attempts=8, backoff_min=60, backoff_max=3600)
    low, high = (lambda a, b: a), (lambda a, b: b)
    assert [backoff_delay(policy, n, low) for n in range(1, 9)] == \
        [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_delay(policy, 1, high) == 75  # up to 25% jitter
    assert backoff_delay(policy, 7, high) == 3600  # never above the maximum
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_attempt_at(policy, 2, at, low) == at + timedelta(seconds=120)


def test_the_retry_block_is_read_and_checked(tmp_path: Path) -> None:
    base = (FIXTURES / "notes.yaml").read_text()
    assert load_recipe(FIXTURES / "notes.yaml").retry == RetryPolicy(8, 60, 21600, 5)
    path = tmp_path / "r.yaml"
    path.write_text(base + "retry: {attempts: 3, backoff: 30s..2h, breaker: 0}\n")
    assert load_recipe(path).retry == RetryPolicy(3, 30, 7200, 0)
    path.write_text(base + "retry: {backoff: 2h..30s}\n")
    with pytest.raises(DocumentError, match=r"r.yaml:\d+:\d+: retry.backoff: the back-off "
                                            "minimum 2h is above its maximum 30s"):
        load_recipe(path)
    path.write_text(base + "retry: {backoff: soon}\n")
    with pytest.raises(DocumentError, match="retry.backoff"):
        load_recipe(path)


def test_the_breaker_opens_after_n_failures_and_probes_once_when_reloaded() -> None:
    breaker = CircuitBreaker("crm", 3)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure("HTTP 503")
    breaker.success()  # any answer resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure("HTTP 503")
    assert breaker.is_open and not breaker.allow()
    assert "circuit open after 3 consecutive failure(s) (last: HTTP 503)" in str(
        breaker.error())
    again = CircuitBreaker("crm", 3, state="open", failures=3)  # the next run
    assert again.allow() and not again.allow()  # one probe, then wait for its answer
    again.failure("ConnectError")
    assert again.is_open and not again.allow()
    third = CircuitBreaker("crm", 3, state="open", failures=4)
    assert third.allow()
    third.success()
    assert third.allow() and third.allow() and third.state == "closed"
    assert CircuitBreaker("crm", 0, state="open").allow()  # 0 turns it off

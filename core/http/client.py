"""One client per connection: sends a :class:`~splice.http.request.PreparedCall`, retries, errors.

``ApiClient.send`` sends a prepared call with the
connection's auth, timeouts (always on), rate budget (:mod:`splice.ratelimit`) and retry policy
(429/5xx/network errors only; a write is retried only when it carries an idempotency key or the
failure happened before sending), then maps error statuses to
:class:`~splice.errors.HTTPError` with the API's own message. ``ApiClient.iter_pages`` follows
pagination (:mod:`splice.pagination`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

from ..errors import AuthError, HTTPError, RequestError, SpliceError
from ..model.durations import human
from ..model.manifest import Connector, Operation
from ..secrets import redact_data, redact_text
from .body import decode_json
from .breaker import CircuitBreaker
from .pagination import Page, paginate
from .ratelimit import BudgetExhausted, RateLimiter
from .request import PreparedCall, dig, tls_context, tls_context_for

log = logging.getLogger("splice.http")

DEFAULT_TIMEOUTS = {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 10.0}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_ATTEMPTS = 4
MAX_RETRY_WAIT = 60.0  # longest back-off or Retry-After a request waits for
# Failures that prove the request never reached the API (safe to retry any method).
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retry_after_seconds(response: httpx.Response,
                        now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def error_message(connector: Connector, response: httpx.Response) -> str:
    """The API's own error message, made safe to show: known secrets and anything under a
    secret-like key masked, and cut to 300 characters (error bodies may echo credentials)."""
    try:
        body = redact_data(response.json())
    except ValueError:
        text = response.text[:2000].strip()
        return redact_text(text) if text else response.reason_phrase
    for path in connector.error_message_paths or ["error.message", "message", "error_description",
                                                  "error"]:
        value = dig(body, path)
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value[:20])
        if isinstance(value, str) and value:
            details = dig(body, "error.details")
            if isinstance(details, list) and details:
                parts = [f"{d.get('field')}: {d.get('issue')}" for d in details
                         if isinstance(d, dict)]
                value += " (" + "; ".join(parts[:5]) + ")"
            return redact_text(value)
    return response.reason_phrase


def raise_for_status(op: Operation, connector: Connector, response: httpx.Response,
                     connection: str | None = None,
                     granted: list[str] | None = None) -> None:
    if response.is_success:
        return
    status = response.status_code
    message = f"{op.ref}: HTTP {status}: {error_message(connector, response)}"
    name = connection or "NAME"
    if status in (401, 403):
        hint = None
        challenge = response.headers.get("WWW-Authenticate", "")
        if status == 403 and "scope=" in challenge:
            scope = challenge.split("scope=", 1)[1].strip().strip('"')
            message += f" (missing scope '{scope}')"
            wanted = " ".join([*(s for s in granted or [] if s != scope), scope])
            hint = f"reconnect with the scope: splice connect {connector.id} --name {name} " \
                   f"--scopes \"{wanted}\""
        elif status == 401:
            hint = (f"the credentials were refused; `splice connections test {name}` checks "
                    "them")
        raise AuthError(message, status=status, hint=hint)
    if status == 409:
        raise HTTPError(message, status=status,
                        hint="the API refused a conflicting change (for an idempotency conflict: "
                             "the same key was used with a different body)")
    raise HTTPError(message, status=status)


@dataclass
class Attempt:
    """One try of a request, recorded on the step result and shown by --verbose.

    ``waited`` is the back-off slept before this try, ``budget_wait`` the time spent waiting
    for the rate budget, ``next_wait`` the back-off before the next try (0: no retry).
    """

    number: int
    status: int | None
    error: str | None
    waited: float
    elapsed: float
    next_wait: float = 0.0
    budget_wait: float = 0.0
    sent: bool = True

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (what the run ledger stores)."""
        out: dict[str, Any] = {"attempt": self.number, "status": self.status,
                               "elapsed_ms": round(self.elapsed * 1000, 1)}
        if self.error:
            out["error"] = self.error
            out["sent"] = self.sent
        for name in ("waited", "budget_wait", "next_wait"):
            value = getattr(self, name)
            if value:
                out[name] = round(value, 3)
        return out


@dataclass
class _Outcome:
    response: httpx.Response | None = None
    error: Exception | None = None
    sent: bool = True
    retry: bool = False
    delay: float = 0.0
    stop: SpliceError | None = None


def backoff(number: int, *, base: float = 0.5, cap: float = MAX_RETRY_WAIT,
            rng: Callable[[float, float], float] = random.uniform) -> float:
    """Jittered exponential back-off before try ``number + 1``: half of ``base * 2**(n-1)``
    (capped) plus a random share of the other half."""
    ceiling = min(cap, base * 2 ** (number - 1))
    return ceiling / 2 + rng(0, ceiling / 2)


@dataclass
class CallResult:
    response: httpx.Response
    attempts: list[Attempt] = field(default_factory=list)

    def json(self) -> Any:
        """The body as JSON (decoded with orjson, see ``splice.http.body``), its text when
        it is not JSON, None when empty."""
        content = self.response.content
        if not content:
            return None
        try:
            return decode_json(content)
        except ValueError:
            return self.response.text


OnRequest = Callable[[httpx.Request, "httpx.Response | None", Attempt], None]


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (see :class:`StatelessClient`)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise ValueError("splice's API clients keep no cookies")


def _read_plain(response: httpx.Response, request: httpx.Request) -> None:
    """``response.read()`` for a body without a content encoding: the transport's chunks
    joined and the stream closed (freeing the connection), without the decoder and chunker
    layers ``Response.iter_bytes`` stacks on them (~75 µs less CPU per request in a run)."""
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)  # (as httpx.Client asserts)
    try:
        try:
            content = b"".join(stream)
        finally:
            stream.close()
    except httpx.RequestError as exc:
        exc.request = request
        raise
    response._content = content
    response.is_stream_consumed = True
    response.is_closed = True


def _lean_read_works() -> bool:
    """Whether ``Response.content`` serves what ``_read_plain`` stores (checked once, so an
    httpx that keeps the body elsewhere gets ``Response.read`` instead)."""
    probe = httpx.Response(200, stream=httpx.ByteStream(b""))
    probe._content = b"probe"
    try:
        return probe.content == b"probe"
    except httpx.ResponseNotRead:
        return False


_LEAN_READ = _lean_read_works()


class StatelessClient(httpx.Client):
    """An ``httpx.Client`` that keeps no cookies, with a lean ``send`` for requests whose
    redirects are not followed (every request of splice's API clients).

    A connection authenticates every request with what its manifest declares (a header, a
    token, a query parameter) and nothing else: a ``Set-Cookie`` from an API is not stored,
    so no request carries state the recipe did not ask for (nor a session cookie into the
    run records). It also skips httpx's cookie bookkeeping on every response (a
    ``urllib`` request shim and a header parse: ~6% of a POST's CPU).

    ``send`` drives the request through the client's transport, event hooks and auth flow
    the way ``httpx.Client.send`` does, without the layers a client that never follows a
    redirect and keeps no cookies does not need (the redirect loop, the response stream
    wrapper that times it, the cookie jar, a log line per request), and reads a body without
    a content encoding straight from the transport (:func:`_read_plain`): ~190 µs less CPU
    per request inside a run (bench/NOTES.md). Anything else (a stream, a redirect to follow,
    credentials in the URL, an httpx without the transport lookup) goes through httpx's own
    ``send``. Differences: ``response.elapsed`` is not set (splice times attempts itself) and
    httpx logs no ``HTTP Request:`` line (``--verbose`` logs splice's).
    """

    _no_cookies: httpx.Cookies | None = None

    def send(self, request: httpx.Request, *, stream: bool = False,
             auth: Any = httpx.USE_CLIENT_DEFAULT,
             follow_redirects: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        transport_for = getattr(self, "_transport_for_url", None)
        if (stream or auth is not httpx.USE_CLIENT_DEFAULT or self.is_closed
                or follow_redirects is not httpx.USE_CLIENT_DEFAULT or self.follow_redirects
                or request.url.userinfo or transport_for is None):
            return super().send(request, stream=stream, auth=auth,
                                follow_redirects=follow_redirects)
        if "timeout" not in request.extensions:
            request.extensions = {**request.extensions, "timeout": self.timeout.as_dict()}
        flow = self.auth.sync_auth_flow(request) if self.auth is not None else None
        try:
            if flow is not None:
                request = next(flow)
            while True:
                response = self._send_once(transport_for(request.url), request)
                if flow is None:
                    return response
                try:
                    request = flow.send(response)  # the auth flow asks for another request
                except StopIteration:
                    return response
        finally:
            if flow is not None:
                flow.close()

    def _send_once(self, transport: httpx.BaseTransport, request: httpx.Request
                   ) -> httpx.Response:
        """One request and its whole response (read, so the connection is free again)."""
        for hook in self.event_hooks["request"]:
            hook(request)
        try:
            response = transport.handle_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            for hook in self.event_hooks["response"]:
                hook(response)
            if _LEAN_READ and not response.headers.get("content-encoding"):
                _read_plain(response, request)
            else:
                response.read()  # decoded by httpx
        except BaseException:
            response.close()
            raise
        return response


    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        if self._no_cookies is None:
            self._no_cookies = _NoCookies()
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("splice's API clients keep no cookies")


class ApiClient:
    """One httpx client per connection: auth, timeouts, rate budget, retries, error mapping.

    Retries (tenacity): 429, 500/502/503/504 and network errors, at most ``max_attempts``
    tries, jittered exponential back-off capped at ``MAX_RETRY_WAIT``, ``Retry-After`` honoured
    (a longer ``Retry-After`` stops instead of waiting). A request that is not idempotent (POST,
    PATCH without the connector's idempotency header) is retried only when it provably never
    reached the API: connect errors, pool timeouts and 429.

    With a ``breaker`` (:mod:`splice.http.breaker`) every 5xx or network failure counts
    towards opening the connection's circuit, and once it is open nothing more is sent:
    :class:`~splice.errors.CircuitOpen` instead of the next try.
    """

    def __init__(self, connector: Connector, *, base_url: str, auth: httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_request: OnRequest | None = None, limiter: RateLimiter | None = None,
                 clock: Callable[[], float] = time.time,
                 max_attempts: int = MAX_ATTEMPTS, breaker: CircuitBreaker | None = None,
                 connection: str | None = None, scopes: list[str] | None = None) -> None:
        self.connector = connector
        self.breaker = breaker
        self.connection = connection  # its name and granted scopes, for the fixing command
        self.scopes = scopes
        self.base_url = base_url
        timeouts = {**DEFAULT_TIMEOUTS, **connector.timeouts}
        self.timeout = httpx.Timeout(**timeouts)
        # an auth flow may send token requests elsewhere (an https token URL): full TLS then
        verify = tls_context_for(base_url) if auth is None else tls_context()
        self.client = StatelessClient(auth=auth, timeout=self.timeout, verify=verify,
                                      transport=transport, follow_redirects=False,
                                      headers={"User-Agent": "splice/0.1"})
        self.sleep = sleep
        self.on_request = on_request
        self.limiter = limiter
        self.clock = clock
        self.max_attempts = max_attempts
        self.requests_made = 0
        # Built once (tenacity keeps per-call state thread-locally); ``_plan_retry`` decides
        # whether and how long, tenacity loops, waits and stops.
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=lambda state: state.outcome.result().delay,  # type: ignore[union-attr]
            sleep=lambda seconds: self.sleep(seconds),
            retry=tenacity.retry_if_result(lambda outcome: outcome.retry),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retries_writes(self, op: Operation, call: PreparedCall) -> bool:
        """Whether a failure after sending may be retried (the request is idempotent)."""
        if op.idempotent is not None:
            return op.idempotent
        if op.method in IDEMPOTENT_METHODS:
            return True
        header = (self.connector.idempotency or {}).get("header")
        return bool(header) and header in call.headers

    def send(self, op: Operation, call: PreparedCall) -> CallResult:
        """Send with the rate budget and retries; raise HTTPError for an error status."""
        idempotent = self.retries_writes(op, call)
        timeout = None
        if op.timeout:
            timeout = httpx.Timeout(**{**DEFAULT_TIMEOUTS, **self.connector.timeouts,
                                       "read": op.timeout})
        attempts: list[Attempt] = []

        def attempt_once() -> _Outcome:
            if self.breaker is not None and not self.breaker.allow():
                return _Outcome(stop=self.breaker.error())  # not sent
            budget_wait = self.limiter.acquire(self.sleep) if self.limiter else 0.0
            try:
                request = call.to_request()
            except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeError, ValueError,
                    TypeError) as exc:  # the same on every try: fail the call, send nothing
                raise RequestError(f"{op.ref}: the request cannot be built "
                                   f"({type(exc).__name__}); nothing was sent") from None
            if timeout is not None:  # the operation's own read timeout
                request.extensions = {**request.extensions, "timeout": timeout.as_dict()}
            started = time.monotonic()
            outcome = _Outcome()
            self.requests_made += 1
            try:
                outcome.response = self.client.send(request)
            except NOT_SENT_ERRORS as exc:
                outcome.error, outcome.sent = exc, False
            except httpx.TransportError as exc:
                outcome.error = exc
            response = outcome.response
            status = response.status_code if response is not None else None
            if response is not None and self.limiter is not None:
                self.limiter.observe(response.headers)
            attempt = Attempt(len(attempts) + 1, status,
                              type(outcome.error).__name__ if outcome.error else None,
                              attempts[-1].next_wait if attempts else 0.0,
                              time.monotonic() - started, budget_wait=budget_wait,
                              sent=outcome.sent)
            attempts.append(attempt)
            self._count(attempt)
            self._plan_retry(op, outcome, attempt, idempotent)
            if self.on_request:
                self.on_request(request, response, attempt)
            return outcome

        outcome = attempt_once()  # the common case: no retry machinery at all
        if outcome.retry:
            self.sleep(outcome.delay)
            outcome = self._retrying(attempt_once)  # tenacity drives every retry
        if outcome.stop is not None:
            raise outcome.stop
        if outcome.error is not None:
            raise HTTPError(f"{op.ref}: network error after {len(attempts)} attempt(s): "
                            f"{type(outcome.error).__name__}",
                            hint=None if idempotent or not outcome.sent else
                            "not retried: the request may have reached the API and it is not "
                            "idempotent (declare the connector's `idempotency` header)") from None
        assert outcome.response is not None
        raise_for_status(op, self.connector, outcome.response, self.connection, self.scopes)
        return CallResult(outcome.response, attempts)

    def _count(self, attempt: Attempt) -> None:
        """Tell the breaker how the API answered (5xx and network errors are failures)."""
        if self.breaker is None:
            return
        if attempt.error is not None or (attempt.status or 0) >= 500:
            self.breaker.failure(f"HTTP {attempt.status}" if attempt.status else
                                 str(attempt.error))
        else:
            self.breaker.success()

    def _plan_retry(self, op: Operation, outcome: _Outcome, attempt: Attempt,
                    idempotent: bool) -> None:
        """Decide whether and when ``outcome`` is retried (sets retry/delay/stop)."""
        response, status = outcome.response, attempt.status
        if self.breaker is not None and self.breaker.is_open:
            outcome.stop = self.breaker.error()  # no further try to a dead API
            return
        if outcome.error is not None:
            outcome.retry = idempotent or not outcome.sent
        elif status in RETRY_STATUSES:
            outcome.retry = idempotent or status == 429
        if not outcome.retry:
            return
        after = retry_after_seconds(response, self.clock) if response is not None else None
        if after is not None and after > MAX_RETRY_WAIT:
            outcome.retry = False
            message = (f"{op.ref}: HTTP {status}: the API asked to wait {human(after)} "
                       "before the next request")
            if status == 429:
                outcome.stop = BudgetExhausted(message, retry_after=after)
            return
        if attempt.number >= self.max_attempts:
            outcome.retry = False
            return
        outcome.delay = after if after is not None else backoff(attempt.number)
        if status == 429 and self.limiter is not None:
            self.limiter.hold(outcome.delay)
        attempt.next_wait = outcome.delay
        log.info("%s: attempt %d failed (%s); retrying in %.1fs", op.ref, attempt.number,
                 status or attempt.error, outcome.delay)

    def pages(self, op: Operation, call: PreparedCall, *, max_pages: int | None = None
              ) -> Iterator[tuple[Any, list[Any]]]:
        """Yield ``(body, records)`` for every page of a list operation, one at a time."""
        for page in self.iter_pages(op, call, max_pages=max_pages):
            yield page.body, page.records

    def iter_pages(self, op: Operation, call: PreparedCall, *, max_pages: int | None = None,
                   resume: Mapping[str, Any] | None = None) -> Iterator[Page]:
        """Yield :class:`~splice.pagination.Page` objects; ``page.next`` is a checkpoint that
        ``resume=`` accepts to continue from the following page."""
        yield from paginate(self, op, call, max_pages=max_pages, resume=resume)



"""`Client`: one urllib3 pool, paced by a limiter, authenticated, retried, cooled down."""

from __future__ import annotations

import json as jsonlib
import logging
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any, final
from urllib.parse import urlencode, urljoin

import attrs
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from ratekit._cancel import cancelled_by, resolve
from ratekit._clock import MONOTONIC
from ratekit._errors import (
    AuthError,
    Cancelled,
    ConnectionFailed,
    HTTPStatusError,
    ReadTimeout,
    ResponseError,
    RetryError,
)
from ratekit.http._pool import cancellable_pool
from ratekit.http._redact import check_transport, redact_url
from ratekit.retry import RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ratekit.retry import RetryBudget
    from ratekit.typing import CancelEvent, Clock, Limiter, TokenProvider

log = logging.getLogger("ratekit.http")

#: Connect and read timeouts, in seconds, unless a client is given others.
DEFAULT_TIMEOUT = urllib3.Timeout(connect=10.0, read=30.0)

#: How many characters of an error response a message shows.
_EXCERPT = 200

#: What the client's default policy retries: failed or dropped connections, and read
#: timeouts (the server may have acted on a timed-out request: derive a policy without
#: `ReadTimeout` for calls that must not be repeated).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailed, ReadTimeout)

#: The transport's exceptions, as the client raises them.
_CONNECTION_ERRORS = (NewConnectionError, ConnectTimeoutError, ProtocolError)

#: The client's default retry policy: five attempts within two minutes, retrying 429,
#: 502, 503, 504 and `TRANSIENT_ERRORS`, with ``Retry-After`` obeyed up to 5 minutes.
#: Derive variants with ``attrs.evolve(DEFAULT_RETRY, ...)`` to keep its classification.
DEFAULT_RETRY = RetryPolicy(attempts=5, deadline=120.0, retry_on=TRANSIENT_ERRORS)


@attrs.frozen
class ClientStatistics:
    """What a `Client` has done so far, as counts (see `Client.statistics`).

    Attributes:
        requests: Requests sent to the server, each attempt and each re-send after a
            401 counted, including those that failed to connect or timed out.
        throttled: Responses with status 429.
        retries: Attempts the retry policy made after a first one.
        failures: Attempts that failed to connect, were dropped or timed out.
    """

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0


class _Counts:
    """The mutable counts behind `ClientStatistics`, updated under a lock."""

    __slots__ = ("failures", "lock", "requests", "retries", "throttled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.throttled = self.retries = self.failures = 0

    def sent(self, status: int | None) -> None:
        with self.lock:
            self.requests += 1
            if status is None:
                self.failures += 1
            elif status == 429:
                self.throttled += 1

    def retried(self) -> None:
        with self.lock:
            self.retries += 1

    def snapshot(self) -> ClientStatistics:
        with self.lock:
            return ClientStatistics(self.requests, self.throttled, self.retries, self.failures)


class _PastDeadline(Exception):
    """A cooldown would hold a request past its retry policy's deadline."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class _Cooldown:
    """The instant until which no request may start, shared by all users of a limiter."""

    __slots__ = ("_lock", "_until")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = float("-inf")

    def extend(self, until: float) -> None:
        with self._lock:
            self._until = max(self._until, until)

    def wait(self, clock: Clock, cancel: CancelEvent | None, deadline: float) -> None:
        """Sleep until the cooldown ends (it may be extended meanwhile).

        Raises:
            Cancelled: If *cancel* is set before it ends.
            _PastDeadline: At once, if it ends after the instant *deadline*.
        """
        while True:
            with self._lock:
                until = self._until
            remaining = until - clock.now()
            if remaining <= 0:
                return
            if until > deadline:
                raise _PastDeadline(remaining)
            if not clock.sleep(remaining, cancel):
                raise Cancelled("the wait for the shared cooldown")


@attrs.frozen
class _Prepared:
    """A request as `Client.request` prepared it, for each of its attempts."""

    method: str
    url: str = attrs.field(repr=False)  # may hold secrets in its query
    body: bytes | str | None = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)
    cost: float
    cancel: CancelEvent | None
    deadline: float  # the instant after which no attempt starts (the retry policy's)


#: One cooldown per limiter, however many clients share it.
_COOLDOWNS: weakref.WeakKeyDictionary[object, _Cooldown] = weakref.WeakKeyDictionary()
_COOLDOWNS_LOCK = threading.Lock()


def _cooldown_for(limiter: object) -> _Cooldown:
    if limiter is None:
        return _Cooldown()
    with _COOLDOWNS_LOCK:
        try:
            cooldown = _COOLDOWNS.get(limiter)
        except TypeError:  # a limiter that cannot be weakly referenced: its own cooldown
            return _Cooldown()
        if cooldown is None:
            cooldown = _Cooldown()
            _COOLDOWNS[limiter] = cooldown
        return cooldown


def _excerpt(data: bytes) -> str:
    return data[:_EXCERPT].decode("utf-8", "replace")


@final
class Client:
    """An HTTP client for a rate-limited API, over one thread-safe `urllib3.PoolManager`.

    Each request, in turn: waits out any cooldown the server announced, acquires its
    cost from *limiter*, attaches a bearer token from *auth*, is sent with connect and
    read timeouts, and is retried by *retry* when its outcome asks for it (429, 502,
    503, 504 and failed connections, by default).

    **Shared cooldown.**  A 429, or a 503 with ``Retry-After``, pauses every request of
    every client that shares the limiter until the announced instant, not only the
    request that saw it: a server that says "wait 30 s" means the whole client.  Then
    traffic resumes at the limiter's pace.  Per-request backoff, by contrast, only
    delays the request that failed, while its siblings go on tripping the limit.

    **Cancellation.**  Each request takes a *cancel* event (by default the
    `ratekit.current_cancel`, such as the event a `ratekit.Scheduler` map hands its
    calls).  Once it is set, every wait of the request ends at once (the cooldown, the
    limiter, the sleep between attempts, another thread's token request), a request
    in flight is aborted (on a `cancellable_pool`, the default), no attempt starts,
    and `ratekit.Cancelled` is raised (`ratekit.AcquireCancelled` from the limiter).
    A cooldown never holds a request past its retry policy's *deadline*: the request
    gives up at once with `ratekit.retry.RetryError` (reason ``"deadline"``), as the
    request that saw the 429 does.

    **Auth.**  A 401 invalidates the token and the request is sent once more with a
    fresh one; a second 401 raises `ratekit.http.AuthError`.  Credentials never travel over
    plain ``http://`` except to loopback (`ratekit.http.InsecureTransport`), and URLs in
    logs and errors are shown without query values.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: no pacing.
        base_url: Prefixed to relative URLs.
        auth: Gives bearer tokens (`OAuth2Token` or any `ratekit.typing.TokenProvider`).
        retry: The retry policy (default `DEFAULT_RETRY`); ``None`` to never retry.
        budget: A `ratekit.retry.RetryBudget` shared with other clients, if any.
        pool: The `urllib3.PoolManager` to use (default: a `cancellable_pool` of its
            own); make it with `cancellable_pool` so that cancelled requests stop.
        timeout: Seconds, or a `urllib3.Timeout` (default `DEFAULT_TIMEOUT`).
        headers: Sent with every request.
        clock: Where cooldowns are read and slept (default: the limiter's, or real).
    """

    __slots__ = (
        "_auth",
        "_base_url",
        "_clock",
        "_cooldown",
        "_counts",
        "_headers",
        "_limiter",
        "_own_pool",
        "_pool",
        "_retry",
        "_timeout",
    )

    def __init__(  # noqa: PLR0913 - the settings of a client, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        base_url: str = "",
        auth: TokenProvider | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        budget: RetryBudget | None = None,
        pool: urllib3.PoolManager | None = None,
        timeout: float | urllib3.Timeout = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._limiter = limiter
        self._base_url = base_url
        self._auth = auth
        if clock is None:
            clock = getattr(limiter, "clock", None) or MONOTONIC
        self._clock: Clock = clock
        if retry is not None:
            changes: dict[str, Any] = {"clock": clock}
            if budget is not None:
                changes["budget"] = budget
            retry = attrs.evolve(retry, **changes)
        self._retry = retry
        self._own_pool = pool is None
        self._pool = cancellable_pool() if pool is None else pool
        self._timeout = (
            timeout if isinstance(timeout, urllib3.Timeout) else urllib3.Timeout(total=timeout)
        )
        self._headers = dict(headers or {})
        self._cooldown = _cooldown_for(limiter)
        self._counts = _Counts()
        if auth is not None and base_url:
            check_transport(base_url, what="a bearer token")

    def __repr__(self) -> str:
        return f"Client(base_url={redact_url(self._base_url)!r}, limiter={self._limiter!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections of the client's own pool."""
        if self._own_pool:
            self._pool.clear()

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the client was made."""
        return self._counts.snapshot()

    def cool_down(self, seconds: float) -> None:
        """Pause every request that shares this client's limiter for *seconds*."""
        self._cooldown.extend(self._clock.now() + seconds)

    def request(  # noqa: PLR0913 - the parts of a request, all keyword-only
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int | float] | None = None,
        json: object = None,
        fields: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        cost: float = 1,
        cancel: CancelEvent | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request under the limiter, auth and retry policy; return the response.

        The response is returned whatever its status, once the retry policy no longer
        retries it (its body is read).  Use `get_json` for status checks and decoding.

        Args:
            method: The HTTP method.
            url: Absolute, or relative to *base_url*.
            params: Query parameters, encoded into the URL.
            json: A value sent as a JSON body.
            fields: A form, sent form-encoded in the body.
            body: A raw body.
            headers: Extra headers for this request.
            cost: What the request acquires from the limiter.
            cancel: An event that stops the request (see the class docstring);
                ``None``: the `ratekit.current_cancel`, if any.

        Raises:
            ratekit.retry.RetryError: When the retry policy gives up (reason
                ``"deadline"`` too when a shared cooldown would outlast its deadline).
            ratekit.Cancelled: When *cancel* is set (`ratekit.AcquireCancelled` if it
                was during the wait for the limiter).
            ratekit.http.AuthError: On a second 401 with a fresh token.
            ratekit.http.ConnectionFailed: A connection failure the policy did not retry.
            ratekit.http.ReadTimeout: A read timeout the policy did not retry.
            ratekit.http.InsecureTransport: If a token would go over plain http.
        """
        full = self.url(url, params)
        send_headers = {**self._headers, **(headers or {})}
        data: bytes | str | None = body
        if json is not None:
            data = jsonlib.dumps(json)
            send_headers.setdefault("Content-Type", "application/json")
        elif fields is not None:
            data = urlencode(fields)
            send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self._auth is not None:
            check_transport(full, what="a bearer token")
        explicit = cancel is not None
        cancel = resolve(cancel)
        policy = self._retry
        deadline = math.inf
        if policy is not None and policy.deadline is not None:
            deadline = self._clock.now() + policy.deadline
        prepared = _Prepared(method, full, data, send_headers, cost, cancel, deadline)
        if policy is None:
            with cancelled_by(cancel if explicit else None):
                return self._attempt(prepared, 1)
        made = 0

        def attempt() -> urllib3.BaseHTTPResponse:
            nonlocal made
            if made:
                self._counts.retried()
            made += 1
            try:
                return self._attempt(prepared, made)
            except _PastDeadline as error:
                made -= 1  # held back: never sent
                detail = (
                    f"a shared cooldown of {error.wait:.6g} s would pass the deadline of "
                    f"{policy.deadline:g} s"
                )
                raise RetryError(made, "deadline", detail=detail) from None

        if explicit:
            return policy.call(attempt, cancel=cancel)
        return policy.call(attempt)

    def url(self, url: str, params: Mapping[str, str | int | float] | None = None) -> str:
        """The URL a request for *url* goes to: joined to *base_url*, *params* encoded.

        Shown as is, it may hold secrets in its query: log ``redact_url(client.url(...))``.
        """
        full = urljoin(self._base_url, url) if self._base_url else url
        if params:
            full = f"{full}{'&' if '?' in full else '?'}{urlencode(params)}"
        return full

    def _attempt(self, request: _Prepared, number: int) -> urllib3.BaseHTTPResponse:
        """One attempt: cooldown, limiter, auth (with one retry on 401), send, classify."""
        cancel, deadline = request.cancel, request.deadline
        for fresh in (False, True):
            self._cooldown.wait(self._clock, cancel, deadline)
            if self._limiter is not None:
                self._limiter.acquire(request.cost, cancel=cancel)
                # A cooldown announced while this request waited for the limiter holds it too.
                self._cooldown.wait(self._clock, cancel, deadline)
            token = None
            headers = request.headers
            if self._auth is not None:
                token = self._auth.token()
                headers = {**headers, "Authorization": f"Bearer {token}"}
            response = self._send(request, headers, number)
            if response.status == 401 and token is not None and self._auth is not None:
                self._auth.invalidate(token)
                if fresh:
                    raise AuthError(401, redact_url(request.url), "access token")
                continue
            observe = getattr(self._limiter, "observe", None)
            if observe is not None:  # a limiter that learns from answers (AdaptiveLimiter)
                observe(response.status, response.headers)
            self._note_cooldown(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, request: _Prepared, headers: dict[str, str], number: int
    ) -> urllib3.BaseHTTPResponse:
        """Send once; the transport's errors become ratekit's (`Cancelled` if aborted)."""
        cancel = request.cancel
        shown = f"{request.method} {redact_url(request.url)}"
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{shown} (attempt {number})")
        try:
            response = self._pool.request(
                request.method,
                request.url,
                body=request.body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as error:
            if cancel is not None and cancel.is_set():  # aborted by the cancellation
                self._counts.sent(None)
                raise Cancelled(f"{shown} (attempt {number})") from error
            if isinstance(error, ReadTimeoutError):
                self._counts.sent(None)
                raise ReadTimeout(f"{shown}: no response in time") from error
            if isinstance(error, _CONNECTION_ERRORS):
                self._counts.sent(None)
                raise ConnectionFailed(f"{shown}: {type(error).__name__}") from error
            raise
        self._counts.sent(response.status)
        log.debug("%s -> %s", shown, response.status)
        return response

    def _note_cooldown(self, response: urllib3.BaseHTTPResponse) -> None:
        """Share a server's ``Retry-After`` on 429 and 503 with every user of the limiter."""
        if response.status not in {429, 503}:
            return
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return
        if self._retry is not None:
            retry_after = min(retry_after, self._retry.max_retry_after)
        self.cool_down(retry_after)
        log.debug("cooling down for %.3f s: the server answered %s", retry_after, response.status)

    def get(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Any,  # noqa: ANN401 - the keyword arguments of `request`
    ) -> urllib3.BaseHTTPResponse:
        """`request` with ``GET``."""
        return self.request("GET", url, cancel=cancel, **kwargs)

    def post(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Any,  # noqa: ANN401 - the keyword arguments of `request`
    ) -> urllib3.BaseHTTPResponse:
        """`request` with ``POST``."""
        return self.request("POST", url, cancel=cancel, **kwargs)

    def get_json(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Any,  # noqa: ANN401 - the keyword arguments of `request`
    ) -> Any:  # noqa: ANN401 - JSON is any value
        """``GET`` *url* and decode its JSON body (``None`` for 204 No Content).

        Raises:
            ratekit.http.HTTPStatusError: If the final status is not 2xx.
            ratekit.http.ResponseError: If the body is not JSON.
        """
        return self.json("GET", url, cancel=cancel, **kwargs)

    def json(
        self,
        method: str,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Any,  # noqa: ANN401 - the keyword arguments of `request`
    ) -> Any:  # noqa: ANN401 - JSON is any value
        """`request`, then check the status and decode the JSON body, as `get_json`."""
        response = self.request(method, url, cancel=cancel, **kwargs)
        shown = redact_url(self.url(url, kwargs.get("params")))
        data = response.data
        if not 200 <= response.status < 300:
            raise HTTPStatusError(response.status, method, shown, _excerpt(data))
        if response.status == 204 or not data.strip():
            return None
        try:
            return jsonlib.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            reason = f"a body that is not JSON ({error.__class__.__name__})"
            raise ResponseError(response.status, shown, _excerpt(data), reason) from None

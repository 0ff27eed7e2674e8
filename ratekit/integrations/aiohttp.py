"""ratekit for aiohttp: client middlewares for an ``aiohttp.ClientSession``.

From:

```python
session = aiohttp.ClientSession()
```

to:

```python
session = aiohttp.ClientSession(middlewares=(RateLimitMiddleware(limiter),))
```

and every request the session sends waits out the shared cooldown, takes its turn at
*limiter*, reports its answer to a limiter that learns, and is retried by ratekit's
policy (only when repeating it is safe), as `ratekit.http.Client` does.
`BearerMiddleware` adds a bearer token from a `ratekit.typing.TokenProvider` to the
requests for the origins it is given, and nowhere else.  Needs the ``aiohttp`` extra
(``pip install 'ratekit[aiohttp]'``; client middlewares exist since aiohttp 3.12).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from contextvars import ContextVar
from typing import TYPE_CHECKING, cast

import aiohttp
import attrs
from aiohttp import hdrs
from aiohttp.payload import BytesPayload, Payload
from yarl import URL

from ratekit import _hooks
from ratekit._errors import (
    ConnectionFailed,
    InsecureTransport,
    ReadTimeout,
    RetryError,
    TLSError,
    TransportError,
)
from ratekit._redact import check_transport, redact_url
from ratekit.http._client import DEFAULT_RETRY
from ratekit.http._gate import PastDeadline, idempotent_request, in_library_terms
from ratekit.http._transport import _OS_REASONS
from ratekit.integrations._common import make_gate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ratekit.http import ClientStatistics
    from ratekit.http._gate import Gate
    from ratekit.retry import RetryBudget, RetryPolicy
    from ratekit.typing import AsyncTokenProvider, Clock, Limiter, TokenProvider

__all__ = ["BearerMiddleware", "RateLimitMiddleware"]

log = logging.getLogger("ratekit.http")


def _reason(error: BaseException | None, default: str) -> str:
    """A short, secret-free phrase for a failed connection (never the error's text)."""
    for kind, phrase in _OS_REASONS:
        if isinstance(error, kind):
            return phrase
    return default


def _tls_error(error: aiohttp.ClientSSLError, shown: str) -> TransportError:
    """A refused certificate or a failed handshake: permanent, unless it was cut short."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        problem = getattr(error.certificate_error, "verify_message", None)
        return TLSError(
            f"{shown}: the server's TLS certificate was refused: "
            f"{problem or 'certificate verify failed'}"
        )
    cause = getattr(error, "os_error", None)
    if isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)):
        # The connection ended mid-handshake: urllib3's client retries that too.
        return ConnectionFailed(f"{shown}: the TLS handshake was cut short")
    return TLSError(f"{shown}: the TLS handshake failed")


#: aiohttp's failures as ratekit's, the more specific first: its class, and what failed.
_KINDS: tuple[tuple[tuple[type[BaseException], ...], type[TransportError], str], ...] = (
    (
        (aiohttp.ServerFingerprintMismatch,),
        TLSError,
        "the server's certificate is not the pinned one",
    ),
    ((aiohttp.ConnectionTimeoutError,), ConnectionFailed, "no connection in time"),
    ((aiohttp.ClientConnectorDNSError,), ConnectionFailed, "the host name could not be resolved"),
    # SocketTimeoutError and ServerTimeoutError (sock_read), or a plain TimeoutError.
    ((TimeoutError, asyncio.TimeoutError), ReadTimeout, "no response in time"),
    (
        (aiohttp.ServerDisconnectedError,),
        ConnectionFailed,
        "the server closed the connection without answering",
    ),
    (
        (aiohttp.ClientPayloadError,),
        ConnectionFailed,
        "the connection closed before the whole answer came",
    ),
)


def _transport_error(error: BaseException, shown: str) -> TransportError | None:
    """Ratekit's name for a failure of aiohttp's transport, or ``None`` for another error.

    Classified as `ratekit.http.Client` classifies urllib3's: a refused certificate is
    `TLSError` (permanent), a connection that could not be made or was lost is
    `ConnectionFailed`, an answer that did not come in time is `ReadTimeout`.  The
    message never quotes aiohttp's, which may hold the whole URL.

    Args:
        error: What aiohttp raised.
        shown: The request as messages show it: the method and the redacted URL.
    """
    if isinstance(error, aiohttp.ClientSSLError):
        return _tls_error(error, shown)
    for kinds, named, phrase in _KINDS:
        if isinstance(error, kinds):
            return named(f"{shown}: {phrase}")
    if isinstance(error, aiohttp.ClientConnectorError):
        return ConnectionFailed(f"{shown}: {_reason(error.os_error, 'no connection')}")
    if isinstance(error, aiohttp.ClientConnectionError):  # ClientOSError and the others
        reason = _reason(error, f"the connection failed ({type(error).__name__})")
        return ConnectionFailed(f"{shown}: {reason}")
    return None


def _unsent(error: BaseException) -> bool:
    """Whether a request that raised *error* never reached the server: no connection."""
    return isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


def _replayable(request: aiohttp.ClientRequest) -> bool:
    """Whether *request*'s body can be sent again.

    A one-shot stream (an async iterator, a file that cannot seek back) is marked
    consumed by aiohttp once sent; aiohttp's own redirects refuse to resend it too.
    """
    body = request.body
    if not isinstance(body, Payload):
        return True
    consumed = getattr(body, "consumed", None)
    if consumed is None:  # aiohttp before Payload.consumed (aio-libs/aiohttp#11017)
        return isinstance(body, BytesPayload)
    return not consumed


def _for_request(policy: RetryPolicy, request: aiohttp.ClientRequest) -> RetryPolicy:
    """*policy*, retrying nothing once the request's body is spent (`_replayable`)."""

    def retries_exception(error: BaseException) -> bool:
        return _replayable(request) and policy._retries_exception(error)

    def retries_result(result: object) -> bool:
        return _replayable(request) and policy._retries_result(result)

    return attrs.evolve(policy, retry_on=retries_exception, retry_result=retries_result)


class _Pacing:
    """How one request of a `RateLimitMiddleware` is sent: each send through the gate.

    While the session's handler runs, the pacing is the context's `_PACING`, so that a
    `BearerMiddleware` placed after the rate limit sends its re-send after a 401 through
    the same gate (`resend`): the cooldown, a turn at the limiter, the answer reported.
    Each outcome is counted and reported once, by the send that got it.
    """

    __slots__ = ("_counted", "_sent", "_what", "cost", "deadline", "gate", "shown")

    def __init__(self, gate: Gate, cost: float, deadline: float, shown: str) -> None:
        self.gate = gate
        self.cost = cost
        self.deadline = deadline
        self.shown = shown
        self._counted: object = None  # the outcome counted last: a response or an error
        self._sent = 0.0
        self._what = ""

    async def send(
        self,
        request: aiohttp.ClientRequest,
        handler: aiohttp.ClientHandlerType,
        what: str,
        before: Callable[[], None] | None = None,
    ) -> aiohttp.ClientResponse:
        """Wait for the cooldown and the limiter, send, count and report the answer.

        *before* is called when the turn has come, just before the request is sent.

        Raises:
            PastDeadline: If a cooldown would hold the request past its deadline.
        """
        gate = self.gate
        await gate.admit_async(self.cost, self.deadline)
        if before is not None:
            before()
        sent = self._sent = gate.sending()
        self._what = what
        reset = _PACING.set(self)
        try:
            response = await handler(request)
        except PastDeadline:  # a re-send further in, held back: it was never sent
            raise
        except Exception as error:
            if error is not self._counted:  # not counted further in
                self._counted = error
                gate.counts.sent(None, request.method, error)
                log.debug("%s (%s) failed: %s", self.shown, what, type(error).__name__)
            raise
        finally:
            _PACING.reset(reset)
        if response is not self._counted:
            self._report(response, what, sent)
        return response

    async def resend(
        self,
        request: aiohttp.ClientRequest,
        handler: aiohttp.ClientHandlerType,
        refused: aiohttp.ClientResponse,
    ) -> aiohttp.ClientResponse:
        """Report *refused*, the answer of the send in progress, then send once more."""
        what = self._what
        self._report(refused, what, self._sent)
        return await self.send(request, handler, f"{what}, sent again after a 401")

    def unsent(self, error: Exception) -> None:
        """Note that *error* came before anything was sent (a token that could not be had)."""
        self._counted = error

    def _report(self, response: aiohttp.ClientResponse, what: str, sent: float) -> None:
        self._counted = response
        gate = self.gate
        gate.counts.sent(response.status, response.method)
        log.debug("%s (%s) -> %s", self.shown, what, response.status)
        gate.answered(response.status, response.headers, sent)


#: The pacing of the request whose handler is running, if a `RateLimitMiddleware` sends it.
_PACING: ContextVar[_Pacing | None] = ContextVar("ratekit_aiohttp_pacing", default=None)


class _Last:
    """What the last attempt of a request got: a response, an exception, or nothing yet.

    A response is kept as it is until the next attempt is sent, and released then
    (`release`), so that if a cooldown holds that attempt past the deadline, the caller
    gets this answer untouched.  A body that came whole has freed its connection
    already; only a large one still unread holds it meanwhile.
    """

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: aiohttp.ClientResponse | Exception | None = None

    def release(self) -> None:
        """Release the last response, if it is one: another attempt is being sent."""
        if isinstance(self.outcome, aiohttp.ClientResponse):
            self.outcome.release()
        self.outcome = None

    def given_up(self, error: RetryError) -> aiohttp.ClientResponse:
        """What the caller gets when the policy gives up: see `in_library_terms`."""
        outcome = self.outcome
        if error.last_result is None and error.last_exception is None and outcome is not None:
            # A cooldown held the next attempt past the deadline: the one before it.
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return cast("aiohttp.ClientResponse", in_library_terms(error))


class RateLimitMiddleware:
    """An aiohttp client middleware that sends under a ratekit limiter and retry policy.

    Give it to the session:

    ```python
    import aiohttp
    import ratekit
    from ratekit.integrations.aiohttp import RateLimitMiddleware

    limiter = ratekit.limiter("10/second")
    async with aiohttp.ClientSession(
        middlewares=(RateLimitMiddleware(limiter),),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30),
    ) as session:
        async with session.get("https://api.example.com/items") as response:
            response.raise_for_status()
    ```

    Each request, each retry and each redirect hop (aiohttp passes every hop through
    the middlewares) in turn: waits out the cooldown that a server announced to any
    user of *limiter*, takes *cost* from *limiter*, is sent by the session, and has its
    answer reported: to a limiter that learns (`ratekit.http.AdaptiveLimiter`), and,
    for a 429 or a 503 with ``Retry-After``, as a cooldown that pauses every task,
    session, `ratekit.http.Client` and integration that shares *limiter*.

    **Retries** follow *retry* (`ratekit.http.DEFAULT_RETRY`: 5 attempts in 2 minutes,
    429, 502, 503, 504, failed connections and read timeouts; ``Retry-After`` obeyed),
    for requests that can be repeated without harm: idempotent methods (``GET``,
    ``PUT``, ``DELETE``, ...) or an ``Idempotency-Key`` header.  A ``POST`` or a
    ``PATCH`` is retried only when the server cannot have acted on it: a 429, a 503
    with ``Retry-After``, a connection that could not be made.  A request whose body
    is a one-shot stream (an async iterator, a file that cannot seek back) is never
    sent twice: once it has been sent, its answer or its error is final.  The policy's
    ``retry_on`` may name ratekit's errors (`ratekit.http.ConnectionFailed`,
    `ReadTimeout`, `TLSError`) or aiohttp's own; aiohttp's errors are classified as the
    client's (a refused certificate is never retried by default).

    **What comes back** is what aiohttp gives: when the policy gives up, the last
    response, untouched (its body not read: check its status as before), or the last
    exception raised again (``aiohttp.ClientConnectorError``, ...).  A response that
    is retried is released when the next attempt is sent; if a cooldown announced
    meanwhile holds that attempt past the policy's deadline, the caller gets that
    response, untouched.  Only a request held so before any attempt raises
    `ratekit.retry.RetryError`.

    **Cancellation.**  Cancelling the task ends the waits at once (cooldown, limiter,
    sleeps between attempts) with `asyncio.CancelledError`.

    **Timeouts.**  aiohttp's ``ClientTimeout(total=...)`` spans the whole request,
    the middleware's waits included: a cooldown or a backoff longer than what is left
    of it ends the request with `asyncio.TimeoutError`.  Bound each read instead
    (``sock_connect``, ``sock_read``) and leave ``total`` unset or above the policy's
    deadline (aiohttp's default ``total`` of 300 s is above the default policy's
    120 s).  URLs are logged (``ratekit.http``, DEBUG) without their query values;
    headers never are.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: retries
            and the cooldown only.
        retry: The retry policy; ``None`` to send each request once.
        cooldown: Whether a 429 or 503 ``Retry-After`` pauses every user of *limiter*
            (``False``: only the request that saw it waits, by its policy).
        cost: What each request takes from *limiter*.
        budget: A `ratekit.retry.RetryBudget` shared with other clients, or ``None``.
        clock: Where time comes from (default: the limiter's clock).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If *cost* is not a positive finite number.
    """

    __slots__ = ("__weakref__", "_cost", "_gate", "_limiter")

    def __init__(  # noqa: PLR0913 - the settings of a middleware, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        cooldown: bool = True,
        cost: float = 1,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._gate = make_gate(
            limiter, retry, cooldown=cooldown, cost=cost, clock=clock, budget=budget
        )
        self._limiter = limiter
        self._cost = cost
        _hooks.made(self)

    def __repr__(self) -> str:
        return f"RateLimitMiddleware({self._limiter!r}, cost={self._cost!r})"

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the middleware was made."""
        return self._gate.statistics()

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send *request* under the limiter and the retry policy (see the class)."""
        gate = self._gate
        method = request.method
        shown = f"{method} {redact_url(str(request.url))}"
        idempotent = idempotent_request(method, request.headers, None)

        def kind(error: BaseException) -> BaseException | None:
            return _transport_error(error, shown)

        policy = gate.policy(idempotent=idempotent, unsent=_unsent, kind=kind)
        if policy is not None:
            policy = _for_request(policy, request)
        pacing = _Pacing(gate, self._cost, gate.deadline(), shown)
        last = _Last()

        async def attempt(number: int) -> aiohttp.ClientResponse:
            try:
                response = await pacing.send(request, handler, f"attempt {number}", last.release)
            except PastDeadline:  # held back: the last outcome stays the last
                raise
            except Exception as error:
                last.outcome = error
                raise
            last.outcome = response
            return response

        try:
            return await gate.run_async(attempt, policy)
        except RetryError as error:
            give_up = error
        except BaseException:  # cancelled, or an error that is not retried
            last.release()
            raise
        return last.given_up(give_up)


def _origins(origin: str | Iterable[str]) -> frozenset[tuple[str, str, int | None]]:
    """The (scheme, host, port) of each URL in *origin*, as aiohttp connects to it."""
    urls = [origin] if isinstance(origin, str) else list(origin)
    if not urls:
        raise ValueError("origin must name at least one URL, got none")
    found = set()
    for url in urls:
        if not isinstance(url, str):
            raise TypeError(f"origin must be a URL or URLs, got {type(url).__name__}")
        parsed = URL(url)
        if parsed.scheme not in {"http", "https"} or not parsed.raw_host:
            raise ValueError(f"origin must be http:// or https:// URLs, got {redact_url(url)!r}")
        try:
            check_transport(url, what="a bearer token")
        except InsecureTransport as error:
            raise InsecureTransport(f"origin: {error}") from None
        found.add(_origin_of(parsed))
    return frozenset(found)


def _origin_of(url: URL) -> tuple[str, str, int | None]:
    """The origin of *url* as aiohttp connects to it: scheme, host, port (or default)."""
    return (url.scheme, (url.raw_host or "").lower(), url.port)


class BearerMiddleware:
    """An aiohttp client middleware that sends a bearer token to the origins it is given.

    Give it to the session, after `RateLimitMiddleware`:

    ```python
    import aiohttp
    import ratekit
    from ratekit.http import OAuth2Token
    from ratekit.integrations.aiohttp import BearerMiddleware, RateLimitMiddleware

    limiter = ratekit.limiter("10/second")
    token = OAuth2Token(
        "https://auth.example.com/token", client_id="app", client_secret="..."
    )
    async with aiohttp.ClientSession(
        middlewares=(
            RateLimitMiddleware(limiter),
            BearerMiddleware(token, origin="https://api.example.com"),
        ),
    ) as session:
        async with session.get("https://api.example.com/items") as response:
            response.raise_for_status()
    ```

    A request to one of the origins (scheme, host and port) in *origin* gets the
    header ``Authorization: Bearer <token>``, replacing any it had; a request anywhere
    else is sent as it is, so a token never leaves for another host.  aiohttp passes
    each redirect hop through the middlewares, so a hop to another origin goes without
    the token too.  The token comes from ``await provider.token_async()`` when the
    provider has it (`ratekit.http.OAuth2Token` does: a fetch does not block the event
    loop), else from ``provider.token()``, called on the loop.

    When the server answers 401, the token is invalidated and the request is sent once
    more with a fresh one (unless its body was a one-shot stream, already spent); the
    second answer is returned, whatever it is.  That second send takes its own turn at
    the limiter in either order.  After `RateLimitMiddleware` (as above), each attempt
    gets the token when its turn has come, so a token never goes stale while a request
    waits out a cooldown; before it, the token is taken once, before every wait.

    Args:
        provider: Gives the tokens (any `ratekit.typing.TokenProvider`, or an
            `ratekit.typing.AsyncTokenProvider`).
        origin: The URL, or URLs, of the origins the token is for, such as the API's
            base URL (its path is ignored).  ``http://`` is allowed only to loopback.

    Raises:
        TypeError: If *provider* is not a token provider, or *origin* not URLs.
        ValueError: If *origin* is empty, or not ``http://`` or ``https://`` URLs.
        ratekit.http.InsecureTransport: If an origin is plain ``http://`` to a host that
            is not loopback.
    """

    __slots__ = ("_origins", "_provider")

    def __init__(
        self, provider: TokenProvider | AsyncTokenProvider, *, origin: str | Iterable[str]
    ) -> None:
        if not callable(getattr(provider, "invalidate", None)) or not (
            callable(getattr(provider, "token_async", None))
            or callable(getattr(provider, "token", None))
        ):
            raise TypeError(
                "provider must be a token provider (token() or token_async(), and "
                f"invalidate()), got {type(provider).__name__}"
            )
        self._provider = provider
        self._origins = _origins(origin)

    def __repr__(self) -> str:
        shown = sorted(
            f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
            for scheme, host, port in self._origins
        )
        return f"BearerMiddleware({type(self._provider).__name__}, origin={shown!r})"

    async def _token(self) -> str:
        fetch = getattr(self._provider, "token_async", None)
        try:
            if callable(fetch):
                return cast("str", await fetch())
            return cast("TokenProvider", self._provider).token()
        except Exception as error:
            pacing = _PACING.get()
            if pacing is not None:  # not a failed request: none was sent
                pacing.unsent(error)
            raise

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send *request*, with the token if it goes to one of the origins (see the class)."""
        if _origin_of(request.url) not in self._origins:
            return await handler(request)
        token = await self._token()
        request.headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
        response = await handler(request)
        if response.status != 401:
            return response
        self._provider.invalidate(token)
        if not _replayable(request):  # a spent stream: the 401 is the answer
            return response
        response.release()
        token = await self._token()
        request.headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
        pacing = _PACING.get()
        if pacing is None:  # before the rate limit, or without one: it paces the re-send
            return await handler(request)
        return await pacing.resend(request, handler, response)

"""ratekit for httpx: `RateLimitedTransport`, `AsyncRateLimitedTransport` and `BearerAuth`.

From:

```python
client = httpx.Client()
```

to:

```python
client = httpx.Client(transport=RateLimitedTransport(limiter))
```

and every request the client sends waits out the shared cooldown, takes its turn at
*limiter*, reports its answer to a limiter that learns, and is retried by ratekit's
policy (only when repeating it is safe), as `ratekit.http.Client` does.  The same for
``httpx.AsyncClient`` with `AsyncRateLimitedTransport`, and `BearerAuth` puts a
`ratekit.typing.TokenProvider`'s token on each request.  Needs the ``httpx`` extra
(``pip install 'ratekit[httpx]'``).
"""

from __future__ import annotations

import functools
import logging
import ssl
from typing import TYPE_CHECKING, cast, final

import attrs
import httpx

from ratekit import _hooks
from ratekit._cancel import current_cancel
from ratekit._errors import ConnectionFailed, ReadTimeout, RetryError, TLSError
from ratekit._redact import check_transport, redact_url
from ratekit._validate import positive
from ratekit.http._client import DEFAULT_RETRY
from ratekit.http._gate import idempotent_request, in_library_terms
from ratekit.http._transport import _OS_REASONS, _chain
from ratekit.integrations._common import make_gate
from ratekit.retry import RetryBudget, RetryPolicy
from ratekit.typing import Clock

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Generator,
        Iterator,
    )

    from ratekit.http import ClientStatistics
    from ratekit.http._gate import Gate
    from ratekit.typing import Limiter, TokenProvider

__all__ = ["COST_EXTENSION", "AsyncRateLimitedTransport", "BearerAuth", "RateLimitedTransport"]

log = logging.getLogger("ratekit.http")

#: The request extension that sets what one request takes from the limiter, in place of
#: the transport's *cost*: ``client.get(url, extensions={COST_EXTENSION: 5})``.
COST_EXTENSION = "ratekit.cost"

#: httpx's errors after which the request never reached the server: no connection was
#: made (a refused or timed-out connection, a failed TLS handshake), or none came free
#: in the pool.
_UNSENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

#: What each of httpx's transport errors is called in a message, most specific first.
_PHRASES: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.ConnectTimeout, "no connection in time"),
    (httpx.ReadTimeout, "no response in time"),
    (httpx.WriteTimeout, "the request could not be sent in time"),
    (httpx.PoolTimeout, "no connection of the pool came free in time"),
    (httpx.ConnectError, "the connection could not be made"),
    (httpx.RemoteProtocolError, "the server broke off the exchange"),
    (httpx.ReadError, "the connection failed while the answer was read"),
    (httpx.WriteError, "the connection failed while the request was sent"),
    (httpx.ProxyError, "the proxy failed"),
)


def _reason(error: httpx.TransportError) -> str:
    """A short phrase for what failed, free of secrets (httpx's messages may not be)."""
    if not isinstance(error, httpx.TimeoutException):  # every timeout is a TimeoutError below
        for cause in _chain(error):
            for kind, phrase in _OS_REASONS:
                if isinstance(cause, kind):
                    return phrase
    for kind, phrase in _PHRASES:
        if isinstance(error, kind):
            return phrase
    return type(error).__name__


def _certificate_problem(error: httpx.ConnectError) -> str | None:
    """Why the server's certificate was refused, if that is why no connection was made."""
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
    return None


def _kind(shown: str, error: BaseException) -> BaseException | None:
    """Ratekit's name for one of httpx's errors, for a policy written in ratekit's terms.

    `ratekit.http.TLSError` for a certificate that was refused (not retried by
    default); `ratekit.http.ConnectionFailed` for a connection that could not be made,
    broke, or was closed by the server; `ratekit.http.ReadTimeout` for a read, write or
    pool timeout; ``None`` for anything else.
    """
    if isinstance(error, httpx.ConnectError):
        problem = _certificate_problem(error)
        if problem is not None:
            return TLSError(f"{shown}: the server's TLS certificate was refused: {problem}")
    if isinstance(error, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return ReadTimeout(f"{shown}: {_reason(error)}")
    failed = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.RemoteProtocolError,
        httpx.ReadError,
        httpx.WriteError,
        httpx.ProxyError,
    )
    if isinstance(error, failed):
        return ConnectionFailed(f"{shown}: {_reason(error)}")
    return None


def _unsent(error: BaseException) -> bool:
    """Whether a request that raised *error* never reached the server."""
    return isinstance(error, _UNSENT)


def _replayable(request: httpx.Request) -> bool:
    """Whether *request*'s body is in memory, so that it can be sent again."""
    return isinstance(request.stream, httpx.ByteStream)


class _SentOnce(httpx.SyncByteStream):
    """A request body that cannot be replayed, which notes when its sending began."""

    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self.stream = stream
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield from self.stream

    def close(self) -> None:
        self.stream.close()


class _SentOnceAsync(httpx.AsyncByteStream):
    """`_SentOnce` for an asynchronous body."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self.stream = stream
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


def _sent_once(policy: RetryPolicy | None, body: _SentOnce | _SentOnceAsync) -> RetryPolicy | None:
    """*policy*, narrowed to outcomes that came before any of *body* was sent."""
    if policy is None:
        return None
    base = policy
    return attrs.evolve(
        policy,
        retry_on=lambda error: not body.started and base._retries_exception(error),
        retry_result=lambda result: not body.started and base._retries_result(result),
    )


@final
class _Exchange:
    """One request on its way through the gate: what its attempts share.

    It keeps the last response until the next attempt releases it, and the last
    outcome, for a give-up that comes before the next attempt could be sent.
    """

    __slots__ = (
        "cost",
        "deadline",
        "gate",
        "last",
        "live",
        "original",
        "policy",
        "request",
        "shown",
    )

    def __init__(
        self,
        gate: Gate,
        request: httpx.Request,
        cost: float,
        body: _SentOnce | _SentOnceAsync | None,
    ) -> None:
        self.gate = gate
        self.request = request
        self.shown = f"{request.method} {redact_url(str(request.url))}"
        self.cost = positive(COST_EXTENSION, request.extensions.get(COST_EXTENSION, cost))
        self.deadline = gate.deadline()
        idempotent = idempotent_request(request.method, request.headers, None)
        policy = gate.policy(
            idempotent=idempotent, unsent=_unsent, kind=functools.partial(_kind, self.shown)
        )
        self.original = request.stream
        if body is not None:  # sent at most once: retried only if it never started
            request.stream = body
            policy = _sent_once(policy, body)
        self.policy = policy
        self.live: httpx.Response | None = None  # the last response, not yet released
        self.last: httpx.Response | BaseException | None = None  # kept for a give-up

    def raised(self, error: BaseException, number: int) -> None:
        """Note that attempt *number* raised *error*."""
        self.gate.counts.sent(None, self.request.method, error)
        log.debug("%s (attempt %d) failed: %s", self.shown, number, type(error).__name__)
        self.last = error

    def answered(self, response: httpx.Response, number: int, sent: float) -> None:
        """Note the answer to attempt *number*, sent at the instant *sent*."""
        self.live = self.last = response
        status = response.status_code
        self.gate.counts.sent(status, self.request.method)
        log.debug("%s (attempt %d) -> %s", self.shown, number, status)
        self.gate.answered(status, response.headers, sent)

    def releasing(self) -> httpx.Response | None:
        """The response of the previous attempt, to read and close before the next one."""
        response, self.live = self.live, None
        return response

    def unreadable(self, response: httpx.Response) -> None:
        """Keep no *response* that could not be read for a give-up."""
        if self.last is response:
            self.last = None

    def outcome(self, give_up: RetryError) -> RetryError:
        """*give_up*, with the last outcome if a cooldown held the next attempt back.

        A cooldown past the deadline gives up before an attempt, so the gate's error
        has no outcome; the previous attempt's is the last one the caller should see.
        """
        if give_up.last_exception is not None or give_up.last_result is not None:
            return give_up
        last = self.last
        if last is None:
            return give_up
        if isinstance(last, BaseException):
            return RetryError(
                give_up.attempts, give_up.reason, last_exception=last, detail=give_up.detail
            )
        return RetryError(give_up.attempts, give_up.reason, last_result=last, detail=give_up.detail)

    def restore(self) -> None:
        """Give the request back its own body."""
        self.request.stream = self.original


def _check_options(
    limiter: object, needs: str, retry: object, budget: object, clock: object
) -> None:
    """Refuse, naming it, a limiter, policy, budget or clock of the wrong kind (TypeError)."""
    if limiter is not None and not callable(getattr(limiter, needs, None)):
        raise TypeError(
            f"limiter must be a ratekit limiter (with {needs}()) or None, "
            f"got {type(limiter).__name__}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a ratekit.retry.RetryPolicy or None, got {retry!r}")
    if budget is not None and not isinstance(budget, RetryBudget):
        raise TypeError(f"budget must be a ratekit.retry.RetryBudget or None, got {budget!r}")
    if clock is not None and not isinstance(clock, Clock):
        raise TypeError(f"clock must be a ratekit.typing.Clock or None, got {clock!r}")


@final
class RateLimitedTransport(httpx.BaseTransport):
    """An httpx transport that sends under a ratekit limiter and retry policy.

    Give it to an ``httpx.Client``, for every request or for the prefix of the
    rate-limited API:

    ```python
    import httpx
    import ratekit
    from ratekit.integrations.httpx import RateLimitedTransport

    limiter = ratekit.limiter("10/second")
    client = httpx.Client(transport=RateLimitedTransport(limiter))
    # or only for one API:
    client = httpx.Client(mounts={"https://api.example.com": RateLimitedTransport(limiter)})
    ```

    Each request, and each retry, redirect hop and re-send after a 401 (httpx sends
    each through the transport), in turn: waits out the cooldown that a server
    announced to any user of *limiter*, takes its cost from *limiter*, is sent by the
    inner *transport*, and has its answer reported: to a limiter that learns
    (`ratekit.http.AdaptiveLimiter`), and, for a 429 or a 503 with ``Retry-After``, as a
    cooldown that pauses every client, thread, task, `ratekit.http.Client` and
    integration that shares *limiter*.

    **Retries** follow *retry* (`ratekit.http.DEFAULT_RETRY`: 5 attempts in 2 minutes,
    429, 502, 503, 504, failed connections and read timeouts; ``Retry-After`` obeyed),
    for requests that can be repeated without harm: idempotent methods (``GET``,
    ``PUT``, ``DELETE``, ...) or an ``Idempotency-Key`` header.  A ``POST`` or a
    ``PATCH`` is retried only when the server cannot have acted on it: a 429, a 503
    with ``Retry-After``, or ``httpx.ConnectError``, ``ConnectTimeout`` or
    ``PoolTimeout`` (no connection was made).  The policy's ``retry_on`` may name
    ratekit's errors or httpx's own: ``ConnectError``, ``ConnectTimeout``,
    ``RemoteProtocolError``, ``ReadError`` and ``WriteError`` count as
    `ratekit.http.ConnectionFailed`, ``ReadTimeout``, ``WriteTimeout`` and
    ``PoolTimeout`` as `ratekit.http.ReadTimeout`, and a ``ConnectError`` from a
    certificate that was refused as `ratekit.http.TLSError` (not retried by default).

    **Bodies.**  A body given as bytes, text, a form or JSON is in memory and is sent
    again as it is.  A streamed body (an iterator, a file, a multipart upload with
    ``files=``) is sent at most once: it is retried only when none of it was sent (no
    connection could be made), and otherwise its answer is returned.  To make such a
    body retryable, read it first: ``request = client.build_request(...)``,
    ``request.read()``, ``client.send(request)``.

    **What comes back** is what httpx gives: the response the policy keeps, as the
    inner transport gave it (streaming responses still stream), or, when the policy
    gives up, the last response (check its status as before:
    ``raise_for_status()``), or the last exception raised again (``httpx.ConnectError``,
    ...).  Only a request held by a cooldown past the policy's deadline before any
    attempt raises `ratekit.retry.RetryError`.  A response that is retried is read and
    closed before the next attempt, which frees its connection.

    **Cost.**  Each request takes *cost* from the limiter, or what its
    `COST_EXTENSION` extension says: ``client.get(url, extensions={"ratekit.cost": 5})``.

    **Cancellation.**  The waits (cooldown, limiter, sleeps between attempts) end at
    once when the `ratekit.current_cancel` is set, such as the event of the
    `ratekit.Scheduler` map whose worker sends the request (`ratekit.Cancelled`).  A
    request in flight runs until httpx's own *timeout*, which does not count the waits.

    URLs are logged (``ratekit.http``, DEBUG) without their query values; headers never
    are.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: retries
            and the cooldown only.
        transport: The transport that sends (default: a new ``httpx.HTTPTransport()``;
            give one of your own for its options: ``verify``, ``http2``, ``limits``,
            ``proxy``, ...).
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

    def __init__(  # noqa: PLR0913 - the settings of a transport, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        cooldown: bool = True,
        cost: float = 1,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(
                "transport must be a sync httpx.BaseTransport such as httpx.HTTPTransport "
                f"(for httpx.AsyncClient, use AsyncRateLimitedTransport), got {transport!r}"
            )
        _check_options(limiter, "acquire", retry, budget, clock)
        self._gate = make_gate(
            limiter, retry, cooldown=cooldown, cost=cost, clock=clock, budget=budget
        )
        self._limiter = limiter
        self._cost = cost
        self._transport = httpx.HTTPTransport() if transport is None else transport
        _hooks.made(self)

    def __repr__(self) -> str:
        return f"RateLimitedTransport({self._limiter!r}, cost={self._cost!r})"

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the transport was made."""
        return self._gate.statistics()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* under the limiter and the retry policy (see the class)."""
        gate, inner = self._gate, self._transport
        cancel = current_cancel()
        body = None
        if not _replayable(request) and isinstance(request.stream, httpx.SyncByteStream):
            body = _SentOnce(request.stream)
        exchange = _Exchange(gate, request, self._cost, body)

        def attempt(number: int) -> httpx.Response:
            previous = exchange.releasing()
            if previous is not None:  # retried: read it and free its connection
                try:
                    previous.read()
                except (httpx.HTTPError, httpx.StreamError):
                    exchange.unreadable(previous)
                finally:
                    previous.close()
            gate.admit(exchange.cost, cancel, exchange.deadline)
            sent = gate.sending()
            try:
                response = inner.handle_request(request)
            except Exception as error:
                exchange.raised(error, number)
                raise
            exchange.answered(response, number, sent)
            return response

        try:
            return gate.run(attempt, exchange.policy, cancel=None, explicit=False)
        except RetryError as error:
            give_up = exchange.outcome(error)
        except BaseException:  # cancelled while a retried response waited to be released
            left = exchange.releasing()
            if left is not None:
                left.close()
            raise
        finally:
            exchange.restore()
        return cast("httpx.Response", in_library_terms(give_up))

    def close(self) -> None:
        """Close the inner transport (its connections)."""
        self._transport.close()


@final
class AsyncRateLimitedTransport(httpx.AsyncBaseTransport):
    """`RateLimitedTransport` for ``httpx.AsyncClient``: every wait is awaited.

    ```python
    import httpx
    import ratekit
    from ratekit.integrations.httpx import AsyncRateLimitedTransport

    limiter = ratekit.limiter("10/second")
    client = httpx.AsyncClient(transport=AsyncRateLimitedTransport(limiter))
    ```

    It behaves as `RateLimitedTransport` does (see there), with two differences: the
    cooldown, the turn at the limiter and the sleeps between attempts are awaited on
    the event loop, never in a thread, and they are cancelled by cancelling the task
    (``asyncio.CancelledError``) rather than by a cancel event.  Tasks and threads that
    share *limiter* share its limit and its cooldown.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: retries
            and the cooldown only.
        transport: The transport that sends (default: a new
            ``httpx.AsyncHTTPTransport()``).
        retry: The retry policy; ``None`` to send each request once.
        cooldown: Whether a 429 or 503 ``Retry-After`` pauses every user of *limiter*.
        cost: What each request takes from *limiter* (see `COST_EXTENSION`).
        budget: A `ratekit.retry.RetryBudget` shared with other clients, or ``None``.
        clock: Where time comes from (default: the limiter's clock).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If *cost* is not a positive finite number.
    """

    def __init__(  # noqa: PLR0913 - the settings of a transport, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        cooldown: bool = True,
        cost: float = 1,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                "transport must be an httpx.AsyncBaseTransport such as "
                "httpx.AsyncHTTPTransport (for httpx.Client, use RateLimitedTransport), "
                f"got {transport!r}"
            )
        _check_options(limiter, "acquire_async", retry, budget, clock)
        self._gate = make_gate(
            limiter, retry, cooldown=cooldown, cost=cost, clock=clock, budget=budget
        )
        self._limiter = limiter
        self._cost = cost
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport
        _hooks.made(self)

    def __repr__(self) -> str:
        return f"AsyncRateLimitedTransport({self._limiter!r}, cost={self._cost!r})"

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the transport was made."""
        return self._gate.statistics()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* under the limiter and the retry policy (see the class)."""
        gate, inner = self._gate, self._transport
        body = None
        if not _replayable(request) and isinstance(request.stream, httpx.AsyncByteStream):
            body = _SentOnceAsync(request.stream)
        exchange = _Exchange(gate, request, self._cost, body)

        async def attempt(number: int) -> httpx.Response:
            previous = exchange.releasing()
            if previous is not None:  # retried: read it and free its connection
                try:
                    await previous.aread()
                except (httpx.HTTPError, httpx.StreamError):
                    exchange.unreadable(previous)
                finally:
                    await previous.aclose()
            await gate.admit_async(exchange.cost, exchange.deadline)
            sent = gate.sending()
            try:
                response = await inner.handle_async_request(request)
            except Exception as error:
                exchange.raised(error, number)
                raise
            exchange.answered(response, number, sent)
            return response

        try:
            return await gate.run_async(attempt, exchange.policy)
        except RetryError as error:
            give_up = exchange.outcome(error)
        except BaseException:  # cancelled while a retried response waited to be released
            left = exchange.releasing()
            if left is not None:
                await left.aclose()
            raise
        finally:
            exchange.restore()
        return cast("httpx.Response", in_library_terms(give_up))

    async def aclose(self) -> None:
        """Close the inner transport (its connections)."""
        await self._transport.aclose()


@final
class BearerAuth(httpx.Auth):
    """httpx authentication with a bearer token from a `ratekit.typing.TokenProvider`.

    ```python
    import httpx
    from ratekit.http import OAuth2Token
    from ratekit.integrations.httpx import BearerAuth

    tokens = OAuth2Token(
        "https://login.example.com/token", client_id="my-app", client_secret="..."
    )
    client = httpx.Client(auth=BearerAuth(tokens))
    ```

    Each request gets ``Authorization: Bearer <token>``.  A 401 invalidates that token
    and the request is sent once more with a fresh one; a second 401 (the token was
    not the problem) is returned as it is.  A request whose body is streamed cannot be
    sent again: its 401 is returned, and the next request gets a fresh token.  In
    ``httpx.AsyncClient``, the token comes from ``await provider.token_async()`` when
    the provider has it (`ratekit.http.OAuth2Token` does), else from
    ``provider.token()``, which may block the event loop while it fetches.

    The token goes only where the request goes: httpx drops ``Authorization`` on a
    redirect to another origin, and the token is never sent over plain ``http://``
    except to loopback (`ratekit.http.InsecureTransport`).  Its ``repr`` shows no token.

    Args:
        provider: Gives the tokens (`ratekit.http.OAuth2Token`, or any
            `ratekit.typing.TokenProvider`).

    Raises:
        TypeError: If *provider* has no ``token()`` and ``invalidate()``.
    """

    def __init__(self, provider: TokenProvider) -> None:
        for method in ("token", "invalidate"):
            if not callable(getattr(provider, method, None)):
                raise TypeError(
                    "provider must be a ratekit.typing.TokenProvider, with token() and "
                    f"invalidate(), got {type(provider).__name__}"
                )
        self._provider = provider

    def __repr__(self) -> str:
        return f"BearerAuth({type(self._provider).__name__})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send *request* with a token; after a 401, once more with a fresh one."""
        check_transport(str(request.url), what="a bearer token")
        token = self._provider.token()
        response = yield _bearer(request, token)
        if response.status_code != 401:
            return
        self._provider.invalidate(token)
        if _replayable(request):
            token = self._provider.token()
            response = yield _bearer(request, token)
            if response.status_code == 401:
                self._provider.invalidate(token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """`auth_flow` for ``httpx.AsyncClient``, with ``token_async()`` if there is one."""
        check_transport(str(request.url), what="a bearer token")
        token = await self._token_async()
        response = yield _bearer(request, token)
        if response.status_code != 401:
            return
        self._provider.invalidate(token)
        if _replayable(request):
            token = await self._token_async()
            response = yield _bearer(request, token)
            if response.status_code == 401:
                self._provider.invalidate(token)

    async def _token_async(self) -> str:
        fetch: Callable[[], Awaitable[str]] | None = getattr(self._provider, "token_async", None)
        if fetch is None:
            return self._provider.token()
        return await fetch()


def _bearer(request: httpx.Request, token: str) -> httpx.Request:
    """*request*, with *token* in its ``Authorization`` header."""
    request.headers["Authorization"] = f"Bearer {token}"
    return request

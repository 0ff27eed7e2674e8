"""The protocols that ratekit's parts agree on.

Implement them to plug in your own clock or limiter; the type checker, not a base
class, checks that you did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
    runtime_checkable,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator

    from ._decision import Decision, LimiterStatistics, Reservation
    from .http import Client, Page

__all__ = [
    "AsyncHTTPClient",
    "AsyncPaginator",
    "AsyncTokenProvider",
    "BackoffPolicy",
    "CancelEvent",
    "Clock",
    "LearningLimiter",
    "LimitedDecorator",
    "Limiter",
    "Paginator",
    "QueryParams",
    "TokenProvider",
]

#: Query parameters of a request: each name with one value, encoded into the URL.
QueryParams: TypeAlias = Mapping[str, str | int | float]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@runtime_checkable
class CancelEvent(Protocol):
    """Something a blocked caller can be woken by: `threading.Event` fits.

    Every blocking call of ratekit takes one as ``cancel`` (see `ratekit.current_cancel`
    for the one it uses when given none).
    """

    def is_set(self) -> bool:
        """Whether cancellation has been requested."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or until *timeout* seconds pass; return whether it is set."""


@runtime_checkable
class Clock(Protocol):
    """Monotonic time and an interruptible sleep.

    `ratekit.MonotonicClock` is the real one; `ratekit.testing.FakeClock` is for tests.
    All durations are float seconds.
    """

    def now(self) -> float:
        """Monotonic seconds; only differences between readings mean anything."""

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        """Sleep for *seconds*; return ``False`` as soon as *cancel* is set, else ``True``."""

    async def sleep_async(self, seconds: float) -> None:
        """Sleep for *seconds* without blocking the event loop."""


@runtime_checkable
class Limiter(Protocol):
    """What every rate-limit strategy and composition offers.

    ``cost`` is how much of the limit one call uses (``1`` by default; any positive
    finite number).  Timeouts are float seconds; ``None`` means no limit.
    """

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if possible; never blocks.  Truthy iff granted."""

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until *cost* is granted, in arrival order.

        Raises `ratekit.AcquireTimeout` at once if the wait would exceed *timeout*, and
        `ratekit.AcquireCancelled` if *cancel* is set while waiting.
        """

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire` for asyncio; cancel it by cancelling the task."""

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Book *cost* for the earliest time it can be granted, without waiting."""

    def statistics(self) -> LimiterStatistics:
        """A frozen snapshot of the counters."""


@runtime_checkable
class LearningLimiter(Limiter, Protocol):
    """A limiter that learns its pace from the server's answers.

    `ratekit.http.Client`, the integrations and the CXone client report every answer
    to a limiter that has ``observe`` (`ratekit.http.AdaptiveLimiter`, or a composition
    with one among its members); write one to plug in a control law of your own.
    """

    def observe(
        self, status: int, headers: Mapping[str, str] | None = None, *, sent_at: float | None = None
    ) -> None:
        """Learn from one answer: its status, its headers, and when its request was sent.

        *sent_at* is on the limiter's own clock; ``None`` when it is not known.  An
        ``observe`` without *sent_at* is called without it.
        """


@runtime_checkable
class LimitedDecorator(Protocol):
    """What `ratekit.limited` returns: a decorator that puts a function under a limiter.

    Applied to a function, it returns a function with the same parameters and return
    type, which acquires before each call; applied to a coroutine function, a coroutine
    function that awaits `Limiter.acquire_async` first.  The type checker sees the
    decorated function's own signature either way.
    """

    @overload
    def __call__(
        self, fn: Callable[_P, Coroutine[Any, Any, _T]]
    ) -> Callable[_P, Coroutine[Any, Any, _T]]: ...

    @overload
    def __call__(self, fn: Callable[_P, _T]) -> Callable[_P, _T]: ...


@runtime_checkable
class BackoffPolicy(Protocol):
    """How long to wait before each retry: `ratekit.retry.ExponentialBackoff` and others.

    A policy is an immutable value; each retry loop asks it for a fresh sequence.
    """

    def delays(self) -> Iterator[float]:
        """Yield the seconds to wait before retry 1, 2, 3, ... (it may never end)."""


@runtime_checkable
class TokenProvider(Protocol):
    """Where an HTTP client gets its bearer tokens: `ratekit.http.OAuth2Token` and others.

    Implementations are thread-safe, cache their token, and never show it in ``repr``.
    One may also have a ``secrets()`` method that returns the secrets it knows (client
    secrets, passwords, its token), which a `ratekit.http.Client` then masks wherever a
    server echoes them into an error body; `ratekit.http.OAuth2Token` has one.  One may
    also have an ``async def token_async() -> str`` for asyncio programs, which does not
    block the event loop (see `AsyncTokenProvider`); `ratekit.http.OAuth2Token` has that
    too.  Neither is required.
    """

    def token(self) -> str:
        """Return a valid access token, fetching a new one if needed."""

    def invalidate(self, token: str) -> None:
        """Forget *token* (the server rejected it); the next `token` fetches another.

        Invalidating a token that was already replaced does nothing, so that many
        threads that saw the same rejection cause one fetch, not one each.
        """


@runtime_checkable
class AsyncTokenProvider(Protocol):
    """A token provider for asyncio programs: `ratekit.http.OAuth2Token` is one.

    The optional asyncio side of a `TokenProvider`: put the token that `token_async`
    returns in the ``Authorization`` header of an `httpx.AsyncClient` or
    `aiohttp.ClientSession` request, and `invalidate` it when the server answers 401.
    """

    async def token_async(self) -> str:
        """Return a valid access token without blocking the event loop.

        A cached token comes at once; a fetch runs where it does not block the loop,
        and many tasks asking at once cause one request.
        """

    def invalidate(self, token: str) -> None:
        """Forget *token* (the server rejected it); the next call fetches another."""


@runtime_checkable
class AsyncHTTPClient(Protocol):
    """An asyncio HTTP client that paginators can walk a listing with.

    `httpx.AsyncClient` and `aiohttp.ClientSession` fit as they are, with or without a
    base URL of their own (see ``pages_async`` of `ratekit.http.PageNumberPaginator`
    and the others).  The response that ``get`` gives is read by duck typing: its status
    from ``status_code`` (httpx) or ``status`` (aiohttp), its case-insensitive
    ``headers``, its final URL from ``str(response.url)``, and its body from
    ``content`` (bytes, httpx) or ``await response.read()`` (aiohttp), after which a
    response with a ``release()`` method (aiohttp) is released.
    """

    def get(
        self,
        url: str,
        *,
        params: Any = ...,  # noqa: ANN401 - each library has its own types for these
        headers: Any = ...,  # noqa: ANN401
    ) -> Awaitable[Any]:
        """Send ``GET url`` with the query *params* and the *headers*; await the response."""


@runtime_checkable
class Paginator(Protocol):
    """Walks a paged listing through a `ratekit.http.Client`.

    `ratekit.http.PageNumberPaginator`, `OffsetPaginator`, `NextLinkPaginator` and
    `CursorPaginator` all fit, so an adapter can take any of them; the first two also
    take a ``fan_out`` scheduler.
    """

    def pages(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Iterator[Page]:
        """The pages of the listing at *url*, in order, fetched as they are needed.

        Setting *cancel* stops the walk with `ratekit.Cancelled`; by default the
        `ratekit.current_cancel` does.
        """

    def records(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Iterator[object]:
        """The records of every page, in order."""


@runtime_checkable
class AsyncPaginator(Protocol):
    """Walks a paged listing from asyncio, through an `AsyncHTTPClient`.

    The four paginators of `ratekit.http` fit, as they fit `Paginator`; the page-number
    and offset ones also take a ``fan_out`` `ratekit.AsyncScheduler`.  Cancelling the
    task that iterates a walk stops it.
    """

    def pages_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Page]:
        """The pages of the listing at *url*, in order, fetched as they are needed."""

    def records_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[object]:
        """The records of every page, in order."""

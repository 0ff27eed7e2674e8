"""`RetryPolicy`: which outcomes to retry, how long to wait, and when to give up."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

import attrs

from ratekit._cancel import cancelled_by, resolve, wants_cancel
from ratekit._clock import MONOTONIC
from ratekit._errors import Cancelled, RetryBudgetExhausted, RetryError
from ratekit._validate import attribute, optional_wait, seconds, whole_number
from ratekit.retry._backoff import ExponentialBackoff
from ratekit.retry._headers import parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from ratekit.retry._budget import RetryBudget
    from ratekit.typing import BackoffPolicy, CancelEvent, Clock

P = ParamSpec("P")
T = TypeVar("T")

#: Statuses retried by default: too many requests, and the gateway and overload errors
#: that a retry can cure.  500 is left out (often a bug that a retry only repeats); add
#: it with ``retry_statuses=DEFAULT_RETRY_STATUSES | {500}``.
DEFAULT_RETRY_STATUSES = frozenset({429, 502, 503, 504})

#: Exceptions retried by default: failures to connect.  `TimeoutError` is left out: it
#: covers read timeouts of requests that may have been carried out, and ratekit's own
#: `AcquireTimeout`; add it where that is safe.
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (ConnectionError,)

#: The longest a server's ``Retry-After`` is obeyed by default, in seconds: long enough
#: for the cooldowns APIs announce after a 429, short enough not to stall a job for
#: hours on one header.  A longer value is cut to this (and the deadline still applies).
DEFAULT_MAX_RETRY_AFTER = 300.0


@attrs.frozen
class RetryEvent:
    """What a hook learns before each sleep of a retry loop.

    Attributes:
        attempt: The attempt that has just failed, counting from 1.
        delay: The seconds about to be slept before the next attempt.
        elapsed: Seconds since the first attempt started.
        exception: What that attempt raised, or ``None``.
        result: What it returned (a response asking for a retry), or ``None``.
        retry_after: The server's ``Retry-After``, in seconds and capped, if it sent one
            (it then is the delay).
    """

    attempt: int
    delay: float
    elapsed: float
    exception: BaseException | None
    result: object = attrs.field(repr=False)
    retry_after: float | None


def _status(result: object) -> int | None:
    """The HTTP status of a response-like object (``status`` or ``status_code``)."""
    for name in ("status", "status_code"):
        status = getattr(result, name, None)
        if isinstance(status, int) and not isinstance(status, bool):
            return status
    return None


def _headers(outcome: object) -> object:
    headers = getattr(outcome, "headers", None)
    if headers is None:  # an exception that carries its response (requests, httpx, ...)
        headers = getattr(getattr(outcome, "response", None), "headers", None)
    return headers


def retry_after_of(outcome: object) -> float | None:
    """Read ``Retry-After`` from a response, or from an exception that carries one.

    The default for `RetryPolicy.retry_after`: it looks for ``headers`` (a mapping, or an
    `email.message.Message` as `http.client` and `urllib` give) on the outcome, or on its
    ``response``, and parses the header with `parse_retry_after`
    (capped at its default of 6 hours; the policy caps it further at its
    ``max_retry_after``).  Header names are matched case-insensitively.
    """
    headers = _headers(outcome)
    get = getattr(headers, "get", None)
    if not callable(get):
        return None
    # HTTPHeaderDict and email.message.Message (http.client, urllib) match any case; a
    # plain dict needs a scan.
    value: object = get("Retry-After")
    if value is None and isinstance(headers, Mapping):
        value = next(
            (v for k, v in headers.items() if isinstance(k, str) and k.lower() == "retry-after"),
            None,
        )
    if not isinstance(value, (str, bytes)):
        return None
    return parse_retry_after(value)


def _hooks(value: object) -> tuple[Callable[[RetryEvent], object], ...]:
    if callable(value):
        return (value,)
    hooks = tuple(cast("tuple[Callable[[RetryEvent], object], ...]", value))
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"on_retry must be callables, got {hook!r}")
    return hooks


def _retry_on(value: object) -> tuple[type[BaseException], ...] | Callable[[BaseException], bool]:
    """One exception class means a tuple of one; a class is callable, not a predicate."""
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, tuple):
        return cast("tuple[type[BaseException], ...]", value)
    if callable(value):
        return cast("Callable[[BaseException], bool]", value)
    raise TypeError(
        f"retry_on must be an exception class, a tuple of them, or a predicate, got {value!r}"
    )


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When to retry a call, how long to wait between attempts, and when to give up.

    An immutable value: make variants with `attrs.evolve`.  Run any callable under it
    with `call` (or `call_async`), or decorate a function with `wrap`.

    An attempt is retried when it raises one of *retry_on* (an `Exception`: the loop
    never catches `KeyboardInterrupt`, `SystemExit` or `asyncio.CancelledError`, which
    always end it at once), or returns a result that
    *retry_result* accepts (by default: a response-like object whose ``status`` or
    ``status_code`` is in *retry_statuses*).  Other exceptions propagate at once,
    unchanged; other results are returned.  Before each retry the loop sleeps the
    server's ``Retry-After`` when the outcome carries one (capped at
    *max_retry_after*), and otherwise the next delay of *backoff*.  It gives up, raising
    `RetryError` (its ``__cause__`` is the last exception), when *attempts* have been
    made, or at once when the sleep would end past *deadline* (a sleep that cannot be
    followed by an attempt is not started), or when the shared *budget* has no retry
    left (`RetryBudgetExhausted`).  Each success is deposited in the budget.

    **Cancellation.**  `call` takes a *cancel* event (by default the
    `ratekit.current_cancel`): once it is set, the sleep in progress ends at once, no
    attempt starts, and `ratekit.Cancelled` is raised; `call_async` is cancelled by
    cancelling its task.  A `ratekit.Cancelled` raised by an attempt is never retried,
    whatever *retry_on* says.

    Args:
        attempts: The most attempts, the first included (at least 1).
        deadline: Seconds from the start of the first attempt after which no attempt
            starts; ``None`` for no deadline.
        backoff: The delays between attempts (default: `ExponentialBackoff()`, full
            jitter from 0.5 s up to 60 s).
        retry_on: An exception class or a tuple of them to retry, or a predicate on the
            exception.
        retry_statuses: Statuses to retry (default `DEFAULT_RETRY_STATUSES`).
        retry_result: A predicate on results, replacing the status test.
        retry_after: Reads a wait in seconds from an outcome (default `retry_after_of`);
            ``None`` to ignore ``Retry-After``.
        max_retry_after: The longest ``Retry-After`` obeyed, in seconds.
        budget: A `RetryBudget` shared with other loops, or ``None``.
        on_retry: A callable, or several, called with a `RetryEvent` before each sleep
            (for logging and metrics).  What they raise propagates.
        clock: Where time comes from and sleeps happen (default: the real clock).

    Raises:
        ValueError: If *attempts* is below 1 or a duration is negative (the message
            names which).
    """

    attempts: int = attrs.field(default=5, validator=attribute(whole_number, 1))
    deadline: float | None = attrs.field(default=None, validator=attribute(optional_wait))
    backoff: BackoffPolicy = attrs.field(factory=ExponentialBackoff)
    retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = attrs.field(
        default=DEFAULT_RETRY_ON, converter=_retry_on
    )
    retry_statuses: frozenset[int] = attrs.field(
        default=DEFAULT_RETRY_STATUSES, converter=frozenset
    )
    retry_result: Callable[[Any], bool] | None = None
    retry_after: Callable[[object], float | None] | None = retry_after_of
    max_retry_after: float = attrs.field(
        default=DEFAULT_MAX_RETRY_AFTER,
        validator=attribute(seconds),
    )
    budget: RetryBudget | None = None
    on_retry: tuple[Callable[[RetryEvent], object], ...] = attrs.field(default=(), converter=_hooks)
    clock: Clock | None = attrs.field(default=None, eq=False)

    def _retries_exception(self, exception: BaseException) -> bool:
        retry_on = self.retry_on
        if isinstance(retry_on, tuple):
            return isinstance(exception, retry_on)
        return bool(retry_on(exception))

    def _retries_result(self, result: object) -> bool:
        if self.retry_result is not None:
            return bool(self.retry_result(result))
        return _status(result) in self.retry_statuses

    def _start(self) -> _Loop:
        return _Loop(self, MONOTONIC if self.clock is None else self.clock)

    @overload
    def call(self, fn: Callable[[], T], /, *, cancel: CancelEvent | None = None) -> T: ...

    @overload
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)`` under this policy; return its first good result.

        Args:
            fn: What to call.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments, except ``cancel``, which is the policy's:
                an event that, once set, ends the sleep in progress at once and starts
                no other attempt (`ratekit.Cancelled`); by default the
                `ratekit.current_cancel`.  *fn* runs with it as its
                `ratekit.current_cancel`, so that ratekit calls inside it (a limiter,
                a client) stop too; it is passed on to *fn* as well when *fn* has a
                ``cancel`` parameter.

        Raises:
            RetryError: When the policy gives up; ``__cause__`` is the last exception.
            ratekit.Cancelled: When *cancel* is set before an attempt or during a sleep;
                ``__cause__`` is what the last attempt raised, if it raised.
            BaseException: Whatever *fn* raises that is not retried, unchanged.
        """
        cancel: CancelEvent | None = None
        explicit = "cancel" in kwargs
        if explicit:
            cancel = kwargs["cancel"]
            if not wants_cancel(fn, first_is_item=False):
                del kwargs["cancel"]
        cancel = resolve(cancel)
        loop = self._start()
        with cancelled_by(cancel if explicit else None):
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(loop.cancelled_what()) from loop.last_exception
                try:
                    result = fn(*args, **kwargs)
                except Exception as exception:  # noqa: BLE001 - classified, then re-raised
                    delay = loop.failed(exception, None)
                else:
                    if not self._retries_result(result):
                        loop.succeeded()
                        return result
                    delay = loop.failed(None, result)
                if not loop.clock.sleep(delay, cancel):
                    raise Cancelled(loop.cancelled_what()) from loop.last_exception

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` for coroutine functions: awaits *fn* and sleeps without blocking the loop.

        Cancelling the task cancels the sleep or the attempt in progress, as usual
        (`asyncio.CancelledError`); there is no *cancel* argument.
        """
        loop = self._start()
        while True:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exception:  # noqa: BLE001 - classified, then re-raised
                delay = loop.failed(exception, None)
            else:
                if not self._retries_result(result):
                    loop.succeeded()
                    return result
                delay = loop.failed(None, result)
            await loop.clock.sleep_async(delay)

    @overload
    def wrap(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def wrap(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def wrap(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate *fn* so that every call runs under this policy (coroutines too)."""
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):

            @functools.wraps(fn)
            async def retried_async(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401
                return await self.call_async(fn, *args, **kwargs)

            return retried_async

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401
            return self.call(fn, *args, **kwargs)

        return retried


class _Loop:
    """One run of a retry loop: counts attempts and decides on each failure."""

    __slots__ = ("_delays", "_policy", "_start", "attempt", "clock", "last_exception")

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._policy = policy
        self.clock = clock
        self._start = clock.now()
        self._delays: Iterator[float] = policy.backoff.delays()
        self.attempt = 1
        #: What the last attempt raised, if it raised (the cause of a cancellation).
        self.last_exception: BaseException | None = None

    def succeeded(self) -> None:
        if self._policy.budget is not None:
            self._policy.budget.deposit()

    def cancelled_what(self) -> str:
        """What a cancellation stopped, for `Cancelled`'s message."""
        made = self.attempt - 1
        if made == 0:
            return "the retry loop, before its first attempt,"
        return f"the retry loop, after {made} attempt{'' if made == 1 else 's'},"

    def failed(self, exception: BaseException | None, result: object) -> float:
        """Return the delay before the next attempt, or raise (the policy gives up)."""
        policy = self._policy
        self.last_exception = exception
        if exception is not None and (
            isinstance(exception, Cancelled) or not policy._retries_exception(exception)
        ):
            raise exception
        attempt = self.attempt

        def give_up(kind: type[RetryError], reason: str, detail: str) -> RetryError:
            return kind(
                attempt, reason, last_exception=exception, last_result=result, detail=detail
            )

        if attempt >= policy.attempts:
            raise give_up(RetryError, "attempts", "no attempts left") from exception
        backoff = next(self._delays)
        retry_after = None
        if policy.retry_after is not None:
            retry_after = policy.retry_after(result if exception is None else exception)
            if retry_after is not None:
                retry_after = min(retry_after, policy.max_retry_after)
        delay = backoff if retry_after is None else retry_after
        elapsed = self.clock.now() - self._start
        if policy.deadline is not None and elapsed + delay > policy.deadline:
            detail = f"a wait of {delay:.6g} s would pass the deadline of {policy.deadline:g} s"
            raise give_up(RetryError, "deadline", detail) from exception
        if policy.budget is not None and not policy.budget.try_withdraw():
            raise give_up(
                RetryBudgetExhausted, "budget", "the retry budget is spent"
            ) from exception
        event = RetryEvent(attempt, delay, elapsed, exception, result, retry_after)
        for hook in policy.on_retry:
            hook(event)
        self.attempt = attempt + 1
        return delay

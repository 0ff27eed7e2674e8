"""`with limiter:`, `async with limiter:` and `limited`: a limiter where calls already are.

A limiter guards a call by acquiring before it; nothing is held during the call, so
nothing is released after it (a rate limit, not a semaphore).  The block form and the
decorator are the same one acquire, written where the call is.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ._validate import optional_wait, positive

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

    from .typing import CancelEvent, LimitedDecorator, Limiter

P = ParamSpec("P")
T = TypeVar("T")


class _Acquires(Protocol):
    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: CancelEvent | None = None
    ) -> None: ...

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None: ...


class Acquiring:
    """``with limiter:`` and ``async with limiter:``: acquire a cost of 1 on entry.

    The block starts once the limiter grants it, in arrival order, as `acquire` would
    (cancelled by the `ratekit.current_cancel`, if any; an ``async with`` by cancelling
    its task).  Nothing is held while the block runs and nothing is given back when
    it ends, even by an exception: the call it guards counts as made.  For another
    cost, a timeout or an explicit cancel event, call `acquire` before the block.
    """

    __slots__ = ()

    def __enter__(self: _Acquires) -> None:
        self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        return None

    # Not coroutines of their own: ``async with`` awaits what they return, so handing
    # over `acquire_async`'s coroutine, and a finished awaitable on the way out, saves
    # two coroutines per block.
    def __aenter__(self: _Acquires) -> Awaitable[None]:
        return self.acquire_async()

    def __aexit__(self, *exc_info: object) -> _Done:
        return DONE


class _Done:
    """An awaitable that is already finished, with ``None``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        # A C iterator that ends at once: cheaper than a generator, and await takes any.
        return iter(())  # type: ignore[return-value]


#: Awaited at the end of every ``async with limiter:`` block.
DONE = _Done()


def limited(
    limiter: Limiter,
    cost: float = 1,
    *,
    timeout: float | None = None,
    cancel: CancelEvent | None = None,
) -> LimitedDecorator:
    """Decorate a function so that each call first acquires *cost* from *limiter*.

    Plain functions call `acquire` (``acquire(cost, timeout=timeout, cancel=cancel)``);
    coroutine functions await `acquire_async` (``acquire_async(cost, timeout=timeout)``)
    and are cancelled by cancelling their task.  The wrapper keeps the function's name,
    docstring and signature (`functools.wraps`), and its type for the type checker:

    ```python
    @ratekit.limited(per_second)
    def fetch(url: str) -> bytes: ...

    @ratekit.limited(per_second, cost=2, timeout=30)
    async def upload(path: str) -> None: ...
    ```

    The limiter may be shared with other code: a decorated function and a ``with
    limiter:`` block elsewhere draw on the same limit.

    Args:
        limiter: Any `ratekit.typing.Limiter`.
        cost: What each call acquires.
        timeout: The longest a call waits for its turn; past it, `ratekit.AcquireTimeout`
            is raised at once and the function is not called (``None``: no limit).
        cancel: An event that ends the wait of a plain function's call
            (`ratekit.AcquireCancelled`); ``None``: the `ratekit.current_cancel`.

    Raises:
        TypeError: If *limiter* has no ``acquire``, or *cancel* is given for a coroutine
            function (cancel its task instead).
        ValueError: If *cost* is not a positive finite number or *timeout* is negative
            (the message names which).
    """
    if not callable(getattr(limiter, "acquire", None)):
        raise TypeError(f"limiter must be a ratekit.typing.Limiter, got {limiter!r}")
    positive("cost", cost)
    optional_wait("timeout", timeout)
    return _Decorator(limiter, cost, timeout, cancel)


class _Decorator:
    """What `limited` returns: a `ratekit.typing.LimitedDecorator`."""

    __slots__ = ("_cancel", "_cost", "_limiter", "_timeout")

    def __init__(
        self,
        limiter: Limiter,
        cost: float,
        timeout: float | None,
        cancel: CancelEvent | None,
    ) -> None:
        self._limiter = limiter
        self._cost = cost
        self._timeout = timeout
        self._cancel = cancel

    def __repr__(self) -> str:
        return f"limited({self._limiter!r}, cost={self._cost!r}, timeout={self._timeout!r})"

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        limiter, cost, timeout, cancel = self._limiter, self._cost, self._timeout, self._cancel
        if inspect.iscoroutinefunction(fn):
            if cancel is not None:
                raise TypeError(
                    f"cancel= applies to plain functions; {fn.__qualname__} is a coroutine "
                    "function: cancel its task instead"
                )
            acquire_async = limiter.acquire_async

            @functools.wraps(fn)
            async def limited_async(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401
                await acquire_async(cost, timeout=timeout)
                return await fn(*args, **kwargs)

            return limited_async

        acquire = limiter.acquire

        @functools.wraps(fn)
        def limited_call(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401
            acquire(cost, timeout=timeout, cancel=cancel)
            return fn(*args, **kwargs)

        return limited_call

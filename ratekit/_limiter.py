"""What every strategy shares: blocking, async and reserving on top of eight primitives.

A strategy subclasses `LimiterBase` and implements, for a caller that holds ``_lock``:

- ``_delay_locked(cost, now)``: the exact seconds until *cost* can be granted (``0.0``
  if now), without changing anything;
- ``_take_locked(cost, now, at)``: book *cost* at time ``at >= now + delay``, and
  return a token (never ``None``) that describes the booking;
- ``_grant_locked(cost, now)``: take *cost* now, when its delay is zero, with no token
  (the grant of `try_acquire`, which is never withdrawn; cheaper than a booking);
- ``_available_locked(cost, now)``: whether the delay is zero, cheaper than computing it;
- ``_refund_locked(token, now)``: withdraw a booking whose time has not come, giving
  back what can be given back without breaking the guarantee;
- ``_level_locked(now)``: what could be granted now, for statistics;
- ``_rest_at_locked(now)``: the first instant from which the limiter, left alone, is
  indistinguishable from a fresh one (what `Keyed` needs to forget it safely);
- ``_slot(cost)``: the time the limiter's rate takes to earn *cost* (``cost / rate``, or
  ``cost * window / limit``): the furthest a composition may book it ahead of its own
  need (see `ratekit.all_of`);

and the ``capacity`` property.  A strategy whose queue is bounded sets ``_max_delay``.

Availability must be monotone from the earliest instant a strategy reports: once a cost
could be booked at ``t``, it could be booked at any later instant too.  Every strategy
serves bookings in time order (a booking is never placed before an earlier one), which
is what makes the window strategies monotone; a composition relies on it to find the
earliest common instant in one pass.  Everything else (`acquire` with its timeout, cancellation
and arrival order, `acquire_async`, `reserve`, statistics) is written once here.  A
composition of limiters implements the same primitives over its members, holding their
locks, which is why they are split this finely.

Bookings are made at reservation time, before sleeping: whoever asks first gets the first
slot, a large cost is not overtaken by small ones, and a waiter sleeps exactly once, for
exactly its delay, without holding the lock.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import _hooks
from ._cancel import _CURRENT
from ._clock import MONOTONIC
from ._decision import GRANTED, Decision, LimiterStatistics, Reservation
from ._errors import AcquireCancelled, AcquireTimeout, QueueFull
from ._limited import DONE, Acquiring
from ._tally import Tally, check_cost, sleep_until, sleep_until_async
from ._validate import optional_wait

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable
    from types import TracebackType

    from .typing import CancelEvent, Clock


#: Relative allowance on a queue bound (``_max_delay``), for the float rounding of a sum
#: of slots: ``0.1 + 0.1 + 0.1`` slightly exceeds ``0.3``, and must not refuse the third
#: waiter of a queue of three.
_QUEUE_SLACK = 1e-9

#: Float steps `exact_delay` takes before it suspects a bad estimate and starts doubling.
_STEPS = 8


def exact_delay(now: float, estimate: float, granted_at: Callable[[float], bool]) -> float:
    """Return the delay after which ``granted_at`` holds, from a closed-form *estimate*.

    Call it only when ``granted_at(now)`` is false.  *estimate* is the instant at which
    the cost becomes available, computed in closed form; *granted_at* is the very test
    that `try_acquire` evaluates, and must be monotone in time.  Rounding can put the
    estimate a float step short; it is then moved up one step at a time until the test
    grants it, so that asking again after the returned delay is always granted, while
    the estimate itself is kept whenever it is granted (round rates give round delays).
    """
    inf = math.inf
    at = estimate if estimate > now else math.nextafter(now, inf)
    for _ in range(_STEPS):
        if granted_at(at):
            break
        at = math.nextafter(at, inf)
    else:  # pragma: no cover - an estimate this far off would be a bug; stay correct anyway
        step = math.ulp(at)
        while not granted_at(at):
            at, step = at + step, step * 2
    delay = at - now
    while not granted_at(now + delay):  # ``now + (at - now)`` may round below ``at``
        delay = math.nextafter(delay, inf)
    return delay


def first_instant(now: float, estimate: float, granted_at: Callable[[float], bool]) -> float:
    """Return the first instant from *now* on at which ``granted_at`` holds (see `exact_delay`)."""
    if granted_at(now):
        return now
    return now + exact_delay(now, estimate, granted_at)


class Undoable(Protocol):
    """A booking that can be undone exactly: the state key it left, and its time."""

    @property
    def after(self) -> Hashable: ...

    @property
    def at(self) -> float: ...


_B = TypeVar("_B", bound=Undoable)


def withdraw(
    withdrawn: list[_B],
    booking: _B,
    now: float,
    state: Callable[[], Hashable],
    undo: Callable[[_B], None],
) -> list[_B]:
    """Withdraw *booking*, undoing every withdrawn booking that has become the latest.

    Only an exact undo is safe: a strategy's state cannot tell what later bookings
    relied on, so giving a cost back while later bookings stand could over-admit.  A
    booking is undone when the state is still the one it left (``state() ==
    booking.after``); otherwise it waits in the returned list until the bookings after
    it are undone too, in whatever order that happens.  Bookings whose time has come
    were used, or withdrawn unused: either way nothing can still be waiting on them, so
    they are dropped.
    """
    pending = [entry for entry in withdrawn if entry.at >= now]
    pending.append(booking)
    undone = True
    while undone:
        undone = False
        current = state()
        for index, entry in enumerate(pending):
            if entry.after == current:
                undo(entry)
                del pending[index]
                undone = True
                break
    return pending


class LockLike(Protocol):
    """What `LimiterBase` needs of its lock: `threading.Lock` or a set of them."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> bool: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class LimiterBase(Acquiring):
    """The base class of every ratekit strategy and composition.

    It holds what they share: blocking and async waits, reservations and statistics,
    all written once on top of a few primitives each strategy implements.  It is public
    for type annotations; to plug in a limiter of your own, implement the
    `ratekit.typing.Limiter` protocol instead (`all_of` and `Keyed` take any such
    limiter, and compose strategies exactly through these primitives).
    """

    __slots__ = (
        "__weakref__",  # so that clients can share state per limiter (ratekit.http)
        "_clock",
        "_lock",
        "_max_delay",
        "_now",
        "_on_wait",
        "_tally",
    )

    def __init__(self, clock: Clock | None) -> None:
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._now: Callable[[], float] = self._clock.now
        self._lock: LockLike = threading.Lock()
        # The longest a booking may wait: a queue bound (`LeakyBucket`), else unbounded.
        self._max_delay = math.inf
        self._tally = Tally()
        # Called with the seconds of each finished wait (`ratekit.telemetry`), or None.
        self._on_wait: Callable[[float], None] | None = None
        _hooks.made(self)

    # -- the primitives a strategy implements (called with ``_lock`` held) --------------

    @property
    def capacity(self) -> float:
        """The most that can ever be granted at once; larger costs raise `CostTooLarge`."""
        raise NotImplementedError

    def _delay_locked(self, cost: float, now: float) -> float:
        raise NotImplementedError

    def _take_locked(self, cost: float, now: float, at: float) -> object:
        raise NotImplementedError

    def _grant_locked(self, cost: float, now: float) -> None:
        raise NotImplementedError

    def _available_locked(self, cost: float, now: float) -> bool:
        raise NotImplementedError

    def _refund_locked(self, token: object, now: float) -> None:
        raise NotImplementedError

    def _level_locked(self, now: float) -> float:
        raise NotImplementedError

    def _rest_at_locked(self, now: float) -> float:
        raise NotImplementedError

    def _slot(self, cost: float) -> float:
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock this limiter reads and sleeps on."""
        return self._clock

    def _check_cost(self, cost: object) -> float:
        return check_cost(cost, self.capacity)

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if possible, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until the same cost could be granted.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        cost = self._check_cost(cost)
        with self._lock:
            now = self._now()
            delay = self._delay_locked(cost, now)
            if delay <= 0:  # pragma: no cover - each strategy grants on its own fast path
                self._grant_locked(cost, now)
                self._tally.granted += 1
                return GRANTED
            self._tally.denied += 1
        return Decision(False, delay)

    def _book_locked(self, cost: float, limit: float) -> tuple[float, float, object]:
        """Book *cost* if its delay is at most *limit*: return (at, delay, token or None)."""
        now = self._now()
        delay = self._delay_locked(cost, now)
        if delay > limit:
            return now + delay, delay, None
        at = now + delay
        return at, delay, self._take_locked(cost, now, at)

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Book *cost* for the earliest time it can be granted, without waiting.

        The caller should act after ``reservation.delay`` seconds, or cancel.  If that
        delay would exceed *max_wait*, nothing is booked and ``reservation.ok`` is false.

        Raises:
            ValueError: If *cost* is not a positive finite number or *max_wait* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        limit = min(optional_wait("max_wait", max_wait), self._max_delay * (1 + _QUEUE_SLACK))
        cost = self._check_cost(cost)
        with self._lock:
            at, delay, token = self._book_locked(cost, limit)
            if token is None:
                self._tally.denied += 1
                return Reservation(False, delay, cost, at)
            self._tally.granted += 1
        return Reservation(True, delay, cost, at, owner=self, token=token)

    def _cancel_reservation(self, reservation: Reservation) -> bool:
        with self._lock:
            if reservation.cancelled:
                return False
            if not self._give_back_locked(reservation._token, reservation.ready_at):
                return False
            reservation._mark(cancelled=True)
            self._tally.withdraw()
            return True

    def _give_back_locked(self, token: object, at: float) -> bool:
        """Withdraw a booking whose time has not come; one whose time came counts as used."""
        now = self._now()
        if at < now:
            return False
        self._refund_locked(token, now)
        self._tally.cancelled += 1
        return True

    def _book(
        self, cost: object, timeout: float | None, cancel: CancelEvent | None
    ) -> tuple[float, float, object]:
        """Book a blocking call; return its cost, when to wake (``-inf``: granted), its token."""
        limit = optional_wait("timeout", timeout)
        value = self._check_cost(cost)
        with self._lock:
            if cancel is not None and cancel.is_set():
                self._tally.cancelled += 1
                raise AcquireCancelled(value)
            queue = self._max_delay * (1 + _QUEUE_SLACK)
            at, delay, token = self._book_locked(value, min(limit, queue))
            if token is None:
                self._tally.timed_out += 1
                if delay > queue:
                    raise QueueFull(value, self._max_delay, delay)
                raise AcquireTimeout(value, limit, delay)
            if delay <= 0:
                self._tally.granted += 1
                return value, -math.inf, token
            self._tally.waiting += 1
            return value, at, token

    def _book_or_defer(
        self, cost: object, timeout: float | None, cancel: CancelEvent | None
    ) -> tuple[float, float, object | None]:
        """`_book`; or, with no token, the instant to book again at, nothing booked.

        A strategy always books.  A composition defers a booking that would hold one of
        its members far ahead of that member's own need (see `ratekit.all_of`).
        """
        return self._book(cost, timeout, cancel)

    def _finish_wait(self, token: object, at: float, started: float, *, granted: bool) -> bool:
        """Account for the end of a wait; return whether the booking was used."""
        with self._lock:
            # Woken, or interrupted only after its time came: the booking stands.
            used = granted or not self._give_back_locked(token, at)
            waited = self._tally.end_wait(started, self._now(), used=used)
        if self._on_wait is not None:  # out of the lock: a metrics SDK takes its own
            self._on_wait(waited)
        return used

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until *cost* is granted; callers are served in arrival order.

        The exact delay is computed once and slept once, without holding the lock.

        Args:
            cost: How much of the limit to use.
            timeout: The longest acceptable wait in seconds (``None``: no limit).
            cancel: An event (such as `threading.Event`) that aborts the wait when set;
                ``None``: the `ratekit.current_cancel`, if any.

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*; nothing is
                consumed and nothing is slept.  Its subclass `QueueFull` if the
                limiter's queue is full (`LeakyBucket`).
            AcquireCancelled: If *cancel* is set before or during the wait; what the wait
                had booked is given back.  A cancellation noticed only after the
                booking fell due is too late: the call returns, granted.
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        value, at, token = self._book(cost, timeout, cancel)
        self._wait(value, at, token, cancel)

    def _wait(
        self,
        value: float,
        at: float,
        token: object,
        cancel: CancelEvent | None,
        since: float | None = None,
    ) -> None:
        """Sleep until a booking made by `_book` is due (``at == -inf``: it already is).

        *since*: when the caller's wait began, if it waited before booking (a
        composition that deferred): the whole wait is then counted as one.
        """
        if at == -math.inf:
            if since is not None:
                self._count_wait(since)
            return
        if cancel is None:  # read only here: a grant without a wait never needs it
            cancel = _CURRENT.get()
        started = self._now()
        woke = False
        try:
            woke = sleep_until(self._clock, at, cancel, started)
        finally:
            began = started if since is None else since
            used = self._finish_wait(token, at, began, granted=woke)
        if not used:
            raise AcquireCancelled(value)

    def _count_wait(self, since: float) -> None:
        """Count a wait that began at *since* and ends now, with nothing booked."""
        with self._lock:
            waited = max(self._now() - since, 0.0)
            self._tally.waited += waited
        if self._on_wait is not None:
            self._on_wait(waited)

    # ``with limiter:`` and ``async with limiter:``: `acquire` and `acquire_async` of a
    # cost of 1, written out so that a block costs no more than the call it stands for.
    # A subclass that overrides `acquire` or `acquire_async` overrides these too (a test
    # checks it).

    def __enter__(self) -> None:
        value, at, token = self._book(1, None, None)
        self._wait(value, at, token, None)

    def __aenter__(self) -> Awaitable[None]:
        _, at, token = self._book(1, None, None)
        if at == -math.inf:  # granted at once: nothing to await
            return DONE
        return self._wait_async(at, token)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Wait without blocking the event loop until *cost* is granted.

        The same as `acquire`; to cancel, cancel the task: what the wait had booked is
        given back and `asyncio.CancelledError` propagates as usual.

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout* (`QueueFull` if
                the limiter's queue is full).
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        _, at, token = self._book(cost, timeout, None)
        await self._wait_async(at, token)

    async def _wait_async(self, at: float, token: object, since: float | None = None) -> None:
        """`_wait` for asyncio."""
        if at == -math.inf:
            if since is not None:
                self._count_wait(since)
            return
        started = self._now()
        woke = False
        try:
            await sleep_until_async(self._clock, at, started)
            woke = True
        finally:
            self._finish_wait(token, at, started if since is None else since, granted=woke)

    def statistics(self) -> LimiterStatistics:
        """Return a frozen snapshot of the counters and the current level."""
        with self._lock:
            return self._tally.snapshot(self._level_locked(self._now()), self.capacity)

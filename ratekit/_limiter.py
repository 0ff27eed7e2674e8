"""What every strategy shares: blocking, async and reserving on top of four primitives.

A strategy subclasses `LimiterBase` and implements, for a caller that holds ``_lock``:

- ``_delay_locked(cost, now)``: the exact seconds until *cost* can be granted (``0.0``
  if now), without changing anything;
- ``_take_locked(cost, now, at)``: book *cost* at time ``at >= now + delay``, and
  return a token (never ``None``) that describes the booking;
- ``_refund_locked(token, now)``: withdraw a booking whose time has not come, giving
  back what can be given back without breaking the guarantee;
- ``_level_locked(now)``: what could be granted now, for statistics;

and the ``capacity`` property.  Everything else (`acquire` with its timeout, cancellation
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
from typing import TYPE_CHECKING

from ._clock import MonotonicClock
from ._decision import GRANTED, Decision, LimiterStatistics, Reservation
from ._errors import AcquireCancelled, AcquireTimeout, CostTooLarge
from ._validate import optional_wait, positive

if TYPE_CHECKING:
    from collections.abc import Callable

    from .typing import CancelEvent, Clock


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


class LimiterBase:
    """The shared machinery of every strategy (not public: use the strategies)."""

    __slots__ = (
        "_cancelled",
        "_clock",
        "_denied",
        "_granted",
        "_lock",
        "_now",
        "_timed_out",
        "_waited",
        "_waiting",
    )

    def __init__(self, clock: Clock | None) -> None:
        self._clock: Clock = MonotonicClock() if clock is None else clock
        self._now: Callable[[], float] = self._clock.now
        self._lock = threading.Lock()
        self._granted = 0
        self._denied = 0
        self._timed_out = 0
        self._cancelled = 0
        self._waiting = 0
        self._waited = 0.0

    # -- the primitives a strategy implements (called with ``_lock`` held) --------------

    @property
    def capacity(self) -> float:
        """The most that can ever be granted at once; larger costs raise `CostTooLarge`."""
        raise NotImplementedError

    def _delay_locked(self, cost: float, now: float) -> float:
        raise NotImplementedError

    def _take_locked(self, cost: float, now: float, at: float) -> object:
        raise NotImplementedError

    def _refund_locked(self, token: object, now: float) -> None:
        raise NotImplementedError

    def _level_locked(self, now: float) -> float:
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock this limiter reads and sleeps on."""
        return self._clock

    def _check_cost(self, cost: object) -> float:
        value = positive("cost", cost)
        if value > self.capacity:
            raise CostTooLarge(value, self.capacity)
        return value

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
            _, delay, token = self._book_locked(cost, 0.0)
            if token is not None:
                self._granted += 1
                return GRANTED
            self._denied += 1
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
        limit = optional_wait("max_wait", max_wait)
        cost = self._check_cost(cost)
        with self._lock:
            at, delay, token = self._book_locked(cost, limit)
            if token is None:
                self._denied += 1
                return Reservation(False, delay, cost, at)
            self._granted += 1
        return Reservation(True, delay, cost, at, owner=self, token=token)

    def _cancel_reservation(self, reservation: Reservation) -> bool:
        with self._lock:
            if reservation.cancelled:
                return False
            if not self._give_back_locked(reservation._token, reservation.ready_at):
                return False
            object.__setattr__(reservation, "_cancelled", True)  # frozen to everyone else
            self._granted -= 1
            return True

    def _give_back_locked(self, token: object, at: float) -> bool:
        """Withdraw a booking whose time has not come; one whose time came counts as used."""
        now = self._now()
        if at < now:
            return False
        self._refund_locked(token, now)
        self._cancelled += 1
        return True

    def _book(
        self, cost: object, timeout: float | None, cancel: CancelEvent | None
    ) -> tuple[float, float, object]:
        """Book a blocking call; return its cost, when to wake (``-inf``: granted), its token."""
        limit = optional_wait("timeout", timeout)
        value = self._check_cost(cost)
        with self._lock:
            if cancel is not None and cancel.is_set():
                self._cancelled += 1
                raise AcquireCancelled(value)
            at, delay, token = self._book_locked(value, limit)
            if token is None:
                self._timed_out += 1
                raise AcquireTimeout(value, limit, delay)
            if delay <= 0:
                self._granted += 1
                return value, -math.inf, token
            self._waiting += 1
            return value, at, token

    def _finish_wait(self, token: object, at: float, started: float, *, granted: bool) -> None:
        with self._lock:
            self._waiting -= 1
            self._waited += max(self._now() - started, 0.0)
            if granted:
                self._granted += 1
            elif not self._give_back_locked(token, at):
                # Interrupted after its time came: the booking was used after all.
                self._granted += 1

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
            cancel: An event (such as `threading.Event`) that aborts the wait when set.

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*; nothing is
                consumed and nothing is slept.
            AcquireCancelled: If *cancel* is set before or during the wait; what the wait
                had booked is given back.
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        value, at, token = self._book(cost, timeout, cancel)
        if at == -math.inf:
            return
        clock = self._clock
        started = self._now()
        woke = False
        try:
            remaining = at - started
            # Sleep once; the loop only absorbs a wake-up that comes a hair early.
            while remaining > 0:
                if not clock.sleep(remaining, cancel):
                    break
                remaining = at - self._now()
            else:
                woke = True
        finally:
            self._finish_wait(token, at, started, granted=woke)
        if not woke:
            raise AcquireCancelled(value)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Wait without blocking the event loop until *cost* is granted.

        The same as `acquire`; to cancel, cancel the task: what the wait had booked is
        given back and `asyncio.CancelledError` propagates as usual.

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*.
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        _, at, token = self._book(cost, timeout, None)
        if at == -math.inf:
            return
        clock = self._clock
        started = self._now()
        woke = False
        try:
            remaining = at - started
            while remaining > 0:
                await clock.sleep_async(remaining)
                remaining = at - self._now()
            woke = True
        finally:
            self._finish_wait(token, at, started, granted=woke)

    def statistics(self) -> LimiterStatistics:
        """Return a frozen snapshot of the counters and the current level."""
        with self._lock:
            return LimiterStatistics(
                granted=self._granted,
                denied=self._denied,
                timed_out=self._timed_out,
                cancelled=self._cancelled,
                waiting=self._waiting,
                waited=self._waited,
                level=self._level_locked(self._now()),
                capacity=self.capacity,
            )

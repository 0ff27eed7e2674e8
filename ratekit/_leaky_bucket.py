"""`LeakyBucket`: a steady drip, no bursts, and a bounded queue of waiters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast, final

import attrs

from ._decision import GRANTED, Decision
from ._limiter import LimiterBase, exact_delay, withdraw
from ._rate import Rate, to_rate
from ._validate import positive

if TYPE_CHECKING:
    from .typing import Clock


class DripBase(LimiterBase):
    """Grants spaced ``cost / rate`` apart: what `LeakyBucket` and adaptive pacing share.

    The state is the instant the previous grant's drip ends (the next free slot),
    ``_tat``; ``_per_second`` is the rate, which a subclass may change as it goes.
    """

    __slots__ = ("_per_second", "_tat", "_withdrawn")

    def __init__(self, per_second: float, clock: Clock | None) -> None:
        super().__init__(clock)
        self._per_second = per_second
        # The instant the previous grant's drip ends: the next free slot.
        self._tat = -math.inf
        self._withdrawn: list[_Booking] = []

    def _delay_locked(self, cost: float, now: float) -> float:  # noqa: ARG002 - any cost waits alike
        tat = self._tat
        if now >= tat:
            return 0.0
        return exact_delay(now, tat, lambda when: when >= tat)

    def _take_locked(self, cost: float, now: float, at: float) -> _Booking:  # noqa: ARG002
        before = self._tat
        self._tat = max(at, before) + cost / self._per_second
        return _Booking(before, self._tat, at)

    def _available_locked(self, cost: float, now: float) -> bool:  # noqa: ARG002
        return now >= self._tat

    def _grant_locked(self, cost: float, now: float) -> None:
        self._tat = now + cost / self._per_second

    def _refund_locked(self, token: object, now: float) -> None:
        self._withdrawn = withdraw(
            self._withdrawn, cast("_Booking", token), now, self._state, self._undo
        )

    def _state(self) -> float:
        return self._tat

    def _undo(self, booking: _Booking) -> None:
        self._tat = booking.before

    def _slot(self, cost: float) -> float:
        return cost / self._per_second

    def _rest_at_locked(self, now: float) -> float:
        return max(now, self._tat)


@final
class LeakyBucket(DripBase):
    """A leaky bucket as a queue: grants drip out at *rate*, one after another.

    Guarantee: after a grant of cost ``c`` at instant ``t``, the next grant comes no
    earlier than ``t + c / rate``.  There are no bursts: the grants in any interval of
    length ``t`` sum to at most ``rate * t`` plus the cost of the first.  A non-blocking
    call is granted only when its slot is now.  Blocking callers and reservations
    queue for the next slots, in arrival order, with at most *capacity* (in cost units)
    waiting ahead of a newcomer: one that would wait longer than
    ``capacity / rate`` is refused at once (`QueueFull` from `acquire`, a refused
    `Reservation` from `reserve`) rather than queued without bound.

    Use it when the server wants requests evenly spaced; use `TokenBucket` when it
    tolerates bursts.  Its ``statistics().level`` is the room left in the queue:
    *capacity* less the work queued ahead of a newcomer, in cost units; a newcomer is
    queued while it is not negative.

    The state is the instant the queue drains, so every call costs O(1) time and the
    bucket O(1) memory.

    Args:
        rate: A `Rate`, a number of units per second, or text for `Rate.parse`
            (``"90/minute"``).
        capacity: How much may wait in the queue, in cost units; also the largest cost.
        clock: Where time comes from (default: `MonotonicClock`).

    Raises:
        ValueError: If the rate or the capacity is not a positive finite number (the
            message names which).
    """

    __slots__ = ("_capacity", "_rate")

    def __init__(
        self, rate: Rate | float | str, capacity: float, *, clock: Clock | None = None
    ) -> None:
        self._rate = to_rate(rate, "rate")
        super().__init__(self._rate.per_second, clock)
        self._capacity = positive("capacity", capacity)
        self._max_delay = self._capacity / self._per_second

    @property
    def rate(self) -> Rate:
        """The drip rate."""
        return self._rate

    @property
    def capacity(self) -> float:
        """How much may wait in the queue, and the largest cost that can be granted."""
        return self._capacity

    def __repr__(self) -> str:
        return f"LeakyBucket(rate={self._rate!r}, capacity={self._capacity!r})"

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if its slot is now, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until the next free slot.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds the capacity.
        """
        lock = self._lock
        lock.acquire()
        try:
            now = self._now()
            if now >= self._tat and self._capacity >= cost > 0:
                self._tat = now + cost / self._per_second
                self._tally.granted += 1
                return GRANTED
        except TypeError:
            pass
        finally:
            lock.release()
        return LimiterBase.try_acquire(self, cost)

    def _level_locked(self, now: float) -> float:
        # The room left in the queue, in cost units.
        return self._capacity - max(self._tat - now, 0.0) * self._per_second


@attrs.frozen
class _Booking:
    """What withdrawing one booking needs: the drain instant before and after it."""

    before: float
    after: float
    at: float

"""`TokenBucket`: bursts up to a capacity, refilled at a steady rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast, final

import attrs

from ._decision import GRANTED, Decision
from ._limiter import LimiterBase, exact_delay, first_instant, withdraw
from ._rate import Rate, to_rate
from ._validate import positive

if TYPE_CHECKING:
    from .typing import Clock


@final
class TokenBucket(LimiterBase):
    """A token bucket: up to *capacity* at once, refilled at *rate*.

    Guarantee: the grants in any interval of length ``t`` sum to at most
    ``capacity + rate * t``.  The bucket starts full.

    The state is one level and the instant it refers to, so every call costs O(1)
    time and the bucket O(1) memory.  Waiting callers are booked in arrival order
    (the level goes below zero while they wait); a non-blocking call is never granted
    ahead of them.

    Args:
        rate: A `Rate`, a number of units per second, or text for `Rate.parse`
            (``"90/minute"``).
        capacity: The largest burst, and the largest cost that can ever be granted.
        clock: Where time comes from (default: `MonotonicClock`).

    Raises:
        ValueError: If the rate or the capacity is not a positive finite number (the
            message names which).
    """

    __slots__ = ("_capacity", "_level", "_per_second", "_rate", "_stamp", "_withdrawn")

    def __init__(
        self, rate: Rate | float | str, capacity: float, *, clock: Clock | None = None
    ) -> None:
        super().__init__(clock)
        self._rate = to_rate(rate, "rate")
        self._per_second = self._rate.per_second
        self._capacity = positive("capacity", capacity)
        # The level at instant ``_stamp``, counted in cost units so that whole costs stay
        # exact.  ``_stamp`` lies in the future while waits are booked; the level at an
        # earlier instant is then projected backwards (below zero), which is what keeps
        # later callers queued behind the booked ones.
        self._level = self._capacity
        self._stamp = self._now()
        # Withdrawn bookings waiting for the ones booked after them (see _refund_locked).
        self._withdrawn: list[_Booking] = []

    @property
    def rate(self) -> Rate:
        """The refill rate."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The largest burst, and the largest cost that can ever be granted."""
        return self._capacity

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate!r}, capacity={self._capacity!r})"

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the bucket holds it, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until the same cost could be granted.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds the capacity.
        """
        # The hot path, written out.  A bad cost (zero, negative, NaN, above capacity, not
        # a number) never passes the test below; the general path then names the problem.
        # Explicit acquire/release is measurably cheaper here than a `with` block.
        lock = self._lock
        lock.acquire()
        try:
            now = self._now()
            level = self._level + (now - self._stamp) * self._per_second
            capacity = self._capacity
            if level > capacity:  # noqa: PLR1730 - min() costs a call on the hot path
                level = capacity
            if level >= cost > 0:
                self._level = level - cost
                self._stamp = now
                self._tally.granted += 1
                return GRANTED
        except TypeError:
            pass
        finally:
            lock.release()
        return LimiterBase.try_acquire(self, cost)

    def _level_locked(self, now: float) -> float:
        level = self._level + (now - self._stamp) * self._per_second
        return min(level, self._capacity)

    def _delay_locked(self, cost: float, now: float) -> float:
        level, stamp, per_second = self._level, self._stamp, self._per_second
        if min(level + (now - stamp) * per_second, self._capacity) >= cost:
            return 0.0
        # The arithmetic of try_acquire; the cap is moot there since cost <= capacity.
        return exact_delay(
            now,
            stamp + (cost - level) / per_second,
            lambda when: level + (when - stamp) * per_second >= cost,
        )

    def _take_locked(self, cost: float, now: float, at: float) -> _Booking:  # noqa: ARG002
        before = (self._level, self._stamp)
        if at >= self._stamp:
            self._level = self._level_locked(at) - cost
            self._stamp = at
        else:
            # Booked before a later booking: take it from every instant from here on.
            self._level -= cost
        return _Booking(before, (self._level, self._stamp), at)

    def _available_locked(self, cost: float, now: float) -> bool:
        # The cap is moot: cost never exceeds the capacity.
        return self._level + (now - self._stamp) * self._per_second >= cost

    def _grant_locked(self, cost: float, now: float) -> None:
        self._level = self._level_locked(now) - cost
        self._stamp = now

    def _refund_locked(self, token: object, now: float) -> None:
        # The single level cannot tell whether the bucket refilled to capacity between
        # this booking and later ones, so only an exact undo is safe (see `withdraw`).
        self._withdrawn = withdraw(
            self._withdrawn, cast("_Booking", token), now, self._state, self._undo
        )

    def _state(self) -> tuple[float, float]:
        return self._level, self._stamp

    def _undo(self, booking: _Booking) -> None:
        self._level, self._stamp = booking.before

    def _slot(self, cost: float) -> float:
        return cost / self._per_second

    def _rest_at_locked(self, now: float) -> float:
        level, stamp, per_second, capacity = (
            self._level,
            self._stamp,
            self._per_second,
            self._capacity,
        )
        return first_instant(
            now,
            stamp + (capacity - level) / per_second,
            lambda when: when >= stamp and level + (when - stamp) * per_second >= capacity,
        )


@attrs.frozen
class _Booking:
    """What withdrawing one booking needs: the state before and after it, and its time."""

    before: tuple[float, float]
    after: tuple[float, float]
    at: float

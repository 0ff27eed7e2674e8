"""Bookkeeping written once: counters, the cost check and the sleep until a booking is due.

Every limiter (the strategies and compositions, the Redis and pyrate-limiter limiters)
counts its calls in a `Tally` and snapshots it as `LimiterStatistics`; `Prioritized`
counts what happens in its queue in one and adds it to the wrapped limiter's snapshot.
Every store counts its round trips in a `StoreTally`.  The owner
changes a tally under its own lock, so a tally takes none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._decision import LimiterStatistics
from ._errors import CostTooLarge
from ._validate import positive

if TYPE_CHECKING:
    from .typing import CancelEvent, Clock


@attrs.define(eq=False)
class Tally:
    """A limiter's counters, as `LimiterStatistics` reports them."""

    granted: int = 0
    denied: int = 0
    timed_out: int = 0
    cancelled: int = 0
    waiting: int = 0
    waited: float = 0.0
    # Reservations withdrawn after being granted, so that granted + withdrawn only grows.
    withdrawn: int = 0

    def withdraw(self) -> None:
        """Count a granted reservation as withdrawn (taken off ``granted``)."""
        self.granted -= 1
        self.withdrawn += 1

    def end_wait(self, started: float, now: float, *, used: bool) -> float:
        """Count the end of a wait that began at *started*; return the seconds waited."""
        self.waiting -= 1
        waited = max(now - started, 0.0)
        self.waited += waited
        if used:
            self.granted += 1
        return waited

    def snapshot(self, level: float, capacity: float) -> LimiterStatistics:
        """The frozen `LimiterStatistics` of these counters."""
        return LimiterStatistics(
            granted=self.granted,
            denied=self.denied,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            waiting=self.waiting,
            waited=self.waited,
            level=level,
            capacity=capacity,
            withdrawn=self.withdrawn,
        )


@attrs.define(eq=False)
class StoreTally:
    """A shared store's counters, as `ratekit.telemetry` reports them."""

    round_trips: int = 0
    unavailable: int = 0  # calls that raised `StoreUnavailable`
    fail_open: int = 0  # calls granted without the store, which was down

    def as_tuple(self) -> tuple[int, int, int]:
        """The three counts, in the order above."""
        return self.round_trips, self.unavailable, self.fail_open


def check_cost(cost: object, capacity: float) -> float:
    """*cost* as a float, if it is positive, finite and at most *capacity*.

    Raises:
        ValueError: If *cost* is not a positive finite number.
        CostTooLarge: If *cost* exceeds *capacity*.
    """
    value = positive("cost", cost)
    if value > capacity:
        raise CostTooLarge(value, capacity)
    return value


def sleep_until(clock: Clock, at: float, cancel: CancelEvent | None, now: float) -> bool:
    """Sleep on *clock* from *now* until *at*; ``False`` if *cancel* was set first."""
    remaining = at - now
    # Sleep once; the loop only absorbs a wake-up that comes a hair early.
    while remaining > 0:
        if not clock.sleep(remaining, cancel):
            return False
        remaining = at - clock.now()
    return True


async def sleep_until_async(clock: Clock, at: float, now: float) -> None:
    """`sleep_until` for asyncio: cancel the task to stop it."""
    remaining = at - now
    while remaining > 0:
        await clock.sleep_async(remaining)
        remaining = at - clock.now()

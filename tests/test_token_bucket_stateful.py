"""A stateful hypothesis machine driving a TokenBucket on a FakeClock.

Any sequence of advances, non-blocking calls, reservations, cancellations and blocking
acquires keeps the bucket's guarantee, answers with exact ``retry_after`` values, and
changes nothing when it denies.
"""

from __future__ import annotations

import itertools

from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)
from strategies import EPSILON, JUST_BEFORE, advances, capacities, rates, worst_interval_excess

from ratekit import AcquireTimeout, Rate, Reservation, TokenBucket
from ratekit.testing import FakeClock

fractions = st.floats(min_value=0.01, max_value=1.0)


class TokenBucketMachine(RuleBasedStateMachine):
    """Drives one bucket and records every grant with the instant it takes effect."""

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.bucket = TokenBucket(1.0, 1.0, clock=self.clock)
        self.capacity = 1.0
        self.speed = 1.0
        self.grants: dict[int, tuple[float, float]] = {}
        self.keys = itertools.count(1)
        self.denial: tuple[float, float, float] | None = None  # (cost, start, retry_after)

    @initialize(rate=rates, capacity=capacities)
    def setup(self, rate: Rate, capacity: float) -> None:
        self.bucket = TokenBucket(rate, capacity, clock=self.clock)
        self.capacity = capacity
        self.speed = rate.per_second

    def _grant(self, instant: float, cost: float) -> int:
        key = next(self.keys)
        self.grants[key] = (instant, cost)
        self.denial = None  # something was consumed: an earlier retry_after no longer holds
        return key

    @rule(seconds=advances)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(fraction=fractions)
    def try_acquire(self, fraction: float) -> None:
        cost = fraction * self.capacity
        level = self.bucket.statistics().level
        decision = self.bucket.try_acquire(cost)
        if decision:
            assert decision.retry_after == 0.0
            self._grant(self.clock.now(), cost)
            return
        assert decision.retry_after > 0
        # A denial changes nothing: the same question gets the same answer.
        assert self.bucket.statistics().level == level
        assert self.bucket.try_acquire(cost).retry_after == decision.retry_after
        self.denial = (cost, self.clock.now(), decision.retry_after)

    @precondition(lambda self: self.denial is not None)
    @rule()
    def retry_after_is_exact(self) -> None:
        assert self.denial is not None
        cost, start, retry_after = self.denial
        assume(self.clock.now() == start)
        if retry_after > JUST_BEFORE:
            self.clock.advance_to(start + retry_after - JUST_BEFORE)
            assert not self.bucket.try_acquire(cost)
        self.clock.advance_to(start + retry_after)
        assert self.bucket.try_acquire(cost)
        self._grant(self.clock.now(), cost)

    @rule(target=reservations, fraction=fractions, max_wait=st.none() | advances)
    def reserve(self, fraction: float, max_wait: float | None) -> tuple[Reservation, int]:
        cost = fraction * self.capacity
        reservation = self.bucket.reserve(cost, max_wait=max_wait)
        if not reservation.ok:
            assert max_wait is not None
            assert reservation.delay > max_wait
            return reservation, 0
        assert reservation.ready_at == self.clock.now() + reservation.delay
        return reservation, self._grant(reservation.ready_at, cost)

    @rule(entry=consumes(reservations))
    def cancel(self, entry: tuple[Reservation, int]) -> None:
        reservation, key = entry
        due = reservation.ready_at < self.clock.now()
        returned = reservation.cancel()
        if not reservation.ok or due:
            assert not returned
            return
        assert returned
        del self.grants[key]  # it will never be used
        self.denial = None

    @rule(fraction=fractions, timeout=st.none() | advances)
    def acquire(self, fraction: float, timeout: float | None) -> None:
        cost = fraction * self.capacity
        start = self.clock.now()
        level = self.bucket.statistics().level
        try:
            self.bucket.acquire(cost, timeout=timeout)
        except AcquireTimeout as error:
            assert timeout is not None
            assert error.retry_after > timeout  # noqa: PT017 - a rule, not a test function
            assert self.clock.now() == start  # raised at once: nothing slept
            assert self.bucket.statistics().level == level  # nothing consumed
            return
        self._grant(self.clock.now(), cost)

    @invariant()
    def guarantee_holds(self) -> None:
        excess = worst_interval_excess(list(self.grants.values()), self.capacity, self.speed)
        assert excess <= EPSILON * max(1.0, self.capacity)

    @invariant()
    def level_never_above_capacity(self) -> None:
        stats = self.bucket.statistics()
        assert stats.level <= self.capacity
        assert stats.waiting == 0


TestTokenBucketMachine = TokenBucketMachine.TestCase

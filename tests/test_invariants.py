"""The invariant suite, run on every strategy and on compositions (see specs.py).

A stateful machine drives each kind of limiter on a FakeClock through any sequence of
advances, non-blocking calls, reservations, cancellations and blocking acquires, and
checks after every step that the grants keep the guarantee that docs/concepts.md states
for that kind, that ``retry_after`` is exact, and that a denial changes nothing.
"""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import assume, given
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
from specs import SPECS, Built, Spec
from strategies import JUST_BEFORE, advances

from ratekit import AcquireTimeout, QueueFull, Reservation, TokenBucket
from ratekit.testing import FakeClock

fractions = st.floats(min_value=0.01, max_value=1.0)


class LimiterMachine(RuleBasedStateMachine):
    """Drives one limiter and records every grant with the instant it takes effect."""

    spec: Spec
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.built = Built(TokenBucket(1.0, 1.0, clock=self.clock), lambda _: True)
        self.grants: dict[int, tuple[float, float]] = {}
        self.keys = itertools.count(1)
        self.denial: tuple[float, float, float] | None = None  # (cost, start, retry_after)

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        self.built = data.draw(self.spec.builders)(self.clock)

    @property
    def limiter(self):
        return self.built.limiter

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
        cost = fraction * self.limiter.capacity
        level = self.limiter.statistics().level
        decision = self.limiter.try_acquire(cost)
        if decision:
            assert decision.retry_after == 0.0
            self._grant(self.clock.now(), cost)
            return
        assert decision.retry_after > 0
        # A denial changes nothing: the same question gets the same answer.
        assert self.limiter.statistics().level == level
        assert self.limiter.try_acquire(cost).retry_after == decision.retry_after
        self.denial = (cost, self.clock.now(), decision.retry_after)

    @precondition(lambda self: self.denial is not None)
    @rule()
    def retry_after_is_exact(self) -> None:
        assert self.denial is not None
        cost, start, retry_after = self.denial
        assume(self.clock.now() == start)
        if retry_after > JUST_BEFORE:
            self.clock.advance_to(start + retry_after - JUST_BEFORE)
            assert not self.limiter.try_acquire(cost)
        self.clock.advance_to(start + retry_after)
        assert self.limiter.try_acquire(cost)
        self._grant(self.clock.now(), cost)

    @rule(target=reservations, fraction=fractions, max_wait=st.none() | advances)
    def reserve(self, fraction: float, max_wait: float | None) -> tuple[Reservation, int]:
        cost = fraction * self.limiter.capacity
        reservation = self.limiter.reserve(cost, max_wait=max_wait)
        if not reservation.ok:
            bound = min(math.inf if max_wait is None else max_wait, self.built.queue_bound)
            assert reservation.delay > bound
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
        cost = fraction * self.limiter.capacity
        start = self.clock.now()
        level = self.limiter.statistics().level
        try:
            self.limiter.acquire(cost, timeout=timeout)
        except AcquireTimeout as error:
            if isinstance(error, QueueFull):
                assert error.retry_after > self.built.queue_bound  # noqa: PT017
            else:
                assert timeout is not None
                assert error.retry_after > timeout  # noqa: PT017 - a rule, not a test
            assert self.clock.now() == start  # raised at once: nothing slept
            assert self.limiter.statistics().level == level  # nothing consumed
            return
        self._grant(self.clock.now(), cost)

    @invariant()
    def guarantee_holds(self) -> None:
        assert self.built.holds(list(self.grants.values()))

    @invariant()
    def level_never_above_capacity(self) -> None:
        stats = self.limiter.statistics()
        assert stats.level <= self.limiter.capacity
        assert stats.waiting == 0


def _machine_test(spec: Spec) -> type:
    """The unittest case hypothesis makes of a machine bound to *spec*."""
    name = "Test" + "".join(
        part.capitalize() if part.islower() else part
        for part in re.findall(r"[A-Za-z]+", spec.name)
    )
    machine = type(f"{name}Machine", (LimiterMachine,), {"spec": spec})
    case = machine.TestCase
    case.__name__ = case.__qualname__ = name
    return case


for _spec in SPECS:
    _case = _machine_test(_spec)
    globals()[_case.__name__] = _case
del _spec, _case


# -- properties over every spec -----------------------------------------------------------

every_spec = pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])

#: One step of a random workload: an advance, a cost (as a fraction of capacity), and
#: whether to book it (reserve) rather than ask without waiting.
steps = st.lists(st.tuples(advances, fractions, st.booleans()), max_size=30)


def _drive(
    built: Built, clock: FakeClock, workload: list[tuple[float, float, bool]]
) -> list[object]:
    """Run *workload*; return what each step answered."""
    answers: list[object] = []
    capacity = built.limiter.capacity
    for seconds, fraction, book in workload:
        clock.advance(seconds)
        if book:
            reservation = built.limiter.reserve(fraction * capacity)
            answers.append((reservation.ok, reservation.ready_at))
        else:
            answers.append(built.limiter.try_acquire(fraction * capacity))
    return answers


@every_spec
@given(data=st.data(), workload=steps, extra=st.lists(fractions, min_size=1, max_size=5))
def test_retry_after_is_exact(spec, data, workload, extra):
    """Denied with retry_after r: granted at now + r, denied a nanosecond before."""
    clock = FakeClock()
    built = data.draw(spec.builders)(clock)
    _drive(built, clock, workload)
    capacity = built.limiter.capacity
    decision = None
    cost = capacity
    for fraction in [*extra, 1.0]:
        cost = fraction * capacity
        decision = built.limiter.try_acquire(cost)
        if not decision:
            break
    assert decision is not None
    assume(not decision)
    start = clock.now()
    if decision.retry_after > JUST_BEFORE:
        clock.advance_to(start + decision.retry_after - JUST_BEFORE)
        assert not built.limiter.try_acquire(cost)
    clock.advance_to(start + decision.retry_after)
    assert built.limiter.try_acquire(cost)


@every_spec
@given(data=st.data(), before=steps, after=steps, denied=st.lists(fractions, max_size=4))
def test_denied_calls_change_nothing(spec, data, before, after, denied):
    """Two twins answer alike, though one of them was also asked (and denied) more."""
    builder = data.draw(spec.builders)
    clocks = FakeClock(), FakeClock()
    twins = builder(clocks[0]), builder(clocks[1])
    assert _drive(twins[0], clocks[0], before) == _drive(twins[1], clocks[1], before)
    capacity = twins[0].limiter.capacity
    for fraction in denied:
        decision = twins[0].limiter.try_acquire(fraction * capacity)
        if decision:
            # Granted, so not a denial: grant the twin the same to keep them equal.
            assert twins[1].limiter.try_acquire(fraction * capacity)
            continue
        refused = twins[0].limiter.reserve(fraction * capacity, max_wait=decision.retry_after / 2)
        assert not refused.ok
        with pytest.raises(AcquireTimeout):
            twins[0].limiter.acquire(fraction * capacity, timeout=decision.retry_after / 2)
    assert _drive(twins[0], clocks[0], after) == _drive(twins[1], clocks[1], after)
    members = getattr(twins[0].limiter, "members", (twins[0].limiter,))
    twin_members = getattr(twins[1].limiter, "members", (twins[1].limiter,))
    for member, twin in zip(members, twin_members, strict=True):
        assert member.statistics().level == twin.statistics().level


@every_spec
@given(data=st.data(), workload=steps)
def test_cancelling_the_latest_reservation_restores_every_answer(spec, data, workload):
    """Reserving then cancelling, with nothing in between, is as if nothing was asked."""
    builder = data.draw(spec.builders)
    clocks = FakeClock(), FakeClock()
    twins = builder(clocks[0]), builder(clocks[1])
    half = len(workload) // 2
    _drive(twins[0], clocks[0], workload[:half])
    _drive(twins[1], clocks[1], workload[:half])
    reservation = twins[0].limiter.reserve(data.draw(fractions) * twins[0].limiter.capacity)
    assume(reservation.ok)
    assert reservation.cancel()
    assert _drive(twins[0], clocks[0], workload[half:]) == _drive(
        twins[1], clocks[1], workload[half:]
    )

"""Every strategy and composition under test, with the guarantee each must keep.

A `Spec` draws a limiter's parameters, builds it on a given clock, and checks a record
of grants (``(instant, cost)`` pairs) against the guarantee that docs/concepts.md states
for it ("Choosing a strategy").  The invariant suites are parametrised over `SPECS`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from hypothesis import strategies as st
from strategies import EPSILON, capacities, rates, worst_interval_excess

from ratekit import FixedWindow, LeakyBucket, SlidingWindow, TokenBucket, all_of, limiter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ratekit._limiter import LimiterBase

from ratekit.testing import FakeClock

Grants = list[tuple[float, float]]

#: Window lengths users write: sub-second, a second, a minute, an hour.
windows = st.one_of(
    st.sampled_from([0.1, 1.0, 60.0, 3600.0]),
    st.floats(min_value=0.01, max_value=100.0),
)


def _slack(size: float) -> float:
    return EPSILON * max(1.0, size)


def token_bucket_holds(grants: Grants, rate: float, capacity: float) -> bool:
    """Grants in any interval of length t sum to at most capacity + rate * t."""
    return worst_interval_excess(grants, capacity, rate) <= _slack(capacity)


def leaky_bucket_holds(grants: Grants, rate: float) -> bool:
    """After a grant of cost c at t, the next grant comes no earlier than t + c / rate."""
    ordered = sorted(grants)
    return all(
        later - earlier >= cost / rate - EPSILON
        for (earlier, cost), (later, _) in itertools.pairwise(ordered)
    )


def sliding_window_holds(grants: Grants, limit: float, window: float) -> bool:
    """Every half-open window [s, s + window) holds at most *limit*.

    The worst window ends at a grant, so for each grant the grants still counted at its
    instant (those after ``instant - window``, the limiter's own test) are summed.
    """
    ordered = sorted(grants)
    for end, _ in ordered:
        edge = end - window
        total = math.fsum(cost for instant, cost in ordered if edge < instant <= end)
        if total > limit + _slack(limit):
            return False
    return True


def fixed_window_holds(grants: Grants, limit: float, window: float) -> bool:
    """Each aligned window [k * window, (k + 1) * window) holds at most *limit*."""
    totals: defaultdict[int, list[float]] = defaultdict(list)
    for instant, cost in grants:
        totals[math.floor(instant / window)].append(cost)
    return all(math.fsum(costs) <= limit + _slack(limit) for costs in totals.values())


@attrs.frozen
class Built:
    """A limiter under test and the check of its guarantee."""

    limiter: LimiterBase
    holds: Callable[[Grants], bool]
    #: The longest a booking may wait before the queue refuses it (LeakyBucket).
    queue_bound: float = math.inf


Builder = Callable[[FakeClock], Built]


@attrs.frozen
class Spec:
    """A kind of limiter: how to draw its parameters and build it."""

    name: str
    builders: st.SearchStrategy[Builder]

    def __repr__(self) -> str:
        return self.name


def _token_bucket(rate: object, capacity: float) -> Builder:
    def build(clock: FakeClock) -> Built:
        bucket = TokenBucket(rate, capacity, clock=clock)  # type: ignore[arg-type]
        speed = bucket.rate.per_second
        return Built(bucket, lambda grants: token_bucket_holds(grants, speed, capacity))

    return build


def _leaky_bucket(rate: object, capacity: float) -> Builder:
    def build(clock: FakeClock) -> Built:
        bucket = LeakyBucket(rate, capacity, clock=clock)  # type: ignore[arg-type]
        speed = bucket.rate.per_second
        return Built(
            bucket,
            lambda grants: leaky_bucket_holds(grants, speed),
            queue_bound=capacity / speed,
        )

    return build


def _sliding_window(limit: float, window: float) -> Builder:
    def build(clock: FakeClock) -> Built:
        return Built(
            SlidingWindow(limit, window, clock=clock),
            lambda grants: sliding_window_holds(grants, limit, window),
        )

    return build


def _fixed_window(limit: float, window: float) -> Builder:
    def build(clock: FakeClock) -> Built:
        return Built(
            FixedWindow(limit, window, clock=clock),
            lambda grants: fixed_window_holds(grants, limit, window),
        )

    return build


def _all_of(*parts: Builder) -> Builder:
    def build(clock: FakeClock) -> Built:
        built = [part(clock) for part in parts]
        return Built(
            all_of(*(one.limiter for one in built)),
            lambda grants: all(one.holds(grants) for one in built),
            queue_bound=min(one.queue_bound for one in built),
        )

    return build


def _limiter_text(per_second: int, per_window: int, window: int) -> Builder:
    text = f"{per_second}/second, {per_window}/{window}s"

    def build(clock: FakeClock) -> Built:
        return Built(
            limiter(text, clock=clock),
            lambda grants: (
                sliding_window_holds(grants, per_second, 1.0)
                and sliding_window_holds(grants, per_window, window)
            ),
        )

    return build


#: Each kind with capacity 4, refilling (or sliding) 4 units every 2 seconds.
KINDS: dict[str, Callable[[FakeClock], LimiterBase]] = {
    "TokenBucket": lambda clock: TokenBucket(2.0, 4, clock=clock),
    "LeakyBucket": lambda clock: LeakyBucket(2.0, 4, clock=clock),
    "SlidingWindow": lambda clock: SlidingWindow(4, 2.0, clock=clock),
    "FixedWindow": lambda clock: FixedWindow(4, 2.0, clock=clock),
    "all_of": lambda clock: all_of(
        TokenBucket(2.0, 4, clock=clock), SlidingWindow(100, 60.0, clock=clock)
    ),
}


token_buckets = st.builds(_token_bucket, rates, capacities)
leaky_buckets = st.builds(_leaky_bucket, rates, capacities)
sliding_windows = st.builds(_sliding_window, capacities, windows)
fixed_windows = st.builds(_fixed_window, capacities, windows)

SPECS: Sequence[Spec] = (
    Spec("TokenBucket", token_buckets),
    Spec("LeakyBucket", leaky_buckets),
    Spec("SlidingWindow", sliding_windows),
    Spec("FixedWindow", fixed_windows),
    Spec("all_of(TokenBucket, SlidingWindow)", st.builds(_all_of, token_buckets, sliding_windows)),
    Spec("all_of(LeakyBucket, FixedWindow)", st.builds(_all_of, leaky_buckets, fixed_windows)),
    Spec(
        "limiter('N/second, M/Ts')",
        st.builds(
            _limiter_text,
            st.integers(1, 20),
            st.integers(1, 200),
            st.integers(2, 120),
        ),
    ),
)

"""Hypothesis strategies and checkers shared by the limiter tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ratekit import Rate

#: Slack for float sums when checking a guarantee (far below any real token).
EPSILON = 1e-9

#: "Just before" an instant: far above float rounding at the magnitudes the tests reach
#: (virtual clocks below 1e5 s, where one float step is under 2e-11 s), far below a token.
JUST_BEFORE = 1e-9

#: Per-second speeds: slow, fast and everything between, but no absurd extremes.
per_second = st.floats(min_value=0.01, max_value=1_000.0, allow_nan=False, allow_infinity=False)

#: Rates in the forms users write: per second, per minute, per hour.
rates = st.builds(
    lambda speed, per: Rate(speed * per, per=per),
    per_second,
    st.sampled_from([1.0, 60.0, 3600.0]),
)

capacities = st.one_of(
    st.integers(min_value=1, max_value=100).map(float),
    st.floats(min_value=0.5, max_value=100.0, allow_nan=False),
)

#: Clock advances: zero, tiny, ordinary and long ones.
advances = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-6, max_value=1e-2),
    st.floats(min_value=1e-2, max_value=10.0),
    st.floats(min_value=10.0, max_value=1_000.0),
)


def costs(capacity: float) -> st.SearchStrategy[float]:
    """Costs a limiter of this capacity may be asked for: whole units and fractions."""
    whole = st.integers(min_value=1, max_value=max(int(capacity), 1)).map(float)
    fraction = st.floats(min_value=0.01, max_value=capacity, allow_nan=False)
    return st.one_of(whole, fraction).filter(lambda cost: cost <= capacity)


def worst_interval_excess(grants: list[tuple[float, float]], burst: float, speed: float) -> float:
    """Return how far the grants exceed ``burst + speed * t`` in their worst interval.

    *grants* are ``(instant, cost)`` pairs.  Every interval worth checking starts and ends
    at a grant, so all pairs are tried.  A result <= 0 means the guarantee holds.
    """
    ordered = sorted(grants)
    worst = float("-inf")
    for i, (start, _) in enumerate(ordered):
        total = 0.0
        for end, cost in ordered[i:]:
            total += cost
            worst = max(worst, total - burst - speed * (end - start))
    return worst

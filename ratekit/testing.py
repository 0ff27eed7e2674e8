"""Helpers for testing code that uses ratekit: a fake clock and hypothesis strategies.

`FakeClock` needs nothing; the strategies need `hypothesis`, which is imported only
when one of them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._clock import FakeClock
from ._rate import Rate

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["FakeClock", "rates"]


def rates(
    *, min_per_second: float = 0.01, max_per_second: float = 10_000.0
) -> SearchStrategy[Rate]:
    """A hypothesis strategy of `Rate` values between the given speeds (per second).

    Raises:
        ModuleNotFoundError: If hypothesis is not installed.
    """
    from hypothesis import strategies as st

    periods = st.sampled_from([0.001, 0.1, 1.0, 10.0, 60.0, 3600.0])

    def build(per: float) -> SearchStrategy[Rate]:
        limits = st.floats(min_per_second * per, max_per_second * per, allow_nan=False)
        return limits.map(lambda limit: Rate(limit, per=per))

    return periods.flatmap(build)

"""ratekit: rate limiting for Python programs that call rate-limited APIs.

Strategies share one `ratekit.typing.Limiter` protocol; time comes from an injected
`ratekit.typing.Clock`.
"""

from __future__ import annotations

from ._clock import MonotonicClock
from ._decision import Decision, LimiterStatistics, Reservation
from ._errors import AcquireCancelled, AcquireTimeout, CostTooLarge, RateKitError
from ._rate import Rate
from ._token_bucket import TokenBucket

__all__ = [
    "AcquireCancelled",
    "AcquireTimeout",
    "CostTooLarge",
    "Decision",
    "LimiterStatistics",
    "MonotonicClock",
    "Rate",
    "RateKitError",
    "Reservation",
    "TokenBucket",
]


def __getattr__(name: str) -> str:
    """Read ``__version__`` from the installed metadata, only when asked for."""
    if name == "__version__":
        from importlib.metadata import version

        return version("ratekit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

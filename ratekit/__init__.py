"""ratekit: rate limiting for Python programs that call rate-limited APIs.

Strategies share one `ratekit.typing.Limiter` protocol; time comes from an injected
`ratekit.typing.Clock`.
"""

from __future__ import annotations

from ._async_scheduler import AsyncScheduler
from ._cancel import current_cancel
from ._clock import MonotonicClock
from ._composite import AllOf, all_of, limiter
from ._decision import Decision, LimiterStatistics, Reservation
from ._errors import (
    AcquireCancelled,
    AcquireTimeout,
    Cancelled,
    CostTooLarge,
    MapTimeout,
    QueueFull,
    RateKitError,
    SchedulerClosed,
    TooManyKeys,
)
from ._keyed import Keyed
from ._leaky_bucket import LeakyBucket
from ._limited import limited
from ._limiter import LimiterBase
from ._priority import Prioritized, Priority, current_priority, priority
from ._rate import Rate
from ._scheduler import Scheduler, SchedulerStatistics
from ._token_bucket import TokenBucket
from ._windows import FixedWindow, SlidingWindow

__all__ = [
    "AcquireCancelled",
    "AcquireTimeout",
    "AllOf",
    "AsyncScheduler",
    "Cancelled",
    "CostTooLarge",
    "Decision",
    "FixedWindow",
    "Keyed",
    "LeakyBucket",
    "LimiterBase",
    "LimiterStatistics",
    "MapTimeout",
    "MonotonicClock",
    "Prioritized",
    "Priority",
    "QueueFull",
    "Rate",
    "RateKitError",
    "Reservation",
    "Scheduler",
    "SchedulerClosed",
    "SchedulerStatistics",
    "SlidingWindow",
    "TokenBucket",
    "TooManyKeys",
    "all_of",
    "current_cancel",
    "current_priority",
    "limited",
    "limiter",
    "priority",
]


def __getattr__(name: str) -> str:
    """Read ``__version__`` from the installed metadata, only when asked for."""
    if name == "__version__":
        from importlib.metadata import version

        return version("ratekit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""`AdaptiveLimiter`: a pace learnt from the server's answers, for limits nobody published."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, final

from ratekit._leaky_bucket import DripBase
from ratekit._validate import positive
from ratekit.retry import parse_rate_limit_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ratekit.typing import Clock


#: How far below the rate a server just served a cut goes: a margin for its jitter.
_BELOW_ESTIMATE = 0.9

#: Slow start's gain per success: the rate grows by half each second of successes.
#: (Doubling, as TCP does, overshoots a server's limit by up to twice; every grant
#: booked meanwhile at the overshooting rate then comes back as a 429.)
_SLOW_START_STEP = 0.5


@final
class AdaptiveLimiter(DripBase):
    """A limiter that learns a server's rate limit from its answers (AIMD, and headers).

    For APIs whose limit the client does not know.  Grants are spaced ``cost / rate``
    apart, as in `ratekit.LeakyBucket`, so the limiter never bursts above the rate it
    has learnt.  An HTTP client reports every answer through `observe`
    (`ratekit.http.Client` does so by itself):

    - a 429 cuts the rate (at most once per *window* seconds, since the answers to
      requests already in flight say nothing new), never below *floor*: to 90% of
      what the server served over the last window when leaving slow start, and later
      by *decrease*, but not below that estimate;
    - a success raises it: first by half a request per success (half as much again
      each second, a gentler slow start than TCP's doubling) until the first 429,
      then additively, by *increase* requests per second for each second of
      successes, never above *ceiling*;
    - rate-limit headers, when the server sends them (`parse_rate_limit_headers`), set
      the rate to what is left of the window (remaining over the seconds to reset),
      and a remaining of 0 holds every request until the reset.

    Args:
        initial: The rate to start from, in requests per second.
        floor: The slowest rate it falls to.
        ceiling: The fastest rate it climbs to.
        increase: Requests per second gained per second of successes, after slow start.
        decrease: The factor a 429 multiplies the rate by (between 0 and 1).
        window: Seconds after a cut during which further 429s do not cut again.
        clock: Where time comes from (default: the real clock).

    Raises:
        ValueError: If a rate is not positive and finite, *floor* exceeds *ceiling*, or
            *decrease* is not between 0 and 1 (the message names the argument).
    """

    __slots__ = (
        "_ceiling",
        "_decrease",
        "_floor",
        "_increase",
        "_last_cut",
        "_slow_start",
        "_successes",
        "_window",
    )

    def __init__(  # noqa: PLR0913 - the tuning of AIMD, all keyword-only
        self,
        initial: float = 1.0,
        *,
        floor: float = 0.1,
        ceiling: float = 1000.0,
        increase: float = 0.5,
        decrease: float = 0.8,
        window: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(1.0, clock)  # the rate is set below, once its bounds are known
        self._floor = positive("floor", floor)
        self._ceiling = positive("ceiling", ceiling)
        if self._floor > self._ceiling:
            raise ValueError(f"floor ({floor!r}) must not exceed ceiling ({ceiling!r})")
        self._per_second = min(max(positive("initial", initial), self._floor), self._ceiling)
        self._increase = positive("increase", increase)
        self._decrease = positive("decrease", decrease)
        if self._decrease >= 1:
            raise ValueError(f"decrease must be between 0 and 1, got {decrease!r}")
        self._window = positive("window", window)
        self._slow_start = True
        self._last_cut = -math.inf
        self._successes: deque[float] = deque()  # instants of the successes in the window

    @property
    def rate(self) -> float:
        """The rate learnt so far, in requests per second."""
        return self._per_second

    @property
    def capacity(self) -> float:
        """No cost is too large: a large one only waits longer."""
        return math.inf

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(rate={self._per_second:.4g}, floor={self._floor!r}, "
            f"ceiling={self._ceiling!r})"
        )

    def observe(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Learn from one answer of the server: its status, and its rate-limit headers.

        Args:
            status: The HTTP status.
            headers: The response headers, if any.
        """
        info = parse_rate_limit_headers(headers) if headers is not None else None
        with self._lock:
            now = self._now()
            if info is not None and info.remaining is not None and info.reset is not None:
                if info.remaining <= 0:
                    self._tat = max(self._tat, now + info.reset)  # hold until the reset
                elif info.reset > 0:
                    self._per_second = self._clamp(info.remaining / info.reset)
                return
            successes = self._successes
            while successes and successes[0] <= now - self._window:
                successes.popleft()
            if status == 429:
                if now - self._last_cut >= self._window:
                    self._per_second = self._clamp(self._cut(len(successes) / self._window))
                    self._last_cut = now
                self._slow_start = False
            elif 200 <= status < 400:
                successes.append(now)
                step = _SLOW_START_STEP if self._slow_start else self._increase / self._per_second
                self._per_second = self._clamp(self._per_second + step)

    def _cut(self, served: float) -> float:
        """The rate after a 429, given what the server served over the last window.

        What it just served is the best estimate of its limit: leaving slow start, the
        rate drops to a little below it (slow start overshoots the limit by up to half,
        and one cut by *decrease* would leave it above); afterwards, to the larger of a
        cut by *decrease* and that estimate, so that a server near its limit is not
        starved by a deep cut.
        """
        estimate = _BELOW_ESTIMATE * served
        if self._slow_start and estimate > 0:
            return min(self._per_second, estimate)
        return min(self._per_second, max(self._per_second * self._decrease, estimate))

    def _clamp(self, rate: float) -> float:
        return min(max(rate, self._floor), self._ceiling)

    def _level_locked(self, now: float) -> float:
        # What could be granted now: a request when the slot has come, else the negative
        # number of requests queued ahead at the current rate.
        return 1.0 if now >= self._tat else -(self._tat - now) * self._per_second

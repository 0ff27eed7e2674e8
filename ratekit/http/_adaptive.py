"""`AdaptiveLimiter`: a pace learnt from the server's answers, for limits nobody published."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, final

from ratekit._cancel import resolve
from ratekit._errors import AcquireCancelled
from ratekit._leaky_bucket import DripBase
from ratekit._validate import optional_wait, positive
from ratekit.retry import DEFAULT_MAX_RETRY_AFTER, parse_rate_limit_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ratekit.typing import CancelEvent, Clock


#: Slow start's gain per success: one request per second more, so the rate doubles each
#: second of successes, as TCP's doubles each round trip.  Overshooting the server's
#: limit costs only the requests in flight when the first 429 comes back (waiters take
#: the next free slot rather than booking one ahead, and the cooldown is shared), and
#: the cut then lands just below what the server served.
_SLOW_START_STEP = 1.0


@final
class AdaptiveLimiter(DripBase):
    """A limiter that learns a server's rate limit from its answers (AIMD, and headers).

    For APIs whose limit the client does not know.  Grants are spaced ``cost / rate``
    apart, as in `ratekit.LeakyBucket`, so the limiter never bursts above the rate it
    has learnt.  An HTTP client reports every answer through `observe`
    (`ratekit.http.Client` does so by itself):

    - a 429 cuts the rate (at most once per *window* seconds, since the answers to
      requests already in flight say nothing new), never below *floor*: to *settle*
      times what the server served over the last window when leaving slow start, and
      later
      by *decrease*, but not below that estimate;
    - a success raises it: first by one request per second per success (doubling
      each second, TCP's slow start) until the first 429, then additively, by
      *increase* requests per second for each second of successes, never above
      *ceiling*;
    - rate-limit headers, when the server sends them (`parse_rate_limit_headers`), set
      the rate to what is left of the window (remaining over the seconds to reset,
      within *floor* and *ceiling*, so a reset however far only slows it to *floor*),
      and a remaining of 0 holds every request until the reset, but for no longer than
      *max_hold*: a reset further away is, most likely, the server's mistake (a Unix
      time where seconds were meant), and a client that obeyed it would look hung.

    **Blocking calls wait for the next free slot, not for a slot booked ahead.**  The
    other strategies book each waiter's slot when it arrives, which is exact when the
    rate is fixed; here, eight workers starting at 1 request per second would book
    eight slots a second apart, and keep that slow-start spacing after the rate has
    grown.  So `acquire` and `acquire_async` without a timeout sleep until the next
    slot frees, take it if it is still free, and otherwise wait for the following one:
    a rate learnt meanwhile applies at once, and grants stay spaced ``cost / rate``
    apart.  Waiters are then served in no particular order.  With a *timeout*, and for
    `reserve`, slots are booked ahead as usual, so that the answer comes at once.

    Args:
        initial: The rate to start from, in requests per second.
        floor: The slowest rate it falls to.
        ceiling: The fastest rate it climbs to.
        increase: Requests per second gained per second of successes, after slow start.
        decrease: The factor a 429 multiplies the rate by (between 0 and 1).
        window: Seconds after a cut during which further 429s do not cut again.
        settle: The share of what the server served that a cut settles at (0.95: 5%
            below, a margin for jitter); lower it to trade speed for fewer 429s.
        max_hold: The longest, in seconds, that a spent quota holds requests until its
            reset; ``None`` for no limit.  The default,
            `ratekit.retry.DEFAULT_MAX_RETRY_AFTER` (5 minutes), is also the longest a
            client obeys ``Retry-After`` under its default retry policy.
        clock: Where time comes from (default: the real clock).

    Raises:
        ValueError: If a rate is not positive and finite, *floor* exceeds *ceiling*,
            *decrease* or *settle* is not between 0 and 1, or *max_hold* is negative or
            NaN (the message names the argument).
        TypeError: If a setting is not a number.
    """

    __slots__ = (
        "_ceiling",
        "_decrease",
        "_floor",
        "_increase",
        "_last_cut",
        "_max_hold",
        "_settle",
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
        settle: float = 0.95,
        max_hold: float | None = DEFAULT_MAX_RETRY_AFTER,
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
        self._settle = positive("settle", settle)
        if self._settle > 1:
            raise ValueError(f"settle must be between 0 and 1, got {settle!r}")
        self._max_hold = optional_wait("max_hold", max_hold)
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

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until *cost* is granted, taking the next free slot at the current rate.

        See the class docstring for how this differs from the other strategies; the
        arguments and errors are those of `ratekit.LimiterBase.acquire`.
        """
        if timeout is not None:
            super().acquire(cost, timeout=timeout, cancel=cancel)
            return
        value = self._check_cost(cost)
        cancel = resolve(cancel)
        started: float | None = None
        try:
            while True:
                with self._lock:
                    if cancel is not None and cancel.is_set():
                        self._cancelled += 1
                        raise AcquireCancelled(value)
                    delay = self._take_if_free(value)
                    if delay is None:
                        return
                    if started is None:
                        started = self._now()
                        self._waiting += 1
                self._clock.sleep(delay, cancel)
        finally:
            if started is not None:
                with self._lock:
                    self._waiting -= 1
                    self._waited += max(self._now() - started, 0.0)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Wait without blocking the event loop, taking the next free slot (see `acquire`)."""
        if timeout is not None:
            await super().acquire_async(cost, timeout=timeout)
            return
        value = self._check_cost(cost)
        started: float | None = None
        try:
            while True:
                with self._lock:
                    delay = self._take_if_free(value)
                    if delay is None:
                        return
                    if started is None:
                        started = self._now()
                        self._waiting += 1
                await self._clock.sleep_async(delay)
        finally:
            if started is not None:
                with self._lock:
                    self._waiting -= 1
                    self._waited += max(self._now() - started, 0.0)

    def _take_if_free(self, cost: float) -> float | None:
        """Grant *cost* if the slot is free now (``None``); else the wait until it frees."""
        now = self._now()
        delay = self._delay_locked(cost, now)
        if delay > 0:
            return delay
        self._grant_locked(cost, now)
        self._granted += 1
        return None

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
                if info.remaining <= 0:  # hold until the reset, or for max_hold at most
                    self._tat = max(self._tat, now + min(info.reset, self._max_hold))
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
        rate drops to a little below it (slow start may overshoot the limit up to twice,
        and one cut by *decrease* would leave it above); afterwards, to the larger of a
        cut by *decrease* and that estimate, so that a server near its limit is not
        starved by a deep cut.
        """
        estimate = self._settle * served
        if self._slow_start and estimate > 0:
            return min(self._per_second, estimate)
        return min(self._per_second, max(self._per_second * self._decrease, estimate))

    def _clamp(self, rate: float) -> float:
        return min(max(rate, self._floor), self._ceiling)

    def _level_locked(self, now: float) -> float:
        # What could be granted now: a request when the slot has come, else the negative
        # number of requests queued ahead at the current rate.
        return 1.0 if now >= self._tat else -(self._tat - now) * self._per_second

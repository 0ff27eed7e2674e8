"""`AdaptiveLimiter`: a pace learnt from the server's answers, for limits nobody published.

The control law, in short (docs/http.md explains it with a run):

- **Start.**  Each clean answer raises the rate by half, so it passes any common limit
  within a fraction of a second, until the first 429 or the first rate-limit header
  that states a quota.
- **Estimate.**  A 429 sets the *estimate* of what the server sustains, from what it
  accepted and refused rather than from what the client happened to send: the spacing
  it enforces, when every gap it accepted is wider than every gap it refused (a strict
  leaky bucket); else, when it said how long to wait (``Retry-After``: it counts in
  windows), how many requests it accepted over the last window; else how fast it has
  accepted requests since it began refusing (a token bucket, once its burst is spent).
- **Plateau.**  The rate then holds at *settle* times the estimate, and only after a
  hold long enough that one probe costs at most *probe_cost* of the time (20 s for a
  ``Retry-After: 1`` with the defaults) does it probe upwards, by *probe* of the rate
  per second, until the next 429 moves the estimate.
- **Headers** are evidence, not orders: a quota over a window of a minute or less
  (``RateLimit-Policy``, ``X-RateLimit-Limit``) bounds the rate at *settle* times
  quota/window, and ends the start at once; what remains before a reset lets the rate
  rise at least to remaining/reset; a spent quota holds requests until its reset.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, final

from ratekit._cancel import resolve
from ratekit._errors import AcquireCancelled
from ratekit._leaky_bucket import DripBase
from ratekit._limited import Acquiring
from ratekit._validate import optional_wait, positive
from ratekit.retry import DEFAULT_MAX_RETRY_AFTER, parse_rate_limit_headers, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ratekit.retry import RateLimitInfo, RateLimitPolicy
    from ratekit.typing import CancelEvent, Clock


#: How much each clean answer raises the rate while starting: by half, so that the rate
#: grows about tenfold every six answers, and the whole start, from 10 requests per
#: second, takes about 0.3 s whatever the limit.  Overshooting costs only the requests
#: in flight when the first 429 comes back: the estimate comes from what the server
#: accepted, not from the rate the start had reached.
_START_GAIN = 0.5

#: Answers remembered for the estimates (sent instant, accepted): enough for a few
#: seconds at hundreds of requests per second; the estimates look one window back.
_ANSWERS = 512

#: The shortest plateau, in seconds: even where a 429 costs next to nothing (no
#: ``Retry-After``), probes come no more often than this.
_MIN_HOLD = 3.0

#: The seconds of answers the spacing estimate reads: recent enough to follow a server
#: whose limit changes.
_SPACING_SPAN = 10.0

#: How long without a 429, in slots at the current rate (and at least one window and
#: `_QUIET_SECONDS`), ends an episode of refusals.
_QUIET_SLOTS = 5

#: The shortest quiet that ends an episode, in seconds: a bucket drained slowly (a
#: rate a few percent above its limit) refuses one request in ten or twenty, seconds
#: apart, and what it accepted over those seconds is its limit.
_QUIET_SECONDS = 5.0

#: The least share of refusals among the answers since a server began refusing for its
#: rate of acceptance to be its limit: the client then offered more than it accepted
#: throughout, rather than less for part of the time.
_DENSE = 0.1

#: The pause after a cut whose estimate is unsure (a guess, or a strict server's
#: spacing bracketed only loosely), in seconds, before the rate grows again, at
#: `_UNSURE_SPEED` times *probe*: the next 429 then comes soon and tells more.
_UNSURE_HOLD = 0.5

#: How many times faster than *probe* the rate grows after an unsure estimate.
_UNSURE_SPEED = 4.0

#: The most one clean answer raises the rate once the start is over: small steps, so
#: that the rate one slot before a 429 is within *settle* of the limit.
_STEP = 0.02

#: The shortest span, as a share of the window, over which the start's pace of
#: acceptance is read.
_SHORTEST_SPAN = 0.1

#: How much wider the narrowest gap a server accepted must be than the widest gap it
#: refused for its spacing to be read: a strict leaky bucket separates them (by more
#: than the jitter of the network); a bucket with a burst, or a window, does not.
_SEPARATION = 1.2

#: How close a new estimate must come to the previous one for the limit to be taken
#: as known: the same limit found twice.
_AGAIN = 0.1

#: The fewest refusals, and accepted requests, since a server began refusing that make
#: its rate of acceptance an estimate, and a known one (fewer are noise).
_EPISODE_MIN = 3

#: How much later than the truth a reset may be, in seconds: servers send them in whole
#: seconds, rounded up (and a Unix time in whole seconds is up to a second late).
_ROUNDING = 1.0

#: How many resets of a quota without a stated window (``X-RateLimit-*``) must be seen
#: before the largest is taken for its window: one reset is a point in the window, not
#: its length.
_RESETS_SEEN = 3

#: The longest a quota's window may be for quota/window to bound the pace, in seconds:
#: a per-second or per-minute quota is a pace; an hourly or daily one is a budget, which
#: a job may spend as fast as the shorter limits allow (a spent budget holds requests
#: until its reset).
_PACE_WINDOW = 60.0


@final
class AdaptiveLimiter(DripBase):
    """A limiter that learns a server's rate limit from its answers.

    For APIs whose limit the client does not know.  Grants are spaced ``cost / rate``
    apart, as in `ratekit.LeakyBucket`, so the limiter never bursts above the rate it
    has learnt.  An HTTP client reports every answer through `observe`
    (`ratekit.http.Client` does so by itself, with the instant each request was sent).

    **The control law.**  Clean answers raise the rate quickly from *initial* (by half
    each) until the first 429.  A 429 sets the `estimate` of what the server sustains,
    from what it accepted and refused: the spacing a strict server enforces (every gap
    it accepted wider than every gap it refused), else the requests it accepted over
    the last *window* when it answered with ``Retry-After`` (a server that counts in
    windows), else its rate of acceptance since it began refusing (a token bucket
    whose burst is spent).  The rate then holds at *settle* times the estimate (a
    plateau, as TCP CUBIC holds near its last maximum) and probes upwards, by *probe*
    of the rate per second, only after a hold long enough that a probe's cost is at
    most *probe_cost* of the time: a 429 with ``Retry-After: 1`` pauses every worker
    for a second, so with the defaults the next probe comes 20 s later.  A 429 for a
    request sent before the last cut says nothing new and changes nothing.

    **Headers are evidence.**  When the server sends rate-limit headers
    (`ratekit.retry.parse_rate_limit_headers`): a quota over a window of at most a
    minute (``RateLimit-Policy``, or ``X-RateLimit-Limit`` with the window read off the
    largest reset seen) bounds the rate at *settle* times quota/window and ends the
    start at once; what remains until a reset lets the rate rise to at least
    remaining/reset; and a remaining of 0 holds every request until the reset, but for
    no longer than *max_hold*: a reset further away is, most likely, the server's
    mistake (a Unix time where seconds were meant), and a client that obeyed it would
    look hung.  Longer quotas (hourly, daily) are budgets, spent as fast as the other
    limits allow.

    **Blocking calls wait for the next free slot, not for a slot booked ahead.**  The
    other strategies book each waiter's slot when it arrives, which is exact when the
    rate is fixed; here, eight workers starting slowly would book eight slots far
    apart and keep that spacing after the rate has grown.  So `acquire` and
    `acquire_async` without a timeout sleep until the next slot frees, take it if it is
    still free, and otherwise wait for the following one: a rate learnt meanwhile
    applies at once, and grants stay spaced ``cost / rate`` apart.  Waiters are then
    served in no particular order.  With a *timeout*, and for `reserve`, slots are
    booked ahead as usual, so that the answer comes at once.

    Args:
        initial: The rate to start from, in requests per second.
        floor: The slowest rate it falls to.
        ceiling: The fastest rate it climbs to.
        settle: The share of the estimate the rate holds at (0.95: 5% below, a margin
            for jitter); lower it to trade speed for fewer 429s.
        decrease: The factor a 429 multiplies the rate by when the answers give no
            estimate (between 0 and 1).
        probe: How fast the rate grows once a plateau's hold is over, as a share of the
            rate per second.
        probe_cost: The share of the time that probing past the estimate may cost;
            it sets how long a plateau holds (at least 3 s).
        window: The seconds over which what the server accepted is counted, and during
            which further 429s do not cut again when `observe` is not told when the
            request was sent.
        max_hold: The longest, in seconds, that a spent quota holds requests until its
            reset; ``None`` for no limit.  The default,
            `ratekit.retry.DEFAULT_MAX_RETRY_AFTER` (5 minutes), is also the longest a
            client obeys ``Retry-After`` under its default retry policy.
        estimate: A previous `estimate` (for example, saved from the last run against
            the same server): the limiter starts on its plateau, at *settle* times it.
        clock: Where time comes from (default: the real clock).
        wall: Where the Unix time comes from, to read a reset sent as a Unix time
            (default: the system's clock); a test on a fake *clock* gives a Unix time
            that moves with it.

    Raises:
        ValueError: If a rate is not positive and finite, *floor* exceeds *ceiling*,
            *decrease*, *settle* or *probe_cost* is not between 0 and 1, or *max_hold*
            is negative or NaN (the message names the argument).
        TypeError: If a setting is not a number.
    """

    __slots__ = (
        "_answers",
        "_bound",
        "_ceiling",
        "_decrease",
        "_episode",
        "_episode_no",
        "_episode_ok",
        "_estimate",
        "_floor",
        "_grown_at",
        "_hold_until",
        "_last_cut",
        "_last_refusal",
        "_longest_reset",
        "_max_hold",
        "_probe",
        "_probe_cost",
        "_rates",
        "_resets_seen",
        "_settle",
        "_starting",
        "_successes",
        "_sure",
        "_wall",
        "_window",
    )

    # Blocks go through this class's own `acquire` and `acquire_async`.
    __enter__ = Acquiring.__enter__
    __aenter__ = Acquiring.__aenter__

    def __init__(  # noqa: PLR0913 - the tuning of the control law, all keyword-only
        self,
        initial: float = 10.0,
        *,
        floor: float = 0.1,
        ceiling: float = 1000.0,
        settle: float = 0.95,
        decrease: float = 0.7,
        probe: float = 0.05,
        probe_cost: float = 0.05,
        window: float = 1.0,
        max_hold: float | None = DEFAULT_MAX_RETRY_AFTER,
        estimate: float | None = None,
        clock: Clock | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(1.0, clock)  # the rate is set below, once its bounds are known
        self._floor = positive("floor", floor)
        self._ceiling = positive("ceiling", ceiling)
        if self._floor > self._ceiling:
            raise ValueError(f"floor ({floor!r}) must not exceed ceiling ({ceiling!r})")
        self._settle = _share("settle", settle)
        self._decrease = _share("decrease", decrease, below_one=True)
        self._probe = positive("probe", probe)
        self._probe_cost = _share("probe_cost", probe_cost)
        self._window = positive("window", window)
        self._max_hold = optional_wait("max_hold", max_hold)
        self._wall = wall
        self._estimate = None if estimate is None else positive("estimate", estimate)
        self._bound = math.inf  # settle x quota/window, from headers
        self._longest_reset = 0.0  # the window of an X-RateLimit quota, as far as seen
        self._resets_seen = 0
        self._answers: deque[tuple[float, bool]] = deque(maxlen=_ANSWERS)
        self._rates: deque[tuple[float, float]] = deque(maxlen=_ANSWERS)  # (since, rate)
        self._successes: deque[float] = deque()  # instants of the successes in the window
        self._last_cut = -math.inf
        self._last_refusal = -math.inf
        self._episode = -math.inf  # when the server began refusing, this time
        self._episode_ok = 0  # requests it accepted since, sent after it began
        self._episode_no = 0  # and those it refused
        now = self._now()
        self._grown_at = now
        self._sure = True  # whether the estimate is known well enough to hold on
        if self._estimate is None:
            self._starting = True
            self._hold_until = now
            self._per_second = self._clamp(positive("initial", initial))
        else:
            self._starting = False  # on a plateau, held as after a 429 that confirmed it
            self._hold_until = now + max(_MIN_HOLD, 1.0 / self._probe_cost)
            self._per_second = self._clamp(self._settle * self._estimate)

    @property
    def rate(self) -> float:
        """The rate learnt so far, in requests per second."""
        return self._per_second

    @property
    def estimate(self) -> float | None:
        """What the server sustains as learnt so far, in requests per second.

        ``None`` before any evidence (a 429, or a quota in the headers).  Save it, and
        pass it back as ``estimate=`` next time, to start where this limiter ended.
        """
        return self._estimate

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
                        self._tally.cancelled += 1
                        raise AcquireCancelled(value)
                    delay = self._take_if_free(value)
                    if delay is None:
                        return
                    if started is None:
                        started = self._now()
                        self._tally.waiting += 1
                self._clock.sleep(delay, cancel)
        finally:
            if started is not None:
                self._end_wait(started)

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
                        self._tally.waiting += 1
                await self._clock.sleep_async(delay)
        finally:
            if started is not None:
                self._end_wait(started)

    def _end_wait(self, started: float) -> None:
        """Count a wait that began at *started* as over."""
        with self._lock:
            waited = self._tally.end_wait(started, self._now(), used=False)
        if self._on_wait is not None:
            self._on_wait(waited)

    def _take_if_free(self, cost: float) -> float | None:
        """Grant *cost* if the slot is free now (``None``); else the wait until it frees."""
        now = self._now()
        delay = self._delay_locked(cost, now)
        if delay > 0:
            return delay
        self._grant_locked(cost, now)
        self._tally.granted += 1
        return None

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        sent_at: float | None = None,
    ) -> None:
        """Learn from one answer of the server: its status, and its rate-limit headers.

        Args:
            status: The HTTP status.
            headers: The response headers, if any.
            sent_at: When the request was sent, on this limiter's clock; it tells a
                429 that answers a request sent before the last cut (nothing new)
                from one that answers the current rate, and lets the limiter read the
                spacing a server enforces.  ``None``: the answer's own instant, and
                429s within *window* of a cut do not cut again.
        """
        unix = None if self._wall is None else self._wall()
        info = parse_rate_limit_headers(headers, unix) if headers is not None else None
        waits = status == 429 and headers is not None and _retry_after(headers) is not None
        with self._lock:
            now = self._now()
            sent = now if sent_at is None else min(sent_at, now)
            if info is not None:
                self._read_headers(info, now)
            if status == 429:
                self._refused(now, sent, waits=waits, told=sent_at is not None)
            elif 200 <= status < 400:
                self._accepted(now, sent)

    # -- the control law (called with the lock held) ---------------------------------

    def _accepted(self, now: float, sent: float) -> None:
        self._answers.append((sent, True))
        successes = self._successes
        successes.append(now)
        while successes[0] <= now - self._window:
            successes.popleft()
        if sent >= self._episode:
            self._episode_ok += 1
        if self._starting:
            self._set_rate(self._per_second * (1 + _START_GAIN))
        elif now > self._hold_until:
            since = now - max(self._grown_at, self._hold_until)
            speed = self._probe if self._sure else self._probe * _UNSURE_SPEED
            self._set_rate(self._per_second * (1 + min(speed * since, _STEP)))
        self._grown_at = now

    def _refused(self, now: float, sent: float, *, waits: bool, told: bool) -> None:
        self._answers.append((sent, False))
        quiet = max(self._window, _QUIET_SLOTS / self._per_second, _QUIET_SECONDS)
        if now - self._last_refusal > quiet:  # a new episode of refusals
            self._episode, self._episode_ok, self._episode_no = sent, 0, 0
        self._episode_no += 1
        self._last_refusal = now
        if (sent < self._last_cut) if told else (now - self._last_cut < self._window):
            return  # sent at a rate already cut: nothing new
        estimate, sure = self._estimate_limit(now, sent, waits=waits)
        previous = self._estimate
        if sent > self._hold_until and estimate is not None and previous is not None:
            # The same limit found again, by a probe after the last cut, is known.
            sure = sure or abs(estimate / previous - 1) <= _AGAIN
        self._sure = sure
        if estimate is None:  # nothing accepted yet to go by
            rate = self._per_second * self._decrease
            self._estimate = rate / self._settle
        else:
            self._estimate = min(estimate, self._bound / self._settle)
            rate = self._settle * self._estimate
        self._set_rate(min(rate, self._per_second))
        self._starting = False
        self._last_cut = now
        self._grown_at = now
        # A probe costs a Retry-After for every worker, or a slot and a retried request.
        cost = 1.0 if waits else 2.0 / max(self._per_second, self._floor)
        hold = max(_MIN_HOLD, cost / self._probe_cost) if sure else _UNSURE_HOLD
        self._hold_until = now + hold
        self._tat = max(self._tat, now + 1.0 / self._per_second)  # a one-slot pause for all

    def _estimate_limit(self, now: float, sent: float, *, waits: bool) -> tuple[float | None, bool]:
        """What the server sustains, from its answers; and whether that is well known.

        In order: the spacing a strict server enforces; what a server that counts in
        windows (it said when to retry) accepted over the last window; the rate at
        which a bucket whose burst is spent accepts requests, once it has refused
        often enough for that rate to be its limit; else a guess: the rate of the slot
        before the one that drew the 429 (the last one known to pass), or during the
        start, which overshoots, the pace at which the server accepted requests.
        """
        spaced = self._spacing(now)
        if spaced is not None:
            return spaced
        successes = self._successes
        while successes and successes[0] <= now - self._window:
            successes.popleft()
        if waits:
            return len(successes) / self._window or None, True
        ok, no = self._episode_ok, self._episode_no
        if no >= _EPISODE_MIN and no >= _DENSE * (ok + no):
            # Refused often: it accepts what it can, whatever it is offered; with few
            # accepted yet, one more is counted, for an estimate that errs high.
            accepting = (ok + (ok < _EPISODE_MIN)) / max(now - self._episode, 1e-9)
            return min(accepting, self._per_second), ok >= _EPISODE_MIN
        if not self._starting:
            # Probing from below: the rate one slot before the one that drew the 429.
            return self._rate_at(sent - 1 / self._rate_at(sent)), False
        # The start overshoots: the pace at which the server accepted requests lately,
        # unless it accepted too few for that to say anything (then, as TCP, a cut).
        if len(successes) < _EPISODE_MIN:
            return self._per_second * self._decrease, False
        span = max(now - successes[0], _SHORTEST_SPAN * self._window)
        return min(len(successes) / span, self._per_second), False

    def _spacing(self, now: float) -> tuple[float, bool] | None:
        """The rate a strict server enforces, and whether it is well known; or ``None``.

        Such a server accepts a request only so long after the last one it accepted:
        every gap it accepted is then wider than every gap it refused, and its limit
        lies between the two (the geometric mean of the bounds is taken).  The bounds
        are at least 20% apart, so the limit is not known until it is found again.
        """
        answers = sorted(a for a in self._answers if a[0] > now - _SPACING_SPAN)
        narrowest_ok = math.inf
        widest_refused = 0.0
        accepted_at: float | None = None
        oks = refusals = 0
        for sent, ok in answers:
            if accepted_at is not None:
                gap = sent - accepted_at
                if ok:
                    narrowest_ok = min(narrowest_ok, gap)
                    oks += 1
                else:
                    widest_refused = max(widest_refused, gap)
                    refusals += 1
            if ok:
                accepted_at = sent
        if oks < 2 or refusals < 1 or not narrowest_ok > widest_refused * _SEPARATION > 0:
            return None
        return 1.0 / math.sqrt(narrowest_ok * widest_refused), False

    def _read_headers(self, info: RateLimitInfo, now: float) -> None:
        """Take what rate-limit headers say as evidence: a bound, room, or a hold."""
        bound = min((self._read_policy(policy, now) for policy in info.policies), default=math.inf)
        if bound == math.inf:
            return
        self._bound = self._settle * bound
        if self._estimate is None or self._estimate > bound or self._starting:
            self._estimate = bound
        if self._starting:
            self._starting = False
            self._hold_until = now + _MIN_HOLD
            self._set_rate(self._bound)
        else:
            self._set_rate(min(self._per_second, self._bound))

    def _read_policy(self, policy: RateLimitPolicy, now: float) -> float:
        """The bound one policy sets on the rate (a pace), or else its budget's effect."""
        reset, remaining = policy.reset, policy.remaining
        window = policy.window
        if window is None and reset is not None and reset <= _PACE_WINDOW + 1:
            self._longest_reset = max(self._longest_reset, reset)
            self._resets_seen += 1
        if window is None and policy.quota is not None and self._resets_seen >= _RESETS_SEEN:
            window = max(1.0, math.floor(self._longest_reset))  # resets round up
        pace = bool(policy.quota and window and window <= _PACE_WINDOW + 1)
        if remaining is not None and reset is not None and remaining <= 0:
            # A quota spent: hold until the reset (max_hold at most).  A pace's reset
            # is a second or two away and rounded up to whole seconds: hold until the
            # second before it, so that a quota spent at the pace (its last request
            # the one the reset counts from) holds nothing.
            hold = max(reset - _ROUNDING, 0.0) if pace else reset
            self._tat = max(self._tat, now + min(hold, self._max_hold))
        if pace and policy.quota and window:
            return policy.quota / window  # a pace: quota over window bounds the rate
        if remaining and reset and remaining > 0 and remaining / reset > self._per_second:
            self._set_rate(remaining / reset)  # room, by the server's own count
        return math.inf

    def _set_rate(self, rate: float) -> None:
        self._per_second = min(self._clamp(rate), self._bound)
        self._rates.append((self._now(), self._per_second))

    def _rate_at(self, instant: float) -> float:
        """The rate at *instant*: what a request sent then was paced at."""
        rate = self._per_second
        for changed, value in reversed(self._rates):
            rate = value
            if changed <= instant:
                break
        return rate

    def _clamp(self, rate: float) -> float:
        return min(max(rate, self._floor), self._ceiling)

    def _level_locked(self, now: float) -> float:
        # What could be granted now: a request when the slot has come, else the negative
        # number of requests queued ahead at the current rate.
        return 1.0 if now >= self._tat else -(self._tat - now) * self._per_second


def _share(name: str, value: float, *, below_one: bool = False) -> float:
    share = positive(name, value)
    if share > 1 or (below_one and share == 1):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return share


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` of *headers*, whatever the case of its name."""
    value = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value)

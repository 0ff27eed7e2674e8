"""Limiter presets for CXone: the tutorial's numbers, a learning default, and the CLI's."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ratekit import Rate, TokenBucket
from ratekit.http import AdaptiveLimiter
from ratekit_cxone._config import ConfigError

if TYPE_CHECKING:
    from ratekit.typing import Clock, Limiter

#: The tutorial's pace: 90 requests per minute (1.5 per second).
TUTORIAL_RATE = Rate(90, per=60.0)

#: The tutorial's burst: a bucket of 100 requests, full at the start.
TUTORIAL_BURST = 100

#: Where `adaptive_limiter` starts, in requests per second; each clean answer raises it
#: by half until the first 429.  CXone counts in windows and answers that 429 with a
#: ``Retry-After`` of a whole second, which the export pays whenever it comes: the
#: sooner the start finds the limit, the less of the run the pause costs (from 20/s,
#: 200 pages against 40/s take 5.4 s in the simulation of tests/adaptive_sim.py;
#: from 10/s, 5.6 s; at the limit, 5.0 s).
ADAPTIVE_INITIAL = 20.0

#: How far below an explicit rate `make_limiter` paces.  A server that counts requests
#: in a sliding window answers 429 when jitter (threads, the network) brings the 51st
#: request of a 50/second pace into one window: against the simulator's 50/second, 200
#: requests at exactly 50/s met 3 429s, at 1% below 0 to 7, at 2% below 0 to 2, and at
#: 2.5% below none in three runs, at 97% of the limit or more.  Each 429 costs a
#: ``Retry-After`` of a whole second for every worker.
HEADROOM = 0.025

#: The slowest pace `adaptive_limiter` falls to: one request every five seconds.
ADAPTIVE_FLOOR = 0.2

#: Where `adaptive_limiter` holds after a 429: 95% of what the server was found to
#: sustain, twice the margin `HEADROOM` gives a rate that is known, since an estimate
#: counted over one second of answers is off by a request or two.
ADAPTIVE_SETTLE = 0.95

#: The fastest pace `adaptive_limiter` climbs to, in requests per second: far above
#: what a tenant is likely to allow, so that the start is not slowed on its way to the
#: first 429, and a bound on what a misread server can cost.
ADAPTIVE_CEILING = 500.0

_NUMBER = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_FORMS = "a number per second or text such as '50/second', '50/s' or '3000/minute'"


def tutorial_limiter(*, clock: Clock | None = None) -> TokenBucket:
    """The tutorial's preset: a token bucket of 100, refilled at 1.5 per second.

    Bursts of up to 100 requests, then 90 a minute.  These numbers come from the
    tutorial the project grew from, not from NICE: CXone publishes no limit for its
    reporting endpoints.  Use it against a tenant (or the simulator) known to allow
    them.

    Args:
        clock: Where time comes from (default: the real clock).
    """
    return TokenBucket(TUTORIAL_RATE, capacity=TUTORIAL_BURST, clock=clock)


def adaptive_limiter(
    *, clock: Clock | None = None, estimate: float | None = None
) -> AdaptiveLimiter:
    """The default limiter for a tenant whose limit nobody knows: it learns it.

    An `ratekit.http.AdaptiveLimiter` that starts at `ADAPTIVE_INITIAL` requests per
    second and raises the rate by half on each clean answer until the first 429; CXone
    answers it with ``Retry-After``, so the limiter then counts what the tenant
    accepted over the last second, holds at `ADAPTIVE_SETTLE` times that, and probes
    upwards only rarely (a probe costs every worker a ``Retry-After``).  Rate-limit
    headers, when a server sends them, are evidence: a quota bounds the pace.
    Requests are spaced, never bursty, and the client obeys each ``Retry-After``.  It
    stays between `ADAPTIVE_FLOOR` and `ADAPTIVE_CEILING`.  See the control law in
    docs/http.md, and ``bench/bench_adaptive.py`` for what it reaches.

    What it learns is its `ratekit.http.AdaptiveLimiter.estimate`: save it, and give it
    back as *estimate* to start the next limiter for the same tenant where this one
    ended (``ratekit-cxone export`` does so, per tenant).

    Args:
        clock: Where time comes from (default: the real clock).
        estimate: The tenant's sustainable rate as an earlier limiter learnt it, in
            requests per second, to start from; ``None`` (the default) to learn from
            scratch.

    Raises:
        ValueError: If *estimate* is not a positive finite number.
        TypeError: If *estimate* is not a number.
    """
    return AdaptiveLimiter(
        ADAPTIVE_INITIAL,
        floor=ADAPTIVE_FLOOR,
        ceiling=ADAPTIVE_CEILING,
        settle=ADAPTIVE_SETTLE,
        estimate=estimate,
        clock=clock,
    )


def make_limiter(
    rate: str | float | Rate | None = None,
    burst: int | None = None,
    *,
    clock: Clock | None = None,
    estimate: float | None = None,
) -> Limiter:
    """The limiter for a command line's ``--rate`` and ``--burst``.

    Args:
        rate: ``None`` to learn the limit (`adaptive_limiter`); else a fixed pace: text
            such as ``"50/second"``, ``"50/s"``, ``"3000/minute"`` or ``"100/10s"``,
            a bare number of requests per second (``"2.5"``), or a `ratekit.Rate`.
            It is paced `HEADROOM` (2.5%) below what it says, so that network jitter
            cannot push a request over a server's limit.
        burst: With a *rate*, how many requests may go at once (the token bucket's
            capacity); default 1: requests evenly spaced, which a server counting in
            any window accepts.  A larger burst suits servers known to allow one.
        clock: Where time comes from (default: the real clock).
        estimate: Without a *rate*: the rate an earlier limiter learnt for the same
            tenant, in requests per second, to start learning from (see
            `adaptive_limiter`); ``None`` to learn from scratch.

    Returns:
        A `ratekit.http.AdaptiveLimiter` without a rate, else a `ratekit.TokenBucket`.

    Raises:
        ConfigError: If *rate* cannot be read, *burst* is not a whole number of at
            least 1, *burst* or *estimate* comes with the wrong kind of limiter, or
            *estimate* is not a positive number; the message names which.
    """
    if rate is None:
        if burst is not None:
            raise ConfigError("burst needs a rate: a burst only applies to a fixed rate")
        try:
            return adaptive_limiter(clock=clock, estimate=estimate)
        except (TypeError, ValueError):
            raise ConfigError(
                f"invalid estimate {estimate!r}: expected a number of requests per second, "
                "above zero"
            ) from None
    if estimate is not None:
        raise ConfigError("estimate needs no rate: it is where learning a rate starts")
    pace = _rate(rate)
    given: object = burst
    if given is None:
        capacity = 1.0
    elif isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ConfigError(f"burst must be a whole number of requests, at least 1, got {given!r}")
    else:
        capacity = float(given)
    paced = Rate(pace.limit * (1 - HEADROOM), per=pace.per)
    return TokenBucket(paced, capacity=capacity, clock=clock)


def _rate(rate: str | float | Rate) -> Rate:
    try:
        if isinstance(rate, Rate):
            return rate
        if isinstance(rate, str):
            if _NUMBER.fullmatch(rate):
                return Rate(float(rate))
            return Rate.parse(rate)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(type(rate).__name__)  # noqa: TRY301 - reported below, by name
        return Rate(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid rate {rate!r}: expected {_FORMS}, above zero") from None

"""AdaptiveLimiter: AIMD on 429s and successes, and the server's rate-limit headers."""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING

import pytest
from loopback import LoopbackServer, Reply, Request

from ratekit import Scheduler
from ratekit.http import AdaptiveLimiter, Client
from ratekit.testing import FakeClock
from ratekit.typing import Limiter

if TYPE_CHECKING:
    from collections.abc import Iterator


def test_slow_start_then_multiplicative_decrease_then_additive_increase():
    """Successes double the rate until the first 429; then cuts and gentle increases."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(2.0, clock=clock)
    assert isinstance(limiter, Limiter)
    for _ in range(2):
        limiter.observe(200)
    assert limiter.rate == 3.0  # slow start: half a request per second more per success
    limiter.observe(429)
    assert limiter.rate == pytest.approx(1.8)  # 90% of the 2 it served in the window
    limiter.observe(429)  # within the window: the same congestion, no second cut
    assert limiter.rate == pytest.approx(1.8)
    clock.advance(1.0)
    limiter.observe(429)  # nothing served in the last window: a cut by decrease
    assert limiter.rate == pytest.approx(1.44)
    rate = 1.44
    for _ in range(3):  # after slow start: +increase per second of successes
        limiter.observe(200)
        rate += 0.5 / rate
    assert limiter.rate == pytest.approx(rate)


def test_rate_stays_between_floor_and_ceiling():
    """However the server answers, the rate stays within its bounds."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(5.0, floor=1.0, ceiling=8.0, window=0.001, clock=clock)
    for _ in range(100):
        limiter.observe(200)
    assert limiter.rate == 8.0
    for _ in range(100):
        clock.advance(1.0)
        limiter.observe(429)
    assert limiter.rate == 1.0


def test_grants_are_spaced_by_the_learnt_rate():
    """No burst: grants come one 1/rate apart, at the current rate."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(4.0, clock=clock)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps == [0.25, 0.25]
    assert not limiter.try_acquire()


def test_headers_set_the_rate_and_an_empty_quota_holds_until_reset():
    """RateLimit headers: remaining over reset sets the rate; remaining 0 holds requests."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(1.0, clock=clock)
    limiter.observe(200, {"X-RateLimit-Remaining": "50", "X-RateLimit-Reset": "10"})
    assert limiter.rate == 5.0
    limiter.observe(200, {"RateLimit": "limit=100, remaining=0, reset=30"})
    decision = limiter.try_acquire()
    assert not decision
    assert decision.retry_after == 30.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0}, "initial"),
        ({"floor": 5, "ceiling": 1}, "floor"),
        ({"decrease": 1.5}, "decrease"),
        ({"window": -1}, "window"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, match):
    """Bad settings raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        AdaptiveLimiter(**kwargs)


def test_learns_a_servers_limit_quickly_with_few_429s(server: LoopbackServer):
    """Against a server allowing 20/s, it reaches 90% of that within 10 s, under 5% 429s."""
    window: collections.deque[float] = collections.deque()
    lock = threading.Lock()
    answers: list[tuple[float, int]] = []

    def limited(request: Request) -> Reply:
        with lock:
            while window and window[0] <= request.at - 1.0:
                window.popleft()
            status = 429 if len(window) >= 20 else 200
            if status == 200:
                window.append(request.at)
            answers.append((request.at, status))
        return Reply(status)

    server.route("GET", "/api")(limited)
    limiter = AdaptiveLimiter(5.0)
    client = Client(limiter, base_url=server.url, retry=None)
    began = time.monotonic()

    def items() -> Iterator[int]:
        n = 0
        while time.monotonic() - began < 10.0:
            yield n
            n += 1

    with Scheduler(8) as scheduler:
        statuses = list(scheduler.map(lambda _: client.get("/api").status, items()))
    served_late = sum(1 for at, status in answers if status == 200 and at >= began + 6.0)
    assert served_late / 4.0 >= 0.9 * 20  # the last 4 of the 10 seconds
    assert statuses.count(429) / len(statuses) < 0.05


def test_reservations_levels_and_rest():
    """The shared limiter machinery works on the learnt rate: reserve, cancel, levels."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(2.0, clock=clock)
    assert repr(limiter) == "AdaptiveLimiter(rate=2, floor=0.1, ceiling=1000.0)"
    assert limiter.capacity == float("inf")
    assert limiter.statistics().level == 1.0
    assert limiter.try_acquire()
    booked = limiter.reserve()
    assert booked.delay == 0.5
    assert limiter.statistics().level == -2.0  # the next free slot is two requests ahead
    assert booked.cancel()
    assert limiter.try_acquire().retry_after == 0.5
    limiter.observe(500)  # neither a success nor a 429: nothing learnt
    assert limiter.rate == 2.0
    limiter.observe(200, {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "0"})
    assert limiter.rate == 2.0  # a reset due now says nothing about the rate

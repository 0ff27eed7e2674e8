"""AdaptiveLimiter: AIMD on 429s and successes, and the server's rate-limit headers."""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply, Request

from ratekit import AcquireCancelled, AcquireTimeout, Scheduler, SlidingWindow, all_of
from ratekit.http import AdaptiveLimiter, Client
from ratekit.retry import DEFAULT_MAX_RETRY_AFTER
from ratekit.testing import FakeClock
from ratekit.typing import CancelEvent, Limiter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def test_slow_start_then_multiplicative_decrease_then_additive_increase():
    """Successes double the rate until the first 429; then cuts and gentle increases."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(2.0, clock=clock)
    assert isinstance(limiter, Limiter)
    for _ in range(2):
        limiter.observe(200)
    assert limiter.rate == 4.0  # slow start: one request per second more per success
    limiter.observe(429)
    assert limiter.rate == pytest.approx(1.9)  # 95% of the 2 it served in the window
    limiter.observe(429)  # within the window: the same congestion, no second cut
    assert limiter.rate == pytest.approx(1.9)
    clock.advance(1.0)
    limiter.observe(429)  # nothing served in the last window: a cut by decrease
    assert limiter.rate == pytest.approx(1.52)
    rate = 1.52
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
        ({"settle": 1.5}, "settle"),
        ({"settle": 0}, "settle"),
        ({"window": -1}, "window"),
        ({"max_hold": -1}, "max_hold"),
        ({"max_hold": math.nan}, "max_hold"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, match):
    """Bad settings raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        AdaptiveLimiter(**kwargs)


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "4102444800"},  # 2100, a Unix time
        {"RateLimit": '"p";r=0;t=4102444800000'},  # the same in milliseconds
        {"RateLimit": "limit=10, remaining=0, reset=999999999"},  # 31.7 years of seconds
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "86400"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "1" + "0" * 300},
    ],
)
def test_a_reset_far_ahead_holds_requests_for_max_hold_at_most(headers):
    """A spent quota whose reset is years (or a day) away holds requests for max_hold."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(1.0, clock=clock)
    limiter.observe(429, headers)
    decision = limiter.try_acquire()
    assert not decision
    assert decision.retry_after == DEFAULT_MAX_RETRY_AFTER == 300.0
    limiter.acquire()
    assert clock.sleeps == [300.0]


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "1600000000"},  # 2020
        {"RateLimit": '"p";r=0;t=1600000000000'},
        {"RateLimit": "remaining=0, reset=1000000000"},  # 2001
    ],
)
def test_a_reset_at_a_past_unix_time_does_not_hold(headers):
    """A spent quota whose reset is a Unix time already past holds nothing."""
    limiter = AdaptiveLimiter(1.0, clock=FakeClock())
    limiter.observe(200, headers)
    assert limiter.try_acquire()


def test_max_hold_sets_the_longest_hold():
    """max_hold bounds the hold a reset asks for; None lifts the bound; 0 means no hold."""
    day = {"RateLimit-Remaining": "0", "RateLimit-Reset": "86400"}
    short = AdaptiveLimiter(clock=FakeClock(), max_hold=10)
    short.observe(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "30"})
    assert short.try_acquire().retry_after == 10.0
    short.observe(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "3"})
    assert short.try_acquire().retry_after == 10.0  # a shorter reset does not shorten a hold
    unbounded = AdaptiveLimiter(clock=FakeClock(), max_hold=None)
    unbounded.observe(200, day)
    assert unbounded.try_acquire().retry_after == 86400.0
    never = AdaptiveLimiter(clock=FakeClock(), max_hold=0)
    never.observe(200, day)
    assert never.try_acquire()


def test_max_hold_must_be_a_number():
    """A max_hold that is not a number raises TypeError naming it."""
    with pytest.raises(TypeError, match=r"^max_hold must be a number"):
        AdaptiveLimiter(max_hold="300")  # type: ignore[arg-type]


#: Header values a hostile or broken server may send for a reset: Unix times in seconds
#: and milliseconds (past, present and far ahead), decades of seconds, negative, NaN and
#: infinite numbers, numbers too large for a float, and text.
hostile_resets = st.one_of(
    st.integers(min_value=0, max_value=4 * 10**9).map(str),
    st.integers(min_value=10**12, max_value=4 * 10**12).map(str),
    st.integers(min_value=-(10**20), max_value=10**400).map(str),
    st.floats().map(repr),
    st.decimals(min_value=0, max_value=10**15, places=3).map(lambda d: format(d, "f")),
    st.sampled_from(["nan", "inf", "-inf", "-0", "1e9", ""]),
    st.text(max_size=12),
)
#: Every field a reset is read from, with {remaining} and {reset} to fill in.
RESET_FIELDS = [
    {"RateLimit": '"p";r={remaining};t={reset}'},
    {"RateLimit-Policy": '"p";q=10;w=60', "RateLimit": '"p";r={remaining};t={reset}'},
    {"RateLimit": "limit=10, remaining={remaining}, reset={reset}"},
    {"RateLimit-Remaining": "{remaining}", "RateLimit-Reset": "{reset}"},
    {"X-RateLimit-Remaining": "{remaining}", "X-RateLimit-Reset": "{reset}"},
    {"X-Rate-Limit-Remaining": "{remaining}", "X-Rate-Limit-Reset": "{reset}"},
    {"X-RateLimit-Remaining": "{remaining}", "X-RateLimit-Reset-After": "{reset}"},
]


@given(
    fields=st.sampled_from(RESET_FIELDS),
    reset=hostile_resets,
    remaining=st.sampled_from(["0", "0.0", "1", "250"]),
    status=st.sampled_from([200, 429, 503]),
    max_hold=st.one_of(st.just(DEFAULT_MAX_RETRY_AFTER), st.floats(min_value=0, max_value=1e4)),
)
def test_no_reset_holds_requests_longer_than_max_hold(fields, reset, remaining, status, max_hold):
    """Whatever a reset header says, the next request waits max_hold at most, and no error."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(1.0, max_hold=max_hold, clock=clock)
    headers = {
        name: value.replace("{remaining}", remaining).replace("{reset}", reset)
        for name, value in fields.items()
    }
    limiter.observe(status, headers)
    assert 0.1 <= limiter.rate <= 1000.0  # the default floor and ceiling
    limiter.acquire()
    assert all(0 < sleep <= max_hold for sleep in clock.sleeps)
    assert clock.now() <= max_hold


@pytest.mark.parametrize(
    ("reset", "sleeps"),
    [
        ("4102444800", [300.0, 300.0]),  # 2100: each request is held for max_hold
        ("1600000000", [1.0, 1.0]),  # 2020, past: no hold, only the rate's spacing
    ],
)
def test_a_client_is_not_held_for_years_by_a_unix_time_reset(server: LoopbackServer, reset, sleeps):
    """A server sending RateLimit-Reset as a Unix time holds a client minutes at most."""

    def spent(_request: Request) -> Reply:
        return Reply(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": reset})

    server.route("GET", "/api")(spent)
    clock = FakeClock()
    client = Client(AdaptiveLimiter(1.0, clock=clock), base_url=server.url, retry=None)
    for _ in range(3):
        assert client.get("/api").status == 200
    assert len(server.hits("/api")) == 3
    assert clock.sleeps == sleeps


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
    limiter = AdaptiveLimiter()  # from 1 request per second, the default
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


class EventfulClock:
    """A fake clock on which something happens during each sleep: *during(n)* runs first."""

    def __init__(self, during: Callable[[int], None]) -> None:
        self.fake = FakeClock()
        self.during = during
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.fake.now()

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        self.during(len(self.sleeps))
        self.sleeps.append(seconds)
        return self.fake.sleep(seconds, cancel)

    async def sleep_async(self, seconds: float) -> None:
        self.during(len(self.sleeps))
        self.sleeps.append(seconds)
        await self.fake.sleep_async(seconds)


def test_a_rate_learnt_while_waiting_applies_at_once():
    """A waiter takes the next free slot at the rate learnt meanwhile.

    Not a slot booked at the slow rate it arrived under: the third call waits 0.1 s, not 1 s.
    """

    def during(n: int) -> None:
        if n == 0:  # while the second call waits, the server answers 9 successes
            for _ in range(9):
                limiter.observe(200)

    clock = EventfulClock(during)
    limiter = AdaptiveLimiter(1.0, clock=clock)
    for _ in range(3):
        limiter.acquire()
    assert limiter.rate == 10.0
    assert clock.sleeps == [1.0, pytest.approx(0.1)]
    stats = limiter.statistics()
    assert (stats.granted, stats.waiting, stats.waited) == (3, 0, pytest.approx(1.1))


def test_a_slot_taken_by_another_caller_is_waited_for_again():
    """If another caller takes the slot while one sleeps, it sleeps until the next one."""

    def during(n: int) -> None:
        if n == 0:  # someone else takes the slot at t = 1 (as if it woke first)
            clock.fake.advance(1.0)
            assert limiter.try_acquire()

    clock = EventfulClock(during)
    limiter = AdaptiveLimiter(2.0, clock=clock)
    limiter.acquire()
    limiter.acquire()
    # Slept 0.5 s, woke at t = 1.5 to find the slot taken at t = 1 (free again at 1.5).
    assert clock.sleeps == [0.5]
    assert clock.now() == 1.5
    assert limiter.statistics().granted == 3


def test_cancel_and_timeouts_and_async_take_the_next_free_slot():
    """Cancelling a waiter gives nothing back (it held nothing); async waits the same."""
    cancel = threading.Event()

    def during(n: int) -> None:
        if n == 0:
            cancel.set()

    clock = EventfulClock(during)
    limiter = AdaptiveLimiter(1.0, clock=clock)
    limiter.acquire(cancel=cancel)  # granted at once: nothing to cancel
    with pytest.raises(AcquireCancelled):  # sleeps once, then is cancelled on waking
        limiter.acquire(cancel=cancel)
    assert limiter.statistics().cancelled == 1
    with pytest.raises(AcquireCancelled):  # already set: refused before any wait
        limiter.acquire(cancel=cancel)
    with pytest.raises(AcquireTimeout):  # with a timeout, the exact booking answers at once
        limiter.acquire(timeout=0.5)
    asyncio.run(limiter.acquire_async())
    asyncio.run(limiter.acquire_async(timeout=5.0))
    stats = limiter.statistics()
    assert (stats.granted, stats.waiting) == (3, 0)


def test_a_composition_passes_answers_on_to_its_learning_members():
    """all_of(AdaptiveLimiter, SlidingWindow): the client's reports reach the learner."""
    clock = FakeClock()
    learner = AdaptiveLimiter(4.0, clock=clock)
    composed = all_of(learner, SlidingWindow(100, 60.0, clock=clock))
    composed.observe(200)
    assert learner.rate == 5.0  # slow start: one more request per second per success
    composed.observe(429, {})
    assert learner.rate < 5.0

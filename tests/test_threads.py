"""Threads racing on one TokenBucket grant exactly what the sequential model grants."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from specs import KINDS

from ratekit import Reservation, TokenBucket
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

THREADS = 8


def race(work: Callable[[], None]) -> None:
    """Run *work* on THREADS threads released together."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_racing_try_acquire_grants_exactly_the_capacity_then_the_refill():
    """On a frozen clock, racing threads get exactly capacity grants, then exactly the refill."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, 100, clock=clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [bool(bucket.try_acquire()) for _ in range(200)]
        with lock:
            granted.extend(mine)

    race(work)
    assert sum(granted) == 100
    clock.advance(2.5)  # 25 tokens
    granted.clear()
    race(work)
    assert sum(granted) == 25
    stats = bucket.statistics()
    assert stats.granted == 125
    assert stats.denied == 2 * THREADS * 200 - 125


def test_racing_reservations_get_the_sequential_schedule():
    """Racing reservations receive exactly the slots a single thread would have received."""
    clock = FakeClock()
    bucket = TokenBucket(4.0, 10, clock=clock)
    reservations: list[Reservation] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [bucket.reserve() for _ in range(25)]
        with lock:
            reservations.extend(mine)

    race(work)
    model = TokenBucket(4.0, 10, clock=FakeClock())
    expected = [model.reserve().ready_at for _ in range(THREADS * 25)]
    assert sorted(r.ready_at for r in reservations) == expected


def test_racing_blocking_acquires_on_a_fake_clock_never_over_admit():
    """Blocking acquires from many threads are granted in distinct, correctly spaced slots."""
    clock = FakeClock()
    bucket = TokenBucket(5.0, 2, clock=clock)
    per_thread = 20
    race(lambda: [bucket.acquire() for _ in range(per_thread)])
    stats = bucket.statistics()
    assert stats.granted == THREADS * per_thread
    assert stats.waiting == 0
    # 160 grants from a full bucket of 2 need at least 158 / 5 seconds of refill.
    assert clock.now() >= (THREADS * per_thread - 2) / 5.0


every_kind = pytest.mark.parametrize("kind", list(KINDS))


@every_kind
def test_every_strategy_grants_racing_threads_what_one_thread_would(kind):
    """Racing try_acquire calls are granted exactly as often as sequential ones, each time."""
    clock, model_clock = FakeClock(), FakeClock()
    limiter, model = KINDS[kind](clock), KINDS[kind](model_clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [bool(limiter.try_acquire()) for _ in range(50)]
        with lock:
            granted.extend(mine)

    for advance in (0.0, 0.3, 1.0, 2.5, 0.01):
        clock.advance(advance)
        model_clock.advance(advance)
        granted.clear()
        race(work)
        expected = sum(bool(model.try_acquire()) for _ in range(THREADS * 50))
        assert sum(granted) == expected
    assert limiter.statistics().level == model.statistics().level


@every_kind
def test_every_strategy_gives_racing_reservations_the_sequential_schedule(kind):
    """Racing reservations get exactly the slots (and refusals) one thread would get."""
    limiter, model = KINDS[kind](FakeClock()), KINDS[kind](FakeClock())
    answers: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [limiter.reserve() for _ in range(10)]
        with lock:
            answers.extend((r.ok, r.ready_at) for r in mine)

    race(work)
    expected = [model.reserve() for _ in range(THREADS * 10)]
    assert sorted(answers) == sorted((r.ok, r.ready_at) for r in expected)

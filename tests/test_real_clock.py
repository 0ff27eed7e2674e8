"""The few tests on the real clock: waits wake on time and cancellation wakes at once.

Margins are generous: these machines are shared, so only lower bounds are strict.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ratekit import AcquireCancelled, AcquireTimeout, TokenBucket


def test_blocking_acquire_wakes_on_time():
    """A blocking acquire returns no earlier than its permit and not long after it."""
    bucket = TokenBucket(20.0, 1)
    bucket.try_acquire()
    wait = bucket.try_acquire().retry_after
    start = time.monotonic()
    bucket.acquire()
    elapsed = time.monotonic() - start
    assert elapsed >= wait - 0.002  # the permit came `wait` after the denial, just before
    assert elapsed < wait + 1.0


def test_cancel_wakes_a_blocked_thread_at_once():
    """Setting the cancel event wakes a thread blocked for a minute, which gets its tokens back."""
    bucket = TokenBucket(1 / 60, 1)
    bucket.try_acquire()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            bucket.acquire(cancel=cancel)
        except AcquireCancelled as error:
            outcome.append(error)

    thread = threading.Thread(target=blocked)
    thread.start()
    deadline = time.monotonic() + 5.0
    while bucket.statistics().waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert bucket.statistics().waiting == 1
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 2.0
    assert len(outcome) == 1
    stats = bucket.statistics()
    assert stats.cancelled == 1
    assert stats.level > -0.01  # the booked token came back


def test_timeout_raises_at_once_without_waiting():
    """A wait that cannot fit the timeout raises immediately, not after the timeout."""
    bucket = TokenBucket(0.1, 1)
    bucket.try_acquire()
    start = time.monotonic()
    with pytest.raises(AcquireTimeout):
        bucket.acquire(timeout=5.0)
    assert time.monotonic() - start < 1.0


def test_acquire_async_wakes_on_time():
    """acquire_async returns no earlier than its permit on the real event loop."""
    bucket = TokenBucket(20.0, 1)
    bucket.try_acquire()

    async def main() -> float:
        start = time.monotonic()
        await bucket.acquire_async()
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed >= 0.05 - 0.002
    assert elapsed < 1.05

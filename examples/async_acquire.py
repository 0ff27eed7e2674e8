"""asyncio tasks sharing one `TokenBucket` through `acquire_async`, with timeouts.

Eight tasks fetch "pages" through a bucket of 3 tokens refilled at 20 per second: three go
at once, the others 50 ms apart, and the event loop stays free while they wait.  Then the
two ways of bounding a wait: ``timeout=`` refuses at once (with the exact wait it would
have needed) when the wait is too long, while `asyncio.wait_for` waits until its deadline
and cancels the wait, which gives the booking back.

The whole run takes about half a second.  Run it with
``python examples/async_acquire.py``.
"""

from __future__ import annotations

import asyncio

import ratekit

PAGES = 8
RATE = ratekit.Rate(20, per=1.0)
CAPACITY = 3


async def fetch(bucket: ratekit.TokenBucket, page: int, start: float) -> int:
    """Wait for the limiter, then "fetch" a page (here: just report the time)."""
    await bucket.acquire_async()
    print(f"{bucket.clock.now() - start:6.3f} s  page {page} fetched")
    return page


async def ticker(stop: asyncio.Event) -> int:
    """Count event-loop ticks while the fetches wait, to show that nothing blocks."""
    ticks = 0
    while not stop.is_set():
        ticks += 1
        await asyncio.sleep(0.005)
    return ticks


async def main() -> None:
    """Fetch the pages concurrently, then show `timeout=` and `asyncio.wait_for`."""
    clock = ratekit.MonotonicClock()
    start = clock.now()
    bucket = ratekit.TokenBucket(RATE, capacity=CAPACITY, clock=clock)

    stop = asyncio.Event()
    ticks = asyncio.create_task(ticker(stop))
    pages = await asyncio.gather(*(fetch(bucket, page, start) for page in range(PAGES)))
    stop.set()
    print(f"fetched pages {pages}; the loop ticked {await ticks} times meanwhile")
    assert pages == list(range(PAGES))
    assert clock.now() - start >= (PAGES - CAPACITY) / RATE.per_second

    # The bucket is empty now: the whole capacity comes back after CAPACITY / rate = 150 ms.

    # timeout=... knows the exact wait up front: too long means an immediate AcquireTimeout,
    # with nothing taken and nothing slept.
    try:
        await bucket.acquire_async(cost=CAPACITY, timeout=0.01)
    except ratekit.AcquireTimeout as exc:
        print(f"timeout=0.01: refused at once, the wait would be {exc.retry_after:.3f} s")

    # asyncio.wait_for waits until its deadline, then cancels the task: the booking is
    # returned, so it does not delay anyone who comes after.
    try:
        await asyncio.wait_for(bucket.acquire_async(cost=CAPACITY), timeout=0.01)
    except asyncio.TimeoutError:
        print("wait_for(timeout=0.01): gave up after 10 ms, booking returned")

    # Without a bound, the wait simply ends when the tokens are there.
    await bucket.acquire_async(cost=CAPACITY)
    print(f"{clock.now() - start:6.3f} s  cost {CAPACITY} granted")

    stats = bucket.statistics()
    print(
        f"granted={stats.granted} denied={stats.denied} timed_out={stats.timed_out} "
        f"cancelled={stats.cancelled}"
    )
    assert (stats.granted, stats.timed_out) == (PAGES + 1, 1)


if __name__ == "__main__":
    asyncio.run(main())

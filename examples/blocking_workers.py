"""Several threads sharing one `TokenBucket`, with real (short) waits.

Four worker threads each make three calls through one bucket of 4 tokens refilled at 10
per second.  The first four calls go through at once, then the calls are spaced 100 ms
apart, whichever thread makes them: each blocked thread sleeps exactly once, for exactly
its delay.  A late thread then asks for the whole capacity and is cancelled while it waits,
through a `threading.Event`; the cancelled wait gives its booking back.

The whole run takes less than a second.  Run it with ``python examples/blocking_workers.py``.
"""

from __future__ import annotations

import threading

import ratekit

WORKERS = 4
CALLS_PER_WORKER = 3
RATE = ratekit.Rate(10, per=1.0)
CAPACITY = 4


def main() -> None:
    """Run the workers, print when each call was granted, then cancel a late waiter."""
    clock = ratekit.MonotonicClock()
    start = clock.now()
    bucket = ratekit.TokenBucket(RATE, capacity=CAPACITY, clock=clock)
    print_lock = threading.Lock()

    def worker(name: str) -> None:
        for call in range(CALLS_PER_WORKER):
            bucket.acquire()
            with print_lock:
                print(f"{clock.now() - start:6.3f} s  {name} call {call} granted")

    threads = [threading.Thread(target=worker, args=(f"worker-{i}",)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = WORKERS * CALLS_PER_WORKER
    elapsed = clock.now() - start
    # The bucket never over-admits: after the burst, the other calls need (n - burst) / rate.
    least = (total - CAPACITY) / RATE.per_second
    print(f"{total} calls in {elapsed:.3f} s (the limit allows no less than {least:.3f} s)")
    assert elapsed >= least

    # A late thread asks for the whole capacity; shut it down while it waits.
    shutdown = threading.Event()
    outcome: list[str] = []

    def late_worker() -> None:
        try:
            bucket.acquire(cost=CAPACITY, cancel=shutdown)
            outcome.append("granted")
        except ratekit.AcquireCancelled as exc:
            outcome.append(f"cancelled: {exc}")

    late = threading.Thread(target=late_worker)
    late.start()
    shutdown.wait(0.02)  # let it start waiting (it needs 0.4 s)
    shutdown.set()
    late.join()
    print(f"late worker {outcome[0]}")

    stats = bucket.statistics()
    print(
        f"granted={stats.granted} cancelled={stats.cancelled} waiting={stats.waiting} "
        f"waited={stats.waited:.3f} s in total"
    )
    assert stats.granted + stats.cancelled == total + 1  # the late worker is one or the other
    assert stats.waiting == 0


if __name__ == "__main__":
    main()

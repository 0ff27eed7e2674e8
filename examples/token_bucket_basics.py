"""Non-blocking decisions with a token bucket: `try_acquire` and an exact `retry_after`.

A bucket of 3 tokens refilled at 2 per second grants a burst of 3, then refuses and says
exactly how long to wait.  Waiting that long is enough, and waiting any less is not.  The
bucket runs on a `FakeClock`, so the script moves time forward itself and finishes at once.

Run it with ``python examples/token_bucket_basics.py``.
"""

from __future__ import annotations

import math

import ratekit
from ratekit.testing import FakeClock


def main() -> None:
    """Show a burst, a refusal with its `retry_after`, and costs above one."""
    clock = FakeClock()
    bucket = ratekit.TokenBucket(ratekit.Rate.parse("2/s"), capacity=3, clock=clock)
    print(f"{bucket!r}, starting full")

    # The burst: the bucket starts full.
    for call in range(4):
        decision = bucket.try_acquire()
        verdict = "granted" if decision else f"denied, retry after {decision.retry_after} s"
        print(f"t={clock.now():.2f} s  call {call}: {verdict}")
    assert not decision
    assert decision.retry_after == 0.5

    # retry_after is exact: one float step earlier is too early, the instant itself is not.
    ready = clock.now() + decision.retry_after
    clock.advance_to(math.nextafter(ready, -math.inf))
    assert not bucket.try_acquire()
    print(f"t={clock.now():.17f} s  one step before the instant: still denied")
    clock.advance_to(ready)
    assert bucket.try_acquire()
    print(f"t={clock.now():.2f} s  at the instant: granted")

    # Costs need not be 1: a heavier call takes more tokens, and waits longer for them.
    decision = bucket.try_acquire(cost=2.5)
    print(f"t={clock.now():.2f} s  cost 2.5: denied, retry after {decision.retry_after} s")
    assert decision.retry_after == 1.25
    clock.advance(decision.retry_after)
    assert bucket.try_acquire(cost=2.5)
    print(f"t={clock.now():.2f} s  cost 2.5: granted")

    # A cost above the capacity could never be granted: refused at once, not waited for.
    try:
        bucket.try_acquire(cost=4)
    except ratekit.CostTooLarge as exc:
        print(f"cost 4: {exc}")

    stats = bucket.statistics()
    print(f"granted={stats.granted} denied={stats.denied} level={stats.level}")
    assert (stats.granted, stats.denied) == (5, 3)


if __name__ == "__main__":
    main()

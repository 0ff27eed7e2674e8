"""Several limits at once: a burst limit and a daily quota with `all_of`, and `limiter`.

Many APIs state more than one limit, such as "2 calls per second, bursts of 3, and at most
8 calls per day".  `ratekit.all_of` composes one limiter per rule into a single limiter
that grants a call only when every rule allows it, takes the cost from all of them, and
takes nothing from any of them when one refuses.  A blocking call waits for the earliest
instant that suits them all.  `ratekit.limiter` builds such a composition from text.
Everything runs on a `FakeClock`, so the script finishes at once.

Run it with ``python examples/composed_limits.py``.
"""

from __future__ import annotations

import ratekit
from ratekit.testing import FakeClock

DAY = 86_400.0


def burst_and_quota() -> None:
    """A token bucket for the burst limit, a sliding window for the daily quota."""
    clock = FakeClock()
    burst = ratekit.TokenBucket("2/s", capacity=3, clock=clock)
    quota = ratekit.SlidingWindow(8, DAY, clock=clock)
    api = ratekit.all_of(burst, quota)
    print(api)

    # The burst goes at once, then the bucket spaces the calls, until the quota is spent.
    for call in range(8):
        api.acquire()
        print(f"t={clock.now():.1f} s  call {call} granted")
    assert clock.now() == 2.5

    # The bucket is full again, but the quota is not: the call is refused, with the exact
    # wait until the first call leaves the day's window, and nothing is taken from either.
    clock.advance(1.5)
    decision = api.try_acquire()
    print(f"t={clock.now():.1f} s  call 8 denied, retry after {decision.retry_after} s")
    assert not decision
    assert clock.now() + decision.retry_after == DAY
    level = burst.statistics().level
    print(f"the bucket still holds {level:g} tokens: a refusal takes nothing from any limit")
    assert level == 3.0

    # A blocking call with a timeout knows the wait up front and refuses at once.
    try:
        api.acquire(timeout=60.0)
    except ratekit.AcquireTimeout as exc:
        print(f"acquire(timeout=60): {exc}")

    clock.advance_to(DAY)
    assert api.try_acquire()
    print(f"t={clock.now():.1f} s  call 8 granted, the first call has left the window")


def from_text() -> None:
    """The same kind of composition, stated as text: one sliding window per limit."""
    clock = FakeClock()
    api = ratekit.limiter("2/second, 5/minute", clock=clock)
    print(api)

    for call in range(5):
        api.acquire(timeout=10.0)
        print(f"t={clock.now():.1f} s  call {call} granted")
    assert clock.sleeps == [1.0, 1.0]  # two waits for the per-second limit

    # Five calls within the minute: the next one would wait 58 s, more than the timeout.
    try:
        api.acquire(timeout=10.0)
    except ratekit.AcquireTimeout as exc:
        print(f"t={clock.now():.1f} s  call 5 refused at once, retry after {exc.retry_after} s")
    assert clock.now() == 2.0  # nothing was slept


def main() -> None:
    """Run both compositions."""
    burst_and_quota()
    print()
    from_text()


if __name__ == "__main__":
    main()

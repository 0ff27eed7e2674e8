"""One limit per tenant with `Keyed`: keys limited independently, rested keys forgotten.

A service lets each tenant make 1 call per second, with bursts of 3.  `ratekit.Keyed`
makes one token bucket per tenant on first use, so one busy tenant never slows down the
others.  ``max_keys`` bounds the memory: to make room for a new tenant, `Keyed` forgets a
tenant whose bucket is full again (a fresh bucket would make the same decisions, so no
limit is reset); while every tenant held still limits something, the new one is refused
with `TooManyKeys` and the time until a tenant comes to rest.  Everything runs on a
`FakeClock`, so the script finishes at once.

Run it with ``python examples/per_key_limits.py``.
"""

from __future__ import annotations

import ratekit
from ratekit.testing import FakeClock


def call(tenants: ratekit.Keyed[str], clock: FakeClock, tenant: str) -> None:
    """Make one non-blocking call for *tenant* and print what happened."""
    try:
        decision = tenants.try_acquire(tenant)
    except ratekit.TooManyKeys as exc:
        print(f"t={clock.now():.1f} s  {tenant}: new key refused, retry after {exc.retry_after} s")
        return
    verdict = "granted" if decision else f"denied, retry after {decision.retry_after} s"
    print(f"t={clock.now():.1f} s  {tenant}: {verdict}")


def main() -> None:
    """Two tenants with their own limits, then a third that needs one of them forgotten."""
    clock = FakeClock()
    tenants: ratekit.Keyed[str] = ratekit.Keyed(
        lambda: ratekit.TokenBucket("1/s", capacity=3, clock=clock), max_keys=2
    )

    # acme uses its burst and is refused; globex is not affected.
    for tenant in ["acme", "acme", "acme", "acme", "globex"]:
        call(tenants, clock, tenant)

    # Both keys still limit something (neither bucket is full), so a third tenant is
    # refused rather than resetting one of them.  globex's bucket is full again in 1 s.
    call(tenants, clock, "initech")

    # acme waits for its next token; the clock moves on by exactly that wait.
    tenants.acquire("acme")
    print(f"t={clock.now():.1f} s  acme: granted after waiting")

    # globex is at rest now: it is forgotten to make room for initech.
    call(tenants, clock, "initech")
    print(
        f"{len(tenants)} keys held, {tenants.evicted} forgotten; globex held: {'globex' in tenants}"
    )
    assert "globex" not in tenants
    assert tenants.statistics("globex") is None  # its statistics went with it

    stats = tenants.statistics("acme")
    assert stats is not None
    print(f"acme: granted={stats.granted} denied={stats.denied} waited={stats.waited} s")
    assert (stats.granted, stats.denied) == (4, 1)

    # globex comes back: acme and initech still limit, so it is refused until initech's
    # bucket is full again; then initech is forgotten, and globex starts afresh with a
    # full bucket, which it would have had by now anyway.
    call(tenants, clock, "globex")
    clock.advance(1.0)
    for _ in range(4):
        call(tenants, clock, "globex")
    assert tenants.evicted == 2


if __name__ == "__main__":
    main()

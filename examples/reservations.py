"""Booking future slots with `reserve`: delays, `max_wait`, and `cancel`.

A job planner books slots for a batch of jobs on a bucket of 2 tokens refilled at 1 per
second.  Each `Reservation` says when its job may run; a job that would wait longer than
`max_wait` is refused without booking anything; a job that is called off gives its slot
back with `cancel`, and the next booking takes it.  Everything runs on a `FakeClock`, so
the script finishes at once.

Run it with ``python examples/reservations.py``.
"""

from __future__ import annotations

import ratekit
from ratekit.testing import FakeClock


def describe(job: str, reservation: ratekit.Reservation) -> str:
    """One line about a reservation."""
    if not reservation.ok:
        return f"{job}: refused (it would wait {reservation.delay:.1f} s)"
    return f"{job}: cost {reservation.cost:g}, runs in {reservation.delay:.1f} s"


def main() -> None:
    """Book a batch, refuse a job that would wait too long, cancel one, run the rest."""
    clock = FakeClock()
    bucket = ratekit.TokenBucket("1/s", capacity=2, clock=clock)

    jobs = {"report": 2.0, "sync": 1.0, "backup": 1.0}
    booked: dict[str, ratekit.Reservation] = {}
    for job, cost in jobs.items():
        booked[job] = bucket.reserve(cost=cost)
        print(describe(job, booked[job]))
    assert [r.ready_at for r in booked.values()] == [0.0, 1.0, 2.0]

    # The queue is 3 s deep now: a job that must start within 2 s is refused, and books nothing.
    urgent = bucket.reserve(max_wait=2.0)
    print(describe("urgent", urgent))
    assert not urgent.ok
    assert urgent.delay == 3.0

    # The backup is called off.  It is the latest booking, so its whole cost goes back
    # and the next booking takes its slot.
    assert booked.pop("backup").cancel()
    print("backup: cancelled, its slot is free again")
    booked["cleanup"] = bucket.reserve()
    print(describe("cleanup", booked["cleanup"]))
    assert booked["cleanup"].ready_at == 2.0

    # Run the jobs in order, each at its time, sleeping on the limiter's own clock.
    for job, reservation in sorted(booked.items(), key=lambda item: item[1].ready_at):
        bucket.clock.sleep(reservation.ready_at - clock.now())
        print(f"t={clock.now():.1f} s  {job} runs")
        assert clock.now() == reservation.ready_at

    # Once its time has come, a reservation counts as used: cancelling returns nothing.
    assert not booked["sync"].cancel()
    print("sync: too late to cancel, it counts as used")

    # Four bookings were made; the withdrawn one counts as cancelled, not granted.
    stats = bucket.statistics()
    print(f"granted={stats.granted} denied={stats.denied} cancelled={stats.cancelled}")
    assert (stats.granted, stats.denied, stats.cancelled) == (3, 1, 1)


if __name__ == "__main__":
    main()

"""Retry a flaky API with `RetryPolicy`: backoff, ``Retry-After``, a deadline, a budget.

A simulated API fails the way real ones do: ``429 Too Many Requests`` with a
``Retry-After`` header, ``503 Service Unavailable``, and dropped connections.  One
`RetryPolicy` runs every request: between attempts it waits what the server asks for
when it sends ``Retry-After`` (cut to ``max_retry_after``), and otherwise an exponential
backoff with full jitter; it gives up at once when a wait would end past its deadline.
A hook logs each retry with the `logging` module.  A `RetryBudget` shared by all
requests lets them retry while most requests succeed, and refuses retries at once when
the API goes down, so that an outage does not turn into a retry storm.

The policy runs on a `FakeClock` and the jitter comes from a seeded `random.Random`, so
the script finishes at once and prints the same log on every run.

Run it with ``python examples/retry_with_backoff.py``.
"""

from __future__ import annotations

import logging
import random
import sys

import attrs

from ratekit.retry import ExponentialBackoff, RetryBudget, RetryError, RetryEvent, RetryPolicy
from ratekit.testing import FakeClock

log = logging.getLogger("orders")

#: Each request to the simulated API takes this long, in seconds.
LATENCY = 0.1


@attrs.frozen
class Response:
    """A response-like object: the policy reads its ``status`` and ``headers``."""

    status: int
    headers: dict[str, str] = attrs.field(factory=dict)


#: What the API does on a request: answer with a response, or drop the connection.
Outcome = Response | ConnectionError


class FlakyApi:
    """A simulated HTTP API that plays a script of outcomes for each path.

    The last outcome of a script repeats for every later request of that path.
    """

    def __init__(self, clock: FakeClock, scripts: dict[str, list[Outcome]]) -> None:
        self.clock = clock
        self.scripts = scripts
        self.requests = 0

    def get(self, path: str) -> Response:
        """Answer one request for *path*, taking `LATENCY` seconds."""
        self.requests += 1
        script = self.scripts[path]
        outcome = script.pop(0) if len(script) > 1 else script[0]
        self.clock.advance(LATENCY)
        if isinstance(outcome, ConnectionError):
            raise outcome
        return outcome


def describe(exception: BaseException | None, result: object) -> str:
    """Name what an attempt ended with: the exception's class, or the response's status."""
    if exception is not None:
        return type(exception).__name__
    return f"status {result.status}" if isinstance(result, Response) else repr(result)


def log_retry(event: RetryEvent) -> None:
    """Log one retry: which attempt failed, how, and how long the loop waits."""
    source = "Retry-After" if event.retry_after is not None else "backoff"
    log.info(
        "  attempt %d failed (%s); retrying in %.2f s (%s)",
        event.attempt,
        describe(event.exception, event.result),
        event.delay,
        source,
    )


def fetch(api: FlakyApi, policy: RetryPolicy, path: str) -> None:
    """Get *path* under *policy* and log how it ended."""
    clock = api.clock
    log.info("t=%5.2f s  GET %s", clock.now(), path)
    try:
        response = policy.call(api.get, path)
    except RetryError as error:  # RetryBudgetExhausted too, with reason "budget"
        last = describe(error.last_exception, error.last_result)
        tries = f"{error.attempts} attempt{'' if error.attempts == 1 else 's'}"
        log.info(
            "t=%5.2f s  %s: gave up after %s (%s), last: %s",
            clock.now(),
            path,
            tries,
            error.reason,
            last,
        )
    else:
        log.info("t=%5.2f s  %s: %d", clock.now(), path, response.status)


def main() -> None:
    """Fetch orders through retries, past a deadline, then through an outage."""
    # The log goes to stdout, message only, so that it reads like the script's output.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")

    clock = FakeClock()
    ok, unavailable = Response(200), Response(503)
    reset = ConnectionError("connection reset by peer")
    busy = Response(429, {"Retry-After": "5"})
    very_busy = Response(429, {"Retry-After": "600"})  # ten minutes: more than we obey
    api = FlakyApi(
        clock,
        {
            "/orders/1": [ok],
            "/orders/2": [reset, unavailable, ok],
            "/orders/3": [busy, ok],
            "/orders/4": [very_busy, very_busy, ok],
            # Then the API goes down: every request fails.
            **{f"/orders/{n}": [reset, unavailable] for n in range(5, 8)},
        },
    )

    # Retries allowed: one per ten successes, plus a floor of one per ten seconds, both
    # counted over the last minute and shared by every request made under the policy.
    budget = RetryBudget(ratio=0.1, min_per_second=0.1, ttl=60.0, clock=clock)
    policy = RetryPolicy(
        attempts=4,
        deadline=20.0,  # no attempt starts more than 20 s after the first one
        backoff=ExponentialBackoff(  # full jitter: uniform in [0, 0.5 s], [0, 1 s], ... [0, 8 s]
            base=0.5,
            cap=8.0,
            random=random.Random(2024),  # noqa: S311 - jitter, not cryptography
        ),
        max_retry_after=10.0,  # obey Retry-After up to 10 s
        budget=budget,
        on_retry=log_retry,
        clock=clock,
    )

    # Orders 2 to 4 retry four times in all; the budget allows 6.3 retries (6 for the
    # floor, 0.3 for three successes), so order 5 gets two more, and then every request
    # fails after its first attempt, without a single sleep, until the budget recovers.
    for n in range(1, 8):
        fetch(api, policy, f"/orders/{n}")
    assert api.requests == 13
    assert clock.sleeps[2:4] == [5.0, 10.0]  # Retry-After: 5, then Retry-After: 600 cut to 10
    assert len(clock.sleeps) == 6  # orders 6 and 7 never slept

    log.info(
        "%d requests for 7 orders in %.2f s, %.2f s of it asleep; %.1f retries left",
        api.requests,
        clock.now(),
        sum(clock.sleeps),
        budget.balance,
    )


if __name__ == "__main__":
    main()

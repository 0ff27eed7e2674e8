"""A virtual-time model of clients paced by a limiter against server-side limiters.

Thousands of virtual seconds run in milliseconds: workers are events on one heap, the
limiter runs on a `FakeClock` moved to each event's instant, and each server decides
at the instant a request reaches it.  The client side mirrors `ratekit.http.Client`
with a `ratekit.Scheduler`: each worker waits out the shared cooldown, takes the next
free slot of the limiter (as `AdaptiveLimiter.acquire` does: sleep until the slot
frees, take it if still free), sends, reports the answer to the limiter with the
instant the request was sent, shares a ``Retry-After`` as a cooldown, and retries a
429 after its ``Retry-After`` or at once, paced by the limiter again.

The five servers are the kinds the adaptive limiter is measured against in
``bench/bench_adaptive.py``: a sliding window with ``Retry-After`` in whole seconds
(the CXone simulator), a fixed window with ``X-RateLimit-*`` headers as Flask-Limiter
sends them, a fixed window with the IETF fields, a strictly spaced leaky bucket
(nginx's ``limit_req`` without a burst) and a token bucket with a burst (``burst=10
nodelay``), the last two with no headers at all.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

    from ratekit.http import AdaptiveLimiter


#: The Unix time of virtual instant 0, for the servers that send resets as Unix times.
EPOCH = 1_767_225_600.37


def unix(clock: FakeClock) -> Callable[[], float]:
    """The Unix time on *clock*: the ``wall`` to give a limiter run by `run_job`."""
    return lambda: EPOCH + clock.now()


class Server(Protocol):
    """A server-side limiter: the answer to a request arriving at *at*."""

    limit: float

    def answer(self, at: float) -> tuple[int, dict[str, str]]: ...


@dataclass
class SlidingWindowServer:
    """At most *limit* requests in any *window* seconds; 429 with whole-second Retry-After."""

    limit: float
    window: float = 1.0
    accepted: deque[float] = field(default_factory=deque)

    def answer(self, at: float) -> tuple[int, dict[str, str]]:
        while self.accepted and self.accepted[0] <= at - self.window:
            self.accepted.popleft()
        if len(self.accepted) < self.limit:
            self.accepted.append(at)
            return 200, {}
        wait = self.accepted[0] + self.window - at
        return 429, {"Retry-After": str(max(1, math.ceil(wait)))}


@dataclass
class FlaskLimiterServer:
    """Flask-Limiter's fixed window (memory storage), headers on.

    The window starts at the first request after the previous one expired.  The reset
    is ``int(expiry + 1)`` as a Unix time and ``Retry-After`` is ``int(reset - now)``,
    as Flask-Limiter 4 writes them.
    """

    limit: float
    window: float = 1.0
    count: int = 0
    expiry: float = -math.inf
    epoch: float = EPOCH  # the Unix time of virtual instant 0 (see `unix`)

    def answer(self, at: float) -> tuple[int, dict[str, str]]:
        if at >= self.expiry:
            self.count = 0
        status = 200
        if self.count < self.limit:
            self.count += 1
            if self.count == 1:
                self.expiry = at + self.window
        else:
            status = 429
        # The reset as a whole-second Unix time, up to a second late.
        reset_at = int(self.expiry + self.epoch + 1)
        headers = {
            "X-RateLimit-Limit": str(int(self.limit)),
            "X-RateLimit-Remaining": str(int(max(self.limit - self.count, 0))),
            "X-RateLimit-Reset": str(reset_at),
        }
        if status == 429:
            headers["Retry-After"] = str(int(reset_at - (at + self.epoch)))
        return status, headers


@dataclass
class IETFServer:
    """A fixed window aligned on whole seconds, with the IETF RateLimit fields."""

    limit: float
    window: float = 1.0
    count: int = 0
    start: float = -math.inf

    def answer(self, at: float) -> tuple[int, dict[str, str]]:
        start = math.floor(at / self.window) * self.window
        if start != self.start:
            self.start, self.count = start, 0
        status = 200
        if self.count < self.limit:
            self.count += 1
        else:
            status = 429
        reset = max(1, math.ceil(self.start + self.window - at))
        remaining = int(self.limit - self.count)
        headers = {
            "RateLimit-Policy": f'"default";q={int(self.limit)};w={int(self.window)}',
            "RateLimit": f'"default";r={remaining};t={reset}',
        }
        if status == 429:
            headers["Retry-After"] = str(reset)
        return status, headers


@dataclass
class StrictSpacingServer:
    """A leaky bucket without a burst: 429 (no headers) sooner than 1/limit after the last."""

    limit: float
    last: float = -math.inf

    def answer(self, at: float) -> tuple[int, dict[str, str]]:
        if at - self.last >= 1 / self.limit:
            self.last = at
            return 200, {}
        return 429, {}


@dataclass
class TokenBucketServer:
    """A token bucket of *burst* refilled at *limit*: 429 (no headers) when empty."""

    limit: float
    burst: float = 10.0
    level: float = math.nan
    stamp: float = 0.0

    def answer(self, at: float) -> tuple[int, dict[str, str]]:
        if math.isnan(self.level):
            self.level, self.stamp = self.burst, at
        self.level = min(self.burst, self.level + (at - self.stamp) * self.limit)
        self.stamp = at
        if self.level >= 1:
            self.level -= 1
            return 200, {}
        return 429, {}


#: The server kinds by name, each a factory of a server at a limit.
SERVERS: dict[str, Callable[[float], Server]] = {
    "sliding": SlidingWindowServer,
    "x-ratelimit": FlaskLimiterServer,
    "ietf": IETFServer,
    "strict": StrictSpacingServer,
    "burst": TokenBucketServer,
}


@dataclass
class Outcome:
    """What one simulated job did."""

    requests: int = 0
    throttled: int = 0
    elapsed: float = 0.0
    pages: int = 0
    trace: list[tuple[float, float]] = field(default_factory=list)  # (instant, rate)

    def share(self, limit: float) -> float:
        """Pages per second over the job, as a share of *limit*."""
        return self.pages / self.elapsed / limit if self.elapsed > 0 else 0.0


def run_job(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one event loop, written out
    make_limiter: Callable[[FakeClock], AdaptiveLimiter],
    server: Server,
    *,
    pages: int = 200,
    workers: int = 4,
    latency: float = 0.003,
    jitter: float = 0.001,
    seed: int = 0,
    until: float = 10_000.0,
) -> Outcome:
    """Run a job of *pages* requests with *workers* against *server*, in virtual time.

    Each request reaches the server half a round trip after it is sent and its answer
    comes back after the other half; a round trip is *latency* plus up to *jitter*.
    """
    rng = random.Random(seed)
    clock = FakeClock(1000.0)
    limiter = make_limiter(clock)
    start = clock.now()
    outcome = Outcome()
    cooldown = -math.inf
    events: list[tuple[float, int, int, str, float]] = []  # (at, order, worker, kind, sent)
    order = 0
    next_page = 0
    busy = [False] * workers

    def push(at: float, worker: int, kind: str, sent: float = 0.0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, worker, kind, sent))

    for worker in range(workers):
        push(start, worker, "ready")
    last_trace = -math.inf
    while events:
        at, _, worker, kind, sent = heapq.heappop(events)
        if at > start + until:
            break
        clock.advance_to(max(at, clock.now()))
        now = clock.now()
        if now - last_trace >= 0.25:
            outcome.trace.append((now - start, limiter.rate))
            last_trace = now
        if kind == "ready":
            if not busy[worker]:
                if next_page >= pages:
                    continue
                next_page += 1
                busy[worker] = True
            if now < cooldown:
                push(cooldown, worker, "ready")
                continue
            decision = limiter.try_acquire()
            if not decision:
                push(now + decision.retry_after, worker, "ready")
                continue
            if now < cooldown:  # pragma: no cover - a cooldown began while it waited
                push(cooldown, worker, "ready")
                continue
            outcome.requests += 1
            trip = latency + rng.random() * jitter
            push(now + trip / 2, worker, "arrive", now)
            continue
        if kind == "arrive":
            status, headers = server.answer(now)
            trip = latency + rng.random() * jitter
            push(now + trip / 2, worker, f"answer:{status}:{_pack(headers)}", sent)
            continue
        _, code, packed = kind.split(":", 2)
        status, headers = int(code), _unpack(packed)
        limiter.observe(status, headers, sent_at=sent)
        if status == 429:
            outcome.throttled += 1
            retry_after = headers.get("Retry-After")
            if retry_after is not None:
                cooldown = max(cooldown, now + float(retry_after))
            push(now, worker, "ready")
            continue
        busy[worker] = False
        outcome.pages += 1
        outcome.elapsed = now - start
        push(now, worker, "ready")
    return outcome


def _pack(headers: dict[str, str]) -> str:
    return "\x1f".join(f"{name}\x1e{value}" for name, value in headers.items())


def _unpack(packed: str) -> dict[str, str]:
    if not packed:
        return {}
    return dict(item.split("\x1e", 1) for item in packed.split("\x1f"))  # type: ignore[misc]

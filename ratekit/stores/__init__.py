"""Shared limits: one limit held across processes and hosts, in SQLite or Redis.

`RedisStore` holds the four strategies and their compositions in Redis, for processes on
many hosts: one round trip per call, atomic, on the Redis server's clock;
`AsyncRedisStore` holds the same limits for asyncio, on ``redis.asyncio``.
`sqlite_limiter` and `multiprocess_limiter` share a limit between the processes of one
host, on pyrate-limiter's buckets, and `PyrateLimiter` exposes any pyrate-limiter bucket
or limiter as a ratekit limiter.  Every one of them is a `ratekit.typing.Limiter` (the
asyncio one has the same calls, awaited), and raises `StoreUnavailable` when its store
cannot be reached (unless told to fail open).
"""

from __future__ import annotations

from ratekit._errors import StoreUnavailable
from ratekit.stores._pyrate import PyrateLimiter, multiprocess_limiter, sqlite_limiter
from ratekit.stores._redis import RedisLimiter, RedisStore
from ratekit.stores._redis_async import AsyncRedisLimiter, AsyncRedisStore, AsyncReservation

__all__ = [
    "AsyncRedisLimiter",
    "AsyncRedisStore",
    "AsyncReservation",
    "PyrateLimiter",
    "RedisLimiter",
    "RedisStore",
    "StoreUnavailable",
    "multiprocess_limiter",
    "sqlite_limiter",
]

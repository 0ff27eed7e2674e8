"""ratekit where calls are already made: requests, httpx and aiohttp.

Each integration is a module of its own, with an extra of its own, and imports its
library only when it is imported itself:

- `ratekit.integrations.requests` (``pip install 'ratekit[requests]'``):
  `RateLimitedAdapter`, mounted on a ``requests.Session``;
- `ratekit.integrations.httpx` (``pip install 'ratekit[httpx]'``): `RateLimitedTransport`
  and `AsyncRateLimitedTransport`, given to an ``httpx.Client`` or ``httpx.AsyncClient``;
- `ratekit.integrations.aiohttp` (``pip install 'ratekit[aiohttp]'``): a client
  middleware for an ``aiohttp.ClientSession``.

Every one sends each request through the same steps as `ratekit.http.Client`: the
shared cooldown after a 429 or 503 with ``Retry-After``, a turn at the limiter, the
answer reported to a limiter that learns (`ratekit.http.AdaptiveLimiter`), and retries
by a `ratekit.retry.RetryPolicy` that repeats only what is safe to repeat.  Two of them,
or a `ratekit.http.Client`, given the same limiter share its limit and its cooldown.
"""

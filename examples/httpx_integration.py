"""An httpx client paced, retried and authenticated by ratekit, with one changed line.

A small JSON API runs on loopback, in a thread of this script.  ``GET /items/N`` returns
item N, but the sixth request it receives is refused with ``429 Too Many Requests`` and
``Retry-After: 1``; ``POST /orders`` always fails with ``502 Bad Gateway``; ``GET /me``
accepts only the bearer token ``token-2`` (``token-1`` has expired).

The code starts as plain httpx, ``httpx.Client(base_url=...)``, and gets ratekit by
giving the client a transport: ``transport=RateLimitedTransport(limiter)``.  Then:

- four threads share one client and one `TokenBucket` of 10 requests per second: the
  limiter, not the threads, sets the pace;
- the 429 pauses every thread for the second the server asked for, and the refused
  request is sent again after it, so every item comes back;
- a ``POST`` answered 502 is returned as it is, not repeated: the server may have
  carried it out;
- `BearerAuth` puts a token on each request, and after the 401 sends the request once
  more with a fresh token;
- `AsyncRateLimitedTransport` does the same for ``httpx.AsyncClient``, for tasks.

The run takes about three seconds.  Run it with ``python examples/httpx_integration.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import ratekit
from ratekit.integrations.httpx import AsyncRateLimitedTransport, BearerAuth, RateLimitedTransport

#: Items fetched by the threads, then by the tasks.
ITEMS = 12
TASK_ITEMS = 10


class Api:
    """What the API has received: the path and arrival time of each request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[str, float]] = []

    def arrived(self, path: str) -> int:
        """Note a request for *path*; return how many requests came so far."""
        with self.lock:
            self.arrivals.append((path, time.monotonic()))
            return len(self.arrivals)


API = Api()


class ApiHandler(BaseHTTPRequestHandler):
    """Serve ``/items/N``, ``/orders`` and ``/me`` as the module docstring says."""

    protocol_version = "HTTP/1.1"  # keep connections open, so that httpx reuses them

    def do_GET(self) -> None:
        """Answer one GET."""
        number = API.arrived(self.path)
        item = re.fullmatch(r"/items/(\d+)", self.path)
        if item is not None and number == 6:
            self.send_json(HTTPStatus.TOO_MANY_REQUESTS, {"error": "slow down"}, retry_after="1")
        elif item is not None:
            self.send_json(HTTPStatus.OK, {"id": int(item[1])})
        elif self.path == "/me" and self.headers.get("Authorization") == "Bearer token-2":
            self.send_json(HTTPStatus.OK, {"user": "ada"})
        elif self.path == "/me":
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "expired token"})
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        """Answer one POST: the gateway fails."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        API.arrived(self.path)
        self.send_json(HTTPStatus.BAD_GATEWAY, {"error": "upstream failed"})

    def send_json(self, status: HTTPStatus, document: object, retry_after: str = "") -> None:
        """Send *document* as the JSON body of a response."""
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Log nothing: the client prints what matters."""


class Tokens:
    """A `ratekit.typing.TokenProvider` that hands out ``token-1``, ``token-2``, ..."""

    def __init__(self) -> None:
        self.issued = 0

    def token(self) -> str:
        """The current token, or a new one after `invalidate`."""
        if not self.issued:
            self.issued = 1
        return f"token-{self.issued}"

    def invalidate(self, token: str) -> None:
        """Forget *token*: the next `token` is a new one."""
        if token == f"token-{self.issued}":
            self.issued += 1


def with_threads(url: str) -> None:
    """Four threads, one client, 10 requests per second; a 429 pauses them all."""
    limiter = ratekit.TokenBucket("10/s", capacity=1)
    transport = RateLimitedTransport(limiter)
    with httpx.Client(base_url=url, transport=transport) as client:

        def fetch(number: int) -> int:
            response = client.get(f"/items/{number}")
            response.raise_for_status()
            return int(response.json()["id"])

        with ThreadPoolExecutor(4) as threads:
            ids = list(threads.map(fetch, range(ITEMS)))
        print(f"{len(ids)} items fetched by 4 threads, each once: {ids == list(range(ITEMS))}")

        (refused, at) = API.arrivals[5]
        again = next(when for path, when in API.arrivals[6:] if path == refused)
        others = [when for path, when in API.arrivals[6:] if path != refused]
        print(
            f"{refused}: refused with 429 and Retry-After: 1, sent again {again - at:.1f} s later"
        )
        print(f"requests that arrived during that second: {sum(at < w < at + 1 for w in others)}")
        assert again - at >= 1.0  # the policy waited what the server asked for

        order = client.post("/orders", json={"item": 3})
        posts = sum(path == "/orders" for path, _ in API.arrivals)
        print(
            f"POST /orders: {order.status_code}, sent {posts} time (it may have been carried out)"
        )

    stats = transport.statistics()
    print(
        f"statistics: {stats.requests} requests, {stats.throttled} throttled, "
        f"{stats.retries} retried, {stats.cooled:.1f} s of cooldown"
    )

    tokens = Tokens()
    paced = RateLimitedTransport(limiter)  # another client on the same limiter: one limit
    with httpx.Client(base_url=url, auth=BearerAuth(tokens), transport=paced) as client:
        me = client.get("/me")
    print(f"/me: {me.status_code} {me.json()['user']}, after token-1 was refused: {tokens.token()}")


async def with_tasks(url: str) -> None:
    """Ten tasks, one async client, 20 requests per second."""
    limiter = ratekit.TokenBucket("20/s", capacity=1)
    transport = AsyncRateLimitedTransport(limiter)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, transport=transport) as client:
        numbers = range(ITEMS, ITEMS + TASK_ITEMS)
        responses = await asyncio.gather(*(client.get(f"/items/{n}") for n in numbers))
    elapsed = time.monotonic() - started
    least = (TASK_ITEMS - 1) / 20
    ids = [response.json()["id"] for response in responses]
    print(f"{len(ids)} items fetched by {TASK_ITEMS} tasks, in order: {ids == list(numbers)}")
    print(f"in {elapsed:.2f} s (the limit allows no less than {least:.2f} s)")
    assert elapsed >= least


def main() -> None:
    """Serve the API, then call it from threads and from tasks."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with_threads(url)
        asyncio.run(with_tasks(url))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":
    main()

"""An ``aiohttp.ClientSession`` made rate-limited, retried and authenticated by two middlewares.

A small JSON API runs on loopback, in a thread of this script, with an OAuth2 token
endpoint (``POST /token``) and ``GET /items?page=N``, which wants a bearer token.  Partway
through, the server rotates its keys: the token in use is refused with 401.  And it turns
one request away with 429 and ``Retry-After: 1``.

The client is a plain ``aiohttp.ClientSession`` with two middlewares:
`RateLimitMiddleware` paces every request through a `TokenBucket` of 10 per second,
waits out the server's ``Retry-After`` in every task at once, and retries by ratekit's
default policy; after it, `BearerMiddleware` puts the token of an `OAuth2Token` on the
requests to the API's origin (and on no other) once their turn has come, and after a
401 fetches a fresh one and sends the request again, paced like any other.  Twelve tasks
fetch twelve pages at the same time; the limiter, not the tasks, sets the pace.

The session's timeout bounds the connection and each read, not the whole request: the
middleware's waits count in aiohttp's ``total``.  The run takes about two seconds.  Run
it with ``python examples/aiohttp_integration.py``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import aiohttp

import ratekit
from ratekit.http import OAuth2Token
from ratekit.integrations.aiohttp import BearerMiddleware, RateLimitMiddleware

PAGES = 12
ITEMS_PER_PAGE = 10
RATE = ratekit.Rate(10, per=1.0)

#: After this many pages served, the server rotates its keys: older tokens get 401.
ROTATE_AFTER = 3
#: The page request (counted among those with a valid token) that is turned away.
REFUSED = 6


class Api:
    """What the server has issued, accepted and seen, shared with its handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.issued = 0
        self.valid: set[str] = set()
        self.served = 0
        self.accepted = 0
        self.refused_at: float | None = None
        self.arrivals: list[tuple[float, int, int]] = []  # (time, page, status)


class ApiHandler(BaseHTTPRequestHandler):
    """Serve the token endpoint and the pages of items."""

    protocol_version = "HTTP/1.1"
    # Headers and body in one write: a client that reads only the headers of a 401 and
    # lets the connection go must not have the body arrive after it closed.
    wbufsize = 1 << 16
    api: Api  # set on the class by `main`

    def do_POST(self) -> None:
        """Issue a token: ``token-1``, ``token-2``, ..."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.api.lock:
            self.api.issued += 1
            token = f"token-{self.api.issued}"
            self.api.valid.add(token)
        self.send_json(HTTPStatus.OK, {"access_token": token, "expires_in": 3600})

    def do_GET(self) -> None:
        """Serve a page to a valid token; rotate keys once; turn one request away."""
        url = urlsplit(self.path)
        page = int(parse_qs(url.query).get("page", ["0"])[0])
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        api = self.api
        with api.lock:
            if token not in api.valid:
                status = HTTPStatus.UNAUTHORIZED
            else:
                api.accepted += 1
                status = HTTPStatus.TOO_MANY_REQUESTS if api.accepted == REFUSED else HTTPStatus.OK
            api.arrivals.append((time.monotonic(), page, status))
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                api.refused_at = time.monotonic()
            if status == HTTPStatus.OK:
                api.served += 1
                if api.served == ROTATE_AFTER:
                    api.valid.clear()  # every token issued so far is revoked
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_json(status, {"error": "invalid_token"})
        elif status == HTTPStatus.TOO_MANY_REQUESTS:
            self.send_json(status, {"error": "slow down"}, {"Retry-After": "1"})
        else:
            first = (page - 1) * ITEMS_PER_PAGE + 1
            items = [{"id": n} for n in range(first, first + ITEMS_PER_PAGE)]
            self.send_json(status, {"page": page, "items": items})

    def send_json(
        self, status: HTTPStatus, document: object, headers: dict[str, str] | None = None
    ) -> None:
        """Send *document* as the JSON body of a response."""
        body = json.dumps(document).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Log nothing: the client prints what matters."""


async def fetch_all(base: str) -> tuple[list[int], RateLimitMiddleware]:
    """Fetch every page at once, through the two middlewares; return the item counts."""
    token = OAuth2Token(
        f"{base}/token",
        client_id="example",
        client_secret="not-a-real-secret",  # noqa: S106 - the demo server takes any
    )
    limiter = ratekit.TokenBucket(RATE, capacity=1)
    paced = RateLimitMiddleware(limiter)
    # The token is put on each request after its waits, so it is never stale.
    middlewares = (paced, BearerMiddleware(token, origin=base))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=10)
    async with aiohttp.ClientSession(middlewares=middlewares, timeout=timeout) as session:

        async def fetch(page: int) -> int:
            async with session.get(f"{base}/items", params={"page": page}) as response:
                response.raise_for_status()
                document = await response.json()
                return len(document["items"])

        counts = await asyncio.gather(*(fetch(page) for page in range(1, PAGES + 1)))
    return list(counts), paced


def main() -> None:
    """Serve the API, fetch every page under the limit, and show what happened."""
    api = Api()
    handler = type("Handler", (ApiHandler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, name="api-server")
    serving.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        started = time.monotonic()
        counts, paced = asyncio.run(fetch_all(base))
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
        serving.join()

    for page, count in enumerate(counts, 1):
        print(f"page {page:2}: {count} items")
    assert counts == [ITEMS_PER_PAGE] * PAGES

    refused = [t for t, _, status in api.arrivals if status == HTTPStatus.UNAUTHORIZED]
    assert refused
    assert api.issued == 2  # one fetch after the rotation, however many tasks saw the 401
    print("keys rotated: token-1 refused with 401, token-2 fetched once, the request sent again")

    assert api.refused_at is not None
    [page] = [p for _, p, status in api.arrivals if status == HTTPStatus.TOO_MANY_REQUESTS]
    [retried] = [t for t, p, _ in api.arrivals if p == page and t > api.refused_at]
    assert retried - api.refused_at >= 1.0 - 0.05
    # Only a request already on its way when the 429 came could arrive during the second.
    during = [t for t, _, _ in api.arrivals if api.refused_at < t < api.refused_at + 0.95]
    assert len(during) <= 1
    print(f"page {page} turned away with 429 and Retry-After: 1")
    print("every task waited out the second, then the refused page was sent again")

    stats = paced.statistics()
    assert (stats.throttled, stats.retries) == (1, 1)
    # The limiter never over-admits: the page requests needed at least this long.
    assert elapsed >= (len(api.arrivals) - 1) / RATE.per_second
    print(
        f"{PAGES} pages in {elapsed:.1f} s at {RATE.per_second:g}/s: "
        f"{stats.requests} requests, {stats.throttled} throttled, {stats.retries} retried, "
        f"{stats.cooled:.1f} s paused by the server"
    )


if __name__ == "__main__":
    main()

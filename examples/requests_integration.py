"""A requests Session under a ratekit limiter: one mount, and every thread shares the limit.

A small JSON API runs on loopback, in a thread of this script.  It accepts 10 requests
in any second and answers a 429 with ``Retry-After: 1`` to the rest; one of its
endpoints fails with a 503 twice before it answers.  The script:

1. sends 30 requests from 6 threads through a plain ``requests.Session``: they burst,
   and the server turns many of them away;
2. mounts a `ratekit.integrations.requests.RateLimitedAdapter` on a new session (the one
   line that changes), with a limiter a little under the server's limit: the same 30
   requests are all answered 200, none turned away, paced by the limiter;
3. calls the failing endpoint: the adapter retries the ``GET`` after each 503 and
   returns the answer, and it does not repeat a ``POST`` that got a 503 (the server may
   have acted on it), returning the 503 as requests would;
4. prints the adapter's statistics.

The whole run takes about 4 seconds.  Run it with
``python examples/requests_integration.py`` (it needs ``pip install 'ratekit[requests]'``).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

import ratekit
from ratekit.integrations.requests import RateLimitedAdapter
from ratekit.retry import ConstantBackoff, RetryPolicy

#: What the server accepts in any one second.
LIMIT = 10
#: Requests sent in each round, and the threads that send them.
REQUESTS = 30
THREADS = 6


class Server(ThreadingHTTPServer):
    """The API's state: when it accepted requests, and how many 503s are left."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        self.lock = threading.Lock()
        self.accepted: list[float] = []
        self.failures_left = 0


class Handler(BaseHTTPRequestHandler):
    """Answer 429 above the limit, 503 on /flaky while failures are left, else 200."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet."""

    def answer(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        """Send *body* as JSON with *status*."""
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def serve(self) -> None:
        """Answer one request."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state = self.server
        now = time.monotonic()
        with state.lock:
            if sum(1 for t in state.accepted if now - t < 1.0) >= LIMIT:
                self.answer(429, {"error": "slow down"}, {"Retry-After": "1"})
                return
            state.accepted.append(now)
            failing = self.path == "/flaky" and state.failures_left > 0
            state.failures_left -= failing
        if failing:
            self.answer(503, {"error": "try again"})
        else:
            self.answer(200, {"path": self.path})

    do_GET = do_POST = serve  # noqa: N815


def burst(session: requests.Session, api: str) -> list[int]:
    """The statuses of `REQUESTS` GETs sent from `THREADS` threads."""

    def get(n: int) -> int:
        return session.get(f"{api}/items/{n}", timeout=10).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(get, range(REQUESTS)))


def main() -> None:
    """Run the three steps against a server of our own."""
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"

    with requests.Session() as plain:
        statuses = burst(plain, api)
    print(f"plain session: {statuses.count(200)} answered 200, {statuses.count(429)} got 429")
    time.sleep(1.0)  # let the server's second pass

    # A little under the server's limit, as a margin for the network's jitter.
    limiter = ratekit.TokenBucket(f"{LIMIT - 1}/s", capacity=1)
    retry = RetryPolicy(attempts=4, backoff=ConstantBackoff(0.1))
    adapter = RateLimitedAdapter(limiter, retry=retry)
    with requests.Session() as session:
        session.mount(f"{api}/", adapter)  # the one line that changes
        started = time.monotonic()
        statuses = burst(session, api)
        took = time.monotonic() - started
        print(
            f"rate-limited session: {statuses.count(200)} answered 200, "
            f"{statuses.count(429)} got 429, in {took:.1f} s"
        )

        server.failures_left = 2
        answer = session.get(f"{api}/flaky", timeout=10)
        print(f"GET /flaky: {answer.status_code} after two 503s, retried")
        server.failures_left = 1
        posted = session.post(f"{api}/flaky", json={"n": 1}, timeout=10)
        print(f"POST /flaky: {posted.status_code}, sent once: a POST is not repeated")
    print(adapter.statistics())
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()

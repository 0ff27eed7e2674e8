"""Fetch pages concurrently under a limit, with `Scheduler` and urllib3.

A small JSON API runs on loopback, in a thread of this script: ``GET /items?page=N``
returns the ten items of page N, and an empty page after the last one.  The client does
not know how many pages there are: it maps a fetch function over the endless page
numbers 1, 2, 3, ... with a `Scheduler` of 4 workers paced by a `TokenBucket` of 4 tokens
refilled at 20 per second, reads the pages in order as they come, and stops at the first
empty one.  Leaving the scheduler's block then stops the map: no request starts after
that, the waits booked on the bucket for pages beyond the end are given back, and every
worker thread is joined.  One `urllib3.PoolManager` serves all the workers, with a pool
of one connection per worker.

The limiter, not the number of workers, sets the pace: after the first 4 requests, the
others start 50 ms apart.  The script checks that it took no less than the bucket allows
for the requests it granted.  The whole run takes about half a second.  Run it with
``python examples/fetch_pages.py``.
"""

from __future__ import annotations

import itertools
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import urllib3

import ratekit

#: Pages served, and items on each.
PAGES = 12
ITEMS_PER_PAGE = 10

WORKERS = 4
RATE = ratekit.Rate(20, per=1.0)
CAPACITY = 4


class ItemsHandler(BaseHTTPRequestHandler):
    """Serve ``/items?page=N``: the items of page N, as JSON; no items after the last."""

    protocol_version = "HTTP/1.1"  # keep connections open, so that urllib3 reuses them

    def do_GET(self) -> None:
        """Answer one request."""
        url = urlsplit(self.path)
        pages = parse_qs(url.query).get("page", [])
        if url.path != "/items" or len(pages) != 1 or not pages[0].isdigit():
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        page = int(pages[0])
        first = (page - 1) * ITEMS_PER_PAGE + 1
        count = ITEMS_PER_PAGE if 1 <= page <= PAGES else 0
        items = [{"id": n, "name": f"item {n}"} for n in range(first, first + count)]
        self.send_json(HTTPStatus.OK, {"page": page, "items": items})

    def send_json(self, status: HTTPStatus, document: object) -> None:
        """Send *document* as the JSON body of a response."""
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Log nothing: the client prints what matters."""


def main() -> None:
    """Serve the pages, fetch them all under the limit, and check the pace."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ItemsHandler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, name="items-server")
    serving.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    http = urllib3.PoolManager(maxsize=WORKERS)
    timeout = urllib3.Timeout(connect=2.0, read=5.0)

    def fetch(page: int) -> list[dict[str, object]]:
        """Fetch the items of one page; raise for anything but 200."""
        response = http.request("GET", f"{base}/items", fields={"page": str(page)}, timeout=timeout)
        if response.status != HTTPStatus.OK:
            raise RuntimeError(f"page {page}: status {response.status}")
        items: list[dict[str, object]] = response.json()["items"]
        return items

    clock = ratekit.MonotonicClock()
    bucket = ratekit.TokenBucket(RATE, capacity=CAPACITY, clock=clock)
    start = clock.now()
    pages = items = 0
    try:
        with ratekit.Scheduler(WORKERS, bucket) as scheduler:
            for page, page_items in enumerate(scheduler.map(fetch, itertools.count(1)), 1):
                if not page_items:
                    print(f"page {page:2}: empty, the end")
                    break
                pages += 1
                items += len(page_items)
                ids = f"{page_items[0]['id']} to {page_items[-1]['id']}"
                print(f"page {page:2}: {len(page_items)} items, ids {ids}")
        # Out of the block: the calls started beyond the end have returned, and every
        # worker thread has ended.
        elapsed = clock.now() - start
        stats = scheduler.statistics()
    finally:
        http.clear()
        server.shutdown()
        server.server_close()
        serving.join()

    granted = bucket.statistics().granted
    assert (pages, items) == (PAGES, PAGES * ITEMS_PER_PAGE)
    assert stats.failed == 0
    assert stats.running == stats.waiting == 0
    # The pages up to the empty one, and perhaps a few calls started beyond it.
    assert PAGES + 1 <= granted <= PAGES + 1 + WORKERS * 3
    # The bucket never over-admits: the grants beyond the burst needed this long.
    assert elapsed >= (granted - CAPACITY) / RATE.per_second
    print(
        f"{pages} pages, {items} items, in page order; "
        f"at most {CAPACITY} + {RATE.per_second:g}/s requests started"
    )


if __name__ == "__main__":
    main()

"""A stub of a GitHub-style issues API on 127.0.0.1, for ``github_adapter.py``'s demo.

``GET /repos/octo/hello/issues?per_page=N&page=P`` returns a JSON list of issues, with a
``Link`` header to the next and last pages (and the first and previous ones), and every
answer carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Used`` and ``-Reset`` (a Unix
time, as GitHub sends it).  The budget is *limit* requests per second of the system
clock, and the first second's is already spent, as if by an earlier run: a request over
budget gets GitHub's 403 with ``X-RateLimit-Remaining: 0``.  Other repositories are 404.

Run alone (``python examples/_github_stub.py``), it shows the first page's headers.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import final
from urllib.parse import parse_qs, urlsplit

import attrs
import urllib3


@attrs.frozen
class Hit:
    """A request the stub answered: its target, its Authorization header, the answer."""

    target: str
    authorization: str | None
    status: int
    at: float  # Unix time of arrival
    reset: int  # the X-RateLimit-Reset announced


@final
class GitHubStub:
    """Serve *issues* issues of ``octo/hello`` under a budget of *limit* per second."""

    def __init__(self, issues: int = 25, limit: int = 3) -> None:
        self.issues, self.limit = issues, limit
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._second: int | None = None
        self._used = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                """Answer one request, under the budget."""
                stub.answer(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Log nothing."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GitHubStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        """Take one request from the budget, and answer it."""
        now = time.time()
        with self._lock:
            if self._second != int(now):  # a new window; the first one was spent before
                self._used = self.limit if self._second is None else 0
                self._second = int(now)
            allowed = self._used < self.limit
            self._used += allowed
            used = self._used
        parts = urlsplit(request.path)
        page = int(parse_qs(parts.query).get("page", ["1"])[0])
        size = int(parse_qs(parts.query).get("per_page", ["30"])[0])
        pages = max(1, math.ceil(self.issues / size))
        status, link = 403, ""
        body: object = {"message": "API rate limit exceeded"}
        if allowed and parts.path != "/repos/octo/hello/issues":
            status, body = 404, {"message": "Not Found"}
        elif allowed:
            first = (page - 1) * size + 1
            numbers = range(first, min(first + size, self.issues + 1))
            status, body = (
                200,
                [{"number": n, "title": f"Issue {n}", "state": "open"} for n in numbers],
            )
            rels = {"first": 1, "prev": page - 1, "next": page + 1, "last": pages}
            shown = {rel: n for rel, n in rels.items() if 1 <= n <= pages and n != page}
            url = f"{self.url}{parts.path}?per_page={size}&page="
            link = ", ".join(f'<{url}{n}>; rel="{rel}"' for rel, n in shown.items())
        reset = int(now) + 1
        headers = {"X-RateLimit-Limit": self.limit, "X-RateLimit-Remaining": self.limit - used}
        headers |= {"X-RateLimit-Used": used, "X-RateLimit-Reset": reset}
        auth = request.headers.get("Authorization")
        with self._lock:
            self.hits.append(Hit(request.path, auth, status, now, reset))
        data = json.dumps(body).encode()
        request.send_response(status)
        for name, value in {**headers, "Content-Length": len(data)}.items():
            request.send_header(name, str(value))
        if link:
            request.send_header("Link", link)
        request.send_header("Content-Type", "application/json")
        request.end_headers()
        request.wfile.write(data)


if __name__ == "__main__":
    with GitHubStub() as stub:
        for _ in range(2):  # the first request finds the budget spent; the second waits
            response = urllib3.request("GET", f"{stub.url}/repos/octo/hello/issues?per_page=10")
            remaining, reset = (
                response.headers[f"X-RateLimit-{k}"] for k in ("Remaining", "Reset")
            )
            print(f"{response.status}: remaining {remaining}, link {response.headers.get('Link')}")
            time.sleep(max(0.0, int(reset) - time.time()))

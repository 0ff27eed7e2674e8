"""A real HTTP server on loopback whose answers each test scripts, for the HTTP tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import attrs

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator, Mapping


@attrs.frozen
class Request:
    """What the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def form(self) -> dict[str, str]:
        """The body as a form (the last value of each field)."""
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@attrs.frozen
class Reply:
    """What the server answers: a status, headers and a body (``drop``: close instead)."""

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | str | object = b""
    drop: bool = False
    delay: float = 0.0

    @classmethod
    def json(cls, value: object, status: int = 200, **headers: str) -> Reply:
        """A JSON reply."""
        return cls(status, {"Content-Type": "application/json", **headers}, json.dumps(value))


class LoopbackServer:
    """A threading HTTP server on 127.0.0.1 with a port of its own.

    ``routes`` maps ``(method, path)`` to a handler; unknown routes answer 404.  Every
    request is recorded in ``requests``.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[Request], Reply]] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered, so that headers and body leave in one write: two small writes on
            # a kept-alive connection wait out the client's delayed ACK (about 40 ms).
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Stay quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with server.lock:
                    server.requests.append(request)
                    handler = server.routes.get((self.command, parts.path))
                reply = handler(request) if handler else Reply(404, body="no such route")
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = reply.body
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def serve_tls(self, context: ssl.SSLContext) -> None:
        """Speak TLS with *context* (before `start`): the URL becomes ``https://``."""
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.url = self.url.replace("http://", "https://")

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def route(self, method: str, path: str) -> Callable[[Callable[[Request], Reply]], None]:
        """Decorator: answer ``method path`` with the decorated handler."""

        def register(handler: Callable[[Request], Reply]) -> None:
            with self.lock:
                self.routes[(method, path)] = handler

        return register

    def hits(self, path: str) -> list[Request]:
        """The requests received for *path*."""
        with self.lock:
            return [r for r in self.requests if r.path == path]


def serve() -> Iterator[LoopbackServer]:
    """Start a server, hand it over, and stop it afterwards (a fixture body)."""
    server = LoopbackServer().start()
    try:
        yield server
    finally:
        server.stop()


def script(*replies: Reply) -> Callable[[Request], Reply]:
    """A handler that plays *replies* in turn, then repeats the last one."""
    played = list(replies)
    lock = threading.Lock()

    def handler(_: Request) -> Reply:
        with lock:
            return played.pop(0) if len(played) > 1 else played[0]

    return handler


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

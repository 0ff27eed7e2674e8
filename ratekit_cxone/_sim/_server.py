"""The simulator's HTTP server: threads on loopback, and the handler that answers."""

from __future__ import annotations

import contextlib
import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, cast

from ratekit_cxone._sim._answers import _Answer, _error
from ratekit_cxone._sim._requests import _DIGITS

if TYPE_CHECKING:
    from ratekit_cxone._simulator import Simulator

#: Request bodies larger than this are refused (token requests are a few hundred bytes).
_MAX_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can take
        # seconds on a machine without DNS; the simulator has no use for it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet: a client that went away is not news, and errors answer 500."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CXoneSimulator"
    # Headers and body leave in one write: two small writes on a kept-alive connection
    # wait out the client's delayed acknowledgement (about 40 ms).
    wbufsize = 1 << 16
    # An idle kept-alive connection is closed after this long, in seconds.
    timeout = 120.0

    def setup(self) -> None:
        super().setup()
        self._simulator()._connections_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._simulator()._connections_closed(self.connection)

    def _simulator(self) -> Simulator:
        return cast("_Server", self.server).simulator

    def version_string(self) -> str:
        """The ``Server`` header: the name alone, not the Python version."""
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet: the simulator prints nothing."""

    def _serve(self) -> None:
        simulator = self._simulator()
        headers = tuple((name, value) for name, value in self.headers.items())
        answer: _Answer | None = None
        body = b""
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            answer = _error(411, "length_required", "send the body with a Content-Length")
        elif length_text is not None:
            if not _DIGITS.fullmatch(length_text.strip()):
                answer = _error(400, "invalid_request", "Content-Length is not a number")
            elif int(length_text) > _MAX_BODY:
                answer = _error(413, "request_too_large", "the body is too large")
            else:
                body = self.rfile.read(int(length_text))
        if answer is not None:
            self.close_connection = True  # the rest of the stream cannot be trusted
        index = simulator._arrive(self.command, self.path, headers, body)
        if answer is None:
            answer = simulator._answer(self.command, self.path, dict(self.headers.items()), body)
        simulator._answered(index, None if answer.drop else answer.status)
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        data = b""
        if answer.body is not None:
            data = json.dumps(answer.body, separators=(",", ":")).encode()
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if answer.status != 204:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815

# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""The servers of ``bench_adaptive.py``: five server-side rate limiters on loopback.

Imported, `served` starts one kind of server in a process of its own (in a session of
its own, so that a Ctrl-C reaches only the benchmark, which then stops it) and stops it
again, whatever happens:

- ``sliding``: the CXone simulator (``ratekit-cxone simulate --rate 40/second``), an
  exact sliding window that answers 429 with ``Retry-After`` in whole seconds;
- ``x-ratelimit``: a Flask app behind Flask-Limiter (a fixed window, ``X-RateLimit-*``
  headers and ``Retry-After``), on Werkzeug's threaded WSGI server;
- ``ietf``: a `http.server.ThreadingHTTPServer` with a fixed window that sends the IETF
  ``RateLimit`` and ``RateLimit-Policy`` fields (draft-ietf-httpapi-ratelimit-headers);
- ``strict``: nginx's ``limit_req`` without a burst, a leaky bucket that refuses any
  request sooner than ``1/rate`` after the last one it accepted, with a bare 429;
- ``burst``: nginx's ``limit_req`` with ``burst=10 nodelay``, a token bucket with a bare
  429.

Without ``nginx`` on ``PATH``, the last two are served by a Python stand-in that applies
nginx's rule (``ngx_http_limit_req_module.c``), and `Server.description` says so.

Run as a script (``python bench/adaptive_servers.py KIND --limit N``), it serves one of
the Python servers until its standard input closes, that is, until the process that
started it ends, however it ends.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import math
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

    import flask

#: The five kinds of server, in the order the tables list them.
KINDS = ("sliding", "x-ratelimit", "ietf", "strict", "burst")

#: Items on a page of ``/items``; records on a page of the simulator's contacts.
PAGE_SIZE = 10

#: The simulator's contacts are listed over this window (it generates them in January).
CXONE_WINDOW = "startDate=2026-01-01T00:00:00Z&endDate=2026-01-31T00:00:00Z"
CXONE_CONTACTS = "/inContactAPI/services/v34.0/contacts/completed"

#: How long a server may take to start listening, in seconds.
START_TIMEOUT = 30.0

#: How long a server may take to stop after SIGTERM before it is killed, in seconds.
STOP_TIMEOUT = 5.0

HERE = Path(__file__).resolve().parent


def page_body(page: int) -> bytes:
    """A small page of items, as every Python server sends it."""
    items = [
        {"id": page * PAGE_SIZE + i, "name": f"item {page * PAGE_SIZE + i}"} for i in range(10)
    ]
    return json.dumps({"page": page, "items": items}).encode()


# -- the servers' side: what runs in the child process ---------------------------------


class Admission(Protocol):
    """A server-side limit: whether to serve a request now, and the headers to send."""

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count a request arriving at *now* (monotonic seconds); say whether it is served."""
        ...


class FixedWindow:
    """*quota* requests per *window* seconds, the window opening at its first request.

    Every answer carries the IETF fields of draft-ietf-httpapi-ratelimit-headers-10
    (``RateLimit-Policy`` and ``RateLimit``), with the seconds to the reset rounded up
    to a whole second, as the draft's ``t`` is an integer; a refusal also carries
    ``Retry-After``, rounded up the same way.
    """

    def __init__(self, quota: int, window: float = 1.0) -> None:
        self._quota = quota
        self._window = window
        self._lock = threading.Lock()
        self._opened = -math.inf
        self._count = 0

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """See `Admission.admit`."""
        with self._lock:
            if now >= self._opened + self._window:
                self._opened, self._count = now, 0
            served = self._count < self._quota
            self._count += served
            remaining = self._quota - self._count
            reset = max(1, math.ceil(self._opened + self._window - now))
        headers = {
            "RateLimit-Policy": f'"default";q={self._quota};w={self._window:g}',
            "RateLimit": f'"default";r={remaining};t={reset}',
        }
        if not served:
            headers["Retry-After"] = str(reset)
        return served, headers


class LimitReq:
    """nginx's ``limit_req`` rule, for when nginx is not installed: no headers at all.

    ``ngx_http_limit_req_lookup`` keeps an *excess* per key: each request adds one, less
    what drained at *rate* since the last accepted request, floored at zero; a request
    that would take it above *burst* is refused and changes nothing.  With no burst,
    that refuses any request sooner than ``1/rate`` after the last one accepted; with
    ``burst=10 nodelay``, 11 requests pass at once and then one every ``1/rate``.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._lock = threading.Lock()
        self._excess = 0.0
        self._last: float | None = None

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """See `Admission.admit`."""
        with self._lock:
            if self._last is None:
                self._last = now
                return True, {}
            excess = max(self._excess - self._rate * (now - self._last) + 1, 0.0)
            if excess > self._burst:
                return False, {}
            self._excess, self._last = excess, now
            return True, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    admission: Admission


class _Handler(BaseHTTPRequestHandler):
    """``GET /items?page=N``: a page of items, or 429 when the limit says so."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' pools expect
    # The headers and the body leave in two writes: without TCP_NODELAY, the second
    # waits for the client's delayed ACK, up to 40 ms a request on Linux.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        """Serve a page, or refuse it."""
        target = urlsplit(self.path)
        if target.path != "/items":
            self._answer(404, b'{"error": "not found"}', {})
            return
        served, headers = self.server.admission.admit(time.monotonic())
        if not served:
            self._answer(429, b'{"error": "too many requests"}', headers)
            return
        page = parse_qs(target.query).get("page", ["0"])[0]
        self._answer(200, page_body(int(page) if page.isdigit() else 0), headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Log nothing: a benchmark's server answers thousands of requests."""


def flask_app(limit: int) -> flask.Flask:
    """``GET /items?page=N`` behind Flask-Limiter: *limit* per second, a fixed window."""
    from flask import Flask, Response, request
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = Flask("x-ratelimit")
    app.config.update(
        RATELIMIT_HEADERS_ENABLED=True,  # X-RateLimit-Limit/Remaining/Reset and Retry-After
        RATELIMIT_STRATEGY="fixed-window",
        RATELIMIT_STORAGE_URI="memory://",
    )
    Limiter(get_remote_address, app=app, default_limits=[f"{limit} per second"])

    @app.get("/items")
    def items() -> Response:
        page = request.args.get("page", "0")
        return Response(page_body(int(page) if page.isdigit() else 0), mimetype="application/json")

    return app


def _exit_when_orphaned() -> None:
    """End this process when its standard input closes: its parent is gone."""

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def serve(kind: str, limit: int, burst: int) -> None:
    """Serve one Python server on a free loopback port; print its URL; never return."""
    # Werkzeug logs every request and Flask-Limiter every refusal: thousands of lines.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("flask-limiter").setLevel(logging.ERROR)
    if kind == "x-ratelimit":
        from werkzeug.serving import make_server

        wsgi = make_server("127.0.0.1", 0, flask_app(limit), threaded=True)
        port, serve_forever = wsgi.server_port, wsgi.serve_forever
    else:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.admission = (
            FixedWindow(limit)
            if kind == "ietf"
            else LimitReq(limit, burst if kind == "burst" else 0)
        )
        port, serve_forever = server.server_address[1], server.serve_forever
    _exit_when_orphaned()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    serve_forever()


# -- the benchmark's side: starting and stopping the servers ---------------------------


@dataclass(frozen=True)
class Server:
    """A server running in a child process: where to ask for pages, and what it is."""

    kind: str
    description: str
    limit: int
    url: str
    env: dict[str, str] = field(default_factory=dict)  # the simulator's credentials

    def page_url(self, page: int) -> str:
        """The URL of page *page* (from 0)."""
        if self.kind == "sliding":
            skip = page * PAGE_SIZE
            return f"{self.url}{CXONE_CONTACTS}?{CXONE_WINDOW}&top={PAGE_SIZE}&skip={skip}"
        return f"{self.url}/items?page={page}"


#: Every child still running, stopped at exit if nothing stopped it before.
_RUNNING: set[subprocess.Popen[str]] = set()


def _stop(child: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group (nginx's workers too), then SIGKILL if need be."""
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if child.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            try:
                child.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill
                continue
            # The group may outlive its leader (nginx's workers): end the rest.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            break
    finally:
        _RUNNING.discard(child)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@atexit.register
def _stop_all() -> None:
    for child in list(_RUNNING):
        _stop(child)


@contextlib.contextmanager
def _child(command: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """Run *command* in a session of its own, its stderr to *log*; stop it on exit."""
    with log.open("w") as errors:
        child = subprocess.Popen(  # noqa: S603 - the benchmark's own commands
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops this
        )
    _RUNNING.add(child)
    try:
        yield child
    finally:
        _stop(child)


def _lines(child: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The child's stdout, line by line (``None`` at its end), read by a helper thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None  # noqa: S101 - piped by _child
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="server-stdout", daemon=True).start()
    return lines


def _failed(what: str, log: Path, reason: str) -> RuntimeError:
    detail = log.read_text(errors="replace").strip()[-2000:]
    return RuntimeError(f"{what} {reason}" + (f":\n{detail}" if detail else ""))


def _announced(
    child: subprocess.Popen[str], log: Path, what: str, last: str | None = None
) -> tuple[str, dict[str, str]]:
    """Read the URL the child prints (``... listening on URL``) and its ``export`` lines.

    Reading stops once the URL is known and, if *last* names a variable, once that
    variable has been read (the simulator prints its URL, then its variables).
    """
    lines = _lines(child)
    deadline = time.monotonic() + START_TIMEOUT
    url = ""
    env: dict[str, str] = {}
    while not url or (last is not None and last not in env):
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise _failed(what, log, f"did not start within {START_TIMEOUT:g} s") from None
        if line is None:
            raise _failed(what, log, f"exited with {child.wait()}")
        if "listening on " in line:
            url = line.partition("listening on ")[2].split()[0]
        elif line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            env.setdefault(name, shlex.split(value)[0])
    return url, env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(child: subprocess.Popen[str], port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if child.poll() is not None:
            raise _failed(what, log, f"exited with {child.returncode}")
        if time.monotonic() > deadline:
            raise _failed(what, log, f"did not listen within {START_TIMEOUT:g} s")
        time.sleep(0.02)


def find_nginx() -> str | None:
    """The nginx executable: on ``PATH``, or where Debian installs it (``/usr/sbin``)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_version(executable: str) -> str:
    """What ``nginx -v`` says, as ``nginx 1.22.1``."""
    done = subprocess.run(  # noqa: S603 - nginx -v
        [executable, "-v"], capture_output=True, text=True, check=False
    )
    return done.stderr.strip().removeprefix("nginx version: ").replace("/", " ")


def nginx_config(directory: Path, port: int, limit: int, burst: int) -> str:
    """An nginx configuration: ``GET /items`` under ``limit_req``, everything in *directory*.

    The page comes from ``return``, but in a named location reached through
    ``try_files``: ``return`` runs in the rewrite phase, before ``limit_req`` (the
    preaccess phase), so a ``return`` in the limited location itself would answer
    every request and limit none.
    """
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read nothing, but log
    items = ", ".join(f'{{"id": {i}, "name": "item {i}"}}' for i in range(PAGE_SIZE))
    extra = f" burst={burst} nodelay" if burst else ""
    temp = "\n".join(
        f"    {name}_temp_path {directory}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temp}
    keepalive_requests 100000;
    limit_req_zone $binary_remote_addr zone=pages:1m rate={limit}r/s;
    limit_req_status 429;
    limit_req_log_level info;
    server {{
        listen 127.0.0.1:{port};
        root {directory}/empty;
        location = /items {{
            limit_req zone=pages{extra};
            try_files /nothing @page;
        }}
        location @page {{
            default_type application/json;
            return 200 '{{"page": "$arg_page", "items": [{items}]}}';
        }}
    }}
}}
"""


def describe(kind: str, limit: int, burst: int, nginx: str | None, why: str = "") -> str:
    """What serves *kind*, for the tables: *nginx* is its version, or *why* it is not used."""
    if kind == "sliding":
        return (
            f"CXone simulator (`ratekit-cxone simulate --rate {limit}/second`): an exact "
            "sliding window; 429 with `Retry-After` in whole seconds, rounded up"
        )
    if kind == "x-ratelimit":
        return (
            f"Flask {version('flask')} + Flask-Limiter {version('flask-limiter')} "
            f'(`"{limit} per second"`, fixed window, memory storage, '
            "`RATELIMIT_HEADERS_ENABLED`) on Werkzeug's threaded WSGI server"
        )
    if kind == "ietf":
        return (
            f"`http.server.ThreadingHTTPServer`: a fixed window of {limit} per 1 s with "
            f'`RateLimit-Policy: "default";q={limit};w=1` and `RateLimit: "default";r=…;t=…` '
            "(seconds rounded up); 429 with `Retry-After`, rounded up"
        )
    rule = f"rate={limit}r/s" + (f" burst={burst} nodelay" if kind == "burst" else "")
    if nginx is not None:
        return f"{nginx} `limit_req {rule}`, `limit_req_status 429`: no rate-limit headers"
    return f"Python stand-in for nginx's `limit_req {rule}` ({why}): no rate-limit headers"


@contextlib.contextmanager
def served(kind: str, limit: int, *, pages: int, burst: int, nginx: bool) -> Iterator[Server]:
    """Start a server of *kind* allowing *limit* requests per second; stop it on exit.

    Args:
        kind: One of `KINDS`.
        limit: The server's limit, in requests per second.
        pages: The most pages a job asks for (the simulator holds that many pages).
        burst: The burst of the ``burst`` kind.
        nginx: Serve ``strict`` and ``burst`` with nginx when it is on ``PATH``.
    """
    executable = find_nginx() if nginx and kind in {"strict", "burst"} else None
    nginx_text = nginx_version(executable) if executable is not None else None
    why = "nginx not on PATH" if nginx else "--no-nginx"
    description = describe(kind, limit, burst, nginx_text, why)
    with tempfile.TemporaryDirectory(prefix=f"ratekit-bench-{kind}-") as temp:
        directory = Path(temp)
        log = directory / "stderr.log"
        if kind == "sliding":
            command = [sys.executable, "-m", "ratekit_cxone", "simulate"]
            command += ["--records", str(pages * PAGE_SIZE), "--rate", f"{limit}/second"]
            command += ["--seed", "0"]
            with _child(command, log) as child:
                url, env = _announced(child, log, "the CXone simulator", "CXONE_SCOPES")
                yield Server(kind, description, limit, url, env)
        elif executable is not None:
            port = _free_port()
            config = directory / "nginx.conf"
            config.write_text(nginx_config(directory, port, limit, burst if kind == "burst" else 0))
            command = [executable, "-p", str(directory), "-c", str(config), "-e", str(log)]
            command += ["-g", "daemon off;"]
            with _child(command, log) as child:
                _wait_listening(child, port, directory / "error.log", "nginx")
                yield Server(kind, description, limit, f"http://127.0.0.1:{port}")
        else:
            command = [sys.executable, str(HERE / "adaptive_servers.py"), kind]
            command += ["--limit", str(limit), "--burst", str(burst)]
            with _child(command, log) as child:
                url, _ = _announced(child, log, f"the {kind} server")
                yield Server(kind, description, limit, url)


def main(argv: list[str] | None = None) -> int:
    """Serve one of the Python servers (the child side of `served`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=[kind for kind in KINDS if kind != "sliding"])
    parser.add_argument("--limit", type=int, required=True, help="requests per second")
    parser.add_argument("--burst", type=int, default=10, help="the burst kind's burst")
    args = parser.parse_args(argv)
    serve(args.kind, args.limit, args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())

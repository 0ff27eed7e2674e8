"""Real server-side rate limiters on free loopback ports, for the HTTP client's tests.

Two limiters that ratekit did not write, each answering ``GET /items?page=N`` with a
small JSON page:

- `FlaskLimited`: a Flask app behind Flask-Limiter (a fixed window, memory storage,
  ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` and ``Retry-After``) on Werkzeug's
  threaded server, in a thread of the test process;
- `NginxLimited`: a real ``nginx`` under ``limit_req``, with no burst (a strict
  leaky bucket: any request sooner than ``1/rate`` after the last one it accepted is
  refused) or with ``burst=N nodelay`` (a token bucket); a bare 429, no headers.

Each records every answer it gave, as `Answer` rows (the nginx one in its access
log), so that a test can count 429s on the server's side, not only on the client's.
The ``serve_*`` functions are fixture bodies: they stop the server whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from werkzeug.serving import BaseWSGIServer

#: The limit both servers enforce, in requests per second.
LIMIT = 20

#: Items on a page of ``/items``.
PAGE_SIZE = 5

#: How long a server may take to start listening, or to stop, in seconds (for CI).
START_TIMEOUT = 20.0

#: Debian's nginx, when it is not on ``PATH`` (``/usr/sbin`` is not, for most users).
DEBIAN_NGINX = "/usr/sbin/nginx"


class Answer(NamedTuple):
    """One answer a server gave: the page asked for (``None``: none), its status, and when.

    ``at`` is the Unix time the server answered at (nginx logs it to the millisecond).
    """

    page: int | None
    status: int
    at: float


def _page_number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until *port* accepts connections; fail if *process* exits or is too slow."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if process.poll() is not None:
            detail = log.read_text(errors="replace").strip()[-2000:] if log.exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{detail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not listen on port {port} within {START_TIMEOUT} s")
        time.sleep(0.01)


# -- Flask-Limiter ------------------------------------------------------------------------


class FlaskLimited:
    """Flask-Limiter (``"LIMIT per second"``, a fixed window) on Werkzeug's threaded server.

    ``GET /items?page=N`` answers ``{"page": N, "items": [...]}``; every answer, 429s
    included, is recorded in `answers`.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        from flask import Flask, Response, jsonify, request
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address
        from werkzeug.serving import WSGIRequestHandler, make_server

        self.limit = limit
        self._answers: list[Answer] = []
        self._lock = threading.Lock()

        app = Flask("ratekit-flask-limited")
        app.config.update(
            RATELIMIT_HEADERS_ENABLED=True,  # X-RateLimit-Limit/Remaining/Reset, Retry-After
            RATELIMIT_STRATEGY="fixed-window",
            RATELIMIT_STORAGE_URI="memory://",
        )
        Limiter(get_remote_address, app=app, default_limits=[f"{limit} per second"])

        @app.get("/items")
        def items() -> Response:
            page = _page_number(request.args.get("page")) or 0
            first = page * PAGE_SIZE
            return jsonify(page=page, items=list(range(first, first + PAGE_SIZE)))

        @app.after_request
        def record(response: Response) -> Response:
            page = _page_number(request.args.get("page"))
            answer = Answer(page, response.status_code, time.time())
            with self._lock:
                self._answers.append(answer)
            return response

        class _Quiet(WSGIRequestHandler):
            def log_request(self, *args: object, **kwargs: object) -> None:
                """Log nothing: a test sends a hundred requests."""

        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_Quiet
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="flask-limited",
            daemon=True,
        )

    def answers(self) -> list[Answer]:
        """Every answer given so far, in order."""
        with self._lock:
            return list(self._answers)

    def start(self) -> FlaskLimited:
        """Serve in a thread of this process."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=START_TIMEOUT)
        self._server.server_close()


def serve_flask(limit: int = LIMIT) -> Iterator[FlaskLimited]:
    """Start a `FlaskLimited`, hand it over, and stop it afterwards (a fixture body)."""
    server = FlaskLimited(limit)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- nginx limit_req ------------------------------------------------------------------------


def nginx_path() -> str:
    """The ``nginx`` executable; skip without one (fail under ``CI=true``)."""
    path = shutil.which("nginx") or (DEBIAN_NGINX if os.access(DEBIAN_NGINX, os.X_OK) else None)
    if path is None:
        reason = (
            f"nginx is neither on PATH nor at {DEBIAN_NGINX}: the tests against a real "
            "server-side limiter need it (install Debian's nginx-light)"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}; CI=true: install it, as .ci/run does")
        pytest.skip(reason)
    return path


def _temp_paths(executable: str, directory: Path) -> str:
    """The ``*_temp_path`` directives, into *directory*, for the modules nginx has.

    nginx creates these directories at start (in ``/var/lib/nginx`` by default, which
    only root may write); a build without a module rejects its directive.
    """
    built = subprocess.run(  # noqa: S603 - nginx -V: how it was built
        [executable, "-V"], capture_output=True, text=True, check=False
    ).stderr
    modules = ["client_body"] + [
        module
        for module in ("proxy", "fastcgi", "uwsgi", "scgi")
        if f"--without-http_{module}_module" not in built
    ]
    return "\n".join(f"    {module}_temp_path {directory / module};" for module in modules)


class NginxLimited:
    """A real nginx under ``limit_req``: LIMIT requests per second, with *burst* (nodelay).

    Everything it writes is in *directory*: its configuration, pid file, error log and
    access log (one ``msec status page`` line per answer, read by `answers`).  It runs as a
    single process in the foreground (``daemon off; master_process off;``), so the
    user who starts it needs no rights beyond *directory*.

    ``GET /items?page=N`` answers ``{"ok":true,"page":N}``.  The page comes from
    ``return`` in a named location reached through ``try_files``: ``return`` runs in
    the rewrite phase, before ``limit_req`` (the preaccess phase), so a ``return`` in
    the limited location itself would answer every request and limit none.
    """

    def __init__(self, directory: Path, *, limit: int = LIMIT, burst: int = 0) -> None:
        self.executable = nginx_path()
        self.directory = directory
        self.limit = limit
        self.burst = burst
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rule(self) -> str:
        """The ``limit_req`` directive, as written in the configuration."""
        return "limit_req zone=z" + (f" burst={self.burst} nodelay" if self.burst else "") + ";"

    def config(self) -> str:
        """The configuration nginx runs with."""
        directory = self.directory
        return f"""daemon off;
master_process off;
pid {directory / "nginx.pid"};
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
{_temp_paths(self.executable, directory)}
    log_format answers '$msec $status $arg_page';
    access_log {self.access_log} answers;
    keepalive_requests 100000;
    limit_req_zone $binary_remote_addr zone=z:1m rate={self.limit}r/s;
    limit_req_status 429;
    limit_req_log_level info;
    server {{
        listen 127.0.0.1:{self.port};
        root {directory / "empty"};
        location = /items {{
            {self.rule}
            try_files /nothing @page;
        }}
        location @page {{
            default_type application/json;
            return 200 '{{"ok":true,"page":$arg_page}}';
        }}
    }}
}}
"""

    def answers(self) -> list[Answer]:
        """Every answer given so far, in order, from the access log."""
        if not self.access_log.exists():
            return []
        rows = []
        for line in self.access_log.read_text().splitlines():
            at, status, page = [*line.split(" ", 2), ""][:3]
            rows.append(Answer(_page_number(page), int(status), float(at)))
        return rows

    def start(self) -> NginxLimited:
        """Write the configuration, start nginx, and wait until its port accepts."""
        (self.directory / "empty").mkdir(exist_ok=True)
        path = self.directory / "nginx.conf"
        path.write_text(self.config())
        stderr = self.directory / "stderr.log"
        with stderr.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed executable and arguments
                [self.executable, "-p", str(self.directory), "-c", str(path), "-e", str(stderr)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        try:
            _wait_listening(self.port, self.process, stderr)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM nginx (SIGKILL if it lingers) and wait until it has exited."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=START_TIMEOUT / 4)
        process.wait(timeout=START_TIMEOUT)


def serve_nginx(directory: Path, *, burst: int = 0) -> Iterator[NginxLimited]:
    """Start a `NginxLimited` in *directory*, hand it over, and stop it afterwards."""
    server = NginxLimited(directory, burst=burst)
    try:
        server.start()
        yield server
    finally:
        server.stop()

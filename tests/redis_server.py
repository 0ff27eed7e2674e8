"""A real ``redis-server`` on a free loopback port, for the Redis store tests.

`RedisServer` starts one with no persistence, waits until it answers ``PING``, and can
stop, pause (SIGSTOP: it accepts connections but never answers) and restart it on the
same port.  The worker functions at the end run in child processes
(``multiprocessing`` with ``spawn``), so they live here, in a plain importable module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

#: How long a starting server may take to answer PING, in seconds (generous, for CI).
START_TIMEOUT = 20.0


def redis_server_path() -> str:
    """The ``redis-server`` executable; skip (or fail under ``CI=true``) without one."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not on PATH: the Redis store tests need a real one"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI=true: install it, as .ci/run does)")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, maybe locked
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, with no persistence."""

    def __init__(self, *extra: str) -> None:
        self.executable = redis_server_path()
        self.port = free_port()
        self.extra = extra
        self.directory = tempfile.mkdtemp(prefix="ratekit-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(  # noqa: S603 - a fixed executable and arguments
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server and wait until it has exited."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case it was paused
            process.kill()
        process.wait(timeout=START_TIMEOUT)

    def pause(self) -> None:
        """Freeze the server: connections are accepted, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def serve(*extra: str) -> Iterator[RedisServer]:
    """Yield a started server, and stop it afterwards (the body of a fixture)."""
    server = RedisServer(*extra)
    try:
        server.start()
        yield server
    finally:
        server.close()


# -- workers for the multiprocess tests (run in spawned children) -----------------------


def share_worker(  # noqa: PLR0913, PLR0917 - a child's whole brief, passed by multiprocessing
    url: str,
    key: str,
    limit: float,
    window: float,
    duration: float,
    offset: float,
    mode: str,
    barrier: object,
    results: object,
) -> None:
    """Use one shared sliding window for *duration* s; report the grants to *results*.

    The child's clocks (``time.monotonic`` and ``time.time``) are first moved by
    *offset* seconds, as on a host whose clock is off, before ratekit is imported; the
    instants reported are read from the real monotonic clock, which every process on
    the host shares.  Each grant is reported as ``(instant, uncertainty)``: the
    instant is the local end of its round trip (plus the booked delay), and the server
    decided within ``uncertainty`` seconds before it.  *mode* is ``"reserve"`` (book,
    then sleep the delay, as `acquire` does) or ``"try"`` (ask, and sleep the
    ``retry_after`` of a denial).
    """
    real = time.monotonic
    if offset:
        real_wall = time.time
        time.monotonic = lambda: real() + offset
        time.time = lambda: real_wall() + offset

    from ratekit.stores._redis import RedisStore

    grants: list[tuple[float, float]] = []
    with RedisStore(url=url, timeout=5.0) as store:
        limiter = store.sliding_window(key, limit, window)
        local = store.clock.now() - real()  # the offset this child's clock shows
        limiter.statistics()  # connect (and load the script) before the start
        barrier.wait()  # type: ignore[attr-defined]
        start = real()
        while real() - start < duration:
            sent = real()
            if mode == "reserve":
                reservation = limiter.reserve()
                received = real()
                grants.append((received + reservation.delay, received - sent))
                store.clock.sleep(reservation.delay)
            else:
                decision = limiter.try_acquire()
                received = real()
                if decision:
                    grants.append((received, received - sent))
                else:
                    store.clock.sleep(decision.retry_after)
    results.put((offset, local, grants))  # type: ignore[attr-defined]

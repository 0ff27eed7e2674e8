"""A real ``redis-server`` on a free loopback port, for the Redis store tests.

`RedisServer` starts one with no persistence, waits until it answers ``PING``, and can
stop, pause (SIGSTOP: it accepts connections but never answers) and restart it on the
same port.  The `Refusal` classes make a running server refuse calls (out of memory, a
replica, a failed save...) and accept them again.  The worker functions at the end run
in child processes (``multiprocessing`` with ``spawn``), so they live here, in a plain
importable module.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import TYPE_CHECKING, ClassVar

import pytest
import redis

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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


# -- a server that is up but refuses calls --------------------------------------------------

#: The user that `Refusal.prepare` adds, for the client under test, and its password.
USER, PASSWORD = "limits", "pw-Refus4l-3x"

#: How long a server may take to enter or leave a refusal, in seconds (generous, for CI).
SETTLE_TIMEOUT = 10.0


class Refusal:
    """A way to make a running server refuse the calls of `USER`, and to end it.

    The calls that `refuse` makes it refuse get an error reply at once; `allow` makes
    it accept them again, with the data it held.  Connect as `USER` (see `url`).
    """

    #: What the server says, as a regular expression: its error code and first sentence.
    said: ClassVar[str] = ""

    def __init__(self, server: RedisServer, admin: redis.Redis) -> None:
        self.server = server
        self.admin = admin

    @classmethod
    def prepare(cls, admin: redis.Redis) -> None:
        """Add `USER`, with every right, and make the server's periodic work brisk."""
        admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "~*", "+@all")
        admin.config_set("hz", 100)  # a failed save is noticed within 10 ms, not 100

    @staticmethod
    def url(server: RedisServer) -> str:
        """The URL of database 0 for `USER`."""
        return f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"

    def refuse(self) -> None:
        """Make the server refuse calls."""
        raise NotImplementedError

    def allow(self) -> None:
        """Make it accept them again."""
        raise NotImplementedError

    def until(self, done: Callable[[], bool]) -> None:
        """Wait until *done()* holds, for at most `SETTLE_TIMEOUT` seconds."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not done():
            assert time.monotonic() < deadline, f"{type(self).__name__} did not settle"
            time.sleep(0.002)


class OutOfMemory(Refusal):
    """Over ``maxmemory``, with the ``noeviction`` policy: writes are refused."""

    said = re.escape("OOM command not allowed when used memory > 'maxmemory'")

    def refuse(self) -> None:
        self.admin.config_set("maxmemory-policy", "noeviction")
        self.admin.config_set("maxmemory", 1)

    def allow(self) -> None:
        self.admin.config_set("maxmemory", 0)


class FailedSave(Refusal):
    """An RDB save failed (its directory is gone, so it cannot start again): writes stop."""

    said = "MISCONF Redis is configured to save RDB snapshots, .+"

    def refuse(self) -> None:
        self.admin.config_set("save", "3600 1")  # writes stop only with a save policy
        shutil.rmtree(self.server.directory)
        self.admin.bgsave()
        self.until(lambda: self._last_save() == (0, "err"))

    def _last_save(self) -> tuple[int, str]:
        info = self.admin.info("persistence")
        return int(info["rdb_bgsave_in_progress"]), str(info["rdb_last_bgsave_status"])

    def allow(self) -> None:
        self.admin.config_set("stop-writes-on-bgsave-error", "no")


class ReadOnlyReplica(Refusal):
    """A replica (of a master that is not there): writes are refused."""

    said = re.escape("READONLY You can't write against a read only replica")

    def refuse(self) -> None:
        self.admin.replicaof("127.0.0.1", str(free_port()))

    def allow(self) -> None:
        self.admin.replicaof("NO", "ONE")


class NotEnoughReplicas(Refusal):
    """``min-replicas-to-write`` and no replica: writes are refused."""

    said = re.escape("NOREPLICAS Not enough good replicas to write")

    def refuse(self) -> None:
        self.admin.config_set("min-replicas-to-write", 1)

    def allow(self) -> None:
        self.admin.config_set("min-replicas-to-write", 0)


class BusyScript(Refusal):
    """Another client's script runs past ``busy-reply-threshold``: every call is refused."""

    said = re.escape("BUSY Redis is busy running a script")

    def refuse(self) -> None:
        self.admin.config_set("busy-reply-threshold", 10)  # in ms
        self.looping = redis.Redis.from_url(self.server.url, socket_connect_timeout=5)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        self.until(self._busy)

    def _loop(self) -> None:
        with contextlib.suppress(redis.RedisError):  # killed, or the server stopped
            self.looping.eval("while true do end", 0)

    def _busy(self) -> bool:
        try:
            self.admin.ping()
        except redis.ResponseError as error:
            if not str(error).startswith("BUSY "):
                raise
            return True
        return False

    def allow(self) -> None:
        self.admin.script_kill()
        self.thread.join(timeout=SETTLE_TIMEOUT)
        self.looping.close()


class KeysDenied(Refusal):
    """An ACL lets `USER` read keys but not write them: calls that name keys are refused."""

    said = "NOPERM .+"  # the wording changed in Redis 7.2

    def refuse(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", USER, "resetkeys", "%R~*")

    def allow(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", USER, "resetkeys", "~*")


class WritesDenied(Refusal):
    """An ACL denies `USER` every write command: a script's writes are refused."""

    # Redis 7.0 and 7.1 say ERR, later versions NOPERM.
    said = r"(ERR The user executing the script can't run this command or subcommand|NOPERM .+)"

    def refuse(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", USER, "-@write")

    def allow(self) -> None:
        self.admin.execute_command("ACL", "SETUSER", USER, "+@all")


#: Every kind of refusal above.
REFUSALS: tuple[type[Refusal], ...] = (
    OutOfMemory,
    FailedSave,
    ReadOnlyReplica,
    NotEnoughReplicas,
    BusyScript,
    KeysDenied,
    WritesDenied,
)


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

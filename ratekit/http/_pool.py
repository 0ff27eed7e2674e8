"""`cancellable_pool`: a `urllib3.PoolManager` whose requests stop when they are cancelled.

urllib3 has no way to stop a request that waits for its response: the thread stays
in ``recv`` until the server answers or the read timeout passes.  The connections of
this pool watch the `ratekit.current_cancel` while they send and while they wait, and
when it is a `ratekit` cancellation (a map's event, the one a `Scheduler` hands its
calls) and gets set, they shut their socket down: the blocked ``recv`` returns at
once, and the request fails with `ratekit.Cancelled`.  Connecting is not watched: the
connect timeout bounds it.

The same mechanism bounds a whole request in time: `DEADLINES` sets a request's own
cancellation at its deadline, however slowly a server trickles its answer (a read
timeout bounds each read, not their sum).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ratekit._cancel import _CURRENT, Cancellation, abort_socket
from ratekit._clock import MONOTONIC
from ratekit._errors import Cancelled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Seconds the deadline thread waits for more work before it ends, so that a walk's
#: requests, one after another, do not start a thread each.
_LINGER = 0.5


@contextlib.contextmanager
def _watched(connection: HTTPConnection) -> Iterator[None]:
    """Shut *connection*'s socket down if the current cancellation is set meanwhile."""
    cancel = _CURRENT.get()
    if not isinstance(cancel, Cancellation):
        yield
        return
    if cancel.is_set():
        raise Cancelled("the request")
    remove = cancel.on_set(lambda: abort_socket(connection.sock))
    try:
        yield
    finally:
        remove()


class _HTTPConnection(HTTPConnection):
    """An HTTP connection whose sending and waiting a cancellation interrupts."""

    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - urllib3's own
        with _watched(self):
            super().request(*args, **kwargs)

    # urllib3 narrows http.client's return type the same way, with the same ignore.
    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        # The body is read here too, when the response is preloaded (the default).
        with _watched(self):
            return super().getresponse()


class _HTTPSConnection(_HTTPConnection, HTTPSConnection):
    """`_HTTPConnection` over TLS: its methods come first, then the TLS connection's."""


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def cancellable_pool(**kwargs: Any) -> urllib3.PoolManager:  # noqa: ANN401 - urllib3's options
    """Return a `urllib3.PoolManager` whose requests a cancellation stops while in flight.

    `ratekit.http.Client` and `ratekit.http.OAuth2Token` make theirs with it; make yours
    with it too when you pass one in (to set ``maxsize``, TLS options, ...), so that a
    map that fails fast, is closed or is shut down does not wait for its requests'
    answers.  It takes `urllib3.PoolManager`'s arguments.  Outside of a ratekit
    cancellation (a plain `threading.Event` as *cancel*, or none), it is an ordinary
    pool: a request in flight then ends within its timeouts.
    """
    pool = urllib3.PoolManager(**kwargs)
    pool.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
    return pool


class _Deadlines:
    """Runs callbacks at instants of the real monotonic clock, on one thread of its own.

    The thread starts with the first deadline, and ends once none is left for
    `_LINGER` seconds.  Callbacks must be quick and must not raise (they set events).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, at: float, callback: Callable[[], object]) -> Callable[[], None]:
        """Call *callback* at the instant *at* (`MONOTONIC` seconds); return its remover."""
        with self._cond:
            key = next(self._keys)
            heapq.heappush(self._heap, (at, key))
            self._callbacks[key] = callback
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ratekit-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][1] == key:  # earlier than what the thread waits for
                self._cond.notify()
        return lambda: self._remove(key)

    def _remove(self, key: int) -> None:
        with self._cond:
            if self._callbacks.pop(key, None) is not None:
                first = self._heap[0][1] == key
                self._heap = [entry for entry in self._heap if entry[1] != key]
                heapq.heapify(self._heap)
                if first:  # the thread waits for it: let it wait for the next, or linger
                    self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait(_LINGER)
                        if not self._heap:
                            self._thread = None
                            return
                        continue
                    at, key = self._heap[0]
                    wait = at - MONOTONIC.now()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        callback = self._callbacks.pop(key)
                        break
                    self._cond.wait(wait)
            callback()


#: The deadlines of every request in flight.
DEADLINES = _Deadlines()

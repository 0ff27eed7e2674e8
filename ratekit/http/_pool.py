"""`cancellable_pool`: a `urllib3.PoolManager` whose requests stop when they are cancelled.

urllib3 has no way to stop a request that waits for its response: the thread stays
in ``recv`` until the server answers or the read timeout passes.  The connections of
this pool watch the `ratekit.current_cancel` while they send and while they wait, and
when it is a `ratekit` cancellation (a map's event, the one a `Scheduler` hands its
calls) and gets set, they shut their socket down: the blocked ``recv`` returns at
once, and the request fails with `ratekit.Cancelled`.  Connecting is not watched: the
connect timeout bounds it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ratekit._cancel import _CURRENT, Cancellation, abort_socket
from ratekit._errors import Cancelled

if TYPE_CHECKING:
    from collections.abc import Iterator


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

"""Cancellation: one convention from the scheduler down to the socket.

Every blocking call in ratekit takes ``cancel``, an event with ``is_set()`` and
``wait(timeout)`` (`ratekit.typing.CancelEvent`; a `threading.Event` fits), and hands it
to everything it waits on.  A call that is given none uses `current_cancel`: the event
of the `ratekit.Scheduler` map whose worker runs it, or of the `Client.request` or
`RetryPolicy.call` it runs under.  So ``scheduler.map(client.get_json, urls)`` stops
every sleep, cooldown, limiter wait and request of the map when it fails fast, is
closed or is shut down, without the mapped function passing anything on.

A plain `threading.Event` can only be waited on: nothing can learn that it was set
without waiting on it.  What ratekit makes itself is a `Cancellation`, an event that
also runs callbacks when set, which is how it wakes what waits on something else (a
`threading.Condition`, a socket, another map).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import socket
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .typing import CancelEvent

#: The event that waits use when they are given none (see `current_cancel`).
_CURRENT: ContextVar[CancelEvent | None] = ContextVar("ratekit_cancel", default=None)

#: How often, in seconds, the thread that links a plain event to a `Cancellation`
#: checks whether the link is still wanted; being set is seen at once.
_WATCH_INTERVAL = 0.05


def current_cancel() -> CancelEvent | None:
    """Return the cancel event of the ratekit call this code runs under, if any.

    Inside a function that a `ratekit.Scheduler` map calls, it is the map's event, set
    when the map stops early (it fails fast, times out, is closed or shut down, or its
    own *cancel* is set); inside a `ratekit.http.Client` request or a
    `ratekit.retry.RetryPolicy.call` that was given a *cancel*, that event.  Every
    blocking call of ratekit that is given no *cancel* uses it, so cancellation reaches
    them without being passed on by hand; code of your own can watch it too.

    Returns:
        The event, or ``None`` outside of any of them.
    """
    return _CURRENT.get()


def resolve(cancel: CancelEvent | None) -> CancelEvent | None:
    """*cancel*, or the `current_cancel` when it is ``None``."""
    return _CURRENT.get() if cancel is None else cancel


@contextlib.contextmanager
def cancelled_by(cancel: CancelEvent | None) -> Iterator[None]:
    """Make *cancel* the `current_cancel` within the block (``None`` keeps the current one).

    Never around a ``yield`` of a generator: the variable would leak to its consumer.
    """
    if cancel is None or cancel is _CURRENT.get():
        yield
        return
    token = _CURRENT.set(cancel)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def wants_cancel(fn: Callable[..., object], *, first_is_item: bool) -> bool:
    """Whether *fn* takes a ``cancel`` keyword argument (to be given the event).

    With *first_is_item*, a first positional parameter named ``cancel`` does not count:
    it receives the item of a map.
    """
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    parameter = parameters.get("cancel")
    if parameter is None:
        return False
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
        return True
    if parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
        return False
    return not first_is_item or next(iter(parameters)) != "cancel"


def _nothing() -> None:
    """A callback remover that has nothing to remove."""


@final
class Cancellation(threading.Event):
    """A `threading.Event` that also runs callbacks, once, when it is set.

    Maps, requests and waits on conditions register a callback for as long as they
    wait, and remove it afterwards, so that a long-lived event does not collect them.
    A callback registered after the event was set runs at once, in the registering
    thread.  Callbacks must be quick and must not raise (they wake things; they do
    not do the work).
    """

    def __init__(self) -> None:
        super().__init__()
        # Reentrant: `set` may run in a signal handler, on the main thread, while that
        # same thread is inside `on_set`.
        self._callbacks_lock = threading.RLock()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._next_key = 0

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<Cancellation {state}, {len(self._callbacks)} callbacks>"

    def set(self) -> None:
        """Set the event, waking every waiter, then run each callback once."""
        with self._callbacks_lock:
            if self.is_set():
                return
            super().set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run *callback* when the event is set (at once if it is); return its remover."""
        with self._callbacks_lock:
            if not self.is_set():
                key = self._next_key
                self._next_key += 1
                self._callbacks[key] = callback
                if not self.is_set():
                    return functools.partial(self._remove, key)
                # Set in between, by a signal handler on this thread: run it here,
                # unless `set` took it already.
                if self._callbacks.pop(key, None) is None:
                    return _nothing
        callback()
        return _nothing

    def _remove(self, key: int) -> None:
        with self._callbacks_lock:
            self._callbacks.pop(key, None)


@contextlib.contextmanager
def linked(parent: CancelEvent | None, then: Callable[[], object]) -> Iterator[None]:
    """Call *then* as soon as *parent* is set, if that happens while the block runs.

    A `Cancellation` parent calls it back.  Any other event can only be waited on, so a
    thread waits on it for the block's duration, calls *then* the moment it is set, and
    ends within `_WATCH_INTERVAL` of the block (it is joined).
    """
    if parent is None:
        yield
        return
    if isinstance(parent, Cancellation):
        remove = parent.on_set(then)
        try:
            yield
        finally:
            remove()
        return
    if parent.is_set():
        then()
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if parent.wait(_WATCH_INTERVAL):
                then()
                return

    watcher = threading.Thread(target=watch, name="ratekit-cancel-link", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@contextlib.contextmanager
def as_cancellation(cancel: CancelEvent | None) -> Iterator[Cancellation | None]:
    """*cancel* as a `Cancellation` for the block: itself, or a new one `linked` to it.

    For a long-lived caller (a walk) that hands *cancel* to many requests: linking a
    plain event once, rather than once per request, lets each of them be aborted.
    """
    if cancel is None or isinstance(cancel, Cancellation):
        yield cancel
        return
    child = Cancellation()
    with linked(cancel, child.set):
        yield child


@contextlib.contextmanager
def waking(cancel: CancelEvent | None, wake: Callable[[], object]) -> Iterator[None]:
    """Call *wake* if *cancel* is set while the block runs (`Cancellation` only).

    For waits on a `threading.Condition`: *wake* notifies it, and the waiter checks
    ``cancel.is_set()`` each time it wakes.  Any other event cannot call back, and is
    not watched (as `linked` would, with a thread): such a wait ends only when what it
    waits for happens (a bounded request, normally).
    """
    with linked(cancel if isinstance(cancel, Cancellation) else None, wake):
        yield


def abort_socket(sock: Any) -> None:  # noqa: ANN401 - a socket, or an SSL one
    """Shut *sock* down for both directions, so that a thread blocked on it wakes at once.

    Shutting down, unlike closing, is safe while another thread uses the socket: its
    blocked ``recv`` returns end-of-file and its ``send`` fails.  `socket.socket`'s own
    method is called so that an SSL socket's state is left to the thread that owns it.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)

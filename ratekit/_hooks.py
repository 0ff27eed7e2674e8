"""Where `ratekit.telemetry` plugs into the core: one module attribute, read at construction.

The core never imports OpenTelemetry.  Each kind of object that telemetry reports
(limiters, `Keyed`, schedulers, HTTP clients, token providers, stores) calls `made`
at the end of its constructor; while ``ratekit.telemetry.instrument()`` watches for new
objects, `created` is its callback, and otherwise ``None``, so that constructing costs
one attribute read and nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: Called with every new object of a reported kind, or ``None``: nothing watches.
created: Callable[[object], None] | None = None

#: Set while `Keyed` makes the limiters of a key: those are reported through the `Keyed`
#: (its keys, evictions and refusals), not one series per key.
muted: ContextVar[bool] = ContextVar("ratekit_telemetry_muted", default=False)


def made(obj: object) -> None:
    """Report *obj*, just constructed, to whatever watches for new objects."""
    hook = created
    if hook is not None and not muted.get():
        hook(obj)


def unwatched(make: Callable[[], T]) -> T:
    """Call *make* with the construction hook muted; what it makes is not reported."""
    token = muted.set(True)
    try:
        return make()
    finally:
        muted.reset(token)

"""How to report a server's answer to a limiter that learns from answers."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    #: Reports one answer: its status, its headers and when its request was sent.
    Observer = Callable[[int, "Mapping[str, str] | None", "float | None"], None]


def observer(limiter: object) -> Observer | None:
    """How to report an answer to *limiter*, if it learns from answers; else ``None``.

    A limiter learns if it has an ``observe`` method (`ratekit.typing.LearningLimiter`).

    The instant the request was sent is passed on as ``sent_at`` to an ``observe`` that
    takes it (`ratekit.http.AdaptiveLimiter`, a composition), and left out for one
    that does not (a limiter written before ``sent_at`` existed).
    """
    observe = getattr(limiter, "observe", None)
    if not callable(observe):
        return None
    try:
        parameters = inspect.signature(observe).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: the old form
        parameters = []  # type: ignore[assignment]
    if any(p.name == "sent_at" or p.kind is p.VAR_KEYWORD for p in parameters):
        return lambda status, headers, sent: observe(status, headers, sent_at=sent)
    return lambda status, headers, _sent: observe(status, headers)

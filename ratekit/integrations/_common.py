"""What the integrations share: their gate, built as `ratekit.http.Client` builds its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ratekit._clock import MONOTONIC
from ratekit._validate import positive
from ratekit.http._gate import Gate

if TYPE_CHECKING:
    from ratekit.retry import RetryBudget, RetryPolicy
    from ratekit.typing import Clock, Limiter


def make_gate(  # noqa: PLR0913 - an integration's settings, passed on
    limiter: Limiter | None,
    retry: RetryPolicy | None,
    *,
    cooldown: bool,
    cost: float,
    clock: Clock | None,
    budget: RetryBudget | None = None,
) -> Gate:
    """The gate of an integration: *retry* on the limiter's clock, with *budget*.

    Raises:
        TypeError, ValueError: If *cost* is not a positive finite number, or *cooldown*
            not a bool (the message names which).
    """
    positive("cost", cost)
    if not isinstance(cooldown, bool):
        raise TypeError(f"cooldown must be True or False, got {cooldown!r}")
    if clock is None:
        clock = getattr(limiter, "clock", None) or MONOTONIC
    if retry is not None:
        changes: dict[str, Any] = {"clock": clock}
        if budget is not None:
            changes["budget"] = budget
        retry = attrs.evolve(retry, **changes)
    return Gate(limiter, retry, clock=clock, cooldown=cooldown)

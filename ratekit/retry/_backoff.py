"""Backoff policies: how long to wait before each retry."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal, get_args

import attrs

from ratekit._validate import at_least, attribute, one_of

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The jitter kinds `ExponentialBackoff` knows; see its docstring for each formula.
Jitter = Literal["none", "full", "equal", "decorrelated", "proportional"]

#: The names of the jitter kinds, in the order of `Jitter`: what ``jitter=`` accepts.
JITTERS: tuple[str, ...] = get_args(Jitter)

#: Full jitter: under contention it does the least total work of the kinds measured in
#: the AWS Architecture Blog study "Exponential Backoff And Jitter" (2015), because it
#: spreads retries the most.
DEFAULT_JITTER: Jitter = "full"

#: Where randomness comes from unless a policy is given its own `random.Random`.
_SYSTEM_RANDOM = random.Random()  # noqa: S311 - jitter, not cryptography


def _check_cap(instance: ExponentialBackoff, _attribute: object, value: float) -> None:
    at_least("cap", value, 0)
    if value < instance.base:
        raise ValueError(f"cap must be at least base ({instance.base!r}), got {value!r}")


@attrs.frozen(kw_only=True)
class ExponentialBackoff:
    """Delays that grow by *factor* from *base* up to *cap*, with jitter.

    The undisturbed delay before retry ``n`` (counting from 0) is
    ``d = min(cap, base * factor ** n)``.  The jitter then gives:

    - ``"none"``: ``d``;
    - ``"full"`` (the default): uniform in ``[0, d]``.  Under contention it does the
      least total work of these kinds (AWS Architecture Blog, "Exponential Backoff And
      Jitter", 2015), because it spreads competing clients the most;
    - ``"equal"``: ``d / 2`` plus uniform in ``[0, d / 2]``;
    - ``"decorrelated"``: ``min(cap, uniform in [base, 3 * previous])``, the previous
      delay starting at *base*; it grows from the last delay drawn, not from ``n``, so
      it ignores *factor* (and with a base of 0 it stays at 0);
    - ``"proportional"``: ``min(cap, d + uniform in [0, d / 2])``, for base 2 s:
      2-3 s, 4-6 s, 8-12 s, ...  (the formula of the CXone tutorial this project
      grew from).

    Every delay lies in ``[0, cap]``.  The policy is an immutable value: `delays` starts
    a fresh sequence each time, so one policy serves any number of retry loops.

    Args:
        base: The first delay, in seconds (at least 0).
        factor: How much each delay grows (at least 1).
        cap: The longest delay, in seconds (at least *base*).
        jitter: One of `JITTERS`.
        random: Where randomness comes from.  Give a seeded `random.Random` to get the
            same delays on every run; by default a process-wide generator is used.

    Raises:
        ValueError: If a number is negative or not finite, *factor* is below 1, *cap* is
            below *base*, or *jitter* is unknown (the message lists the valid ones).
    """

    base: float = attrs.field(default=0.5, validator=attribute(at_least, 0))
    factor: float = attrs.field(default=2.0, validator=attribute(at_least, 1))
    cap: float = attrs.field(default=60.0, validator=_check_cap)
    jitter: Jitter = attrs.field(default=DEFAULT_JITTER, validator=attribute(one_of, JITTERS))
    random: random.Random | None = attrs.field(default=None, eq=False, repr=False)

    def delays(self) -> Iterator[float]:
        """Yield the delay before each retry, in seconds, without end."""
        rng = _SYSTEM_RANDOM if self.random is None else self.random
        base, factor, cap = float(self.base), float(self.factor), float(self.cap)
        jitter = self.jitter
        delay = float(min(base, cap))
        previous = float(base)
        while True:
            if jitter == "none":
                yield delay
            elif jitter == "full":
                yield rng.uniform(0.0, delay)
            elif jitter == "equal":
                yield delay / 2 + rng.uniform(0.0, delay / 2)
            elif jitter == "proportional":
                yield min(cap, delay + rng.uniform(0.0, delay / 2))
            else:  # decorrelated
                previous = min(cap, rng.uniform(base, 3 * previous))
                yield previous
            # Grown by multiplication, so it never overflows: it saturates at the cap.
            delay = min(cap, delay * factor)


@attrs.frozen
class ConstantBackoff:
    """The same delay before every retry.

    Args:
        delay: Seconds to wait before each retry (at least 0).

    Raises:
        ValueError: If *delay* is negative or not finite.
    """

    delay: float = attrs.field(default=1.0, validator=attribute(at_least, 0))

    def delays(self) -> Iterator[float]:
        """Yield *delay* without end."""
        delay = float(self.delay)
        while True:
            yield delay

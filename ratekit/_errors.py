"""The exceptions that ratekit raises; they all derive from `RateKitError`."""

from __future__ import annotations


class RateKitError(Exception):
    """Base class of every exception that ratekit raises on purpose."""


class CostTooLarge(RateKitError, ValueError):
    """A cost can never be granted because it exceeds what the limiter can ever hold.

    Raised at once by every method (never a wait that cannot end). It is also a
    `ValueError`, since the cost is a bad argument for that limiter.

    Attributes:
        cost: The cost that was asked for.
        capacity: The most the limiter can ever grant at once.
    """

    def __init__(self, cost: float, capacity: float) -> None:
        self.cost = cost
        self.capacity = capacity
        super().__init__(
            f"cost={cost!r} can never be granted: it exceeds the limiter's capacity of {capacity!r}"
        )


class AcquireTimeout(RateKitError, TimeoutError):
    """A blocking acquire could not be granted within its timeout.

    Raised at once, before sleeping, as soon as the limiter knows the wait would not
    fit: nothing is consumed and nothing is slept.

    Attributes:
        cost: The cost that was asked for.
        timeout: The timeout that was given, in seconds.
        retry_after: The wait that would have been needed, in seconds.
    """

    def __init__(self, cost: float, timeout: float, retry_after: float) -> None:
        self.cost = cost
        self.timeout = timeout
        self.retry_after = retry_after
        super().__init__(
            f"cost={cost!r} needs a wait of {retry_after:.6g} s, "
            f"longer than timeout={timeout!r} s; nothing was consumed"
        )


class AcquireCancelled(RateKitError):
    """A blocking acquire was cancelled through its ``cancel`` event.

    What the wait had reserved was given back before this was raised.

    Attributes:
        cost: The cost that was asked for.
    """

    def __init__(self, cost: float) -> None:
        self.cost = cost
        super().__init__(f"acquire of cost={cost!r} was cancelled; its reservation was returned")

"""Every ratekit error survives pickling, as errors crossing process boundaries must."""

from __future__ import annotations

import pickle

import pytest

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    CostTooLarge,
    QueueFull,
    RateKitError,
    TooManyKeys,
)
from ratekit.retry import RetryBudgetExhausted, RetryError
from ratekit.stores import StoreUnavailable

ERRORS = [
    CostTooLarge(5.0, 4.0),
    AcquireTimeout(1.0, 0.5, 2.0),
    QueueFull(1.0, 0.3, 0.4),
    AcquireCancelled(2.0),
    TooManyKeys(10, 1.5),
    RetryError(3, "attempts", last_exception=ConnectionError("refused"), detail="no attempts"),
    RetryBudgetExhausted(2, "budget"),
    StoreUnavailable("Redis at 127.0.0.1:6379/0", "timed out after 1.0 s"),
    RateKitError("plain"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: type(error).__name__)
def test_errors_survive_pickling_with_their_attributes(error):
    """A pickled error comes back of the same type, message and attributes."""
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own data
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    for name in type(error)._fields:
        value = getattr(error, name)
        if isinstance(value, BaseException):
            assert repr(getattr(copy, name)) == repr(value)
        else:
            assert getattr(copy, name) == value

"""Retrying: backoff policies, Retry-After and rate-limit headers, retry policy and budget.

Everything here is usable on its own around any callable, and is what the HTTP client
builds on.
"""

from __future__ import annotations

from ratekit._errors import RetryBudgetExhausted, RetryError
from ratekit.retry._backoff import (
    DEFAULT_JITTER,
    JITTERS,
    ConstantBackoff,
    ExponentialBackoff,
    Jitter,
)
from ratekit.retry._budget import RetryBudget
from ratekit.retry._headers import (
    DEFAULT_RETRY_AFTER_CAP,
    RateLimitInfo,
    RateLimitPolicy,
    parse_rate_limit_headers,
    parse_retry_after,
)
from ratekit.retry._policy import (
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_ON,
    DEFAULT_RETRY_STATUSES,
    RetryEvent,
    RetryPolicy,
    retry_after_of,
)
from ratekit.typing import BackoffPolicy

__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RETRY_AFTER_CAP",
    "DEFAULT_RETRY_ON",
    "DEFAULT_RETRY_STATUSES",
    "JITTERS",
    "BackoffPolicy",
    "ConstantBackoff",
    "ExponentialBackoff",
    "Jitter",
    "RateLimitInfo",
    "RateLimitPolicy",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryError",
    "RetryEvent",
    "RetryPolicy",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "retry_after_of",
]

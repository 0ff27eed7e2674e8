"""ratekit_cxone: a ratekit client for the NICE CXone REST API.

`CXoneClient` walks completed contacts (the real platform's reporting API) or
interactions (the contract of the tutorial the project grew from), paced by a ratekit
limiter, with each record handed out once, typed (`Contact`, `Interaction`).
`CXoneConfig` says how to reach the tenant, from code or ``CXONE_*`` environment
variables.
"""

from __future__ import annotations

from ratekit_cxone._client import CXoneClient
from ratekit_cxone._config import DEFAULT_API_VERSION, DEFAULT_ISSUER, ConfigError, CXoneConfig
from ratekit_cxone._limits import adaptive_limiter, make_limiter, tutorial_limiter
from ratekit_cxone._models import Contact, CXoneStatistics, Interaction, RecordPage

# Plainly sorted (constants among the rest), as tests/test_packaging.py checks.
__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_ISSUER",
    "CXoneClient",
    "CXoneConfig",
    "CXoneStatistics",
    "ConfigError",
    "Contact",
    "Interaction",
    "RecordPage",
    "adaptive_limiter",
    "make_limiter",
    "tutorial_limiter",
]


def __getattr__(name: str) -> str:
    """Read ``__version__`` from the installed metadata, only when asked for."""
    if name == "__version__":
        from importlib.metadata import version

        return version("ratekit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

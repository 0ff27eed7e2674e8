"""ratekit_cxone: a ratekit client for the NICE CXone REST API.

The adapter (authentication, paginated contacts and interactions, a local simulator of
the API and the ``ratekit-cxone`` command) is built on ratekit's core.
"""

from __future__ import annotations

__all__: list[str] = []


def __getattr__(name: str) -> str:
    """Read ``__version__`` from the installed metadata, only when asked for."""
    if name == "__version__":
        from importlib.metadata import version

        return version("ratekit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

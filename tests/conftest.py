"""Test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE`` picks one; without it, CI (``CI`` set) runs the thorough ``ci``
profile and everything else the fast ``default`` one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from loopback import LoopbackServer, serve

if TYPE_CHECKING:
    from collections.abc import Iterator

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=20, deadline=None)

_profile = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "default"
)
settings.load_profile(_profile)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A real HTTP server on loopback, scripted by the test (see loopback.py)."""
    yield from serve()

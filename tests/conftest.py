"""Test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE`` picks one; without it, CI (``CI`` set) runs the thorough ``ci``
profile and everything else the fast ``default`` one.
"""

from __future__ import annotations

import gc
import os
import ssl
from typing import TYPE_CHECKING

import pytest
import trustme
from hypothesis import HealthCheck, settings
from limit_servers import FlaskLimited, NginxLimited, serve_flask, serve_nginx
from loopback import LoopbackServer, serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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
def collect_garbage() -> Iterator[None]:
    """Collect garbage after the test, for tests that make multiprocessing locks.

    A lock of a multiprocessing context registers a semaphore with the resource
    tracker, and its finalizer unregisters it.  If that finalizer runs in a garbage
    collection that starts while the tracker is itself busy (making the next lock),
    CPython 3.12 refuses the reentrant call and reports it as an unraisable warning,
    which fails the test that happens to be running.  Collecting at the end of each
    such test runs the finalizers while nothing is inside the tracker.
    """
    yield
    gc.collect()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A real HTTP server on loopback, scripted by the test (see loopback.py)."""
    yield from serve()


@pytest.fixture
def tls_server() -> Iterator[tuple[LoopbackServer, trustme.CA]]:
    """A loopback server over TLS, its certificate from a test CA; yields (server, CA).

    No client trusts the CA unless told to (``authority.configure_trust(context)``).
    """
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = LoopbackServer()
    server.serve_tls(context)
    server.start()
    try:
        yield server, authority
    finally:
        server.stop()


@pytest.fixture
def flask_limited() -> Iterator[FlaskLimited]:
    """Flask-Limiter at 20 per second (a fixed window, ``X-RateLimit-*`` headers) on loopback.

    A Flask app on Werkzeug's threaded server, in a thread; ``GET /items?page=N``.  It
    has ``url`` and ``limit``, and ``answers()`` lists every answer it gave.
    """
    yield from serve_flask()


@pytest.fixture
def nginx_limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NginxLimited]:
    """A real nginx under ``limit_req`` at 20 r/s on loopback, everything in *tmp_path*.

    No burst (strict spacing) unless parametrized indirectly with one, which is then
    ``burst=N nodelay``.  It has ``url``, ``limit`` and ``burst``, and ``answers()``
    reads every answer it gave from its access log.  Without nginx the test is skipped
    (failed under ``CI=true``).
    """
    yield from serve_nginx(tmp_path, burst=getattr(request, "param", 0))

"""sqlite_limiter: one limit shared by the processes of one host through an SQLite file."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING, Any

import pytest
from filelock import FileLock

from ratekit._clock import wall_time
from ratekit.stores import PyrateLimiter, StoreUnavailable
from ratekit.stores import sqlite_limiter as open_sqlite_limiter
from ratekit.typing import Limiter

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Multiprocessing locks are made here: their finalizers run between tests (conftest).
pytestmark = pytest.mark.usefixtures("collect_garbage")

#: Run in each child process: try to acquire until the deadline (wall-clock seconds, the
#: clock pyrate-limiter's SQLiteBucket stamps with), sleeping the reported wait after a
#: refusal, and record the wall-clock instants just before and just after each grant.
_WORKER = """
import time
ready.wait()
start.wait()
grants = []
while True:
    before = time.time()
    if before >= deadline.value:
        break
    decision = limiter.try_acquire()
    if decision:
        grants.append((before, time.time()))
    else:
        time.sleep(decision.retry_after)
results.put(grants)
"""


_opened: list[PyrateLimiter] = []


def sqlite_limiter(*args: Any, **kwargs: Any) -> PyrateLimiter:
    """`ratekit.stores.sqlite_limiter`, closed when the test ends (see `_close`)."""
    limiter = open_sqlite_limiter(*args, **kwargs)
    _opened.append(limiter)
    return limiter


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    """Close every limiter a test opened: an unclosed database warns on Python 3.13."""
    yield
    while _opened:
        _opened.pop().close()


def stored_stamps(path: Path, table: str = "ratekit") -> list[int]:
    """The millisecond stamps of every unit the database holds: what it admitted."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(f"SELECT item_timestamp FROM {table}").fetchall()  # noqa: S608
    return sorted(stamp for (stamp,) in rows)


def test_four_processes_share_one_limit_exactly_and_nearly_fill_it(tmp_path: Path) -> None:
    """Four processes at 100/s for 3 s: never over the limit, and 98% of the ideal."""
    path = tmp_path / "limits.db"
    limiter = sqlite_limiter(path, "100/second")
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(5)
    start = context.Event()
    deadline = context.Value("d", 0.0)
    results = context.Queue()
    shared = {"ready": ready, "start": start, "deadline": deadline, "results": results}
    workers = [
        # The limiter pickles to a recipe: each process opens the file for itself.
        context.Process(target=exec, args=(_WORKER, {**shared, "limiter": limiter}))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=60)
    started = wall_time()
    deadline.value = started + 3.0
    start.set()
    per_process = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    grants = [grant for grants in per_process for grant in grants]
    assert all(grants for grants in per_process), "every process got some grants"

    # What the store admitted, exactly: the 101st unit is always more than 1000 ms
    # after the first of the hundred before it (pyrate counts a closed 1000 ms window).
    stamps = stored_stamps(path)
    assert len(stamps) == len(grants)
    assert all(later - first > 1000 for first, later in zip(stamps, stamps[100:], strict=False))

    # What the processes saw: at most 100 grants certainly inside any second.
    ordered = sorted(grants)
    for index, (window_start, _) in enumerate(ordered):
        inside = sum(1 for _, after in ordered[index:] if after < window_start + 1.0)
        assert inside <= 100

    # Accuracy: the sliding log admits at most 300 in [s0, s0 + 2500 ms] (windows
    # opening at s0, s0 + 1001, s0 + 2002), with demand throughout that span.
    first = stamps[0]
    assert first + 2500 <= deadline.value * 1000, "the run ended too early to judge"
    admitted = sum(1 for stamp in stamps if stamp <= first + 2500)
    assert admitted >= 0.98 * 300


def test_is_a_ratekit_limiter_that_holds_across_connections(tmp_path: Path) -> None:
    """Two limiters on one file share the limit; retry_after is what the store reports."""
    first = sqlite_limiter(tmp_path / "a.db", "3/10s", "5/minute")
    second = sqlite_limiter(str(tmp_path / "a.db"), "3/10s, 5/minute")
    assert isinstance(first, Limiter)
    assert isinstance(first, PyrateLimiter)
    assert first.capacity == 3
    assert first.try_acquire(2)
    assert second.try_acquire()
    refused = first.try_acquire()
    assert not refused
    assert 9.0 < refused.retry_after <= 10.001
    assert second.statistics().level == 0.0
    first.close()
    second.close()


def test_a_locked_database_fails_closed_then_recovers(tmp_path: Path) -> None:
    """Locked beyond the timeout: StoreUnavailable; unlocked again: grants resume."""
    path = tmp_path / "locked.db"
    limiter = sqlite_limiter(path, "10/second", timeout=0.2)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable) as caught:
            limiter.try_acquire()
        assert "locked" in caught.value.reason
        assert str(path) in caught.value.store
        other.execute("ROLLBACK")
    assert limiter.try_acquire()
    assert stored_stamps(path) != []


def test_a_locked_database_with_fail_open_grants_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With fail_open, a locked database grants, with a warning, and writes nothing."""
    path = tmp_path / "open.db"
    limiter = sqlite_limiter(path, "1/minute", timeout=0.2, fail_open=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
            assert limiter.try_acquire()
            assert limiter.try_acquire()
        other.execute("ROLLBACK")
    assert [record.name for record in caplog.records] == ["ratekit.stores"] * 2
    assert "fail_open" in caplog.text
    assert stored_stamps(path) == []


def test_a_file_lock_held_elsewhere_gives_store_unavailable(tmp_path: Path) -> None:
    """The cross-process file lock held beyond the timeout fails closed too."""
    path = tmp_path / "held.db"
    limiter = sqlite_limiter(path, "10/second", timeout=0.1)
    with FileLock(f"{path}.lock"), pytest.raises(StoreUnavailable, match="lock"):
        limiter.try_acquire()
    assert limiter.try_acquire()


def test_a_path_that_is_not_a_database_file_gives_store_unavailable(tmp_path: Path) -> None:
    """A directory where the file should be cannot be opened: StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="SQLite database"):
        sqlite_limiter(tmp_path, "10/second")


def test_a_path_in_a_missing_directory_names_path(tmp_path: Path) -> None:
    """A missing directory is a clear error that names path, before anything is created."""
    with pytest.raises(FileNotFoundError, match="path="):
        sqlite_limiter(tmp_path / "missing" / "limits.db", "10/second")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"table": "bad name"}, "table"),
        ({"table": "x'; DROP TABLE y; --"}, "table"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
    ],
)
def test_bad_options_name_the_argument(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    """A bad table name or timeout is refused, naming it."""
    with pytest.raises(ValueError, match=name):
        sqlite_limiter(tmp_path / "x.db", "10/second", **kwargs)  # type: ignore[arg-type]


def test_limits_that_pyrate_cannot_hold_name_limits(tmp_path: Path) -> None:
    """A fractional limit, or none at all, is refused naming limits."""
    for limits in [("2.5/second",), ()]:
        with pytest.raises(ValueError, match="limits"):
            sqlite_limiter(tmp_path / "x.db", *limits)

"""The remembered rates of ratekit-cxone: one entry per tenant, fresh, atomic, never fatal."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from pathlib import Path

import platformdirs
import pytest

from ratekit import TokenBucket
from ratekit.http import AdaptiveLimiter
from ratekit.testing import FakeClock
from ratekit_cxone import ConfigError, adaptive_limiter, make_limiter
from ratekit_cxone._rates import (
    CACHE_DIR_VARIABLE,
    DEFAULT_MAX_AGE,
    RATES_FILE,
    DeferredLimiter,
    RateMemory,
    RatesUnavailable,
    RememberedRate,
    rates_path,
    tenant_key,
)

#: 2026-05-01T12:00:00Z, in seconds since the Unix epoch.
NOON = 1_777_636_800.0
ONE = "contacts https://cxone.niceincontact.com 11111111-2222-3333-4444-555555555555"
TWO = "interactions https://tenant.example.com"


class WallClock:
    """Wall time that a test sets."""

    def __init__(self, now=NOON):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def wall():
    """Wall time at NOON, movable."""
    return WallClock()


@pytest.fixture
def memory(tmp_path, wall):
    """A file of remembered rates in a directory not made yet, on the test's wall time."""
    return RateMemory(path=tmp_path / "cache" / RATES_FILE, now=wall)


def content(memory):
    """The file's JSON."""
    return json.loads(memory.path.read_text(encoding="utf-8"))


def test_a_rate_is_recalled_for_its_tenant_only(memory):
    """What was remembered for one tenant comes back for it, and for no other."""
    assert memory.recall(ONE) is None  # no file yet: nothing, and no error
    memory.remember(ONE, 38.2)
    assert memory.recall(ONE) == 38.2
    assert memory.recall(TWO) is None


def test_the_file_holds_the_rate_and_when_it_was_learnt_in_utc(memory):
    """The entry: requests per second, and the wall time as ISO 8601 UTC with a Z."""
    memory.remember(ONE, 12.5)
    assert content(memory) == {
        "version": 1,
        "tenants": {ONE: {"requests_per_second": 12.5, "learnt_at": "2026-05-01T12:00:00Z"}},
    }


def test_other_tenants_entries_are_kept(memory, wall):
    """Writing one tenant's rate keeps the others'; writing it again replaces only its own."""
    memory.remember(ONE, 10.0)
    wall.now += 60
    memory.remember(TWO, 20.0)
    wall.now += 60
    memory.remember(ONE, 11.0)
    tenants = content(memory)["tenants"]
    assert tenants[TWO] == {"requests_per_second": 20.0, "learnt_at": "2026-05-01T12:01:00Z"}
    assert tenants[ONE] == {"requests_per_second": 11.0, "learnt_at": "2026-05-01T12:02:00Z"}


def test_an_entry_older_than_the_maximum_age_is_ignored_then_dropped(memory, wall):
    """A week-old entry is still used; older, it is ignored and the next write drops it."""
    assert DEFAULT_MAX_AGE == 7 * 24 * 3600
    memory.remember(ONE, 10.0)
    wall.now += DEFAULT_MAX_AGE
    assert memory.recall(ONE) == 10.0
    wall.now += 1
    assert memory.recall(ONE) is None
    memory.remember(TWO, 20.0)
    assert list(content(memory)["tenants"]) == [TWO]


def test_an_entry_dated_in_the_future_is_ignored(memory, wall):
    """A date after now (the clock moved back) says nothing about the entry's age."""
    memory.remember(ONE, 10.0)
    wall.now -= 3600
    assert memory.recall(ONE) is None


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"\xff\xfe", b"[]", b'{"version": 2, "tenants": {}}', b'{"version": 1}'],
    ids=["broken", "not-utf8", "a-list", "another-version", "no-tenants"],
)
def test_an_unreadable_file_raises_and_the_next_write_replaces_it(memory, data):
    """A file that holds something else: reading says where and why; writing replaces it."""
    memory.path.parent.mkdir()
    memory.path.write_bytes(data)
    with pytest.raises(RatesUnavailable, match=f"^cannot read {re.escape(str(memory.path))}: not "):
        memory.recall(ONE)
    memory.remember(ONE, 10.0)
    assert memory.recall(ONE) == 10.0
    assert list(content(memory)["tenants"]) == [ONE]


@pytest.mark.parametrize(
    "entry",
    [
        {"requests_per_second": -1, "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": 0, "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": True, "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": "10", "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": float("inf"), "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": float("nan"), "learnt_at": "2026-05-01T12:00:00Z"},
        {"requests_per_second": 10},
        {"requests_per_second": 10, "learnt_at": "yesterday"},
        {"requests_per_second": 10, "learnt_at": "2026-05-01T12:00:00"},
        [10, "2026-05-01T12:00:00Z"],
    ],
)
def test_an_entry_that_is_not_one_is_left_out(memory, entry):
    """A bad entry is as good as none; the tenants beside it still count."""
    good = {"requests_per_second": 5.0, "learnt_at": "2026-05-01T11:00:00+00:00"}
    memory.path.parent.mkdir()
    memory.path.write_text(
        json.dumps({"version": 1, "tenants": {ONE: entry, TWO: good}}), encoding="utf-8"
    )
    assert memory.recall(ONE) is None
    assert memory.recall(TWO) == 5.0


def test_a_file_in_place_of_the_directory_cannot_be_read_or_written(tmp_path):
    """A directory in the way: both ways a RatesUnavailable naming the file."""
    (tmp_path / "cache").write_text("a file")
    memory = RateMemory(path=tmp_path / "cache" / RATES_FILE)
    with pytest.raises(RatesUnavailable, match=f"^cannot read {re.escape(str(memory.path))}: "):
        memory.recall(ONE)
    with pytest.raises(RatesUnavailable, match=f"^cannot write {re.escape(str(memory.path))}: "):
        memory.remember(ONE, 10.0)


def test_a_directory_in_place_of_the_file_cannot_be_read_or_written(memory):
    """The file is a directory: unreadable, unwritable, and no temporary file is left."""
    memory.path.mkdir(parents=True)
    with pytest.raises(RatesUnavailable, match="cannot read"):
        memory.recall(ONE)
    with pytest.raises(RatesUnavailable, match="cannot write"):
        memory.remember(ONE, 10.0)
    assert sorted(path.name for path in memory.path.parent.iterdir()) == [
        RATES_FILE,
        RATES_FILE + ".lock",
    ]


def test_writes_leave_only_the_file_and_its_lock(memory):
    """The temporary file of each write is renamed into place; nothing else stays."""
    for rate in (1.0, 2.0, 3.0):
        memory.remember(ONE, rate)
    assert sorted(path.name for path in memory.path.parent.iterdir()) == [
        RATES_FILE,
        RATES_FILE + ".lock",
    ]


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_only_a_positive_rate_is_remembered(memory, rate):
    """A rate that is not one is refused before anything is written."""
    with pytest.raises(ValueError, match="requests_per_second"):
        memory.remember(ONE, rate)
    assert not memory.path.exists()


def test_writers_at_once_keep_every_tenant(tmp_path):
    """Many writers at once (the lock is per open file): every tenant's last rate is kept."""
    path = tmp_path / RATES_FILE
    writers, rounds = 8, 25
    start = threading.Barrier(writers)

    def write(number):
        memory = RateMemory(path=path)
        start.wait()
        for round_ in range(1, rounds + 1):
            memory.remember(f"tenant-{number}", float(round_))

    threads = [threading.Thread(target=write, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tenants = json.loads(path.read_text(encoding="utf-8"))["tenants"]
    assert {key: entry["requests_per_second"] for key, entry in tenants.items()} == {
        f"tenant-{number}": float(rounds) for number in range(writers)
    }


def test_the_directory_comes_from_the_environment_variable(tmp_path):
    """RATEKIT_CXONE_CACHE_DIR names the directory; empty, it is as if unset."""
    assert rates_path({CACHE_DIR_VARIABLE: str(tmp_path)}) == tmp_path / RATES_FILE
    default = Path(platformdirs.user_cache_dir("ratekit", appauthor=False))
    assert rates_path({CACHE_DIR_VARIABLE: ""}) == default / RATES_FILE


def test_without_platformdirs_or_the_variable_nothing_is_remembered(monkeypatch, tmp_path):
    """No cli extra and no variable: there is nowhere to keep rates (None)."""
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # its import now fails
    assert rates_path({}) is None
    assert rates_path({CACHE_DIR_VARIABLE: str(tmp_path)}) == tmp_path / RATES_FILE


def test_a_tenant_key_is_its_identity_and_needs_every_part():
    """The key joins the identity's values in order; an unknown part gives no key."""
    identity = {"api": "contacts", "issuer": "https://cxone.niceincontact.com", "tenant_id": "t"}
    assert tenant_key(identity) == "contacts https://cxone.niceincontact.com t"
    assert tenant_key({**identity, "tenant_id": None}) is None
    assert tenant_key({}) is None


# --- the limiter that starts once the tenant is known ------------------------------------


def test_make_limiter_starts_an_adaptive_limiter_from_an_estimate():
    """make_limiter(estimate=x) and adaptive_limiter(estimate=x) hand x to the limiter."""
    limiter = make_limiter(None, estimate=12.5)
    assert isinstance(limiter, AdaptiveLimiter)
    assert limiter.estimate == 12.5
    assert adaptive_limiter(estimate=7.0).estimate == 7.0
    assert make_limiter(None).estimate is None


@pytest.mark.parametrize(
    ("rate", "estimate", "match"),
    [
        ("50/second", 10.0, "estimate needs no rate"),
        (None, 0.0, "invalid estimate 0.0"),
        (None, float("nan"), "invalid estimate nan"),
        (None, "fast", "invalid estimate 'fast'"),
    ],
)
def test_make_limiter_refuses_an_estimate_it_cannot_use(rate, estimate, match):
    """An estimate with a fixed rate, or one that is no rate: a ConfigError naming it."""
    with pytest.raises(ConfigError, match=match):
        make_limiter(rate, estimate=estimate)


def test_a_deferred_limiter_is_built_from_the_estimate_it_is_started_with():
    """start(x) builds the limiter from x; every call then goes to it."""
    clock = FakeClock()
    built = []

    def build(estimate):
        built.append(estimate)
        return adaptive_limiter(clock=clock, estimate=estimate)

    deferred = DeferredLimiter(build, clock=clock)
    assert deferred.clock is clock
    assert deferred.estimate is None
    assert built == []  # nothing is built before it is needed
    deferred.start(9.0)
    deferred.start(1.0)  # built already: no change
    assert built == [9.0]
    assert deferred.estimate == 9.0
    assert deferred.try_acquire()
    deferred.acquire()
    assert deferred.reserve().ok
    deferred.observe(200, {})
    assert deferred.statistics().granted == 3
    assert "AdaptiveLimiter" in repr(deferred)


def test_a_deferred_limiter_used_before_it_is_started_learns_from_scratch():
    """Asked for before start, it builds from no estimate, and start changes nothing."""
    built = []

    def build(estimate):
        built.append(estimate)
        return adaptive_limiter(clock=FakeClock(), estimate=estimate)

    deferred = DeferredLimiter(build)
    assert deferred.try_acquire()
    deferred.start(9.0)
    assert built == [None]


def test_a_deferred_limiter_without_an_estimate_reports_none():
    """A limiter that learns nothing (a fixed rate) has no estimate to remember."""
    clock = FakeClock()
    deferred = DeferredLimiter(lambda _: TokenBucket(10, capacity=1, clock=clock))
    deferred.start(None)
    deferred.observe(429, {})  # nothing to tell a limiter that does not learn
    assert deferred.estimate is None


def test_a_deferred_limiter_waits_asynchronously_through_its_limiter():
    """acquire_async goes to the limiter built."""
    clock = FakeClock()
    deferred = DeferredLimiter(lambda _: TokenBucket(10, capacity=1, clock=clock))
    asyncio.run(deferred.acquire_async())
    assert deferred.statistics().granted == 1


# --- one export's use of it ----------------------------------------------------------------


def remembered(memory, learnt=None):
    """A RememberedRate, its limiter (on a fake clock) and the warnings it gave.

    Nothing recalled, the limiter has *learnt* as its estimate (as if from the server).
    """
    clock = FakeClock()
    deferred = DeferredLimiter(
        lambda estimate: adaptive_limiter(clock=clock, estimate=estimate or learnt), clock=clock
    )
    warnings = []
    return RememberedRate(memory, deferred, warn=warnings.append), deferred, warnings


def test_an_export_starts_from_the_remembered_rate_and_saves_what_it_learnt(memory):
    """start() recalls the tenant's rate into the limiter; save() writes its estimate."""
    memory.remember(ONE, 10.0)
    rate, deferred, warnings = remembered(memory)
    identity = {"api": "contacts", "issuer": ONE.split()[1], "tenant_id": ONE.split()[2]}
    assert rate.start(identity) == 10.0
    assert deferred.estimate == 10.0
    deferred.acquire()
    rate.save()
    assert memory.recall(ONE) == deferred.estimate
    assert warnings == []


def test_nothing_is_saved_without_requests_an_estimate_or_a_tenant(memory, wall):
    """No request granted, no estimate, or no tenant known: the file is not written."""
    identity = {"api": "interactions", "tenant_url": "https://tenant.example.com"}
    rate, deferred, _ = remembered(memory, learnt=5.0)
    rate.save()  # before start: no tenant
    rate.start(identity)
    rate.save()  # an estimate, but no request went out at it
    assert not memory.path.exists()
    rate, deferred, _ = remembered(memory)
    rate.start(identity)
    deferred.acquire()
    rate.save()  # a request, but nothing learnt
    assert not memory.path.exists()
    rate, deferred, _ = remembered(memory, learnt=5.0)
    rate.start({**identity, "tenant_url": None})
    deferred.acquire()
    rate.save()  # no tenant to remember it for
    assert not memory.path.exists()


def test_a_cache_that_fails_both_ways_warns_once(tmp_path):
    """Unreadable at the start and unwritable at the end: one warning, no exception."""
    (tmp_path / "cache").write_text("a file")
    memory = RateMemory(path=tmp_path / "cache" / RATES_FILE)
    rate, deferred, warnings = remembered(memory, learnt=5.0)
    assert rate.start({"api": "interactions", "tenant_url": "https://t.example"}) is None
    deferred.acquire()
    rate.save()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"cannot read {memory.path}: ")
    assert warnings[0].endswith("; the tenant's rate is learnt afresh")


def test_a_cache_that_cannot_be_written_warns(memory):
    """Readable but not writable (a directory in the way of the write): one warning."""
    rate, deferred, warnings = remembered(memory, learnt=5.0)
    rate.start({"api": "interactions", "tenant_url": "https://t.example"})
    memory.path.mkdir(parents=True)  # after the start: the write alone fails
    deferred.acquire()
    rate.save()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"cannot write {memory.path}: ")
    assert warnings[0].endswith("; the learnt rate is not remembered")


def test_a_remembered_rate_the_limiter_refuses_is_a_warning(memory):
    """A rate the limiter does not take: one warning, and it learns from scratch."""
    memory.remember(TWO, 1e6)
    built = []

    def build(estimate):
        if estimate is not None:
            raise ConfigError(f"invalid estimate {estimate!r}: out of range")
        built.append(estimate)
        return adaptive_limiter(clock=FakeClock())

    warnings = []
    rate = RememberedRate(memory, DeferredLimiter(build), warn=warnings.append)
    assert rate.start({"api": "interactions", "tenant_url": "https://tenant.example.com"}) is None
    assert built == [None]
    [warning] = warnings
    assert warning == (
        f"the rate remembered for the tenant in {memory.path} is refused (invalid estimate "
        "1000000.0: out of range); the tenant's rate is learnt afresh"
    )

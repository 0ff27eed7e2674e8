"""Cancellation reaches every wait: from a map's failure, shutdown or event down to sockets.

Real threads and a real HTTP server on loopback; the time bounds are generous (a second
where the waits they cut short would last six or more).
"""

from __future__ import annotations

import contextvars
import pickle
import ssl
import sys
import threading
import time

import pytest
from loopback import Reply

import ratekit
from ratekit import (
    AcquireCancelled,
    Cancelled,
    Scheduler,
    SchedulerClosed,
    TokenBucket,
    current_cancel,
)
from ratekit._cancel import Cancellation, cancelled_by, linked
from ratekit.http import Client, HTTPStatusError, OffsetPaginator, cancellable_pool
from ratekit.retry import RetryError
from ratekit.testing import FakeClock

#: Generous real-time bound for what must happen "at once".
PROMPT = 1.0


def helper_threads_gone(before, timeout=5.0):
    """Whether every thread started since *before* has ended (server threads aside)."""
    deadline = time.monotonic() + timeout
    while True:
        extra = {
            thread
            for thread in set(threading.enumerate()) - before
            if "process_request" not in thread.name
        }
        if not extra or time.monotonic() > deadline:
            return not extra
        time.sleep(0.01)


# --- the convention ------------------------------------------------------------------------


def test_current_cancel_is_none_outside_and_the_maps_event_inside():
    """A mapped call sees its map's event, also given as its cancel argument."""
    seen = []

    def call(item, cancel):
        seen.append((current_cancel() is cancel, isinstance(cancel, threading.Event)))
        return item

    assert current_cancel() is None
    with Scheduler(2) as scheduler:
        assert list(scheduler.map(call, range(4))) == [0, 1, 2, 3]
    assert seen == [(True, True)] * 4
    assert current_cancel() is None


def test_cancelled_by_sets_and_restores_the_current_event():
    """Within the block the event is current; after it, the one before is again."""
    outer, inner = threading.Event(), threading.Event()
    with cancelled_by(outer):
        assert current_cancel() is outer
        with cancelled_by(inner):
            assert current_cancel() is inner
        with cancelled_by(None):
            assert current_cancel() is outer
        assert current_cancel() is outer
    assert current_cancel() is None
    assert contextvars.copy_context().run(current_cancel) is None


def test_a_cancellation_runs_each_callback_once_and_late_ones_at_once():
    """Callbacks run once when set; removed ones never; one added after runs at once."""
    event = Cancellation()
    calls = []
    event.on_set(lambda: calls.append("a"))
    remove = event.on_set(lambda: calls.append("removed"))
    remove()
    event.set()
    event.set()
    assert calls == ["a"]
    assert event.wait(0)
    event.on_set(lambda: calls.append("late"))
    assert calls == ["a", "late"]
    assert "set" in repr(event)


def test_a_plain_event_is_linked_by_a_thread_that_ends_with_the_block():
    """A threading.Event parent sets the child at once; its watcher ends with the block."""
    before = set(threading.enumerate())
    parent, child = threading.Event(), Cancellation()
    with linked(parent, child.set):
        assert not child.is_set()
        started = time.monotonic()
        parent.set()
        assert child.wait(PROMPT)
        assert time.monotonic() - started < PROMPT
    assert set(threading.enumerate()) <= before
    unset, other = threading.Event(), Cancellation()
    with linked(unset, other.set):
        pass
    assert not other.is_set()
    assert set(threading.enumerate()) <= before


def test_cancelled_errors_pickle_and_name_what_stopped():
    """Cancelled and AcquireCancelled survive pickling; the latter is a Cancelled."""
    error = pickle.loads(pickle.dumps(Cancelled("the wait")))  # noqa: S301 - our own bytes
    assert str(error) == "the wait was cancelled"
    assert error.what == "the wait"
    acquire = pickle.loads(pickle.dumps(AcquireCancelled(2.0)))  # noqa: S301 - our own bytes
    assert isinstance(acquire, Cancelled)
    assert acquire.cost == 2.0
    assert "reservation was returned" in str(acquire)


def test_a_limiter_wait_uses_the_current_event():
    """An acquire given no cancel event is woken by the current one."""
    bucket = TokenBucket(0.1, 1)
    bucket.acquire()
    event = Cancellation()
    threading.Timer(0.1, event.set).start()
    started = time.monotonic()
    with cancelled_by(event), pytest.raises(AcquireCancelled):
        bucket.acquire()  # would wait 10 s
    assert time.monotonic() - started < PROMPT
    assert bucket.statistics().cancelled == 1


# --- a map over an HTTP client ------------------------------------------------------------


def test_fail_fast_reaches_the_caller_while_the_others_sleep_on_retry_after(server):
    """One page's 404 is raised within a second while 429s ask the others to wait 6 s.

    No request starts after the failure, and no worker thread is left behind.
    """
    all_four_sent = threading.Barrier(4)

    def answer(index):
        if index < 4:  # the first calls, one per worker: all sent before any answer
            all_four_sent.wait(timeout=10)
        if index == 3:  # then answered after the 429s: the cooldown is on by then
            return Reply(404, body="nope", delay=0.3)
        return Reply(429, {"Retry-After": "6"})

    for index in range(12):
        server.route("GET", f"/p/{index}")(lambda _, index=index: answer(index))
    client = Client(TokenBucket(100, 10), base_url=server.url)
    before = set(threading.enumerate())
    started = time.monotonic()
    with Scheduler(4) as scheduler, pytest.raises(HTTPStatusError) as raised:
        list(scheduler.map(client.get_json, [f"/p/{index}" for index in range(12)]))
    elapsed = time.monotonic() - started
    sent = len(server.requests)
    assert raised.value.status == 404
    assert elapsed < PROMPT
    assert sent == 4  # the four first calls; none after
    time.sleep(0.3)
    assert len(server.requests) == sent
    assert helper_threads_gone(before)


def test_requests_in_flight_are_aborted_when_the_map_fails(server):
    """Calls waiting on slow answers stop at once when another call fails."""
    server.route("GET", "/slow")(lambda _: Reply(200, body="{}", delay=10))
    server.route("GET", "/bad")(lambda _: Reply(404, body="gone", delay=0.3))
    client = Client(None, base_url=server.url)
    started = time.monotonic()
    with Scheduler(4) as scheduler, pytest.raises(HTTPStatusError):
        list(scheduler.map(client.get_json, ["/slow", "/slow", "/bad", "/slow"]))
    assert time.monotonic() - started < PROMPT
    assert client.statistics().failures == 3  # the three aborted


def test_requests_in_flight_over_tls_are_aborted_too(tls_server):
    """Over TLS, the slow answers' sockets are shut down as well: the map fails at once."""
    server, authority = tls_server
    server.route("GET", "/slow")(lambda _: Reply(200, body="{}", delay=10))
    server.route("GET", "/bad")(lambda _: Reply(404, body="gone", delay=0.3))
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    client = Client(None, base_url=server.url, pool=cancellable_pool(ssl_context=trust))
    started = time.monotonic()
    with Scheduler(3) as scheduler, pytest.raises(HTTPStatusError):
        list(scheduler.map(client.get_json, ["/slow", "/bad", "/slow"]))
    assert time.monotonic() - started < PROMPT
    assert client.statistics().failures == 2  # the two aborted


def test_shutdown_from_another_thread_ends_a_map_of_requests(server):
    """A supervisor's shutdown() ends the consumer's iteration within a second."""
    server.route("GET", "/wait")(lambda _: Reply(429, {"Retry-After": "30"}))
    client = Client(TokenBucket(100, 10), base_url=server.url)
    scheduler = Scheduler(3)
    threading.Timer(0.3, scheduler.shutdown).start()
    started = time.monotonic()
    with pytest.raises(SchedulerClosed):
        list(scheduler.map(client.get_json, ["/wait"] * 6))
    assert time.monotonic() - started < 0.3 + PROMPT


def test_a_cooldown_gives_up_at_the_deadline_of_every_request_that_shares_it(server):
    """A Retry-After past the deadline fails every sharer at once, with reason "deadline"."""
    server.route("GET", "/a")(lambda _: Reply(429, {"Retry-After": "300"}))
    server.route("GET", "/b")(lambda _: Reply.json({"ok": True}))
    clock = FakeClock()
    limiter = TokenBucket(100, 10, clock=clock)
    policy = ratekit.retry.RetryPolicy(attempts=5, deadline=60.0)
    first = Client(limiter, base_url=server.url, retry=policy)
    second = Client(limiter, base_url=server.url, retry=policy)
    with pytest.raises(RetryError) as saw_it:
        first.get_json("/a")
    with pytest.raises(RetryError) as shared_it:
        second.get_json("/b")
    assert saw_it.value.reason == shared_it.value.reason == "deadline"
    assert shared_it.value.attempts == 0
    assert str(shared_it.value) == (
        "gave up before the first attempt (a shared cooldown of 300 s would pass the "
        "deadline of 60 s)"
    )
    assert clock.sleeps == []  # nobody slept
    assert [request.path for request in server.requests] == ["/a"]
    within = Client(limiter, base_url=server.url, retry=ratekit.retry.RetryPolicy(deadline=400))
    assert within.get_json("/b") == {"ok": True}  # a deadline past the cooldown waits it out
    assert clock.now() == 300.0


def test_a_set_event_wakes_the_cooldown_and_the_retry_sleep(server):
    """An event set by the caller stops a request sleeping on Retry-After, at once."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    client = Client(TokenBucket(100, 10), base_url=server.url)
    for _ in range(2):  # the retry sleep first, then the shared cooldown
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            client.get_json("/busy", cancel=stop)
        assert time.monotonic() - started < 0.2 + PROMPT
    assert len(server.requests) == 1


def test_a_cancelled_request_sends_nothing():
    """A request whose event is set before it starts is not sent at all."""
    stop = threading.Event()
    stop.set()
    client = Client(None, base_url="http://127.0.0.1:9")
    with pytest.raises(Cancelled):
        client.get("/x", cancel=stop)
    with cancelled_by(stop), pytest.raises(Cancelled):
        Client(None, base_url="http://127.0.0.1:9", retry=None).get("/x")
    assert client.statistics().requests == 0


def test_a_nested_map_stops_with_the_map_that_runs_it():
    """A map started inside a mapped call is cancelled when the outer map fails."""
    woken = []

    def inner(_item, cancel):
        woken.append(cancel.wait(10))

    def outer(item):
        if item == 1:
            time.sleep(0.2)
            raise ValueError(item)
        with Scheduler(2) as nested:
            list(nested.map(inner, range(2)))
        return item

    started = time.monotonic()
    with Scheduler(2) as scheduler, pytest.raises(ValueError, match="1"):
        list(scheduler.map(outer, [0, 1]))
    assert time.monotonic() - started < PROMPT
    assert woken == [True, True]


def test_a_map_stops_when_its_own_event_is_set():
    """map(cancel=event): setting it from another thread raises Cancelled at once."""
    stop = threading.Event()
    waited = []

    def call(_item, cancel):
        waited.append(cancel.wait(10))

    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with Scheduler(2) as scheduler, pytest.raises(Cancelled, match="the map"):
        list(scheduler.map(call, range(4), cancel=stop))
    assert time.monotonic() - started < 0.2 + PROMPT
    assert waited == [True, True]


def test_a_cancelled_map_raises_cancelled_whatever_its_woken_calls_do_next():
    """Cancelled is recorded before the map's event wakes its calls: never their error.

    Frequent thread switches widen the window in which a woken call could report first.
    """
    switch = sys.getswitchinterval()
    outcomes = set()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            stop, all_blocked = threading.Event(), threading.Barrier(9)

            def call(item, cancel, all_blocked=all_blocked):
                all_blocked.wait(10)
                cancel.wait(10)
                raise RuntimeError(f"gave up on {item}")

            setter = threading.Thread(target=lambda s=stop, b=all_blocked: (b.wait(10), s.set()))
            setter.start()
            with Scheduler(8) as scheduler:
                try:
                    list(scheduler.map(call, range(8), cancel=stop))
                except (Cancelled, RuntimeError) as error:
                    outcomes.add(type(error))
            setter.join()
    finally:
        sys.setswitchinterval(switch)
    assert outcomes == {Cancelled}


def test_a_fanned_out_walk_stops_when_its_event_is_set(server):
    """records(fan_out=..., cancel=event): the pages in flight stop, Cancelled is raised."""
    total = 50

    @server.route("GET", "/items")
    def items(request):
        skip = int(request.query["skip"][0])
        body = {"items": list(range(skip, min(skip + 10, total))), "totalRecords": total}
        return Reply.json(body) if skip == 0 else Reply(200, body="{}", delay=10)

    client = Client(None, base_url=server.url)
    paginator = OffsetPaginator(10, records_key="items")
    stop = threading.Event()
    got = []

    def walk(scheduler):
        for record in paginator.records(client, "/items", fan_out=scheduler, cancel=stop):
            got.append(record)
            if record == 9:
                threading.Timer(0.2, stop.set).start()

    started = time.monotonic()
    with Scheduler(4) as scheduler, pytest.raises(Cancelled):
        walk(scheduler)
    assert time.monotonic() - started < 0.2 + PROMPT
    assert got == list(range(10))

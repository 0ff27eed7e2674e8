"""ratekit.integrations.requests: RateLimitedAdapter on a real requests Session, on loopback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs
import pytest
import requests
from loopback import LoopbackServer, Reply, Request, free_port, script

import ratekit
from ratekit import Scheduler, TokenBucket
from ratekit.http import DEFAULT_RETRY, AdaptiveLimiter, Client, ClientStatistics, ConnectionFailed
from ratekit.integrations.requests import RateLimitedAdapter
from ratekit.retry import ConstantBackoff, RetryError, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Quick retries, so that the tests do not sleep the default backoff.
QUICK = attrs.evolve(DEFAULT_RETRY, backoff=ConstantBackoff(0.01))


@pytest.fixture
def sessions() -> Iterator[list[requests.Session]]:
    """The sessions a test opens, closed at its end."""
    opened: list[requests.Session] = []
    yield opened
    for session in opened:
        session.close()


@pytest.fixture
def session_for(sessions) -> Callable[[LoopbackServer | str, RateLimitedAdapter], requests.Session]:
    """Open a session with *adapter* mounted for a server (or a base URL), closed after."""

    def open_session(server: LoopbackServer | str, adapter: RateLimitedAdapter) -> requests.Session:
        url = server if isinstance(server, str) else server.url
        session = requests.Session()
        session.mount(url + "/", adapter)
        sessions.append(session)
        return session

    return open_session


def test_the_limit_holds_across_threads(session_for, server: LoopbackServer):
    """Four threads, 30 requests, 20/s with no burst: arrivals spaced by the rate."""
    server.route("GET", "/items")(lambda _: Reply.json([1]))
    limiter = TokenBucket("20/s", capacity=1)
    session = session_for(server, RateLimitedAdapter(limiter))
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(lambda _: session.get(server.url + "/items").status_code, range(30))
        )
    assert statuses == [200] * 30
    arrivals = sorted(r.at for r in server.hits("/items"))
    # 30 grants at 20/s with no burst take at least 29 slots of 50 ms.
    assert arrivals[-1] - arrivals[0] >= 29 * 0.05 - 0.05
    # The server sees each request a scheduling delay after its grant (under load, up
    # to a fraction of a second), so grants of a 1-second span can arrive closer
    # together: no 0.75 s span holds more than a second's grants allow (20, plus the
    # one at its start) unless one delivery took over 0.25 s.
    assert max(sum(1 for b in arrivals if a <= b < a + 0.75) for a in arrivals) <= 21


def test_a_429_pauses_every_thread_that_shares_the_limiter(session_for, server: LoopbackServer):
    """After a 429 with Retry-After: 1, no request from any thread arrives for a second."""
    count = 0
    lock = threading.Lock()
    refused: list[float] = []

    def handler(request: Request) -> Reply:
        nonlocal count
        with lock:
            count += 1
            if count == 6:
                refused.append(request.at)
                return Reply(429, {"Retry-After": "1"})
        return Reply.json(count)

    server.route("GET", "/work")(handler)
    limiter = TokenBucket("100/s", capacity=1)
    session = session_for(server, RateLimitedAdapter(limiter, retry=QUICK))
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(lambda _: session.get(server.url + "/work").status_code, range(20))
        )
    assert statuses == [200] * 20  # the refused one was retried after the cooldown
    (at,) = refused
    hits = server.hits("/work")
    assert len(hits) == 21
    # Requests in flight when the 429 came (4 threads: at most 3 others) may still arrive.
    during = [r for r in hits if at < r.at < at + 1.0 - 0.02]
    assert len(during) <= 3
    assert max(r.at for r in hits) >= at + 1.0 - 0.02


def test_adapters_and_a_client_on_one_limiter_share_the_cooldown(
    session_for, server: LoopbackServer
):
    """A 429 seen through one session holds another session and a ratekit Client too."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "1"}))
    server.route("GET", "/ok")(lambda _: Reply.json("ok"))
    limiter = TokenBucket("100/s", capacity=5)
    first = session_for(server, RateLimitedAdapter(limiter, retry=None))
    second = session_for(server, RateLimitedAdapter(limiter, retry=None))
    assert first.get(server.url + "/busy").status_code == 429
    started = time.monotonic()
    assert second.get(server.url + "/ok").status_code == 200
    with Client(limiter, base_url=server.url, retry=None) as client:
        assert client.get_json("/ok") == "ok"
    assert time.monotonic() - started >= 1.0 - 0.05
    (ok, _) = server.hits("/ok")
    (busy,) = server.hits("/busy")
    assert ok.at - busy.at >= 1.0 - 0.05
    assert first.adapters[server.url + "/"].statistics().cooled == pytest.approx(1.0, abs=0.05)  # type: ignore[attr-defined]


def test_a_get_is_retried_until_it_succeeds(session_for, server: LoopbackServer):
    """A GET answered 503 twice is sent a third time, and its answer returned."""
    server.route("GET", "/flaky")(script(Reply(503), Reply(503), Reply.json("done")))
    adapter = RateLimitedAdapter(None, retry=QUICK)
    response = session_for(server, adapter).get(server.url + "/flaky")
    assert response.json() == "done"
    assert len(server.hits("/flaky")) == 3
    assert adapter.statistics() == ClientStatistics(requests=3, throttled=0, retries=2, failures=0)


def test_a_post_is_not_repeated_after_a_502(session_for, server: LoopbackServer):
    """The server may have acted on it: the 502 is returned, sent once."""
    server.route("POST", "/orders")(script(Reply(502), Reply.json("created")))
    response = session_for(server, RateLimitedAdapter(None, retry=QUICK)).post(
        server.url + "/orders", json={"n": 1}
    )
    assert response.status_code == 502
    assert len(server.hits("/orders")) == 1


def test_a_post_is_retried_after_a_429_and_with_an_idempotency_key(
    session_for, server: LoopbackServer
):
    """A 429 turned the POST away; an Idempotency-Key makes a 502 safe to repeat."""
    server.route("POST", "/orders")(script(Reply(429), Reply.json("created")))
    server.route("POST", "/keyed")(script(Reply(502), Reply.json("created")))
    session = session_for(server, RateLimitedAdapter(None, retry=QUICK))
    assert session.post(server.url + "/orders", json={}).json() == "created"
    assert len(server.hits("/orders")) == 2
    keyed = session.post(server.url + "/keyed", json={}, headers={"Idempotency-Key": "k1"})
    assert keyed.json() == "created"
    assert len(server.hits("/keyed")) == 2


def test_a_generator_body_is_not_sent_twice(session_for, server: LoopbackServer):
    """A generator is spent once sent: neither a 502 nor a 429 sends it again."""
    # A generator goes chunked, which the test server does not read: it closes instead.
    close = {"Connection": "close"}
    server.route("PUT", "/upload")(script(Reply(502, close), Reply.json("stored")))
    server.route("POST", "/busy")(script(Reply(429, close), Reply.json("stored")))
    session = session_for(server, RateLimitedAdapter(None, retry=QUICK))
    response = session.put(server.url + "/upload", data=iter([b"a", b"b"]))
    assert response.status_code == 502
    assert len(server.hits("/upload")) == 1
    busy = session.post(server.url + "/busy", data=iter([b"a", b"b"]))
    assert busy.status_code == 429
    assert len(server.hits("/busy")) == 1


def test_a_file_body_is_rewound_for_each_attempt(session_for, server: LoopbackServer, tmp_path):
    """A file can be read again: each attempt sends it whole."""
    server.route("PUT", "/upload")(script(Reply(503), Reply(503), Reply.json("stored")))
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 5000)
    session = session_for(server, RateLimitedAdapter(None, retry=QUICK))
    with upload.open("rb") as body:
        response = session.put(server.url + "/upload", data=body)
    assert response.json() == "stored"
    assert [len(hit.body) for hit in server.hits("/upload")] == [5000, 5000, 5000]


def test_a_refused_connection_is_retried_even_for_a_post_then_raised_as_requests_does(session_for):
    """Nothing reached the server, so a POST is tried again; at the end, requests' error."""
    url = f"http://127.0.0.1:{free_port()}"
    policy = attrs.evolve(QUICK, attempts=3)
    adapter = RateLimitedAdapter(None, retry=policy)
    session = session_for(url, adapter)
    with pytest.raises(requests.ConnectionError):
        session.post(url + "/orders", json={}, timeout=2)
    assert adapter.statistics() == ClientStatistics(requests=3, throttled=0, retries=2, failures=3)


def test_a_policy_in_ratekits_terms_or_requests_terms_classifies_the_same(session_for):
    """retry_on=(ConnectionFailed,) and retry_on=requests.ConnectionError both retry it."""
    url = f"http://127.0.0.1:{free_port()}"
    for retry_on in (ConnectionFailed, requests.ConnectionError):
        adapter = RateLimitedAdapter(None, retry=attrs.evolve(QUICK, attempts=2, retry_on=retry_on))
        session = session_for(url, adapter)
        with pytest.raises(requests.ConnectionError):
            session.get(url + "/x", timeout=2)
        assert adapter.statistics().requests == 2
    never = RateLimitedAdapter(None, retry=attrs.evolve(QUICK, retry_on=KeyError))
    session = session_for(url, never)
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/x", timeout=2)
    assert never.statistics().requests == 1


def test_when_attempts_run_out_the_last_response_is_returned(session_for, server: LoopbackServer):
    """In requests' terms: the last answer, to check as before."""
    server.route("GET", "/down")(lambda _: Reply(503, body="down"))
    adapter = RateLimitedAdapter(None, retry=attrs.evolve(QUICK, attempts=3))
    response = session_for(server, adapter).get(server.url + "/down")
    assert response.status_code == 503
    assert response.text == "down"
    assert len(server.hits("/down")) == 3
    with pytest.raises(requests.HTTPError):
        response.raise_for_status()


def test_without_a_policy_each_request_is_sent_once(session_for, server: LoopbackServer):
    """retry=None: one attempt."""
    server.route("GET", "/down")(lambda _: Reply(503))
    session = session_for(server, RateLimitedAdapter(None, retry=None))
    assert session.get(server.url + "/down").status_code == 503
    assert len(server.hits("/down")) == 1


def test_redirects_take_a_turn_at_the_limiter_each(session_for, server: LoopbackServer):
    """Requests sends each hop through the adapter: each is paced."""
    server.route("GET", "/old")(lambda _: Reply(302, {"Location": "/new"}))
    server.route("GET", "/new")(lambda _: Reply.json("here"))
    limiter = TokenBucket("100/s", capacity=5)
    session = session_for(server, RateLimitedAdapter(limiter))
    assert session.get(server.url + "/old").json() == "here"
    assert limiter.statistics().granted == 2


def test_the_adaptive_limiter_learns_from_the_answers(session_for, server: LoopbackServer):
    """The headers reach the limiter: a quota of 10 per second bounds its rate."""
    server.route("GET", "/quota")(
        lambda _: Reply.json(
            [],
            **{"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "1"},
        )
    )
    limiter = AdaptiveLimiter()
    session = session_for(server, RateLimitedAdapter(limiter))
    before = limiter.rate
    for _ in range(3):
        session.get(server.url + "/quota").raise_for_status()
    assert limiter.rate != before
    assert limiter.rate <= 10.0


def test_secrets_stay_out_of_logs_and_errors(session_for, server: LoopbackServer, caplog):
    """Query values and headers never reach the logs or the adapter's repr."""
    server.route("GET", "/secret")(lambda _: Reply(503, body="nope"))
    caplog.set_level(logging.DEBUG, logger="ratekit")
    adapter = RateLimitedAdapter(None, retry=attrs.evolve(QUICK, attempts=2))
    session = session_for(server, adapter)
    headers = {"Authorization": "Bearer SECRET-TOKEN"}
    response = session.get(server.url + "/secret?api_key=SECRET-KEY", headers=headers)
    assert response.status_code == 503
    url = f"http://127.0.0.1:{free_port()}"
    session.mount(url + "/", adapter)
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/secret?api_key=SECRET-KEY", headers=headers, timeout=2)
    assert caplog.records  # the attempts were logged
    assert "SECRET" not in caplog.text
    assert "SECRET" not in repr(adapter)


def test_a_cooldown_past_the_deadline_gives_up_at_once(session_for, server: LoopbackServer):
    """A 30 s cooldown and a 5 s deadline: the next request gives up without waiting."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)
    adapter = RateLimitedAdapter(limiter, retry=attrs.evolve(QUICK, deadline=5.0))
    session = session_for(server, adapter)
    started = time.monotonic()
    response = session.get(server.url + "/busy")
    assert response.status_code == 429  # in requests' terms: the last answer
    with pytest.raises(RetryError, match="deadline"):  # no attempt could be made
        session.get(server.url + "/busy")
    assert time.monotonic() - started < 2.0
    assert len(server.hits("/busy")) == 1


def test_a_scheduler_map_stops_requests_waiting_in_a_cooldown(session_for, server: LoopbackServer):
    """A failing call stops the map: its siblings asleep in a 30 s cooldown wake at once."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)
    session = session_for(server, RateLimitedAdapter(limiter, retry=QUICK))

    def call(n: int) -> int:
        if n == 3:
            time.sleep(0.3)
            raise KeyError(n)
        return session.get(server.url + "/busy").status_code

    started = time.monotonic()
    with Scheduler(4) as scheduler, pytest.raises(KeyError):
        list(scheduler.map(call, range(4)))
    assert time.monotonic() - started < 5.0


def test_an_event_stops_a_request_waiting_for_the_limiter(session_for, server: LoopbackServer):
    """A request waiting a minute for its turn ends when its cancel event is set."""
    server.route("GET", "/x")(lambda _: Reply.json(1))
    limiter = TokenBucket("1/minute", capacity=1)
    session = session_for(server, RateLimitedAdapter(limiter))
    session.get(server.url + "/x")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    # An event given to a ratekit call is the current one for what runs inside it.
    with pytest.raises(ratekit.Cancelled):
        RetryPolicy(attempts=1).call(lambda: session.get(server.url + "/x"), cancel=stop)
    assert time.monotonic() - started < 5.0
    assert len(server.hits("/x")) == 1


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"cost": 0}, ValueError, "cost"),
        ({"cost": "1"}, TypeError, "cost"),
        ({"cooldown": "yes"}, TypeError, "cooldown"),
        ({"max_retries": 3}, TypeError, "max_retries"),
    ],
)
def test_bad_arguments_are_refused_by_name(options, error, name):
    """Each bad argument is named in the error."""
    with pytest.raises(error, match=name):
        RateLimitedAdapter(None, **options)


def test_with_no_limiter_nothing_is_paced(session_for, server: LoopbackServer):
    """limiter=None: retries and the cooldown only."""
    server.route("GET", "/x")(lambda _: Reply.json(1))
    session = session_for(server, RateLimitedAdapter(None, retry=RetryPolicy(attempts=1)))
    started = time.monotonic()
    for _ in range(20):
        session.get(server.url + "/x")
    assert time.monotonic() - started < 5.0
    assert len(server.hits("/x")) == 20

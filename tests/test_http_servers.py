"""The client's adaptive pacing, wired end to end, against server-side limiters we did not write.

A `ratekit.http.Client` paced by an `AdaptiveLimiter` fetches pages, four at a time on a
`ratekit.Scheduler`, from Flask-Limiter (a fixed window that sends ``X-RateLimit-*``
headers) and from nginx's ``limit_req`` (a bare 429, with no burst or with one; see
``limit_servers.py``), both at 20 requests per second.  What must hold is the wiring:
every page is fetched exactly once, every 429 is retried, the limiter learns the limit
from what the client reports to it, and the share of 429s stays small.  The servers'
own records (Flask's answers, nginx's access log) are the reference for what was sent.

On the real clock: the margins are generous and nothing asserts speed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import urllib3
from limit_servers import LIMIT, Answer

from ratekit import Scheduler, TokenBucket
from ratekit.http import AdaptiveLimiter, Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from limit_servers import FlaskLimited, NginxLimited

# tox runs these alone, after the other environments: a pace measured while another
# test run shares the machine's two cores measures the machine.
pytestmark = pytest.mark.paced

#: Workers fetching pages at once.
WORKERS = 4


def fetch(client: Client, pages: int) -> list[Any]:
    """Fetch ``/items?page=N`` for N below *pages* on a `Scheduler`; the bodies, in order."""
    with Scheduler(WORKERS) as scheduler:
        return list(
            scheduler.map(
                lambda page: client.get_json("/items", params={"page": page}), range(pages)
            )
        )


def check_every_page_once(bodies: list[Any], answers: list[Answer], pages: int) -> int:
    """Check that each page came back, and that the server served each exactly once.

    Every answer must be a 200 or a 429: returns the number of 429s.
    """
    assert [int(body["page"]) for body in bodies] == list(range(pages))
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {200, 429}, statuses
    served = Counter(answer.page for answer in answers if answer.status == 200)
    assert served == Counter(range(pages)), "a page was lost, or served twice"
    return sum(answer.status == 429 for answer in answers)


def check_retried(client: Client, answers: list[Answer], refused: int) -> None:
    """Check that the client saw every answer the server gave, and retried every 429."""
    stats = client.statistics()
    assert stats.requests == len(answers)
    assert stats.throttled == refused
    assert stats.retries == refused  # every 429 retried once more, and nothing else
    assert stats.failures == 0


def refusal_gaps(answers: list[Answer]) -> list[float]:
    """For each 429, the milliseconds since the last 200 before it, by the server's clock."""
    gaps = []
    accepted: float | None = None
    for answer in answers:
        if answer.status == 200:
            accepted = answer.at
        elif accepted is not None:
            gaps.append(round((answer.at - accepted) * 1000, 1))
    return gaps


def test_adaptive_client_against_flask_limiter(
    flask_limited: FlaskLimited, record_property: Callable[[str, object], None]
):
    """Against Flask-Limiter's fixed window of 20 per second, which sends X-RateLimit-*.

    Every page is fetched once with a 200, every 429 is retried, the estimate is read
    from the headers (``X-RateLimit-Limit: 20`` over the 1 s window that the reset
    shows: between 0.5x and 1.05x of 20) and fewer than 20% of the answers are 429s.
    """
    pages = 60
    limiter = AdaptiveLimiter()
    with Client(limiter, base_url=flask_limited.url) as client:
        bodies = fetch(client, pages)
        answers = flask_limited.answers()
        refused = check_every_page_once(bodies, answers, pages)
        check_retried(client, answers, refused)
    record_property("answers", len(answers))
    record_property("refused", refused)
    record_property("estimate", limiter.estimate)
    assert limiter.estimate is not None
    assert 0.5 * LIMIT <= limiter.estimate <= 1.05 * LIMIT
    assert limiter.rate <= 1.05 * LIMIT
    assert refused / len(answers) < 0.2, f"{refused} 429s in {len(answers)} answers"


@pytest.mark.parametrize(
    ("nginx_limited", "highest"),
    [pytest.param(0, 1.5, id="strict"), pytest.param(10, 2.0, id="burst=10-nodelay")],
    indirect=["nginx_limited"],
)
def test_adaptive_client_against_nginx(
    nginx_limited: NginxLimited, highest: float, record_property: Callable[[str, object], None]
):
    """Against nginx's ``limit_req`` at 20 r/s, which answers a bare 429: no header at all.

    With no burst nginx refuses any request sooner than 50 ms after the last one it
    accepted; with ``burst=10 nodelay`` it lets 11 through at once, then one each 50 ms.
    Every page is fetched once with a 200 (nginx's access log shows one 200 per page),
    every 429 is retried, the estimate learnt from the 429s alone lies between 0.8x and
    *highest* times 20 (without the instants requests were sent, which the client
    passes, it falls to about 13), and fewer than 30% of the answers are 429s.
    """
    pages = 80
    limiter = AdaptiveLimiter()
    with Client(limiter, base_url=nginx_limited.url) as client:
        bodies = fetch(client, pages)
        answers = nginx_limited.answers()
        refused = check_every_page_once(bodies, answers, pages)
        check_retried(client, answers, refused)
    record_property("answers", len(answers))
    record_property("refused", refused)
    record_property("estimate", limiter.estimate)
    assert refused > 0, "nginx never refused: the limiter learnt nothing from it"
    assert limiter.estimate is not None
    assert 0.8 * LIMIT <= limiter.estimate <= highest * LIMIT
    assert refused / len(answers) < 0.3, f"{refused} 429s in {len(answers)} answers"


def test_fixed_bucket_below_the_limit_draws_no_429_from_nginx(
    nginx_limited: NginxLimited, record_property: Callable[[str, object], None]
):
    """A fixed token bucket at 80% of nginx's strict limit (burst 1) is hardly refused.

    This proves the fixture: nginx limits at 20 r/s and not below.  Every page comes
    back once; nginx refuses a request only when it came less than 50 ms after the one
    before it accepted, which a bucket spacing them 62.5 ms apart allows only when a
    busy machine delays a send by over 12 ms: twice at most.
    """
    pages = 40
    with Client(TokenBucket(0.8 * LIMIT, 1), base_url=nginx_limited.url) as client:
        bodies = fetch(client, pages)
        throttled = client.statistics().throttled
    answers = nginx_limited.answers()
    refused = [answer for answer in answers if answer.status != 200]
    record_property("refused", len(refused))
    gaps = refusal_gaps(answers)
    assert len(refused) <= 2, f"refused {len(refused)}, ms after the last 200: {gaps}"
    assert all(gap < 50.0 for gap in gaps), gaps  # nginx refused only what came too soon
    assert [answer.status for answer in answers if answer.status != 429] == [200] * pages
    check_every_page_once(bodies, answers, pages)
    assert throttled == len(refused)


@pytest.mark.parametrize(
    "nginx_limited",
    [pytest.param(0, id="strict"), pytest.param(10, id="burst=10-nodelay")],
    indirect=True,
)
def test_nginx_refuses_a_burst(nginx_limited: NginxLimited):
    """30 requests at once, with no limiter, draw 429s: nginx's limit is real.

    nginx accepts at most 1 + burst requests at once and then 20 a second, so of the
    30 sent within a span, at most ``1 + burst + 20 x span`` are accepted and the rest
    refused; its access log shows the same statuses as the client.
    """
    senders = 30
    barrier = threading.Barrier(senders)
    with urllib3.PoolManager(maxsize=senders) as pool:

        def send(page: int) -> int:
            barrier.wait()
            return pool.request(
                "GET", f"{nginx_limited.url}/items?page={page}", retries=False
            ).status

        started = time.monotonic()
        with ThreadPoolExecutor(senders) as executor:
            statuses = list(executor.map(send, range(senders)))
        span = time.monotonic() - started
    accepted = statuses.count(200)
    assert statuses.count(429) == senders - accepted > 0
    assert 1 <= accepted <= 1 + nginx_limited.burst + LIMIT * span
    assert Counter(answer.status for answer in nginx_limited.answers()) == Counter(statuses)

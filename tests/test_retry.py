"""ratekit.retry: backoff policies, the retry loop and the retry budget, on a FakeClock."""

from __future__ import annotations

import asyncio
import email.message
import math
import random
import threading
import time
import urllib.error

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratekit import Cancelled, current_cancel
from ratekit._cancel import cancelled_by
from ratekit.retry import (
    DEFAULT_RETRY_STATUSES,
    JITTERS,
    BackoffPolicy,
    ConstantBackoff,
    ExponentialBackoff,
    RetryBudget,
    RetryBudgetExhausted,
    RetryError,
    RetryEvent,
    RetryPolicy,
    retry_after_of,
)
from ratekit.testing import FakeClock


@attrs.frozen
class Response:
    """A response-like result: a status and headers, as urllib3 and requests give."""

    status: int
    headers: dict[str, str] = attrs.field(factory=dict)


class Refused(ConnectionError):
    """A connection error that carries the response, like the HTTP libraries' errors."""

    def __init__(self, response: Response | None = None) -> None:
        super().__init__("connection refused")
        self.response = response


class Script:
    """A callable that plays a list of outcomes: exceptions are raised, the rest returned."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def steady(base: float = 1.0, factor: float = 2.0, cap: float = 60.0) -> ExponentialBackoff:
    """A backoff without jitter, so that the planned delays are known."""
    return ExponentialBackoff(base=base, factor=factor, cap=cap, jitter="none")


def take(policy: BackoffPolicy, n: int) -> list[float]:
    """The first *n* delays of *policy*."""
    delays = policy.delays()
    return [next(delays) for _ in range(n)]


# -- backoff ------------------------------------------------------------------------------

#: Bases from a microsecond to ten seconds, and zero (subnormal floats are no delays).
bases = st.just(0.0) | st.floats(min_value=1e-6, max_value=10.0)
factors = st.floats(min_value=1.0, max_value=5.0)


@given(
    base=bases,
    factor=factors,
    extra=st.floats(min_value=0.0, max_value=100.0),
    jitter=st.sampled_from(JITTERS),
    seed=st.integers(0, 2**32),
)
def test_every_jitter_stays_within_its_formula_and_below_the_cap(base, factor, extra, jitter, seed):
    """Each delay lies within its jitter's bounds around min(cap, base * factor**n)."""
    cap = base + extra
    policy = ExponentialBackoff(
        base=base, factor=factor, cap=cap, jitter=jitter, random=random.Random(seed)
    )
    previous = base
    for n, delay in enumerate(take(policy, 40)):
        plain = min(cap, base * factor**n) if n < 1000 else cap
        assert 0.0 <= delay <= cap
        if jitter == "none":
            assert delay == pytest.approx(plain)
        elif jitter == "full":
            assert delay <= plain * (1 + 1e-9)
        elif jitter == "equal":
            assert plain / 2 * (1 - 1e-9) <= delay <= plain * (1 + 1e-9)
        elif jitter == "proportional":
            assert plain * (1 - 1e-9) <= delay <= min(cap, plain * 1.5) * (1 + 1e-9)
        else:
            assert base <= delay <= min(cap, 3 * previous) * (1 + 1e-9)
            previous = delay


def test_proportional_jitter_gives_the_tutorial_ranges():
    """Base 2 s, proportional: 2-3 s, 4-6 s, 8-12 s, then capped."""
    policy = ExponentialBackoff(base=2, cap=10, jitter="proportional", random=random.Random(1))
    for _ in range(50):
        first, second, third, fourth = take(policy, 4)
        assert 2 <= first <= 3
        assert 4 <= second <= 6
        assert 8 <= third <= 10  # 8-12 s, capped at 10
        assert fourth == 10


@given(seed=st.integers(0, 2**32), jitter=st.sampled_from(JITTERS))
def test_seeded_policies_give_the_same_delays_every_run(seed, jitter):
    """Two policies seeded alike yield the same delays."""

    def policy() -> ExponentialBackoff:
        return ExponentialBackoff(jitter=jitter, random=random.Random(seed))

    assert take(policy(), 20) == take(policy(), 20)


def test_defaults_are_full_jitter_from_half_a_second_to_a_minute():
    """The default policy: base 0.5 s, factor 2, cap 60 s, full jitter."""
    policy = ExponentialBackoff()
    assert (policy.base, policy.factor, policy.cap, policy.jitter) == (0.5, 2.0, 60.0, "full")
    assert isinstance(policy, BackoffPolicy)
    assert all(0 <= delay <= 60 for delay in take(policy, 30))


def test_delays_saturate_at_the_cap_without_overflow():
    """A huge factor reaches the cap and stays there, however many retries."""
    delays = take(steady(base=1.0, factor=1e300, cap=5.0), 2000)
    assert delays[:2] == [1.0, 5.0]
    assert set(delays[1:]) == {5.0}


def test_constant_backoff():
    """ConstantBackoff yields its delay every time."""
    assert take(ConstantBackoff(0.25), 3) == [0.25, 0.25, 0.25]
    assert isinstance(ConstantBackoff(), BackoffPolicy)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"base": -1}, ValueError, r"^base must be a non-negative finite number"),
        ({"base": math.inf}, ValueError, r"^base must be"),
        ({"base": math.nan}, ValueError, r"^base must be"),
        ({"factor": 0.5}, ValueError, r"^factor must be a finite number of at least 1"),
        ({"base": 2, "cap": 1}, ValueError, r"^cap must be at least base \(2\)"),
        (
            {"jitter": "fulll"},
            ValueError,
            "'none', 'full', 'equal', 'decorrelated', 'proportional'",
        ),
        ({"base": "1"}, TypeError, r"^base must be a number"),
    ],
)
def test_exponential_backoff_names_a_bad_argument(kwargs, error, match):
    """Bad arguments raise an error that names the argument (and lists valid jitters)."""
    with pytest.raises(error, match=match):
        ExponentialBackoff(**kwargs)


def test_constant_backoff_names_a_bad_delay():
    """A negative delay is refused, naming delay."""
    with pytest.raises(ValueError, match=r"^delay must be"):
        ConstantBackoff(-1)


# -- the retry loop -----------------------------------------------------------------------


def test_retries_connection_errors_sleeping_exactly_the_backoff():
    """Three failures, then a result: it sleeps 1, 2 and 4 seconds and returns the result."""
    clock = FakeClock()
    script = Script(Refused(), Refused(), Refused(), "done")
    policy = RetryPolicy(backoff=steady(), clock=clock)
    assert policy.call(script) == "done"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert script.calls == 4


def test_other_exceptions_propagate_at_once_unchanged():
    """An exception the policy does not retry is raised as is, without sleeping."""
    clock = FakeClock()
    error = KeyError("x")
    with pytest.raises(KeyError) as info:
        RetryPolicy(clock=clock).call(Script(error))
    assert info.value is error
    assert clock.sleeps == []


def test_retries_the_default_statuses_and_returns_the_first_good_response():
    """429, 502, 503 and 504 are retried; the first other response is returned."""
    clock = FakeClock()
    responses = [Response(status) for status in (429, 502, 503, 504)]
    script = Script(*responses, Response(200))
    policy = RetryPolicy(backoff=ConstantBackoff(0.5), clock=clock)
    assert policy.call(script) == Response(200)
    assert clock.sleeps == [0.5] * 4
    assert RetryPolicy().retry_statuses == DEFAULT_RETRY_STATUSES
    assert policy.call(Script(Response(500))) == Response(500)  # 500 is not retried ...
    policy_500 = attrs.evolve(policy, retry_statuses=DEFAULT_RETRY_STATUSES | {500})
    assert policy_500.call(Script(Response(500), Response(201))) == Response(
        201
    )  # ... unless asked


def test_retry_after_takes_precedence_over_backoff_and_is_capped():
    """A Retry-After header sets the delay, whatever the backoff, up to max_retry_after."""
    clock = FakeClock()
    script = Script(
        Response(429, {"Retry-After": "7"}),
        Response(503, {"retry-after": "0.25"}),
        Response(429, {"Retry-After": "86400"}),
        Refused(Response(503, {"Retry-After": "3"})),
        Response(503, {"Retry-After": "soon"}),  # unreadable: the backoff applies
        Response(200),
    )
    policy = RetryPolicy(attempts=6, backoff=ConstantBackoff(1.0), max_retry_after=60, clock=clock)
    assert policy.call(script) == Response(200)
    assert clock.sleeps == [7.0, 0.25, 60.0, 3.0, 1.0]


def test_retry_after_can_be_ignored():
    """retry_after=None keeps the backoff."""
    clock = FakeClock()
    policy = RetryPolicy(backoff=ConstantBackoff(1.0), retry_after=None, clock=clock)
    policy.call(Script(Response(429, {"Retry-After": "7"}), Response(200)))
    assert clock.sleeps == [1.0]


def test_gives_up_after_the_last_attempt_with_the_count_and_the_last_cause():
    """The error says how many attempts were made and carries the last exception."""
    clock = FakeClock()
    last = Refused()
    with pytest.raises(RetryError) as info:
        RetryPolicy(attempts=3, backoff=steady(), clock=clock).call(
            Script(Refused(), Refused(), last)
        )
    error = info.value
    assert (error.attempts, error.reason, error.last_exception) == (3, "attempts", last)
    assert error.__cause__ is last
    assert "gave up after 3 attempts" in str(error)
    assert "Refused: connection refused" in str(error)
    assert clock.sleeps == [1.0, 2.0]  # no sleep after the last attempt


def test_gives_up_on_a_response_naming_only_its_status():
    """A last response is kept, and described by its status only (it may hold secrets)."""
    secret = Response(503, {"Authorization": "Bearer s3cret"})
    with pytest.raises(RetryError) as info:
        RetryPolicy(attempts=1, clock=FakeClock()).call(Script(secret))
    assert info.value.last_result is secret
    assert "status 503" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "gave up after 1 attempt " in str(info.value)


def test_never_starts_a_sleep_that_would_end_past_the_deadline():
    """With a deadline of 10 s and waits of 1, 2, 4, 8: the 8 s wait is not started."""
    clock = FakeClock()
    script = Script(Refused())
    with pytest.raises(RetryError) as info:
        RetryPolicy(attempts=10, deadline=10.0, backoff=steady(), clock=clock).call(script)
    assert info.value.reason == "deadline"
    assert "would pass the deadline of 10 s" in str(info.value)
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert clock.now() == 7.0
    assert script.calls == 4


def test_hooks_see_every_retry_before_its_sleep():
    """Each hook gets a RetryEvent before each sleep; what a hook raises propagates."""
    clock = FakeClock()
    events: list[tuple[RetryEvent, float]] = []
    failure = Refused()
    policy = RetryPolicy(
        backoff=steady(), clock=clock, on_retry=lambda event: events.append((event, clock.now()))
    )
    policy.call(Script(failure, Response(429, {"Retry-After": "5"}), "ok"))
    first, second = events
    assert first == (RetryEvent(1, 1.0, 0.0, failure, None, None), 0.0)
    assert second[0].attempt == 2
    assert (second[0].delay, second[0].retry_after, second[0].elapsed) == (5.0, 5.0, 1.0)
    assert second[0].result == Response(429, {"Retry-After": "5"})

    def broken(event: RetryEvent) -> None:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        attrs.evolve(policy, on_retry=(broken,)).call(Script(Refused(), "ok"))


def test_predicates_choose_what_to_retry():
    """retry_on and retry_result may be predicates."""
    clock = FakeClock()
    policy = RetryPolicy(
        backoff=ConstantBackoff(0.1),
        retry_on=lambda error: isinstance(error, ValueError) and "again" in str(error),
        retry_result=lambda result: result == "later",
        clock=clock,
    )
    assert policy.call(Script(ValueError("again"), "later", "now")) == "now"
    assert len(clock.sleeps) == 2
    with pytest.raises(ValueError, match="broken"):
        policy.call(Script(ValueError("broken")))


def test_wrap_decorates_plain_and_coroutine_functions():
    """The wrap decorator keeps the name and retries both kinds of function."""
    clock = FakeClock()
    policy = RetryPolicy(backoff=steady(), clock=clock)
    script = Script(Refused(), 42)

    @policy.wrap
    def fetch(scale: int) -> int:
        """Fetch something."""
        return script() * scale  # type: ignore[operator]

    assert fetch(2) == 84
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch something."

    outcomes = Script(Refused(), Refused(), "async done")

    @policy.wrap
    async def fetch_async() -> object:
        await asyncio.sleep(0)
        return outcomes()

    assert asyncio.run(fetch_async()) == "async done"
    assert clock.sleeps == [1.0, 1.0, 2.0]


def test_call_async_retries_responses_too():
    """The async loop retries a response whose status asks for it."""
    clock = FakeClock()
    outcomes = Script(Response(503), Response(200))

    async def fetch() -> object:
        return outcomes()

    policy = RetryPolicy(backoff=ConstantBackoff(0.5), clock=clock)
    assert asyncio.run(policy.call_async(fetch)) == Response(200)
    assert clock.sleeps == [0.5]


def test_a_result_without_a_status_is_named_by_its_type():
    """A result retried by a predicate is described by its type, never by its value."""

    @attrs.frozen
    class Reply:
        status_code: int

    policy = RetryPolicy(attempts=1, retry_result=lambda result: True, clock=FakeClock())
    with pytest.raises(RetryError, match="a str that asked for a retry"):
        policy.call(Script("token=abc"))
    with pytest.raises(RetryError, match="status 418"):
        policy.call(Script(Reply(418)))


def test_call_async_sleeps_on_the_clock_and_gives_up_alike():
    """The async loop plans the same delays and raises the same errors."""
    clock = FakeClock()
    policy = RetryPolicy(attempts=3, backoff=steady(), clock=clock)

    async def failing() -> None:
        raise Refused

    with pytest.raises(RetryError) as info:
        asyncio.run(policy.call_async(failing))
    assert info.value.attempts == 3
    assert clock.sleeps == [1.0, 2.0]


outcome_lists = st.lists(st.sampled_from(["fail", "busy", "ok", "bug"]), min_size=1, max_size=12)


@given(
    outcomes=outcome_lists,
    attempts=st.integers(1, 8),
    deadline=st.none() | st.floats(0.0, 200.0),
    base=st.floats(0.0, 5.0),
    factor=st.floats(1.0, 3.0),
)
def test_the_loop_follows_its_plan_exactly(outcomes, attempts, deadline, base, factor):
    """Calls, sleeps, result and error are exactly what the policy's rules say."""
    clock = FakeClock()
    backoff = steady(base=base, factor=factor, cap=base * 10)
    plan = take(backoff, 20)
    script = Script(
        *(
            {"fail": Refused(), "busy": Response(503), "ok": "ok", "bug": KeyError("bug")}[o]
            for o in outcomes
        )
    )
    policy = RetryPolicy(attempts=attempts, deadline=deadline, backoff=backoff, clock=clock)
    # The model: walk the outcomes with the rules of the docstring.
    expected_sleeps: list[float] = []
    expected: object = None
    elapsed = 0.0
    for attempt in range(1, 100):
        outcome = outcomes[min(attempt - 1, len(outcomes) - 1)]
        if outcome in {"ok", "bug"}:
            expected = outcome
            break
        if attempt >= attempts:
            expected = "attempts"
            break
        delay = plan[attempt - 1]
        if deadline is not None and elapsed + delay > deadline:
            expected = "deadline"
            break
        expected_sleeps.append(delay)
        elapsed += delay
    if expected == "ok":
        assert policy.call(script) == "ok"
    elif expected == "bug":
        with pytest.raises(KeyError):
            policy.call(script)
    else:
        with pytest.raises(RetryError) as info:
            policy.call(script)
        assert info.value.reason == expected
        assert info.value.attempts == script.calls
    assert clock.sleeps == expected_sleeps
    assert script.calls == len(expected_sleeps) + 1
    assert script.calls <= attempts
    if deadline is not None:
        assert clock.now() <= deadline


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, r"^attempts must be at least 1"),
        ({"attempts": 2.5}, TypeError, r"^attempts must be an integer"),
        ({"deadline": -1.0}, ValueError, r"^deadline must be a non-negative"),
        ({"max_retry_after": math.nan}, ValueError, r"^max_retry_after must be"),
        ({"deadline": "10"}, TypeError, r"^deadline must be a number of seconds or None"),
        ({"on_retry": [print, 5]}, TypeError, r"^on_retry must be callables"),
        ({"max_retry_after": None}, TypeError, r"^max_retry_after must be a number"),
    ],
)
def test_retry_policy_names_a_bad_argument(kwargs, error, match):
    """Bad arguments raise an error that names the argument."""
    with pytest.raises(error, match=match):
        RetryPolicy(**kwargs)


def test_keyboard_interrupt_is_never_retried_whatever_retry_on_says():
    """KeyboardInterrupt and other non-Exceptions propagate at once, even to a predicate."""
    clock = FakeClock()
    for retry_on in (lambda error: True, (BaseException,)):
        policy = RetryPolicy(retry_on=retry_on, clock=clock)
        with pytest.raises(KeyboardInterrupt):
            policy.call(Script(KeyboardInterrupt()))
    assert clock.sleeps == []


def test_a_set_cancel_event_stops_the_loop_before_an_attempt_or_a_sleep():
    """An event set before the call stops it before an attempt; set during one, no sleep."""
    clock = FakeClock()
    policy = RetryPolicy(attempts=5, backoff=ConstantBackoff(10.0), clock=clock)
    stop = threading.Event()
    stop.set()
    script = Script(Refused(), "ok")
    with pytest.raises(Cancelled, match="before its first attempt"):
        policy.call(script, cancel=stop)
    assert script.calls == 0
    stop.clear()

    def fails_then_cancels() -> object:
        stop.set()
        raise Refused

    with pytest.raises(Cancelled, match="after 1 attempt,") as raised:
        policy.call(fails_then_cancels, cancel=stop)
    assert isinstance(raised.value.__cause__, Refused)
    assert clock.sleeps == []


def test_a_real_sleep_is_woken_by_the_event_at_once():
    """On the real clock, a 30 s Retry-After sleep ends as soon as the event is set."""
    policy = RetryPolicy(attempts=3)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled, match="after 1 attempt,"):
        policy.call(Script(Response(429, {"Retry-After": "30"}), "ok"), cancel=stop)
    assert time.monotonic() - started < 1.0


def test_cancelled_is_never_retried_whatever_retry_on_says():
    """A Cancelled raised by an attempt propagates at once, even with retry_on=Exception."""
    clock = FakeClock()
    policy = RetryPolicy(retry_on=Exception, clock=clock)
    script = Script(Cancelled("the inner wait"), "ok")
    with pytest.raises(Cancelled, match="the inner wait"):
        policy.call(script)
    assert script.calls == 1
    assert clock.sleeps == []


def test_the_cancel_event_reaches_the_callable():
    """The callable runs under the event, and is given it when it has a cancel parameter."""
    policy = RetryPolicy(clock=FakeClock())
    stop = threading.Event()
    seen = []

    def takes_it(x: int, *, cancel: threading.Event | None = None) -> int:
        seen.append((cancel, current_cancel()))
        return x

    def does_not() -> str:
        seen.append((None, current_cancel()))
        return "done"

    assert policy.call(takes_it, 3, cancel=stop) == 3
    assert policy.call(does_not, cancel=stop) == "done"
    assert seen == [(stop, stop), (None, stop)]
    assert current_cancel() is None
    with cancelled_by(stop):  # given none, the current one is used
        stop.set()
        with pytest.raises(Cancelled):
            policy.call(does_not)


def test_one_exception_class_is_not_taken_for_a_predicate():
    """retry_on=SomeError retries SomeError only (a class is callable, but not a test)."""
    clock = FakeClock()
    policy = RetryPolicy(retry_on=LookupError, backoff=ConstantBackoff(1.0), clock=clock)
    assert policy.retry_on == (LookupError,)
    assert policy.call(Script(KeyError("a"), "ok")) == "ok"
    with pytest.raises(ValueError, match="no"):
        policy.call(Script(ValueError("no")))
    with pytest.raises(TypeError, match=r"^retry_on must be an exception class"):
        RetryPolicy(retry_on=5)  # type: ignore[arg-type]


def test_retry_after_is_read_from_standard_library_headers():
    """The Retry-After of urllib's HTTPError (an email.message.Message) is read."""
    headers = email.message.Message()
    headers["retry-after"] = "7"
    error = urllib.error.HTTPError("https://example.invalid/", 503, "busy", headers, None)
    assert retry_after_of(error) == 7.0
    assert retry_after_of(Response(429, {"RETRY-AFTER": "2"})) == 2.0
    assert retry_after_of(Response(429)) is None
    assert retry_after_of(object()) is None


def test_wrap_retries_an_object_with_an_async_call():
    """An object whose __call__ is a coroutine function is retried as one."""
    clock = FakeClock()
    outcomes = Script(Refused(), "done")

    class Fetcher:
        async def __call__(self) -> object:
            return outcomes()

    retried = RetryPolicy(backoff=ConstantBackoff(1.0), clock=clock).wrap(Fetcher())
    assert asyncio.run(retried()) == "done"
    assert clock.sleeps == [1.0]


def test_delays_are_floats_even_from_whole_numbers():
    """Durations are float seconds everywhere."""
    assert all(type(delay) is float for delay in take(steady(base=1, cap=10), 6))
    assert type(next(ConstantBackoff(2).delays())) is float


# -- the retry budget ---------------------------------------------------------------------


def test_budget_allows_the_floor_and_a_share_of_successes():
    """With no successes, the floor; each success adds ratio retries."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.2, ttl=10, clock=clock)
    assert budget.balance == 2.0
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    for _ in range(4):
        budget.deposit()
    assert budget.balance == 2.0  # 0.5 * 4 + 2 - 2
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    assert "ratio=0.5" in repr(budget)


def test_budget_forgets_what_is_older_than_its_ttl():
    """After ttl seconds, successes and retries are forgotten: back to the floor."""
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0.1, ttl=10, clock=clock)
    for _ in range(5):
        budget.deposit()
    while budget.try_withdraw():
        pass
    assert budget.balance == 0
    clock.advance(5.0)
    assert budget.balance == 0  # still remembered
    clock.advance(5.0)
    assert budget.balance == 1.0  # all forgotten: the floor, 0.1/s over 10 s
    clock.advance(1e6)
    assert budget.balance == 1.0


@given(
    successes=st.integers(0, 300),
    ratio=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
    floor=st.sampled_from([0.0, 0.1, 1.0, 2.5]),
)
def test_budget_caps_retries_at_ratio_times_successes_plus_floor_under_threads(
    successes, ratio, floor
):
    """Eight threads withdrawing at once get exactly floor(ratio * successes + floor * ttl)."""
    clock = FakeClock()
    budget = RetryBudget(ratio=ratio, min_per_second=floor, ttl=10, clock=clock)

    def deposit(count: int) -> None:
        for _ in range(count):
            budget.deposit()

    # Eight depositing threads, between them *successes* deposits.
    shares = [successes // 8 + (i < successes % 8) for i in range(8)]
    threads = [threading.Thread(target=deposit, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted: list[bool] = []
    lock = threading.Lock()

    def withdraw() -> None:
        mine = [budget.try_withdraw() for _ in range(60)]
        with lock:
            granted.extend(mine)

    workers = [threading.Thread(target=withdraw) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(granted) == min(8 * 60, math.floor(ratio * successes + floor * 10 + 1e-9))


def test_policy_gives_up_at_once_when_the_budget_is_spent():
    """A retry the budget refuses raises RetryBudgetExhausted without sleeping."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10, clock=clock)  # one retry
    policy = RetryPolicy(backoff=ConstantBackoff(1.0), budget=budget, clock=clock)
    assert policy.call(Script(Refused(), "ok")) == "ok"
    with pytest.raises(RetryBudgetExhausted) as info:
        policy.call(Script(Refused(), "ok"))
    assert info.value.reason == "budget"
    assert isinstance(info.value, RetryError)
    assert clock.sleeps == [1.0]


def test_successes_are_deposited_in_the_budget():
    """Each good result adds ratio retries to the shared budget."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10, clock=clock)
    policy = RetryPolicy(budget=budget, clock=clock)
    for _ in range(4):
        policy.call(Script("ok"))
    assert budget.balance == 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": -0.1}, r"^ratio must be a non-negative finite number"),
        ({"min_per_second": math.inf}, r"^min_per_second must be"),
        ({"ttl": 0}, r"^ttl must be a positive finite number"),
    ],
)
def test_budget_names_a_bad_argument(kwargs, match):
    """Bad arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        RetryBudget(**kwargs)
    with pytest.raises(TypeError, match=r"^ratio must be a number"):
        RetryBudget(ratio="0.1")  # type: ignore[arg-type]

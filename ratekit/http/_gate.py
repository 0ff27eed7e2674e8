"""`Gate`: what every request shares with the others that use its limiter, whoever sends it.

`ratekit.http.Client` sends with urllib3; the integrations (`ratekit.integrations`) send
with requests, httpx or aiohttp.  Whatever sends, a request goes through the same gate:
it waits out the cooldown a server announced to any user of the limiter, takes its turn
at the limiter, reports its answer to a limiter that learns from answers, announces a
``Retry-After`` to every other user of the limiter, and is retried by a `RetryPolicy`
narrowed by whether repeating it is safe.  Only the sending differs, so only the
sending is written once per library.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from typing import TYPE_CHECKING, TypeVar, final

import attrs

from ratekit._cancel import cancelled_by, resolve
from ratekit._errors import Cancelled, RetryError
from ratekit._observe import observer
from ratekit.retry import RetryPolicy, parse_retry_after
from ratekit.retry._policy import _status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ratekit.typing import CancelEvent, Clock, Limiter

    #: Reports one attempt: its method, its status (``None``: it failed) and its error.
    SentHook = Callable[[str, int | None, BaseException | None], None]

T = TypeVar("T")

log = logging.getLogger("ratekit.http")

#: The methods that can be repeated without harm (RFC 9110 section 9.2.2), which the
#: client retries whatever the failure, as urllib3's ``Retry`` does.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@attrs.frozen
class ClientStatistics:
    """What a `Client` (or an integration) has done so far, as counts.

    Attributes:
        requests: Requests sent to the server, each attempt and each re-send after a
            401 counted, including those that failed to connect or timed out.
        throttled: Responses with status 429.
        retries: Attempts the retry policy made after a first one.
        failures: Attempts that failed to connect, were dropped or timed out.
        cooled: Seconds during which the shared cooldown held requests: the
            ``Retry-After`` of 429 and 503 answers and `Client.cool_down`, each second
            counted once however many announced it.  The cooldown belongs to the
            limiter, so this counts what every client sharing the limiter announced.
    """

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0
    cooled: float = 0.0


class _Counts:
    """The mutable counts behind `ClientStatistics`, updated under a lock."""

    __slots__ = ("failures", "hook", "lock", "requests", "retries", "throttled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.throttled = self.retries = self.failures = 0
        # Told of every attempt by `ratekit.telemetry` (after the network), or None.
        self.hook: SentHook | None = None

    def sent(
        self, status: int | None, method: str = "", error: BaseException | None = None
    ) -> None:
        """Count an attempt of a *method* request: answered *status*, or failed with *error*."""
        with self.lock:
            self.requests += 1
            if status is None:
                self.failures += 1
            elif status == 429:
                self.throttled += 1
        if self.hook is not None:
            self.hook(method, status, error)

    def retried(self) -> None:
        with self.lock:
            self.retries += 1

    def snapshot(self, cooled: float) -> ClientStatistics:
        with self.lock:
            return ClientStatistics(
                self.requests, self.throttled, self.retries, self.failures, cooled
            )


class PastDeadline(Exception):
    """A cooldown would hold a request past its retry policy's deadline."""

    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class _Cooldown:
    """The instant until which no request may start, shared by all users of a limiter."""

    __slots__ = ("_held", "_lock", "_until")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = float("-inf")
        self._held = 0.0  # seconds covered by cooldowns so far, each counted once

    def extend(self, now: float, until: float) -> None:
        with self._lock:
            if until > self._until:
                self._held += until - max(self._until, now)
                self._until = until

    @property
    def held(self) -> float:
        """The seconds that cooldowns have covered so far (those to come included)."""
        with self._lock:
            return self._held

    def holds(self, now: float) -> bool:
        """Whether a cooldown is on at *now*."""
        with self._lock:
            return now < self._until

    def _remaining(self, clock: Clock, deadline: float) -> float:
        """Seconds until the cooldown ends (``<= 0``: it has).

        Raises:
            PastDeadline: If it ends after the instant *deadline*.
        """
        with self._lock:
            until = self._until
        remaining = until - clock.now()
        if remaining > 0 and until > deadline:
            raise PastDeadline(remaining)
        return remaining

    def wait(self, clock: Clock, cancel: CancelEvent | None, deadline: float) -> None:
        """Sleep until the cooldown ends (it may be extended meanwhile).

        Raises:
            Cancelled: If *cancel* is set before it ends.
            PastDeadline: At once, if it ends after the instant *deadline*.
        """
        while (remaining := self._remaining(clock, deadline)) > 0:
            if not clock.sleep(remaining, cancel):
                raise Cancelled("the wait for the shared cooldown")

    async def wait_async(self, clock: Clock, deadline: float) -> None:
        """`wait` for asyncio: cancelled by cancelling the task."""
        while (remaining := self._remaining(clock, deadline)) > 0:
            await clock.sleep_async(remaining)


@final
class _CooldownRegistry:
    """One cooldown per limiter, however many clients and integrations share it.

    A limiter's entry goes when the limiter is garbage-collected.
    """

    __slots__ = ("_cooldowns", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cooldowns: weakref.WeakKeyDictionary[object, _Cooldown] = weakref.WeakKeyDictionary()

    def get(self, limiter: object) -> _Cooldown:
        """The cooldown that every user of *limiter* shares.

        ``None``, or a limiter that cannot be weakly referenced, gets a new one of its own.
        """
        if limiter is None:
            return _Cooldown()
        with self._lock:
            try:
                cooldown = self._cooldowns.get(limiter)
            except TypeError:  # a limiter that cannot be weakly referenced
                return _Cooldown()
            if cooldown is None:
                cooldown = _Cooldown()
                self._cooldowns[limiter] = cooldown
            return cooldown


#: The cooldowns of every `Gate`.
_COOLDOWNS = _CooldownRegistry()


def _paced(read: Callable[[object], float | None]) -> Callable[[object], float | None]:
    """*read*, with a 429 that says no ``Retry-After`` retried at once.

    For a limiter that learns from answers: it has just cut its rate and paused every
    request that shares it for a slot, so the retry waits its turn there, at the new
    pace, rather than for a random backoff of its own.
    """

    def retry_after(outcome: object) -> float | None:
        wait = read(outcome)
        if wait is None and _status(outcome) == 429:
            return 0.0
        return wait

    return retry_after


def refused(result: object) -> bool:
    """Whether a response proves that the server did not act on the request.

    A 429, or a 503 with ``Retry-After``: the server turned the request away before
    doing anything with it (RFC 6585 section 4, RFC 9110 section 15.6.4).
    """
    status = _status(result)
    headers = getattr(result, "headers", {})
    return status == 429 or (status == 503 and headers.get("Retry-After") is not None)


def idempotent_request(
    method: str, headers: Mapping[str, str] | None, idempotent: bool | None
) -> bool:
    """Whether a request may be repeated whatever happened to it.

    *idempotent* when given; else by its method (`IDEMPOTENT_METHODS`) or an
    ``Idempotency-Key`` header.
    """
    if idempotent is not None:
        return idempotent
    return method.upper() in IDEMPOTENT_METHODS or any(
        name.lower() == "idempotency-key" for name in headers or {}
    )


@final
class Gate:
    """The shared part of sending one request under a limiter and a retry policy.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: no pacing.
        retry: The retry policy; ``None``: one attempt.  With a limiter that learns
            (``observe``), a 429 without ``Retry-After`` is retried at once: the
            limiter has cut its rate and paused its users for a slot.
        clock: Where the cooldown's and the deadline's time comes from.
        cooldown: Whether a ``Retry-After`` on 429 and 503 pauses every user of the
            limiter (the cooldown is the limiter's, shared by every gate on it), or only
            the request that saw it, through its retry policy.
    """

    __slots__ = ("_limiter_clock", "clock", "cooldown", "counts", "limiter", "observe", "retry")

    def __init__(
        self,
        limiter: Limiter | None,
        retry: RetryPolicy | None,
        *,
        clock: Clock,
        cooldown: bool = True,
    ) -> None:
        observe = observer(limiter)
        if retry is not None and observe is not None and retry.retry_after is not None:
            retry = attrs.evolve(retry, retry_after=_paced(retry.retry_after))
        self.limiter = limiter
        self.retry = retry
        self.observe = observe
        self.clock = clock
        self.cooldown = _COOLDOWNS.get(limiter) if cooldown else None
        self.counts = _Counts()
        self._limiter_clock: Clock = getattr(limiter, "clock", None) or clock

    def statistics(self) -> ClientStatistics:
        """The counts so far, with the seconds the shared cooldown has covered."""
        return self.counts.snapshot(0.0 if self.cooldown is None else self.cooldown.held)

    def cool_down(self, seconds: float) -> None:
        """Pause every request that shares the limiter for *seconds*."""
        if self.cooldown is not None:
            now = self.clock.now()
            self.cooldown.extend(now, now + seconds)

    def deadline(self) -> float:
        """The instant after which no attempt of a request starting now may start."""
        policy = self.retry
        if policy is None or policy.deadline is None:
            return math.inf
        return self.clock.now() + policy.deadline

    def admit(self, cost: float, cancel: CancelEvent | None, deadline: float) -> None:
        """Wait out any cooldown, then take a turn at the limiter after it.

        Raises:
            PastDeadline: If a cooldown would hold the request past *deadline*.
            ratekit.Cancelled: If *cancel* is set meanwhile.
        """
        cooldown, limiter = self.cooldown, self.limiter
        while True:
            if cooldown is not None:
                cooldown.wait(self.clock, cancel, deadline)
            if limiter is None:
                return
            limiter.acquire(cost, cancel=cancel)
            if cooldown is None or not cooldown.holds(self.clock.now()):
                return
            # A cooldown began while this request waited for its turn, which came
            # inside it: take another after it, rather than leave with everyone else.

    async def admit_async(self, cost: float, deadline: float) -> None:
        """`admit` for asyncio: cancelled by cancelling the task."""
        cooldown, limiter = self.cooldown, self.limiter
        while True:
            if cooldown is not None:
                await cooldown.wait_async(self.clock, deadline)
            if limiter is None:
                return
            await limiter.acquire_async(cost)
            if cooldown is None or not cooldown.holds(self.clock.now()):
                return

    def sending(self) -> float:
        """The instant a request is sent, on the limiter's clock (for `answered`)."""
        return self._limiter_clock.now()

    def answered(self, status: int, headers: Mapping[str, str], sent: float) -> None:
        """Report an answer: to a limiter that learns, and as a cooldown if it asks.

        A 429, or a 503, with ``Retry-After`` pauses every request that shares the
        limiter until then (capped at the policy's ``max_retry_after``).
        """
        if self.observe is not None:  # a limiter that learns (AdaptiveLimiter)
            self.observe(status, headers, sent)
        if status not in {429, 503} or self.cooldown is None:
            return
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None:
            return
        if self.retry is not None:
            retry_after = min(retry_after, self.retry.max_retry_after)
        self.cool_down(retry_after)
        log.debug("cooling down for %.3f s: the server answered %s", retry_after, status)

    def policy(
        self,
        *,
        idempotent: bool,
        unsent: Callable[[BaseException], bool],
        kind: Callable[[BaseException], BaseException | None] | None = None,
    ) -> RetryPolicy | None:
        """The retry policy for one request.

        Args:
            idempotent: Whether it may be repeated whatever happened to it.  If not,
                only answers that turned it away (`refused`) and exceptions after which
                *unsent* says it never reached the server are retried.
            unsent: Whether a request that raised this never reached the server.
            kind: Maps a library's exception to ratekit's (`ratekit.http.ConnectionFailed`,
                `ReadTimeout`, ...), so that a policy written in ratekit's terms (the
                default's ``retry_on``) applies to every library.
        """
        policy = self.retry
        if policy is None:
            return None
        base = policy

        def retries(error: BaseException) -> bool:
            if base._retries_exception(error):
                return True
            mapped = kind(error) if kind is not None else None
            return mapped is not None and base._retries_exception(mapped)

        if kind is not None:
            policy = attrs.evolve(policy, retry_on=retries)
        if idempotent:
            return policy

        def exception_is_safe(error: BaseException) -> bool:
            return unsent(error) and retries(error)

        def result_is_safe(result: object) -> bool:
            return refused(result) and base._retries_result(result)

        return attrs.evolve(policy, retry_on=exception_is_safe, retry_result=result_is_safe)

    def run(
        self,
        attempt: Callable[[int], T],
        policy: RetryPolicy | None,
        *,
        cancel: CancelEvent | None,
        explicit: bool,
    ) -> T:
        """Run ``attempt(number)`` under *policy*, counting retries.

        A cooldown past the deadline (`PastDeadline`) gives up at once with
        `ratekit.retry.RetryError` (reason ``"deadline"``).
        """
        if policy is None:  # no deadline either: no `PastDeadline`
            with cancelled_by(cancel if explicit else None):
                return attempt(1)
        made = 0

        def attempted() -> T:
            nonlocal made
            if made:
                self.counts.retried()
            made += 1
            try:
                return attempt(made)
            except PastDeadline as error:
                made -= 1  # held back: never sent
                raise _past_deadline(made, error, policy) from None

        if explicit:
            return policy.call(attempted, cancel=resolve(cancel))
        return policy.call(attempted)

    async def run_async(
        self, attempt: Callable[[int], Awaitable[T]], policy: RetryPolicy | None
    ) -> T:
        """`run` for asyncio: cancelled by cancelling the task."""
        if policy is None:
            return await attempt(1)
        made = 0

        async def attempted() -> T:
            nonlocal made
            if made:
                self.counts.retried()
            made += 1
            try:
                return await attempt(made)
            except PastDeadline as error:
                made -= 1
                raise _past_deadline(made, error, policy) from None

        return await policy.call_async(attempted)


def _past_deadline(made: int, error: PastDeadline, policy: RetryPolicy) -> RetryError:
    detail = (
        f"a shared cooldown of {error.wait:.6g} s would pass the deadline of {policy.deadline:g} s"
    )
    return RetryError(made, "deadline", detail=detail)


def in_library_terms(error: RetryError) -> object:
    """What a give-up becomes for code written against requests, httpx or aiohttp.

    The last response, returned, when the last attempt got one (the caller checks its
    status as it always did); the last exception, raised again, when it raised one;
    else (held by a cooldown past the deadline before any attempt) *error* itself.
    """
    if error.last_exception is not None:
        raise error.last_exception
    if error.last_result is not None:
        return error.last_result
    raise error

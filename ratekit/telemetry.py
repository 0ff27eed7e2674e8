"""Metrics of ratekit's limiters, schedulers, clients and stores, through OpenTelemetry.

`instrument` reports one object, or every object that ratekit makes from then on, to an
OpenTelemetry meter provider (the global one by default), on the meter ``"ratekit"``.
Only the OpenTelemetry API is needed (``pip install 'ratekit[otel]'``); the application
chooses its SDK and exporters, and without an SDK every instrument is a no-op.  ``import
ratekit`` never imports OpenTelemetry: only this module does.

```python
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ratekit import TokenBucket, telemetry

provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
bucket = TokenBucket(10, capacity=20)
with telemetry.instrument(bucket, meter_provider=provider, name="github"):
    ...  # bucket's grants, denials, waits... are reported, as ratekit.name="github"
```

**What it costs.**  Counts are read from each object's ``statistics()`` by observable
instruments, whose callbacks run when the SDK collects (on its export interval, or when
Prometheus scrapes), so `try_acquire` and every other call that does not wait runs
exactly the code it runs uninstrumented.  Only two instruments are recorded as things
happen, and only on paths that already wait or do I/O: the length of each limiter wait
(at its end), and each HTTP attempt (after its answer).  An object that is not
instrumented checks one attribute there, ``None``.  One collection reads each
instrumented object's ``statistics()`` once, whatever the number of instruments.

**Instruments.**  Every instrument carries the attribute ``ratekit.name`` (the *name*
given to `instrument`, by default the class name: ``"TokenBucket"``, ``"Client"``) and
the *attributes* given.  Objects with equal attributes are reported as one series:
counts are summed (a counter keeps the counts of a member that is gone, so that it
never decreases while the series lasts; the series ends with its last object), and
``ratekit.limiter.level`` is the lowest level.  Give objects distinct names to tell them
apart.

| Instrument | Kind | Unit | What | Attributes besides the object's |
|---|---|---|---|---|
| `ratekit.limiter.grants` | ObservableCounter | `{call}` | Calls granted: ``statistics().granted + withdrawn`` (a reservation withdrawn later still counts, so that the counter never decreases) | |
| `ratekit.limiter.denials` | ObservableCounter | `{call}` | Non-blocking calls and reservations refused (``denied``) | |
| `ratekit.limiter.timeouts` | ObservableCounter | `{call}` | Blocking calls refused at once: the wait exceeded the timeout (``timed_out``) | |
| `ratekit.limiter.cancellations` | ObservableCounter | `{call}` | Waits and reservations withdrawn before their time (``cancelled``) | |
| `ratekit.limiter.wait.duration` | Histogram | `s` | One record per blocking call that waited, sync or async, from the call to its end (its sum is ``waited``); a composition's sleep before it books is part of that wait | |
| `ratekit.limiter.level` | ObservableGauge | `{cost}` | What could be granted now (``level``; negative while waits are queued); not reported while unknown (NaN) | |
| `ratekit.limiter.waiters` | ObservableUpDownCounter | `{call}` | Callers blocked right now (``waiting``) | |
| `ratekit.keyed.keys` | ObservableUpDownCounter | `{key}` | Keys held by a `ratekit.Keyed` | |
| `ratekit.keyed.evictions` | ObservableCounter | `{key}` | Keys forgotten, each back at rest (``evicted``) | |
| `ratekit.keyed.refusals` | ObservableCounter | `{call}` | Calls that raised `ratekit.TooManyKeys` (``refused``) | |
| `ratekit.scheduler.calls.started` | ObservableCounter | `{call}` | Calls started by a `ratekit.Scheduler` or `ratekit.AsyncScheduler` (``started``) | |
| `ratekit.scheduler.calls.completed` | ObservableCounter | `{call}` | Calls that returned (``done``) | |
| `ratekit.scheduler.calls.failed` | ObservableCounter | `{call}` | Calls that raised (``failed``) | |
| `ratekit.scheduler.calls.cancelled` | ObservableCounter | `{call}` | Items never called: the map stopped first (``cancelled``) | |
| `ratekit.scheduler.calls.running` | ObservableUpDownCounter | `{call}` | Calls running right now (``running``) | |
| `ratekit.scheduler.calls.waiting` | ObservableUpDownCounter | `{call}` | Calls waiting on the limiter right now (``waiting``) | |
| `ratekit.client.requests` | Counter | `{request}` | Attempts sent by a `ratekit.http.Client` or an integration, from the moment it is instrumented | `http.request.method` (``_OTHER`` for a method outside RFC 9110 and PATCH); `ratekit.http.status_class` (``"2xx"``...``"5xx"``) when answered, else `error.type` (the exception's class name) |
| `ratekit.client.throttled` | ObservableCounter | `{request}` | Responses with status 429 | |
| `ratekit.client.retries` | ObservableCounter | `{request}` | Attempts the retry policy made after a first one | |
| `ratekit.client.cooldown` | ObservableCounter | `s` | Seconds the shared cooldown held requests (``cooled``) | |
| `ratekit.token.refreshes` | ObservableCounter | `{request}` | Requests of an `ratekit.http.OAuth2Token` to its token endpoint that ended, successful or not | |
| `ratekit.token.refresh_failures` | ObservableCounter | `{request}` | Those of them that failed | |
| `ratekit.store.round_trips` | ObservableCounter | `{request}` | Calls to a `ratekit.stores.RedisStore`, a `ratekit.stores.AsyncRedisStore` or a `ratekit.stores.PyrateLimiter`'s store (level reads for ``statistics()`` left out) | |
| `ratekit.store.unavailable` | ObservableCounter | `{call}` | Calls that found the store unavailable and failed closed (`ratekit.stores.StoreUnavailable`) | |
| `ratekit.store.fail_open_grants` | ObservableCounter | `{call}` | Calls granted without the store, which was unavailable (``fail_open``) | |

A client's token refreshes are reported with the client's attributes when the client
is instrumented and its *auth* is an `ratekit.http.OAuth2Token`.  The Prometheus
exporter names them as usual: ``ratekit_limiter_grants_total``,
``ratekit_limiter_wait_duration_seconds_bucket``, ``ratekit_client_cooldown_seconds_total``.

**Secrets and cardinality.**  Nothing reported by default holds a key of a
`ratekit.Keyed` (its per-key limiters are reported through it, never one by one), a URL
or its query, a token or a credential: the attributes are the name, the method, the
status class, an exception's class name and what the caller passes.
"""  # noqa: E501 - a Markdown table cannot wrap

from __future__ import annotations

import collections
import math
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, final

import attrs

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry.metrics import Observation
except ModuleNotFoundError as _missing:  # pragma: no cover - the otel extra is missing
    raise ModuleNotFoundError(
        "ratekit.telemetry needs the OpenTelemetry API: pip install 'ratekit[otel]'",
        name=_missing.name,
    ) from _missing

from ratekit import _hooks
from ratekit._decision import LimiterStatistics
from ratekit._keyed import Keyed
from ratekit._limiter import LimiterBase
from ratekit._priority import Prioritized
from ratekit._scheduler import SchedulerBase, SchedulerStatistics

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from types import TracebackType

    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["Instrumentation", "instrument"]

#: The name of the meter every instrument is created on.
METER_NAME: Final = "ratekit"

#: Bucket boundaries advised for `ratekit.limiter.wait.duration`, in seconds: from a
#: millisecond, a fast API's spacing, to ten minutes, a long ``Retry-After``.
WAIT_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

#: The request methods reported as they are (RFC 9110 section 9, and PATCH); others are
#: ``_OTHER``, as OpenTelemetry's HTTP conventions ask, to bound the attribute's values.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

# The kinds of object reported, each read in its own way.
_LIMITER = "limiter"
_KEYED = "keyed"
_SCHEDULER = "scheduler"
_CLIENT = "client"
_TOKEN = "token"  # noqa: S105 - a kind of object, not a password
_STORE = "store"

# How an instrument's values combine, over objects with equal attributes.
_COUNTER = "counter"  # summed; never decreases (a member that is gone leaves its counts)
_UPDOWN = "updown"  # summed
_GAUGE = "gauge"  # the lowest


@attrs.frozen
class _Spec:
    """One observable instrument: its name, the kind it reads, how, and how it combines."""

    name: str
    kind: str
    type: str
    unit: str
    description: str
    read: Callable[[Any], float]


_SPECS: Final = (
    _Spec(
        "ratekit.limiter.grants",
        _LIMITER,
        _COUNTER,
        "{call}",
        "Calls granted by the limiter, reservations withdrawn later included",
        lambda s: s.granted + s.withdrawn,
    ),
    _Spec(
        "ratekit.limiter.denials",
        _LIMITER,
        _COUNTER,
        "{call}",
        "Non-blocking calls and reservations the limiter refused",
        lambda s: s.denied,
    ),
    _Spec(
        "ratekit.limiter.timeouts",
        _LIMITER,
        _COUNTER,
        "{call}",
        "Blocking calls refused at once because the wait exceeded the timeout",
        lambda s: s.timed_out,
    ),
    _Spec(
        "ratekit.limiter.cancellations",
        _LIMITER,
        _COUNTER,
        "{call}",
        "Waits and reservations withdrawn before their time",
        lambda s: s.cancelled,
    ),
    _Spec(
        "ratekit.limiter.level",
        _LIMITER,
        _GAUGE,
        "{cost}",
        "What the limiter could grant now (negative while waits are queued)",
        lambda s: s.level,
    ),
    _Spec(
        "ratekit.limiter.waiters",
        _LIMITER,
        _UPDOWN,
        "{call}",
        "Callers blocked on the limiter right now",
        lambda s: s.waiting,
    ),
    _Spec(
        "ratekit.keyed.keys",
        _KEYED,
        _UPDOWN,
        "{key}",
        "Keys held, each with its own limiter",
        lambda s: s[0],
    ),
    _Spec(
        "ratekit.keyed.evictions",
        _KEYED,
        _COUNTER,
        "{key}",
        "Keys forgotten, each back at rest",
        lambda s: s[1],
    ),
    _Spec(
        "ratekit.keyed.refusals",
        _KEYED,
        _COUNTER,
        "{call}",
        "Calls refused with TooManyKeys: every key held still limited something",
        lambda s: s[2],
    ),
    _Spec(
        "ratekit.scheduler.calls.started",
        _SCHEDULER,
        _COUNTER,
        "{call}",
        "Calls the scheduler started",
        lambda s: s.started,
    ),
    _Spec(
        "ratekit.scheduler.calls.completed",
        _SCHEDULER,
        _COUNTER,
        "{call}",
        "Calls that returned",
        lambda s: s.done,
    ),
    _Spec(
        "ratekit.scheduler.calls.failed",
        _SCHEDULER,
        _COUNTER,
        "{call}",
        "Calls that raised",
        lambda s: s.failed,
    ),
    _Spec(
        "ratekit.scheduler.calls.cancelled",
        _SCHEDULER,
        _COUNTER,
        "{call}",
        "Items taken but never called, because the map stopped first",
        lambda s: s.cancelled,
    ),
    _Spec(
        "ratekit.scheduler.calls.running",
        _SCHEDULER,
        _UPDOWN,
        "{call}",
        "Calls running right now",
        lambda s: s.running,
    ),
    _Spec(
        "ratekit.scheduler.calls.waiting",
        _SCHEDULER,
        _UPDOWN,
        "{call}",
        "Calls waiting on the scheduler's limiter right now",
        lambda s: s.waiting,
    ),
    _Spec(
        "ratekit.client.throttled",
        _CLIENT,
        _COUNTER,
        "{request}",
        "Responses with status 429",
        lambda s: s.throttled,
    ),
    _Spec(
        "ratekit.client.retries",
        _CLIENT,
        _COUNTER,
        "{request}",
        "Attempts the retry policy made after a first one",
        lambda s: s.retries,
    ),
    _Spec(
        "ratekit.client.cooldown",
        _CLIENT,
        _COUNTER,
        "s",
        "Seconds during which the shared cooldown held requests",
        lambda s: s.cooled,
    ),
    _Spec(
        "ratekit.token.refreshes",
        _TOKEN,
        _COUNTER,
        "{request}",
        "Requests to the token endpoint that ended, successful or not",
        lambda s: s[0],
    ),
    _Spec(
        "ratekit.token.refresh_failures",
        _TOKEN,
        _COUNTER,
        "{request}",
        "Requests to the token endpoint that failed",
        lambda s: s[1],
    ),
    _Spec(
        "ratekit.store.round_trips",
        _STORE,
        _COUNTER,
        "{request}",
        "Calls to the store",
        lambda s: s[0],
    ),
    _Spec(
        "ratekit.store.unavailable",
        _STORE,
        _COUNTER,
        "{call}",
        "Calls that found the store unavailable and failed closed (StoreUnavailable)",
        lambda s: s[1],
    ),
    _Spec(
        "ratekit.store.fail_open_grants",
        _STORE,
        _COUNTER,
        "{call}",
        "Calls granted without the store, which was unavailable (fail_open)",
        lambda s: s[2],
    ),
)

_WAIT_DURATION: Final = "ratekit.limiter.wait.duration"
_REQUESTS: Final = "ratekit.client.requests"


def _read_limiter(obj: Any) -> LimiterStatistics:  # noqa: ANN401 - anything with statistics()
    stats = obj.statistics()
    if not isinstance(stats, LimiterStatistics):  # pragma: no cover - checked when added
        raise TypeError(stats)
    return stats


def _read_keyed(obj: Keyed[Any]) -> tuple[int, int, int]:
    return len(obj), obj.evicted, obj.refused


def _read_statistics(obj: Any) -> object:  # noqa: ANN401 - anything with statistics()
    return obj.statistics()


def _read_token(obj: Any) -> tuple[int, int]:  # noqa: ANN401 - an OAuth2Token
    return obj._fetches, obj._fetch_failures


def _read_store(obj: Any) -> tuple[int, ...]:  # noqa: ANN401 - a RedisStore or PyrateLimiter
    return obj._counts.as_tuple()  # type: ignore[no-any-return]


_READERS: Final[dict[str, Callable[[Any], object]]] = {
    _LIMITER: _read_limiter,
    _KEYED: _read_keyed,
    _SCHEDULER: _read_statistics,
    _CLIENT: _read_statistics,
    _TOKEN: _read_token,
    _STORE: _read_store,
}


# -- what an object is ----------------------------------------------------------------


def _loaded(module: str, name: str) -> Any:  # noqa: ANN401 - a class, or None
    """The class *name* of *module* if that module is loaded (nothing is imported here)."""
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None else None


def _gate_counts(obj: object) -> Any:  # noqa: ANN401 - the gate's _Counts, if any
    """The counts of *obj*'s gate, for a client or an integration; else ``None``."""
    gate_class = _loaded("ratekit.http._gate", "Gate")
    if gate_class is None:
        return None
    gate: Any = getattr(obj, "_gate", None)
    return gate.counts if isinstance(gate, gate_class) else None


#: The classes of the layers above the core, by module: looked up only once loaded.
_LAYERED: Final = (
    ("ratekit.stores._pyrate", "PyrateLimiter", (_LIMITER, _STORE)),
    ("ratekit.stores._redis", "RedisLimiter", (_LIMITER,)),
    ("ratekit.stores._redis", "RedisStore", (_STORE,)),
    ("ratekit.stores._redis_async", "AsyncRedisLimiter", (_LIMITER,)),
    ("ratekit.stores._redis_async", "AsyncRedisStore", (_STORE,)),
    ("ratekit.http._oauth", "OAuth2Token", (_TOKEN,)),
)


def _kinds(obj: object, *, probe: bool) -> tuple[str, ...]:
    """The kinds *obj* is reported as; ``()`` if none.

    Known classes are recognised without calling anything; with *probe*, any other
    object is recognised by what its ``statistics()`` returns.
    """
    core: tuple[tuple[type, str], ...] = (
        (LimiterBase, _LIMITER),
        (Prioritized, _LIMITER),
        (Keyed, _KEYED),
        (SchedulerBase, _SCHEDULER),
    )
    for base, kind in core:
        if isinstance(obj, base):
            return (kind,)
    for module, name, kinds in _LAYERED:
        layered = _loaded(module, name)
        if layered is not None and isinstance(obj, layered):
            return kinds
    if _gate_counts(obj) is not None:
        return (_CLIENT,)
    statistics = getattr(obj, "statistics", None) if probe else None
    if not callable(statistics):
        return ()
    stats = statistics()
    returned: tuple[tuple[type | None, str], ...] = (
        (LimiterStatistics, _LIMITER),
        (SchedulerStatistics, _SCHEDULER),
        (_loaded("ratekit.http._gate", "ClientStatistics"), _CLIENT),
    )
    for statistics_class, kind in returned:
        if statistics_class is not None and isinstance(stats, statistics_class):
            return (kind,)
    return ()


# -- hooks on the paths that wait or send -----------------------------------------------


class _Fanout:
    """What a hook slot holds while instrumented: the instruments to tell, and how."""

    __slots__ = ("targets",)

    def __init__(self) -> None:
        # (instrument, attributes): replaced whole, so that a call reads it without a lock.
        self.targets: tuple[tuple[Any, Mapping[str, AttributeValue]], ...] = ()


class _WaitFanout(_Fanout):
    """The ``_on_wait`` of an instrumented limiter: records each wait on every histogram."""

    __slots__ = ()

    def __call__(self, seconds: float) -> None:
        for histogram, attributes in self.targets:
            histogram.record(seconds, attributes)


class _SentFanout(_Fanout):
    """The hook of an instrumented client's counts: adds each attempt to every counter."""

    __slots__ = ()

    def __call__(self, method: str, status: int | None, error: BaseException | None) -> None:
        shown = method.upper() if method else ""
        attributes: dict[str, AttributeValue] = {
            "http.request.method": shown if shown in _METHODS else "_OTHER"
        }
        if status is None:
            attributes["error.type"] = type(error).__qualname__ if error is not None else "_OTHER"
        elif 100 <= status < 600:
            attributes["ratekit.http.status_class"] = f"{status // 100}xx"
        else:
            attributes["ratekit.http.status_class"] = "_OTHER"
        for counter, base in self.targets:
            counter.add(1, {**base, **attributes})


def _attach(holder: Any, slot: str, fanout: type[_Fanout], target: tuple[Any, Any]) -> None:  # noqa: ANN401
    """Add *target* to the fanout in *holder*'s *slot*, putting one there if needed."""
    current: Any = getattr(holder, slot)
    if not isinstance(current, fanout):
        current = fanout()
        setattr(holder, slot, current)
    current.targets = (*current.targets, target)


def _detach(holder: Any, slot: str, fanout: type[_Fanout], target: tuple[Any, Any]) -> None:  # noqa: ANN401
    """Take *target* out of *holder*'s fanout, and the fanout out when it is empty."""
    current: Any = getattr(holder, slot, None)
    if not isinstance(current, fanout):
        return
    targets = list(current.targets)
    for index, item in enumerate(targets):
        if item is target:
            del targets[index]
            break
    current.targets = tuple(targets)
    if not targets:
        setattr(holder, slot, None)


# -- the registry of one meter provider -------------------------------------------------

_AttributesKey = tuple[tuple[str, Any], ...]


class _Entry:
    """One object reported under one set of attributes, to one meter provider."""

    __slots__ = (
        "__weakref__",
        "attributes",
        "cycle",
        "hooks",
        "key",
        "kind",
        "last",
        "owners",
        "ref",
        "slot",
        "snapshot",
    )

    def __init__(
        self, kind: str, key: _AttributesKey, attributes: Mapping[str, AttributeValue]
    ) -> None:
        self.kind = kind
        self.key = key
        self.attributes = attributes
        self.ref: weakref.ref[Any] | None = None
        self.slot: tuple[int, _AttributesKey] = (0, key)  # where the registry holds it
        self.owners = 0
        self.snapshot: object = None
        self.cycle = -1
        # The last value each counter read from this object: what it leaves when gone.
        self.last: dict[str, float] = {}
        # (holder, slot, fanout class, target) attached for this entry; the holder by a
        # weak reference when it is the object itself, which must not be kept alive.
        self.hooks: list[tuple[Callable[[], Any], str, type[_Fanout], tuple[Any, Any]]] = []


class _State:
    """The instruments of one meter provider, created once, and the objects they report.

    Each observable callback iterates over the live objects of its kind.  Objects gone
    (garbage-collected) are queued by their weak reference's callback and removed at the
    next registration or collection.
    """

    def __init__(self, meter: Meter) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, dict[tuple[int, _AttributesKey], _Entry]] = {
            kind: {} for kind in _READERS
        }
        # Objects alive per (kind, attributes), and the counts that objects gone left.
        self.live: collections.Counter[tuple[str, _AttributesKey]] = collections.Counter()
        self.retired: dict[tuple[str, _AttributesKey], dict[str, float]] = {}
        self.dead: collections.deque[_Entry] = collections.deque()
        # Collections are told apart by an instrument's callback coming round again.
        self.cycle = 0
        self.served: set[str] = set()
        try:
            self.waits = meter.create_histogram(
                _WAIT_DURATION,
                unit="s",
                description="Seconds each blocking call waited for the limiter",
                explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
            )
        except TypeError:  # pragma: no cover - an API before bucket advice
            self.waits = meter.create_histogram(
                _WAIT_DURATION,
                unit="s",
                description="Seconds each blocking call waited for the limiter",
            )
        self.requests = meter.create_counter(
            _REQUESTS, unit="{request}", description="Attempts sent to the server"
        )
        create = {
            _COUNTER: meter.create_observable_counter,
            _UPDOWN: meter.create_observable_up_down_counter,
            _GAUGE: meter.create_observable_gauge,
        }
        for spec in _SPECS:
            create[spec.type](
                spec.name,
                callbacks=[self._callback(spec)],
                unit=spec.unit,
                description=spec.description,
            )

    # -- registration --

    def add(self, obj: object, kind: str, attributes: Mapping[str, AttributeValue]) -> _Entry:
        """Report *obj* as *kind* with *attributes*; the same object twice shares an entry."""
        key = _attributes_key(attributes)
        with self.lock:
            self._purge_locked()
            entries = self.entries[kind]
            slot = (id(obj), key)
            entry = entries.get(slot)
            if entry is not None:
                if entry.ref is not None and entry.ref() is obj:
                    entry.owners += 1
                    return entry
                self._remove_locked(entry)  # an object gone, whose id is reused
            entry = _Entry(kind, key, attributes)
            dead = self.dead
            entry.ref = weakref.ref(obj, lambda _ref: dead.append(entry))
            entry.slot = slot
            entry.owners = 1
            entries[slot] = entry
            self.live[kind, key] += 1
        if kind == _LIMITER and hasattr(obj, "_on_wait"):
            self._hook(entry, obj, "_on_wait", _WaitFanout, (self.waits, attributes))
        elif kind == _CLIENT:
            counts = _gate_counts(obj)
            if counts is not None:
                self._hook(entry, counts, "hook", _SentFanout, (self.requests, attributes))
        return entry

    @staticmethod
    def _hook(entry: _Entry, holder: object, slot: str, fanout: type[_Fanout], target: Any) -> None:  # noqa: ANN401
        _attach(holder, slot, fanout, target)
        try:
            held: Callable[[], Any] = weakref.ref(holder)
        except TypeError:  # a client's counts, which do not hold the client
            held = lambda: holder  # noqa: E731 - a reference like weakref.ref's
        entry.hooks.append((held, slot, fanout, target))

    def release(self, entry: _Entry) -> None:
        """One owner of *entry* stops reporting it; the last one removes it."""
        with self.lock:
            entry.owners -= 1
            if entry.owners > 0:
                return
            self._remove_locked(entry)
        for held, slot, fanout, target in entry.hooks:
            holder = held()
            if holder is not None:
                _detach(holder, slot, fanout, target)
        entry.hooks.clear()

    def _remove_locked(self, entry: _Entry) -> None:
        entries = self.entries[entry.kind]
        if entries.get(entry.slot) is not entry:
            return  # already removed
        del entries[entry.slot]
        group = (entry.kind, entry.key)
        self.live[group] -= 1
        if self.live[group] <= 0:
            del self.live[group]
            self.retired.pop(group, None)  # the series ends with its last object
        elif entry.last:
            retired = self.retired.setdefault(group, {})
            for name, value in entry.last.items():
                retired[name] = retired.get(name, 0.0) + value

    def _purge_locked(self) -> None:
        dead = self.dead
        while dead:
            entry = dead.popleft()
            self._remove_locked(entry)
            entry.hooks.clear()  # their holders are gone with the object

    # -- collection --

    def _callback(self, spec: _Spec) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return self._observe(spec)

        return observe

    def _observe(self, spec: _Spec) -> list[Observation]:
        with self.lock:
            self._purge_locked()
            if spec.name in self.served:  # this instrument again: a new collection
                self.cycle += 1
                self.served.clear()
            self.served.add(spec.name)
            cycle = self.cycle
            entries = list(self.entries[spec.kind].values())
        # statistics() is read out of the lock (a store's may make a round trip), once
        # per object and collection, whatever the number of instruments.
        read = _READERS[spec.kind]
        values: list[tuple[_Entry, float]] = []
        for entry in entries:
            obj = entry.ref() if entry.ref is not None else None
            if obj is None:
                continue
            if entry.cycle != cycle:
                try:
                    entry.snapshot = read(obj)
                except Exception:  # noqa: BLE001 - one broken object must not hide the rest
                    entry.snapshot = None
                entry.cycle = cycle
            if entry.snapshot is not None:
                values.append((entry, float(spec.read(entry.snapshot))))
        return self._combine(spec, values)

    def _combine(self, spec: _Spec, values: list[tuple[_Entry, float]]) -> list[Observation]:
        combined: dict[_AttributesKey, float] = {}
        attributes: dict[_AttributesKey, Mapping[str, AttributeValue]] = {}
        with self.lock:
            for entry, value in values:
                if spec.type == _GAUGE:
                    if math.isnan(value):
                        continue
                    previous = combined.get(entry.key)
                    combined[entry.key] = value if previous is None else min(previous, value)
                else:
                    combined[entry.key] = combined.get(entry.key, 0.0) + value
                    if spec.type == _COUNTER:
                        entry.last[spec.name] = value
                attributes[entry.key] = entry.attributes
            if spec.type == _COUNTER:
                for (kind, key), retired in self.retired.items():
                    if kind == spec.kind and key in combined:
                        combined[key] += retired.get(spec.name, 0.0)
        return [_observation(value, attributes[key]) for key, value in combined.items()]


def _observation(value: float, attributes: Mapping[str, AttributeValue]) -> Observation:
    return Observation(int(value) if value.is_integer() else value, attributes)


def _attributes_key(attributes: Mapping[str, AttributeValue]) -> _AttributesKey:
    return tuple(
        sorted(
            (name, tuple(value) if isinstance(value, (list, tuple)) else value)
            for name, value in attributes.items()
        )
    )


#: One state per meter provider, held no longer than the provider.
_STATES: weakref.WeakKeyDictionary[object, _State] = weakref.WeakKeyDictionary()
#: For a provider that cannot be weakly referenced.
_STRONG_STATES: dict[int, tuple[object, _State]] = {}
#: Guards the states, the watches and the hooks.
_LOCK = threading.RLock()


#: The class of the global provider's stand-in before one is set (private to the API:
#: looked up defensively, so that an API without it only loses the forwarding below).
_PROXY_CLASS: Final[type | None] = getattr(
    getattr(_metrics, "_internal", None), "_ProxyMeterProvider", None
)
#: The state made on that stand-in, if any: its instruments forward to the provider set
#: later, so that provider reuses it (instruments made twice on one meter would lose
#: the callbacks of the second set).
_PROXY_STATE: list[_State] = []


def _state_for(provider: MeterProvider) -> _State:
    with _LOCK:
        if _PROXY_STATE and provider is _metrics.get_meter_provider():
            return _PROXY_STATE[0]
        try:
            state = _STATES.get(provider)
        except TypeError:
            held = _STRONG_STATES.get(id(provider))
            state = held[1] if held is not None and held[0] is provider else None
        if state is not None:
            return state
        from ratekit import __version__

        state = _State(provider.get_meter(METER_NAME, __version__))
        if _PROXY_CLASS is not None and isinstance(provider, _PROXY_CLASS):
            _PROXY_STATE.append(state)
        try:
            _STATES[provider] = state
        except TypeError:
            _STRONG_STATES[id(provider)] = (provider, state)
        return state


# -- watching for new objects ---------------------------------------------------------


class _Watch:
    """`instrument` with no object: adds every new object of a reported kind."""

    __slots__ = ("attributes", "entries", "name", "state")

    def __init__(
        self, state: _State, name: str | None, attributes: Mapping[str, AttributeValue]
    ) -> None:
        self.state = state
        self.name = name
        self.attributes = attributes
        # Held weakly: an entry whose object is gone leaves this set by itself.
        self.entries: weakref.WeakSet[_Entry] = weakref.WeakSet()

    def add(self, obj: object, kinds: tuple[str, ...]) -> None:
        merged = _merged(obj, self.name, self.attributes)
        for kind in kinds:
            self.entries.add(self.state.add(obj, kind, merged))


#: The watches open; `_hooks.created` is `_created` while there is one.
_WATCHES: list[_Watch] = []


def _created(obj: object) -> None:
    """The construction hook: report *obj* to every watch."""
    kinds = _kinds(obj, probe=False)
    if not kinds:
        return
    with _LOCK:  # so that a watch being closed adds nothing more
        for watch in _WATCHES:
            watch.add(obj, kinds)


# -- the public surface -------------------------------------------------------------------


@final
class Instrumentation:
    """What `instrument` returns: the reporting of its objects, until `close`.

    Use it as a context manager to stop at the end of a block.  Dropping it does not
    stop the reporting: instruments report until closed, as OpenTelemetry's do.
    """

    __slots__ = ("_closed", "_entries", "_state", "_watch")

    def __init__(self, state: _State, entries: list[_Entry], watch: _Watch | None) -> None:
        self._state = state
        self._entries = entries
        self._watch = watch
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def __repr__(self) -> str:
        what = "every new object" if self._watch is not None else f"{len(self._entries)} series"
        return f"<Instrumentation of {what}{', closed' if self._closed else ''}>"

    def close(self) -> None:
        """Stop reporting; the objects' series end at the next collection.

        With no object given to `instrument`, objects made later are no longer added,
        and those it had added stop being reported.  Calling it again does nothing.
        """
        with _LOCK:
            if self._closed:
                return
            self._closed = True
            entries = list(self._entries)
            self._entries.clear()
            watch = self._watch
            if watch is not None:
                _WATCHES.remove(watch)
                if not _WATCHES:
                    _hooks.created = None
                entries += list(watch.entries)
                watch.entries.clear()
            for entry in entries:
                self._state.release(entry)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def instrument(
    obj: object = None,
    *,
    meter_provider: MeterProvider | None = None,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Instrumentation:
    """Report *obj*'s counts as OpenTelemetry metrics (see the module for the instruments).

    Args:
        obj: A limiter (any ratekit strategy or composition,
            `ratekit.http.AdaptiveLimiter`, a `ratekit.stores.RedisLimiter`,
            `ratekit.stores.AsyncRedisLimiter` (whose level is not reported: reading it
            takes an awaited round trip) or `ratekit.stores.PyrateLimiter`, or any
            object whose ``statistics()`` returns a `ratekit.LimiterStatistics`), a
            `ratekit.Keyed`, a `ratekit.Scheduler` or `ratekit.AsyncScheduler`, a
            `ratekit.http.Client` or an integration's adapter, transport or middleware,
            a `ratekit.http.OAuth2Token`, or a `ratekit.stores.RedisStore` or
            `ratekit.stores.AsyncRedisStore`.  ``None``: every object of those kinds that
            ratekit makes from now on (until `Instrumentation.close`), except the
            limiters a `ratekit.Keyed` makes for its keys.  Objects are held weakly:
            one that is garbage-collected stops being reported.
        meter_provider: Where to report (default: OpenTelemetry's global provider,
            ``opentelemetry.metrics.get_meter_provider()``, read now).
        name: The value of the ``ratekit.name`` attribute (default: the object's class
            name, such as ``"TokenBucket"``).
        attributes: More attributes for every series of the object (an API's name, a
            tenant); they must hold no secret.

    Returns:
        An `Instrumentation`, whose `Instrumentation.close` stops the reporting.

    Raises:
        TypeError: If *obj* is of none of the kinds above, *name* is not a string, or
            *attributes* is not a mapping of strings to attribute values.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    extra = _check_attributes(attributes)
    provider = _metrics.get_meter_provider() if meter_provider is None else meter_provider
    state = _state_for(provider)
    if obj is None:
        watch = _Watch(state, name, extra)
        with _LOCK:
            _WATCHES.append(watch)
            _hooks.created = _created
        return Instrumentation(state, [], watch)
    kinds = _kinds(obj, probe=True)
    if not kinds:
        raise TypeError(
            "obj must be a ratekit limiter, Keyed, Scheduler, AsyncScheduler, HTTP client, "
            f"OAuth2Token or store (or None, for every new one), got a {type(obj).__name__}"
        )
    merged = _merged(obj, name, extra)
    entries = [state.add(obj, kind, merged) for kind in kinds]
    if _CLIENT in kinds:
        token = getattr(obj, "_auth", None)
        if token is not None and _kinds(token, probe=False) == (_TOKEN,):
            entries.append(state.add(token, _TOKEN, merged))
    return Instrumentation(state, entries, None)


def _merged(
    obj: object, name: str | None, attributes: Mapping[str, AttributeValue]
) -> Mapping[str, AttributeValue]:
    return {**attributes, "ratekit.name": type(obj).__name__ if name is None else name}


_ATTRIBUTE_TYPES = (str, bool, int, float)


def _check_attributes(
    attributes: Mapping[str, AttributeValue] | None,
) -> Mapping[str, AttributeValue]:
    if attributes is None:
        return {}
    if not hasattr(attributes, "items"):
        raise TypeError(f"attributes must be a mapping, got {type(attributes).__name__}")
    checked: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise TypeError(f"attributes must have str keys, got {key!r}")
        if not _attribute_value(value):
            raise TypeError(
                f"attributes[{key!r}] must be a str, bool, int, float or a sequence of "
                f"one of them, got {type(value).__name__}"
            )
        checked[key] = value
    return checked


def _attribute_value(value: object) -> bool:
    if isinstance(value, _ATTRIBUTE_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _ATTRIBUTE_TYPES) for item in value)
    return False


def _instrument_names() -> Iterator[tuple[str, str, str]]:
    """(name, kind, unit) of every instrument, for the tests and the docs."""
    yield _WAIT_DURATION, "histogram", "s"
    yield _REQUESTS, "counter", "{request}"
    for spec in _SPECS:
        yield spec.name, spec.type, spec.unit

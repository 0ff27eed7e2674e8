"""What ``ratekit-cxone`` remembers between runs: the rate each tenant was learnt to allow.

Without ``--rate``, an export learns its tenant's limit (`adaptive_limiter`), and the
next export would learn it again from scratch: a slow start, then a few 429s.  So the
command keeps what the limiter learnt, its `ratekit.http.AdaptiveLimiter.estimate`, in a
small JSON file, one entry per tenant, and the next export for the same tenant starts
from it:

```json
{"version": 1, "tenants": {"contacts https://cxone.niceincontact.com 4f9c...": {
    "requests_per_second": 38.2, "learnt_at": "2026-05-01T12:00:00Z"}}}
```

The key is the tenant as the export identifies it (`tenant_key`): the contract, the
normalised issuer or tenant URL, and the tenant id; never a credential.  An entry older
than `DEFAULT_MAX_AGE` is ignored, and dropped at the next write.

The file is replaced atomically (a temporary file in the same directory, then
``os.replace``), so a reader sees the old content or the new, never half of it; writers
read, merge and replace under an advisory lock beside it (where the system has one), so
two exports at once each keep their tenant's entry.  A file that cannot be read or
written is never the export's failure: `RememberedRate` reports it once and goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, final

import attrs

from ratekit import RateKitError
from ratekit._clock import MONOTONIC, wall_time
from ratekit_cxone._writers import _reason

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from ratekit import Decision, LimiterStatistics, Reservation
    from ratekit.typing import CancelEvent, Clock, Limiter
    from ratekit_cxone._writers import Scalar

#: The environment variable naming the directory of the remembered rates (default: the
#: user's cache directory, ``platformdirs.user_cache_dir("ratekit")``).
CACHE_DIR_VARIABLE = "RATEKIT_CXONE_CACHE_DIR"

#: The name of the file, in that directory.
RATES_FILE = "cxone-rates.json"

#: The version of the file's format.
RATES_VERSION = 1

#: How long a remembered rate is used, in seconds: a week.  A tenant's limit can change
#: (its plan, NICE's settings), and a stale rate costs either a burst of 429s (too high)
#: or the climb back (too low); a week keeps what a daily or weekly job learnt, and lets
#: an older guess go.
DEFAULT_MAX_AGE = 7 * 24 * 3600.0


class RatesUnavailable(RateKitError):
    """The remembered rates cannot be read or written; the message says where and why."""


def rates_path(environ: Mapping[str, str] | None = None) -> Path | None:
    r"""Where the remembered rates live, or ``None`` if there is nowhere to keep them.

    ``$RATEKIT_CXONE_CACHE_DIR/cxone-rates.json`` if the variable is set (and not
    empty), else ``cxone-rates.json`` in the user's cache directory as `platformdirs`
    names it (``~/.cache/ratekit`` on Linux, ``~/Library/Caches/ratekit`` on macOS,
    ``%LOCALAPPDATA%\\ratekit\\Cache`` on Windows).  Without platformdirs (the ``cli``
    extra) and without the variable: ``None``.

    Args:
        environ: The environment to read (default: the process's).
    """
    variables = os.environ if environ is None else environ
    directory = variables.get(CACHE_DIR_VARIABLE, "")
    if directory:
        return Path(directory) / RATES_FILE
    try:
        import platformdirs
    except ImportError:
        return None
    return Path(platformdirs.user_cache_dir("ratekit", appauthor=False)) / RATES_FILE


def tenant_key(identity: Mapping[str, Scalar]) -> str | None:
    """The key of a tenant's entry: the values of its identity, in order, space-joined.

    *identity* is the tenant as the export normalises it (the contract, the issuer or
    tenant URL, the tenant id: no credential, and URLs that the configuration checked
    hold no user, query or fragment).  ``None`` if a part is unknown.
    """
    values = list(identity.values())
    if not values or any(value is None for value in values):
        return None
    return " ".join(str(value) for value in values)


@attrs.frozen
class _Entry:
    requests_per_second: float
    learnt_at: float  # seconds since the Unix epoch

    def to_json(self) -> dict[str, object]:
        moment = datetime.fromtimestamp(self.learnt_at, timezone.utc).replace(microsecond=0)
        return {
            "requests_per_second": self.requests_per_second,
            "learnt_at": moment.replace(tzinfo=None).isoformat() + "Z",
        }


def _entry(data: object) -> _Entry | None:
    """An entry as the file holds it, or ``None`` if it is not one."""
    if not isinstance(data, dict):
        return None
    rate, learnt = data.get("requests_per_second"), data.get("learnt_at")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        return None
    if not (math.isfinite(rate) and rate > 0) or not isinstance(learnt, str):
        return None
    text = learnt.strip()
    if text[-1:] in {"Z", "z"}:
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return _Entry(float(rate), moment.timestamp())


def _parse(data: bytes) -> dict[str, _Entry] | str:
    """The entries of the file's content (leaving out what is not one), or what is wrong."""
    try:
        document = json.loads(data)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        return "not valid JSON"
    tenants = document.get("tenants") if isinstance(document, dict) else None
    if not isinstance(tenants, dict) or document.get("version") != RATES_VERSION:
        return f"not remembered rates (version {RATES_VERSION})"
    entries = {key: _entry(value) for key, value in tenants.items()}
    return {key: entry for key, entry in entries.items() if entry is not None}


@attrs.frozen(kw_only=True)
class RateMemory:
    """The file of remembered rates: what each tenant was learnt to allow, and when.

    Args:
        path: The file (see `rates_path`).
        max_age: Seconds after which an entry is ignored (default a week).
        now: Where wall time comes from, in seconds since the Unix epoch.
    """

    path: Path
    max_age: float = DEFAULT_MAX_AGE
    now: Callable[[], float] = wall_time

    def recall(self, key: str) -> float | None:
        """The rate remembered for *key*, in requests per second; ``None`` if there is none.

        An entry older than *max_age*, or dated in the future (the clock was wrong when
        it was written, or is now), is ignored.

        Raises:
            RatesUnavailable: If the file exists but cannot be read, or holds something
                else than remembered rates.
        """
        entry = self._read().get(key)
        if entry is None or not self._fresh(entry, self.now()):
            return None
        return entry.requests_per_second

    def remember(self, key: str, requests_per_second: float) -> None:
        """Keep *requests_per_second* for *key*, learnt now, beside the other tenants'.

        Under the lock, the file is read, entries too old (or unreadable) are dropped,
        this one is set, and the result replaces the file atomically.  A file that
        cannot be read is replaced.

        Raises:
            ValueError: If *requests_per_second* is not a positive finite number.
            RatesUnavailable: If the file or its directory cannot be written.
        """
        rate = float(requests_per_second)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path):
                now = self.now()
                try:
                    entries = self._read()
                except RatesUnavailable:
                    entries = {}  # unreadable: replaced
                kept = {key: entry for key, entry in entries.items() if self._fresh(entry, now)}
                kept[key] = _Entry(rate, now)
                document = {
                    "version": RATES_VERSION,
                    "tenants": {name: entry.to_json() for name, entry in sorted(kept.items())},
                }
                _replace(self.path, (json.dumps(document, indent=2) + "\n").encode())
        except OSError as error:
            raise RatesUnavailable(f"cannot write {self.path}: {_reason(error)}") from None

    def _read(self) -> dict[str, _Entry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise RatesUnavailable(f"cannot read {self.path}: {_reason(error)}") from None
        entries = _parse(data)
        if isinstance(entries, str):
            raise RatesUnavailable(f"cannot read {self.path}: {entries}")
        return entries

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return 0 <= now - entry.learnt_at <= self.max_age


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``PATH.lock`` while *path* is read, merged and replaced.

    An advisory ``flock`` on a file of its own (*path* itself is replaced, a new file
    each time), released when the file is closed or the process ends.  Where there is
    no ``flock`` (Windows), nothing is locked.
    """
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write of a small file
        yield
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    """Write *data* to *path* atomically, through a temporary file of its own.

    Not `ratekit_cxone._writers.replace_atomically`: its temporary file has a fixed name,
    right for an output that one export holds, but two exports that remember at once
    (where nothing locks) would write into the same one.

    Raises:
        OSError: If it cannot be written; *path* is then left as it was.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@final
class DeferredLimiter:
    """A stand-in for a limiter that can only be built later, forwarding to it.

    The export's client takes its limiter when it is made, but which tenant it serves,
    and so the rate to start from, is known only once the client has a token (the
    tenant id is a claim of it).  The client gets this stand-in; `start` builds the
    real limiter, with the remembered estimate, before the first request.  Used before
    `start`, it builds one from scratch (*build* given ``None``), and `start` then
    changes nothing.

    Args:
        build: Makes the limiter, given the estimate to start from (or ``None``).
        clock: The clock that *build* gives its limiters (default: the real clock).
    """

    __slots__ = ("_build", "_clock", "_limiter", "_lock")

    def __init__(
        self, build: Callable[[float | None], Limiter], *, clock: Clock | None = None
    ) -> None:
        self._build = build
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._limiter: Limiter | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DeferredLimiter({self._limiter!r})"

    def start(self, estimate: float | None) -> Limiter:
        """Build the limiter, starting from *estimate*, unless it was already built.

        Returns:
            The limiter that calls go to.
        """
        with self._lock:
            if self._limiter is None:
                self._limiter = self._build(estimate)
            return self._limiter

    @property
    def limiter(self) -> Limiter:
        """The limiter that calls go to (built from scratch if `start` was not called)."""
        limiter = self._limiter
        return self.start(None) if limiter is None else limiter

    @property
    def clock(self) -> Clock:
        """The clock of the limiter."""
        return self._clock

    @property
    def estimate(self) -> float | None:
        """The limiter's estimate of the server's rate, in requests per second.

        ``None`` before it has one, if it is not built yet, or if it learns nothing
        (a limiter without a positive finite ``estimate``).
        """
        value = getattr(self._limiter, "estimate", None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) and value > 0 else None

    def try_acquire(self, cost: float = 1) -> Decision:
        """Forwarded to the limiter (see `ratekit.typing.Limiter`)."""
        return self.limiter.try_acquire(cost)

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: CancelEvent | None = None
    ) -> None:
        """Forwarded to the limiter (see `ratekit.typing.Limiter`)."""
        self.limiter.acquire(cost, timeout=timeout, cancel=cancel)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Forwarded to the limiter (see `ratekit.typing.Limiter`)."""
        await self.limiter.acquire_async(cost, timeout=timeout)

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Forwarded to the limiter (see `ratekit.typing.Limiter`)."""
        return self.limiter.reserve(cost, max_wait=max_wait)

    def statistics(self) -> LimiterStatistics:
        """Forwarded to the limiter (see `ratekit.typing.Limiter`)."""
        return self.limiter.statistics()

    def observe(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Forwarded to the limiter, if it learns from answers (`ratekit.http.Client`)."""
        observe = getattr(self.limiter, "observe", None)
        if observe is not None:
            observe(status, headers)


@attrs.define(eq=False)
class RememberedRate:
    """One export's use of the remembered rates: recall at the start, remember at the end.

    Args:
        memory: The file.
        limiter: The export's limiter, started by `start`.
        warn: Called with one line when the file cannot be read or written; once per
            run at most, after which such failures pass in silence.  The export goes on.
    """

    memory: RateMemory
    limiter: DeferredLimiter
    warn: Callable[[str], None]
    _key: str | None = attrs.field(default=None, init=False)
    _warned: bool = attrs.field(default=False, init=False)

    def start(self, identity: Mapping[str, Scalar]) -> float | None:
        """Start the limiter from the rate remembered for the tenant *identity* names.

        Returns:
            The rate it starts from, or ``None``: nothing remembered, too old, the file
            unreadable or the rate refused by the limiter (both warned).
        """
        self._key = tenant_key(identity)
        estimate = None
        if self._key is not None:
            try:
                estimate = self.memory.recall(self._key)
            except RatesUnavailable as error:
                self._warn(f"{error}; the tenant's rate is learnt afresh")
        try:
            self.limiter.start(estimate)
        except ValueError as error:  # a rate the limiter does not take (out of its range)
            self._warn(
                f"the rate remembered for the tenant in {self.memory.path} is refused "
                f"({error}); the tenant's rate is learnt afresh"
            )
            self.limiter.start(None)
            return None
        return estimate

    def save(self) -> None:
        """Remember what the limiter learnt for the tenant, if it learnt anything.

        Nothing is written before `start`, when the limiter has no estimate, or when it
        granted no request in this run (an export already complete): a rate only earns
        a new date when requests went out at it.
        """
        estimate = self.limiter.estimate
        if self._key is None or estimate is None:
            return
        if self.limiter.statistics().granted == 0:
            return
        try:
            self.memory.remember(self._key, estimate)
        except RatesUnavailable as error:
            self._warn(f"{error}; the learnt rate is not remembered")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.warn(message)

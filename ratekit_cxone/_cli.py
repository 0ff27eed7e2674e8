"""The ``ratekit-cxone`` command: ``export``, ``simulate`` and ``demo``.

Exit codes: 0 done; 1 the demo's check failed; 2 a usage or configuration error (an
output that cannot take the export included, and a server certificate that is not
trusted); 3 the credentials were rejected; 4 the API failed after retries (or was
unreachable, or answered what cannot be read); 130 interrupted by Ctrl-C or SIGTERM (an
export keeps its progress: run the same command again to resume).  Expected errors
print one line on standard error, ``ratekit-cxone: error: ...``; standard output
carries only what a command is asked to print.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, TextIO

import attrs

from ratekit import Priority, priority
from ratekit._clock import wall_time
from ratekit._redact import mask_secrets
from ratekit.http import (
    DEFAULT_RETRY,
    AuthError,
    HTTPError,
    InsecureTransport,
    TLSError,
    TokenError,
)
from ratekit.retry import RetryError
from ratekit_cxone._client import MAX_CONTACTS_PAGE, MAX_INTERACTIONS_PAGE, CXoneClient
from ratekit_cxone._config import ConfigError, CXoneConfig
from ratekit_cxone._export import position_after, run_export
from ratekit_cxone._limits import make_limiter
from ratekit_cxone._metrics import MetricsUnavailable, track, watching
from ratekit_cxone._models import Contact, Interaction
from ratekit_cxone._progress import DEFAULT_PROGRESS_INTERVAL, Progress
from ratekit_cxone._rates import (
    CACHE_DIR_VARIABLE,
    DEFAULT_MAX_AGE,
    RATES_FILE,
    DeferredLimiter,
    RateMemory,
    RememberedRate,
    rates_path,
)
from ratekit_cxone._writers import (
    Checkpoint,
    JsonlWriter,
    OutputError,
    Scalar,
    Writer,
    open_writer,
    output_format,
    state_path,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from opentelemetry.sdk.metrics import MeterProvider

    from ratekit.retry import RetryPolicy
    from ratekit.typing import Limiter
    from ratekit_cxone._models import RecordPage

PROG = "ratekit-cxone"

#: Exit codes.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_API = 4
EXIT_INTERRUPTED = 130

#: Defaults of ``export``.
DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = DEFAULT_RETRY.attempts - 1
DEFAULT_TIMEOUT = 30.0
DEFAULT_PAGE_SIZES: Mapping[str, int] = {"contacts": 1000, "interactions": 100}

#: How long the reporting API may take to list a contact once it is completed.  NICE
#: publishes no figure; a window that ends more recently than this may still change
#: after it was exported, so the export refuses to end one later than now minus this
#: (``--lag``), rather than mark a window complete that is not.
DEFAULT_LAG = timedelta(minutes=15)

#: Defaults of ``demo``: a small tenant with every kind of trouble (a server-side limit
#: that the client learns from its 429s, 503s, dropped connections, tokens that expire
#: every few seconds), exported in about fifteen seconds.
DEMO_RECORDS = 3000
DEMO_PAGE_SIZE = 10
DEMO_CONCURRENCY = 4
DEMO_FIRST_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEMO_SPAN = timedelta(days=30)
DEMO_RATE = "40/second"
DEMO_TOKEN_TTL = 5.0
DEMO_FAULT_RATE = 0.03
DEMO_FAULT_RETRY_AFTER = 0.5
DEMO_DROP_RATE = 0.01

_MAX_AGE_DAYS = DEFAULT_MAX_AGE / 86400

#: The shortest pause by the server's ``Retry-After`` that the summary mentions, in
#: seconds: a shorter one changes the rate by too little to be worth a clause.
_SHOWN_PAUSE = 0.1

#: How a message says that an export resumes: by running the same command again.
_RESUME_HINT = "run the same command again to resume"

_EXPORT_EPILOG = f"""\
configuration (environment variables):
  --api contacts      CXONE_CLIENT_ID, CXONE_CLIENT_SECRET, CXONE_ACCESS_KEY_ID,
                      CXONE_ACCESS_KEY_SECRET; optional CXONE_ISSUER (default
                      https://cxone.niceincontact.com), CXONE_TENANT_ID, CXONE_API_BASE,
                      CXONE_API_VERSION (default 34.0)
  --api interactions  CXONE_TENANT_URL, CXONE_CLIENT_ID, CXONE_CLIENT_SECRET; optional
                      CXONE_SCOPES (default ic:read)

output:
  PATH.jsonl          JSON Lines: one record per line, as the API sent it; the progress
                      is kept in PATH.jsonl.state beside it
  PATH.sqlite, .db    SQLite: table records(id TEXT PRIMARY KEY, record TEXT) holding
                      each record as JSON text, progress in table export_state

resuming:
  Stopped by Ctrl-C, SIGTERM, SIGKILL or a crash, the same command continues where it
  stopped; every record ends up in the output exactly once.  A finished export is
  marked complete: running it again says so and changes nothing.  An output holding
  another export (other dates, another tenant) is refused: choose another --out, or
  delete it (and its .state file) to start again.  After the last page the contacts kept
  are counted against the API's count for the window: a difference exits 4, and the next
  run fetches what is missing.

remembered rates:
  Without --rate, what the limiter learnt of the tenant's limit is kept at the end of
  the run, per tenant (API, issuer or tenant URL, tenant id: no credential), in
  {RATES_FILE} in ${CACHE_DIR_VARIABLE} (default: the user's cache
  directory); the next export for that tenant starts from it, unless it is over
  {_MAX_AGE_DAYS:g} days old.  --no-remember: nothing read or written.  A file that cannot be
  read or written is one warning, never a failure.

incremental:
  --since-last continues from where the last export to --out ended, up to --end (by
  default now minus --lag): a daily job exports each contact once across runs.

progress:
  a progress bar when standard error is a terminal, else a line every
  {DEFAULT_PROGRESS_INTERVAL:g} s; a summary at the end (all on standard error; --quiet: none).

exit codes:
  0 done (or already complete), 2 usage or configuration error, 3 credentials rejected,
  4 API failure after retries (or contacts missing: run again), 130 interrupted (progress
  kept: run again to resume)

example:
  {PROG} export --api contacts --start 2024-05-01T00:00:00Z --end 2024-06-01T00:00:00Z \\
      --out may.jsonl
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line: ``ratekit-cxone: error: ... (see '... --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class _UsageError(Exception):
    """A usage error found after parsing; *command* is the subcommand's prog."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


def _version() -> str:
    from importlib.metadata import version

    return version("ratekit")


#: The dates the command takes: from the Unix epoch, before which no contact was made,
#: to a year past which no date survives the conversions between zones and formats.
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_DATE = datetime(9999, 1, 1, tzinfo=timezone.utc)

_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?")


def _aware(value: str) -> datetime:
    """An ISO 8601 date and time with ``Z`` or an offset; naive ones are refused."""
    text = value.strip()
    if _DATE_ONLY.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{value!r} is a date without a time: give a time and a zone, such as "
            f"{text[:10]}T00:00:00Z"
        )
    if text[-1:] in {"Z", "z"}:
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date and time: {value!r} (such as 2024-05-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no time zone: add Z for UTC (2024-05-01T00:00:00Z) or an "
            "offset (2024-05-01T00:00:00+02:00)"
        )
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first UTC instant
        utc = None
    if utc is None or not EARLIEST_DATE <= utc <= LATEST_DATE:
        raise argparse.ArgumentTypeError(
            f"{value!r} is out of range: dates go from {EARLIEST_DATE:%Y-%m-%dT%H:%M:%SZ} "
            f"to {LATEST_DATE:%Y-%m-%dT%H:%M:%SZ}"
        )
    return moment


def _whole(value: str, least: int) -> int:
    """*value* as a whole number of at least *least*, for argparse."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {number}")
    return number


def _positive_int(value: str) -> int:
    return _whole(value, 1)


def _count(value: str) -> int:
    return _whole(value, 0)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return number


def _share(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value!r}")
    return number


def _port(value: str) -> int:
    number = _count(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number up to 65535, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``ratekit-cxone`` command line (for ``--help`` and tests)."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Export NICE CXone completed contacts (or the tutorial's interactions) as fast "
            "as the tenant allows, to JSON Lines or SQLite, resumably; or run a local "
            "simulator of the API, or a demo against it."
        ),
        epilog=(
            "exit codes: 0 done, 1 demo check failed, 2 usage or configuration error, "
            "3 credentials rejected, 4 API failure after retries, 130 interrupted"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_export(commands)
    _add_simulate(commands)
    _add_demo(commands)
    return parser


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"pages fetched at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--rate",
        metavar="SPEC",
        help=(
            "a fixed client-side limit: '50/second', '3000/minute', '100/10s' or a number "
            "per second (default: learn the tenant's limit from its 429s, starting from "
            "the rate learnt for it last time)"
        ),
    )
    parser.add_argument(
        "--burst",
        type=_positive_int,
        metavar="N",
        help="with --rate: requests that may go at once (default 1: evenly spaced)",
    )
    parser.add_argument(
        "--no-remember",
        action="store_true",
        help=(
            "without --rate: learn the tenant's limit from scratch, and do not keep what "
            f"is learnt for the next run (kept in {RATES_FILE} in ${CACHE_DIR_VARIABLE}, "
            "by default the user's cache directory)"
        ),
    )
    parser.add_argument(
        "--retries",
        type=_count,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=(
            "retries of a request that failed for a transient reason: 429, 502, 503, 504, "
            f"a failed or dropped connection (default {DEFAULT_RETRIES}; 0: none)"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds one request may take in all (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress report and no summary (errors are still reported)",
    )


def _add_metrics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=_port,
        metavar="N",
        help="serve the run's metrics for Prometheus at http://HOST:N/metrics (needs "
        "ratekit[metrics]); OTEL_EXPORTER_OTLP_ENDPOINT sends them over OTLP instead or too",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 to be "
        "scraped from other hosts)",
    )


@contextlib.contextmanager
def _metrics(args: argparse.Namespace, api: str) -> Iterator[MeterProvider | None]:
    """The command's metrics exported for the block (see `ratekit_cxone._metrics`)."""
    with watching(
        args.metrics_port, host=args.metrics_host, environ=os.environ, api=api, warn=_warn
    ) as provider:
        yield provider


def _add_export(commands: argparse._SubParsersAction[_Parser]) -> None:
    export = commands.add_parser(
        "export",
        help="export contacts or interactions to JSON Lines or SQLite (resumable)",
        description=(
            "Export every record of a listing to a file, once each, resumably.\n\n"
            "With --api contacts (the CXone platform): the contacts completed from --start\n"
            "to --end.  With --api interactions (the tutorial's contract): every interaction."
        ),
        epilog=_EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--api",
        choices=("contacts", "interactions"),
        default="contacts",
        help="contacts: the platform's completed contacts (default); interactions: the "
        "tutorial's contract",
    )
    export.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="the output: PATH.jsonl (JSON Lines) or PATH.sqlite / PATH.db (SQLite)",
    )
    export.add_argument(
        "--start",
        type=_aware,
        metavar="ISO",
        help="contacts: the window's start, ISO 8601 with Z or an offset "
        "(2024-05-01T00:00:00Z); a time without a zone is refused",
    )
    export.add_argument(
        "--end",
        type=_aware,
        metavar="ISO",
        help="contacts: the window's end (excluded), likewise; at least --lag in the past "
        "(default: now minus --lag)",
    )
    export.add_argument(
        "--since-last",
        action="store_true",
        help="contacts: continue from where the last export to --out ended, up to --end "
        "(a daily job exports each contact once); --start is needed only the first time",
    )
    export.add_argument(
        "--lag",
        type=_seconds,
        default=DEFAULT_LAG.total_seconds(),
        metavar="SECONDS",
        help="how long the API may take to list a completed contact: windows end at "
        f"least that long ago (default {DEFAULT_LAG.total_seconds():g})",
    )
    export.add_argument(
        "--page-size",
        type=_positive_int,
        metavar="N",
        help=f"records per request (default {DEFAULT_PAGE_SIZES['contacts']} for contacts, "
        f"at most {MAX_CONTACTS_PAGE}; {DEFAULT_PAGE_SIZES['interactions']} for "
        f"interactions, at most {MAX_INTERACTIONS_PAGE})",
    )
    _add_limits(export)
    _add_metrics(export)
    export.set_defaults(handler=_export_command)


def _add_simulate(commands: argparse._SubParsersAction[_Parser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="serve a local simulator of the CXone API until interrupted",
        description=(
            "Serve a simulator of both contracts on 127.0.0.1 until Ctrl-C or SIGTERM "
            "(then exit 0).  It prints its URL, then the 'export VAR=value' lines that "
            "point '{PROG} export' at it (made-up credentials of the simulated tenant)."
        ).replace("{PROG}", PROG),
    )
    simulate.add_argument(
        "--port", type=_port, default=0, metavar="N", help="the port (default: any free one)"
    )
    simulate.add_argument(
        "--records",
        type=_count,
        default=5000,
        metavar="N",
        help="contacts and interactions the tenant holds (default 5000)",
    )
    simulate.add_argument(
        "--rate",
        metavar="SPEC",
        help="a server-side limit, such as '50/second', answered with 429 and Retry-After "
        "(default: none)",
    )
    simulate.add_argument(
        "--token-ttl",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="how long a token lives (default 3600)",
    )
    simulate.add_argument(
        "--fault-rate",
        type=_share,
        default=0.0,
        metavar="F",
        help="share of list calls answered 503 with Retry-After (default 0)",
    )
    simulate.add_argument(
        "--drop-rate",
        type=_share,
        default=0.0,
        metavar="F",
        help="share of list calls whose connection is dropped (default 0)",
    )
    simulate.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seeds the data and the faults"
    )
    simulate.set_defaults(handler=_simulate_command)


def _add_demo(commands: argparse._SubParsersAction[_Parser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="export from a local simulator with faults, and check the result",
        description=(
            "Start a simulator with a server-side limit (429s), 503s, dropped connections "
            "and tokens expiring every few seconds; export its contacts with a progress "
            "bar; then check that the output holds every record exactly once.  No "
            "account needed.  Exit 0 if the check passes, 1 if not."
        ),
    )
    demo.add_argument(
        "--records",
        type=_positive_int,
        default=DEMO_RECORDS,
        metavar="N",
        help=f"contacts to export (default {DEMO_RECORDS})",
    )
    demo.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="a new .jsonl, .sqlite or .db file (default: contacts.jsonl in a new "
        "temporary directory, printed)",
    )
    demo.add_argument(
        "--page-size",
        type=_positive_int,
        default=DEMO_PAGE_SIZE,
        metavar="N",
        help=f"records per request (default {DEMO_PAGE_SIZE})",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="seeds data and faults")
    demo.add_argument("--quiet", action="store_true", help="no progress report")
    _add_metrics(demo)
    demo.set_defaults(handler=_demo_command)


# --- running ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ratekit-cxone`` command and return its exit code.

    Args:
        argv: The arguments after the program's name (default: the process's).

    Returns:
        The exit code: 0 done, 1 the demo's check failed, 2 usage or configuration
        error, 3 credentials rejected, 4 API failure after retries, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    with _sigterm_interrupts():
        try:
            return handler(args)
        except _UsageError as error:
            _error(f"{error} (see '{error.command} --help')")
            return EXIT_USAGE
        except MetricsUnavailable as error:
            _error(str(error))
            return EXIT_USAGE
        except KeyboardInterrupt:
            _error("interrupted", prefix="")
            return EXIT_INTERRUPTED


def _say(line: str) -> None:
    """A line on standard output."""
    sys.stdout.write(line + "\n")


def _error(message: str, *, prefix: str = "error: ") -> None:
    sys.stderr.write(f"{PROG}: {prefix}{message}\n")
    sys.stderr.flush()


def _warn(message: str) -> None:
    """A warning: one line on standard error; the command goes on."""
    _error(message, prefix="warning: ")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM stop the command as Ctrl-C does (a `KeyboardInterrupt`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _scrub(text: str, secrets: Sequence[str | None]) -> str:
    """*text* with every secret value masked: a last guard on what is printed."""
    return mask_secrets(text, secrets)


def _failure(error: BaseException) -> tuple[int, str] | None:
    """The exit code and message of an expected error; ``None`` for an unexpected one."""
    if isinstance(error, OutputError):  # the library names the output by its path
        return EXIT_USAGE, error.phrased(option="--out", again=_RESUME_HINT)
    if isinstance(error, (ConfigError, InsecureTransport)):
        return EXIT_USAGE, str(error)
    if isinstance(error, TLSError):  # the URL, or the trust of its certificate, is wrong
        return EXIT_USAGE, f"{error}; check the URL, or the certificate authorities trusted"
    # Rejected credentials; an unreadable token answer is the API's failure, not theirs.
    if isinstance(error, AuthError) or (
        isinstance(error, TokenError) and error.error != "invalid_response"
    ):
        return EXIT_AUTH, f"authentication failed: {error}"
    if isinstance(error, (RetryError, HTTPError)):
        return EXIT_API, f"the API failed: {error}"
    return None


@attrs.frozen(kw_only=True)
class _Job:
    """One export: where from, what, where to, how fast."""

    config: CXoneConfig
    out: Path
    start: datetime | None
    end: datetime | None
    page_size: int
    concurrency: int
    limiter: Limiter
    retry: RetryPolicy
    timeout: float
    progress: Literal["bar", "lines", "none"]
    since_last: bool = False
    #: Where the limiter starts from, and what it learnt is kept (no --rate); or None.
    remembered: RememberedRate | None = None
    #: Where the export's metrics go (--metrics-port, OTEL_*), or None.
    metrics: MeterProvider | None = None

    @property
    def api(self) -> Literal["contacts", "interactions"]:
        return self.config.api

    def identity(self, tenant_id: str | None) -> dict[str, Scalar]:
        """Whose records the export reads, normalised: the API, where, and the tenant id.

        No credential: the URLs were checked to hold no user, query or fragment.
        """
        config = self.config
        if self.api == "contacts":
            return {"api": "contacts", "issuer": _normal_url(config.issuer), "tenant_id": tenant_id}
        return {"api": "interactions", "tenant_url": _normal_url(config.tenant_url or "")}

    def parameters(self, tenant_id: str | None) -> dict[str, Scalar]:
        """What identifies the export, normalised: equivalent settings resume it.

        The tenant (`identity`), and how its listing is read.  Not how the API is reached
        (a discovered or a configured API base), nor the window, which the checkpoint
        keeps apart (an incremental export moves it).
        """
        if self.api == "contacts":
            # Offsets count records, so the page size may change between runs.
            return {**self.identity(tenant_id), "api_version": self.config.version}
        return {**self.identity(tenant_id), "page_size": self.page_size}

    def key_of(self) -> Callable[[Mapping[str, object]], str]:
        model = Contact if self.api == "contacts" else Interaction
        return lambda raw: model.from_raw(raw).key


def _normal_url(url: str) -> str:
    """*url* as it compares: scheme and host in lower case, no trailing slash."""
    scheme, _, rest = url.strip().partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


def _tenant(client: CXoneClient, job: _Job) -> str | None:
    """The tenant an export of contacts reads: configured, or told by its token."""
    if job.api != "contacts":
        return None
    return job.config.tenant_id or client.tenant_id()


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def _moment(text: str) -> datetime:
    """A window bound as the checkpoint keeps it (``...Z``), as an aware datetime."""
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


class _Short(Exception):
    """The export holds fewer contacts of its window than the API reports."""


def _progress_mode(quiet: bool) -> Literal["bar", "lines", "none"]:
    if quiet:
        return "none"
    isatty = getattr(sys.stderr, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "lines"


def _export(job: _Job, *, label: str = "export", resumable: bool = True) -> int:
    """Run *job*, reporting on standard error; return the exit code.

    What the limiter learnt is remembered however the run ends (done, failed or
    interrupted), once the tenant is known.  An export is bulk work: it runs at
    `ratekit.Priority.BULK`, so that, on a `ratekit.Prioritized` limiter shared with
    other work, anything more urgent goes first.
    """
    try:
        with priority(Priority.BULK):
            return _run(job, label, resumable=resumable)
    finally:
        if job.remembered is not None:
            job.remembered.save()


def _run(job: _Job, label: str, *, resumable: bool) -> int:
    secrets = (job.config.client_secret, job.config.access_key_secret)
    writer: Writer | None = None
    try:
        with CXoneClient(
            job.config,
            limiter=job.limiter,
            concurrency=job.concurrency,
            retry=job.retry,
            timeout=job.timeout,
        ) as client:
            track(job.metrics, client.statistics, job.api)
            # Who the export is for is known before the output is touched, and before
            # the first request that the limiter paces.
            tenant_id = _tenant(client, job)
            if job.remembered is not None:
                job.remembered.start(job.identity(tenant_id))
            writer = open_writer(
                job.out,
                job.parameters(tenant_id),
                initial_position=0 if job.api == "contacts" else 1,
                key_of=job.key_of(),
            )
            with writer:
                return _export_into(job, writer, client, label)
    except KeyboardInterrupt:
        kept = 0
        if writer is not None:
            writer.abandon()
            kept = writer.count
        hint = f"; {_RESUME_HINT}" if resumable else ""
        where = f": {kept} records kept in {job.out}{hint}" if writer is not None else ""
        _error(f"interrupted{where}", prefix="")
        return EXIT_INTERRUPTED
    except _Short as short:
        _error(str(short))
        return EXIT_API
    except Exception as error:
        failure = _failure(error)
        if failure is None:
            raise
        if writer is not None:
            writer.abandon()
        code, message = failure
        _error(_scrub(message, secrets))
        return code


def _export_into(job: _Job, writer: Writer, client: CXoneClient, label: str) -> int:
    """Run *job* into the opened *writer*, window after window if it is incremental."""
    stderr: TextIO = sys.stderr
    checkpoint: Checkpoint | None = _plan(job, writer, writer.open())
    results = []
    while checkpoint is not None:
        window = checkpoint.window
        check = None if window is None else _reconcile(writer, client, window)
        results.append(
            run_export(
                writer=writer,
                checkpoint=checkpoint,
                pages=_pages(client, job, window),
                next_position=position_after(job.api),
                statistics=client.statistics,
                total=lambda: client.total,
                progress=Progress(job.progress, stream=stderr, label=label),
                check=check,
            )
        )
        checkpoint = _next_window(job, writer)
    if job.progress != "none" and results:
        lines = [result.summary() for result in results]
        lines[-1] += _paused(client.statistics().cooled)
        learnt = getattr(job.limiter, "estimate", None)
        if isinstance(learnt, float):
            lines[-1] += f", learnt {learnt:.1f} requests/s"
        stderr.writelines(line + "\n" for line in lines)
        stderr.flush()
    return EXIT_OK


def _paused(cooled: float) -> str:
    """How long the server's ``Retry-After`` paused every request of the run.

    A 429, or a 503 with ``Retry-After``, pauses every worker (the shared cooldown), so
    the rate over the whole run says as much about the server's faults as about the
    pace: the summary says how much of the time went to such pauses.
    """
    if cooled < _SHOWN_PAUSE:
        return ""
    return f", paused {cooled:.1f} s by the server's Retry-After"


def _plan(job: _Job, writer: Writer, checkpoint: Checkpoint) -> Checkpoint | None:
    """The checkpoint to run from, or ``None`` when there is nothing to do (said why).

    Raises:
        OutputError: If the output holds another window of the same job.
        _UsageError: If an incremental export has no start.
    """
    stderr: TextIO = sys.stderr
    if job.api == "interactions":
        return _unless_complete(job, writer, checkpoint)
    wanted = None if job.start is None or job.end is None else (_utc(job.start), _utc(job.end))
    stored = checkpoint.window
    if stored is None:  # a new output
        if wanted is None:
            raise _UsageError(
                "--since-last needs --start the first time, for an output that holds no export yet",
                f"{PROG} export",
            )
        return writer.restart(next_position=0, window=wanted)
    if job.since_last:
        if not checkpoint.complete:
            return checkpoint  # the window a previous run left unfinished, first
        following = _next_window(job, writer)
        if following is None:
            stderr.write(f"{job.out} holds every contact up to {stored[1]}: nothing new yet\n")
        return following
    if stored != wanted:
        raise OutputError(
            f"{job.out} holds an export of the contacts from {stored[0]} to {stored[1]}, "
            f"not from {wanted[0] if wanted else '?'} to {wanted[1] if wanted else '?'}; "
            "continue it with --since-last, or choose another --out"
        )
    return _unless_complete(job, writer, checkpoint)


def _next_window(job: _Job, writer: Writer) -> Checkpoint | None:
    """The next window of an incremental export, once the last one is complete."""
    checkpoint = writer.checkpoint
    if not job.since_last or checkpoint is None or checkpoint.window is None:
        return None
    if not checkpoint.complete or job.end is None:
        return None
    start = checkpoint.window[1]
    if _moment(start) >= job.end:
        return None
    return writer.restart(next_position=0, window=(start, _utc(job.end)))


def _unless_complete(job: _Job, writer: Writer, checkpoint: Checkpoint) -> Checkpoint | None:
    """*checkpoint*, or ``None`` (said why) if the export it records is complete."""
    if not checkpoint.complete:
        return checkpoint
    files = str(job.out)
    if isinstance(writer, JsonlWriter):
        files += f" and {writer.state_path}"
    sys.stderr.write(
        f"{job.out} already holds this complete export ({checkpoint.count} "
        f"records); to export again, delete {files}, or choose another --out\n"
    )
    return None


def _reconcile(writer: Writer, client: CXoneClient, window: tuple[str, str]) -> Callable[[], None]:
    """The check after a window's last page: the output holds what the API reports.

    Fewer than the API reports (records moved while the listing was walked, so that
    offsets skipped some): the window is set to be walked again, which keeps what is
    there and adds what is missing, and the run fails with exit 4.  More (contacts
    deleted meanwhile) is kept: what was exported was the API's answer.
    """

    def check() -> None:
        reported = client.completed_contacts_total(_moment(window[0]), _moment(window[1]))
        checkpoint = writer.checkpoint
        base = 0 if checkpoint is None else checkpoint.base
        held = writer.count - base
        if held < reported:
            writer.restart(next_position=0, window=window, base=base)
            raise _Short(
                f"the API reports {reported} contacts from {window[0]} to {window[1]}, but "
                f"the walk found {held}: {reported - held} missing (the listing changed "
                "while it was walked); run the same command again to fetch them"
            )

    return check


def _pages(
    client: CXoneClient, job: _Job, window: tuple[str, str] | None
) -> Callable[[int], Iterator[RecordPage]]:
    """The listing of *job* (over *window*, for contacts), from a position on."""
    if job.api == "contacts":
        if window is None:  # pragma: no cover - a contacts export always has one
            raise ConfigError("contacts need a window")
        start, end = _moment(window[0]), _moment(window[1])
        return lambda skip: client.completed_contact_pages(
            start, end, page_size=job.page_size, skip=skip
        )
    return lambda first: client.interaction_pages(page_size=job.page_size, first_page=first)


def _window(args: argparse.Namespace, command: str) -> tuple[datetime | None, datetime | None]:
    """--start and --end, checked against --api, --since-last and --lag.

    The end defaults to now minus the lag, and may not be later: the part of a window
    that the API may still be listing would be marked exported while it is not.
    """
    start: datetime | None = args.start
    end: datetime | None = args.end
    if args.api == "interactions":
        if start is not None or end is not None or args.since_last:
            raise _UsageError(
                "--start, --end and --since-last apply to --api contacts only; "
                "interactions have no window",
                command,
            )
        return None, None
    if start is None and not args.since_last:
        raise _UsageError(
            "--start is required with --api contacts (ISO 8601 with Z or an offset, such "
            "as 2024-05-01T00:00:00Z), unless --since-last continues an export",
            command,
        )
    settled = datetime.fromtimestamp(wall_time(), timezone.utc) - timedelta(seconds=args.lag)
    settled = settled.replace(microsecond=0)
    if end is None:
        end = settled
    elif end > settled:
        raise _UsageError(
            f"argument --end: {_utc(end)} is later than now minus --lag ({_utc(settled)}): "
            "the API may still be listing contacts of that time; give an earlier --end, "
            "or leave it out",
            command,
        )
    if start is not None and end <= start:
        raise _UsageError(
            f"argument --end: must be later than --start, got --start {_utc(start)} and "
            f"--end {_utc(end)}",
            command,
        )
    return start, end


def _limiter(args: argparse.Namespace, command: str) -> tuple[Limiter, RememberedRate | None]:
    """The limiter for --rate and --burst, and, without --rate, what it remembers.

    Errors of --rate and --burst are usage errors naming them.  Without --rate (and
    without --no-remember), the limiter starts from the rate remembered for the tenant
    once the export knows which it is (`DeferredLimiter`).
    """
    rate: str | None = args.rate
    burst: int | None = args.burst
    if burst is not None and rate is None:
        raise _UsageError("argument --burst: needs --rate (a burst of a fixed rate)", command)
    path = None if rate is not None or args.no_remember else rates_path()
    if path is not None:
        limiter = DeferredLimiter(lambda estimate: make_limiter(None, estimate=estimate))
        return limiter, RememberedRate(RateMemory(path=path), limiter, warn=_warn)
    try:
        return make_limiter(rate, burst), None
    except ConfigError as error:
        raise _UsageError(f"argument --rate: {error}", command) from None


def _retry(retries: int) -> RetryPolicy:
    return attrs.evolve(DEFAULT_RETRY, attempts=retries + 1)


def _check_out(out: Path, command: str) -> None:
    try:
        output_format(out)
    except OutputError:
        raise _UsageError(
            "argument --out: must end in .jsonl (JSON Lines), .sqlite or .db (SQLite), "
            f"got {str(out)!r}",
            command,
        ) from None


def _export_command(args: argparse.Namespace) -> int:
    command = f"{PROG} export"
    _check_out(args.out, command)
    start, end = _window(args, command)
    page_size: int = args.page_size or DEFAULT_PAGE_SIZES[args.api]
    most = MAX_CONTACTS_PAGE if args.api == "contacts" else MAX_INTERACTIONS_PAGE
    if page_size > most:
        raise _UsageError(
            f"argument --page-size: at most {most} with --api {args.api}, got {page_size}",
            command,
        )
    with _metrics(args, args.api) as metrics:
        # Made inside the block, so that the metrics cover the limiter too.
        limiter, remembered = _limiter(args, command)
        try:
            config = CXoneConfig.from_env(args.api)
        except ConfigError as error:
            _error(str(error))
            return EXIT_USAGE
        job = _Job(
            config=config,
            out=args.out,
            start=start,
            end=end,
            page_size=page_size,
            concurrency=args.concurrency,
            limiter=limiter,
            retry=_retry(args.retries),
            timeout=args.timeout,
            progress=_progress_mode(args.quiet),
            since_last=args.since_last,
            remembered=remembered,
            metrics=metrics,
        )
        return _export(job)


def _simulate_command(args: argparse.Namespace) -> int:
    from ratekit_cxone.simulator import Simulator

    try:
        simulator = Simulator(
            records=args.records,
            seed=args.seed,
            port=args.port,
            rate=args.rate,
            token_ttl=args.token_ttl,
            fault_rate=args.fault_rate,
            drop_rate=args.drop_rate,
        )
    except (TypeError, ValueError) as error:
        raise _UsageError(f"argument --rate: {error}", f"{PROG} simulate") from None
    try:
        simulator.start()
    except OSError as error:
        _error(f"cannot listen on port {args.port}: {error.strerror or error}")
        return EXIT_USAGE
    out = sys.stdout
    try:
        out.write(f"CXone simulator listening on {simulator.url} (Ctrl-C to stop)\n")
        contracts: tuple[tuple[Literal["contacts", "interactions"], str], ...] = (
            ("contacts", "the platform's contract"),
            ("interactions", "the tutorial's contract"),
        )
        for api, what in contracts:
            out.write(f"# for {PROG} export --api {api} ({what}):\n")
            for name, value in simulator.env(api).items():
                out.write(f"export {name}={shlex.quote(value)}\n")
        out.flush()
        forever = threading.Event()
        while not forever.wait(3600):  # until Ctrl-C or SIGTERM
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.close()
    statistics = simulator.statistics()
    sys.stderr.write(
        f"simulator stopped after {statistics.requests} requests "
        f"({statistics.throttled} throttled, {statistics.faults} faults, "
        f"{statistics.drops} dropped)\n"
    )
    return EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    from ratekit_cxone.simulator import Simulator

    command = f"{PROG} demo"
    out: Path
    if args.out is None:
        out = Path(tempfile.mkdtemp(prefix="ratekit-cxone-demo-")) / "contacts.jsonl"
    else:
        out = args.out
        _check_out(out, command)
        if out.exists() or state_path(out).exists():
            raise _UsageError(f"argument --out: {out} exists; the demo writes a new file", command)
    if args.page_size > MAX_CONTACTS_PAGE:
        raise _UsageError(f"argument --page-size: at most {MAX_CONTACTS_PAGE}", command)
    start, end = DEMO_FIRST_DATE, DEMO_FIRST_DATE + DEMO_SPAN
    with Simulator(
        records=args.records,
        seed=args.seed,
        first_date=DEMO_FIRST_DATE,
        span=DEMO_SPAN,
        rate=DEMO_RATE,
        retry_after="fraction",
        token_ttl=DEMO_TOKEN_TTL,
        fault_rate=DEMO_FAULT_RATE,
        fault_retry_after=DEMO_FAULT_RETRY_AFTER,
        drop_rate=DEMO_DROP_RATE,
    ) as simulator:
        _say(
            f"simulator at {simulator.url}: {args.records} contacts, a limit of {DEMO_RATE}, "
            f"tokens expiring every {DEMO_TOKEN_TTL:g} s, {DEMO_FAULT_RATE:.0%} of calls "
            f"answered 503, {DEMO_DROP_RATE:.0%} dropped"
        )
        _say(f"exporting to {out}")
        sys.stdout.flush()
        config = CXoneConfig.from_env("contacts", environ=simulator.env("contacts"))
        # The demo learns from scratch and remembers nothing: its tenant is a new
        # simulator on a new port each time (an entry would never be read again), and
        # showing the limit being learnt is the point of it.
        # The simulator is not instrumented: it is made before the block, and its
        # requests are the client's, counted by the client.
        with _metrics(args, "contacts") as metrics:
            job = _Job(
                config=config,
                out=out,
                start=start,
                end=end,
                page_size=args.page_size,
                concurrency=DEMO_CONCURRENCY,
                limiter=make_limiter(None),
                retry=_retry(DEFAULT_RETRIES + 3),
                timeout=DEFAULT_TIMEOUT,
                progress=_progress_mode(args.quiet),
                metrics=metrics,
            )
            code = _export(job, label="demo", resumable=False)
        if code != EXIT_OK:
            return code
        expected = [Contact.from_raw(raw).key for raw in simulator.contacts(start, end)]
        served = simulator.statistics()
    tenant = job.config.tenant_id or simulator.tenant_id
    writer = open_writer(out, job.parameters(tenant), initial_position=0, key_of=job.key_of())
    got = writer.keys()
    missing = len(set(expected) - set(got))
    extra = len(set(got) - set(expected))
    duplicated = len(got) - len(set(got))
    _say(
        f"the server answered {served.throttled} requests 429, {served.faults} 503, dropped "
        f"{served.drops} connections and issued {served.tokens_issued} tokens"
    )
    if missing or extra or duplicated or len(got) != len(expected):
        _say(
            f"check FAILED: {len(got)} records written, {len(expected)} expected: {missing} "
            f"missing, {duplicated} duplicated, {extra} unexpected"
        )
        return EXIT_CHECK_FAILED
    _say(f"check passed: {out} holds all {len(expected)} contacts, each exactly once")
    return EXIT_OK

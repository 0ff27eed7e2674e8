"""The exporter behind ``ratekit-cxone export``: resumable writers and progress reports.

An export walks the pages of one listing in order and, for each page, first writes its
records and then records how far it got (a *checkpoint*).  Run again with the same
parameters after being stopped (Ctrl-C, SIGTERM, even SIGKILL or a crash), it continues
from the last checkpoint, and every record ends up in the output exactly once:

* JSON Lines (``.jsonl``): one raw record per line.  Each page is appended, flushed and
  synced to disk, then the checkpoint is written to a small state file beside the
  output (``PATH.state``), replaced atomically (write a temporary file, sync it,
  ``os.replace``), so that the state file is never half written.  On resume, a torn
  last line is cut off and the ids already in the file are collected: a page that was
  written but not yet checkpointed is fetched again and its records are skipped.
* SQLite (``.sqlite``, ``.db``): a table ``records(id TEXT PRIMARY KEY, record TEXT NOT
  NULL)`` holding each raw record as JSON text, and a one-row table ``export_state``
  with the checkpoint.  A page's upserts and its checkpoint share one transaction.

A finished export is marked complete; running it again reports that and changes nothing.
An output is written by one export at a time (an advisory lock, where the system has
one), and an export that fails before its first page removes the files it created.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol, TextIO

import attrs

from ratekit import RateKitError
from ratekit._clock import MONOTONIC

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from typing_extensions import Self

    from ratekit.typing import Clock

#: The version of the checkpoint format (the state file, the ``export_state`` row).
STATE_VERSION = 1

#: Seconds between two progress lines when the output is not a terminal.
DEFAULT_PROGRESS_INTERVAL = 2.0

#: Output suffixes, by format.
JSONL_SUFFIXES = (".jsonl",)
SQLITE_SUFFIXES = (".sqlite", ".db")

#: A JSON scalar: what export parameters are made of.
Scalar = str | int | float | bool | None

#: How far reading backwards goes at once when looking for the last newline.
_CHUNK = 1 << 16


class OutputError(RateKitError, ValueError):
    """The output cannot take this export.

    It is a file that no export wrote, an unfinished export of other parameters, or a
    file that cannot be read or written.  The message names the path and what to do.
    """


def output_format(path: str | os.PathLike[str]) -> Literal["jsonl", "sqlite"]:
    """Return the format that *path*'s extension asks for.

    Raises:
        OutputError: If the extension is none of ``.jsonl``, ``.sqlite``, ``.db``.
    """
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in SQLITE_SUFFIXES:
        return "sqlite"
    raise OutputError(
        f"--out must end in .jsonl (JSON Lines) or .sqlite/.db (SQLite), got {os.fspath(path)!r}"
    )


def state_path(path: str | os.PathLike[str]) -> Path:
    """The state file that records the progress of a JSON Lines export to *path*."""
    path = Path(path)
    return path.with_name(path.name + ".state")


@attrs.frozen(kw_only=True)
class Checkpoint:
    """How far an export got.

    Attributes:
        parameters: What identifies the export (API, source, dates, page size).
        next_position: Where the listing continues: the next page's position.
        count: How many records the output holds.
        total: The listing's total, when the API told it.
        complete: Whether the export finished.
    """

    parameters: Mapping[str, Scalar]
    next_position: int
    count: int
    total: int | None = None
    complete: bool = False


class _RecordLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def raw(self) -> Mapping[str, object]: ...


class PageLike(Protocol):
    """What the exporter needs of a page of records (`ratekit_cxone.RecordPage`)."""

    @property
    def position(self) -> int:
        """The page's position in the listing."""

    @property
    def records(self) -> Sequence[_RecordLike]:
        """The page's records, in API order."""

    @property
    def total(self) -> int | None:
        """The listing's total, if the API tells it."""


class StatisticsLike(Protocol):
    """What the progress report reads of the client's statistics."""

    @property
    def requests(self) -> int:
        """Requests sent, retries included."""

    @property
    def throttled(self) -> int:
        """Responses that were 429."""

    @property
    def retries(self) -> int:
        """Requests that were retried."""


def _jsonable(value: object) -> object:
    """Turn read-only mappings (``MappingProxyType``) into dicts for `json.dumps`."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a record holds a {type(value).__name__}, which is not JSON")


def record_json(raw: Mapping[str, object]) -> str:
    """The raw record as compact JSON text on one line (UTF-8, keys in API order)."""
    return json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in *directory* durable (POSIX); nothing to do where it cannot be."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open a directory
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes) -> None:
    """Write *data* to *path* so that a reader sees the old content or the new, never half.

    The data goes to ``PATH.tmp`` first, is synced to disk, then renamed over *path*.
    """
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    Path(temporary).replace(path)
    _fsync_directory(path.parent)


def _describe_difference(stored: Mapping[str, object], wanted: Mapping[str, object]) -> str:
    names = sorted(set(stored) | set(wanted))
    parts = [
        f"{name}={stored.get(name)!r} (now {wanted.get(name)!r})"
        for name in names
        if stored.get(name) != wanted.get(name)
    ]
    return ", ".join(parts)


def _mismatch(path: Path, others: str, stored: Mapping[str, object], wanted: object) -> OutputError:
    difference = _describe_difference(stored, wanted if isinstance(wanted, Mapping) else {})
    return OutputError(
        f"{path} holds an export with other parameters ({difference}); choose another "
        f"--out, or delete {others} to start again"
    )


class Writer:
    """Where an export's records go, with its checkpoints; see `JsonlWriter`, `SqliteWriter`.

    Use it as a context manager: `open` returns the checkpoint to continue from,
    `write_page` adds a page's records and moves the checkpoint, `finish` marks the
    export complete.

    Args:
        path: The output file.
        parameters: What identifies the export; a later run must give the same to resume.
        initial_position: The first page's position (0 for an offset, 1 for page numbers).
        key_of: The id of a raw record, as text (used to find the records already written).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        parameters: Mapping[str, Scalar],
        *,
        initial_position: int,
        key_of: Callable[[Mapping[str, object]], str],
    ) -> None:
        self.path = Path(path)
        # A JSON round trip, so that stored and given parameters compare alike.
        self.parameters: dict[str, Scalar] = json.loads(json.dumps(dict(parameters)))
        self.initial_position = initial_position
        self.key_of = key_of
        self.count = 0
        #: Files that `open` created (not there before), and whether a page was kept since.
        self._created: list[Path] = []
        self._kept = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Checkpoint:
        """Claim the output and return the checkpoint to continue from.

        Raises:
            OutputError: If the output holds something else, or an export of other
                parameters, or cannot be used.
        """
        raise NotImplementedError

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Add the records not already there, then checkpoint at *next_position*.

        Returns:
            How many records were new.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """Mark the export complete."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the output (what was written stays)."""
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every record id in the output, in storage order (duplicates kept, for checks)."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Close, and remove the files `open` created if no page was kept since.

        For an export that failed before its first page (rejected credentials, say), so
        that it leaves nothing behind to refuse another export to the same path.
        """
        self.close()
        if not self._kept:
            for path in self._created:
                path.unlink(missing_ok=True)
        self._created = []


class JsonlWriter(Writer):
    """JSON Lines: one raw record per line, a state file ``PATH.state`` beside it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        parameters: Mapping[str, Scalar],
        *,
        initial_position: int,
        key_of: Callable[[Mapping[str, object]], str],
    ) -> None:
        super().__init__(path, parameters, initial_position=initial_position, key_of=key_of)
        self.state_path = state_path(self.path)
        self._seen: set[str] = set()
        self._file: Any = None
        self._checkpoint: Checkpoint | None = None

    def _read_state(self) -> Checkpoint | None:
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise OutputError(f"cannot read {self.state_path}: {error}") from None
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError("unknown version")  # noqa: TRY301 - one message for all
            return Checkpoint(
                parameters=data["parameters"],
                next_position=int(data["next_position"]),
                count=int(data["count"]),
                total=data.get("total"),
                complete=bool(data.get("complete", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OutputError(
                f"{self.state_path} is not an export state file; delete it and "
                f"{self.path} to start again, or choose another --out"
            ) from None

    def _write_state(self, checkpoint: Checkpoint) -> None:
        data = {
            "version": STATE_VERSION,
            "parameters": dict(checkpoint.parameters),
            "next_position": checkpoint.next_position,
            "count": checkpoint.count,
            "total": checkpoint.total,
            "complete": checkpoint.complete,
        }
        replace_atomically(self.state_path, (json.dumps(data, indent=1) + "\n").encode())
        self._checkpoint = checkpoint

    def open(self) -> Checkpoint:
        """Claim the output (see `Writer.open`); repair a torn last line."""
        stored = self._read_state()
        others = f"{self.path} and {self.state_path}"
        if stored is not None and stored.parameters != self.parameters:
            raise _mismatch(self.path, others, stored.parameters, self.parameters)
        exists = self.path.exists()
        if stored is None and exists and self.path.stat().st_size > 0:
            raise OutputError(
                f"{self.path} exists and is not an unfinished export (there is no "
                f"{self.state_path.name}); choose another --out, or delete it"
            )
        if stored is not None and stored.complete and exists:
            self._checkpoint = stored
            self.count = stored.count
            return stored
        if stored is None or not exists:
            # A fresh start (or the output was deleted): claim it from the beginning.
            checkpoint = Checkpoint(
                parameters=self.parameters, next_position=self.initial_position, count=0
            )
        else:
            checkpoint = stored
        self._created = [p for p in (self.path, self.state_path) if not p.exists()]
        try:
            self._file = self.path.open("ab")
            _lock(self._file, self.path)
            if exists:
                _repair_tail(self.path)
                self._scan()
            checkpoint = attrs.evolve(checkpoint, count=self.count, complete=False)
            self._write_state(checkpoint)
        except OSError as error:
            self.close()
            raise OutputError(f"cannot write --out {self.path}: {error}") from None
        except OutputError:
            self.close()
            raise
        return checkpoint

    def _scan(self) -> None:
        """Collect the ids of the records in the file (whose last line is whole)."""
        with self.path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                try:
                    raw = json.loads(line)
                    key = self.key_of(raw)
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise OutputError(
                        f"line {number} of {self.path} is not a record of this export; the "
                        "file was changed by something else: choose another --out, or delete "
                        f"{self.path} and {self.state_path}"
                    ) from None
                self._seen.add(key)
                self.count += 1

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Append the new records, sync them to disk, then replace the state file."""
        if self._file is None or self._checkpoint is None:
            raise RuntimeError("write_page() needs open() first")
        lines = []
        for record in records:
            key = record.key
            if key in self._seen:
                continue
            self._seen.add(key)
            lines.append(record_json(record.raw) + "\n")
        if lines:
            self._file.write("".join(lines).encode("utf-8"))
            self._file.flush()
            os.fsync(self._file.fileno())
        self.count += len(lines)
        self._kept = True
        self._write_state(
            attrs.evolve(
                self._checkpoint,
                next_position=next_position,
                count=self.count,
                total=total if total is not None else self._checkpoint.total,
            )
        )
        return len(lines)

    def finish(self) -> None:
        """Mark the export complete in the state file."""
        if self._checkpoint is None:
            raise RuntimeError("finish() needs open() first")
        self._kept = True
        self._write_state(attrs.evolve(self._checkpoint, count=self.count, complete=True))

    def close(self) -> None:
        """Close the output file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def keys(self) -> list[str]:
        """Every record id in the file, in order."""
        with self.path.open("rb") as file:
            return [self.key_of(json.loads(line)) for line in file]


def _lock(file: BinaryIO, path: Path) -> None:
    """Hold an exclusive lock on *file* while it is open: one export per output at once.

    An advisory ``flock``, released by the system when the process ends, however it
    ends.  Where there is none (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(
            f"{path} is being written by another export; wait for it to end, or choose "
            "another --out"
        ) from None


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (one without its newline) off the end of *path*."""
    with path.open("rb+") as file:
        end = file.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - _CHUNK)
            file.seek(start)
            chunk = file.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        else:
            keep = 0
        if keep != end:
            file.truncate(keep)
            file.flush()
            os.fsync(file.fileno())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS export_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    next_position INTEGER NOT NULL,
    count INTEGER NOT NULL,
    total INTEGER,
    complete INTEGER NOT NULL
);
"""


class SqliteWriter(Writer):
    """SQLite: ``records(id, record)`` upserted, with the checkpoint in the same transaction."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        parameters: Mapping[str, Scalar],
        *,
        initial_position: int,
        key_of: Callable[[Mapping[str, object]], str],
    ) -> None:
        super().__init__(path, parameters, initial_position=initial_position, key_of=key_of)
        self._db: sqlite3.Connection | None = None
        self._lock_file: BinaryIO | None = None
        self._checkpoint: Checkpoint | None = None

    def _foreign(self) -> OutputError:
        return OutputError(
            f"{self.path} exists and is not an export database; choose another --out, or delete it"
        )

    def open(self) -> Checkpoint:
        """Claim the database (see `Writer.open`)."""
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._created = [] if self.path.exists() else [self.path]
        try:
            # Transactions are explicit (BEGIN ... COMMIT), one per page.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._lock_file = self.path.open("rb")
            _lock(self._lock_file, self.path)
            if fresh:
                self._db.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
            return self._load(fresh=fresh)
        except (sqlite3.DatabaseError, OSError) as error:
            self.close()
            if fresh:
                raise OutputError(f"cannot write --out {self.path}: {error}") from None
            raise self._foreign() from None
        except OutputError:
            self.close()
            raise

    def _load(self, *, fresh: bool) -> Checkpoint:
        db = self._db
        assert db is not None  # noqa: S101 - set by open()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not {"records", "export_state"} <= tables:
            raise self._foreign()
        row = db.execute(
            "SELECT version, parameters, next_position, count, total, complete "
            "FROM export_state WHERE id = 1"
        ).fetchone()
        if row is None:
            if not fresh and db.execute("SELECT 1 FROM records LIMIT 1").fetchone():
                raise self._foreign()
            checkpoint = Checkpoint(
                parameters=self.parameters, next_position=self.initial_position, count=0
            )
            db.execute("BEGIN IMMEDIATE")
            self._save(checkpoint)
            db.execute("COMMIT")
            self._checkpoint = checkpoint
            return checkpoint
        version, parameters, next_position, count, total, complete = row
        try:
            stored = json.loads(parameters)
        except ValueError:
            raise self._foreign() from None
        if version != STATE_VERSION or not isinstance(stored, dict):
            raise self._foreign()
        if stored != self.parameters:
            raise _mismatch(self.path, str(self.path), stored, self.parameters)
        self.count = int(count)
        self._checkpoint = Checkpoint(
            parameters=stored,
            next_position=int(next_position),
            count=self.count,
            total=total,
            complete=bool(complete),
        )
        return self._checkpoint

    def _save(self, checkpoint: Checkpoint) -> None:
        assert self._db is not None  # noqa: S101 - set by open()
        self._db.execute(
            "INSERT INTO export_state (id, version, parameters, next_position, count, total, "
            "complete) VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "version = excluded.version, parameters = excluded.parameters, "
            "next_position = excluded.next_position, count = excluded.count, "
            "total = excluded.total, complete = excluded.complete",
            (
                STATE_VERSION,
                json.dumps(dict(checkpoint.parameters)),
                checkpoint.next_position,
                checkpoint.count,
                checkpoint.total,
                int(checkpoint.complete),
            ),
        )

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Upsert the page's records and move the checkpoint, in one transaction."""
        if self._db is None or self._checkpoint is None:
            raise RuntimeError("write_page() needs open() first")
        rows = [(record.key, record_json(record.raw)) for record in records]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(
                "INSERT INTO records (id, record) VALUES (?, ?) ON CONFLICT(id) DO NOTHING", rows
            )
            new = db.total_changes - before
            # A record seen again (a page fetched again after a stop) takes its newest form.
            db.executemany(
                "UPDATE records SET record = :record WHERE id = :id AND record IS NOT :record",
                [{"id": key, "record": record} for key, record in rows],
            )
            checkpoint = attrs.evolve(
                self._checkpoint,
                next_position=next_position,
                count=self.count + new,
                total=total if total is not None else self._checkpoint.total,
            )
            self._save(checkpoint)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.count += new
        self._kept = True
        self._checkpoint = checkpoint
        return new

    def finish(self) -> None:
        """Mark the export complete."""
        if self._db is None or self._checkpoint is None:
            raise RuntimeError("finish() needs open() first")
        checkpoint = attrs.evolve(self._checkpoint, complete=True)
        self._kept = True
        self._db.execute("BEGIN IMMEDIATE")
        self._save(checkpoint)
        self._db.execute("COMMIT")
        self._checkpoint = checkpoint

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def keys(self) -> list[str]:
        """Every record id in the table, in the order they were first stored."""
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return [row[0] for row in db.execute("SELECT id FROM records ORDER BY rowid")]


def open_writer(
    path: str | os.PathLike[str],
    parameters: Mapping[str, Scalar],
    *,
    initial_position: int,
    key_of: Callable[[Mapping[str, object]], str],
) -> Writer:
    """The writer for *path*'s format (see `output_format`); call its `Writer.open` next.

    Raises:
        OutputError: If the extension is not one of the formats.
    """
    cls = JsonlWriter if output_format(path) == "jsonl" else SqliteWriter
    return cls(path, parameters, initial_position=initial_position, key_of=key_of)


def _plural(count: int, word: str, words: str = "") -> str:
    """*count* and the word: ``1 page``, ``2 pages``, ``2 retries`` (given *words*)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


class _Bar(Protocol):
    n: float
    total: float | None

    def update(self, n: float = 1) -> bool | None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...  # noqa: FBT002
    def refresh(self) -> None: ...
    def close(self) -> None: ...


def _make_bar(stream: TextIO, initial: int, label: str) -> _Bar | None:
    """A tqdm bar on *stream*, or ``None`` if tqdm (the ``cli`` extra) is missing."""
    try:
        import importlib

        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        width = 0
    # A terminal that tells no width (some pseudo-terminals) gets a fixed one.
    sizing = {"dynamic_ncols": True} if width > 0 else {"ncols": 100, "nrows": 20}
    bar: _Bar = tqdm(
        total=None,
        initial=initial,
        unit=" records",
        desc=label,
        file=stream,
        smoothing=0.1,
        **sizing,
    )
    return bar


class Progress:
    """Reports an export's progress on *stream* (standard error, normally).

    Args:
        mode: ``"bar"``: a progress bar (tqdm) for a terminal, with the total and an ETA
            once known; ``"lines"``: one plain line every *interval* seconds, for logs;
            ``"none"``: nothing.
        stream: Where reports go.
        interval: Seconds between two lines in ``"lines"`` mode.
        label: What the reports start with.
        clock: Where time is read (default: the real clock).
    """

    def __init__(
        self,
        mode: Literal["bar", "lines", "none"],
        *,
        stream: TextIO,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        label: str = "export",
        clock: Clock | None = None,
    ) -> None:
        self.mode = mode
        self.stream = stream
        self.interval = interval
        self.label = label
        self.clock = MONOTONIC if clock is None else clock
        self.started = self.clock.now()
        self._last_line = self.started
        self._bar: _Bar | None = None

    def start(self, records: int) -> None:
        """Begin, with *records* already in the output."""
        self.started = self._last_line = self.clock.now()
        if self.mode == "bar":
            self._bar = _make_bar(self.stream, records, self.label)
            if self._bar is None:
                self.mode = "lines"

    def update(
        self, *, records: int, total: int | None, pages: int, statistics: StatisticsLike
    ) -> None:
        """Report *records* in the output after *pages* pages in this run."""
        now = self.clock.now()
        elapsed = max(now - self.started, 1e-9)
        if self._bar is not None:
            bar = self._bar
            if total is not None and bar.total != total:
                bar.total = total
            bar.set_postfix_str(
                f"{_plural(pages, 'page')}, {statistics.requests / elapsed:.1f} req/s, "
                f"{statistics.throttled} throttled",
                refresh=False,
            )
            bar.update(records - bar.n)
        elif self.mode == "lines" and now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(self._line(records, total, pages, statistics, elapsed) + "\n")
            self.stream.flush()

    def _line(
        self,
        records: int,
        total: int | None,
        pages: int,
        statistics: StatisticsLike,
        elapsed: float,
    ) -> str:
        done = f"{records}/{total} records ({100 * records / total:.0f}%)" if total else None
        return (
            f"{self.label}: {done or _plural(records, 'record')}, {_plural(pages, 'page')}, "
            f"{statistics.requests / elapsed:.1f} req/s, {statistics.throttled} throttled (429), "
            f"{_plural(statistics.retries, 'retry', 'retries')}, "
            f"{elapsed:.0f} s"
        )

    def close(self) -> None:
        """End the report (the bar stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@attrs.frozen(kw_only=True)
class ExportResult:
    """What an export did in this run.

    Attributes:
        path: The output.
        records: How many records the output holds.
        new: How many of them this run added.
        pages: Pages written in this run.
        requests: Requests sent in this run (retries included).
        throttled: Responses that were 429.
        retries: Requests retried.
        elapsed: Seconds the run took.
        complete: Whether the export is complete.
    """

    path: Path
    records: int
    new: int
    pages: int
    requests: int
    throttled: int
    retries: int
    elapsed: float
    complete: bool

    def summary(self) -> str:
        """One line for people: records, pages, requests, 429s, retries, time, rate."""
        rate = self.requests / self.elapsed if self.elapsed > 0 else math.nan
        retries = _plural(self.retries, "retry", "retries")
        return (
            f"exported {_plural(self.records, 'record')} to {self.path} ({self.new} new in this "
            f"run) in {self.elapsed:.1f} s: {_plural(self.pages, 'page')}, "
            f"{_plural(self.requests, 'request')} ({rate:.1f}/s), "
            f"{self.throttled} throttled (429), {retries}"
        )


def run_export(  # noqa: PLR0913 - the parts of an export, all keyword-only
    *,
    writer: Writer,
    checkpoint: Checkpoint,
    pages: Callable[[int], Iterator[PageLike]],
    next_position: Callable[[PageLike], int],
    statistics: Callable[[], StatisticsLike],
    total: Callable[[], int | None] | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> ExportResult:
    """Write every page from *checkpoint* on, checkpointing after each, then finish.

    Args:
        writer: The opened writer.
        checkpoint: What `Writer.open` returned.
        pages: Gives the pages in order, starting at a position.
        next_position: The position after a page.
        statistics: The client's statistics (requests, 429s, retries), read for reports.
        total: The listing's total once known, if the pages do not carry it.
        progress: Where progress goes (``None``: nowhere).
        clock: Where time is read (default: the real clock).

    Returns:
        What the run did.  A `KeyboardInterrupt` (Ctrl-C, or SIGTERM turned into one)
        propagates after the last whole page is kept.
    """
    clock = MONOTONIC if clock is None else clock
    started = clock.now()
    before = statistics()
    written = 0
    page_count = 0
    known_total = checkpoint.total
    if progress is not None:
        progress.start(writer.count)
    iterator = pages(checkpoint.next_position)
    try:
        for page in iterator:
            if page.total is not None:
                known_total = page.total
            elif total is not None:
                known_total = total() or known_total
            written += writer.write_page(
                page.records, next_position=next_position(page), total=known_total
            )
            page_count += 1
            if progress is not None:
                progress.update(
                    records=writer.count,
                    total=known_total,
                    pages=page_count,
                    statistics=_since(before, statistics()),
                )
        writer.finish()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        if progress is not None:
            progress.close()
    after = _since(before, statistics())
    return ExportResult(
        path=writer.path,
        records=writer.count,
        new=written,
        pages=page_count,
        requests=after.requests,
        throttled=after.throttled,
        retries=after.retries,
        elapsed=clock.now() - started,
        complete=True,
    )


@attrs.frozen
class _Counts:
    requests: int
    throttled: int
    retries: int


def _since(before: StatisticsLike, after: StatisticsLike) -> _Counts:
    return _Counts(
        requests=after.requests - before.requests,
        throttled=after.throttled - before.throttled,
        retries=after.retries - before.retries,
    )


def position_after(api: Literal["contacts", "interactions"]) -> Callable[[PageLike], int]:
    """How the listing continues after a page.

    Contacts are paged by offset (``skip``): the next page starts after this page's
    records.  Interactions are paged by number: the next page is the next number.
    """
    if api == "contacts":
        return lambda page: page.position + len(page.records)
    return lambda page: page.position + 1

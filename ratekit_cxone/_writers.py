"""Resumable writers: where an export's records go, with its checkpoints.

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

A finished export is marked complete; running it again reports that and changes nothing,
unless the caller goes on with `Writer.restart`: the listing walked again in the same
output (the next window of an incremental export, or the same window when the count does
not match the API's), the records already there kept and never written twice.

An output is written by one export at a time: it is locked (an advisory lock, where the
system has one) before anything in it is read.  An export that fails before its first
page removes the files it created, and only those, while it still holds the lock.  An
output that cannot be written (a full disk, a file size limit, a read-only file, a path
that is a directory or in a missing directory) is an `OutputError` naming it; what was
kept stays, and the same export resumes once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from ratekit import RateKitError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from typing_extensions import Self

#: The version of the checkpoint format (the state file, the ``export_state`` row).
#: Version 1, the same without a window, is still read.
STATE_VERSION = 2

#: Output suffixes, by format.
JSONL_SUFFIXES = (".jsonl",)
SQLITE_SUFFIXES = (".sqlite", ".db")

#: A JSON scalar: what export parameters are made of.
Scalar = str | int | float | bool | None

#: How far reading backwards goes at once when looking for the last newline.
_CHUNK = 1 << 16

#: The checkpoint versions that can be read.
_READABLE_VERSIONS = (1, STATE_VERSION)

#: How many times claiming an output starts over when the file is replaced meanwhile.
_CLAIM_ATTEMPTS = 8

#: Binary mode, where the system has a text mode (Windows).
_O_BINARY: int = getattr(os, "O_BINARY", 0)

#: Whether outputs can be locked (``flock``; not on Windows).
_CAN_LOCK = importlib.util.find_spec("fcntl") is not None


#: How messages name the choice of output: the parameter of `open_writer`.
_PATH_PARAMETER = "path"

#: How messages say that the export resumes, in the terms of the Python API.
_OPEN_AGAIN = "open the same export again to resume"


class OutputError(RateKitError, ValueError):
    """The output cannot take this export.

    It is a file that no export wrote, an unfinished export of other parameters, or a
    file that cannot be read or written.  The message names the path and what to do, in
    the terms of the Python API (the *path* given to `open_writer`); `phrased` says the
    same in the terms of a front end that names the output otherwise.

    Args:
        message: What the error says.
        template: The message as a template of *values* and of the terms of `phrased`,
            ``{option}``, ``{output}`` and ``{again}`` (``None``: a message without them).
        values: What *template* holds besides the terms; ``path`` is the output.
    """

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        values: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self._template = template
        self._values = dict(values or {})

    def phrased(self, *, option: str, again: str) -> str:
        """The message with the output named by *option*, and *again* as how to resume.

        Args:
            option: What names the output in the front end (a command's option, say):
                the message then says ``cannot write OPTION PATH`` and ``choose another
                OPTION`` where it says ``cannot write PATH`` and ``choose another path``.
            again: How to resume once the cause is fixed, such as ``"run the same command
                again to resume"``.

        Returns:
            The message; as it is, if it was made without the terms.
        """
        if self._template is None:
            return str(self)
        return _phrase(self._template, self._values, option=option, again=again)


def _phrase(template: str, values: Mapping[str, object], *, option: str | None, again: str) -> str:
    """*template* with *values* and the terms (``None``: the Python API's)."""
    output = values.get("path") if option is None else f"{option} {values.get('path')}"
    return template.format(option=option or _PATH_PARAMETER, output=output, again=again, **values)


def _output_error(template: str, **values: object) -> OutputError:
    """An `OutputError` worded from *template* (see `OutputError`) in the Python API's terms."""
    message = _phrase(template, values, option=None, again=_OPEN_AGAIN)
    return OutputError(message, template=template, values=values)


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
    raise _output_error(
        "{option} must end in .jsonl (JSON Lines) or .sqlite/.db (SQLite), got {path!r}",
        path=os.fspath(path),
    )


def state_path(path: str | os.PathLike[str]) -> Path:
    """The state file that records the progress of a JSON Lines export to *path*."""
    path = Path(path)
    return path.with_name(path.name + ".state")


def _check_window(
    _instance: object, attribute: attrs.Attribute[tuple[str, str] | None], value: object
) -> None:
    """Accept ``None`` or a ``(start, end)`` pair of strings (an attrs validator)."""
    if value is None or (
        isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)
    ):
        return
    raise TypeError(
        f"{attribute.name} must be None or a (start, end) pair of strings, got {value!r}"
    )


def _window_of(data: object) -> tuple[str, str] | None:
    """The window stored as JSON (``[start, end]``, ``[start, end, base]`` or ``null``).

    Raises:
        ValueError: If it is none of them.
    """
    if data is None:
        return None
    if isinstance(data, list) and len(data) in {2, 3} and all(isinstance(v, str) for v in data[:2]):
        return (data[0], data[1])
    raise ValueError("not a window")


def _base_of(data: object) -> int:
    """The count of records before the window, stored third in SQLite's ``window``."""
    if isinstance(data, list) and len(data) == 3 and isinstance(data[2], int):
        return data[2]
    return 0


@attrs.frozen(kw_only=True)
class Checkpoint:
    """How far an export got.

    Attributes:
        parameters: What identifies the export (API, source, dates, page size).
        next_position: Where the listing continues: the next page's position.
        count: How many records the output holds.
        total: The listing's total, when the API told it.
        complete: Whether the export finished.
        window: The start and end of the window this walk of the listing covers, as ISO
            8601 UTC text such as ``"2026-01-01T00:00:00Z"``; ``None`` for a listing
            walked without one.  Set by `Writer.restart`.
        base: How many records the output held when this walk began (before the
            window, in an incremental export): ``count - base`` are this walk's.
    """

    parameters: Mapping[str, Scalar]
    next_position: int
    count: int
    total: int | None = None
    complete: bool = False
    window: tuple[str, str] | None = attrs.field(default=None, validator=_check_window)
    base: int = 0


class _RecordLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def raw(self) -> Mapping[str, object]: ...


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


def _write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd* (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_atomically(path: Path, data: bytes) -> None:
    """Write *data* to *path* so that a reader sees the old content or the new, never half.

    The data goes to ``PATH.tmp`` first, is synced to disk, then renamed over *path*; if
    that fails, the temporary file is removed and *path* is left as it was.

    Raises:
        OSError: If the data cannot be written.
    """
    temporary = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _reason(error: OSError | sqlite3.Error) -> str:
    """What failed, in the system's words (``No space left on device``)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _cannot_write(
    path: Path, error: OSError | sqlite3.Error, *, file: Path | None = None
) -> OutputError:
    """The error for an output that cannot be written: the path, the cause, what to do.

    Args:
        path: The output (the *path* of `open_writer`).
        error: The cause.
        file: The file that failed, when it is not the output itself (its state file).
    """
    where = "{output}" if file is None else "{file} (the progress of {output})"
    return _output_error(
        "cannot write " + where + ": {reason}; once that is fixed, {again}",
        path=path,
        file=file,
        reason=_reason(error),
    )


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
    return _output_error(
        "{path} holds an export with other parameters ({difference}); choose another "
        "{option}, or delete {others} to start again",
        path=path,
        difference=difference,
        others=others,
    )


class Writer:
    """Where an export's records go, with its checkpoints; see `JsonlWriter`, `SqliteWriter`.

    Use it as a context manager: `open` returns the checkpoint to continue from,
    `write_page` adds a page's records and moves the checkpoint, `finish` marks the
    export complete, `restart` walks the listing again.  Leaving the ``with`` block by an
    exception is abandoning the export (see `abandon`).

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
        #: Files that `open` created (not there before), listed only while the output is
        #: locked, and whether a page was kept since.
        self._created: list[Path] = []
        self._kept = False
        self._checkpoint: Checkpoint | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def open(self) -> Checkpoint:
        """Claim the output and return the checkpoint to continue from.

        The output is locked first, and only then read, created or repaired.  If this
        fails, the files it created are removed again.

        Raises:
            OutputError: If another export holds the output, or it holds something else,
                or an export of other parameters, or it cannot be written.
        """
        raise NotImplementedError

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Add the records not already there, then checkpoint at *next_position*.

        If this fails, the checkpoint stays where it was, so a resume fetches the page
        again; records of it that got in are not written twice.

        Returns:
            How many records were new.

        Raises:
            OutputError: If the output cannot be written (a full disk, say).
            RuntimeError: Before `open`, or once the export is complete (see `restart`).
        """
        raise NotImplementedError

    def finish(self) -> None:
        """Mark the export complete.

        Raises:
            OutputError: If the output cannot be written.
        """
        raise NotImplementedError

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint as it stands (``None`` before `open`)."""
        return self._checkpoint

    def _page_from(self, output: object) -> Checkpoint:
        """The checkpoint that `write_page` moves on from (*output*: what `open` opened).

        Raises:
            RuntimeError: Before `open`, or once the export is complete.
        """
        if output is None or self._checkpoint is None:
            raise RuntimeError("write_page() needs open() first")
        if self._checkpoint.complete:
            raise RuntimeError("write_page() on a complete export needs restart() first")
        return self._checkpoint

    def _restarted(
        self, next_position: int, window: tuple[str, str] | None, base: int | None
    ) -> Checkpoint:
        """The checkpoint of `restart` (which checked that the writer is open)."""
        assert self._checkpoint is not None  # noqa: S101 - checked by the caller
        return Checkpoint(
            parameters=self._checkpoint.parameters,
            next_position=next_position,
            count=self.count,
            window=window,
            base=self.count if base is None else base,
        )

    def restart(
        self, *, next_position: int, window: tuple[str, str] | None, base: int | None = None
    ) -> Checkpoint:
        """Walk the listing again in this output, from *next_position*, over *window*.

        For the next window of an incremental export once one is complete, or to walk a
        window again when the final count does not match the API's.  The records already
        there stay, and one seen again is not written twice; `count` goes on from them.
        The new checkpoint (no total, not complete) replaces the old one atomically, so
        an interrupted walk resumes at its own position and window.

        Args:
            next_position: Where the walk starts (normally the initial position).
            window: The start and end of the window it covers, as ISO 8601 UTC text
                (``"2026-01-01T00:00:00Z"``), or ``None``.
            base: The records of the output that came before this walk's (`Checkpoint.base`);
                ``None``: all those there now (a new window).  A window walked again
                keeps its own.

        Returns:
            The checkpoint to pass to `run_export`.

        Raises:
            OutputError: If the output cannot be written.
            RuntimeError: Before `open`.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the output (what was written stays)."""
        raise NotImplementedError

    def keys(self) -> list[str]:
        """Every record id in the output, in storage order (duplicates kept, for checks)."""
        raise NotImplementedError

    def _close_data(self) -> None:
        """Close what is open on the output apart from its lock."""

    def abandon(self) -> None:
        """Remove the files `open` created if no page was kept since, then close.

        For an export that failed before its first page (rejected credentials, say), so
        that it leaves nothing behind to refuse another export to the same path.  The
        files are removed while the lock is still held, so never once another export may
        have claimed them: after `close`, or after an `open` that did not get the lock,
        nothing is removed.
        """
        doomed = [] if self._kept else self._created
        self._created = []
        try:
            if doomed and _CAN_LOCK:
                self._close_data()
            elif doomed:  # pragma: no cover - Windows: no lock to hold, and open files stay
                self.close()
            for path in doomed:
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            self.close()


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
        #: The output, open for appending and locked, between `open` and `close`.
        self._fd: int | None = None
        self._checkpoint: Checkpoint | None = None
        #: Whether `_seen` and `count` hold the file's ids (not read for a complete export).
        self._scanned = False

    def _read_state(self) -> Checkpoint | None:
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise OutputError(f"cannot read {self.state_path}: {error}") from None
        try:
            data = json.loads(text)
            if data.get("version") not in _READABLE_VERSIONS:
                raise ValueError("unknown version")  # noqa: TRY301 - one message for all
            return Checkpoint(
                parameters=data["parameters"],
                next_position=int(data["next_position"]),
                count=int(data["count"]),
                total=data.get("total"),
                complete=bool(data.get("complete", False)),
                window=_window_of(data.get("window")),
                base=int(data.get("base", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _output_error(
                "{state} is not an export state file; delete it and "
                "{path} to start again, or choose another {option}",
                path=self.path,
                state=self.state_path,
            ) from None

    def _write_state(self, checkpoint: Checkpoint) -> None:
        data = {
            "version": STATE_VERSION,
            "parameters": dict(checkpoint.parameters),
            "next_position": checkpoint.next_position,
            "count": checkpoint.count,
            "total": checkpoint.total,
            "complete": checkpoint.complete,
            "window": None if checkpoint.window is None else list(checkpoint.window),
            "base": checkpoint.base,
        }
        try:
            replace_atomically(self.state_path, (json.dumps(data, indent=1) + "\n").encode())
        except OSError as error:
            raise _cannot_write(self.path, error, file=self.state_path) from None
        self._checkpoint = checkpoint

    def open(self) -> Checkpoint:
        """Claim the output (see `Writer.open`); repair a torn last line."""
        try:
            self._fd, created = _claim(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            raise _cannot_write(self.path, error) from None
        if created:
            self._created.append(self.path)
        try:
            return self._start(exists=not created)
        except OSError as error:
            self.abandon()
            raise _cannot_write(self.path, error) from None
        except BaseException:
            self.abandon()
            raise

    def _start(self, *, exists: bool) -> Checkpoint:
        """The rest of `open`, once the output is locked."""
        assert self._fd is not None  # noqa: S101 - set by open()
        stored = self._read_state()
        others = f"{self.path} and {self.state_path}"
        if stored is not None and stored.parameters != self.parameters:
            raise _mismatch(self.path, others, stored.parameters, self.parameters)
        if stored is None and exists and os.fstat(self._fd).st_size > 0:
            raise _output_error(
                "{path} exists and is not an unfinished export (there is no "
                "{name}); choose another {option}, or delete it",
                path=self.path,
                name=self.state_path.name,
            )
        if stored is not None and stored.complete and exists:
            # Left as it is; `restart` reads the ids in if the export goes on.
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
        if stored is None:
            self._created.append(self.state_path)
        self._read_ids()
        checkpoint = attrs.evolve(checkpoint, count=self.count, complete=False)
        self._write_state(checkpoint)
        return checkpoint

    def _read_ids(self) -> None:
        """Cut a torn last line off, then collect the ids of the records in the file."""
        _repair_tail(self.path)
        self._seen.clear()
        self.count = 0
        self._scan()
        self._scanned = True

    def _scan(self) -> None:
        """Collect the ids of the records in the file (whose last line is whole)."""
        with self.path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                try:
                    raw = json.loads(line)
                    key = self.key_of(raw)
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise _output_error(
                        "line {number} of {path} is not a record of this export; the "
                        "file was changed by something else: choose another {option}, or "
                        "delete {path} and {state}",
                        path=self.path,
                        number=number,
                        state=self.state_path,
                    ) from None
                self._seen.add(key)
                self.count += 1

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Append the new records, sync them to disk, then replace the state file."""
        checkpoint = self._page_from(self._fd)
        new: set[str] = set()
        lines = []
        for record in records:
            key = record.key
            if key in self._seen or key in new:
                continue
            new.add(key)
            lines.append(record_json(record.raw) + "\n")
        if lines:
            self._append("".join(lines).encode("utf-8"))
        self._seen |= new
        self.count += len(lines)
        self._kept = True
        self._write_state(
            attrs.evolve(
                checkpoint,
                next_position=next_position,
                count=self.count,
                total=total if total is not None else checkpoint.total,
            )
        )
        return len(lines)

    def _append(self, data: bytes) -> None:
        """Append *data* and sync it; if that fails, cut the file back to what it was."""
        fd = self._fd
        assert fd is not None  # noqa: S101 - checked by write_page()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException as error:
            # Whole lines only, and only ids that `_seen` holds; should the cut fail too, a
            # resume cuts the torn line and skips the ids already there.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            if isinstance(error, OSError):
                raise _cannot_write(self.path, error) from None
            raise

    def finish(self) -> None:
        """Mark the export complete in the state file."""
        if self._fd is None or self._checkpoint is None:
            raise RuntimeError("finish() needs open() first")
        self._kept = True
        self._write_state(attrs.evolve(self._checkpoint, count=self.count, complete=True))

    def restart(
        self, *, next_position: int, window: tuple[str, str] | None, base: int | None = None
    ) -> Checkpoint:
        """Replace the state file with a checkpoint that walks the listing again."""
        if self._fd is None or self._checkpoint is None:
            raise RuntimeError("restart() needs open() first")
        if not self._scanned:
            try:
                self._read_ids()
            except OSError as error:
                raise _cannot_write(self.path, error) from None
        checkpoint = self._restarted(next_position, window, base)
        self._write_state(checkpoint)
        return checkpoint

    def close(self) -> None:
        """Close the output file, which releases the lock."""
        self._created = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def keys(self) -> list[str]:
        """Every record id in the file, in order."""
        with self.path.open("rb") as file:
            return [self.key_of(json.loads(line)) for line in file]


def _lock(fd: int, path: Path) -> None:
    """Hold an exclusive lock on *fd* while it is open: one export per output at once.

    An advisory ``flock``, released by the system when the process ends, however it
    ends.  Where there is none (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _output_error(
            "{path} is being written by another export; wait for it to end, or choose "
            "another {option}",
            path=path,
        ) from None


def _same_file(fd: int, path: Path) -> bool:
    """Whether *path* still names the file open as *fd*."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _claim(path: Path, flags: int) -> tuple[int, bool]:
    """Open *path* with *flags*, creating it if it is missing, and lock it (see `_lock`).

    Whether the file was created is decided by the system (``O_CREAT | O_EXCL`` succeeds
    for one caller only), so two exports started at once never both believe they
    created it, and the one that did not get the lock never removes it.

    Returns:
        The locked descriptor, and whether this call created the file.

    Raises:
        OSError: If the file cannot be opened or created.
        OutputError: If another export holds it.
    """
    for _ in range(_CLAIM_ATTEMPTS):
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
            created = True
        except FileExistsError:
            try:
                fd = os.open(path, flags | _O_BINARY)
            except FileNotFoundError:
                if os.path.lexists(path):  # a link to nowhere
                    raise
                continue  # removed in between: create it after all
            created = False
        try:
            _lock(fd, path)
            # The export that held the lock may have removed the file before letting go
            # (`Writer.abandon`): then this descriptor holds a file without a name.
            if _same_file(fd, path):
                return fd, created
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise _output_error(
        "{path} was removed and created again by something else while this export "
        "claimed it; try again, or choose another {option}",
        path=path,
    )


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
    complete INTEGER NOT NULL,
    "window" TEXT
);
"""

#: SQLite's primary result codes for a database that cannot be written or reached
#: (https://www.sqlite.org/rescode.html): PERM, BUSY, LOCKED, READONLY, IOERR, FULL,
#: CANTOPEN.
_SQLITE_WRITE_FAILURES = frozenset({3, 5, 6, 8, 10, 13, 14})


def _write_failure(error: sqlite3.Error) -> bool:
    """Whether *error* says that the database cannot be written, rather than what it holds."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # pragma: no cover - Python 3.10 tells no result code
        return isinstance(error, sqlite3.OperationalError)
    return code & 0xFF in _SQLITE_WRITE_FAILURES


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
        #: The database file, open and locked, between `open` and `close`.
        self._lock_fd: int | None = None
        self._checkpoint: Checkpoint | None = None
        #: Whether ``export_state`` is known to have its ``window`` column (version 1 lacks it).
        self._window_column = False

    def _foreign(self) -> OutputError:
        return _output_error(
            "{path} exists and is not an export database; choose another {option}, or delete it",
            path=self.path,
        )

    def open(self) -> Checkpoint:
        """Claim the database (see `Writer.open`)."""
        try:
            # Locked before SQLite opens it, so that SQLite never creates it unlocked.
            self._lock_fd, created = _claim(self.path, os.O_RDWR)
        except OSError as error:
            raise _cannot_write(self.path, error) from None
        if created:
            self._created.append(self.path)
        fresh = True
        try:
            fresh = os.fstat(self._lock_fd).st_size == 0
            # Transactions are explicit (BEGIN ... COMMIT), one per page.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            if fresh:
                self._db.executescript(f"BEGIN;{_SCHEMA}COMMIT;")
            return self._load(fresh=fresh)
        except OSError as error:
            self.abandon()
            raise _cannot_write(self.path, error) from None
        except sqlite3.Error as error:
            self.abandon()
            if fresh or _write_failure(error):
                raise _cannot_write(self.path, error) from None
            raise self._foreign() from None
        except BaseException:
            self.abandon()
            raise

    def _load(self, *, fresh: bool) -> Checkpoint:
        db = self._db
        assert db is not None  # noqa: S101 - set by open()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not {"records", "export_state"} <= tables:
            raise self._foreign()
        columns = {row[1] for row in db.execute("PRAGMA table_info(export_state)")}
        self._window_column = "window" in columns
        row = db.execute(
            'SELECT version, parameters, next_position, count, total, complete, "window" '
            "FROM export_state WHERE id = 1"
            if self._window_column
            else "SELECT version, parameters, next_position, count, total, complete, NULL "
            "FROM export_state WHERE id = 1"
        ).fetchone()
        if row is None:
            if not fresh and db.execute("SELECT 1 FROM records LIMIT 1").fetchone():
                raise self._foreign()
            checkpoint = Checkpoint(
                parameters=self.parameters, next_position=self.initial_position, count=0
            )
            with self._transaction():
                self._save(checkpoint)
            self._checkpoint = checkpoint
            return checkpoint
        version, parameters, next_position, count, total, complete, window = row
        try:
            stored = json.loads(parameters)
            stored_window = None if window is None else _window_of(json.loads(window))
            base = 0 if window is None else _base_of(json.loads(window))
        except (ValueError, TypeError):
            raise self._foreign() from None
        if version not in _READABLE_VERSIONS or not isinstance(stored, dict):
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
            window=stored_window,
            base=base,
        )
        return self._checkpoint

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction, rolled back on failure; a write that fails is an `OutputError`."""
        db = self._db
        assert db is not None  # noqa: S101 - set by open()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as error:
            self._window_column = False  # the transaction may have added it: look again
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error) and _write_failure(error):
                raise _cannot_write(self.path, error) from None
            raise

    def _save(self, checkpoint: Checkpoint) -> None:
        db = self._db
        assert db is not None  # noqa: S101 - set by open()
        if not self._window_column:
            columns = {row[1] for row in db.execute("PRAGMA table_info(export_state)")}
            if "window" not in columns:
                # A database of version 1: the column comes with this checkpoint.
                db.execute('ALTER TABLE export_state ADD COLUMN "window" TEXT')
            self._window_column = True
        db.execute(
            "INSERT INTO export_state (id, version, parameters, next_position, count, total, "
            'complete, "window") VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET '
            "version = excluded.version, parameters = excluded.parameters, "
            "next_position = excluded.next_position, count = excluded.count, "
            'total = excluded.total, complete = excluded.complete, "window" = excluded."window"',
            (
                STATE_VERSION,
                json.dumps(dict(checkpoint.parameters)),
                checkpoint.next_position,
                checkpoint.count,
                checkpoint.total,
                int(checkpoint.complete),
                None
                if checkpoint.window is None
                else json.dumps([*checkpoint.window, checkpoint.base]),
            ),
        )

    def write_page(
        self, records: Iterable[_RecordLike], *, next_position: int, total: int | None
    ) -> int:
        """Upsert the page's records and move the checkpoint, in one transaction."""
        current = self._page_from(self._db)
        rows = [(record.key, record_json(record.raw)) for record in records]
        with self._transaction() as db:
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
                current,
                next_position=next_position,
                count=self.count + new,
                total=total if total is not None else current.total,
            )
            self._save(checkpoint)
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
        with self._transaction():
            self._save(checkpoint)
        self._checkpoint = checkpoint

    def restart(
        self, *, next_position: int, window: tuple[str, str] | None, base: int | None = None
    ) -> Checkpoint:
        """Replace the checkpoint with one that walks the listing again, in one transaction."""
        if self._db is None or self._checkpoint is None:
            raise RuntimeError("restart() needs open() first")
        checkpoint = self._restarted(next_position, window, base)
        with self._transaction():
            self._save(checkpoint)
        self._checkpoint = checkpoint
        return checkpoint

    def _close_data(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        """Close the database, then release the lock."""
        self._created = []
        self._close_data()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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

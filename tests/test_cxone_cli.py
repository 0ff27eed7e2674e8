"""The ratekit-cxone command, end to end against the simulator: exactly once, resume, exits."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import runpy
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ratekit_cxone import _cli, _writers
from ratekit_cxone._cli import _paused, main
from ratekit_cxone.simulator import Simulator

FIRST = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)
START = "2026-01-01T00:00:00Z"
END = "2026-02-01T00:00:00Z"
WINDOW = ["--start", START, "--end", END]
SECRETS = ("sim-client-secret", "sim-access-secret")
#: A client-side limit far above anything the tests' simulators allow: no waiting.
FAST = ["--rate", "1000/second"]


@pytest.fixture
def clean_env(monkeypatch):
    """No CXONE_* variable in the environment."""
    for name in list(os.environ):
        if name.startswith("CXONE_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def tenant(clean_env):
    """Start a simulator (records spread over January 2026) and point CXONE_* at it.

    ``tenant(api, env={...}, **settings)``: *env* overrides variables; every simulator
    is closed at the end.
    """
    started = []

    def start(api="contacts", *, env=None, **settings):
        simulator = Simulator(first_date=FIRST, span=SPAN, **settings).start()
        started.append(simulator)
        for name, value in {**simulator.env(api), **(env or {})}.items():
            clean_env.setenv(name, value)
        return simulator

    yield start
    for simulator in started:
        simulator.close()


def expected(simulator, api):
    """The raw records a whole export must hold, in API order."""
    if api == "contacts":
        return simulator.contacts(FIRST, datetime(2026, 2, 1, tzinfo=timezone.utc))
    return simulator.interactions()


def stored(path):
    """The raw records in an output, in the order they were written."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    db = sqlite3.connect(path)
    try:
        return [
            json.loads(row[0]) for row in db.execute("SELECT record FROM records ORDER BY rowid")
        ]
    finally:
        db.close()


def one_line(text):
    """The text is exactly one line; return it."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def closed_port():
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout=60.0):
    """Wait until *condition* holds, polling; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition never held")
        time.sleep(0.01)


def _interruptible() -> None:
    """In the child, before it runs: Ctrl-C's default, whatever the tests inherited.

    A shell without job control starts background commands with SIGINT ignored, and a
    Python started so keeps ignoring it (as a command run with ``&`` should); the
    tests of Ctrl-C need the interactive default, under which Python raises
    `KeyboardInterrupt`.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(*args):
    """Run the command in a child process; return it without waiting."""
    return subprocess.Popen(  # noqa: S603 - our own module, run with our own interpreter
        [sys.executable, "-m", "ratekit_cxone", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,  # noqa: PLW1509 - only signal.signal, before exec
    )


@pytest.mark.parametrize(
    "output", ["contacts.jsonl", "contacts.sqlite", "interactions.jsonl", "interactions.db"]
)
def test_every_record_once_through_429s_503s_drops_and_expiring_tokens(
    tenant, tmp_path, capsys, caplog, output
):
    """Under a 429 storm, 503s, dropped connections and short-lived tokens, all arrive once."""
    caplog.set_level(logging.DEBUG)
    api = output.split(".")[0]
    simulator = tenant(
        api,
        records=400,
        seed=3,
        rate="20/second",
        retry_after="fraction",
        token_ttl=0.5,
        fault_rate=0.1,
        fault_retry_after=0.05,
        drop_rate=0.05,
    )
    out = tmp_path / output
    window = WINDOW if api == "contacts" else []
    # A client-side rate far above the server's: a storm of 429s.
    fast = ["--rate", "200/second", "--burst", "10", "--retries", "10"]
    code = main(["export", "--api", api, "--out", str(out), *window, "--page-size", "10", *fast])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert stored(out) == expected(simulator, api)
    served = simulator.statistics()
    assert served.throttled > 0
    assert served.faults > 0
    assert served.drops > 0
    assert served.tokens_issued >= 2
    assert served.errors == 0
    assert captured.out == ""
    assert f"exported 400 records to {out}" in captured.err.splitlines()[-1]
    shown = captured.out + captured.err + caplog.text
    seen = " ".join(target for _, target in simulator.seen)
    for secret in SECRETS:
        assert secret not in shown
        assert secret not in seen
    assert served.credentials_in_url == 0


def test_resume_after_sigkill_mid_export(tenant, tmp_path, capsys):
    """Killed with SIGKILL mid-way, the same command continues and each record is kept once."""
    simulator = tenant(records=600, seed=1)
    out = tmp_path / "contacts.jsonl"
    state = tmp_path / "contacts.jsonl.state"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"]
    # 60 requests at 25 a second: the export takes over two seconds.
    child = run(*args, "--rate", "25/second", "--burst", "1")
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0)
        child.send_signal(signal.SIGKILL)
    finally:
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    before = json.loads(state.read_text())
    assert not before["complete"]
    assert before["count"] < 600
    assert main([*args, *FAST]) == 0
    assert capsys.readouterr().err == ""  # --quiet
    assert stored(out) == expected(simulator, "contacts")
    assert json.loads(state.read_text())["complete"]


def test_sigterm_stops_cleanly_with_130_then_resume_completes(tenant, tmp_path, capsys):
    """SIGTERM acts as Ctrl-C: exit 130, one line on how to resume; the rerun completes."""
    simulator = tenant(records=600, seed=2)
    out = tmp_path / "contacts.sqlite"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"]
    child = run(*args, "--rate", "25/second", "--burst", "1")

    def some_written():
        if not out.exists():
            return False
        db = sqlite3.connect(out)
        try:
            return db.execute("SELECT count(*) FROM records").fetchone()[0] > 0
        except sqlite3.OperationalError:  # the tables are not made yet
            return False
        finally:
            db.close()

    try:
        wait_for(some_written)
        child.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 130
    assert stdout == ""
    line = one_line(stderr)
    assert line.startswith("ratekit-cxone: interrupted: ")
    assert "run the same command again to resume" in line
    kept = len(stored(out))
    assert 0 < kept < 600
    assert main([*args, *FAST]) == 0
    assert stored(out) == expected(simulator, "contacts")
    assert main([a for a in args if a != "--quiet"]) == 0
    assert "already holds this complete export (600 records)" in capsys.readouterr().err


def test_missing_variables_exit_2_naming_them(clean_env, tmp_path, capsys):
    """Without configuration: exit 2, one line naming every missing variable; nothing written."""
    out = tmp_path / "out.jsonl"
    code = main(["export", "--out", str(out), *WINDOW])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith("ratekit-cxone: error: missing environment variables: ")
    for name in ("CXONE_ACCESS_KEY_ID", "CXONE_ACCESS_KEY_SECRET", "CXONE_CLIENT_ID"):
        assert name in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("api", "variable"),
    [
        ("contacts", "CXONE_CLIENT_SECRET"),
        ("contacts", "CXONE_ACCESS_KEY_SECRET"),
        ("interactions", "CXONE_CLIENT_SECRET"),
    ],
)
def test_wrong_credentials_exit_3_without_showing_them(tenant, tmp_path, capsys, api, variable):
    """Rejected credentials: exit 3, one line naming what to check, no secret shown."""
    wrong = "wrong-s3cret-value"
    simulator = tenant(api, env={variable: wrong}, records=10)
    window = WINDOW if api == "contacts" else []
    code = main(["export", "--api", api, "--out", str(tmp_path / "o.jsonl"), *window])
    captured = capsys.readouterr()
    assert code == 3
    line = one_line(captured.err)
    assert line.startswith("ratekit-cxone: error: authentication failed: ")
    assert variable in line
    for secret in (wrong, *SECRETS):
        assert secret not in captured.out + captured.err
        assert secret not in " ".join(target for _, target in simulator.seen)
    assert list(tmp_path.iterdir()) == []  # nothing left to block another export


def test_an_unreachable_host_exits_4(clean_env, tmp_path, capsys):
    """Nothing listening: exit 4 once the retries (here one) are spent, one line."""
    clean_env.setenv("CXONE_ISSUER", f"http://127.0.0.1:{closed_port()}")
    for name in ("CLIENT_ID", "CLIENT_SECRET", "ACCESS_KEY_ID", "ACCESS_KEY_SECRET"):
        clean_env.setenv(f"CXONE_{name}", f"some-{name.lower()}")
    out = tmp_path / "o.jsonl"
    code = main(["export", "--out", str(out), *WINDOW, "--retries", "1", "--timeout", "5"])
    captured = capsys.readouterr()
    assert code == 4
    line = one_line(captured.err)
    assert line.startswith("ratekit-cxone: error: the API failed: gave up after 2 attempts")
    assert "some-client_secret" not in line
    assert "127.0.0.1" in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--out", "o.jsonl", "--start", "2026-01-01T00:00:00", "--end", END], "--start"),
        (["--out", "o.jsonl", "--start", START, "--end", "2026-02-01"], "--end"),
        (["--out", "o.csv", *WINDOW], "--out"),
        (["--out", "o.jsonl", "--end", END], "--start"),
        (["--out", "o.jsonl", "--start", START, "--end", "2999-01-01T00:00:00Z"], "--end"),
        (["--api", "interactions", "--out", "o.jsonl", "--since-last"], "--since-last"),
        (["--out", "o.jsonl", *WINDOW, "--burst", "5"], "--burst"),
        (["--out", "o.jsonl", *WINDOW, "--rate", "fast"], "--rate"),
        (["--out", "o.jsonl", "--start", END, "--end", START], "--end"),
        (["--out", "o.jsonl", *WINDOW, "--page-size", "20000"], "--page-size"),
        (["--api", "interactions", "--out", "o.jsonl", *WINDOW], "--start"),
        (["--out", "o.jsonl", *WINDOW, "--concurrency", "0"], "--concurrency"),
        ([*WINDOW], "--out"),
    ],
)
def test_usage_errors_exit_2_naming_the_argument(monkeypatch, tmp_path, capsys, args, named):
    """A bad argument: exit 2 and one line that names it, before anything is touched."""
    monkeypatch.chdir(tmp_path)
    code = main(["export", *args])
    captured = capsys.readouterr()
    assert code == 2
    line = one_line(captured.err)
    assert line.startswith("ratekit-cxone: error: ")
    assert named in line
    assert list(tmp_path.iterdir()) == []


def test_another_export_to_the_same_output_is_refused(tenant, tmp_path, capsys):
    """An output holding an export of another window: exit 2, saying what to do."""
    tenant(records=30)
    out = tmp_path / "o.db"
    assert main(["export", "--out", str(out), *WINDOW, "--quiet"]) == 0
    capsys.readouterr()
    other = ["--start", "2026-01-02T00:00:00+01:00", "--end", END]
    assert main(["export", "--out", str(out), *other, "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "from 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z, not from " in line
    assert "2026-01-01T23:00:00Z" in line  # the other window, in UTC
    assert "choose another --out" in line
    assert len(stored(out)) == 30


def test_interactions_resume_by_page_number(tenant, tmp_path):
    """An interrupted interactions export resumes at the next page number."""
    simulator = tenant("interactions", records=95)
    out = tmp_path / "i.jsonl"
    args = ["export", "--api", "interactions", "--out", str(out), "--page-size", "10", "--quiet"]
    args += FAST
    assert main(args) == 0
    records = stored(out)
    # As if stopped after page 4: the first 40 records and the checkpoint for page 5.
    out.write_text("".join(json.dumps(record) + "\n" for record in records[:40]))
    state_file = tmp_path / "i.jsonl.state"
    state = json.loads(state_file.read_text())
    state.update(next_position=5, count=40, complete=False)
    state_file.write_text(json.dumps(state))
    before = len(simulator.seen)
    assert main(args) == 0
    assert stored(out) == expected(simulator, "interactions")
    pages = [target for _, target in simulator.seen[before:] if "interactions" in target]
    assert "pageNumber=5" in pages[0]
    assert not any("pageNumber=4" in target for target in pages)


def test_the_summary_goes_to_stderr(tenant, tmp_path, capsys):
    """Without a terminal, progress and the summary go to stderr; stdout stays empty."""
    tenant(records=60)
    out = tmp_path / "o.jsonl"
    assert main(["export", "--out", str(out), *WINDOW, "--page-size", "10", *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    summary = captured.err.splitlines()[-1]
    assert summary.startswith(f"exported 60 records to {out} (60 new in this run) in ")
    for part in ("6 pages", "requests (", "throttled (429)", "retr"):
        assert part in summary


def test_simulate_serves_until_sigterm_and_prints_the_variables(tmp_path, clean_env):
    """`simulate` prints its URL and export lines that work; SIGTERM stops it with exit 0."""
    child = run("simulate", "--records", "40", "--seed", "5")
    try:
        lines = [child.stdout.readline() for _ in range(12)]
        assert lines[0].startswith("CXone simulator listening on http://127.0.0.1:")
        exports = dict(
            line.removeprefix("export ").rstrip("\n").split("=", 1)
            for line in lines[lines.index(next(x for x in lines if "interactions" in x)) + 1 :]
            if line.startswith("export ")
        )
        assert exports["CXONE_SCOPES"] == "'ic:read analytics:read'"
        exports["CXONE_SCOPES"] = "ic:read analytics:read"
        for name, value in exports.items():
            clean_env.setenv(name, value)
        out = tmp_path / "i.jsonl"
        assert main(["export", "--api", "interactions", "--out", str(out), "--quiet"]) == 0
        assert len(stored(out)) == 40
        child.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0
    assert stdout == ""
    assert one_line(stderr).startswith("simulator stopped after ")


def test_demo_exports_and_checks(tmp_path, capsys, monkeypatch):
    """`demo` exports from a troubled simulator and checks every record is there once."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--records", "150", "--page-size", "25"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out
    assert "holds all 150 contacts, each exactly once" in out
    written = list(tmp_path.glob("ratekit-cxone-demo-*/contacts.jsonl"))
    assert len(written) == 1
    assert str(written[0]) in out
    assert len(stored(written[0])) == 150


@pytest.mark.parametrize(("cooled", "said"), [(0.0, ""), (0.05, ""), (4.84, ", paused 4.8 s")])
def test_the_summary_says_how_long_the_servers_retry_after_paused_the_run(cooled, said):
    """A pause of a tenth of a second or more is named, so the rate can be read."""
    text = _paused(cooled)
    assert text == (f"{said} by the server's Retry-After" if said else "")


def test_demo_refuses_an_existing_output(tmp_path, capsys):
    """`demo --out` must name a new file."""
    out = tmp_path / "d.sqlite"
    out.write_text("")
    assert main(["demo", "--records", "10", "--out", str(out)]) == 2
    assert "--out" in one_line(capsys.readouterr().err)


def test_version_and_help(capsys):
    """--version prints the version; each command has a --help."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ratekit-cxone {_cli._version()}"
    assert main(["export", "--help"]) == 0
    text = capsys.readouterr().out
    for part in ("CXONE_ACCESS_KEY_ID", "CXONE_TENANT_URL", "exit codes", "resum", "--out"):
        assert part in text
    for command in ("simulate", "demo"):
        assert main([command, "--help"]) == 0
        assert f"usage: ratekit-cxone {command}" in capsys.readouterr().out


def test_python_dash_m_runs_the_command(tmp_path):
    """`python -m ratekit_cxone` is the command: usage errors exit 2 with one line."""
    child = run("export", "--out", str(tmp_path / "x.txt"), *WINDOW)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 2
    assert stdout == ""
    assert "--out" in one_line(stderr)


def test_an_api_error_exits_4(tenant, tmp_path, capsys):
    """An error status the retries cannot cure (404 for an unserved version): exit 4."""
    tenant(env={"CXONE_API_VERSION": "20"}, records=10)
    code = main(["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW])
    line = one_line(capsys.readouterr().err)
    assert code == 4
    assert line.startswith("ratekit-cxone: error: the API failed: GET http://127.0.0.1:")
    assert "404" in line


def interrupt_at_page(monkeypatch, page):
    """Ctrl-C while the JSON Lines writer writes page *page*; returns the real method."""
    original = _writers.JsonlWriter.write_page
    calls = []

    def interrupted(self, records, **kwargs):
        calls.append(1)
        if len(calls) == page:
            raise KeyboardInterrupt
        return original(self, records, **kwargs)

    monkeypatch.setattr(_writers.JsonlWriter, "write_page", interrupted)
    return original


def test_ctrl_c_keeps_whole_pages_and_the_rerun_completes(tenant, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the third page is written: exit 130, two pages kept, the rerun completes."""
    simulator = tenant(records=100)
    original = interrupt_at_page(monkeypatch, 3)
    out = tmp_path / "o.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet", *FAST]
    assert main(args) == 130
    line = one_line(capsys.readouterr().err)
    assert line == (
        f"ratekit-cxone: interrupted: 20 records kept in {out}; run the same command again "
        "to resume"
    )
    monkeypatch.setattr(_writers.JsonlWriter, "write_page", original)
    assert main(args) == 0
    assert stored(out) == expected(simulator, "contacts")


def test_ctrl_c_before_the_export_exits_130(clean_env, tmp_path, capsys, monkeypatch):
    """Interrupted before any page: exit 130 with one line, and nothing is left behind."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli.CXoneConfig, "from_env", interrupted)
    assert main(["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW]) == 130
    assert one_line(capsys.readouterr().err) == "ratekit-cxone: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_main_runs_outside_the_main_thread(clean_env, tmp_path):
    """Called from another thread (no signal handler can be set there), main still works."""
    codes = []
    thread = threading.Thread(
        target=lambda: codes.append(main(["export", "--out", str(tmp_path / "o.db"), *WINDOW]))
    )
    thread.start()
    thread.join(timeout=60)
    assert codes == [2]


def test_simulate_in_process_stops_on_sigterm(monkeypatch, capsys):
    """`simulate` serves until SIGTERM, then closes the server and exits 0."""
    printed = io.StringIO()
    monkeypatch.setattr(sys, "stdout", printed)
    ready = threading.Event()

    def stop():
        deadline = time.monotonic() + 60
        while "CXONE_SCOPES" not in printed.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        if "CXONE_SCOPES" in printed.getvalue():  # serving, under its SIGTERM handler
            ready.set()
            os.kill(os.getpid(), signal.SIGTERM)
        else:  # never got there: end it (and the test) as Ctrl-C would
            os.kill(os.getpid(), signal.SIGINT)

    stopper = threading.Thread(target=stop)
    stopper.start()
    try:
        code = main(["simulate", "--records", "5", "--rate", "5/second", "--fault-rate", "0.1"])
    finally:
        stopper.join(timeout=60)
    assert ready.is_set()
    assert code == 0
    url = printed.getvalue().splitlines()[0].split()[4]
    with pytest.raises(OSError):  # closed
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5).close()
    assert one_line(capsys.readouterr().err).startswith("simulator stopped after 0 requests")


def test_the_demo_check_can_fail(tmp_path, capsys, monkeypatch):
    """If the output missed a record the simulator holds, the demo says so and exits 1."""
    contacts = Simulator.contacts

    def one_more(self, *args, **kwargs):
        return [*contacts(self, *args, **kwargs), {"contactId": 1}]

    monkeypatch.setattr(Simulator, "contacts", one_more)
    out = tmp_path / "d.jsonl"
    assert main(["demo", "--records", "20", "--page-size", "20", "--out", str(out)]) == 1
    assert "check FAILED: 20 records written, 21 expected: 1 missing" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["export", "--out", "o.jsonl", *WINDOW, "--concurrency", "many"], "--concurrency"),
        (["export", "--out", "o.jsonl", *WINDOW, "--retries", "-1"], "--retries"),
        (["export", "--out", "o.jsonl", *WINDOW, "--retries", "x"], "--retries"),
        (["export", "--out", "o.jsonl", *WINDOW, "--timeout", "0"], "--timeout"),
        (["export", "--out", "o.jsonl", *WINDOW, "--timeout", "soon"], "--timeout"),
        (["simulate", "--fault-rate", "2"], "--fault-rate"),
        (["simulate", "--drop-rate", "x"], "--drop-rate"),
        (["simulate", "--port", "70000"], "--port"),
        (["simulate", "--rate", "fast"], "rate"),
        (["demo", "--page-size", "20000"], "--page-size"),
        (["demo", "--out", "d.csv"], "--out"),
        (["nope"], "COMMAND"),
        ([], "COMMAND"),
    ],
)
def test_more_usage_errors(monkeypatch, tmp_path, capsys, args, named):
    """Each bad value is refused with exit 2 and one line naming it."""
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("ratekit-cxone: error: ")
    assert named in line


def test_the_module_runs_main(monkeypatch, capsys):
    """`python -m ratekit_cxone` runs main with the process's arguments and exits with its code."""
    monkeypatch.setattr(sys, "argv", ["ratekit-cxone", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("ratekit_cxone", run_name="__main__")
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("ratekit-cxone ")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_workers_sleeping_on_a_long_retry_after_at_once(tenant, tmp_path, stop):
    """Workers waiting out a minute-long Retry-After: a signal exits 130 within 2 s."""
    simulator = tenant(records=400, rate="8/minute")
    out = tmp_path / "contacts.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"]
    child = run(*args)
    try:
        wait_for(lambda: simulator.statistics().throttled > 0)
        time.sleep(0.3)  # every worker is now in the cooldown, or behind it
        sent = simulator.statistics().requests
        signalled = time.monotonic()
        child.send_signal(stop)
        stdout, stderr = child.communicate(timeout=60)
        elapsed = time.monotonic() - signalled
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == 130
    assert elapsed < 2.0
    assert stdout == ""
    assert one_line(stderr).startswith("ratekit-cxone: interrupted: ")
    assert simulator.statistics().requests == sent  # nothing sent after the signal
    kept = len(stored(out))
    port = int(simulator.url.rsplit(":", 1)[1])
    simulator.close()
    fresh = tenant(records=400, port=port)  # the same tenant, without its limit
    assert main([*args, *FAST]) == 0
    assert stored(out) == expected(fresh, "contacts")
    assert kept < 400


def test_an_untrusted_certificate_exits_2_in_one_line(clean_env, tls_server, tmp_path, capsys):
    """An issuer whose certificate is not trusted: exit 2, one line, no traceback."""
    server, _authority = tls_server
    for name, value in {
        "CXONE_ISSUER": server.url,
        "CXONE_CLIENT_ID": "id",
        "CXONE_CLIENT_SECRET": "sim-client-secret",
        "CXONE_ACCESS_KEY_ID": "key",
        "CXONE_ACCESS_KEY_SECRET": "sim-access-secret",
    }.items():
        clean_env.setenv(name, value)
    code = main(["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW, "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("ratekit-cxone: error: GET https://127.0.0.1:")
    assert "certificate was refused" in line
    assert "sim-client-secret" not in line
    assert server.requests == []  # the handshake failed: nothing was sent
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "date", ["0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00"]
)
def test_dates_out_of_range_exit_2_before_any_request(clean_env, tmp_path, capsys, date):
    """A date past what the API or the conversions take: exit 2, one line, no traceback."""
    out = tmp_path / "o.jsonl"
    code = main(["export", "--out", str(out), "--start", date, "--end", END])
    line = one_line(capsys.readouterr().err)
    assert code == 2
    assert "out of range" in line
    assert "--start" in line
    assert list(tmp_path.iterdir()) == []


# --- completeness, reconciliation, incremental runs --------------------------------------


def test_a_record_missed_while_the_listing_moved_fails_the_run_and_the_rerun_fetches_it(
    tenant, tmp_path, capsys, monkeypatch
):
    """A contact listed before the walk's position is missed: exit 4, and the rerun adds it."""
    simulator = tenant(records=100, seed=4)
    original = _writers.JsonlWriter.write_page
    pages = []

    def write_page(self, records, **kwargs):
        pages.append(1)
        if len(pages) == 3:  # a late contact, listed before everything walked so far
            simulator.add_contacts(1, first=FIRST, span=timedelta(seconds=1))
        return original(self, records, **kwargs)

    monkeypatch.setattr(_writers.JsonlWriter, "write_page", write_page)
    out = tmp_path / "o.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet", *FAST]
    assert main(args) == 4
    line = one_line(capsys.readouterr().err)
    assert "the API reports 101 contacts from 2026-01-01T00:00:00Z" in line
    # The late one, and the one whose place it took while the pages moved by one.
    assert " missing (the listing changed while it was walked)" in line
    assert "run the same command again" in line
    assert not json.loads((tmp_path / "o.jsonl.state").read_text())["complete"]
    assert main(args) == 0
    keys = [record["contactId"] for record in stored(out)]
    assert sorted(keys) == sorted(r["contactId"] for r in expected(simulator, "contacts"))
    assert len(keys) == len(set(keys)) == 101


def test_a_resume_with_the_discovered_api_base_configured_is_the_same_export(
    tenant, tmp_path, capsys, monkeypatch
):
    """Setting CXONE_API_BASE to the base that was discovered resumes the export."""
    simulator = tenant(records=60)
    original = _writers.JsonlWriter.write_page
    calls = []

    def interrupted(self, records, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, records, **kwargs)

    monkeypatch.setattr(_writers.JsonlWriter, "write_page", interrupted)
    out = tmp_path / "o.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet", *FAST]
    assert main(args) == 130
    monkeypatch.setattr(_writers.JsonlWriter, "write_page", original)
    monkeypatch.setenv("CXONE_API_BASE", simulator.url)  # what discovery found
    monkeypatch.setenv("CXONE_ISSUER", simulator.url + "/")  # the same issuer, written otherwise
    capsys.readouterr()
    assert main(args) == 0, capsys.readouterr().err
    assert stored(out) == expected(simulator, "contacts")


def test_two_incremental_runs_export_each_contact_once(tenant, tmp_path, capsys):
    """A daily job: --since-last continues where the last run ended; nothing twice, nothing lost."""
    simulator = tenant(records=80)
    out = tmp_path / "contacts.sqlite"
    first = ["export", "--out", str(out), "--since-last", "--quiet", *FAST]
    assert main([*first, "--start", START, "--end", END]) == 0
    assert len(stored(out)) == 80
    # Between the runs, contacts of February arrive.
    simulator.add_contacts(25, first=FIRST + SPAN + timedelta(days=1), span=timedelta(days=20))
    assert main([*first, "--end", "2026-03-01T00:00:00Z"]) == 0
    keys = [record["contactId"] for record in stored(out)]
    assert len(keys) == len(set(keys)) == 105
    assert keys == [r["contactId"] for r in simulator.contacts(FIRST, None)]
    capsys.readouterr()
    assert main([*first, "--end", "2026-03-01T00:00:00Z"]) == 0
    assert "nothing new yet" in capsys.readouterr().err
    assert len(stored(out)) == 105


def test_an_incremental_export_needs_a_start_the_first_time(tenant, tmp_path, capsys):
    """--since-last on an output that holds nothing: exit 2, naming --start; nothing made."""
    tenant(records=5)
    code = main(["export", "--out", str(tmp_path / "o.jsonl"), "--since-last", "--quiet"])
    assert code == 2
    assert "--since-last needs --start" in one_line(capsys.readouterr().err)


def test_a_window_ends_by_default_at_now_minus_the_lag(tenant, tmp_path, capsys):
    """Without --end, every contact up to now minus --lag is exported."""
    simulator = tenant(records=40)
    out = tmp_path / "o.jsonl"
    assert main(["export", "--out", str(out), "--start", START, "--quiet", *FAST]) == 0
    assert stored(out) == simulator.contacts(FIRST, None)
    window = json.loads((tmp_path / "o.jsonl.state").read_text())["window"]
    assert window[0] == START
    ended = datetime.fromisoformat(window[1].removesuffix("Z") + "+00:00")
    assert datetime.now(timezone.utc) - ended > timedelta(minutes=14)


def test_an_output_that_is_a_directory_exits_2_in_one_line(tenant, tmp_path, capsys):
    """--out naming a directory: exit 2 and one line, no traceback."""
    tenant(records=5)
    out = tmp_path / "o.jsonl"
    out.mkdir()
    assert main(["export", "--out", str(out), *WINDOW, "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("ratekit-cxone: error: cannot write --out")
    assert out.is_dir()


def test_kills_at_random_points_over_a_growing_listing_keep_every_record_once(tenant, tmp_path):
    """Five SIGKILLs while contacts keep arriving: the last run has every contact, once."""
    simulator = tenant(records=1500, seed=9)
    out = tmp_path / "contacts.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"]
    draw = random.Random(5)
    late = FIRST + SPAN - timedelta(minutes=30)
    for run_number in range(5):
        # Slow enough that no run ends before it is killed.
        child = run(*args, "--rate", "40/second", "--burst", "1")
        try:
            wait_for(lambda: out.exists() and out.stat().st_size > 0)
            time.sleep(draw.uniform(0.0, 0.6))
            arrival = late + timedelta(minutes=5 * run_number)
            simulator.add_contacts(3, first=arrival, span=timedelta(minutes=1))
            time.sleep(draw.uniform(0.0, 0.2))
            child.send_signal(signal.SIGKILL)
        finally:
            child.communicate(timeout=60)
    assert main([*args, *FAST]) == 0
    assert stored(out) == expected(simulator, "contacts")
    assert len(stored(out)) == 1515


# --- remembered rates --------------------------------------------------------------------

#: Where the limiter of an export without --rate meets 429s at once (it starts faster).
THROTTLED = {"rate": "5/second", "retry_after": "fraction"}
CREDENTIALS = (
    "CXONE_CLIENT_ID",
    "CXONE_CLIENT_SECRET",
    "CXONE_ACCESS_KEY_ID",
    "CXONE_ACCESS_KEY_SECRET",
)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """Remembered rates go to a directory of the test's own, never to the user's cache."""
    directory = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RATEKIT_CXONE_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def limiters(monkeypatch):
    """Every limiter the command makes: ``(rate, estimate, limiter)``, in order."""
    made = []
    real = _cli.make_limiter

    def make_limiter(rate=None, burst=None, *, clock=None, estimate=None):
        limiter = real(rate, burst, clock=clock, estimate=estimate)
        made.append((rate, estimate, limiter))
        return limiter

    monkeypatch.setattr(_cli, "make_limiter", make_limiter)
    return made


def rates_file():
    """The remembered rates of the test (in its own cache directory)."""
    return Path(os.environ["RATEKIT_CXONE_CACHE_DIR"]) / "cxone-rates.json"


def remembered():
    """The entries of the remembered rates, by tenant."""
    return json.loads(rates_file().read_text(encoding="utf-8"))["tenants"]


def key_of(simulator, api="contacts"):
    """A simulated tenant's key: the contract, the issuer (or tenant URL), the tenant id."""
    if api == "contacts":
        return f"contacts {simulator.url} {simulator.tenant_id}"
    return f"interactions {simulator.url}"


def ago(**delta):
    """A wall time that long ago, as the file keeps it."""
    moment = datetime.now(timezone.utc) - timedelta(**delta)
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def seed(tenants):
    """Write remembered rates: ``{key: (requests per second, learnt at)}``."""
    entries = {
        key: {"requests_per_second": rate, "learnt_at": learnt}
        for key, (rate, learnt) in tenants.items()
    }
    rates_file().write_text(json.dumps({"version": 1, "tenants": entries}))


@pytest.mark.parametrize("api", ["contacts", "interactions"])
def test_an_export_remembers_what_it_learnt_and_the_next_one_starts_there(
    tenant, tmp_path, capsys, limiters, api
):
    """Without --rate, the learnt rate is kept for its tenant, and the next run starts there."""
    simulator = tenant(api, records=60, **THROTTLED)
    window = WINDOW if api == "contacts" else []
    args = ["export", "--api", api, *window, "--page-size", "10"]
    assert main([*args, "--out", str(tmp_path / "first.jsonl")]) == 0, capsys.readouterr().err
    assert simulator.statistics().throttled > 0  # there was something to learn
    [(rate, estimate, limiter)] = limiters
    assert (rate, estimate) == (None, None)  # nothing remembered yet: from scratch
    learnt = limiter.estimate
    assert learnt is not None
    entries = remembered()
    assert list(entries) == [key_of(simulator, api)]
    assert entries[key_of(simulator, api)]["requests_per_second"] == learnt
    assert entries[key_of(simulator, api)]["learnt_at"] >= ago(minutes=1)
    summary = capsys.readouterr().err.splitlines()[-1]
    assert summary.endswith(f", learnt {learnt:.1f} requests/s")
    text = rates_file().read_text(encoding="utf-8")
    for name in CREDENTIALS:
        if name in os.environ:
            assert os.environ[name] not in text
    assert main([*args, "--out", str(tmp_path / "second.jsonl"), "--quiet"]) == 0
    assert limiters[1][:2] == (None, learnt)


@pytest.mark.parametrize(("age", "used"), [({"days": 6}, True), ({"days": 7, "hours": 1}, False)])
def test_a_remembered_rate_is_used_for_a_week(tenant, tmp_path, limiters, age, used):
    """An entry up to 7 days old starts the limiter; an older one is ignored."""
    simulator = tenant(records=30)
    seed({key_of(simulator): (7.5, ago(**age))})
    assert main(["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW, "--quiet"]) == 0
    assert [made[:2] for made in limiters] == [(None, 7.5 if used else None)]


def test_other_tenants_entries_are_kept(tenant, tmp_path):
    """Remembering one tenant's rate rewrites its entry only; the others stay as they were."""
    simulator = tenant(records=30)
    other = "contacts https://cxone.niceincontact.com 99999999-0000-0000-0000-000000000000"
    seed({other: (3.0, ago(days=2)), key_of(simulator): (7.5, ago(hours=5))})
    before = remembered()
    assert main(["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW, "--quiet"]) == 0
    after = remembered()
    assert after[other] == before[other]
    assert after[key_of(simulator)]["learnt_at"] > before[key_of(simulator)]["learnt_at"]


@pytest.mark.parametrize("ending", ["interrupted", "failed"])
def test_a_run_that_does_not_finish_still_remembers(tenant, tmp_path, capsys, monkeypatch, ending):
    """Ended by Ctrl-C (130) or by an API error (4) after requests: the rate is kept."""
    if ending == "interrupted":
        simulator = tenant(records=100)
        interrupt_at_page(monkeypatch, 2)
        code = 130
    else:
        simulator = tenant(env={"CXONE_API_VERSION": "20"}, records=10)  # 404s
        code = 4
    seed({key_of(simulator): (7.5, ago(hours=5))})
    before = remembered()[key_of(simulator)]["learnt_at"]
    args = ["export", "--out", str(tmp_path / "o.jsonl"), *WINDOW, "--page-size", "10"]
    assert main(args) == code
    assert "warning" not in capsys.readouterr().err
    assert remembered()[key_of(simulator)]["learnt_at"] > before


def test_with_rate_nothing_is_read_or_written(tenant, tmp_path, capsys, limiters):
    """--rate: a remembered rate is not used, a corrupt file not even read, neither written."""
    simulator = tenant(records=30)
    seed({key_of(simulator): (7.5, ago(hours=1))})
    before = rates_file().read_bytes()
    args = ["export", *WINDOW, "--quiet", *FAST]
    assert main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert [made[:2] for made in limiters] == [("1000/second", None)]
    assert rates_file().read_bytes() == before
    rates_file().write_text("{corrupt")
    assert main([*args, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert capsys.readouterr().err == ""  # not read: no warning
    assert rates_file().read_text() == "{corrupt"


def test_with_no_remember_nothing_is_read_or_written(tenant, tmp_path, capsys, limiters):
    """--no-remember: learn from scratch, keep nothing, read nothing (no warning)."""
    simulator = tenant(records=60, **THROTTLED)
    rates_file().write_text("{corrupt")
    out = tmp_path / "o.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet", "--no-remember"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    [(rate, estimate, limiter)] = limiters
    assert (rate, estimate) == (None, None)
    assert limiter.estimate is not None  # learnt, and would have been remembered
    assert rates_file().read_text() == "{corrupt"
    assert stored(out) == expected(simulator, "contacts")


def test_a_corrupt_cache_warns_once_and_is_replaced(tenant, tmp_path, capsys, limiters):
    """A file that is not JSON: one warning line, exit 0, and the learnt rate replaces it."""
    simulator = tenant(records=60, **THROTTLED)
    rates_file().write_text("{corrupt")
    out = tmp_path / "o.jsonl"
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"]
    assert main(args) == 0
    assert one_line(capsys.readouterr().err) == (
        f"ratekit-cxone: warning: cannot read {rates_file()}: not valid JSON; the "
        "tenant's rate is learnt afresh"
    )
    assert stored(out) == expected(simulator, "contacts")
    [(_, _, limiter)] = limiters
    assert remembered()[key_of(simulator)]["requests_per_second"] == limiter.estimate


# Obstacles that stop root too (the tests may run as root, whom permissions do not stop).
@pytest.mark.parametrize("obstacle", ["file-for-directory", "directory-for-file"])
def test_an_unusable_cache_warns_once_and_the_export_succeeds(
    tenant, tmp_path, capsys, limiters, obstacle
):
    """A cache that can be neither read nor written: one warning in all, exit 0, all exported."""
    directory = tmp_path / "cache"
    simulator = tenant(records=60, env={"RATEKIT_CXONE_CACHE_DIR": str(directory)}, **THROTTLED)
    if obstacle == "file-for-directory":
        directory.write_text("in the way")
    else:
        rates_file().mkdir(parents=True)
    out = tmp_path / "o.jsonl"
    code = main(["export", "--out", str(out), *WINDOW, "--page-size", "10", "--quiet"])
    assert code == 0
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"ratekit-cxone: warning: cannot read {rates_file()}: ")
    assert stored(out) == expected(simulator, "contacts")
    [(_, _, limiter)] = limiters
    assert limiter.estimate is not None  # so the write was tried, and failed in silence


def test_the_demo_remembers_nothing(tmp_path, capsys, monkeypatch, cache_dir, limiters):
    """`demo` learns from scratch and keeps nothing: its simulator is new each time."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--records", "50", "--page-size", "25", "--quiet"]) == 0
    assert [made[:2] for made in limiters] == [(None, None)]
    assert list(cache_dir.iterdir()) == []


def test_no_remember_is_in_the_help(capsys):
    """`export --help` says what --no-remember does."""
    assert main(["export", "--help"]) == 0
    described = " ".join(capsys.readouterr().out.split())
    assert (
        "--no-remember without --rate: learn the tenant's limit from scratch, and do not "
        in described
    )

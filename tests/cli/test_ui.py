"""`hypersweep ui` says it is starting and prints its URL only once the MLflow UI
answers there: on a busy machine the first answer came 28 s after the URL, and
the URL opened before that was "connection refused". A UI that exits first, or
never answers, is one line of error, and nothing it started is left running."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.cli.ui import NotServing, _Console, serve
from tests.servers import free_port

EXE = str(Path(sys.executable).with_name("hypersweep"))
FAILED = """Traceback (most recent call last):
  File "sqlalchemy/engine/base.py", line 143, in __init__
sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server failed
\tIs the server running on that host and accepting TCP/IP connections?

(Background on this error at: https://sqlalche.me/e/21/e3q8)
"""


def start_ui(uri: str, port: int, stderr: Path) -> subprocess.Popen:
    return subprocess.Popen([EXE, "ui", "--tracking-uri", uri, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True)


def server_group(ui: subprocess.Popen, timeout: float = 60) -> int:
    """The process group of the server `ui` started: its child that leads a group
    (read from /proc, where the processes list their parents)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                pid = int(stat.parent.name)
                if ppid == ui.pid and os.getpgid(pid) == pid:
                    return pid
            except (OSError, ValueError):       # ended meanwhile
                continue
        assert ui.poll() is None, "the ui command ended before it started a server"
        time.sleep(0.1)
    raise AssertionError(f"no server started by the ui command within {timeout} s")


def stop(ui: subprocess.Popen, group: int | None) -> None:
    """After a failed test: what it started, not left running."""
    if ui.poll() is None:
        ui.kill()
        ui.wait()
    if group is not None and not gone(group):
        os.killpg(group, signal.SIGKILL)


def gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def running_with(text: str) -> list[str]:
    """Command lines of the processes on this machine that mention `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


# What an MLflow 3 UI writes while it starts, serves and stops (one pipe), with
# what the terminal should get of it marked ">".
TRANSCRIPT = """\
 Registry store URI not provided. Using backend store URI.
 [MLflow] Security middleware enabled with default settings (localhost-only).
 2026/12/01 19:17:26 INFO mlflow.server.jobs.executor_registry: Available backends: local
 /venv/lib/python3.11/site-packages/mlflow/server/fastapi_app.py:23: StarletteDeprecationWarning: \
starlette.middleware.wsgi is deprecated
   from starlette.middleware.wsgi import WSGIResponder, build_environ
 2026/12/01 19:17:27 INFO:     Uvicorn running on http://127.0.0.1:5417 (Press CTRL+C to quit)
 2026/12/01 19:18:02 INFO:     Child process [7040] died
>2026/12/01 19:18:05 WARNING mlflow.server.handlers: Artifact root not writable
>/venv/lib/python3.11/site-packages/mlflow/store.py:9: UserWarning: a real one
>  warnings.warn(msg)
>2026/12/01 19:18:09 ERROR mlflow.server: Exception on /ajax-api/2.0/mlflow/runs/search
>Traceback (most recent call last):
>  File "/venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py", line 1967
>    self.dialect.do_execute(
>sqlite3.OperationalError: disk I/O error
>
>The above exception was the direct cause of the following exception:
>
>Traceback (most recent call last):
>  File "/venv/lib/python3.11/site-packages/mlflow/server/handlers.py", line 573
>sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) disk I/O error
 2026/12/01 19:18:20 INFO:     Shutting down
 2026/12/01 19:18:21 INFO:     Received SIGTERM, exiting.
"""


def test_the_terminal_gets_the_servers_warnings_and_errors_only():
    """Not the INFO lines of each job runner's start and stop, nor deprecation
    warnings from MLflow's libraries: a warning, an error and a traceback whole."""
    console = _Console()
    lines = TRANSCRIPT.splitlines(keepends=True)
    shown = [line[1:] for line in lines if console.shows(line[1:])]
    assert shown == [line[1:] for line in lines if line.startswith(">")]


REFUSED_EDIT = """\
ERROR mlflow.store.db.utils: SQLAlchemy database error. The following exception is caught.
Traceback (most recent call last):
  File "sqlalchemy/engine/base.py", line 1977, in _exec_single_context
    self.dialect.do_execute(
sqlite3.OperationalError: attempt to write a readonly database

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "mlflow/store/db/utils.py", line 175, in make_managed_session
    session.commit()
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) attempt to write a readonly database
""" + ("2026/12/02 08:39:24 ERROR mlflow.server.handlers: Error in _set_tag: "
       "(sqlite3.OperationalError) attempt to write a readonly database\n")


def test_an_edit_refused_by_a_read_only_store_is_one_line_and_other_errors_stay_whole():
    from hypersweep.cli.ui import _RefusedEdits

    def through(text: str) -> list[str]:
        console, edits, out = _Console(), _RefusedEdits(), []
        for line in text.splitlines(keepends=True):
            out += edits.lines(line, console.shows(line))
        return out + edits.close()

    assert through(REFUSED_EDIT) == ["note: the MLflow UI could not save an edit (set_tag): "
                                     "the store is served read-only\n"]
    other = REFUSED_EDIT.replace("attempt to write a readonly database", "disk I/O error")
    assert through(other) == other.splitlines(keepends=True)
    # the same record, the last thing the server wrote: let through at the end
    cut = "".join(other.splitlines(keepends=True)[:-1])
    assert through(cut) == cut.splitlines(keepends=True)


@pytest.mark.slow
def test_the_url_answers_once_printed_and_the_ui_stops_with_the_command(stores, tmp_path):
    """The ready line comes once the URL answers: a browser opened on it at once
    gets the page, not "connection refused"."""
    MlflowClient(tracking_uri=stores.mlflow_uri).search_experiments()      # a store to serve
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ui, group = start_ui(stores.mlflow_uri, port, tmp_path / "stderr"), None
    try:
        assert ui.stdout.readline() == f"starting the MLflow UI on {url} ...\n"
        group = server_group(ui)
        lines = []
        while not lines or not lines[-1].startswith("MLflow UI:"):
            lines.append(ui.stdout.readline())
            assert lines[-1], f"the ui command ended: {lines}, {ui.wait()}"
        assert answers(url)                         # the page a user opens, at once
        log = Path(tempfile.gettempdir(), f"hypersweep-ui-{port}-{ui.pid}.log")
        assert lines[-1] == f"MLflow UI: {url}  (Ctrl-C stops it; its log: {log})\n"
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
    finally:
        stop(ui, group)
    assert gone(group) and not answers(url)
    # The terminal gets the two lines; the server's INFO lines (its job runners
    # starting and stopping) and its libraries' deprecation warnings, the log.
    assert len(lines) == 1 and ui.stdout.read() == ""
    stderr = (tmp_path / "stderr").read_text()
    assert "Traceback" not in stderr and " INFO" not in stderr, stderr
    assert "Uvicorn running on" in log.read_text()


@pytest.mark.slow
def test_ctrl_c_while_the_ui_starts_stops_it(stores, tmp_path):
    """The server is in a process group of its own: only this process gets the
    terminal's Ctrl-C, and it stops the group, also before the server answers."""
    MlflowClient(tracking_uri=stores.mlflow_uri).search_experiments()
    port = free_port()
    ui, group = start_ui(stores.mlflow_uri, port, tmp_path / "stderr"), None
    try:
        assert ui.stdout.readline().startswith("starting the MLflow UI on ")
        group = server_group(ui)
        ui.send_signal(signal.SIGINT)               # MLflow takes seconds to answer
        assert ui.wait(timeout=60) == 0
    finally:
        stop(ui, group)
    assert gone(group)
    assert "MLflow UI:" not in ui.stdout.read()
    assert "Traceback" not in (tmp_path / "stderr").read_text()


@pytest.mark.slow
def test_a_store_mlflow_refuses_is_one_line_with_exit_2(tmp_path):
    """MLflow refuses a store whose schema is older than its own: the UI exits
    with a traceback before it answers. That was "connection refused" at the
    printed URL, the traceback above it."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    MlflowClient(tracking_uri=uri).search_experiments()
    with sqlite3.connect(db) as c:                  # MLflow's first schema
        c.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    port = free_port()
    res = subprocess.run([EXE, "ui", "--tracking-uri", uri, "--port", str(port)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stdout == f"starting the MLflow UI on http://127.0.0.1:{port} ...\n"
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"error: --tracking-uri: MLflow cannot serve {uri}: "
                                 "Detected out-of-date database schema (found version "
                                 "451aebb31d03, but expected ")
    assert running_with(str(db)) == []


def test_a_server_that_exits_before_answering_is_one_line_with_exit_1(monkeypatch, tmp_path):
    """Not a store MLflow refuses (here a PostgreSQL server that is down, as MLflow
    gives up on it after 105 s): the exception in its stderr says what failed, not
    SQLAlchemy's last line. What it started (a child that holds its pipes) is
    stopped too."""
    import hypersweep.search.tracking  # noqa: F401
    from hypersweep import search
    pids = tmp_path / "pids"
    server = ("import os, subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{child.pid}}')\n"
              "print('Registry store URI not provided.', flush=True)\n"
              f"sys.stderr.write({FAILED!r})\n"
              "sys.exit(3)\n")
    monkeypatch.setattr(search.tracking, "ui_argv",
                        lambda uri, port, served=None: [sys.executable, "-c", server])
    db = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    port = free_port()
    res = CliRunner().invoke(app, ["ui", "--tracking-uri", f"sqlite:///{db}",
                                   "--port", str(port)])
    assert res.exit_code == 1
    assert res.stdout == f"starting the MLflow UI on http://127.0.0.1:{port} ...\n"
    log = Path(tempfile.gettempdir(), f"hypersweep-ui-{port}-{os.getpid()}.log")
    assert res.stderr == (f"error: the MLflow UI on http://127.0.0.1:{port} exited with code 3 "
                          f"before answering; it said: {FAILED.splitlines()[2]} (its log: {log})\n")
    # All it wrote, both pipes (whose lines two threads copy, in either order).
    assert sorted(log.read_text().splitlines()) == sorted(
        ["Registry store URI not provided.", *FAILED.splitlines()])
    child = int(pids.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.slow
def test_a_server_still_not_answering_is_stopped(tmp_path, capsys):
    """A server that takes longer than the wait (a database that does not answer:
    MLflow retries it for minutes) is stopped, with what it last said."""
    pids = tmp_path / "pids"
    server = ("import os, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
              "print('Operation will be retried in 51.1 seconds', file=sys.stderr, flush=True)\n"
              "time.sleep(600)\n")
    with pytest.raises(NotServing) as e:
        serve([sys.executable, "-c", server], free_port(), "ready", grace_s=5, start_s=5)
    assert e.value.why == "was still not answering after 5 s and was stopped"
    assert e.value.code is None
    assert e.value.said == "Operation will be retried in 51.1 seconds"
    assert "ready" not in capsys.readouterr().out
    leader, child = map(int, pids.read_text().split())
    assert gone(leader)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_store_ui_cannot_serve_is_one_line_naming_the_option(tmp_path):
    """The Optuna file was named `tracking.uri:` (a key of the config, which ui does
    not read); a bare path went on to start MLflow, which printed its file-store
    notice and served nothing."""
    import optuna
    optuna_db = tmp_path / "optuna.db"
    optuna.storages.RDBStorage(f"sqlite:///{optuna_db}")
    cases = {f"sqlite:///{optuna_db}": "--tracking-uri: ",
             str(tmp_path / "nope" / "x.db"): f"--tracking-uri: '{tmp_path / 'nope' / 'x.db'}' is "
                                             "a file name; a SQLite store's URI is sqlite:///"}
    for uri, start in cases.items():
        res = CliRunner().invoke(app, ["ui", "--tracking-uri", uri, "--port", str(free_port())])
        assert res.exit_code == 2 and res.stdout == "", res.output
        assert res.stderr.startswith(f"error: {start}") and res.stderr.count("\n") == 1, res.stderr


# A stand-in for the MLflow UI: binds 127.0.0.1:PORT (its last argument) after a
# moment, as the UI does after its imports, then answers /health for two seconds;
# where the port is taken it says so as uvicorn does, and exits a while later.
BINDING_SERVER = """
import http.server, sys, threading, time
time.sleep(1.0)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
try:
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[-1])), Health)
except OSError as e:
    print(f"ERROR:    {e}", file=sys.stderr, flush=True)
    time.sleep(5)
    sys.exit(1)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(2.0)
"""


def squatter(port: int) -> subprocess.Popen:
    """Another server on `port`, answering /health: the MLflow UI of another store."""
    serving = BINDING_SERVER.replace("time.sleep(1.0)", "").replace("time.sleep(2.0)",
                                                                    "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", serving, str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the other server did not start")


def test_a_port_another_server_takes_while_the_ui_starts_is_not_printed_as_its_url(
        tmp_path, monkeypatch):
    """Two `ui`s started seconds apart both found port 5000 free; the second printed
    its URL as soon as /health answered there, which the first one's server did:
    the URL showed another store, while the second one's server failed to bind
    and printed tracebacks. Now the server that answers must be this one's, and
    a port taken meanwhile moves the UI to the next free one."""
    import hypersweep.cli.ui  # noqa: F401
    from hypersweep import cli
    from hypersweep.search import tracking
    port = free_port()
    other = squatter(port)
    try:
        # The race: the port was free when checked, taken before the UI bound it.
        monkeypatch.setattr(cli.ui, "_port_free", lambda p: p == port or p > port)
        monkeypatch.setattr(cli.ui, "_ui_port", lambda asked, after=None:
                            port if after is None else free_port())
        monkeypatch.setattr(tracking, "ui_argv", lambda uri, p, served=None: [
            sys.executable, "-c", BINDING_SERVER, str(p)])
        db = tmp_path / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        res = CliRunner().invoke(app, ["ui", "--tracking-uri", f"sqlite:///{db}"])
    finally:
        other.kill()
        other.wait()
    lines = res.stdout.splitlines()
    assert res.exit_code == 0, res.output
    assert lines[:2] == [f"starting the MLflow UI on http://127.0.0.1:{port} ...",
                         f"port {port} was taken by another server while this one started; "
                         "trying the next free one"]
    moved = int(lines[2].removeprefix("starting the MLflow UI on http://127.0.0.1:")
                .removesuffix(" ..."))
    assert moved != port
    assert lines[3].startswith(f"MLflow UI: http://127.0.0.1:{moved}  (Ctrl-C stops it")
    assert f"127.0.0.1:{port}  (Ctrl-C" not in res.stdout


def test_a_port_asked_for_and_taken_while_the_ui_starts_is_one_line(tmp_path, monkeypatch):
    import hypersweep.cli.ui  # noqa: F401
    from hypersweep import cli
    from hypersweep.search import tracking
    port = free_port()
    other = squatter(port)
    try:
        monkeypatch.setattr(cli.ui, "_port_free", lambda p: True)
        monkeypatch.setattr(tracking, "ui_argv", lambda uri, p, served=None: [
            sys.executable, "-c", BINDING_SERVER, str(p)])
        db = tmp_path / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        res = CliRunner().invoke(app, ["ui", "--tracking-uri", f"sqlite:///{db}",
                                       "--port", str(port)])
    finally:
        other.kill()
        other.wait()
    assert res.exit_code == 1, res.output
    assert res.stdout == f"starting the MLflow UI on http://127.0.0.1:{port} ...\n"
    assert res.stderr == (f"error: --port: {port} was taken by another server while the "
                          f"MLflow UI started; choose a free one with --port\n")

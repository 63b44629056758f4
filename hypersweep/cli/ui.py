"""`hypersweep ui`: the MLflow UI on 127.0.0.1 for a store, its URL printed once it
answers. The server's whole output goes to a log file; the terminal gets only its
warnings and errors (see _Console). Registered on the app in cli/app.py."""
from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable, Optional, TextIO

import typer

from hypersweep.cli.app import app, err, opt, out, user_errors, whole_number
from hypersweep.models.errors import UserError
from hypersweep.search.config import TrackingConfig, check_tracking_uri, without_password
from hypersweep.search.writer import TrackingError, how_ended

DEFAULT_URI = TrackingConfig().uri


@app.command()
@user_errors
def ui(tracking_uri: Optional[str] = opt("URI", "MLflow tracking URI.",
                                         show_default="$MLFLOW_TRACKING_URI, else "
                                                      "sqlite:///mlflow.db"),
       port: Optional[int] = opt("PORT", "Port on 127.0.0.1.",
                                 show_default="5000, or the next free one",
                                 parser=whole_number)) -> None:
    """Start the MLflow UI on 127.0.0.1 for a store and print its URL once it answers."""
    from hypersweep.search.store_template import check_kind
    from hypersweep.search.tracking import check_store_exists
    uri = tracking_uri or DEFAULT_URI
    if uri.startswith(("http://", "https://")):
        from hypersweep.search.net import http_unreachable
        why = http_unreachable(uri)
        if why:
            raise UserError(f"--tracking-uri: cannot reach {without_password(uri)}: {why}")
        out.print(f"the store is an MLflow server already: {without_password(uri)}")
        return
    check_tracking_uri(uri, "--tracking-uri")       # a bare file name, a file store
    check_store_exists(uri, "--tracking-uri")       # not an empty store, served as if it were one
    check_kind(uri, "mlflow", "--tracking-uri")     # MLflow would migrate an Optuna file
    with _served(uri) as (served, cwd):
        _serve_ui(uri, served, port, cwd)


@contextlib.contextmanager
def _served(uri: str):
    """The URI the server opens the store by, and the directory it runs in. A SQLite
    file in a directory this process cannot write (a read-only mount, a
    colleague's folder) is served read-only (`sqlite.reading_uri`): opened as
    usual, SQLite's write-ahead-log index beside it cannot be made, and the
    server exited at once. MLflow then makes directories from that URI's path
    where it runs: in a directory of its own, removed afterwards."""
    from hypersweep.search.sqlite import reading_uri
    from hypersweep.search.store_template import unwritable
    db = unwritable(uri)
    if db is None:
        yield uri, None
        return
    err.print(f"note: --tracking-uri: {db.absolute().parent} is not writable: the store is "
              "served read-only (the UI shows the runs; edits to them fail)", soft_wrap=True,
              highlight=False)
    with tempfile.TemporaryDirectory(prefix="hypersweep-ui-") as cwd:
        yield f"sqlite:///{reading_uri(db)}&uri=true", cwd


def _serve_ui(uri: str, served: str, port: int | None, cwd: str | None) -> None:
    from hypersweep.search.tracking import ui_argv
    asked = port
    for attempt in range(PORT_ATTEMPTS):
        port = _ui_port(asked, after=port if attempt else None)
        url = f"http://127.0.0.1:{port}"
        # Its own: a second `ui` on the port truncated the first one's log as it failed
        log = Path(tempfile.gettempdir(), f"hypersweep-ui-{port}-{os.getpid()}.log")
        out.print(f"starting the MLflow UI on {url} ...", soft_wrap=True)
        sys.stdout.flush()
        try:
            ready = f"MLflow UI: {url}  (Ctrl-C stops it; its log: {log})"
            # A store served read-only runs in a directory of its own (_served).
            code = serve(ui_argv(uri, port, served), port, ready, log=log, cwd=cwd,
                         read_only=cwd is not None)
        except NotServing as e:
            if e.port_taken and asked is None and attempt + 1 < PORT_ATTEMPTS:
                out.print(f"port {port} was taken by another server while this one started; "
                          "trying the next free one", soft_wrap=True)
                continue
            raise _ui_failure(e, uri, url, log) from None
        raise typer.Exit(code)


# Ports tried, one after another, when another server takes the one chosen
# between the check that it is free and the UI's own bind (about 10 s later).
PORT_ATTEMPTS = 3


class NotServing(RuntimeError):
    """The server exited, or was still not answering, before it answered; it and what
    it started are stopped. `code`: its exit status when it exited by itself, else
    None. `said`: the line of its stderr that tends to say why (see _Relay.said)."""

    def __init__(self, why: str, code: int | None, said: str, port_taken: bool = False) -> None:
        super().__init__(why)
        self.why, self.code, self.said = why, code, said
        self.port_taken = port_taken        # another server holds the port


# The last line of a traceback that ends in an exception of MLflow's own.
_MLFLOW_REFUSED = re.compile(r"mlflow(?:\.\w+)+:\s+(?P<message>.+)")


def _ui_failure(e: NotServing, uri: str, url: str, log: Path) -> Exception:
    """The error for a UI that never answered. A store MLflow refuses (its schema
    needs `mlflow db upgrade`, a scheme it does not know) is bad input: the UI
    then exits with an exception of MLflow's own as its last line. Anything else
    (a crash, a port taken in the meantime, a database that does not answer)
    failed on this machine."""
    if e.port_taken:
        return TrackingError(f"--port: {url.rsplit(':', 1)[1]} was taken by another server "
                             f"while the MLflow UI started; choose a free one with --port")
    refused = _MLFLOW_REFUSED.fullmatch(e.said) if e.code is not None else None
    if refused:
        return UserError(f"--tracking-uri: MLflow cannot serve {without_password(uri)}: "
                         f"{refused['message']}")
    said = f"; it said: {e.said}" if e.said else ""
    return TrackingError(f"the MLflow UI on {url} {e.why}{said} (its log: {log})")


def serve(argv: list[str], port: int, ready: str, log: Path | None = None,
          grace_s: float = 15.0, start_s: float = 120.0, cwd: str | None = None,
          read_only: bool = False) -> int:
    """Run a server, print `ready` once it answers HTTP on 127.0.0.1:`port`, and
    serve until it exits, or until Ctrl-C or SIGTERM here; then stop it and
    everything it started, and wait for them. 0 when stopped here. Its output
    goes to `log` (a file, replaced) whole, and here only as _Console lets it:
    its warnings and errors, not the MLflow UI's dozens of INFO lines (each job
    runner's start and stop) and its libraries' deprecation warnings.

    The URL used to be printed at once: on a busy machine the MLflow UI answered
    28 s later, and the URL opened before that was "connection refused". What
    the server writes while it starts is held back, and written before `ready`;
    a server that exits first, or still does not answer after `start_s`, raises
    NotServing with the line of its stderr that says why: one line for the user,
    not the traceback above a URL that does not answer.

    The server runs in a process group of its own: a Ctrl-C in the terminal
    reaches this process only, not the MLflow UI's job runners, which printed a
    KeyboardInterrupt traceback each; and a SIGTERM here no longer leaves the UI
    serving after this process is gone. The group gets SIGTERM, then SIGKILL
    after `grace_s`. `cwd`: the directory it runs in. `read_only`: it serves a
    store read-only, and an edit refused is one line here (_RefusedEdits)."""
    from hypersweep.search.exit import stops_as_interrupt, stops_deferred

    why, code = None, 0
    try:
        with stops_as_interrupt():
            # A stop while the server starts waits until it and its relays exist:
            # raised before, it left the server running (and exited 130).
            with stops_deferred():
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True, cwd=cwd)
                sink = _Log(log)
                relays = (_Relay(proc.stdout, sys.stdout, sink, read_only),
                          _Relay(proc.stderr, sys.stderr, sink, read_only))
            why = _not_answering(proc, port, start_s,
                                 taken=lambda: any(r.port_taken for r in relays))
            if why is None:
                for relay in relays:
                    relay.release()
                out.print(ready, soft_wrap=True)
                sys.stdout.flush()
                code = proc.wait()
    except KeyboardInterrupt:       # Ctrl-C, or SIGTERM (search.exit.Terminated)
        pass
    exited = proc.returncode        # before _stop: None unless it exited by itself
    _stop(proc, grace_s)
    for relay in relays:
        relay.join(timeout=5)       # its last lines: the pipes close with the group
    sink.close()
    if why is not None:
        raise NotServing(why, exited, relays[1].said, why == _TAKEN)
    return code


_TAKEN = "could not take its port: another server holds it"


def _not_answering(proc: subprocess.Popen, port: int, start_s: float,
                   taken: Callable[[], bool] = lambda: False) -> str | None:
    """None once the server answers; else why not: it exited first, `start_s`
    passed, or it said its port is taken (`taken`). What answers must be this
    server: another one that took the port after it was found free answered too,
    and its URL was printed as this one's (_listens)."""
    deadline = time.monotonic() + start_s
    while True:
        if taken():
            return _TAKEN
        if proc.poll() is not None:
            return f"{how_ended(proc.returncode)} before answering"
        if _answers(port) and _listens(proc.pid, port) is not False:
            return None
        if time.monotonic() >= deadline:
            return f"was still not answering after {start_s:g} s and was stopped"
        time.sleep(0.25)


def _answers(port: int, timeout: float = 3.0) -> bool:
    """Whether GET /health on 127.0.0.1:`port` answers 200. A short timeout: while
    the MLflow UI starts, its port may take connections that no worker reads yet.
    http.client, not urllib: an http_proxy in the environment is not asked."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _listens(group: int, port: int) -> bool | None:
    """Whether the socket listening on TCP `port` belongs to a process of process
    group `group`; None where this cannot be told (no Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        inodes |= {row[9] for row in rows
                   if int(row[1].rsplit(":", 1)[1], 16) == port and row[3] == "0A"}  # LISTEN
    if not Path("/proc/net/tcp").exists():
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != group:     # pgrp
                continue
            fds = list((stat.parent / "fd").iterdir())
        except (OSError, ValueError, IndexError):       # gone, or not ours to read
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) in sockets:
                    return True
    return False


# A traceback's last line, unindented: the exception, by its (dotted) class name.
_RAISED = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception)\b")


class _Log:
    """The server's whole output, both pipes, line by line as they come; nothing
    when there is no file (or it cannot be written)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        try:
            self._file: IO[str] | None = path.open("w") if path is not None else None
        except OSError:
            self._file = None

    def write(self, line: str) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _Console:
    """Which of a server's lines reach the terminal: a line logged at WARNING and
    above, a warning other than a deprecation, and a traceback, each with the
    indented lines that follow it; not a line logged at INFO or DEBUG, nor one
    that says what it is not (MLflow's start-up notes). Reads one pipe in order."""

    _LEVEL = re.compile(r"(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?"
                        r"(?:\[[^]]*\] )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
    _WARNING = re.compile(r"\S.*:\d+: (?P<category>\w*Warning): ")
    _QUIET = ("DeprecationWarning", "FutureWarning")
    _CHAINED = ("Traceback (most recent call last)", "During handling", "The above exception")

    def __init__(self) -> None:
        self._shown = False             # the last line's lot, for the lines under it
        self._traceback = False

    def shows(self, line: str) -> bool:
        if self._traceback:
            # Until its last line: the exception, unindented.
            self._traceback = line[:1].isspace() or line.startswith(self._CHAINED)
            return True
        if line.startswith(self._CHAINED):
            self._traceback = self._shown = True
        elif line[:1].isspace():
            pass                        # under the line before, or blank: as that one
        elif m := self._LEVEL.match(line):
            self._shown = m["level"] not in ("DEBUG", "INFO")
        elif m := self._WARNING.match(line):
            self._shown = not m["category"].endswith(self._QUIET)
        else:
            self._shown = False
        return self._shown


class _RefusedEdits:
    """For a store served read-only: what MLflow's server writes for each edit that
    SQLite refuses (a tag, a rename, a deletion made in the UI), a 60-line
    traceback and an error line, becomes one line saying so. The traceback's
    record is held until the next record starts (MLflow's handler writes its
    error line at once), and let through whole unless the database refused a
    write."""

    _START = "SQLAlchemy database error"
    _REFUSED = "attempt to write a readonly database"
    _HANDLER = re.compile(r"ERROR mlflow\.server\.handlers: Error in _*(?P<what>\w+): .*"
                          + _REFUSED)

    def __init__(self) -> None:
        self._held: list[str] | None = None

    def lines(self, line: str, shown: bool) -> list[str]:
        """What to write for the server's next `line` (which _Console `shown`)."""
        out: list[str] = []
        if self._held is not None:
            if not _Console._LEVEL.match(line):     # the same record goes on
                self._held += [line] if shown else []
                return []
            out = self.close()
        if m := self._HANDLER.search(line):
            return out + [f"note: the MLflow UI could not save an edit ({m['what']}): the "
                          "store is served read-only\n"]
        if shown and self._START in line and _Console._LEVEL.match(line):
            self._held = [line]
            return out
        return out + ([line] if shown else [])

    def close(self) -> list[str]:
        """The record held, unless it is a refused write's."""
        held, self._held = self._held or [], None
        return [] if any(self._REFUSED in line for line in held) else held


# EADDRINUSE, as Python words it ([Errno 98] on Linux, 48 on macOS).
_IN_USE = re.compile(r"\[Errno \d+\] [Aa]ddress already in use")


class _Relay(threading.Thread):
    """Copies a server's output (a pipe) line by line to the log, and to ours what
    _Console lets through, holding that back until `release`. It reads to the end
    even when ours is closed (`| head`): a server whose pipe is full stops."""

    def __init__(self, source: IO[bytes], sink: TextIO, log: _Log,
                 read_only: bool = False) -> None:
        super().__init__(daemon=True)
        self._source: IO[bytes] = source
        self._sink: TextIO | None = sink
        self._log = log
        self._console = _Console()
        self._edits = _RefusedEdits() if read_only else None
        self._held: list[str] | None = []
        self._lock = threading.Lock()
        self._last = self._raised = ""
        self.port_taken = False         # it said that another process holds its port
        self.start()

    @property
    def said(self) -> str:
        """The last line that names an exception, else the last line that is not
        blank: SQLAlchemy follows its exception with a line of its own ("(Background
        on this error at: URL)"), which would say nothing."""
        return self._raised or self._last

    def run(self) -> None:
        with self._source:
            for raw in iter(self._source.readline, b""):
                line = raw.decode(errors="replace")
                self._log.write(line)
                shown = self._console.shows(line)
                with self._lock:
                    self._last = line.strip() or self._last
                    if _RAISED.match(line):
                        self._raised = line.strip()
                    if _IN_USE.search(line):
                        self.port_taken = True
                    if self._edits is not None:
                        self._pass(self._edits.lines(line, shown))
                    elif shown:
                        self._pass([line])
        if self._edits is not None:
            with self._lock:
                self._pass(self._edits.close())

    def _pass(self, lines: list[str]) -> None:
        for line in lines:
            if self._held is None:
                self._write(line)
            else:
                self._held.append(line)

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for line in held:
                self._write(line)

    def _write(self, line: str) -> None:
        if self._sink is None:
            return
        try:
            self._sink.write(line)
            self._sink.flush()
        except (OSError, ValueError):       # closed, or a broken pipe
            self._sink = None


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the server's group, SIGKILL to what is left after `grace_s`; then
    reap the server."""
    deadline = time.monotonic() + grace_s
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(proc):
            break
        _signal_group(proc.pid, sig)
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(proc: subprocess.Popen) -> bool:
    """Whether any process of the server's group is left (its leader reaped first:
    a zombie still counts as one)."""
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ui_port(asked: int | None, after: int | None = None) -> int:
    """The port asked for, if free (else bad input: the UI would fail to bind after its
    URL was printed, and that URL would show whatever holds the port); without one,
    5000 (or the port after `after`) or the next free port after it."""
    if asked is not None:
        if not 1 <= asked <= 65535:
            raise UserError(f"--port: {asked} is not a port; valid: 1-65535")
        if not _port_free(asked):
            raise UserError(f"--port: {asked} is in use on 127.0.0.1; choose another, "
                            "or leave --port out to take the first free one from 5000")
        return asked
    for port in range(5000 if after is None else after + 1, 5100):
        if _port_free(port):
            return port
    raise UserError("--port: 5000-5099 are all in use on 127.0.0.1; choose one with --port")

"""Ending a process: SIGTERM handled as Ctrl-C is, and without the interpreter's teardown.

A study stopped by SIGTERM (`kill`, `timeout`, a batch scheduler, `docker stop`)
ends as one stopped by Ctrl-C: the running trials fail with the reason, both
stores are left with nothing RUNNING, and the process exits with 128 + the
signal's number. `stops_as_interrupt` raises `Terminated`, a KeyboardInterrupt,
so every `except KeyboardInterrupt` on the way handles either.

With torch, Optuna, MLflow and Ray loaded, Python spends about a second after the
work is done freeing thousands of modules one by one (1.2 s for `hypersweep run`,
0.7 s for its tracking process, on the 2-core benchmark machine). `exit_now` does
first what a normal exit does that matters, then ends the process at once.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP: the terminal or SSH session went away), raised where a
    Ctrl-C would raise KeyboardInterrupt."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


class Abandoned(KeyboardInterrupt):
    """A Ctrl-C asked again while a stopped study wrote its end: it quits without.
    `hint`: how to continue, where the study is known. After the end was written
    (`Stops.ended`), the stop's own exit status (`code`) and hint."""

    def __init__(self, code: int = 128 + signal.SIGINT, hint: str | None = None) -> None:
        super().__init__()
        self.code, self.hint = code, hint


class StudyFailed(RuntimeError):
    """A fault (a bug) stopped a study while it ran: its trials and runs were closed
    as a stop closes them. The message says so in one line, and how to continue;
    `__cause__` is the fault, with its traceback. The CLI exits 1. `bug`: False
    where the fault was the machine's, not the code's (`ClusterLost`): no
    traceback is offered for a bug report."""

    def __init__(self, message: str, bug: bool = True) -> None:
        super().__init__(message)
        self.bug = bug


class ClusterLost(RuntimeError):
    """The Ray daemons of the node the study runs on went away under it (its raylet
    killed, out of memory, or crashed): the executor cannot reach its trials."""


STOPPING = (signal.SIGTERM, signal.SIGHUP)     # stopped as Ctrl-C stops a study


class Stops:
    """What `stops_as_interrupt` yields. Call `stopping()` once the block is
    stopping, for whatever reason: a SIGTERM from then on is only noted, and so is
    the next Ctrl-C (a double Ctrl-C by reflex), with a line saying that the end
    is being written. The Ctrl-C after that one quits at once, leaving the end
    unwritten for `hypersweep resume` to close (SIGKILL ends the process anyway).
    `why(stop)` then says what stopped it, and `ended(code, hint)` records that the
    end is written: the first stop's status and message stand (module doc)."""

    QUIT_HINT = ("stopping: writing the study's end to its stores; Ctrl-C again quits "
                 "without it (hypersweep resume closes the study then)")

    def __init__(self, main_thread: bool) -> None:
        self._main = main_thread
        self.sigterm = False        # a SIGTERM (or SIGHUP) came in
        self.signum: int = signal.SIGTERM
        self.held_interrupts = 0    # Ctrl-Cs noted while stopping
        self.end: tuple[int, str] | None = None     # `ended`'s exit status and hint

    def ended(self, code: int, hint: str) -> None:
        """The stopped study's end is written; it exits with `code` and says `hint`
        (how to continue). A signal from then on is noted without a word, to the end
        of the process where an enclosing block (the CLI's) is still open: the stop
        that came first decides the status and the message. A Ctrl-C that would
        quit (`stopping`) quits with them."""
        self.end = (code, hint)
        self.stopping()

    def stopping(self) -> None:
        if self._main:
            for signum in (*STOPPING, signal.SIGINT):
                if signal.getsignal(signum) != signal.SIG_IGN:      # `nohup` ignores SIGHUP
                    signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        if signum != signal.SIGINT:
            self.sigterm, self.signum = True, signum
            return
        self.held_interrupts += 1
        if self.held_interrupts > 1:
            # The status of the stop that came first (a SIGTERM's), and its hint once
            # the end is written: the driver gives the hint otherwise.
            raise Abandoned(*self.end) if self.end else Abandoned(self.why(Abandoned())[1])
        if self.end is None:
            print(self.QUIT_HINT, file=sys.stderr, flush=True)

    def why(self, stop: KeyboardInterrupt) -> tuple[str, int]:
        """The reason the stopped trials record, and the exit status (128 + the
        signal's number). A Ctrl-C with a SIGTERM noted counts as the SIGTERM:
        when a whole process group gets SIGTERM, Ray's own processes stop, Ray
        interrupts the main thread as Ctrl-C does, and Python runs the SIGINT
        handler before the SIGTERM one."""
        if isinstance(stop, Terminated) or self.sigterm:
            signum = stop.signum if isinstance(stop, Terminated) else self.signum
            return f"stopped by {signal.Signals(signum).name}", 128 + signum
        return "interrupted by the user (Ctrl-C)", 128 + signal.SIGINT


@contextlib.contextmanager
def stops_as_interrupt() -> Iterator[Stops]:
    """Inside the block, a SIGTERM raises `Terminated` in the main thread, and a
    Ctrl-C KeyboardInterrupt as always; either handler calls `Stops.stopping` first.
    Ray's driver installs a SIGTERM handler of its own, which prints a stack dump
    and dies; this one replaces it for the block, and the default action follows
    the block. Outside the main thread nothing is installed.

    A block whose stop `ended` inside an enclosing one (the driver's inside the
    CLI's) leaves its noting handlers in place: a signal while the CLI prints the
    results of a study a SIGTERM stopped must not turn its exit 143 and its hint
    into a bare `interrupted` (130). The enclosing block restores what was there
    before it."""
    stops = Stops(threading.current_thread() is threading.main_thread())
    if not stops._main:
        yield stops
        return

    def on_sigterm(signum: int, frame: object) -> None:
        # Ray's `wait` re-raises it as a plain KeyboardInterrupt: noted here too.
        stops.sigterm, stops.signum = True, signum
        stops.stopping()
        raise Terminated(signum)

    def on_sigint(signum: int, frame: object) -> None:
        stops.stopping()
        raise KeyboardInterrupt()

    # A signal the process was started with ignored (e.g. SIGINT for a background
    # job of a script) stays ignored.
    previous = {signum: signal.signal(signum, handler)
                for signum, handler in ((signal.SIGTERM, on_sigterm), (signal.SIGHUP, on_sigterm),
                                        (signal.SIGINT, on_sigint))
                if signal.getsignal(signum) != signal.SIG_IGN}
    _blocks.append(stops)
    try:
        yield stops
    finally:
        _blocks.remove(stops)
        if stops.end is None or not _blocks:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


_blocks: list[Stops] = []       # the main thread's open `stops_as_interrupt` blocks


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Hold a Ctrl-C, or a SIGTERM that `search.exit.stops_as_interrupt` would raise,
    that arrives inside the block until the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = [s for s in (signal.SIGINT, *STOPPING) if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            previous[caught[0]](caught[0], None)


def exit_now(code: int) -> NoReturn:
    """Do what the interpreter's exit does first: threading's exit hooks (which stop
    thread pools) and joining the non-daemon threads (e.g. Ray stopping), then the
    atexit handlers (Ray's, logging's, MLflow's). Then close the SQLite databases,
    flush the standard streams, and end the process with `code`."""
    join_threads = getattr(threading, "_shutdown", None)      # CPython's own steps
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if join_threads is None or run_handlers is None:
        sys.exit(code)              # another Python: leave it to the normal exit
    if threading.current_thread() is threading.main_thread():
        # The work is written: a Ctrl-C or SIGTERM now (Ray stopping takes seconds)
        # ends the process with its status at once, not in a traceback.
        for signum in (signal.SIGINT, *STOPPING):
            if signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, lambda signum, frame: _quit(code))
    join_threads()
    run_handlers()
    _quit(code)


def _quit(code: int) -> NoReturn:
    """Close the SQLite databases, flush the standard streams, end with `code`."""
    if "hypersweep.search.sqlite" in sys.modules:
        sys.modules["hypersweep.search.sqlite"].close_all()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # closed, or a pipe with no reader
            pass
    os._exit(code)


def exit_code(e: SystemExit) -> int:
    """The status a SystemExit ends the process with (printing a message code)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1

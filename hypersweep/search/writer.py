"""The tracking process: an `MlflowTracker` that runs beside the driver.

`TrackingWriter()` starts the process, which imports MLflow at once (while the
driver checks the config); `open(uri)` then opens the store. After that it has
the tracker's methods. Writes (metrics, tags, artifacts,
trial and study ends) are sent down a pipe and return at once; the child process
imports MLflow, opens the store, draws the trials' figures and writes, in order,
while the driver goes on with the next trial. Creating a run returns a handle
(`@3`) that later calls may use at once; `resolve` waits for the real run id.
Reads wait for their answer.

The child runs in its own session, so Ctrl-C at the terminal reaches the driver
only: the driver then marks its trials failed and the child writes that down. When
the driver dies, the child finds its pipe closed, writes what it was sent and
exits. An error in the child is raised by the driver's next call to the writer.

    python -m hypersweep.search.writer      (started by TrackingWriter, not by hand)
"""
from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO, Callable, Sequence

from hypersweep.models.errors import StoreFileGone, UserError
from hypersweep.search import heap, store_template
from hypersweep.search.config import without_password
from hypersweep.search.exit import stops_deferred
from hypersweep.search.net import http_unreachable

_READS = frozenset({"find_parent", "experiment_state", "trashed_experiment", "epochs_logged",
                    "trial_runs", "unended_trial_runs", "trial_metrics",
                    "read_text", "log_final", "resolve", "sync"})
_WRITES = frozenset({"start_study", "start_trial", "flush", "end_trial", "end_lost_run",
                     "end_study", "log_files", "set_tags"})     # and log_metrics, held
HOLD_SECONDS = 0.5      # how long metrics may wait in the driver for the next pipe write
_CREATES = frozenset({"start_study", "start_trial"})     # answer with the new run id


class TrackingError(RuntimeError):
    """The tracking process failed: the MLflow store could not be written."""


class TrackingWriter:
    """An `MlflowTracker` in a child process; see the module docstring."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or ""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hypersweep.search.writer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True)
        self._out: BinaryIO = self._proc.stdin
        self._seq = 0
        self._held: list[bytes] = []                # metric frames not written yet
        self._held_since = 0.0
        self._answers: dict[int, tuple[bool, Any]] = {}
        self._ids: dict[str, str] = {}              # handle -> MLflow run id
        self._handles: dict[int, str] = {}          # seq of a create -> its handle
        self._error: str | None = None
        self._stopped = False                       # killed on purpose: not an error
        self._done = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                        name="tracking-replies", daemon=True)
        self._reader.start()
        if uri is not None:
            self.open(uri)

    def open(self, uri: str, wait: bool = False,
             meanwhile: Sequence[Callable[[], object]] = ()) -> None:
        """Open the MLflow store at `uri` in the child. Errors come with the next call,
        or, with `wait`, now: a UserError naming `tracking.uri`, before the caller
        writes anything elsewhere. `meanwhile`: work of the caller's own (imports it
        will need), done while the child has not answered yet: this process's core
        is idle then, while the child imports MLflow and opens the store."""
        self.uri = uri
        store_template.check_kind(uri, "mlflow")     # here: the child would only wrap it
        if wait:            # MLflow's client retries a dead server for minutes
            why = http_unreachable(uri)
            if why:
                raise UserError(f"tracking.uri: cannot reach {without_password(uri)}: {why}")
        seq = self._send("open", (uri,), {"answer": wait})
        if wait:
            for work in meanwhile:
                with self._done:
                    if seq in self._answers or self._error is not None:
                        break
                with contextlib.suppress(Exception):    # only ever a head start
                    work()
            try:
                self._wait(seq)
            except TrackingError as e:
                reason = str(e).removeprefix(f"{_where(uri)}: ")
                if reason.startswith("tracking.uri: "):
                    raise UserError(reason) from None
                raise UserError(f"tracking.uri: cannot open {without_password(uri)!r}: "
                                f"{reason}") from None

    # -- the tracker's methods

    def __getattr__(self, method: str):
        if method in _CREATES:
            return lambda *args, **kwargs: self._create(method, args, kwargs)
        if method in _WRITES:
            return lambda *args, **kwargs: self._send(method, args, kwargs)
        if method in _READS:
            return lambda *args, **kwargs: self._wait(self._send(method, args, kwargs))
        raise AttributeError(method)

    def log_metrics(self, run_id: str, step: int, metrics: Any) -> None:
        """Held here, and sent with the next other call or after `HOLD_SECONDS`:
        one pipe write for many epochs, where a write (and holding off Ctrl-C
        around it) cost more than the report it carried. The tracking process
        writes metrics to the store in batches anyway (every 2 s)."""
        self._raise()
        self._seq += 1
        if not self._held:
            self._held_since = time.monotonic()
        self._held.append(self._frame(self._seq, "log_metrics", (run_id, step, metrics), {}))
        if time.monotonic() - self._held_since >= HOLD_SECONDS:
            self._write(b"")

    def resolve(self, run_id: str) -> str:
        """The MLflow run id of a handle (waiting for it), or `run_id` itself."""
        if not run_id.startswith("@"):
            return run_id
        with self._done:
            self._done.wait_for(lambda: run_id in self._ids or self._error is not None)
        self._raise()
        return self._ids[run_id]

    def known(self, run_id: str) -> str | None:
        """The run id of a handle if the child has answered already, else None."""
        return run_id if not run_id.startswith("@") else self._ids.get(run_id)

    def sync(self) -> None:
        """Wait until the child has written everything sent so far."""
        self._wait(self._send("sync", (), {}))

    def close(self) -> None:
        """Send the end, wait for every write to land, then for the child to exit.
        A writer never opened has nothing to write: it is stopped at once."""
        if not self.uri and self._proc.poll() is None:
            self._stopped = True
            self._proc.kill()
        if not self._out.closed:
            try:
                self._write(b"")                    # metrics still held
            except TrackingError:
                pass                                # raised below, with the child's reason
            try:
                self._out.close()                   # the child's end-of-input
            except OSError:                         # it is gone already
                pass
        self._proc.wait()
        self._reader.join()
        self._raise()
        if self._proc.returncode and self.uri:
            raise TrackingError(f"{_where(self.uri)}: the tracking process "
                                f"{how_ended(self._proc.returncode)}")

    def __enter__(self) -> "TrackingWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self.close()
        except TrackingError:
            if exc_type is None:
                raise           # else the error in flight says more than this one

    # -- the pipe

    def _create(self, method: str, args: tuple, kwargs: dict) -> str:
        return f"@{self._send(method, args, kwargs, create=True)}"

    def _send(self, method: str, args: tuple, kwargs: dict, create: bool = False) -> int:
        self._raise()
        self._seq += 1
        if create:
            with self._done:        # before the child can answer
                self._handles[self._seq] = f"@{self._seq}"
        self._write(self._frame(self._seq, method, args, kwargs))
        return self._seq

    @staticmethod
    def _frame(seq: int, method: str, args: tuple, kwargs: dict) -> bytes:
        return pickle.dumps((seq, method, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)

    def _write(self, frame: bytes) -> None:
        """Write the held metrics, then `frame`, in one go."""
        data = b"".join([*self._held, frame])
        self._held = []
        if not data:
            return
        try:
            with stops_deferred():         # a frame cut in half would garble the pipe
                self._out.write(data)
                self._out.flush()
        except (BrokenPipeError, OSError):
            self._reader.join(timeout=5)
            self._raise()
            raise TrackingError(f"{_where(self.uri)}: the tracking process is gone (it "
                                f"{how_ended(self._proc.poll())})") from None

    def _wait(self, seq: int) -> Any:
        with self._done:
            self._done.wait_for(lambda: seq in self._answers or self._error is not None)
            answer = self._answers.pop(seq, None)
        if answer is None:
            self._raise()
        ok, value = answer
        if not ok:
            raise value if isinstance(value, BaseException) else TrackingError(str(value))
        return value

    def _read(self, stream: BinaryIO) -> None:
        while True:
            try:
                seq, ok, value = pickle.load(stream)
            except Exception as e:  # noqa: BLE001 - EOF or a garbled pipe: the child is done
                with self._done:
                    if not isinstance(e, EOFError) and self._error is None:
                        self._error = f"{_where(self.uri)}: unreadable answer: {e}"
                    if self._proc.wait() and self._error is None and not self._stopped:
                        self._error = (f"{_where(self.uri)}: the tracking process "
                                       f"{how_ended(self._proc.returncode)}")
                    self._done.notify_all()
                stream.close()
                return
            with self._done:
                if seq in self._handles:
                    if ok:
                        self._ids[self._handles.pop(seq)] = value
                    else:
                        self._error = str(value)
                elif seq == 0:                      # a failed write: the child's first error
                    self._error = self._error or str(value)
                else:
                    self._answers[seq] = (ok, value)
                self._done.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            raise TrackingError(self._error)


# ---------------------------------------------------------------- the child

WARM_UP_CALLS = 200


def _serve(inp: BinaryIO, out: BinaryIO) -> int:
    """Open the store the first call names, then apply each call in order; answer
    creates and reads. After the first failed write, later writes are skipped (they
    would build on it) and reads fail."""
    import mlflow.tracking  # noqa: F401 - the slow imports, done before the store is named
    with contextlib.suppress(ImportError):      # what a SQL store (SQLite, Postgres) needs
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    from hypersweep.models import figures
    from hypersweep.search import report
    from hypersweep.search.tracking import MlflowTracker

    gone = False        # the driver died: no one to answer, but its writes still land

    def answer(seq: int, ok: bool, value: Any) -> None:
        nonlocal gone
        if gone:
            return
        try:
            out.write(pickle.dumps((seq, ok, value), protocol=pickle.HIGHEST_PROTOCOL))
            out.flush()
        except OSError:         # BrokenPipeError: the driver's end is closed
            gone = True

    failure: str | None = None
    tracker: MlflowTracker | None = None
    uri = ""
    ids: dict[str, str] = {}
    # Once the store is open, and only while no call waits: pay the first figures'
    # imports and font loading before a trial's or the study's figures need them.
    # At the latest after WARM_UP_CALLS calls, they run anyway.
    idle: list[Callable[[], None]] = []
    calls = 0
    while True:
        while idle and (calls > WARM_UP_CALLS or not select.select([inp], [], [], 0)[0]):
            with contextlib.suppress(Exception):    # only ever a head start
                idle.pop(0)()
        calls += 1
        try:
            seq, method, args, kwargs = pickle.load(inp)
        except (EOFError, pickle.UnpicklingError):     # the driver is done, or died mid-frame
            break
        if method == "open":
            uri = args[0]
            try:
                tracker = MlflowTracker(uri)
            except Exception as e:  # noqa: BLE001 - reported to the driver, not raised here
                # Bad input (a server that is not MLflow's, refused credentials) as it
                # was said: `open` raises it again as one.
                failure = f"{_where(uri)}: {e}" if isinstance(e, UserError) else _describe(uri, e)
                answer(0, False, failure)
                continue
            if kwargs.get("answer"):
                answer(seq, True, None)
            idle = [figures.warm_up, report.warm_up, heap.release]
            continue
        if failure is not None:
            answer(seq, False, TrackingError(failure))
            continue
        args = tuple(ids.get(a, a) if isinstance(a, str) else a for a in args)
        try:
            if method == "sync":
                value = tracker.sync()
            elif method == "resolve":
                value = ids.get(args[0], args[0])
            else:
                value = getattr(tracker, method)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - reported to the driver, not raised here
            if method in _READS and method != "log_final":
                err = e if isinstance(e, UserError) else TrackingError(_describe(uri, e))
                answer(seq, False, err)     # a failed read leaves the store as it was
                continue
            failure = _describe(uri, e)
            answer(seq if method in _CREATES or method in _READS else 0, False, failure)
            continue
        if method in _CREATES:
            ids[f"@{seq}"] = value
        if method in _CREATES or method in _READS:
            answer(seq, True, value)
    if tracker is not None and failure is None:
        tracker.close()
    return 0 if failure is None else 1


def _where(uri: str) -> str:
    """What every tracking error starts with, in this process and in the child:
    `tracking (URI)`, the URI without its password."""
    return f"tracking ({without_password(uri)})"


def how_ended(code: int | None) -> str:
    """How a process ended, in words: `exited with code 1`, `was killed by SIGBUS`
    (a negative code is the signal's, which `exited with code -7` left to decode)."""
    if code is None:
        return "has not ended"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _describe(uri: str, e: BaseException) -> str:
    if isinstance(e, StoreFileGone):        # what happened, in words: not a fault's place
        return f"{_where(uri)}: {e}"
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{_where(uri)}: {type(e).__name__}: {first}{at}"


def main(argv: list[str]) -> int:
    heap.hold()     # released once the store is open and the figures are warm
    # Answers go to the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    # Run the importable module, so that the errors it pickles are search.writer's.
    from hypersweep.search import writer
    from hypersweep.search.exit import exit_now
    exit_now(writer.main(sys.argv[1:]))

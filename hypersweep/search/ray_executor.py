"""The Ray executor: each trial is a Ray task; the only module that imports Ray.

How reports reach the single writer and prune decisions get back:

    worker task --report(number, attempt, step, metrics)--> ReportBroker (async actor)
    driver: ray.wait([broker.take(), *trial tasks]) -> on_report -> broker.answer(...)
    the worker's blocked report call returns the driver's prune decision

A study that cannot prune (no pruner, or several objectives) has no decision to
wait for: its workers train on and post their reports in batches, at most one a
second (an actor call per epoch cost the relay and the driver a sixth of a core
with two workers). Posted reports may arrive out of order or after the trial's
result, so the worker also returns every report it made, and the driver forwards
any it has not seen before it hands the result on.

The broker only relays: it holds no store and writes nothing. The driver process
calls `on_report` for every epoch (MLflow metrics, Optuna report, should_prune), so
every pruner works under Ray exactly as in a serial run, and the SQLite stores are
touched by one process only, on the driver's machine.

Start-up: one `warm_up` task per trial slot imports what the first trials need
in the workers they will run on, while the driver opens the study.

Faults: an exception or NaN inside a trial is caught in the worker (`run_guarded`,
the training loop). A worker process that dies is Ray's to retry (task
`max_retries`); a retried attempt re-reports epochs the driver has already seen,
and those are not forwarded twice. Each retry is a line in `notices` (naming the
trial), in place of Ray's own console lines about the dead worker.
`trial_timeout` is enforced by the driver: it force-cancels the task (killing
its worker) and fails the trial.

The broker is part of the study, not of a trial: its death must not end the study.
Ray restarts it where its process dies (killed, out of memory), on the driver's
node, and sends it again the calls the dead process had not answered: a worker's
waiting report is relayed again, and the driver answers it as it did the first
time. Messages the dead process held for the driver are lost: a trial's start is
then known from its first report, a posted batch from the trial's result. A broker
gone for good (`ray.kill`) is replaced by a new one for the trials submitted from
then on; the running ones hold the old one, and train on without waiting for a
decision (they cannot be pruned): their epochs arrive with their result. Either is
a line in `notices`.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hypersweep.models.errors import UserError, first_line
from hypersweep.models.figures import Drawing, artifact_bytes, with_curve_metric
from hypersweep.models.trial import TrialResult, TrialSpec
from hypersweep.search.executors import (OnReport, TrainFn, auto_parallel, check_fits, failed,
                                         parallel_note, run_guarded,
                              trial_threads)
from hypersweep.search.exit import ClusterLost, Terminated
from hypersweep.search.net import http2_answer, unreachable

Placement = dict[str, str]         # {"node", "node_ip", "host", "device"}: where a trial ran
Reports = list[tuple[int, dict[str, float]]]     # (step, metrics), in the order made
POST_SECONDS = 1.0                 # a worker that need not wait posts this often at most
PROBE_SECONDS = 5.0                # a cluster address's first answer comes within this
UNIMPLEMENTED = 12                 # gRPC's status code for a method the server lacks


# ---------------------------------------------------------------- the broker

# Restarted by Ray whenever its process dies, each call retried until it is answered
# (see "Faults" above): its callers then see no error, only their messages lost.
@ray.remote(num_cpus=0, max_concurrency=1000, max_restarts=-1, max_task_retries=-1)
class ReportBroker:
    """Relays worker reports to the driver and the driver's decisions back."""

    def __init__(self) -> None:
        self._inbox: list[tuple] = []
        self._new = asyncio.Event()
        self._answers: dict[tuple[int, str, int], asyncio.Future] = {}
        # Each start of the broker says so: after the first one, Ray restarted it.
        self._post(("up", -1, ""))

    async def started(self, number: int, attempt: str, where: Placement) -> None:
        self._post(("started", number, attempt, where))

    async def report(self, number: int, attempt: str, step: int,
                     metrics: Mapping[str, float]) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._answers[(number, attempt, step)] = future
        self._post(("report", number, attempt, step, metrics))
        return await future

    async def post(self, number: int, attempt: str, reports: Reports) -> None:
        """Reports that need no answer (the study cannot prune)."""
        for step, metrics in reports:
            self._post(("report", number, attempt, step, metrics))

    async def take(self) -> list[tuple]:
        """Every message since the last take; waits for at least one."""
        await self._new.wait()
        self._new.clear()
        messages, self._inbox = self._inbox, []
        return messages

    async def answer(self, decisions: Sequence[tuple[int, str, int, bool]]) -> None:
        for number, attempt, step, stop in decisions:
            future = self._answers.pop((number, attempt, step), None)
            if future is not None and not future.done():
                future.set_result(stop)

    def _post(self, message: tuple) -> None:
        self._inbox.append(message)
        self._new.set()


# ---------------------------------------------------------------- the worker side

def device_for(gpu_ids: Sequence[Any], visible: str | None, cuda_ok: bool) -> str:
    """The torch device for the GPUs Ray assigned to this worker.

    Ray sets CUDA_VISIBLE_DEVICES to the assigned ids, so torch numbers them from 0;
    where it does not (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES) the id is global.
    """
    if not gpu_ids or not cuda_ok:
        return "cpu"
    first = str(gpu_ids[0])
    listed = [v.strip() for v in (visible or "").split(",") if v.strip()]
    return f"cuda:{listed.index(first)}" if first in listed else f"cuda:{first}"


def _placement() -> Placement:
    import torch

    ctx = ray.get_runtime_context()
    device = device_for(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                        torch.cuda.is_available())
    return {"node": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(), "device": device}


def run_trial(train: TrainFn, spec: TrialSpec, broker: Any, threads: int,
              prunes: bool = True, splits: Sequence[Any] = (),
              curve: str | None = None) -> tuple[Placement, TrialResult, Reports]:
    """The body of one trial's Ray task (one attempt): where it ran, its result, and
    the reports it made (`prunes`: wait for the driver's decision at each one;
    `splits`: [the ref of the dataset the driver loaded], fetched only by a worker
    that does not hold it yet; empty: the worker loads it; `curve`: what the
    learning curve plots beside the losses, the task's first metric where None)."""
    if splits:
        from hypersweep.models.train import preload
        preload(spec.data, lambda: ray.get(splits[0]))
    attempt = uuid.uuid4().hex[:8]
    where = _placement()
    broker.started.remote(spec.trial_number, attempt, where)
    spec = dataclasses.replace(spec, device=where["device"], threads=threads)
    sent: Reports = []
    posted, last_post = 0, time.monotonic()     # sent[:posted] are on their way
    gone = False                # the broker is dead for good: the result carries the rest

    def report(step: int, metrics: Mapping[str, float]) -> bool:
        nonlocal posted, last_post, gone
        sent.append((step, dict(metrics)))
        if gone:
            return False
        if prunes:
            try:
                return ray.get(broker.report.remote(spec.trial_number, attempt, step,
                                                    dict(metrics)))
            except ray.exceptions.RayActorError:
                # Killed with ray.kill (Ray restarts a broker whose process died, and
                # this call waits for it): no decision can come, the trial trains on.
                gone = True
                return False
        if time.monotonic() - last_post >= POST_SECONDS:
            broker.post.remote(spec.trial_number, attempt, sent[posted:])
            posted, last_post = len(sent), time.monotonic()
        return False

    return where, drawn(with_curve_metric(run_guarded(train, spec, report), curve)), sent


def warm_up() -> bool:
    """The body of a warm-up task, one per trial slot, sent as the executor starts
    when trials run the built-in training loop (`train_trial`; another `train`
    function's needs are not known). It pays what a worker's first trial would
    otherwise pay before training, while the driver opens the study, and with the
    garbage collector held off (its passes cost a quarter of these imports, see
    search/heap.py): torch and the training code, torch._dynamo (which torch's
    optimizers import on first use), matplotlib and its fonts. The trials then
    run on these warm workers, which Ray reuses. True when the worker warmed up;
    a failure here is left to the first trial, which reports it."""
    from hypersweep.search import heap

    heap.hold()
    try:
        import torch._dynamo  # noqa: F401

        import hypersweep.models.train  # noqa: F401
        from hypersweep.models import figures
        figures.warm_up()
        return True
    except Exception:  # noqa: BLE001 - the first trial meets it and reports it
        return False
    finally:
        heap.release()


def drawn(result: TrialResult) -> TrialResult:
    """The result with its figures drawn here, on the worker: many workers draw
    side by side, where the driver's tracking process would draw them one by one
    (the serial executor leaves them to that process, on the core it has spare)."""
    if not any(isinstance(v, Drawing) for v in result.artifacts.values()):
        return result
    return dataclasses.replace(result, artifacts={k: artifact_bytes(v)
                                                  for k, v in result.artifacts.items()})


# ---------------------------------------------------------------- the driver side

def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a private local instance; True when
    this process started Ray (and so must stop it)."""
    wait_stopped()
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    # "local" starts a new instance even when another `ray start` runs on this machine.
    before = descendants()
    handler = signal.getsignal(signal.SIGTERM)
    _keep_signal_dispositions()
    try:
        with _signals_outside_logging():
            ray.init(address=address or "local", include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=True)   # keep the CLI quiet
        quiet_trial_crashes()
        if handler is not None and threading.current_thread() is threading.main_thread():
            # Ray's own SIGTERM handler exits at once with status 15, with nothing
            # cleaned up; this process's (search.exit) stops the study instead.
            signal.signal(signal.SIGTERM, handler)
    except (ConnectionError, ValueError, RuntimeError) as e:
        token = "" if os.environ.get("RAY_AUTH_MODE") == "token" else (
            " (a cluster that requires a token, e.g. started where ~/.ray/auth_token exists, "
            "needs RAY_AUTH_MODE=token set for hypersweep too)")
        raise UserError(f"resources.address: cannot connect to Ray at {address!r}: "
                        f"{first_line(e)}{token if address else ''}") from None
    except (KeyboardInterrupt, SystemExit) as stop:
        # Ray's own SIGTERM handler, set as ray.init starts, ends the process with
        # status 15: a SIGTERM here is stopped as this process stops one (search.exit).
        if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
            raise
        # Stopped while Ray starts: `ray.shutdown` knows nothing of the processes
        # started so far, and Ray's agents outlived this process by minutes.
        for pid in descendants() - before:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if isinstance(stop, SystemExit):
            raise Terminated() from None
        raise
    return True


def outside_logging(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    """`handler`, but for a signal that came while logging's own code ran: that is
    sent again 50 ms later. Ray's start forks its processes, and logging's at-fork
    hooks take and release its module lock: an exception a handler raised there
    (SystemExit from Ray's SIGTERM handler, KeyboardInterrupt) was swallowed
    ("Exception ignored in: _releaseLock"), the stop lost and logging's lock left
    held, and the process hung for good at its end, Ray's processes with it."""
    def run(signum: int, frame: Any) -> Any:
        if frame is not None and frame.f_code.co_filename == logging.__file__:
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return None
        return handler(signum, frame)
    return run


@contextlib.contextmanager
def _signals_outside_logging() -> Any:
    """While Ray starts (`ray.init`), in the main thread: the Ctrl-C and SIGTERM
    handlers, and those Ray sets (its driver's, its local node's), as
    `outside_logging`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from ray._private import utils as ray_utils
    setter = getattr(ray_utils, "set_sigterm_handler", None)     # Ray's own, undocumented
    if setter is not None:
        ray_utils.set_sigterm_handler = lambda handler: setter(outside_logging(handler))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in handlers.items():
        if callable(handler):
            signal.signal(signum, outside_logging(handler))
    try:
        yield
    finally:
        if setter is not None:
            ray_utils.set_sigterm_handler = setter
        if callable(handlers[signal.SIGINT]):     # SIGTERM's: connect puts it back
            signal.signal(signal.SIGINT, handlers[signal.SIGINT])


def _keep_signal_dispositions() -> None:
    """Keep Ray's core from taking SIGTERM in this process: its failure-signal handler
    (a C++ stack dump on SIGSEGV, SIGTERM, ...) is installed as the driver connects,
    and uninstalled as it disconnects, which sets SIGTERM's disposition to the
    default at the C level under Python's handler. `ray.shutdown` runs beside the
    end of the study (stop_in_background): a SIGTERM then killed the process at once,
    the study's end half-written, where this process's handler (search.exit) holds
    it until the end is written. Ray reads the setting as its driver connects (its
    RAY_DISABLE_FAILURE_SIGNAL_HANDLER); the workers keep their handler."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import ray_constants
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True


# Ray's console lines (from the raylet) about a trial's worker that died: a
# paragraph of ids, then the retry; about the broker's: the same paragraph, then
# a line per call to it that Ray retries. The executor says each in one line instead.
_SAID_BY_THE_EXECUTOR = ("A worker died or was killed while executing a task",
                         f"Task {run_trial.__name__} failed. There are ",
                         "Task ReportBroker.")


def quiet_trial_crashes() -> None:
    """Keep Ray's own lines about a trial's dead worker off the console (the executor
    reports each retry and failure by trial), and a worker's after it lost its node;
    every other line of Ray's and of the workers still reaches it. Ray prints them
    through `ray._private.worker.print_to_stdstream` (from its error listener, and
    from a handler `ray.init` adds for the workers' lines), which Ray does not
    document: where it is not found (another Ray version), nothing changes."""
    try:
        from ray._private import worker
    except ImportError:
        return
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is not None and not getattr(printer, "quiet", False):
        worker.print_to_stdstream = _without_trial_crashes(printer)
    # The workers' own lines: `ray.init` bound a handler to the function as it was
    # then (functools.partial(print_to_stdstream, ...)); it takes the quiet one.
    quiet = getattr(worker, "print_to_stdstream", None)
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    handlers = getattr(dispatcher, "handlers", None)
    if not getattr(quiet, "quiet", False) or not isinstance(handlers, list):
        return
    dispatcher.handlers = [(name, _rebound(h, quiet)) for name, h in handlers]


def _rebound(handler: Any, quiet: Callable) -> Any:
    """A handler Ray bound to its own `print_to_stdstream`, bound to `quiet` instead."""
    if isinstance(handler, functools.partial) and not getattr(handler.func, "quiet", False) \
            and getattr(handler.func, "__name__", "") == "print_to_stdstream":
        return functools.partial(quiet, *handler.args, **handler.keywords)
    return handler


# A worker's fatal line (level C) about its raylet: the node it ran on was lost
# (`Check failed: raylet_ipc_client_->NotifyWorkerBlocked() ... Broken pipe`), and a
# C++ stack trace follows, with "You have likely discovered a bug in Ray".
_LOST_ITS_RAYLET = re.compile(r"^\[[^\]]* C \d+ \d+\] .*raylet")
ORPHAN_SECONDS = 60.0


def _without_trial_crashes(printer: Any) -> Any:
    condensed: set[str] = set()     # Ray says a node's loss twice: once here
    # Workers whose node was lost -> when: the rest of what they say (their stack
    # trace) for a minute, after which the pid may be another worker's.
    orphaned: dict[tuple, float] = {}

    def print_to_stdstream(data: dict, *args: Any, **kwargs: Any) -> None:
        lines = data.get("lines")
        worker = (data.get("ip"), data.get("pid"))
        if data.get("pid") != "raylet" and lines:
            # A worker whose raylet went: the executor says what becomes of its trial.
            if time.monotonic() - orphaned.get(worker, -ORPHAN_SECONDS) < ORPHAN_SECONDS:
                return
            cut = next((i for i, line in enumerate(lines) if _LOST_ITS_RAYLET.match(line)), None)
            if cut is not None:
                orphaned[worker] = time.monotonic()
                if not cut:
                    return
                data = {**data, "lines": lines[:cut]}
        elif data.get("pid") == "raylet" and lines:
            kept = []
            for line in lines:
                if any(said in line for said in _SAID_BY_THE_EXECUTOR):
                    continue
                short = _node_loss_line(line, data.get("ip"))
                if short != line:
                    if short in condensed:
                        continue
                    condensed.add(short)
                kept.append(short)
            if not kept:
                return
            data = {**data, "lines": kept}
        printer(data, *args, **kwargs)
    print_to_stdstream.quiet = True         # type: ignore[attr-defined]
    return print_to_stdstream


def _node_loss_line(line: str, ip: str | None) -> str:
    """Ray's paragraphs about a lost node, as their first sentence: a raylet that
    stopped came with the last 20 lines of its log and a state dump (38 lines per
    lost node, twice), a node marked dead with a list of possible causes."""
    if line.startswith("Raylet is terminated"):
        return (f"the raylet of a Ray node{f' ({ip})' if ip else ''} stopped unexpectedly "
                "(killed, out of memory, or a crash): its trials are retried up to "
                "resources.max_retries, on the nodes left")
    if "has been marked dead" in line:
        return line.split(" This can happen", 1)[0].split("\n", 1)[0]
    return line


def descendants() -> set[int]:
    """The ids of this process's descendants (from /proc; none where there is none)."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: set[int] = set()
    level = {os.getpid()}
    while level:
        level = {pid for pid, parent in parents.items() if parent in level} - found
        found |= level
    return found


_stopping: threading.Thread | None = None


def stop_in_background() -> None:
    """Stop the Ray instance this process started. Ray's shutdown mostly waits for
    its processes to exit (about a second here), so that wait runs beside the end
    of the study (figures, the last writes); the next `connect` in this process
    waits for it, and so does the interpreter's exit (the thread is not a daemon)."""
    global _stopping
    wait_stopped()
    _stopping = threading.Thread(target=ray.shutdown, name="ray-shutdown")
    _stopping.start()


def wait_stopped() -> None:
    """Return once a Ray instance being stopped is down."""
    if _stopping is not None:
        _stopping.join()


def _node_of(where: Placement) -> str:
    """A placement's node, as a user finds it: its IP, else its host name."""
    return str(where.get("node_ip") or where.get("host") or "")


@contextlib.contextmanager
def _node_kept():
    """Ray's calls, which fail with an OSError (`Broken pipe`, from Ray's core) once
    the node this process runs on has lost its raylet: raised as `ClusterLost`."""
    try:
        yield
    except OSError as e:
        if not raised_in_ray(e):
            raise
        raise ClusterLost(f"the Ray node this study runs on lost its Ray daemons ("
                          f"{type(e).__name__}: {first_line(e)}): its raylet was killed, "
                          "ran out of memory or crashed") from e


def raised_in_ray(e: BaseException) -> bool:
    """Whether `e` was raised in Ray's own code (its Python modules or its compiled
    core, `common.pxi`): Ray's connection to its daemons, not ours to a store."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return where.endswith(".pxi") or f"{os.sep}ray{os.sep}" in where


def _joined(address: str) -> str:
    """The address joined, as the user gave it; `auto` as the one Ray found."""
    if address != "auto":
        return address
    with contextlib.suppress(Exception):    # the context's fields are Ray's to change
        found = ray.get_runtime_context().gcs_address
        if found:
            return f"{found} (auto)"
    return address


def cluster_line(where: str, nodes: Sequence[Mapping[str, float]], capacity: int) -> str:
    """What the study runs on, for the line under its header: `on the Ray cluster
    at ADDR: 2 nodes, 3 CPUs, no GPU; 3 trials at once`."""
    cpus = sum(n.get("CPU", 0) for n in nodes)
    gpus = sum(n.get("GPU", 0) for n in nodes)
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    gpu = "no GPU" if not gpus else f"{gpus:g} GPU{'s' if gpus != 1 else ''}"
    return (f"on {where}: {count}, {cpus:g} CPU{'s' if cpus != 1 else ''}, {gpu}; "
            f"{capacity} trial{'s' if capacity != 1 else ''} at once")


def _check_reachable(address: str) -> None:
    """Fail fast on a wrong HOST:PORT: Ray itself retries a dead address for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return                      # "auto", or a form Ray resolves itself
    why = unreachable(host, int(port))
    if why:
        raise UserError(f"resources.address: cannot reach a Ray cluster at {address}: {why}")
    # A TLS cluster (RAY_USE_TLS) starts with a TLS handshake: the probe cannot tell.
    answer = "http2" if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false", "") \
        else http2_answer(host, int(port), PROBE_SECONDS)
    if answer == "other":
        raise UserError(f"resources.address: {address} answers, but not as a Ray cluster; give "
                        "the head node's GCS address (`ray start --head` prints it; port 6379 "
                        "unless --port), not the dashboard's (8265)")
    if answer == "silent":
        raise UserError(f"resources.address: {address} takes connections but sent nothing in "
                        f"{PROBE_SECONDS:g} s, where a Ray cluster answers at once (a stalled "
                        "tunnel or port-forward, or a process that hangs?)")
    if not address.startswith("ray://"):      # Ray Client's server is not the GCS
        _check_token(f"{host}:{port}", address)


def _check_token(gcs: str, address: str) -> None:
    """Fail fast on a cluster that refuses this process's token (none, without
    RAY_AUTH_MODE=token): `ray.init` asks it again every second for 20 s, a
    line of Ray's on the console each time. One request to its GCS tells (its
    line of Ray's kept off the console); any other outcome is `ray.init`'s to
    report."""
    try:
        from ray._raylet import GcsClient      # not documented: Ray's own connect uses it
        from ray.exceptions import AuthenticationError, RpcError
    except ImportError:
        return
    try:
        with _stderr_quiet():
            GcsClient(address=gcs)
    except RpcError as e:
        if getattr(e, "rpc_code", None) != UNIMPLEMENTED:
            return          # ray.init connects and reports it fully
        # gRPC, but no GCS behind it: a raylet's port, or another gRPC service;
        # ray.init asked it again and again for 27 s, a line of Ray's each time.
        raise UserError(f"resources.address: {address} answers gRPC, but not as a Ray "
                        "cluster's GCS (a raylet's or another service's port?); give the head "
                        "node's GCS address (`ray start --head` prints it; port 6379 unless "
                        "--port)") from None
    except AuthenticationError:
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            why = ("it requires a token: set RAY_AUTH_MODE=token for hypersweep too (a "
                   "cluster started where ~/.ray/auth_token exists requires one)")
        else:
            why = ("it refused this process's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                   "~/.ray/auth_token: the cluster's)")
        raise UserError(f"resources.address: cannot connect to Ray at {address!r}: "
                        f"{why}") from None
    except Exception:  # noqa: BLE001 - ray.init connects and reports it fully
        return


@contextlib.contextmanager
def _stderr_quiet():
    """File descriptor 2 to /dev/null for a moment: Ray's C++ code writes there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclasses.dataclass
class _Task:
    number: int
    started: float | None = None        # monotonic time the current attempt began
    attempts: int = 0
    # step forwarded to the driver -> its decision (a report said twice gets the same)
    seen: dict[int, bool] = dataclasses.field(default_factory=dict)
    where: Placement = dataclasses.field(default_factory=dict)
    done: bool = False
    runs: set[str] = dataclasses.field(default_factory=set)    # the attempts known to have started
    # where the earlier attempts ran (their workers died), in order: their placements
    earlier: list[Placement] = dataclasses.field(default_factory=list)


class RayExecutor:
    """Runs trials as Ray tasks with `cpus_per_trial` CPUs and `gpus_per_trial` GPUs."""

    def __init__(self, resources: Any, train: TrainFn | None = None, prunes: bool = True,
                 curve: str | None = None, most: int | None = None) -> None:
        """`prunes`: whether the study may stop a trial early (see `can_prune`);
        when it cannot, workers do not wait on the driver after each epoch. `most`:
        the most trials the study runs (its budget), where known: no more run at
        once, and no more slots are warmed up."""
        warm = train is None        # the training loop's imports are known: warm them up
        if train is None:
            from hypersweep.models.train import train_trial as train
        self._owns_ray = connect(resources.address)
        quiet_trial_crashes()       # also where Ray was started before (once per handler)
        where = (f"the Ray cluster at {_joined(resources.address)}" if resources.address
                 else "this machine's Ray instance" if self._owns_ray
                 else "the Ray cluster")         # joined in this process already
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        try:
            check_fits(nodes, resources.cpus_per_trial, resources.gpus_per_trial, where)
        except UserError:
            if self._owns_ray:
                ray.shutdown()
            raise
        fills = auto_parallel(nodes, resources.cpus_per_trial, resources.gpus_per_trial)
        self.capacity = fills if resources.parallel == "auto" else int(resources.parallel)
        # What runs at once: a 3-trial study at 0.2 CPUs a trial warmed 10 workers up
        # on 2 CPUs, and its first trial waited behind them.
        at_once = min(self.capacity, fills, most or fills)
        self.runs_on = cluster_line(where, nodes, at_once)
        # Lines for the user: what the study asked for that the cluster does not give.
        self.notes: list[str] = []
        if self.capacity > fills:
            self.notes.append(parallel_note(self.capacity, fills, where))
        self._timeout = resources.trial_timeout
        self._retries = resources.max_retries
        self._gpus = resources.gpus_per_trial
        self._no_cuda: set[str] = set()     # nodes whose GPUs torch cannot use: said once each
        self.notices: list[str] = []        # lines for the user as trials go (retries)
        # (trial, where its attempt started): tagged on its run while it trains
        self.placed: list[tuple[int, Placement]] = []
        self._broker = self._start_broker()
        self._broker_ups = 0                # the broker's starts: its first, then Ray's restarts
        slot = {"num_cpus": resources.cpus_per_trial, "num_gpus": resources.gpus_per_trial}
        # Warm-ups hold the slots the first trials will take, on workers they will reuse.
        self._warming = [ray.remote(warm_up).options(**slot, max_retries=0).remote()
                         for _ in range(at_once if warm else 0)]
        self._remote = ray.remote(run_trial).options(
            **slot, max_retries=resources.max_retries, retry_exceptions=False)
        self._train = ray.put(train)
        self._threads = trial_threads(resources.cpus_per_trial)
        self._prunes = prunes
        self._curve = curve         # what the learning curves plot beside the losses
        self._tasks: dict[ray.ObjectRef, _Task] = {}
        self._by_number: dict[int, _Task] = {}
        self._take: ray.ObjectRef | None = None
        self._datasets: dict[str, list[ray.ObjectRef]] = {}

    def submit(self, spec: TrialSpec) -> None:
        with _node_kept():
            self._submit(spec)

    def _submit(self, spec: TrialSpec) -> None:
        ref = self._remote.remote(self._train, spec, self._broker, self._threads, self._prunes,
                                  self._splits(spec.data), self._curve)
        self._tasks[ref] = self._by_number[spec.trial_number] = _Task(spec.trial_number)

    def _splits(self, data: Mapping[str, Any]) -> list[ray.ObjectRef]:
        """The dataset, loaded once here (validating the config loaded it already) and
        put in Ray's object store: workers, on any node, load nothing themselves.
        In a list, so that Ray hands the ref over unresolved and a worker that
        holds the dataset from its last trial does not copy it again. Empty (each
        worker loads it, and a trial fails with the reason) when it cannot be
        loaded here."""
        from hypersweep.models.train import data_key, loaded_splits

        key = data_key(data)
        if key not in self._datasets:
            try:
                self._datasets = {key: [ray.put(loaded_splits(data))]}   # one at a time
            except Exception:  # noqa: BLE001 - the trial reports it, from the worker
                self._datasets = {key: []}
        return self._datasets[key]

    def wait(self, on_report: OnReport) -> list[tuple[int, TrialResult]]:
        with _node_kept():
            return self._wait(on_report)

    def _wait(self, on_report: OnReport) -> list[tuple[int, TrialResult]]:
        while True:
            if self._take is None:
                self._take = self._broker.take.remote()
            ready, _ = ray.wait([self._take, *self._tasks], num_returns=1,
                                timeout=self._until_deadline())
            if self._take in ready:
                take, self._take = self._take, None
                try:
                    messages = ray.get(take)
                except ray.exceptions.RayActorError:
                    messages = []
                    self._broker_gone()
                self._relay(messages, on_report)
            done = self._collect(on_report) + self._expire()
            # Also with nothing done, where a trial started or was retried: the
            # driver tags its run and says so now, not when some trial next ends.
            if done or self.placed or self.notices:
                return done

    def where(self, number: int) -> Placement:
        """Where the trial's last attempt ran: the child run's node/device tags, and
        `attempts` where Ray ran it more than once (its worker died)."""
        task = self._by_number.get(number)
        if task is None:
            return {}
        retried = {"attempts": str(task.attempts)} if task.attempts > 1 else {}
        if task.earlier:    # the node a worker died on, which the last attempt's tags replace
            # In the forms of the `node` and `node_ip` tags, to compare with them
            retried["earlier_nodes"] = ", ".join(str(w.get("node") or _node_of(w))
                                                 for w in task.earlier)
            retried["earlier_node_ips"] = ", ".join(_node_of(w) for w in task.earlier)
        return {**task.where, **retried}

    def shutdown(self) -> None:
        if self._warming:
            # Cancel only the warm-ups still running (a study that ended before they
            # did). Cancelling a finished one can meet its reply being handled, and
            # Ray then aborts the process ("An unexpected system state", in
            # TaskManager::CompletePendingTask): it did once in the test suite.
            _, running = ray.wait(self._warming, num_returns=len(self._warming), timeout=0)
            for ref in running:
                ray.cancel(ref)
        for ref in list(self._tasks):
            ray.cancel(ref, force=True)
        self._tasks.clear()
        if ray.is_initialized() and self._broker is not None:      # not stopped already
            ray.kill(self._broker)
        # Let go of every Ray object and handle while Ray still runs: one freed
        # later, as the instance stops in the background, calls into a stopped
        # worker, and Ray then ends the whole process.
        self._warming, self._take, self._train, self._datasets = [], None, None, {}
        self._broker = None
        if ray.is_initialized() and self._owns_ray:
            stop_in_background()

    # -- helpers

    @staticmethod
    def _start_broker() -> Any:
        # On the driver's own node, and only there: Ray placed a softly pinned broker
        # on a worker node about half the time, and the loss of that node then
        # ended the whole study, its runs left RUNNING.
        here = ray.get_runtime_context().get_node_id()
        return ReportBroker.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()

    def _broker_gone(self) -> None:
        """The broker is dead for good (killed with `ray.kill`; Ray restarts one whose
        process died): a new one relays the trials submitted from now on. The running
        ones train on and report with their result; a trial that had not said it
        started yet may have said so to the dead one: its trial_timeout runs from now."""
        self._broker, self._broker_ups = self._start_broker(), 0
        now = time.monotonic()
        for task in self._tasks.values():
            if task.started is None:
                task.started = now
        self.notices.append(
            "the Ray actor that relays the trials' epochs to this process (ReportBroker) "
            "is gone; started a new one: the trials running now send their epochs as they "
            f"end{', and cannot be pruned' if self._prunes else ''}")

    def _relay(self, messages: list[tuple], on_report: OnReport) -> None:
        decisions = []
        for kind, number, attempt, *rest in messages:
            if kind == "up":
                self._broker_ups += 1
                if self._broker_ups > 1:
                    self.notices.append(
                        "the Ray actor that relays the trials' epochs to this process "
                        "(ReportBroker) died; Ray restarted it, and the trials go on")
                continue
            task = self._by_number.get(number)
            if kind == "started":
                if task is not None:
                    self._started(task, attempt, dict(rest[0]))
                continue
            step, metrics = rest
            if task is None or task.done:
                decisions.append((number, attempt, step, True))     # finished or cancelled
                continue
            if attempt not in task.runs:
                self._started(task, attempt, {})    # its "started" was lost with a broker
            stop = self._forward(task, step, metrics, on_report)
            decisions.append((number, attempt, step, stop))
        if decisions and self._prunes:
            self._broker.answer.remote(decisions)

    def _started(self, task: _Task, attempt: str, where: Placement) -> None:
        """An attempt of the task started, on `where` (empty: not known, its own
        message lost with a broker that died, and taken from its first report)."""
        if attempt not in task.runs:
            task.runs.add(attempt)
            task.started = time.monotonic()
            task.attempts += 1
            if task.where:              # the attempt before, whose worker died
                task.earlier.append(task.where)
            if task.attempts > 1:       # Ray retries a task whose worker died only
                self.notices.append(
                    f"trial {task.number}: its worker died; retrying it (attempt "
                    f"{task.attempts} of {self._retries + 1}, resources.max_retries)")
        elif not where or where == task.where:
            return                      # said again: a call to the broker that Ray retried
        task.where = where
        if where:
            self.placed.append((task.number, self.where(task.number)))
        node = _node_of(where)
        if self._gpus and where.get("device") == "cpu" and node not in self._no_cuda:
            self._no_cuda.add(node)
            self.notices.append(
                f"trial {task.number}: Ray gave it {self._gpus:g} GPU on node {node}, but torch "
                "there sees no CUDA device (a node started with --num-gpus but no CUDA, or a "
                "CPU build of torch): it trains on the CPU")

    @staticmethod
    def _forward(task: _Task, step: int, metrics: Mapping[str, float], on_report: OnReport) -> bool:
        """Hand a report to the driver once: a step seen before (re-reported by a
        retry or by a restarted broker, or carried by both a posted batch and the
        result) goes no further, and gets the decision it got the first time."""
        if step in task.seen:
            return task.seen[step]
        task.seen[step] = stop = bool(on_report(task.number, step, metrics))
        return stop

    def _collect(self, on_report: OnReport) -> list[tuple[int, TrialResult]]:
        if not self._tasks:
            return []
        ready, _ = ray.wait(list(self._tasks), num_returns=len(self._tasks), timeout=0)
        out = []
        for ref in ready:
            task = self._tasks.pop(ref)
            try:
                where, result, sent = ray.get(ref)
                task.where = dict(where)
                for step, metrics in sent:      # posted reports still on their way
                    self._forward(task, step, metrics, on_report)
            except ray.exceptions.RayError as e:
                result = failed(self._crash_reason(task, e))
            task.done = True
            out.append((task.number, result))
        return out

    def _crash_reason(self, task: _Task, e: Exception) -> str:
        if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                          ray.exceptions.OutOfMemoryError)):
            attempts = max(task.attempts, 1)
            each = f"in each of {attempts} attempts" if attempts > 1 else "in its only attempt"
            return (f"worker died ({type(e).__name__}) {each} "
                    f"(resources.max_retries: {self._retries})")
        first = str(e).strip().splitlines()
        return f"{type(e).__name__}: {first[0] if first else ''}"[:2000]

    def _expire(self) -> list[tuple[int, TrialResult]]:
        if self._timeout is None:
            return []
        now, out = time.monotonic(), []
        for ref, task in list(self._tasks.items()):
            if task.started is not None and now - task.started > self._timeout:
                ray.cancel(ref, force=True)     # kills the worker: the trial stops now
                del self._tasks[ref]
                task.done = True
                out.append((task.number, failed(
                    f"timed out after {self._timeout:g} s (resources.trial_timeout)")))
        return out

    def _until_deadline(self) -> float | None:
        starts = [t.started for t in self._tasks.values() if t.started is not None]
        if self._timeout is None:
            return None
        if not starts:
            return 1.0                          # a trial may start any moment: look again
        return max(0.0, min(starts) + self._timeout - time.monotonic()) + 0.01


"""Executors run `train_trial` somewhere and route its reports to the driver.

The driver owns every write. An executor only computes: it calls back
`on_report(trial_number, step, metrics) -> should_stop` for each epoch and hands
back `(trial_number, TrialResult)` pairs as trials finish.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import traceback
from typing import Any, Callable, Mapping, Protocol, Sequence

from hypersweep.models.errors import ExitInModel, UserError
from hypersweep.models.figures import curve_metric, with_curve_metric
from hypersweep.models.trial import TrialResult, TrialSpec, TrialState

OnReport = Callable[[int, int, Mapping[str, float]], bool]
TrainFn = Callable[..., TrialResult]


class Executor(Protocol):
    capacity: int   # how many trials may run at once

    def submit(self, spec: TrialSpec) -> None: ...

    def wait(self, on_report: OnReport) -> list[tuple[int, TrialResult]]:
        """Block until at least one submitted trial finishes; return those that did."""
        ...

    def shutdown(self) -> None: ...

    # Optional: `where(number) -> {"node", "host", "device"}`, the trial's placement,
    # which the driver records as child-run tags; `notices`, a list of lines for the
    # user (a trial retried), which the driver takes after each `wait`.


def failed(reason: str, history: tuple = ()) -> TrialResult:
    return TrialResult(TrialState.FAIL, metrics={}, history=history, epochs=len(history),
                       reason=reason)


def run_guarded(train: TrainFn, spec: TrialSpec, report: Callable) -> TrialResult:
    """Run one trial; an exception fails that trial only, with its reason."""
    history: list[dict] = []

    def recording_report(step: int, metrics: Mapping[str, float]) -> bool:
        history.append(dict(metrics))
        return report(step, metrics)

    try:
        return train(spec, recording_report)
    except Exception as e:  # noqa: BLE001 - any fault inside a trial fails that trial only
        return failed(failure_reason(e), tuple(history))
    except SystemExit as e:
        frames = traceback.extract_tb(e.__traceback__)
        if frames and "/ray/" in frames[-1].filename:
            raise           # Ray's signal handler ending its worker, not the trial's code
        # The model's sys.exit (argparse's, say) in its forward: that trial's fault.
        return failed(failure_reason(ExitInModel.of(e)), tuple(history))


def failure_reason(e: Exception) -> str:
    """A trial's failure reason. A `UserError` is about the user's input (a value out
    of range): its message alone. Any other exception is a fault: its type and the
    file and line that raised it, for whoever debugs it."""
    if isinstance(e, UserError):
        return str(e)
    frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
    # The deepest line of code of this project or the study's own (a model of its
    # own), not torch's: `nets.py:41`, where the call into the library was made.
    ours = [f for f in frames if not _library(f.filename)]
    where = (ours or frames)[-1] if frames else None
    at = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    if where is not None and ours and _in_a_layer(frames[frames.index(where) + 1:]):
        # torch's layers raised, called from the training loop: the model's own layers
        # (an nn.Sequential of one's own has no line of its own to name)
        at = f" (in a layer of the model, {_layer(frames)}; called at {at[2:-1]})"
    return f"{type(e).__name__}: {e}{at}"


def _in_a_layer(frames: Sequence[traceback.FrameSummary]) -> bool:
    return any("/torch/nn/modules/" in f.filename for f in frames)


def _layer(frames: Sequence[traceback.FrameSummary]) -> str:
    """The torch layer module whose code raised: `conv.py`, named as torch's file."""
    deepest = [f for f in frames if "/torch/nn/modules/" in f.filename][-1]
    return f"torch.nn {deepest.filename.rsplit('/', 1)[-1]}"


def _library(filename: str) -> bool:
    """Whether a file is an installed library's or Python's own."""
    import sysconfig
    paths = sysconfig.get_paths()
    return ("site-packages" in filename or "dist-packages" in filename
            or filename.startswith((paths["stdlib"], paths["platstdlib"], "<")))


class SerialExecutor:
    """Runs each trial in this process, one at a time: the debugging executor."""

    capacity = 1

    def __init__(self, train: TrainFn | None = None, threads: int | None = None,
                 curve: str | None = None) -> None:
        if train is None:
            from hypersweep.models.train import train_trial as train
        self._train = train
        self._threads = threads
        self._curve = curve     # what the learning curves plot beside the losses
        self._queue: list[TrialSpec] = []
        self.notes: list[str] = []      # for the user: what the study asked that this does not do

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)

    def wait(self, on_report: OnReport) -> list[tuple[int, TrialResult]]:
        spec = self._queue.pop(0)
        if self._threads and spec.threads is None:     # cpus_per_trial, as under Ray
            spec = dataclasses.replace(spec, threads=self._threads)
        result = run_guarded(self._train, spec,
                             lambda step, m: on_report(spec.trial_number, step, m))
        return [(spec.trial_number, with_curve_metric(result, self._curve))]

    def where(self, number: int) -> Mapping[str, str]:
        return {"node": socket.gethostname(), "host": socket.gethostname(), "device": "cpu"}

    def shutdown(self) -> None:
        self._queue.clear()


def start_up_work(cfg) -> list[Callable[[], object]]:
    """Imports this process will need, for the driver to do while it waits on the
    tracking process to open the MLflow store (TrackingWriter.open's `meanwhile`):
    fANOVA's at the study's end, and, where trials train here (the serial
    executor), torch's compiler, which the first optimizer imports (a second or
    more of a trial's start-up) even where nothing is compiled."""
    from hypersweep.search.importance import warm_up
    work: list[Callable[[], object]] = []
    if cfg.resources.executor == "serial":
        work.append(lambda: __import__("torch._dynamo"))
    return [*work, warm_up]


def trial_threads(cpus_per_trial: float) -> int:
    """The torch threads a trial trains on: its CPUs, whole, at least one."""
    return max(1, int(cpus_per_trial))


def study_threads(resources: Any) -> int:
    """The torch threads each trial of a study trains on: its CPUs, whole; under the
    serial executor, whose trials run in this process, no more than this machine's
    CPUs (64 threads on 2 cores only slow a trial down; config_notes says)."""
    threads = trial_threads(resources.cpus_per_trial)
    return min(threads, os.cpu_count() or 1) if resources.executor == "serial" else threads


def make_executor(cfg, done: int = 0) -> Executor:
    """The executor a study config asks for; `done`: the trials a resumed study has
    run already (no more than the rest of its budget run at once)."""
    curve = curve_metric([o.metric for o in cfg.search.objectives])
    if cfg.resources.executor == "serial":
        # What it does not do (parallel > 1, GPUs): config_notes says.
        return SerialExecutor(threads=study_threads(cfg.resources), curve=curve)
    if cfg.resources.executor == "ray":
        from hypersweep.search.ray_executor import RayExecutor    # the only module importing Ray
        from hypersweep.search.strategies import can_prune
        return RayExecutor(cfg.resources, prunes=can_prune(cfg.search), curve=curve,
                           most=max(1, cfg.search.trials - done))
    from hypersweep.models.errors import UserError
    raise UserError(f"resources.executor: unknown executor '{cfg.resources.executor}'; "
                    f"valid: ray, serial")


def check_fits(nodes: Sequence[Mapping[str, float]], cpus_per_trial: float,
               gpus_per_trial: float, where: str = "the Ray cluster") -> None:
    """Fail unless some node (its Ray resources) can hold one trial: a task that no
    node can hold waits in Ray's queue forever, with only the autoscaler's
    warnings to show for it. `where` names the cluster in the message."""
    def has(node: Mapping[str, float], key: str, need: float) -> bool:
        return node.get(key, 0.0) >= need - 1e-9

    if any(has(n, "CPU", cpus_per_trial) and has(n, "GPU", gpus_per_trial) for n in nodes):
        return
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if gpus_per_trial > most_gpus:
        has_gpus = f"at most {most_gpus:g} GPUs on one node" if most_gpus else "no GPU"
        raise UserError(f"resources.gpus_per_trial: {gpus_per_trial:g} GPU per trial, but {where} "
                        f"has {has_gpus}; use gpus_per_trial: 0 to train on CPUs")
    if not most_cpus:
        raise UserError(f"resources.cpus_per_trial: {cpus_per_trial:g} CPUs per trial, but no "
                        f"node of {where} has a CPU for Ray's tasks (a head node started with "
                        "--num-cpus 0 and no worker node joined?); join a node with CPUs")
    if cpus_per_trial > most_cpus:
        raise UserError(f"resources.cpus_per_trial: {cpus_per_trial:g} CPUs per trial, but {where} "
                        f"has at most {most_cpus:g} CPUs on one node; valid: up to {most_cpus:g}")
    raise UserError(f"resources: no node of {where} has both {cpus_per_trial:g} CPUs "
                    f"(resources.cpus_per_trial) and {gpus_per_trial:g} GPU "
                    "(resources.gpus_per_trial) for one trial")


def check_fits_here(resources: Any) -> list[str]:
    """What `validate` can tell of a study's resources without starting Ray: with
    no cluster address, one trial must fit this machine, whose CPUs and CUDA
    devices bound what a local Ray instance counts. The notes `run` would print of
    them (`parallel_note`)."""
    if resources.executor != "ray" or resources.address:
        return []
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nodes = [{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}]
    where = "this machine's Ray instance"
    check_fits(nodes, resources.cpus_per_trial, resources.gpus_per_trial, where=where)
    fills = auto_parallel(nodes, resources.cpus_per_trial, resources.gpus_per_trial)
    if resources.parallel != "auto" and int(resources.parallel) > fills:
        return [parallel_note(int(resources.parallel), fills, where)]
    return []


def parallel_note(parallel: int, fills: int, where: str) -> str:
    """The note on a `resources.parallel` above what the cluster runs at once."""
    return (f"resources.parallel: {parallel} trials at once, but {where} runs {fills} at a "
            "time; the others wait in Ray's queue, and count as running meanwhile (parallel: "
            "auto fills the cluster)")


def auto_parallel(nodes: Sequence[Mapping[str, float]], cpus_per_trial: float,
                  gpus_per_trial: float) -> int:
    """How many trials fill the cluster: on each node (its Ray resources), as many
    as its CPUs hold and, when trials use GPUs, as many as its GPUs hold too; at
    least one. Counted per node: two nodes of 3 CPUs hold two 2-CPU trials, not 3."""
    def holds(node: Mapping[str, float]) -> int:
        n = int(node.get("CPU", 0.0) / cpus_per_trial + 1e-9)
        if gpus_per_trial > 0:
            n = min(n, int(node.get("GPU", 0.0) / gpus_per_trial + 1e-9))
        return n

    return max(1, sum(holds(node) for node in nodes))

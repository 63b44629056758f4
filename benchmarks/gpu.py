"""GPU benchmarks: training throughput on the GPU (fp32, bf16) against the CPU, and
studies that pack several trials on one GPU (`gpus_per_trial` below 1).

    python -m benchmarks.run --only gpu          # into RESULTS.md (needs CUDA)
    python -m benchmarks.gpu [--quick] [--device cpu]

1. Seconds per epoch for a set of builders on the dataset each is meant for: on
   the GPU in fp32 and in bf16 (`params.precision`), and on all of this machine's
   CPU cores. The dataset sits on the GPU once per process and batches are cut
   there, so an epoch copies nothing from the host.
2. One study (digits MLP, 16 trials) on Ray with `gpus_per_trial` 1, 0.5, 0.25 and
   0.125 (`parallel: auto`: 1, 2, 4 and 8 trials on the GPU at once), and with
   CPUs only (one trial per core): trial throughput end to end (from the
   executor's start until the last trial is written to MLflow), the most trials
   seen training at the same moment, and the devices the child runs record.

On a machine without CUDA, `make bench` skips this section and keeps the one
measured on a GPU machine (`available`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Sequence

from benchmarks import markdown_table
from benchmarks.bench_builders import bench
from benchmarks.executors import _driver_seconds, study
from hypersweep.models.trial import TrialResult, TrialSpec

SECTION = "gpu"
TITLE = "GPU: training throughput, bf16, fractional GPUs per trial"
BUILDERS = ("mlp", "lenet", "alexnet", "resnet", "lstm", "char_lm", "seq2seq")
GPU_SHARES = (1.0, 0.5, 0.25, 0.125)


def available() -> str | None:
    """None when this benchmark can run here, else why not."""
    import torch
    return None if torch.cuda.is_available() else "no CUDA device on this machine"


def throughput(device: str, epochs: int, quick: bool) -> list[dict]:
    rows = []
    for name in BUILDERS[:2] if quick else BUILDERS:
        gpu, bf16 = (bench(name, epochs, quick, device=device, threads=1, precision=p)
                     for p in ("fp32", "bf16"))
        cpu = bench(name, epochs, quick, device="cpu", threads=None)
        rows.append({"builder": name, "data": gpu["data"], "parameters": int(gpu["params"]),
                     f"{device} fp32 s/epoch": gpu["s_per_epoch"],
                     f"{device} bf16 s/epoch": bf16["s_per_epoch"],
                     f"CPU ({os.cpu_count()} cores) s/epoch": cpu["s_per_epoch"],
                     "CPU / GPU fp32": cpu["s_per_epoch"] / gpu["s_per_epoch"],
                     "fp32 / bf16": gpu["s_per_epoch"] / bf16["s_per_epoch"]})
    return rows


def timed(spec: TrialSpec, report) -> TrialResult:
    """`train_trial`, reporting with each epoch the wall-clock moment the trial
    began (`began_at`) and that epoch's end (`ended_at`): the child run's last
    values span the trial, to see how many trials trained at the same time."""
    from hypersweep.models.train import train_trial

    began = time.time()
    return train_trial(spec, lambda epoch, metrics: report(
        epoch, {**metrics, "began_at": began, "ended_at": time.time()}))


def most_at_once(intervals: Sequence[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one moment."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = best = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def packing(trials: int, epochs: int, device: str) -> list[dict]:
    import cloudpickle
    from mlflow.tracking import MlflowClient

    if __name__ != "__main__":          # Ray workers need not import benchmarks/
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    shares = [(f"gpus_per_trial {g:g}", {"gpus_per_trial": g}) for g in GPU_SHARES] \
        if device != "cpu" else []
    shares.append((f"CPU only, {os.cpu_count()} cores", {"gpus_per_trial": 0}))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for i, (label, res) in enumerate(shares):
            d = Path(tmp, str(i))
            d.mkdir()
            cfg = study(f"pack-{i}", d, trials, epochs, executor="ray", parallel="auto",
                        cpus_per_trial=1, **res)
            startup, ends, written = _driver_seconds(cfg, timed)
            client = MlflowClient(tracking_uri=cfg["tracking"]["uri"])
            exp = client.get_experiment_by_name(f"pack-{i}")
            runs = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
                    if r.data.tags.get("hypersweep.role") == "trial"]
            spans = [(r.data.metrics["began_at"], r.data.metrics["ended_at"]) for r in runs
                     if "began_at" in r.data.metrics]
            rows.append({"trials on": label, "completed": len(spans),
                         "most training at once": most_at_once(spans),
                         "devices": ", ".join(sorted({r.data.tags.get("device", "?") for r in runs})),
                         "Ray start s": startup, "end to end s": written,
                         "trials/s": trials / written})
    base = rows[0]["trials/s"]
    for r in rows:
        r["vs first row"] = r["trials/s"] / base
    return rows


def run(quick: bool = False, device: str = "cuda") -> str:
    import torch

    epochs, trials, trial_epochs = (2, 4, 2) if quick else (4, 16, 20)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU"
    speed = throughput(device, epochs, quick)
    packed = packing(trials, trial_epochs, device)
    return textwrap.dedent(f"""\
        {'Quick run (small sizes). ' if quick else ''}Device: {name}; torch {torch.__version__}.

        Seconds per epoch (median after the first epoch; {epochs} epochs; default
        hyperparameters, batch size 64 unless the builder sets another). The GPU rows use
        one CPU thread; the CPU row uses all {os.cpu_count()} cores.

        {{speed}}

        Fractional GPUs: {trials} trials of the digits MLP (2 x 128, {trial_epochs} epochs,
        batch 64) on Ray with `parallel: auto`, one CPU per trial; "most training at once"
        is read from the wall-clock spans each trial recorded, "devices" from the child
        runs' `device` tags.

        {{packed}}
        """).format(speed=markdown_table(speed), packed=markdown_table(packed))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks the harness runs")
    p.add_argument("--device", default="cuda", help="cuda, or cpu to check the harness without a GPU")
    args = p.parse_args(argv)
    print(run(quick=args.quick, device=args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Executor benchmarks: platform overhead, parallel scaling, per-trial scheduling cost.

    python -m benchmarks.executors [--quick]

Prints one markdown section (also returned by `run(quick)` for benchmarks/run.py):
1. `hypersweep run` (serial executor) against a plain PyTorch script training the
   same N configurations, both as fresh processes: ratio of wall times (goal <= 1.10),
   the median of rounds that run both sides back to back (which goes first
   alternates), for short trials (about a second each) and ten times longer ones. The extra
   seconds are split into a per-study part (imports, creating both stores, the
   end-of-study report) and a per-trial part, estimated from the two lengths.
2. The same study with `parallel: 2` on Ray against the serial executor, each in
   a new Python process: trial throughput ratio (goal >= 1.7 on 2 cores), end to
   end (from the executor's start until the last trial is written to MLflow; Ray's
   own start-up is timed separately) and in the steady state (after each worker's
   warm-up and first trial), for trials of about 0.4 s, 2 s and 7 s; beside it, the
   ceiling this machine allows: two plain training processes side by side
   against one. The serial executor is not one core's worth of work: its tracking
   process draws each trial's figures and writes MLflow on another core. Its CPU
   use in the steady state (cores) bounds what any executor can gain with the same
   work per trial: about cpu_count / cores (an estimate: the steady-state rates
   are as noisy as the rest).
3. Trivially short trials: the platform's cost per trial (Optuna ask/tell, the
   MLflow child run, until written) with the serial executor, and what Ray adds on
   top (reference: Ray Tune with actor reuse is about 30 ms per trial).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Sequence

import yaml

from hypersweep.models.trial import TrialResult, TrialSpec, TrialState

SECTION = "executors"
TITLE = "Executors: platform overhead, parallel scaling, per-trial scheduling"
ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("hypersweep"))


def study(name: str, d: Path, trials: int, epochs: int, **resources) -> dict:
    """A digits MLP study whose trials all cost about the same (fixed width/depth)."""
    return {
        "study": name, "model": "mlp", "data": {"name": "digits"},
        "params": {"epochs": epochs, "batch_size": 64, "width": 128, "depth": 2,
                   "optimizer": "adam"},
        "space": {"lr": {"loguniform": [1e-4, 1e-2]}, "dropout": {"uniform": [0.0, 0.3]}},
        "search": {"strategy": "random", "trials": trials, "seed": 11},
        "resources": {"executor": "serial", "cpus_per_trial": 1, **resources},
        "tracking": {"uri": f"sqlite:///{d / 'mlflow.db'}", "storage": f"sqlite:///{d / 'optuna.db'}"},
    }


PLAIN_SCRIPT = textwrap.dedent('''
    # A plain PyTorch script: train each configuration, print its val accuracy, then
    # the seconds spent training (imports excluded).
    import json, sys, time, torch
    from torch import nn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    torch.set_num_threads(1)
    configs, epochs = json.loads(sys.argv[1]), int(sys.argv[2])
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32); y = torch.tensor(y)
    idx = torch.arange(len(y)).numpy()
    tr, va = train_test_split(idx, test_size=0.4, random_state=0)
    xt, yt, xv, yv = x[tr], y[tr], x[va[:len(va) // 2]], y[va[:len(va) // 2]]
    start = time.perf_counter()
    for c in configs:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(c["dropout"]),
                              nn.Linear(128, 128), nn.ReLU(), nn.Dropout(c["dropout"]),
                              nn.Linear(128, 10))
        opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
        for epoch in range(epochs):
            model.train()
            for b in torch.randperm(len(yt)).split(64):
                loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
                opt.zero_grad(); loss.backward(); opt.step()
            model.eval()
            with torch.no_grad():
                out = model(xv)
                acc = (out.argmax(1) == yv).float().mean().item()
                val_loss = nn.functional.cross_entropy(out, yv).item()
        print(c, acc)
    print(time.perf_counter() - start)
''')


def _timed(cmd: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def platform_overhead(trials: int, epochs: int, repeat: int = 3) -> dict:
    """`repeat` rounds, each running `hypersweep run` (fresh stores) and the plain
    script on the same configurations back to back, so that a noisy moment on the
    machine hits both sides alike; which side goes first alternates between rounds,
    so that a machine slowing down or speeding up over a round favours neither.
    The ratio is the median of the rounds' ratios; the wall times are each side's
    median (the per-study and per-epoch split uses their difference)."""
    import optuna

    hs, plain = [], []
    params: list[dict] | None = None      # the study's configurations: the same each round
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        script = Path(tmp) / "plain.py"
        script.write_text(PLAIN_SCRIPT)
        for round_ in range(repeat):
            d = Path(tmp) / f"round-{round_}"
            d.mkdir()
            cfg = d / "study.yaml"
            cfg.write_text(yaml.safe_dump(study("overhead", d, trials, epochs)))

            def ours() -> None:
                hs.append(_timed([EXE, "run", str(cfg)]))

            def theirs() -> None:
                plain.append(_timed([sys.executable, str(script), json.dumps(params),
                                     str(epochs)]))

            if params is not None and round_ % 2:
                theirs()
                ours()
            else:
                ours()
                if params is None:
                    params = [t.params for t in optuna.load_study(
                        study_name="overhead", storage=f"sqlite:///{d / 'optuna.db'}").trials]
                theirs()
    h, p = statistics.median(hs), statistics.median(plain)
    ratios = [a / b for a, b in zip(hs, plain)]
    return {"hypersweep_s": h, "plain_s": p, "ratio": statistics.median(ratios), "extra_s": h - p,
            "repeat": repeat, "ratios": ratios}


def _seconds(rest_s: float) -> str:
    """The per-study part of the split; below zero it is within the rounds' noise
    (the per-epoch part, from the longer runs, took all the extra time and more)."""
    return f"{rest_s:.1f} s" if rest_s >= 0 else f"none measurable ({rest_s:.1f} s: within the noise)"


def split_overhead(short: dict, long: dict, trials: int, epochs: tuple[int, int]) -> dict:
    """Extra seconds = fixed + trials * (per_trial + epochs * per_epoch); with two
    lengths and the per-trial part taken as epoch-free, solve for both parts."""
    per_epoch = max(0.0, (long["extra_s"] - short["extra_s"]) / (trials * (epochs[1] - epochs[0])))
    fixed_and_trials = short["extra_s"] - trials * epochs[0] * per_epoch
    return {"per_epoch_ms": 1000 * per_epoch, "rest_s": fixed_and_trials}


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; NaN where /proc is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, limit: float = 10.0) -> None:
    """Wait until a process is idle: the tracking process warms up (figures, fonts)
    while nothing waits on it, as it does during `hypersweep run`'s start-up."""
    deadline, last = time.monotonic() + limit, _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_seconds(pid)
        if not now - last > 0.01:          # NaN (no /proc) ends the wait too
            return
        last = now


def _driver_seconds(cfg_dict: dict, train=None,
                    cpu: list[float] | None = None) -> tuple[float, list[float], float]:
    """(seconds to build the executor, [seconds from then to each trial's end],
    seconds from then until the tracking process has written everything).
    `cpu`, when given, gets the CPU seconds this process and the tracking process
    have used at each trial's end (all the serial executor uses: Ray's workers
    are not counted)."""
    import optuna

    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import StudyDriver, StudyEvents
    from hypersweep.search.executors import SerialExecutor
    from hypersweep.search.tracking import MlflowTracker
    from hypersweep.search.writer import TrackingWriter

    cfg = parse_config(cfg_dict)
    # Create both databases first: their one-off schema migrations are not per-trial cost.
    MlflowTracker(cfg.tracking.uri).client.search_experiments()
    optuna.storages.RDBStorage(cfg.tracking.storage)
    tracker = TrackingWriter(cfg.tracking.uri)      # as `hypersweep run` tracks
    tracker.sync()
    _settle(tracker._proc.pid)      # its one-off warm-up is not per-trial work
    start = time.perf_counter()
    if cfg.resources.executor == "ray":
        from hypersweep.search.ray_executor import RayExecutor
        from hypersweep.search.strategies import can_prune
        executor = RayExecutor(cfg.resources, train=train, prunes=can_prune(cfg.search))
    else:
        executor = SerialExecutor(train=train, threads=1)
    built = time.perf_counter()
    ended: list[float] = []     # up to the last trial's end: not the shutdown of Ray
    written: list[float] = []

    class Timing(StudyEvents):
        def trial_ended(self, event) -> None:
            ended.append(time.perf_counter() - built)
            if cpu is not None:
                cpu.append(time.process_time() + _cpu_seconds(tracker._proc.pid))
            if len(ended) == cfg.search.trials:     # the last trial: wait until it is written
                tracker.sync()
                written.append(time.perf_counter() - built)

    with tracker:
        StudyDriver(cfg, executor, tracker, events=Timing()).run()
    return built - start, ended, written[0]


def plain_ceiling(params: list[dict], epochs: int) -> float:
    """What this machine gives two processes at once: the plain script training
    every configuration alone, against two copies side by side with half each
    (training seconds only, imports excluded). The limit for `parallel: 2`."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        script = Path(tmp, "plain.py")
        script.write_text(PLAIN_SCRIPT)

        def start(configs: list[dict]) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, str(script), json.dumps(configs), str(epochs)],
                                    stdout=subprocess.PIPE, text=True)

        def seconds(proc: subprocess.Popen) -> float:
            out, _ = proc.communicate()
            return float(out.strip().splitlines()[-1])

        alone = seconds(start(params))
        pair = [start(params[0::2]), start(params[1::2])]
        return alone / max(seconds(p) for p in pair)


def parallel_scaling(trials: int, epochs: int) -> dict:
    """Throughputs of the serial executor and `parallel: 2`, and the serial
    study's parameter sets (for `plain_ceiling`). Each side runs in a new Python
    process, as `hypersweep run` does: imports this process made already (torch,
    the training code, by an earlier benchmark) would otherwise be free to the
    serial side only, whose trials run here, and not to Ray's fresh workers."""
    serial, ray_ = (_fresh_side(name, trials, epochs) for name in ("serial", "ray"))
    out = {"params": serial["params"], "ray_startup_s": ray_["startup_s"]}
    # End to end: the serial side from the executor's start, its imports of the
    # training code included; the Ray side from Ray's start-up on (timed apart).
    out["serial_s"] = serial["startup_s"] + serial["written"]
    out["ray_s"] = ray_["written"]
    for name, side, first in (("serial", serial, 1), ("ray", ray_, 2)):     # each worker's first trial
        ends = side["ends"]
        out[name + "_steady_per_s"] = (len(ends) - first) / (ends[-1] - ends[first - 1])
    # The cores the serial executor keeps busy: training, and the tracking process.
    cpu, ends = serial["cpu"], serial["ends"]
    out["serial_cores"] = (cpu[-1] - cpu[0]) / (ends[-1] - ends[0])
    out["speedup"] = out["serial_s"] / out["ray_s"]
    out["steady_speedup"] = out["ray_steady_per_s"] / out["serial_steady_per_s"]
    # The same work per trial spread over every core: the most `parallel` can gain.
    out["bound"] = (os.cpu_count() or 1) / out["serial_cores"]
    return out


def scaling_side(name: str, trials: int, epochs: int) -> dict:
    """One side of `parallel_scaling` ("serial" or "ray", `parallel: 2`) in this
    process: the executor's start-up, each trial's end and the last write (seconds
    from the executor's start), and for the serial side the CPU seconds at each
    trial's end (Ray's workers are not counted) and the parameter sets."""
    import optuna

    resources = {} if name == "serial" else {"executor": "ray", "parallel": 2}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        d = Path(tmp)
        cpu: list[float] = []
        startup, ends, written = _driver_seconds(study(f"scaling-{name}", d, trials, epochs, **resources),
                                                 cpu=cpu if name == "serial" else None)
        out = {"startup_s": startup, "ends": ends, "written": written, "cpu": cpu}
        if name == "serial":
            out["params"] = [t.params for t in optuna.load_study(
                study_name="scaling-serial", storage=f"sqlite:///{d / 'optuna.db'}").trials]
    return out


def _fresh_side(name: str, trials: int, epochs: int) -> dict:
    """`scaling_side` in a new Python process."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.executors", "--scaling-side", name,
                           str(trials), str(epochs)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"scaling side {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trivial(spec: TrialSpec, report) -> TrialResult:
    """A trial that does no work: what remains is the platform's cost per trial."""
    report(1, {"val_accuracy": 0.5, "val_loss": 1.0})
    return TrialResult(TrialState.COMPLETE, {"val_accuracy": 0.5, "val_loss": 1.0}, epochs=1)


def scheduling_overhead(trials: int) -> dict:
    import cloudpickle
    if __name__ != "__main__":      # Ray workers need not import benchmarks/
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name, res in (("serial", {}), ("ray", {"executor": "ray", "parallel": 1}),
                          ("ray_parallel2", {"executor": "ray", "parallel": 2})):
            d = Path(tmp, name)
            d.mkdir()
            _, _, written = _driver_seconds(study(f"trivial-{name}", d, trials, 1, **res), trivial)
            out[name + "_ms"] = 1000 * written / trials
    out["ray_added_ms"] = out["ray_ms"] - out["serial_ms"]
    return out


def run(quick: bool = False) -> str:
    """Run every measurement and return the markdown section."""
    n, epochs = (2, (2, 4)) if quick else (8, (20, 200))
    repeat = 1 if quick else 5
    short, long = platform_overhead(n, epochs[0], repeat), platform_overhead(n, epochs[1], repeat)
    split = split_overhead(short, long, n, epochs)
    # Trials of about 0.4 s, 2 s and 7 s on the serial executor (the same MLP, more epochs).
    lengths = [(4, 2), (4, 4), (4, 8)] if quick else [(16, 20), (16, 100), (8, 400)]
    scales = [(t, e, parallel_scaling(t, e)) for t, e in lengths]
    ceiling_trials, ceiling_epochs, ceiling_of = scales[1]
    ceiling = plain_ceiling(ceiling_of["params"], ceiling_epochs)
    sched = scheduling_overhead(10 if quick else 100)

    def overhead_row(o: dict, e: int) -> str:
        return (f"| platform overhead: `hypersweep run` (serial) / plain PyTorch script, {n} configs "
                f"x {e} epochs, median of {o['repeat']} rounds' ratios | {o['ratio']:.2f} "
                f"(rounds: {', '.join(f'{r:.2f}' for r in o['ratios'])}; median times "
                f"{o['hypersweep_s']:.1f} s / {o['plain_s']:.1f} s) | <= 1.10 |")

    def scaling_row(trials: int, epochs: int, s: dict) -> str:
        return (f"| {trials} trials x {epochs} epochs | {1 / s['serial_steady_per_s']:.2f} | "
                f"{s['speedup']:.2f}x ({s['serial_s']:.1f} s / {s['ray_s']:.1f} s) | "
                f"{s['steady_speedup']:.2f}x ({s['ray_steady_per_s']:.2f} vs "
                f"{s['serial_steady_per_s']:.2f} trials/s) | {s['serial_cores']:.2f}: "
                f"{s['bound']:.2f}x |")

    rows = ("\n" + " " * 8).join(scaling_row(*x) for x in scales)
    startups = ", ".join(f"{s['ray_startup_s']:.1f}" for _, _, s in scales)

    return textwrap.dedent(f"""\
        {'Quick run (small sizes). ' if quick else ''}Machine: {os.cpu_count()} CPUs. Digits MLP (2 x 128), 1 torch thread per trial; fresh stores each run.

        | measurement | value | goal |
        |---|---|---|
        {overhead_row(short, epochs[0])}
        {overhead_row(long, epochs[1])}
        | overhead split: per study (start-up, stores, report) + per trial, and per epoch | {_seconds(split['rest_s'])} for the study and its {n} trials; {split['per_epoch_ms']:.1f} ms per epoch | |
        | per trial, trivial trials, serial executor (Optuna + MLflow) | {sched['serial_ms']:.0f} ms | |
        | per trial, trivial trials, Ray `parallel: 1` | {sched['ray_ms']:.0f} ms (Ray adds {sched['ray_added_ms']:.0f} ms) | Ray Tune with actor reuse: ~30 ms |
        | per trial, trivial trials, Ray `parallel: 2` | {sched['ray_parallel2_ms']:.0f} ms | |

        Parallel scaling: `parallel: 2` (Ray) against the serial executor on the same study, by
        trial length (the same MLP, more epochs); goal: at least 1.7x the trial throughput. Each
        side runs in a new process. End to end: from the executor's start until the last trial
        is written to MLflow, the serial side's imports included, Ray's start-up not (timed
        apart: {startups} s). Steady state: after each worker's first trial. The serial
        executor is not one core's work: its tracking process draws each trial's figures and
        writes MLflow on the other core, so its CPU use bounds what any executor can gain with
        the same work per trial: about {os.cpu_count()} cores over the cores it uses (an
        estimate, as noisy as the rest).

        | study | serial s per trial | end to end | steady state | serial executor's cores: most any executor gains |
        |---|---|---|---|---|
        {rows}

        This machine's ceiling, the plain script as two processes side by side against one (the
        {ceiling_trials} configurations x {ceiling_epochs} epochs of the second row): {ceiling:.2f}x.
        """)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.executors", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: checks the harness runs")
    p.add_argument("--scaling-side", nargs=3, metavar=("SIDE", "TRIALS", "EPOCHS"),
                   help=argparse.SUPPRESS)     # one side of the scaling runs, as JSON
    args = p.parse_args(argv)
    if args.scaling_side:
        side, trials, epochs = args.scaling_side
        print(json.dumps(scaling_side(side, int(trials), int(epochs))))
        return 0
    print(run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())

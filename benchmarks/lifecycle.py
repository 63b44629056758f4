"""Lifecycle costs a user waits on: the parent-run figures drawn at study end and
on resume, parameter importance (fANOVA, also at every study end), reopening a
study on resume, and `export`, for growing numbers of trials. Synthetic trials (no
training), real SQLite stores.

    python -m benchmarks.lifecycle [--trials 50 200 2000] [--repeat 3]
    python -m benchmarks.run --only lifecycle     # into RESULTS.md
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from benchmarks import markdown_table
from hypersweep.models.trial import TrialResult, TrialState
from hypersweep.search.config import parse_config
from hypersweep.search.importance import param_importances
from hypersweep.search.inspect import trials_frame
from hypersweep.search.lifecycle import reopen_study
from hypersweep.search.report import study_figures
from hypersweep.search.tracking import MlflowTracker

SECTION = "lifecycle"
TITLE = "Study lifecycle: parent-run figures, reopening a study, export"


def synthetic_study(root: Path, n: int):
    """A finished study of `n` trials in both stores, as the driver writes it."""
    cfg = parse_config({
        "study": f"bench-{n}", "model": "mlp",
        "space": {"lr": {"loguniform": [1e-4, 1e-1]}, "depth": {"int": [1, 4]},
                  "width": {"intlog": [16, 256]}, "dropout": {"uniform": [0.0, 0.5]}},
        "search": {"strategy": "random", "trials": n, "seed": 0},
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "storage": f"sqlite:///{root}/optuna.db"}})
    tracker = MlflowTracker(cfg.tracking.uri)
    study = optuna.create_study(study_name=cfg.study, storage=cfg.tracking.storage,
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    parent = tracker.start_study(cfg.study, cfg.to_yaml())
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.set_user_attr("config", cfg.model_dump(mode="json"))
    for _ in range(n):
        t = study.ask()
        lr, depth = t.suggest_float("lr", 1e-4, 1e-1, log=True), t.suggest_int("depth", 1, 4)
        t.suggest_int("width", 16, 256, log=True), t.suggest_float("dropout", 0.0, 0.5)
        run_id = tracker.start_trial(parent, t.number, t.params)
        t.set_user_attr("mlflow_run_id", run_id)
        value = 1 - abs(lr - 0.01) - 0.01 * depth
        for epoch in range(1, 11):
            tracker.log_metrics(run_id, epoch, {"val_accuracy": value, "val_loss": 1 - value})
        tracker.end_trial(run_id, TrialResult(TrialState.COMPLETE, {"val_accuracy": value}), {})
        study.tell(t, value)
    return cfg, study, tracker


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(trials: list[int], repeat: int) -> list[dict[str, float]]:
    rows = []
    for n in trials:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, study, tracker = synthetic_study(Path(tmp), n)
            rows.append({
                "trials": n,
                "figures s": timed(lambda: study_figures(study), repeat),
                "importance s": timed(lambda: param_importances(study, cfg.search.objectives),
                                      repeat),
                "reopen s": timed(lambda: reopen_study(cfg, MlflowTracker(cfg.tracking.uri)), repeat),
                "export s": timed(lambda: trials_frame(study, cfg), repeat)})
    return rows


def run(quick: bool = False) -> str:
    trials, repeat = ([20], 1) if quick else ([50, 200, 2000], 3)
    return (f"Synthetic finished studies (no training), real SQLite stores; median of {repeat} "
            f"run(s). figures: every parent-run figure drawn at study end and on resume; "
            f"importance: fANOVA's, at study end and on resume too (past 500 complete "
            f"trials, over a random 500); "
            f"reopen: what `resume` does before its first trial; export: `hypersweep export`'s "
            f"table.\n\n" + markdown_table(measure(trials, repeat)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, nargs="+", default=[50, 200, 2000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(markdown_table(measure(args.trials, args.repeat)))


if __name__ == "__main__":
    main()

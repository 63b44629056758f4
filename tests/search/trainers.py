"""Trial functions for the Ray executor tests: synthetic or faulty on purpose.

Ray pickles them by value (see conftest), so workers need not import this module.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialResult, TrialSpec, TrialState


def by_number(spec: TrialSpec, report) -> TrialResult:
    """val_accuracy is 1 for trials 0-5 and 0 afterwards: with the median pruner,
    trials 6+ are pruned whatever the timing of the others."""
    value = 1.0 if spec.trial_number <= 5 else 0.0
    history = []
    for epoch in range(1, int(spec.params.get("epochs", 6)) + 1):
        metrics = {"val_accuracy": value, "val_loss": 1.0 - value, "train_loss": 0.5}
        history.append(metrics)
        if report(epoch, metrics):
            return TrialResult(TrialState.PRUNED, metrics, tuple(history), epoch,
                               reason=f"pruned at epoch {epoch}")
    return TrialResult(TrialState.COMPLETE, metrics, tuple(history), len(history))


def faulty(spec: TrialSpec, report, marker_dir: str) -> TrialResult:
    """Trial 1 raises, trial 2 diverges to NaN, trial 3 kills its worker once (then
    succeeds on the retry), trial 4 kills its worker every time, trial 5 runs too long."""
    n = spec.trial_number
    if n == 1:
        raise RuntimeError("simulated fault in the data pipeline")
    if n == 2:
        return train_trial(_replace(spec, lr=1e12, optimizer="sgd"), report)
    if n in (3, 4):
        report(1, {"val_accuracy": 0.1, "val_loss": 2.0})
        marker = Path(marker_dir, f"killed-{n}")
        if n == 4 or not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)      # mid-epoch, as a crash would
    if n == 5:
        for epoch in range(1, 10_000):
            report(epoch, {"val_accuracy": 0.1, "val_loss": 2.0})
            time.sleep(0.2)
    return train_trial(spec, report)


def _replace(spec: TrialSpec, **params) -> TrialSpec:
    import dataclasses
    return dataclasses.replace(spec, params={**spec.params, **params})


def slow_epochs(spec: TrialSpec, report) -> TrialResult:
    """Eight epochs of 0.3 s each: long enough that a worker which need not wait
    posts some epochs while the trial runs and leaves the rest to its result."""
    history = []
    for epoch in range(1, 9):
        time.sleep(0.3)
        metrics = {"val_accuracy": epoch / 10, "val_loss": 1.0 / epoch, "train_loss": 0.5}
        history.append(metrics)
        report(epoch, metrics)
    return TrialResult(TrialState.COMPLETE, metrics, tuple(history), len(history))


def together(spec: TrialSpec, report, marker_dir: str, expected: int) -> TrialResult:
    """Says it started (a file), waits up to a minute until `expected` trials have,
    then trains; each epoch reports how many had started (`started_together`)."""
    Path(marker_dir, f"started-{spec.trial_number}").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(marker_dir).iterdir())) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = len(list(Path(marker_dir).iterdir()))
    return train_trial(spec, lambda epoch, metrics: report(
        epoch, {**metrics, "started_together": float(seen)}))


def found_its_data(spec: TrialSpec, report) -> TrialResult:
    """val_accuracy 1 when the worker holds the trial's dataset before training
    starts (handed over by the driver), 0 when it would have to load it."""
    from hypersweep.models.train import _LOADED, data_key

    value = 1.0 if data_key(spec.data) in _LOADED else 0.0
    metrics = {"val_accuracy": value, "val_loss": 1.0 - value, "train_loss": 0.5}
    report(1, metrics)
    return TrialResult(TrialState.COMPLETE, metrics, (metrics,), 1)

"""Intermediate values kept by the driver and written in batches (studies that cannot prune)."""
from __future__ import annotations

import math

import optuna
import pytest

from hypersweep.search.intermediate import Pending, write_values
from tests.conftest import small_config, study_runs


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_a_batch_stores_what_reports_one_by_one_would(tmp_path, storage):
    url = f"sqlite:///{tmp_path / 'optuna.db'}" if storage == "sqlite" else None
    study = optuna.create_study(storage=url)
    reported, batched = study.ask(), study.ask()
    values = {1: 0.5, 2: 0.25, 3: math.inf, 4: -math.inf, 5: 0.125}
    for step, value in values.items():
        reported.report(value, step)
    pending = Pending()
    for step, value in values.items():
        pending.add(step, value)
    assert not study.trials[1].intermediate_values      # kept, not written yet
    pending.flush(batched)
    pending.add(2, 0.75)                                 # a step reported again: updated
    pending.add(6, 0.0)
    pending.flush(batched)
    one_by_one, in_batches = (study.trials[i].intermediate_values for i in (0, 1))
    assert in_batches == {**one_by_one, 2: 0.75, 6: 0.0}


def test_a_finished_trial_takes_no_more_values(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):
        write_values(trial.storage, trial._trial_id, {1: 0.5})


def test_flush_is_due_once_a_second(monkeypatch):
    import hypersweep.search.intermediate as intermediate

    now = [100.0]
    monkeypatch.setattr(intermediate.time, "monotonic", lambda: now[0])
    pending = Pending()
    assert not pending.due()                  # nothing kept
    pending.add(1, 0.5)
    now[0] += 0.5
    assert not pending.due()
    now[0] += 0.6
    assert pending.due()


def test_a_study_without_pruner_records_every_epoch_on_its_trials(stores):
    """The driver writes the kept values before telling each trial: Optuna holds the
    objective of every epoch that MLflow logged."""
    from mlflow.tracking import MlflowClient

    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import StudyDriver
    from hypersweep.search.executors import SerialExecutor
    from hypersweep.search.tracking import MlflowTracker

    cfg = parse_config(small_config("batched", stores, pruner="none", trials=3))
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    trials = optuna.load_study(study_name="batched", storage=stores.optuna_url).trials
    _, children = study_runs(stores.mlflow_uri, "batched")
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for trial, child in zip(trials, children):
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert trial.intermediate_values == {m.step: m.value for m in history}
        assert len(trial.intermediate_values) == 3

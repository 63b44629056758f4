"""Replay on the trial's own thread count, of interrupted trials, and of run ids
that are not a trial's; failure reasons of trials."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.errors import check_fraction
from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialSpec, TrialState
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor, make_executor, run_guarded
from hypersweep.search.lifecycle import replay_run
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_study(cfg_dict, executor=None):
    cfg = parse_config(cfg_dict)
    return StudyDriver(cfg, executor or make_executor(cfg), MlflowTracker(cfg.tracking.uri)).run()


@pytest.fixture
def torch_threads():
    """Leaves torch's thread count as the test found it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def thread_sensitive(study: str, stores) -> dict:
    """One trial whose last bits depend on torch's thread count: a width-165 MLP with
    adam (its matrix products split differently over 1 and 2 threads)."""
    cfg = small_config(study, stores, trials=1)
    cfg["params"].update(width=165, optimizer="adam", lr=0.01, depth=2)
    cfg["space"] = {"dropout": {"uniform": [0.0, 0.1]}}
    return cfg


def test_replay_trains_on_the_threads_the_trial_used(stores, torch_threads):
    run_study(thread_sensitive("threads", stores))      # cpus_per_trial 1: one thread
    run_id = study_runs(stores.mlflow_uri, "threads")[1][0].info.run_id
    torch.set_num_threads(2)                            # as a fresh `hypersweep replay` has
    r = replay_run(run_id, stores.mlflow_uri)
    assert r.differences() == [], (r.recorded["val_loss"], r.replayed["val_loss"])
    assert r.spec.threads == 1 and torch.get_num_threads() == 1


def test_replay_reads_the_threads_a_trial_yaml_records(stores, torch_threads):
    cfg = thread_sensitive("threads2", stores)
    cfg["resources"]["cpus_per_trial"] = 2
    run_study(cfg)
    run_id = study_runs(stores.mlflow_uri, "threads2")[1][0].info.run_id
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    # A trial.yaml that records its threads wins over the study's cpus_per_trial.
    path = client.download_artifacts(run_id, "trial.yaml", str(stores.dir))
    raw = yaml.safe_load(open(path))
    assert TrialSpec.from_record(raw).threads in (None, 2)
    client.log_text(run_id, yaml.safe_dump({**raw, "threads": 1}), "trial.yaml")
    torch.set_num_threads(2)
    assert replay_run(run_id, stores.mlflow_uri).spec.threads == 1


def test_trial_spec_record_round_trips_its_threads():
    spec = TrialSpec(model="mlp", data={"name": "digits"}, params={"lr": 0.1}, seed=3,
                     trial_number=4, study="s", threads=2)
    assert TrialSpec.from_record(yaml.safe_load(yaml.safe_dump(spec.record()))) == spec
    assert "threads" not in TrialSpec(model="mlp", data={}, params={}, seed=1).record()


def ctrl_c_after_two(spec, report):
    """Trains as `train_trial`, and Ctrl-C comes right after epoch 2 is reported."""
    def stop_after_two(step, metrics):
        report(step, metrics)
        if step == 2:
            raise KeyboardInterrupt
        return False
    return train_trial(spec, stop_after_two)


def test_replay_of_an_interrupted_trial_trains_the_epochs_it_recorded(stores):
    """Ctrl-C after the second of three epochs: replay trains two epochs, whatever
    the run's `epochs` tag says, and finds them identical."""
    out = run_study(small_config("interrupted", stores, trials=1),
                    SerialExecutor(train=ctrl_c_after_two, threads=1))
    assert out.interrupted
    run = study_runs(stores.mlflow_uri, "interrupted")[1][0]
    assert run.data.tags["state"] == "FAIL"
    r = replay_run(run.info.run_id, stores.mlflow_uri)
    assert len(r.recorded["val_loss"]) == 2
    assert r.differences() == [] and len(r.replayed["val_loss"]) == 2


def test_a_trial_that_diverges_in_its_first_epoch_logs_it_and_replays_identical(stores):
    """A loss NaN at epoch 1 failed the trial before reporting the epoch: its run
    had no curves, and replay called every curve different (NaN recorded)."""
    cfg = small_config("diverged", stores, trials=1)
    cfg["params"].update(optimizer="sgd", lr=1e8)
    cfg["space"] = {"dropout": {"uniform": [0.0, 0.1]}}
    run_study(cfg, SerialExecutor(threads=1))
    run = study_runs(stores.mlflow_uri, "diverged")[1][0]
    assert run.data.tags["state"] == "FAIL" and "at epoch 1" in run.data.tags["failure_reason"]
    history = MlflowClient(tracking_uri=stores.mlflow_uri).get_metric_history(
        run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1]
    r = replay_run(run.info.run_id, stores.mlflow_uri)
    assert r.differences() == []
    assert len(r.replayed["train_loss"]) == 1


def test_replay_of_a_parent_run_is_one_line(stores):
    run_study(small_config("parented", stores, trials=1))
    parent = study_runs(stores.mlflow_uri, "parented")[0].info.run_id
    res = invoke("replay", parent, "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (
        f"error: RUN_ID: run {parent} is the study parented's parent run, not a trial; "
        "replay takes a trial's run id (hypersweep best parented --json)")


@pytest.mark.parametrize("run_id", ["0123456789abcdef0123456789abcdef", "nonsense"])
def test_replay_of_a_run_that_does_not_exist_is_one_line(stores, run_id):
    run_study(small_config("some", stores, trials=1))
    res = invoke("replay", run_id, "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: RUN_ID: no run {run_id} in ")
    assert "trial.yaml" not in lines[0]


def test_a_user_error_in_a_trial_fails_it_with_the_message_only():
    def bad_input(spec, report):
        check_fraction(dropout=1.417)

    result = run_guarded(bad_input, TrialSpec(model="mlp", data={}, params={}, seed=0),
                         lambda step, m: False)
    assert result.state is TrialState.FAIL
    assert result.reason == "params.dropout: must be in [0, 1), got 1.417"


def test_a_fault_in_a_trial_keeps_its_type_and_place():
    def fault(spec, report):
        report(1, {"val_loss": 1.0})
        raise RuntimeError("boom")

    result = run_guarded(fault, TrialSpec(model="mlp", data={}, params={}, seed=0),
                         lambda step, m: False)
    assert result.reason.startswith("RuntimeError: boom (test_replay_faults.py:")
    assert result.epochs == 1


def test_an_interrupted_trial_records_the_epochs_it_trained(stores):
    out = run_study(small_config("epochs", stores, trials=1),
                    SerialExecutor(train=ctrl_c_after_two, threads=1))
    assert out.study.trials[0].user_attrs["epochs"] == 2
    assert study_runs(stores.mlflow_uri, "epochs")[1][0].data.tags["epochs"] == "2"


def test_trial_yaml_records_the_thread_count_the_trial_trained_on(stores):
    """Replay reads it there: the parent's study.yaml may have changed on a resume."""
    cfg = small_config("threads", stores, trials=1)
    cfg["resources"]["cpus_per_trial"] = 2
    run_study(cfg, SerialExecutor(threads=2))
    _, children = study_runs(stores.mlflow_uri, "threads")
    path = MlflowClient(tracking_uri=stores.mlflow_uri).download_artifacts(
        children[0].info.run_id, "trial.yaml")
    assert yaml.safe_load(Path(path).read_text())["threads"] == 2

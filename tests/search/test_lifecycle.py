"""Resume after a SIGKILL, rerun, replay and the final test, on real SQLite stores."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor, make_executor
from hypersweep.search.lifecycle import replay_run
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import ROOT, Stores, small_config, study_runs, wait_for_trials

runner = CliRunner()
FAIL, RUNNING = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_study(cfg_dict):
    """As `hypersweep run` would: trials train on `cpus_per_trial` torch threads, as a
    rerun's do (a different thread count changes the last bits of the sums)."""
    cfg = parse_config(cfg_dict)
    return StudyDriver(cfg, make_executor(cfg), MlflowTracker(cfg.tracking.uri)).run()


def curves(uri: str, study: str, storage: str):
    """Per trial: params, objective values and the val_loss curve."""
    client = MlflowClient(tracking_uri=uri)
    trials = optuna.load_study(study_name=study, storage=storage).trials
    _, children = study_runs(uri, study)
    return [(t.params, t.values, [m.value for m in client.get_metric_history(c.info.run_id, "val_loss")])
            for t, c in zip(trials, children)]


def kill_mid_trial(config_path, storage: str, study: str, complete_before: int) -> None:
    """Start `hypersweep run` in a process and SIGKILL it while a trial is RUNNING
    (with its child run already created), after `complete_before` trials finished."""
    signal_mid_trial(config_path, storage, study, complete_before, signal.SIGKILL)


def signal_mid_trial(config_path, storage: str, study: str, complete_before: int,
                     signum: int, again_after: float | None = None,
                     times: int = 2, then: int | None = None) -> subprocess.Popen:
    """Start `hypersweep run` in a process and send it `signum` while a trial is
    RUNNING (with its child run already created), after `complete_before` trials
    finished, and again (`times` in all; `then` if given) every `again_after`
    seconds if given; the process, ended (stderr still to read)."""
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.cli.app", "run", str(config_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def mid_trial(trials) -> bool:
        done = sum(t.state.is_finished() for t in trials)
        return done >= complete_before and any(
            t.state == RUNNING and "mlflow_run_id" in t.user_attrs for t in trials)

    try:
        if wait_for_trials(proc, storage, study, mid_trial):
            proc.send_signal(signum)
            for _ in range(times - 1 if again_after is not None else 0):
                time.sleep(again_after)
                proc.send_signal(signum if then is None else then)
            proc.wait(timeout=120)
            return proc
        pytest.fail(f"the driver never reached a running trial: {proc.stderr.read().decode()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigkill_then_resume_adds_up(stores, write_config):
    cfg = small_config("crash", stores, trials=5)
    cfg["params"].update(epochs=150, batch_size=32)     # about a second: long enough to die inside
    kill_mid_trial(write_config(cfg), stores.optuna_url, "crash", complete_before=2)
    before = optuna.load_study(study_name="crash", storage=stores.optuna_url).trials
    assert [t.state for t in before].count(RUNNING) == 1
    killed = next(t for t in before if t.state == RUNNING)

    res = invoke("resume", "crash", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output

    trials = optuna.load_study(study_name="crash", storage=stores.optuna_url).trials
    assert not [t for t in trials if not t.state.is_finished()]
    assert len(trials) == 6                       # 5 in the budget + the interrupted one
    assert trials[killed.number].state == FAIL
    assert trials[killed.number].user_attrs["interrupted"] is True
    assert sum(not t.user_attrs.get("interrupted") for t in trials) == 5

    parent, children = study_runs(stores.mlflow_uri, "crash")   # asserts a single parent
    assert parent.info.status == "FINISHED"
    assert [int(c.data.tags["optuna.trial_number"]) for c in children] == list(range(6))
    assert [t.user_attrs["mlflow_run_id"] for t in trials] == [c.info.run_id for c in children]
    crashed = children[killed.number]
    assert crashed.info.status == "FAILED" and crashed.data.tags["state"] == "FAIL"
    assert "interrupted" in crashed.data.tags["failure_reason"]
    # The epochs it logged before the kill (if any reached the store) are its epochs.
    logged = MlflowClient(tracking_uri=stores.mlflow_uri).get_metric_history(
        crashed.info.run_id, "val_loss")
    assert int(crashed.data.tags["epochs"]) == trials[killed.number].user_attrs["epochs"] \
        == max((m.step for m in logged), default=0)
    assert all(c.info.status != "RUNNING" for c in children)
    arts = {a.path for a in MlflowClient(tracking_uri=stores.mlflow_uri).list_artifacts(parent.info.run_id)}
    assert {"study.yaml", "trials.csv", "optimization_history.png"} <= arts


def test_resume_of_a_finished_study_starts_nothing_unless_the_end_went_unwritten(stores):
    """A study that ran its budget and was closed in both stores: `resume` says so
    and opens nothing (no Ray, no parent run reopened). One whose end was never
    written (the driver died after its last trial) is closed by `resume`; and
    `--trials` still adds trials to a finished one."""
    run_study(small_config("done", stores, trials=2))
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    parent, _ = study_runs(stores.mlflow_uri, "done")
    res = invoke("resume", "done", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("study done: 2 of 2 trials finished, nothing to resume")
    assert "best trials" in res.output
    assert client.get_run(parent.info.run_id).info.end_time == parent.info.end_time

    # As if the driver died between the last trial's end and the study's end.
    study = optuna.load_study(study_name="done", storage=stores.optuna_url)
    study.set_user_attr("ended", None)
    client.update_run(parent.info.run_id, status="RUNNING")
    res = invoke("resume", "done", "--storage", stores.optuna_url)
    assert res.exit_code == 0 and "resuming study done: 2 of 2" in res.output, res.output
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert study.user_attrs["ended"] == "FINISHED"

    res = invoke("resume", "done", "--storage", stores.optuna_url, "--trials", "3")
    assert res.exit_code == 0 and "resuming study done: 2 of 3" in res.output, res.output
    assert len(optuna.load_study(study_name="done", storage=stores.optuna_url).trials) == 3


def test_a_budget_raised_by_resume_is_the_study_s_from_then_on(stores):
    """`resume --trials N` then a plain `resume` (after a Ctrl-C, say) or a `rerun`:
    the raised budget was lost ("3 of 2 trials finished, nothing to resume")."""
    run_study(small_config("grow", stores, trials=2))
    res = invoke("resume", "grow", "--storage", stores.optuna_url, "--trials", "3")
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="grow", storage=stores.optuna_url)
    assert study.user_attrs["config"]["search"]["trials"] == 3
    parent, _ = study_runs(stores.mlflow_uri, "grow")
    stored = MlflowClient(tracking_uri=stores.mlflow_uri).download_artifacts(
        parent.info.run_id, "study.yaml")
    assert yaml.safe_load(Path(stored).read_text())["search"]["trials"] == 3
    res = invoke("resume", "grow", "--storage", stores.optuna_url)
    assert res.output.startswith("study grow: 3 of 3 trials finished, nothing to resume")

    res = invoke("resume", "grow", "--storage", stores.optuna_url, "--trials", "2")
    assert res.exit_code == 2
    assert res.output.strip() == ("error: --trials: 2 is fewer than the 3 trials study 'grow' "
                                  "has run; give more than 3 to run more")


def test_resume_retries_interrupted_trials_with_their_params(stores):
    """A study stopped with a trial RUNNING (as after a crash) is resumed with
    on_interrupt: retry; the retry is a new trial with the same parameters."""
    cfg = parse_config(small_config("retry", stores, trials=3, on_interrupt="retry"))
    tracker = MlflowTracker(cfg.tracking.uri)
    driver = StudyDriver(cfg, SerialExecutor(), tracker)
    study, parent = driver._open()
    trial = study.ask()
    driver.study, driver.parent = study, parent
    driver._launch(trial)                 # created in both stores, then the "crash"
    params = dict(trial.params)

    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run(resume=True)
    trials = optuna.load_study(study_name="retry", storage=stores.optuna_url).trials
    assert [t.state for t in trials][0] == FAIL
    assert trials[1].params == params and trials[1].user_attrs["retry_of"] == 0
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
    _, children = study_runs(stores.mlflow_uri, "retry")
    assert len(children) == 4 and children[0].info.status == "FAILED"


def test_resume_retries_the_trials_a_stop_failed_too(stores):
    """A Ctrl-C or SIGTERM fails its running trials as interrupted as it stops:
    `on_interrupt: retry` ran again only those a crash left RUNNING. Each is run
    again once, however many resumes follow."""
    cfg = parse_config(small_config("stopped", stores, trials=2, on_interrupt="retry"))
    driver = StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri))
    study, parent = driver._open()
    driver.study, driver.parent = study, parent
    trial = study.ask()
    driver._launch(trial)
    params = dict(trial.params)
    driver._abort("interrupted by the user (Ctrl-C)")       # as the stop fails it
    study.set_user_attr("ended", "FAILED")
    res = invoke("resume", "stopped", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == ("resuming study stopped: 0 of 2 trials finished; "
                                          "trial 0, interrupted, runs again "
                                          "(search.on_interrupt: retry)")
    trials = optuna.load_study(study_name="stopped", storage=stores.optuna_url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == params and trials[1].user_attrs["retry_of"] == 0
    res = invoke("resume", "stopped", "--storage", stores.optuna_url, "--trials", "3")
    assert res.exit_code == 0 and "runs again" not in res.output, res.output
    trials = optuna.load_study(study_name="stopped", storage=stores.optuna_url).trials
    assert [t.user_attrs.get("retry_of") for t in trials] == [None, 0, None, None]


def test_resume_says_which_trials_a_stopped_run_left_running(stores):
    """It marked them FAIL without a word: "0 of 6 trials finished" was all."""
    cfg = parse_config(small_config("crashed", stores, trials=3))
    driver = StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri))
    study, parent = driver._open()
    driver.study, driver.parent = study, parent
    for _ in range(2):
        driver._launch(study.ask())       # created in both stores, then the "crash"
    res = invoke("resume", "crashed", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == (
        "resuming study crashed: 0 of 3 trials finished; trials 0 and 1 left running by a run "
        "that stopped are marked FAIL (interrupted)")
    trials = optuna.load_study(study_name="crashed", storage=stores.optuna_url).trials
    assert [t.state.name for t in trials[:2]] == ["FAIL", "FAIL"]


def test_a_resumed_study_s_hyperband_is_bounded_by_its_epochs_as_a_new_one_is(stores):
    """`resume` rebuilt hyperband with `max_resource="auto"` (inferred from the trials
    that completed) where `run` gave it `params.epochs`."""
    from hypersweep.search.lifecycle import reopen_study

    cfg = parse_config(small_config("hb", stores, trials=2, pruner={"name": "hyperband"}))
    cfg = cfg.model_copy(update={"params": {**cfg.params, "epochs": 9}})
    new = StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri))
    study, _ = new._open()
    assert study.pruner._max_resource == 9
    reopened, _ = reopen_study(cfg, MlflowTracker(cfg.tracking.uri))
    assert type(reopened.pruner) is type(study.pruner)
    assert reopened.pruner._max_resource == 9 and reopened.pruner._min_resource == 1


def test_resume_records_the_epochs_an_interrupted_trial_logged(stores):
    """Closed by resume, a trial that had logged three epochs said `epochs: 0`."""
    cfg = parse_config(small_config("logged", stores, trials=2))
    tracker = MlflowTracker(cfg.tracking.uri)
    driver = StudyDriver(cfg, SerialExecutor(), tracker)
    study, parent = driver._open()
    driver.study, driver.parent = study, parent
    trial = study.ask()
    driver._launch(trial)                 # created in both stores, then three epochs
    run_id = driver.running[trial.number].run_id
    for step in (1, 2, 3):
        tracker.log_metrics(run_id, step, {"val_loss": 1.0 / step, "val_accuracy": 0.3})
    tracker.flush(run_id)                 # ... and the "crash"

    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run(resume=True)
    interrupted = optuna.load_study(study_name="logged", storage=stores.optuna_url).trials[0]
    assert interrupted.user_attrs["interrupted"] and interrupted.user_attrs["epochs"] == 3
    run = MlflowClient(tracking_uri=stores.mlflow_uri).get_run(run_id)
    assert run.data.tags["epochs"] == "3" and run.info.status == "FAILED"


def test_rerun_by_name_and_by_run_id_reproduces_every_trial(stores, write_config):
    cfg = small_config("orig", stores, trials=3)
    run_study(cfg)
    parent, _ = study_runs(stores.mlflow_uri, "orig")

    res = invoke("rerun", "orig", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    res = invoke("rerun", parent.info.run_id, "--tracking-uri", stores.mlflow_uri,
                 "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    names = optuna.study.get_all_study_names(stores.optuna_url)
    assert sorted(names) == ["orig", "orig-rerun-1", "orig-rerun-2"]
    first = curves(stores.mlflow_uri, "orig", stores.optuna_url)
    assert len({str(p) for p, _, _ in first}) == 3
    for name in ("orig-rerun-1", "orig-rerun-2"):
        assert curves(stores.mlflow_uri, name, stores.optuna_url) == first
    # A name taken already: refused before anything starts, naming rerun's option.
    res = invoke("rerun", "orig", "--storage", stores.optuna_url, "--name", "orig-rerun-1")
    assert res.exit_code == 2
    assert res.output.splitlines()[-1].startswith(
        "error: --name: 'orig-rerun-1' already exists in ") and "(--name NAME)" in res.output


def test_rerun_of_a_run_id_finds_it_in_mlflow_tracking_uri(stores, tmp_path, monkeypatch):
    """As replay does, and every MLflow tool: it looked for ./mlflow.db and said
    "--tracking-uri: no MLflow store at .../mlflow.db (no such file)"."""
    run_study(small_config("env", stores, trials=1))
    parent, _ = study_runs(stores.mlflow_uri, "env")
    monkeypatch.chdir(tmp_path)                 # no mlflow.db here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stores.mlflow_uri)
    res = invoke("rerun", parent.info.run_id, "--name", "env-again",
                 "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    _, children = study_runs(stores.mlflow_uri, "env-again")
    assert len(children) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_replay_reproduces_a_trial_exactly(stores):
    run_study(small_config("replayed", stores, trials=2))
    _, children = study_runs(stores.mlflow_uri, "replayed")
    run_id = children[1].info.run_id
    r = replay_run(run_id, stores.mlflow_uri)
    assert r.differences() == []
    assert len(r.replayed["val_loss"]) == 3 and r.recorded["val_loss"] == r.replayed["val_loss"]

    res = invoke("replay", run_id, "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0 and "identical" in res.output, res.output


def test_replay_notices_a_different_result(stores):
    """The comparison can fail: a recorded curve that was tampered with differs."""
    run_study(small_config("tampered", stores, trials=1))
    _, children = study_runs(stores.mlflow_uri, "tampered")
    run_id = children[0].info.run_id
    MlflowClient(tracking_uri=stores.mlflow_uri).log_metric(run_id, "val_loss", 123.0, step=4)
    assert replay_run(run_id, stores.mlflow_uri).differences() == ["val_loss"]


def test_final_tests_once_registers_and_refuses_a_second_look(stores):
    run_study(small_config("final", stores, trials=2))
    # Not while the study runs: it tested the best trial so far, and a second look
    # at the test set, at the study's real best, took --force
    study = optuna.load_study(study_name="final", storage=stores.optuna_url)
    study.set_user_attr("driver", {"host": socket.gethostname(), "pid": os.getpid(),
                                   "beat": time.time()})
    res = invoke("final", "final", "--storage", stores.optuna_url)
    assert res.exit_code == 2 and res.output.startswith("error: study 'final' is running")
    assert res.output.strip().endswith("or let it finish before its final test")
    study.set_user_attr("driver", None)
    res = invoke("final", "final", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="final", storage=stores.optuna_url)
    record = study.user_attrs["final_test"]
    assert record["trial"] == study.best_trial.number and record["evaluations"] == 1
    assert 0.5 < record["metrics"]["test_accuracy"] <= 1.0

    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    version = client.get_model_version("final", "1")
    assert version.run_id == record["run_id"]
    assert float(version.tags["test_accuracy"]) == record["metrics"]["test_accuracy"]
    final_run = client.get_run(record["run_id"])
    assert final_run.data.metrics["test_accuracy"] == record["metrics"]["test_accuracy"]
    assert "model/model.pt" in {a.path for a in client.list_artifacts(record["run_id"], "model")}
    parent, _ = study_runs(stores.mlflow_uri, "final")
    assert parent.data.tags["final_test.run_id"] == record["run_id"]

    res = invoke("final", "final", "--storage", stores.optuna_url)
    assert res.exit_code == 2 and "already evaluated" in res.output
    # A trial that is not there is said as such, not as a second look
    res = invoke("final", "final", "--storage", stores.optuna_url, "--trial", "99")
    assert res.exit_code == 2 and res.output.startswith(
        "error: --trial: trial 99 of study 'final' does not exist"), res.output
    assert len(client.search_model_versions("name='final'")) == 1
    res = invoke("final", "final", "--storage", stores.optuna_url, "--force")
    assert res.exit_code == 0, res.output
    again = optuna.load_study(study_name="final", storage=stores.optuna_url).user_attrs["final_test"]
    assert again["evaluations"] == 2 and again["model_version"] == "2"
    assert again["metrics"] == record["metrics"]          # same seed, same data: same model


def test_final_of_tied_best_trials_retrains_the_first_and_says_so(stores):
    """`best` listed the tied trials; `final` took one of them without a word."""
    run_study(small_config("tied", stores, trials=2))
    study = optuna.load_study(study_name="tied", storage=stores.optuna_url)
    best = study.best_trial
    study.add_trial(optuna.trial.create_trial(          # trial 2, at the same value
        params=best.params, distributions=best.distributions, value=best.value,
        user_attrs={"seed": 7, "epochs": 3}))
    res = invoke("final", "tied", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert (f"note: trials {best.number} and 2 tie at the best val_accuracy; retraining trial "
            f"{best.number}, the first (--trial N for another)") in res.output.splitlines()
    record = optuna.load_study(study_name="tied", storage=stores.optuna_url).user_attrs[
        "final_test"]
    assert record["trial"] == best.number


def test_final_of_a_study_of_several_objectives_takes_a_trial_of_its_front(stores):
    """`final` refused any study of several objectives; `--trial N` now names which."""
    cfg = small_config("front", stores, trials=3)
    cfg["search"]["strategy"] = "nsga2"
    cfg["search"]["objective"] = [{"metric": "val_accuracy", "direction": "maximize"},
                                  {"metric": "param_count", "direction": "minimize"}]
    run_study(cfg)
    study = optuna.load_study(study_name="front", storage=stores.optuna_url)
    front = sorted(t.number for t in study.best_trials)
    res = invoke("final", "front", "--storage", stores.optuna_url)
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: study 'front' has several objectives, so no one best trial; choose one with "
        f"--trial N, e.g. of its Pareto front: {', '.join(map(str, front))}")
    res = invoke("final", "front", "--storage", stores.optuna_url, "--trial", "7")
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: --trial: trial 7 of study 'front' does not exist")
    res = invoke("final", "front", "--storage", stores.optuna_url, "--trial", str(front[-1]))
    assert res.exit_code == 0, res.output
    record = optuna.load_study(study_name="front", storage=stores.optuna_url).user_attrs[
        "final_test"]
    assert record["trial"] == front[-1] and "test_accuracy" in record["metrics"]
    tags = MlflowClient(tracking_uri=stores.mlflow_uri).get_run(record["run_id"]).data.tags
    assert tags["trial"] == tags["best_trial"] == str(front[-1])    # of the front: a best one


def test_final_trains_for_the_epoch_early_stopping_ended_on(stores):
    """`final` trained the epochs the best trial ran, `patience` past its best epoch
    included (21 where early stopping had chosen 19), and logged `patience`,
    which the final run does not use."""
    cfg = small_config("stop", stores, trials=2)
    cfg["params"].update({"epochs": 40, "patience": 2})
    cfg["space"]["lr"] = {"loguniform": [0.05, 0.2]}
    cfg["space"]["optimizer"] = {"choice": {"adam": {}}}
    run_study(cfg)
    study = optuna.load_study(study_name="stop", storage=stores.optuna_url)
    best = study.best_trial
    losses = [m.value for m in MlflowClient(tracking_uri=stores.mlflow_uri).get_metric_history(
        best.user_attrs["mlflow_run_id"], "val_loss")]
    assert best.user_attrs["epochs"] == len(losses) < 40, "early stopping stopped it"
    assert best.user_attrs["best_epoch"] == 1 + losses.index(min(losses))
    assert best.user_attrs["epochs"] - best.user_attrs["best_epoch"] == 2
    res = invoke("final", "stop", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    run = MlflowClient(tracking_uri=stores.mlflow_uri).get_run(
        study.user_attrs["final_test"]["run_id"])
    assert run.data.params["epochs"] == str(best.user_attrs["best_epoch"])
    assert run.data.params["patience"] == "0"
    # Every hyperparameter, defaults included, and the seed: as its trial's run.
    trial_run = MlflowClient(tracking_uri=stores.mlflow_uri).get_run(
        best.user_attrs["mlflow_run_id"])
    assert set(run.data.params) == set(trial_run.data.params) - {"trial_number"}
    assert run.data.params["seed"] == str(best.user_attrs["seed"])
    # The trial's run: the epoch early stopping chose, and its metrics as Optuna has them.
    assert trial_run.data.tags["best_epoch"] == str(best.user_attrs["best_epoch"])
    assert trial_run.data.metrics["final_val_accuracy"] == pytest.approx(best.value)
    assert trial_run.data.metrics["final_val_loss"] == pytest.approx(min(losses))
    [final_loss] = MlflowClient(tracking_uri=stores.mlflow_uri).get_metric_history(
        best.user_attrs["mlflow_run_id"], "final_val_loss")
    assert final_loss.step == best.user_attrs["best_epoch"]     # the epoch it is, not the last
    assert run.data.tags["trial"] == run.data.tags["best_trial"] == str(best.number)
    other = 1 - best.number                 # not the best: not tagged as such
    res = invoke("final", "stop", "--storage", stores.optuna_url, "--trial", str(other),
                 "--force")
    assert res.exit_code == 0, res.output
    tags = MlflowClient(tracking_uri=stores.mlflow_uri).get_run(optuna.load_study(
        study_name="stop", storage=stores.optuna_url).user_attrs["final_test"]["run_id"]).data.tags
    assert tags["trial"] == str(other) and "best_trial" not in tags


def test_unknown_study_is_one_line(stores):
    run_study(small_config("known", stores, trials=1))
    for cmd in ("resume", "final", "best"):
        res = invoke(cmd, "knwon", "--storage", stores.optuna_url)
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [
            "error: STUDY: unknown study 'knwon' (did you mean 'known'?); valid: known"]


def test_rerun_of_a_config_file_that_is_not_there_says_so(stores, tmp_path, monkeypatch):
    """It said "--storage: no Optuna storage at ..." (no optuna.db here) or
    "STUDY: unknown study 'nosuch.yaml'" (with one)."""
    monkeypatch.chdir(tmp_path)
    message = ("error: SOURCE: {}: no such file (a study config file, a study name, or an "
               "MLflow parent run id)")
    for args in (["nosuch.yaml"], ["nosuch.yaml", "--storage", stores.optuna_url],
                 ["configs/study"]):
        res = invoke("rerun", *args)
        assert res.exit_code == 2
        assert res.output.strip().splitlines() == [message.format(args[0])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stores"]


@pytest.mark.slow
def test_resume_from_another_directory_keeps_to_the_study_stores(tmp_path):
    """A study whose config names its stores relative to where it ran
    (`sqlite:///mlflow.db`): `resume` from another directory reopens the same
    MLflow store and parent run. The stored URL was relative, so resume created
    a second store and a second parent run where it ran."""
    exe = str(Path(sys.executable).with_name("hypersweep"))
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    cfg = {**small_config("moved", Stores(tmp_path), trials=2),
           "tracking": {"uri": "sqlite:///mlflow.db", "storage": "sqlite:///optuna.db"}}
    (here / "study.yaml").write_text(yaml.safe_dump(cfg))
    for cmd, cwd in ((["run", "study.yaml"], here),
                     (["resume", "moved", "--storage", "sqlite:///../here/optuna.db", "--trials", "3"],
                      elsewhere)):
        proc = subprocess.run([exe, *cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert list(elsewhere.iterdir()) == []
    parent, children = study_runs(f"sqlite:///{here / 'mlflow.db'}", "moved")
    assert len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}


@pytest.mark.slow
def test_final_registers_a_study_whose_name_mlflow_refuses_for_models(stores, monkeypatch):
    """MLflow allows '/' in experiment names but not in model names: `final` traced
    back after it had logged its run, and so without recording the evaluation.
    Whatever the registry refuses, the evaluation is recorded."""
    run_study(small_config("team/digits:v1", stores, trials=1))
    res = invoke("final", "team/digits:v1", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert "registered model 'team-digits-v1' version 1" in res.output
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    assert [v.version for v in client.search_model_versions("name='team-digits-v1'")] == [1]
    record = optuna.load_study(study_name="team/digits:v1", storage=stores.optuna_url).user_attrs[
        "final_test"]
    assert record["model_name"] == "team-digits-v1" and record["evaluations"] == 1

    import hypersweep.search.lifecycle  # noqa: F401

    from hypersweep import search
    monkeypatch.setattr(search.lifecycle, "model_name_for", lambda name: name)     # refused
    res = invoke("final", "team/digits:v1", "--storage", stores.optuna_url, "--force")
    assert res.exit_code == 1
    assert res.output.startswith("error: tracking.uri: the final run ") and "refused model " \
        "'team/digits:v1': Invalid model name" in res.output
    record = optuna.load_study(study_name="team/digits:v1", storage=stores.optuna_url).user_attrs[
        "final_test"]
    assert record["evaluations"] == 2 and record["model_version"] is None


@pytest.mark.slow
def test_resume_refuses_a_study_that_is_still_running(stores, write_config):
    """`resume` while the driver still runs the study (another terminal, a job
    thought dead) failed its running trial and ran trials beside it; the first
    driver then died in Optuna's "Trial#0 has already finished"."""
    cfg = small_config("live", stores, trials=2)
    cfg["params"].update(epochs=400, batch_size=32)     # a few seconds a trial
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.cli.app", "run", str(write_config(cfg))],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name="live", storage=stores.optuna_url).trials
            except KeyError:
                continue
            if any(t.state == RUNNING for t in trials):
                break
        res = invoke("resume", "live", "--storage", stores.optuna_url)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert res.exit_code == 2
    assert res.output.startswith("error: study 'live' is running: its driver (pid ")
    assert proc.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="live", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert study.user_attrs["driver"] is None and study.user_attrs["ended"] == "FINISHED"


@pytest.mark.slow
def test_of_two_resumes_of_a_crashed_study_started_together_one_runs_it(stores, write_config):
    """Both passed the check of the lease, taken only once the crashed trial was
    failed and its run reopened: one died in Optuna's UpdateFinishedTrialError,
    the other left a child run RUNNING for good."""
    cfg = small_config("twice", stores, trials=3)
    cfg["params"].update(epochs=150, batch_size=32)
    kill_mid_trial(write_config(cfg), stores.optuna_url, "twice", complete_before=1)
    resume = [sys.executable, "-m", "hypersweep.cli.app", "resume", "twice",
              "--storage", stores.optuna_url]
    procs = [subprocess.Popen(resume, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = outs[[p.returncode for p in procs].index(2)]
    # The one line alone: not the study's header (`... marked FAIL`) first.
    assert len(refused.splitlines()) == 1, refused
    assert refused.startswith("error: study 'twice' is running")
    study = optuna.load_study(study_name="twice", storage=stores.optuna_url)
    assert all(t.state.is_finished() for t in study.trials)
    assert sum(not t.user_attrs.get("interrupted") for t in study.trials) == 3
    assert study.user_attrs["driver"] is None and study.user_attrs["ended"] == "FINISHED"
    parent, children = study_runs(stores.mlflow_uri, "twice")
    assert parent.info.status == "FINISHED"
    assert len(children) == len(study.trials)
    assert all(c.info.status != "RUNNING" for c in children)


def test_a_resume_that_another_claimed_first_says_so_in_one_line(stores, write_config,
                                                                  monkeypatch):
    """Of two resumes started together, the one that lost printed the study's header
    (`resuming study ... marked FAIL`) before its error: the lease was claimed only
    once Ray had started. Here another driver claims it just after this resume's
    first look at the lease."""
    import hypersweep.search.tracking as tracking
    from hypersweep.search.lease import LEASE, _started

    cfg = small_config("claimed", stores, trials=3)
    cfg["params"].update(epochs=150, batch_size=32)
    kill_mid_trial(write_config(cfg), stores.optuna_url, "claimed", complete_before=1)
    study = optuna.load_study(study_name="claimed", storage=stores.optuna_url)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    check_store_exists = tracking.check_store_exists

    def claimed_meanwhile(uri: str) -> None:
        study.set_user_attr(LEASE, {"host": socket.gethostname(), "pid": other.pid,
                                    "started": _started(other.pid), "beat": time.time(),
                                    "token": "the other resume's"})
        check_store_exists(uri)

    monkeypatch.setattr(tracking, "check_store_exists", claimed_meanwhile)
    try:
        res = invoke("resume", "claimed", "--storage", stores.optuna_url)
    finally:
        other.kill()
        other.wait()
    assert res.exit_code == 2, res.output
    assert len(res.output.splitlines()) == 1, res.output
    assert res.output.startswith(f"error: study 'claimed' is running: its driver (pid "
                                 f"{other.pid} on {socket.gethostname()}) renewed its lease ")
    after = optuna.load_study(study_name="claimed", storage=stores.optuna_url)
    assert [t.state.name for t in after.trials] == ["COMPLETE", "RUNNING"]     # untouched


class StoppedAtLaunch(MlflowTracker):
    """A Ctrl-C that lands after Optuna made trial 1 RUNNING, before it is launched."""

    def start_trial(self, parent, number, params):
        if number == 1:
            raise KeyboardInterrupt
        return super().start_trial(parent, number, params)


def test_a_stop_between_asking_a_trial_and_launching_it_leaves_nothing_running(stores):
    """Trial 1 stayed RUNNING (with no MLflow run), though the message said the
    running trials were marked FAIL."""
    cfg = parse_config(small_config("between", stores, trials=3))
    outcome = StudyDriver(cfg, SerialExecutor(), StoppedAtLaunch(cfg.tracking.uri)).run()
    assert outcome.interrupted and outcome.exit_code == 130
    study = optuna.load_study(study_name="between", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].user_attrs["reason"] == "interrupted by the user (Ctrl-C)"
    assert outcome.counts["FAIL"] == 1


def test_resume_on_another_executor_when_the_study_s_cluster_is_gone(stores):
    """`resume` had no way past a stored Ray address that no longer answers."""
    run_study(small_config("gone", stores, trials=2))
    study = optuna.load_study(study_name="gone", storage=stores.optuna_url)
    config = study.user_attrs["config"]
    config["resources"].update(executor="ray", address="127.0.0.1:1", trial_timeout=600)
    study.set_user_attr("config", config)
    res = invoke("resume", "gone", "--storage", stores.optuna_url, "--trials", "3")
    # It named the key, not that the study had stored it, nor a way past it
    assert res.exit_code == 2 and res.output.startswith(
        "error: resources.address: cannot reach a Ray cluster at 127.0.0.1:1: "), res.output
    assert res.output.rstrip().endswith(
        "(the address the study ran with, stored with it); to resume on another cluster: "
        "--ray-address ADDR, or on this machine: --executor serial, or --ray-address local"), \
        res.output
    res = invoke("resume", "gone", "--storage", stores.optuna_url, "--trials", "3",
                 "--executor", "serial")
    assert res.exit_code == 0, res.output
    assert "note: the study's trial_timeout (600 s) does not apply under the serial" in res.output
    assert "parameter importance (val_accuracy" in res.output      # as after `run`
    study = optuna.load_study(study_name="gone", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.user_attrs["config"]["resources"]["address"] == "127.0.0.1:1"   # this run only


def test_resume_closes_trial_runs_whose_end_the_mlflow_store_never_took(stores):
    """The MLflow server down when a trial ended: Optuna had it COMPLETE, its run
    stayed RUNNING for good, and resume left it so."""
    run_study(small_config("lost", stores, trials=2))
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    parent, children = study_runs(stores.mlflow_uri, "lost")
    lost = children[0].info.run_id
    client.update_run(lost, status="RUNNING")    # its end never landed, nor its artifacts
    artifacts = Path(client.get_run(lost).info.artifact_uri.removeprefix("file://"))
    shutil.rmtree(artifacts)
    study = optuna.load_study(study_name="lost", storage=stores.optuna_url)
    study.set_user_attr("ended", None)
    finals = len(client.get_metric_history(lost, "final_val_accuracy"))
    res = invoke("resume", "lost", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    run = client.get_run(lost)
    assert run.info.status == "KILLED"
    assert run.data.tags["lost_end"] == (
        "the MLflow store did not take this run's end; its Optuna trial is COMPLETE; its "
        "result and trial.yaml were written from Optuna on resume, its model.pt is lost "
        "(hypersweep replay trains it again)")
    assert client.get_run(children[1].info.run_id).info.status == "FINISHED"
    # What Optuna holds of what was lost is written again: the result the trial was
    # told, at its epoch, and a trial.yaml that replays it (`best` points at the run).
    trial = study.trials[0]
    written = client.get_metric_history(lost, "final_val_accuracy")
    assert len(written) == finals + 1
    assert written[-1].value == trial.value and written[-1].step == trial.user_attrs["epochs"]
    replayed = yaml.safe_load(open(client.download_artifacts(lost, "trial.yaml")))
    assert replayed["params"]["lr"] == trial.params["lr"]
    assert replayed["seed"] == trial.user_attrs["seed"]
    res = invoke("replay", lost, "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0 and "identical" in res.output, res.output


def test_resume_gives_a_run_to_each_trial_the_mlflow_store_never_took(stores):
    """A trial whose run was never made (the MLflow server down as it started, or a
    stop between Optuna making the trial and its launch) had no run for good:
    the trial numbers in the MLflow UI skipped it, its reason only in Optuna."""
    run_study(small_config("unmade", stores, trials=2))
    study = optuna.load_study(study_name="unmade", storage=stores.optuna_url)
    study.set_user_attr("ended", None)
    done = study.trials[1]
    reason = "interrupted: the MLflow server at http://127.0.0.1:1 stopped answering"
    study.add_trial(optuna.trial.create_trial(           # trial 2: launched, no run made
        state=FAIL, params=done.params, distributions=done.distributions,
        intermediate_values={1: 0.5},
        user_attrs={"interrupted": True, "reason": reason, "epochs": 1, "seed": 77}))
    study.ask()                                         # trial 3: made, never launched
    res = invoke("resume", "unmade", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="unmade", storage=stores.optuna_url)
    _, children = study_runs(stores.mlflow_uri, "unmade")
    by_number = {int(c.data.tags["optuna.trial_number"]): c for c in children}
    assert sorted(by_number) == [t.number for t in study.trials]      # one run each
    # Optuna takes no attributes on a finished trial: trial 3's was RUNNING
    assert [t.user_attrs.get("mlflow_run_id") for t in study.trials] == \
        [by_number[t.number].info.run_id if t.number != 2 else None for t in study.trials]
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for number, why in ((2, reason), (3, "interrupted: the driver stopped while this "
                                          "trial ran; failed on resume")):
        run = by_number[number]
        assert run.info.status == "FAILED" and run.info.run_name == f"trial-{number:04d}"
        assert run.data.tags["failure_reason"] == why and run.data.tags["state"] == "FAIL"
        assert run.data.tags["lost_start"].startswith(
            "the MLflow store did not take this trial's run as it started")
        assert not any(k.startswith("final_") for k in run.data.metrics)
    made = by_number[2]
    assert made.data.params["seed"] == "77" and made.data.params["lr"] == str(done.params["lr"])
    assert [(m.step, m.value) for m in client.get_metric_history(
        made.info.run_id, "val_accuracy")] == [(1, 0.5)]
    assert made.data.tags["epochs"] == "1"
    assert by_number[3].data.params == {"trial_number": "3"}      # it never drew any
    assert "lost_start" not in by_number[0].data.tags


def test_a_run_resume_closes_as_lost_takes_the_trial_s_state_from_optuna(stores):
    """Its `state` tag still said RUNNING (set when the run started), though the
    README has it COMPLETE, PRUNED or FAIL."""
    run_study(small_config("lost-state", stores, trials=2))
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    _, children = study_runs(stores.mlflow_uri, "lost-state")
    lost = children[1].info.run_id
    client.update_run(lost, status="RUNNING")       # as start_trial left it: its end never
    client.set_tag(lost, "state", "RUNNING")        # landed
    optuna.load_study(study_name="lost-state", storage=stores.optuna_url).set_user_attr(
        "ended", None)
    res = invoke("resume", "lost-state", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    run = client.get_run(lost)
    assert run.info.status == "KILLED" and "lost_end" in run.data.tags
    assert run.data.tags["state"] == "COMPLETE"


def test_sighup_marks_the_running_trial_failed_and_exits_129(stores, write_config):
    """An SSH session dropped under `hypersweep run` (no nohup): SIGHUP ended it at
    once, leaving the trial and the parent run RUNNING in both stores."""
    cfg = small_config("hup", stores, trials=2)
    cfg["params"] = {**cfg["params"], "epochs": 3000}
    proc = signal_mid_trial(write_config(cfg), stores.optuna_url, "hup", 0, signal.SIGHUP)
    assert proc.returncode == 129
    assert "stopped by SIGHUP: running trials were marked FAIL; continue with: hypersweep " \
        "resume hup" in proc.stderr.read().decode()
    trials = optuna.load_study(study_name="hup", storage=stores.optuna_url).trials
    assert [t.state.name for t in trials] == ["FAIL"]
    parent, children = study_runs(stores.mlflow_uri, "hup")
    assert parent.info.status != "RUNNING"
    assert [c.data.tags["failure_reason"] for c in children] == ["stopped by SIGHUP"]


@pytest.mark.slow
def test_a_double_ctrl_c_still_closes_the_study_in_both_stores(stores, write_config):
    """The second Ctrl-C landed in the clean-up the first began: the parent run was
    left RUNNING, the study's end unwritten, and no resume command said."""
    cfg = small_config("twice-stopped", stores, trials=3)
    cfg["params"].update(epochs=150, batch_size=32)
    proc = signal_mid_trial(write_config(cfg), stores.optuna_url, "twice-stopped", 1,
                            signal.SIGINT, again_after=0.1)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "continue with: hypersweep resume twice-stopped" in err
    study = optuna.load_study(study_name="twice-stopped", storage=stores.optuna_url)
    assert all(t.state.is_finished() for t in study.trials)
    assert study.user_attrs["ended"] == "KILLED" and study.user_attrs["driver"] is None
    parent, children = study_runs(stores.mlflow_uri, "twice-stopped")
    assert parent.info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)


@pytest.mark.slow
def test_a_third_ctrl_c_quits_and_still_says_how_to_continue(stores, write_config):
    """It quit with a bare `interrupted`: the study's end unwritten, and no word of
    the resume that closes it."""
    cfg = small_config("thrice", stores, trials=3)
    cfg["params"].update(epochs=150, batch_size=32)
    proc = signal_mid_trial(write_config(cfg), stores.optuna_url, "thrice", 1,
                            signal.SIGINT, again_after=0.05, times=3)
    err = proc.stderr.read().decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "continue with: hypersweep resume thrice" in err, err[-2000:]
    res = invoke("resume", "thrice", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    parent, children = study_runs(stores.mlflow_uri, "thrice")
    assert parent.info.status == "FINISHED"
    assert all(c.info.status != "RUNNING" for c in children)


def stop_in_process(monkeypatch, first: int | None, in_cleanup: int | None,
                    in_printing: int | None) -> None:
    """Signal this process: `first` as trial 1 reports its first epoch, `in_cleanup`
    (if given) as the stopped study starts writing its end, `in_printing` (if given)
    once the end is written, as the CLI prints the best trials."""
    import hypersweep.cli.app as cli

    def send(signum: int | None) -> None:
        if signum is not None:
            os.kill(os.getpid(), signum)
            for _ in range(10):         # the handler runs here, in the main thread
                time.sleep(0.01)

    on_report, end_study, print_best = StudyDriver._on_report, StudyDriver._end_study, \
        cli.print_best

    def reporting(self, number, step, metrics):
        if number == 1 and step == 1:
            send(first)
        return on_report(self, number, step, metrics)

    def ending(self, status):
        send(in_cleanup)
        return end_study(self, status)

    def printing(*args, **kwargs):
        send(in_printing)
        return print_best(*args, **kwargs)

    monkeypatch.setattr(StudyDriver, "_on_report", reporting)
    monkeypatch.setattr(StudyDriver, "_end_study", ending)
    monkeypatch.setattr(cli, "print_best", printing)


@pytest.mark.parametrize("signals, code, by", [
    ((signal.SIGTERM, None, signal.SIGINT), 143, "stopped by SIGTERM"),
    ((signal.SIGTERM, signal.SIGINT, signal.SIGINT), 143, "stopped by SIGTERM"),
    ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 130, "interrupted"),
])
def test_a_signal_after_the_study_s_end_is_written_does_not_change_how_it_ends(
        stores, write_config, monkeypatch, signals, code, by):
    """SIGTERM, then a Ctrl-C 0.2 s later as the results printed: both stores had the
    study's end, but the process exited 130 with a bare `interrupted`, no word of
    how to continue. The stop that came first decides; a Ctrl-C that quits once the
    end is written quits with its status and hint."""
    cfg = small_config("stopped", stores, trials=3)
    cfg["params"].update(epochs=5)
    stop_in_process(monkeypatch, *signals)
    res = invoke("run", str(write_config(cfg)))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert f"{by}: running trials were marked FAIL; continue with: hypersweep resume " \
        f"{cfg['study']} --storage {stores.optuna_url}" in res.output, res.output
    study = optuna.load_study(study_name=cfg["study"], storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].user_attrs["reason"] == by.replace(
        "interrupted", "interrupted by the user (Ctrl-C)")
    assert study.user_attrs["ended"] == "KILLED" and study.user_attrs["driver"] is None
    parent, children = study_runs(stores.mlflow_uri, cfg["study"])
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]


@pytest.mark.parametrize("signum, code, by", [
    (signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")])
@pytest.mark.parametrize("closing", [False, True])
def test_a_signal_as_a_finished_study_s_results_print_says_the_study_is_complete(
        stores, write_config, monkeypatch, signum, code, by, closing):
    """QA: a SIGTERM as the results of a finished study printed cut them short with a
    bare `stopped by SIGTERM`, which reads as a lost study; so did one as the
    progress display closed (`closing`), before the results."""
    cfg = small_config("printing", stores, trials=2)
    if closing:
        from hypersweep.cli.progress import StudyProgress
        close = StudyProgress.__exit__

        def closing_display(self, *exc):
            os.kill(os.getpid(), signum)
            for _ in range(10):         # the handler runs here, in the main thread
                time.sleep(0.01)
            return close(self, *exc)

        monkeypatch.setattr(StudyProgress, "__exit__", closing_display)
    else:
        stop_in_process(monkeypatch, None, None, signum)
    res = invoke("run", str(write_config(cfg)))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.output.splitlines()[-1] == (
        f"{by}: the study is complete in its stores; its results: hypersweep best printing "
        f"--storage {stores.optuna_url}"), res.output
    study = optuna.load_study(study_name="printing", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["ended"] == "FINISHED"
    parent, _ = study_runs(stores.mlflow_uri, "printing")
    assert parent.info.status == "FINISHED"


@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_once_the_last_trial_ended_is_said_to_have_come_late(
        stores, write_config, monkeypatch, signum, name):
    """QA: a Ctrl-C as a finished study's end was written printed `stopping: ...`,
    then the results, and exited 0 with no word of what became of the stop."""
    cfg = small_config("late", stores, trials=2)
    stop_in_process(monkeypatch, None, signum, None)
    res = invoke("run", str(write_config(cfg)))
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == (
        f"note: the {name} came once the last trial had ended; the study is complete")
    assert ("stopping: writing the study's end" in res.output) == (signum == signal.SIGINT)
    study = optuna.load_study(study_name="late", storage=stores.optuna_url)
    assert study.user_attrs["ended"] == "FINISHED"
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("signum, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_stop_as_the_last_trial_s_result_is_recorded_leaves_the_study_complete(
        stores, write_config, monkeypatch, signum, name):
    """QA: a SIGTERM 50-150 ms after the last trial's final epoch, as its result was
    written, ended a study of all-COMPLETE trials KILLED, saying `running trials
    were marked FAIL` when none were."""
    tell = optuna.study.Study.tell
    sent: list[int] = []

    def telling(self, trial, *args, **kwargs):
        out = tell(self, trial, *args, **kwargs)
        number = trial if isinstance(trial, int) else trial.number
        if number == 1 and not sent:        # the last of 2
            sent.append(signum)
            os.kill(os.getpid(), signum)
            for _ in range(10):             # held until the trial's end is written
                time.sleep(0.01)
        return out

    monkeypatch.setattr(optuna.study.Study, "tell", telling)
    res = invoke("run", str(write_config(small_config("recorded", stores, trials=2))))
    assert sent and res.exit_code == 0, res.output
    assert "marked FAIL" not in res.output
    assert res.output.splitlines()[-1] == (
        f"note: the {name} came once the last trial had ended; the study is complete")
    study = optuna.load_study(study_name="recorded", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["ended"] == "FINISHED"
    parent, children = study_runs(stores.mlflow_uri, "recorded")
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]


@pytest.mark.slow
def test_sigterm_then_ctrl_c_exits_as_sigterm_with_its_hint(stores, write_config):
    """QA: SIGTERM, then SIGINT 0.25 s later, to a running `hypersweep run`: exit 130
    and a bare `interrupted`, though the study's end was written to both stores."""
    cfg = small_config("term-then-int", stores, trials=3)
    cfg["params"].update(epochs=150, batch_size=32)
    proc = signal_mid_trial(write_config(cfg), stores.optuna_url, "term-then-int", 1,
                            signal.SIGTERM, again_after=0.25, then=signal.SIGINT)
    err = proc.stderr.read().decode()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert "stopped by SIGTERM: running trials were marked FAIL; continue with: hypersweep " \
        "resume term-then-int" in err, err[-2000:]
    study = optuna.load_study(study_name="term-then-int", storage=stores.optuna_url)
    assert all(t.state.is_finished() for t in study.trials)
    assert study.user_attrs["ended"] == "KILLED" and study.user_attrs["driver"] is None
    parent, children = study_runs(stores.mlflow_uri, "term-then-int")
    assert parent.info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children)


def test_resume_and_replay_say_when_the_models_file_or_the_data_changed(stores, write_config,
                                                                         tmp_path):
    """A model of one's own edited between run and resume: the study went on with
    two architectures, and replay said only that the curves differ."""
    from tests.models.test_registry import write_nets

    nets = write_nets(tmp_path)
    rows = "".join(f"{i % 5},{(i * 7) % 11},{i % 2}\n" for i in range(60))
    (tmp_path / "t.csv").write_text("a,b,y\n" + rows)
    cfg = small_config("sourced", stores, trials=1)
    cfg["model"] = f"{nets}:tiny"
    cfg["data"] = {"name": "csv", "options": {"path": str(tmp_path / "t.csv")}}
    cfg["params"] = {"epochs": 2, "batch_size": 16}
    cfg["space"] = {"width": {"int": [4, 8]}}
    path = str(write_config(cfg))
    assert invoke("run", path).exit_code == 0
    same = invoke("resume", "sourced", "--storage", stores.optuna_url, "--trials", "2")
    assert same.exit_code == 0 and "changed since" not in same.output
    run_id = optuna.load_study(study_name="sourced",
                               storage=stores.optuna_url).trials[0].user_attrs["mlflow_run_id"]
    # Nothing changed: no note (replay read a trial.yaml's flat data options as none)
    (tmp_path / "new.csv").write_text("a,b\n1,2\n3,4\n")
    predict = ["predict", run_id, "-i", str(tmp_path / "new.csv"), "-o",
               str(tmp_path / "out.csv"), "--tracking-uri", stores.mlflow_uri]
    for args in (["replay", run_id, "--tracking-uri", stores.mlflow_uri], predict):
        res = invoke(*args)
        assert res.exit_code == 0 and "changed since" not in res.output, (args, res.output)
    with open(nets, "a") as f:
        f.write("\n# an edit\n")
    (tmp_path / "t.csv").write_text("a,b,y\n" + rows + "1,2,0\n")
    res = invoke("resume", "sourced", "--storage", stores.optuna_url, "--trials", "3")
    assert res.exit_code == 0, res.output
    for line in ("note: model: the model's file changed since the study's first trials; they "
                 "trained on the earlier one",
                 "note: data.options.path: the data file changed since the study's first "
                 "trials; they trained on the earlier one"):
        assert line in res.output
    res = invoke("replay", run_id, "--tracking-uri", stores.mlflow_uri)
    assert "note: model: the model's file changed since" in res.output
    assert "note: data.options.path: the data file changed since" in res.output
    # predict builds the net by the file as it is now; final retrains on both as they are
    res = invoke(*predict)
    assert res.exit_code == 0 and res.output.startswith(
        f"note: model: {nets} changed since the study trained; the model is built by the file "
        "as it is now, with the weights it trained\n"), res.output
    res = invoke("final", "sourced", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    for line in ("note: model: the model's file changed since the study's first trials; they "
                 "trained on the earlier one; the final model trains on it as it is now",
                 "note: data.options.path: the data file changed since the study's first "
                 "trials; they trained on the earlier one; the final model trains on it as it "
                 "is now"):
        assert line in res.output


def test_a_stop_just_after_optuna_is_told_a_trial_s_end_still_ends_its_run_alike(
        stores, write_config, monkeypatch):
    """QA: SIGTERM the moment Optuna held a trial COMPLETE, before its MLflow run was
    ended: the stop failed the run (`stopped by SIGTERM`), Optuna kept the trial
    COMPLETE, and `resume` left the two disagreeing for good. A trial's end is now
    written to both stores before a stop is taken."""
    tell = optuna.study.Study.tell
    sent: list[int] = []

    def telling(self, *args, **kwargs):
        out = tell(self, *args, **kwargs)
        if not sent and kwargs.get("state") == optuna.trial.TrialState.COMPLETE:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10):         # the handler runs here, in the main thread
                time.sleep(0.01)
        return out

    monkeypatch.setattr(optuna.study.Study, "tell", telling)
    cfg = small_config("told", stores, trials=3)
    res = invoke("run", str(write_config(cfg)))
    assert sent and res.exit_code == 143, res.output
    study = optuna.load_study(study_name="told", storage=stores.optuna_url)
    _, children = study_runs(stores.mlflow_uri, "told")
    runs = {int(c.data.tags["optuna.trial_number"]): c.info.status for c in children}
    assert study.trials[0].state.name == "COMPLETE"
    assert {t.number: t.state.name for t in study.trials} == {
        n: {"FINISHED": "COMPLETE", "FAILED": "FAIL"}[s] for n, s in runs.items()}

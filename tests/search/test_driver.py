"""The study driver against real MLflow and Optuna SQLite stores."""
from __future__ import annotations

import dataclasses
import math

import optuna
from mlflow.tracking import MlflowClient

from hypersweep.models.train import train_trial
from hypersweep.models.trial import TrialState
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs
from tests.search.events import Recorder


def run(cfg_dict, train=None, events: Recorder | None = None):
    cfg = parse_config(cfg_dict)
    driver = StudyDriver(cfg, SerialExecutor(train=train), MlflowTracker(cfg.tracking.uri),
                         events=events)
    return cfg, driver.run()


def test_trial_faults_fail_only_that_trial(stores):
    """A raising trial and a NaN-loss trial are FAIL with a reason; the others complete."""
    def flaky(spec, report):
        if spec.trial_number == 1:
            raise RuntimeError("simulated fault in the data pipeline")
        if spec.trial_number == 2:
            # A learning rate this large makes the loss overflow to NaN/inf for real.
            params = {**spec.params, "lr": 1e12, "optimizer": "sgd"}
            return train_trial(dataclasses.replace(spec, params=params), report)
        return train_trial(spec, report)

    recorder = Recorder()
    cfg, outcome = run(small_config("faults", stores, trials=5), train=flaky, events=recorder)
    assert outcome.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 2}
    # One at a time: each trial starts alone and leaves none running when it ends.
    events = recorder.ended
    assert recorder.started == [(n, 1) for n in range(5)]
    assert [e.running for e in events] == [0] * 5
    assert [e.state for e in events][1:3] == [TrialState.FAIL, TrialState.FAIL]
    # Every epoch each trial reported, in order (the raising trial reported none).
    assert [n for n, _ in recorder.epochs] == sorted(n for n, _ in recorder.epochs)
    assert [s for n, s in recorder.epochs if n == 0] == [1, 2, 3]
    assert not [s for n, s in recorder.epochs if n == 1]
    assert recorder.notices == []

    study = optuna.load_study(study_name="faults", storage=stores.optuna_url)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 2
    assert "simulated fault" in study.trials[1].user_attrs["reason"]
    assert "nan" in study.trials[2].user_attrs["reason"] or "inf" in study.trials[2].user_attrs["reason"]

    _, children = study_runs(stores.mlflow_uri, "faults")
    assert [c.data.tags["state"] for c in children] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert children[1].info.status == "FAILED"
    assert "RuntimeError: simulated fault" in children[1].data.tags["failure_reason"]
    assert children[0].info.status == "FINISHED"


def test_same_seed_same_parameters_and_metrics(tmp_path):
    """Two serial runs of one config with one seed agree trial by trial."""
    from tests.conftest import Stores

    histories = []
    for i in range(2):
        d = tmp_path / f"s{i}"
        d.mkdir()
        stores = Stores(d)
        run(small_config("repeat", stores, trials=3))
        study = optuna.load_study(study_name="repeat", storage=stores.optuna_url)
        client = MlflowClient(tracking_uri=stores.mlflow_uri)
        _, children = study_runs(stores.mlflow_uri, "repeat")
        histories.append([
            (t.params, t.values,
             [m.value for m in client.get_metric_history(c.info.run_id, "val_loss")])
            for t, c in zip(study.trials, children)])
    assert histories[0] == histories[1]
    assert len({str(p) for p, _, _ in histories[0]}) == 3     # the trials differ from each other


def test_nonfinite_objective_fails_the_trial(stores):
    from hypersweep.models.trial import TrialResult

    def no_objective(spec, report):
        report(1, {"val_accuracy": 0.5, "val_loss": 1.0})
        return TrialResult(TrialState.COMPLETE, metrics={"val_accuracy": math.nan}, epochs=1)

    _, outcome = run(small_config("nan-objective", stores, trials=2), train=no_objective)
    assert outcome.counts["FAIL"] == 2
    study = optuna.load_study(study_name="nan-objective", storage=stores.optuna_url)
    assert study.trials[0].user_attrs["reason"] == "objective val_accuracy is nan"


def test_the_serial_executor_says_it_runs_one_trial_at_a_time_on_the_cpu(stores):
    """`parallel: 2` or `gpus_per_trial` with `executor: serial` were ignored without
    a word: it runs one trial at a time, on the CPU. Said from the config, so that
    `validate` says it too."""
    from hypersweep.search.config import config_notes
    from hypersweep.search.executors import make_executor
    cfg = small_config("one-at-a-time", stores)
    notes = {}
    for parallel in (1, 2, "auto"):
        cfg["resources"] = {"executor": "serial", "parallel": parallel}
        parsed = parse_config(cfg)
        notes[parallel] = (make_executor(parsed).capacity, config_notes(parsed))
    assert notes[1] == (1, [])
    assert notes[2] == (1, ["resources.parallel: 2 applies to the ray executor; the serial "
                            "executor runs one trial at a time"])
    assert notes["auto"] == (1, [])        # as many as it can run: one
    cfg["resources"] = {"executor": "serial", "gpus_per_trial": 0.5}
    assert config_notes(parse_config(cfg)) == [
        "resources.gpus_per_trial: 0.5 applies to the ray executor; the serial executor "
        "trains on the CPU"]
    for retries in (0, 3):      # not its default, 1: said nothing of, as it was
        cfg["resources"] = {"executor": "serial", "max_retries": retries}
        assert config_notes(parse_config(cfg)) == [
            f"resources.max_retries: {retries} applies to the ray executor, whose trials run in "
            "worker processes; the serial executor runs them in this one, which a trial that "
            "kills it stops"]
    cfg["resources"] = {"executor": "ray", "max_retries": 3}
    assert config_notes(parse_config(cfg)) == []


def test_the_serial_executor_trains_on_no_more_threads_than_the_machine_has(stores,
                                                                            monkeypatch):
    """`cpus_per_trial: 64` under the serial executor trained on 64 torch threads of a
    2-core machine, without a word; Ray refuses it (no node holds the trial)."""
    import os
    from hypersweep.search.config import config_notes
    from hypersweep.search.driver import trial_spec
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = small_config("threads", stores)
    cfg["resources"] = {"executor": "serial", "cpus_per_trial": 64}
    parsed = parse_config(cfg)
    assert config_notes(parsed) == [
        "resources.cpus_per_trial: 64 CPUs per trial, but this machine has 2; the serial "
        "executor trains each trial here, on 2 torch threads"]
    assert trial_spec(parsed, {"lr": 0.01}, 0, 1).threads == 2     # what trial.yaml records
    cfg["resources"] = {"executor": "serial", "cpus_per_trial": 2}
    assert config_notes(parse_config(cfg)) == []
    assert trial_spec(parse_config(cfg), {"lr": 0.01}, 0, 1).threads == 2
    cfg["resources"] = {"executor": "ray", "cpus_per_trial": 4, "address": "10.0.0.1:6379"}
    assert trial_spec(parse_config(cfg), {"lr": 0.01}, 0, 1).threads == 4  # a node of the cluster's


def test_grid_points_set_for_another_strategy_gets_a_note(stores):
    """It was ignored without a word; at its default (as every stored snapshot
    holds it) it is said nothing of."""
    from hypersweep.search.config import config_notes
    cfg = small_config("points", stores, strategy="tpe", grid_points=3)
    assert config_notes(parse_config(cfg)) == [
        "search.grid_points: 3 applies to grid search; tpe samples each range whole"]
    for search in ({"strategy": "grid", "grid_points": 3}, {"strategy": "tpe", "grid_points": 4}):
        assert config_notes(parse_config(small_config("points", stores, **search))) == []


def test_a_trial_records_every_hyperparameter_it_trained_with(stores):
    """Only the keys of `params` and `space` were logged: the defaults a trial trained
    with (optimizer, batch size, ...) could not be compared in the MLflow UI, and its
    trial.yaml replayed only while the defaults stayed the same."""
    import yaml
    from mlflow.tracking import MlflowClient

    from hypersweep.models.train import hyperparameters

    cfg, _ = run(small_config("every", stores, trials=1))
    _, children = study_runs(stores.mlflow_uri, "every")
    logged = children[0].data.params
    assert set(hyperparameters("mlp")) <= set(logged)
    assert logged["batch_size"] == "128" and logged["activation"] == "relu"     # given; default
    record = yaml.safe_load(open(MlflowClient(tracking_uri=stores.mlflow_uri).download_artifacts(
        children[0].info.run_id, "trial.yaml")))
    assert set(record["params"]) == set(hyperparameters("mlp"))
    assert record["params"]["weight_decay"] == 0.0 and record["params"]["epochs"] == 3



class _PgStores:
    """Stores as `small_config` takes them: PostgreSQL URLs with a password."""
    mlflow_uri = "postgresql://qa:secret@db/m"
    optuna_url = "postgresql://qa:secret@db/o"


def test_password_note_follows_a_command_with_a_masked_password():
    from hypersweep.search.driver import password_note, resume_command
    pg = " (put the password in place of ***, or set PGPASSWORD)"
    assert password_note("hypersweep resume s --storage 'postgresql://qa:***@db/o'") == pg
    assert password_note("x --storage postgresql+psycopg://qa:***@db/o") == pg
    assert password_note("x --storage 'mysql://qa:***@db/o'") == \
        " (put the password in place of ***)"
    assert password_note("x --tracking-uri 'http://qa:***@h:5000' --storage "
                         "'postgresql://qa:***@db/o'") == pg
    for command in ("x --storage sqlite:////tmp/o.db", "x --storage postgresql://qa@db/o",
                    "x --set 'search.note=a:***@b'"):
        assert password_note(command) == "", command
    cfg = parse_config(small_config("my study", _PgStores()))
    assert resume_command(cfg, " [--trials N]") == (
        "hypersweep resume 'my study' --storage 'postgresql://qa:***@db/o' [--trials N]" + pg)


def test_an_in_process_tracker_gives_back_its_store_s_files_when_closed(stores):
    """MLflow keeps a store per URI, with its pool of open SQLite connections, for the
    process's life: a process tracking one study after another kept five more open
    files for each."""
    import os
    from pathlib import Path

    def open_store_files() -> list[str]:
        fds = Path("/proc/self/fd")
        names = []
        for fd in fds.iterdir():
            try:
                names.append(os.readlink(fd))
            except OSError:         # closed since listed
                continue
        return [n for n in names if n.startswith(str(stores.dir / "mlflow.db"))]

    cfg = parse_config(small_config("files", stores, trials=1))
    with MlflowTracker(cfg.tracking.uri) as tracker:
        StudyDriver(cfg, SerialExecutor(), tracker).run()
        assert open_store_files()       # the store was open while in use
    assert open_store_files() == []

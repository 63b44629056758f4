"""`hypersweep delete`, and a new study whose name the MLflow store holds already,
on real MLflow and Optuna SQLite stores."""
from __future__ import annotations

import os
import socket
import time

import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.errors import UserError
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.lease import LEASE
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def run(stores, name: str = "alpha", trials: int = 2):
    cfg = parse_config(small_config(name, stores, trials=trials))
    return StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()


def names(stores) -> list[str]:
    return optuna.study.get_all_study_names(stores.optuna_url)


def test_delete_asks_then_removes_the_study_from_both_stores_and_frees_its_name(stores):
    run(stores)
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    exp_id = client.get_experiment_by_name("alpha").experiment_id

    res = invoke("delete", "alpha", *stores.cli_args(), input="n\n")
    assert res.exit_code == 1
    assert "Optuna: study 'alpha' in" in res.output and "2 trials (2 complete)" in res.output
    assert "MLflow: experiment 'alpha' in" in res.output and "3 runs" in res.output
    assert "nothing deleted" in res.output
    res = invoke("delete", "alpha", *stores.cli_args())        # no answer at all
    assert res.exit_code == 1 and "nothing deleted" in res.output
    # A piped answer is not echoed: the prompt's line is ended, not run into the result.
    import subprocess
    import sys
    from pathlib import Path
    piped = subprocess.run([str(Path(sys.executable).with_name("hypersweep")), "delete", "alpha",
                            *stores.cli_args()], input="n\n", capture_output=True, text=True)
    assert piped.returncode == 1
    assert [line.rstrip() for line in piped.stderr.splitlines()] == [
        "delete? [y/N]:", "nothing deleted"], piped.stderr
    assert names(stores) == ["alpha"]
    assert client.get_experiment_by_name("alpha").lifecycle_stage == "active"

    res = invoke("delete", "alpha", *stores.cli_args(), input="y\n")
    assert res.exit_code == 0, res.output
    assert names(stores) == []
    assert client.get_experiment_by_name("alpha") is None     # the name is free
    trash = client.get_experiment(exp_id)
    assert trash.lifecycle_stage == "deleted" and trash.name.startswith("alpha.deleted-")
    assert len(client.search_runs([exp_id], run_view_type=ViewType.ALL)) == 3
    shown = " ".join(res.output.split())
    said = "removes them and the experiment for good (no other experiment's runs): "
    assert said in shown
    gc = (f"gc --backend-store-uri {stores.mlflow_uri} --tracking-uri {stores.mlflow_uri} "
          f"--experiment-ids {exp_id} --run-ids ")
    assert gc in shown
    # Another experiment in the trash, and a deleted run of a live one: gc without
    # --run-ids removed their runs too, while it said it removed this experiment.
    other = client.create_experiment("other")
    client.create_run(other)
    client.delete_experiment(other)
    live = client.create_experiment("live")
    client.delete_run(client.create_run(live).info.run_id)
    # The command as printed works from anywhere: MLflow's own gc removes the experiment.
    import shlex
    import subprocess
    printed = shown[shown.index(said) + len(said):].strip()
    gc_run = subprocess.run(shlex.split(printed), cwd="/", capture_output=True, text=True)
    assert gc_run.returncode == 0, gc_run.stderr[-2000:]
    assert exp_id not in [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    for kept in (other, live):
        assert len(client.search_runs([kept], run_view_type=ViewType.ALL)) == 1

    run(stores, trials=1)                       # a new study of that name, from scratch
    parent, children = study_runs(stores.mlflow_uri, "alpha")
    assert [c.info.run_name for c in children] == ["trial-0000"]


def test_a_new_study_is_not_added_to_an_old_parent_run_of_its_name(stores):
    """The Optuna study deleted (or another --storage) and the MLflow store kept: a
    new study of that name reused the old parent run, and its trials sat beside
    the old ones of the same numbers (two trial-0000 runs under one parent)."""
    run(stores)
    optuna.delete_study(study_name="alpha", storage=stores.optuna_url)
    res = invoke("run", str(write_study(stores)), *stores.cli_args())
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1    # before the study's header
    line = " ".join(res.output.split())
    assert "error: study: 'alpha' has a parent run in the MLflow store" in line
    assert (f"hypersweep delete alpha --tracking-uri {stores.mlflow_uri} --storage "
            f"{stores.optuna_url}") in line     # not the directory's default storage
    assert names(stores) == []                  # nothing written on either side
    _, children = study_runs(stores.mlflow_uri, "alpha")
    assert len(children) == 2

    res = invoke("delete", "alpha", *stores.cli_args(), "--yes")   # the MLflow side only
    assert res.exit_code == 0, res.output
    assert "Optuna: no study 'alpha' in" in res.output
    res = invoke("run", str(write_study(stores)), *stores.cli_args())
    assert res.exit_code == 0, res.output
    _, children = study_runs(stores.mlflow_uri, "alpha")
    assert [c.info.run_name for c in children] == ["trial-0000"]


def test_a_second_run_of_a_new_name_started_at_once_says_it_exists(stores, tmp_path,
                                                                    monkeypatch):
    """Two `run`s of one new study name started together: the second passed the
    up-front check while the first had made nothing yet. It said the first's live
    parent run had no study and told to delete it, or failed with exit 1 on the
    storage's unique name. Both windows, replayed: the second says "already exists"."""
    from hypersweep.search import driver
    run(stores)                                 # the first run, done in the meantime
    monkeypatch.setattr(driver, "check_stores", lambda cfg, rename="": None)  # passed before
    expected = f"error: study: 'alpha' already exists in {stores.optuna_url}; choose"
    # The first made its study and parent run before the second looked for a parent
    res = invoke("run", str(write_study(stores)), *stores.cli_args())
    assert res.exit_code == 2 and expected in " ".join(res.output.split()), res.output
    # ... or before the second made its study (its own MLflow store: no parent there)
    listed = optuna.storages.RDBStorage.get_all_studies
    monkeypatch.setattr(optuna.storages.RDBStorage, "get_all_studies", lambda self: [])
    res = invoke("run", str(write_study(stores)), "--storage", stores.optuna_url,
                 "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}")
    monkeypatch.setattr(optuna.storages.RDBStorage, "get_all_studies", listed)
    assert res.exit_code == 2 and expected in " ".join(res.output.split()), res.output
    assert names(stores) == ["alpha"]
    _, children = study_runs(stores.mlflow_uri, "alpha")
    assert len(children) == 2


def test_an_experiment_in_mlflows_trash_holds_its_name_until_delete_frees_it(stores):
    run(stores)
    optuna.delete_study(study_name="alpha", storage=stores.optuna_url)
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    client.delete_experiment(client.get_experiment_by_name("alpha").experiment_id)  # as the UI does
    res = invoke("run", str(write_study(stores)), *stores.cli_args())
    assert res.exit_code == 2
    assert "is deleted (in MLflow's trash), and MLflow keeps its name taken" in \
        " ".join(res.output.split())
    res = invoke("delete", "alpha", *stores.cli_args(), "-y")
    assert res.exit_code == 0, res.output
    assert "(in MLflow's trash already)" in res.output
    assert client.get_experiment_by_name("alpha") is None
    assert invoke("run", str(write_study(stores)), *stores.cli_args()).exit_code == 0


def test_a_study_whose_experiment_is_in_mlflows_trash_says_how_to_restore_it(stores, tmp_path):
    """Its experiment deleted in the MLflow UI: resume failed with exit 1 on MLflow's
    "must be in the 'active' state", and final and export said there was no parent
    run in the store the study ran with. One line each, exit 2, nothing written."""
    run(stores)
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    exp_id = client.get_experiment_by_name("alpha").experiment_id
    client.delete_experiment(exp_id)                # as the UI does
    trashed = (f"error: study 'alpha': its MLflow experiment in {stores.mlflow_uri} is deleted "
               f"(in MLflow's trash), its runs with it; restore it: MLFLOW_TRACKING_URI="
               f"{stores.mlflow_uri} mlflow experiments restore --experiment-id {exp_id}")
    for args in (["resume", "alpha", "--trials", "3", *stores.cli_args()],
                 ["final", "alpha", *stores.cli_args()],
                 ["export", "alpha", "-o", str(tmp_path / "x.csv"), *stores.cli_args()]):
        res = invoke(*args)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and lines[-1].startswith(trashed), res.output
        if args[0] == "resume":     # or gives up the study
            assert lines[-1].endswith(f"; or delete the study: hypersweep delete alpha "
                                      f"--tracking-uri {stores.mlflow_uri} --storage "
                                      f"{stores.optuna_url}"), lines[-1]
    study = optuna.load_study(study_name="alpha", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "x.csv").exists()
    client.restore_experiment(exp_id)               # as the printed command does
    res = invoke("resume", "alpha", "--trials", "3", *stores.cli_args())
    assert res.exit_code == 0, res.output
    _, children = study_runs(stores.mlflow_uri, "alpha")
    assert len(children) == 3


def test_delete_names_the_registered_model_final_made_as_the_registry_holds_it(stores):
    """A study named 'qa a/b:c' registers its final model as 'qa a-b-c' (MLflow
    refuses '/' and ':'): delete said the model 'qa a/b:c' was kept."""
    run(stores, name="qa a/b:c", trials=1)
    res = invoke("final", "qa a/b:c", *stores.cli_args())
    assert res.exit_code == 0, res.output
    res = invoke("delete", "qa a/b:c", *stores.cli_args(), "-y")
    assert res.exit_code == 0, res.output
    assert "the registered model 'qa a-b-c' (from `final`) is kept" in res.output
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    assert client.get_registered_model("qa a-b-c").name == "qa a-b-c"


def test_delete_refuses_an_unknown_study_and_a_running_one(stores):
    run(stores)
    res = invoke("delete", "beta", *stores.cli_args(), "-y")
    assert res.exit_code == 2
    assert res.output.strip() == (f"error: STUDY: no study 'beta' in {stores.optuna_url}, and no "
                                  f"MLflow experiment of that name in {stores.mlflow_uri}")
    study = optuna.load_study(study_name="alpha", storage=stores.optuna_url)
    study.set_user_attr(LEASE, {"host": socket.gethostname(), "pid": os.getpid(),
                                "beat": time.time()})
    res = invoke("delete", "alpha", *stores.cli_args(), "-y")
    assert res.exit_code == 2 and "study 'alpha' is running" in res.output
    assert res.output.strip().endswith("or let it finish before deleting it")
    assert names(stores) == ["alpha"]


def write_study(stores):
    import yaml
    path = stores.dir.parent / "alpha.yaml"
    cfg = small_config("alpha", stores, trials=1)
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_delete_counts_the_runs_past_one_page_of_search_results(stores, monkeypatch):
    """MLflow returns at most 50,000 runs a search: a larger study was counted as
    50,000. Pages of 2 here: the parent run and 3 trial runs make two pages."""
    run(stores, trials=3)
    monkeypatch.setattr(MlflowTracker, "RUNS_PAGE", 2)
    stage, count = MlflowTracker(stores.mlflow_uri, create=False).experiment_runs("alpha")
    assert (stage, count) == ("active", 4)


def test_the_gc_hint_says_what_to_fill_in():
    """For a server the command holds a placeholder for its store; a masked
    password is said, not left for gc to fail on."""
    from hypersweep.cli.lifecycle import _gc_hint
    hint = " ".join(_gc_hint("http://127.0.0.1:5000", "7", "a" * 32).split())
    assert ("run it where the server runs, with the server's own --backend-store-uri in "
            "place of STORE_OF_THE_SERVER: ") in hint
    assert hint.endswith(f"--experiment-ids 7 --run-ids {'a' * 32}")
    hint = _gc_hint("postgresql://qa:secret@db/mlflow", "7", "a" * 32)
    assert "secret" not in hint and "STORE_OF_THE_SERVER" not in hint
    assert "MLFLOW_ALLOW_FILE_STORE" not in hint      # a database, not a file store
    assert hint.endswith("--backend-store-uri 'postgresql://qa:***@db/mlflow' --tracking-uri "
                         f"'postgresql://qa:***@db/mlflow' --experiment-ids 7 --run-ids "
                         f"{'a' * 32} (put the password in place of ***, or set PGPASSWORD)")
    assert _gc_hint("sqlite:////tmp/mlflow.db", "7", None) == " (no runs)"


def test_a_study_resumed_while_delete_asked_is_not_deleted(stores):
    """The running check came only before the question: answered `y` after a resume
    began, delete moved the study's runs to the trash under its driver, which died
    in tracebacks."""
    from hypersweep.search.lifecycle import delete_study, plan_deletion

    run(stores)
    plan = plan_deletion("alpha", stores.optuna_url, stores.mlflow_uri)     # then the question
    study = optuna.load_study(study_name="alpha", storage=stores.optuna_url)
    study.set_user_attr(LEASE, {"host": socket.gethostname(), "pid": os.getpid(),
                                "beat": time.time()})                      # a resume began
    with pytest.raises(UserError, match="^study 'alpha' is running"):
        delete_study(plan)
    assert names(stores) == ["alpha"]
    assert MlflowClient(tracking_uri=stores.mlflow_uri).get_experiment_by_name(
        "alpha").lifecycle_stage == "active"

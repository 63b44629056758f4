"""A fault of the driver's own (a bug) while a study runs: the study ends in both
stores as a stop ends it, and a resume continues it. Real SQLite stores."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.search import driver as driver_module
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.exit import StudyFailed
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs

FAULT = "a fault injected by the test"


def inject(monkeypatch, where: str) -> None:
    """Raise RuntimeError(FAULT) once, in trial 1: `asked` (Optuna made it RUNNING,
    no run yet), `submitted` (its child run started, the executor refuses it),
    `telling` (its result about to be told to Optuna), `told` (told to Optuna, its
    run not ended yet)."""
    once = [True]

    def fault(number: int) -> None:
        if number == 1 and once[0]:
            once[0] = False
            raise RuntimeError(FAULT)

    if where == "asked":
        suggest = driver_module.suggest
        monkeypatch.setattr(driver_module, "suggest",
                            lambda space, trial: fault(trial.number) or suggest(space, trial))
    elif where == "submitted":
        submit = SerialExecutor.submit
        monkeypatch.setattr(SerialExecutor, "submit",
                            lambda self, spec: fault(spec.trial_number) or submit(self, spec))
    elif where == "telling":
        tell = optuna.Study.tell

        def telling(self, trial, *args, **kwargs):
            fault(trial if isinstance(trial, int) else trial.number)
            return tell(self, trial, *args, **kwargs)
        monkeypatch.setattr(optuna.Study, "tell", telling)
    else:
        trial_yaml = driver_module.trial_yaml
        monkeypatch.setattr(driver_module, "trial_yaml",
                            lambda spec: fault(spec.trial_number) or trial_yaml(spec))


def nothing_running(stores, study_name: str) -> optuna.Study:
    """Neither store holds anything RUNNING of the study; the study, loaded."""
    study = optuna.load_study(study_name=study_name, storage=stores.optuna_url)
    assert [t.number for t in study.trials if not t.state.is_finished()] == []
    parent, children = study_runs(stores.mlflow_uri, study_name)
    assert parent.info.status != "RUNNING"
    assert [c.info.run_id for c in children if c.info.status == "RUNNING"] == []
    assert study.user_attrs["driver"] is None           # the lease is let go
    return study


@pytest.mark.parametrize("where", ["asked", "submitted", "telling", "told"])
def test_a_fault_of_the_driver_ends_the_study_in_both_stores(stores, monkeypatch, where):
    """A bug raised between Optuna's ask and the trial's launch, or while a trial was
    told its end, left its trial and the MLflow runs RUNNING until a resume."""
    cfg = parse_config(small_config("faulted", stores, trials=3))
    inject(monkeypatch, where)
    driver = StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri))
    with pytest.raises(Exception) as failed:
        driver.run()
    study = nothing_running(stores, "faulted")
    assert isinstance(failed.value, StudyFailed)
    assert isinstance(failed.value.__cause__, RuntimeError)
    message = str(failed.value)
    assert message.startswith(f"internal error: RuntimeError: {FAULT} (test_driver_faults.py:")
    assert "; continue with: hypersweep resume faulted --storage " in message
    assert study.user_attrs["ended"] == "FAILED"
    parent, children = study_runs(stores.mlflow_uri, "faulted")
    assert parent.info.status == "FAILED"
    assert study.trials[0].state.name == "COMPLETE"
    told = where == "told"          # Optuna had its result: it stands
    assert study.trials[1].state.name == ("COMPLETE" if told else "FAIL")
    if not told:
        reason = study.trials[1].user_attrs["reason"]
        assert reason.startswith(f"interrupted: internal error: RuntimeError: {FAULT}")
        assert study.trials[1].user_attrs["interrupted"] is True
    runs = {int(c.data.tags["optuna.trial_number"]): c for c in children}
    if where != "asked":            # a run was started for it
        assert runs[1].info.status == ("FINISHED" if told else "FAILED")
        if not told:
            assert runs[1].data.tags["failure_reason"] == study.trials[1].user_attrs["reason"]
            assert runs[1].data.tags["reason"] == runs[1].data.tags["failure_reason"]

    # A resume runs the study to its budget, the faulted trial again unless it completed.
    StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run(resume=True)
    study = nothing_running(stores, "faulted")
    assert study.user_attrs["ended"] == "FINISHED"
    assert sum(not t.user_attrs.get("interrupted") for t in study.trials) == 3
    assert study_runs(stores.mlflow_uri, "faulted")[0].info.status == "FINISHED"


def test_a_fault_of_the_driver_is_one_error_line_and_the_traceback_s_file(stores, monkeypatch,
                                                                       write_config):
    """The traceback of a bug ran over the screen, the study left RUNNING in both stores."""
    inject(monkeypatch, "submitted")
    path = write_config(small_config("bug", stores, trials=3))
    res = CliRunner().invoke(app, ["run", str(path)], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.output.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: internal error: RuntimeError: {FAULT} (test_driver_faults.py:"), res.output
    assert errors[0].endswith("; continue with: hypersweep resume bug --storage "
                              f"{stores.optuna_url}")
    where = lines[lines.index(errors[0]) + 1]
    assert where.startswith("the traceback, for a bug report (with hypersweep --version): ")
    traceback = Path(where.rsplit(": ", 1)[1])
    try:
        text = traceback.read_text()
        assert "Traceback (most recent call last)" in text and f"RuntimeError: {FAULT}" in text
    finally:
        traceback.unlink()
    study = nothing_running(stores, "bug")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]

    monkeypatch.undo()
    res = CliRunner().invoke(app, ["resume", "bug", "--storage", stores.optuna_url],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    study = nothing_running(stores, "bug")
    assert study.user_attrs["ended"] == "FINISHED"
    assert sum(not t.user_attrs.get("interrupted") for t in study.trials) == 3


def test_a_ray_node_lost_under_the_driver_is_said_as_such_not_as_a_bug(stores, monkeypatch,
                                                                      write_config):
    """The raylet of the node `hypersweep` ran on was killed: Ray's next call failed
    with `OSError: Broken pipe (common.pxi:117)`, said as an internal error, with a
    traceback offered for a bug report."""
    from hypersweep.search.ray_executor import _node_kept, raised_in_ray

    broken = compile("raise OSError('Broken pipe')", "/site-packages/ray/includes/common.pxi",
                     "exec")
    submit = SerialExecutor.submit

    def submit_on_a_lost_node(self, spec):
        if spec.trial_number == 1:
            with _node_kept():          # as the Ray executor calls Ray
                exec(broken)
        return submit(self, spec)

    monkeypatch.setattr(SerialExecutor, "submit", submit_on_a_lost_node)
    path = write_config(small_config("lost", stores, trials=3))
    res = CliRunner().invoke(app, ["run", str(path)], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    why = ("the Ray node this study runs on lost its Ray daemons (OSError: Broken pipe): "
           "its raylet was killed, ran out of memory or crashed")
    assert errors == [f"error: {why}; the study was stopped and closed in both stores (its "
                      "running trials marked FAIL); continue with: hypersweep resume lost "
                      f"--storage {stores.optuna_url}"], res.output
    assert "for a bug report" not in res.output
    study = nothing_running(stores, "lost")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].user_attrs["reason"] == f"interrupted: {why}"

    # An OSError of other code (a file, a socket of ours) is not Ray's to explain.
    try:
        open("/nonexistent/dir/file")
    except OSError as e:
        assert not raised_in_ray(e)
    with pytest.raises(FileNotFoundError):
        with _node_kept():
            open("/nonexistent/dir/file")

"""A SQLite store's file deleted or replaced while a study writes to it: the
study ran on and exited 0, and what it wrote since went with the file. It stops
with one line instead, saying which file and what is lost, and the other store
closes the study."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT, small_config, study_runs, wait_for_trials


def run_and_remove(config_path: Path, storage: str, study: str, victim: Path,
                   replace: bool = False, alone: bool = False) -> subprocess.CompletedProcess:
    """Run `hypersweep run` and, once a trial has finished, delete `victim` (and its
    write-ahead log, unless `alone`), or put a copy in its place; the finished
    process."""
    proc = subprocess.Popen([sys.executable, "-m", "hypersweep.cli.app", "run", str(config_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_trials(proc, storage, study, lambda trials: any(t.state.is_finished()
                                                                 for t in trials))
        if replace:
            copy = victim.with_suffix(".copy")
            copy.write_bytes(victim.read_bytes())
            copy.replace(victim)
        else:
            for path in (victim, *(() if alone else (Path(f"{victim}-wal"),
                                                      Path(f"{victim}-shm")))):
                path.unlink(missing_ok=True)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def slow_config(name: str, stores) -> dict:
    cfg = small_config(name, stores, trials=6)
    cfg["params"].update(epochs=150, batch_size=32)     # about a second a trial
    return cfg


@pytest.mark.slow
def test_the_mlflow_store_deleted_mid_study_stops_it_with_one_line(stores, write_config):
    db = stores.dir / "mlflow.db"
    done = run_and_remove(write_config(slow_config("gone", stores)), stores.optuna_url, "gone", db)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: tracking.uri: the MLflow store's file {db} was deleted "
                               "or moved while the study ran")
    assert lines[0].endswith("(hypersweep resume gone --storage "
                             f"{stores.optuna_url} needs the MLflow store back in place)")
    study = optuna.load_study(study_name="gone", storage=stores.optuna_url)
    assert len(study.trials) < 6                        # stopped, not run to its end
    assert not [t for t in study.trials if not t.state.is_finished()]
    assert study.user_attrs["ended"] == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize("replace, alone", [(False, False), (True, False), (False, True)],
                         ids=["deleted", "replaced", "deleted-without-its-log"])
def test_the_optuna_storage_gone_mid_study_stops_it_and_closes_its_runs(stores, write_config,
                                                                        replace, alone):
    db = stores.dir / "optuna.db"
    done = run_and_remove(write_config(slow_config("gone", stores)), stores.optuna_url, "gone", db,
                          replace=replace, alone=alone)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    how = "replaced by another file" if replace else "deleted or moved"
    assert f"error: tracking.storage: the Optuna storage's file {db} was {how} while the " \
           "study ran" in done.stderr
    # Its log and index are not left to pass for a new store's: one made at the
    # path held the deleted study again.
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    if not replace:
        assert optuna.study.get_all_study_names(stores.optuna_url) == []
    parent, children = study_runs(stores.mlflow_uri, "gone")
    assert parent.info.status == "FAILED"
    assert len(children) < 6
    assert all(c.info.status != "RUNNING" for c in children)

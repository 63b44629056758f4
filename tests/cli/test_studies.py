"""Every study in studies/ validates, and runs one trial of one short epoch."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from hypersweep.cli.app import app
from tests.conftest import STUDIES, Stores, study_runs

runner = CliRunner()
STUDY_FILES = sorted(STUDIES.glob("*.yaml"))
# Shrinks a dataset for the smoke run: dataset name -> data.options overrides.
SMALL_DATA = {
    "text": {"max_chars": 20000},
    "adding": {"n": 500},
    "copy": {"n": 500},
    "reverse": {"n": 500},
}
# Studies whose one-epoch trial takes under a couple of seconds on one core.
FAST = {"quickstart", "xor_mlp", "xor_linear", "moons_mlp", "diabetes_mlp", "seq_digits_rnn"}


def smoke_overrides(path: Path) -> list[str]:
    raw = yaml.safe_load(path.read_text())
    data = (raw.get("data") or {}).get("name", "digits")
    # One epoch on a tenth of the data, in this process: the point is that the study
    # runs end to end (tests/search covers the Ray executor). A pruned study needs a
    # second epoch, since its pruner's first rung must lie below the last epoch.
    pruner = (raw.get("search") or {}).get("pruner", "none")
    epochs = 1 if pruner in ("none", {"name": "none"}) else 2
    sets = ["--set", f"params.epochs={epochs}", "--set", "data.val_fraction=0.1",
            "--set", "data.test_fraction=0.8", "--set", "resources.executor=serial"]
    if pruner == "median":      # its default warm-up, 2 epochs, would never prune
        sets += ["--set", "search.pruner={name: median, warmup_epochs: 0}"]
    for key, value in SMALL_DATA.get(data, {}).items():
        sets += ["--set", f"data.options.{key}={value}"]
    return sets


@pytest.fixture(scope="module")
def shared_stores(tmp_path_factory) -> Stores:
    # One MLflow and Optuna store for every study (their names differ): creating an
    # MLflow SQLite store costs seconds, the smoke trials themselves less.
    return Stores(tmp_path_factory.mktemp("stores"))


def test_study_names_are_unique():
    names = [yaml.safe_load(p.read_text())["study"] for p in STUDY_FILES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_study_validates(path):
    res = runner.invoke(app, ["validate", str(path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    raw = yaml.safe_load(path.read_text())
    assert raw.get("description"), "a study says what experiment it is"


@pytest.mark.parametrize("path", [p if p.stem in FAST else pytest.param(p, marks=pytest.mark.slow)
                                  for p in STUDY_FILES], ids=[p.stem for p in STUDY_FILES])
def test_study_runs_one_short_trial(path, shared_stores):
    stores = shared_stores
    res = runner.invoke(app, ["run", str(path), "--trials", "1", *smoke_overrides(path),
                              *stores.cli_args()], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    name = yaml.safe_load(path.read_text())["study"]
    study = optuna.load_study(study_name=name, storage=stores.optuna_url)
    [trial] = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("reason")
    # The trial's MLflow run holds the figure of the task it actually trained.
    from mlflow.tracking import MlflowClient

    from hypersweep.models.tasks import get_task
    from hypersweep.models.train import trial_task
    from hypersweep.search.config import load_config
    cfg = load_config(path, smoke_overrides(path)[1::2])
    task = get_task(trial_task(cfg.model, cfg.data.model_dump()))
    _, [child] = study_runs(stores.mlflow_uri, name)
    arts = {a.path for a in MlflowClient(stores.mlflow_uri).list_artifacts(child.info.run_id)}
    assert {"learning_curve.png", task.figure_name} <= arts

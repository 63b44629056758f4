"""The autoencoder, VAE and GAN studies in studies/: each validates, and runs one
trial of one epoch end to end into real MLflow and Optuna stores."""
from __future__ import annotations

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.app import app
from tests.conftest import STUDIES, study_runs

GENERATIVE_STUDIES = sorted(p.name for pattern in ("autoencoder_*.yaml", "vae_*.yaml", "gan_*.yaml")
                            for p in STUDIES.glob(pattern))
FIGURE = {"autoencoder": "reconstructions.png", "vae": "samples.png", "gan": "samples.png"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_every_generative_family_has_studies():
    families = {name.split("_")[0] for name in GENERATIVE_STUDIES}
    assert families == {"autoencoder", "vae", "gan"}
    variants = {yaml.safe_load((STUDIES / n).read_text())["params"].get("variant")
                for n in GENERATIVE_STUDIES if n.startswith("autoencoder")}
    assert variants == {"undercomplete", "sparse", "denoising", "contractive"}
    archs = {yaml.safe_load((STUDIES / n).read_text())["params"].get("arch")
             for n in GENERATIVE_STUDIES if n.startswith("gan")}
    assert archs == {"mlp", "dcgan"}


@pytest.mark.parametrize("name", GENERATIVE_STUDIES)
def test_study_validates(name):
    res = invoke("validate", str(STUDIES / name))
    assert res.exit_code == 0, res.output


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATIVE_STUDIES)
def test_study_runs_one_short_trial(name, stores, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERSWEEP_CACHE", str(tmp_path / "cache"))
    raw = yaml.safe_load((STUDIES / name).read_text())
    res = invoke("run", str(STUDIES / name), "--trials", "1", "--set", "params.epochs=1",
                 *stores.cli_args())
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name=raw["study"], storage=stores.optuna_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    _, children = study_runs(stores.mlflow_uri, raw["study"])
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    arts = {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert FIGURE[raw["model"]] in arts and "model.pt" in arts
    metric = raw["search"]["objective"]["metric"]
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, metric)] == [1]

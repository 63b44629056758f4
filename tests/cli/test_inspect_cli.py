"""`hypersweep studies / best / export` on real stores."""
from __future__ import annotations

import json

import optuna
import pandas as pd
from typer.testing import CliRunner

from cli.app import app
from search.config import parse_config
from search.driver import StudyDriver
from search.executors import SerialExecutor
from search.tracking import MlflowTracker
from tests.conftest import small_config

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_studies_best_and_export(stores, tmp_path):
    for name, trials in (("alpha", 3), ("beta", 2)):
        cfg = parse_config(small_config(name, stores, trials=trials))
        StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()

    res = invoke("studies", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    alpha = next(line for line in res.output.splitlines() if "alpha" in line)
    assert "tpe" in alpha and " 3 " in alpha and "beta" in res.output

    res = invoke("best", "alpha", "--storage", stores.optuna_url, "--json")
    assert res.exit_code == 0, res.output
    best = json.loads(res.output)
    study = optuna.load_study(study_name="alpha", storage=stores.optuna_url)
    assert best[0]["number"] == study.best_trial.number
    assert best[0]["values"] == [study.best_value] and best[0]["params"] == study.best_params
    assert invoke("best", "alpha", "--storage", stores.optuna_url).exit_code == 0

    for suffix, read in ((".csv", pd.read_csv), (".parquet", pd.read_parquet)):
        path = tmp_path / f"alpha{suffix}"
        res = invoke("export", "alpha", "-o", str(path), "--storage", stores.optuna_url)
        assert res.exit_code == 0, res.output
        df = read(path)
        assert list(df["number"]) == [0, 1, 2]
        assert {"state", "value", "params_lr", "params_depth", "metric_val_loss",
                "metric_final_param_count"} <= set(df.columns)
        assert list(df["value"]) == [t.value for t in study.trials]

    res = invoke("export", "alpha", "-o", str(tmp_path / "x.xlsx"), "--storage", stores.optuna_url)
    assert res.exit_code == 2 and ".csv or .parquet" in res.output

"""Team set-up: a real `mlflow server` as the tracking store and a real PostgreSQL
as Optuna storage, started by the tests on 127.0.0.1."""
from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.app import app
from search.config import parse_config
from search.driver import StudyDriver
from search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs
from tests.executors import ThreadExecutor
from tests.servers import mlflow_server, postgres_cluster

runner = CliRunner()
pytestmark = pytest.mark.slow


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_study_logs_to_an_mlflow_server(stores, tmp_path, write_config):
    with mlflow_server(tmp_path / "server") as url:
        path = write_config(small_config("remote", stores, trials=3))
        res = invoke("run", str(path), "--tracking-uri", url)
        assert res.exit_code == 0, res.output

        client = MlflowClient(tracking_uri=url)
        parent, children = study_runs(url, "remote")
        assert len(children) == 3
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
            "study.yaml", "trials.csv", "optimization_history.png"}
        for child in children:
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            history = client.get_metric_history(child.info.run_id, "val_loss")
            assert [m.step for m in history] == [1, 2, 3]
            assert {"trial.yaml", "model.pt", "learning_curve.png"} <= {
                a.path for a in client.list_artifacts(child.info.run_id)}

        # The lifecycle commands work against the server too.
        res = invoke("replay", children[0].info.run_id, "--tracking-uri", url)
        assert res.exit_code == 0 and "identical" in res.output, res.output
        res = invoke("final", "remote", "--storage", stores.optuna_url, "--tracking-uri", url)
        assert res.exit_code == 0, res.output
        assert client.get_model_version("remote", "1").run_id


def test_postgres_storage_with_parallel_trials(stores):
    with postgres_cluster() as pg:
        raw = small_config("pg", stores, trials=6)
        raw["tracking"]["storage"] = pg
        raw["resources"] = {"executor": "serial", "parallel": 3}
        cfg = parse_config(raw)
        outcome = StudyDriver(cfg, ThreadExecutor(capacity=3), MlflowTracker(cfg.tracking.uri)).run()
        assert outcome.counts["COMPLETE"] == 6

        study = optuna.load_study(study_name="pg", storage=pg)
        assert [t.number for t in study.trials] == list(range(6))
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        assert all(len(t.intermediate_values) == 3 for t in study.trials)
        _, children = study_runs(stores.mlflow_uri, "pg")
        assert [t.user_attrs["mlflow_run_id"] for t in study.trials] == [c.info.run_id for c in children]

        res = invoke("studies", "--storage", pg)
        assert res.exit_code == 0 and "pg" in res.output
        res = invoke("rerun", "pg", "--storage", pg, "--set", "search.trials=2")
        assert res.exit_code == 0, res.output
        assert "pg-rerun-1" in optuna.study.get_all_study_names(pg)
